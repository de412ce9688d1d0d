/*
 * Score variants on the host backend (the oracle of every other backend), checked against
 * a straightforward double reference written here, pair by pair, from the semantics of
 * include/polyattn.h (nothing of the library's host code is called for the reference):
 *   s = scale q.k; softcap * tanh(s / softcap); - slope |d(i) - j|; + bias; then causal,
 *   window, attn_mask (0 masks) and a -inf bias mask a pair; sinks join the denominator.
 * Forward: every variant alone and combined, both host algorithms, f32/f16/bf16 inputs,
 * f32/f16/bf16 biases in broadcast shapes with stride-0, padded and transposed strides,
 * odd lengths, GQA, seq_q != seq_kv, both causal alignments, fully masked rows (O = 0,
 * LSE = -inf, or the sink), a NaN bias row, -inf biases.  Backward: dQ, dK, dV, d_bias and
 * d_sinks of both algorithms against central finite differences of the test's forward of
 * L = sum(dO * O) (step 1e-5 on double inputs: exact far below f32 output rounding).
 * Errors: polyattn_forward_ex/backward_ex name a missing, extra or short tensor and write
 * nothing.  Outputs are poisoned before each run and every element is checked.
 */
#include "pa_testkit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static polyattn_context *ctx;

/* Layouts of a bias or attn_mask tensor. */
enum {
    SCORE_NONE = 0,
    SCORE_FULL,       /* [batch, heads_q, seq_q, seq_kv] packed */
    SCORE_11,         /* [1, 1, ...] with stride 0 on the broadcast dimensions */
    SCORE_B1,         /* [batch, 1, ...] with packed strides (the 1's stride is ignored) */
    SCORE_1H_PADDED,  /* [1, heads_q, ...], rows padded by 3 elements */
    SCORE_TRANSPOSED, /* [batch, heads_q, ...], seq_q fastest (stride[2] = 1) */
    SCORE_B_STRIDE0   /* [batch, heads_q, ...] with stride 0 on the batch (extent > 1) */
};
/* Special contents. */
enum {
    SPECIAL_NONE = 0,
    SPECIAL_MASK_ROW,       /* attn_mask 0 on every key of query 1 */
    SPECIAL_NEGINF_ROW,     /* bias -inf on every key of query 2 */
    SPECIAL_NAN_ROW,        /* bias NaN on every key of query 0 */
    SPECIAL_NEGINF_SPRINKLE /* bias -inf on about one pair in six */
};

typedef struct vcase {
    const char *name;
    int64_t batch, hq, hkv, sq, skv, d, dv;
    polyattn_mask mask;
    int has_window;
    int64_t wl, wr;
    float softcap;
    polyattn_alibi alibi;
    int bias_layout;
    polyattn_dtype bias_dtype;
    int mask_layout;
    int sinks;
    int special;
} vcase;

#define NM POLYATTN_MASK_NONE
#define TL POLYATTN_MASK_CAUSAL_TOP_LEFT
#define BR POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT
#define F32 POLYATTN_DTYPE_F32
#define F16 POLYATTN_DTYPE_F16
#define BF16 POLYATTN_DTYPE_BF16
#define PH POLYATTN_ALIBI_PER_HEAD
#define PBH POLYATTN_ALIBI_PER_BATCH_HEAD

static const vcase fwd_cases[] = {
    {"window", 2, 4, 2, 13, 19, 8, 8, NM, 1, 3, 2, 0, 0, 0, F32, 0, 0, 0},
    {"window-br-masked-rows", 1, 4, 1, 19, 13, 8, 12, BR, 1, 4, -1, 0, 0, 0, F32, 0, 0, 0},
    {"window-tl", 2, 2, 2, 11, 9, 8, 8, TL, 1, 2, 5, 0, 0, 0, F32, 0, 0, 0},
    {"window-right-only", 1, 2, 1, 9, 14, 8, 8, NM, 1, -1, 1, 0, 0, 0, F32, 0, 0, 0},
    {"softcap", 2, 4, 2, 9, 17, 16, 8, NM, 0, -1, -1, 0.3f, 0, 0, F32, 0, 0, 0},
    {"alibi-head-br", 1, 4, 4, 11, 17, 8, 8, BR, 0, -1, -1, 0, PH, 0, F32, 0, 0, 0},
    {"alibi-batch-head", 2, 2, 1, 7, 10, 8, 8, NM, 0, -1, -1, 0, PBH, 0, F32, 0, 0, 0},
    {"bias-full-f32", 2, 4, 2, 9, 11, 8, 8, NM, 0, -1, -1, 0, 0, SCORE_FULL, F32, 0, 0, 0},
    {"bias-11-f16", 2, 4, 1, 7, 13, 8, 8, NM, 0, -1, -1, 0, 0, SCORE_11, F16, 0, 0, 0},
    {"bias-b1-bf16", 2, 4, 2, 9, 6, 8, 8, TL, 0, -1, -1, 0, 0, SCORE_B1, BF16, 0, 0, 0},
    {"bias-1h-padded", 2, 4, 2, 5, 9, 8, 8, NM, 0, -1, -1, 0, 0, SCORE_1H_PADDED, F32, 0, 0, 0},
    {"bias-transposed-bf16", 2, 2, 2, 6, 7, 8, 8, BR, 0, -1, -1, 0, 0, SCORE_TRANSPOSED, BF16, 0, 0,
     0},
    {"bias-batch-stride0", 3, 2, 1, 5, 8, 8, 8, NM, 0, -1, -1, 0, 0, SCORE_B_STRIDE0, F16, 0, 0, 0},
    {"attn-mask", 2, 4, 2, 9, 12, 8, 8, NM, 0, -1, -1, 0, 0, 0, F32, SCORE_FULL, 0, 0},
    {"attn-mask-11-row", 2, 2, 1, 7, 9, 8, 8, NM, 0, -1, -1, 0, 0, 0, F32, SCORE_11, 0,
     SPECIAL_MASK_ROW},
    {"sinks-br-masked-rows", 2, 4, 2, 11, 7, 8, 8, BR, 0, -1, -1, 0, 0, 0, F32, 0, 1, 0},
    {"sinks-tl", 1, 4, 1, 7, 9, 8, 8, TL, 0, -1, -1, 0, 0, 0, F32, 0, 1, 0},
    {"gpt-oss-window-softcap-sinks", 1, 4, 2, 70, 150, 16, 16, BR, 1, 20, 0, 0.5f, 0, 0, F32, 0, 1,
     0},
    {"window-softcap-sinks-tl", 2, 4, 1, 21, 17, 8, 8, TL, 1, 5, -1, 0.4f, 0, 0, F32, 0, 1, 0},
    {"alibi-bias-causal", 2, 4, 2, 13, 13, 8, 8, TL, 0, -1, -1, 0, PH, SCORE_FULL, BF16, 0, 0, 0},
    {"alibi-bias-causal-br", 1, 4, 2, 9, 14, 8, 8, BR, 0, -1, -1, 0, PBH, SCORE_B1, F16, 0, 0, 0},
    {"attn-mask-window", 2, 2, 2, 15, 21, 8, 8, NM, 1, 3, 3, 0, 0, 0, F32, SCORE_1H_PADDED, 0, 0},
    {"bias-neginf-row", 1, 2, 1, 6, 8, 8, 8, NM, 0, -1, -1, 0, 0, SCORE_FULL, F32, 0, 0,
     SPECIAL_NEGINF_ROW},
    {"bias-neginf-row-sinks", 1, 2, 1, 6, 8, 8, 8, NM, 0, -1, -1, 0, 0, SCORE_11, F32, 0, 1,
     SPECIAL_NEGINF_ROW},
    {"bias-nan-row", 2, 2, 1, 5, 7, 8, 8, TL, 0, -1, -1, 0, 0, SCORE_B1, F32, 0, 0,
     SPECIAL_NAN_ROW},
    {"bias-neginf-sprinkled", 2, 2, 2, 9, 70, 8, 8, BR, 0, -1, -1, 0, 0, SCORE_FULL, F16, 0, 0,
     SPECIAL_NEGINF_SPRINKLE},
    {"all-gqa1", 2, 4, 1, 10, 13, 8, 6, BR, 1, 6, 2, 0.6f, PBH, SCORE_TRANSPOSED, F16, SCORE_B1, 1,
     0},
};

static const vcase bwd_cases[] = {
    {"window", 1, 4, 2, 9, 11, 8, 8, NM, 1, 2, 3, 0, 0, 0, F32, 0, 0, 0},
    {"window-br-masked", 1, 2, 1, 9, 6, 8, 8, BR, 1, 2, -1, 0, 0, 0, F32, 0, 0, 0},
    {"softcap", 2, 2, 1, 6, 7, 8, 8, NM, 0, -1, -1, 0.3f, 0, 0, F32, 0, 0, 0},
    {"alibi", 1, 4, 2, 7, 9, 8, 8, TL, 0, -1, -1, 0, PBH, 0, F32, 0, 0, 0},
    {"bias-full", 2, 4, 2, 5, 7, 8, 8, NM, 0, -1, -1, 0, 0, SCORE_FULL, F32, 0, 0, 0},
    {"bias-11-f16", 2, 4, 1, 5, 7, 8, 8, BR, 0, -1, -1, 0, 0, SCORE_11, F16, 0, 0, 0},
    {"bias-b1-bf16", 2, 4, 2, 6, 5, 8, 8, NM, 0, -1, -1, 0, 0, SCORE_B1, BF16, 0, 0, 0},
    {"bias-1h-padded", 2, 4, 2, 5, 6, 8, 8, TL, 0, -1, -1, 0, 0, SCORE_1H_PADDED, F32, 0, 0,
     SPECIAL_NEGINF_ROW},
    {"attn-mask", 2, 2, 1, 7, 8, 8, 8, NM, 0, -1, -1, 0, 0, 0, F32, SCORE_FULL, 0,
     SPECIAL_MASK_ROW},
    {"sinks-masked", 2, 4, 2, 9, 6, 8, 8, BR, 0, -1, -1, 0, 0, 0, F32, 0, 1, 0},
    {"gpt-oss-mix", 1, 4, 2, 13, 70, 8, 8, BR, 1, 8, 0, 0.5f, 0, 0, F32, 0, 1, 0},
    {"alibi-bias-causal", 1, 4, 2, 7, 7, 8, 8, TL, 0, -1, -1, 0, PH, SCORE_TRANSPOSED, F32, 0, 0,
     0},
    {"attn-mask-window", 1, 2, 2, 8, 9, 8, 8, NM, 1, 2, 2, 0, 0, 0, F32, SCORE_11, 0, 0},
    {"all-gqa1", 2, 4, 1, 6, 9, 8, 6, BR, 1, 3, 1, 0.7f, PH, SCORE_FULL, F32, SCORE_B1, 1, 0},
};

/* ---- the case's tensors ---- */

typedef struct score_tensor {
    int layout;
    int64_t shape[4], strides[4], span;
} score_tensor;

static void score_layout(score_tensor *t, int layout, const vcase *c)
{
    const int64_t sq = c->sq, skv = c->skv;
    t->layout = layout;
    t->shape[0] = c->batch, t->shape[1] = c->hq, t->shape[2] = sq, t->shape[3] = skv;
    int64_t row = skv;
    if (layout == SCORE_11 || layout == SCORE_1H_PADDED) t->shape[0] = 1;
    if (layout == SCORE_11 || layout == SCORE_B1) t->shape[1] = 1;
    if (layout == SCORE_1H_PADDED) row = skv + 3;
    t->strides[3] = 1, t->strides[2] = row;
    t->strides[1] = sq * row, t->strides[0] = t->shape[1] * sq * row;
    if (layout == SCORE_TRANSPOSED) t->strides[2] = 1, t->strides[3] = sq;
    if (layout == SCORE_11) t->strides[0] = t->strides[1] = 0;
    if (layout == SCORE_B_STRIDE0) t->strides[0] = 0;
    t->span = 1;
    for (int d = 0; d < 4; d++)
        t->span += (t->shape[d] - 1) * t->strides[d];
}

/* Element of (b, h, i, j) under broadcasting. */
static int64_t score_index(const score_tensor *t, int64_t b, int64_t h, int64_t i, int64_t j)
{
    return (t->shape[0] == 1 ? 0 : b) * t->strides[0] + (t->shape[1] == 1 ? 0 : h) * t->strides[1] +
           i * t->strides[2] + j * t->strides[3];
}

typedef struct inputs {
    const vcase *c;
    float scale;
    double *q, *k, *v; /* BHSD contiguous, values the library reads */
    score_tensor bias_t, mask_t;
    double *bias; /* bias_t.span values (decoded from bias_dtype) */
    unsigned char *mask;
    double *slopes, *sinks;
    int64_t nq, nk, nv, no, nslopes;
} inputs;

static double uniform(pa_tk_rng *rng, double lo, double hi)
{
    return lo + (hi - lo) * (pa_tk_rng_uniform(rng) + 1.0) / 2.0;
}

static void inputs_init(inputs *in, const vcase *c, polyattn_dtype dtype, uint64_t seed)
{
    pa_tk_rng rng;
    memset(in, 0, sizeof *in);
    pa_tk_rng_seed(&rng, pa_tk_hash(c->name, seed));
    in->c = c;
    in->scale = (float)(1.0 / sqrt((double)c->d));
    in->nq = c->batch * c->hq * c->sq * c->d;
    in->nk = c->batch * c->hkv * c->skv * c->d;
    in->nv = c->batch * c->hkv * c->skv * c->dv;
    in->no = c->batch * c->hq * c->sq * c->dv;
    in->q = malloc(sizeof(double) * in->nq);
    in->k = malloc(sizeof(double) * in->nk);
    in->v = malloc(sizeof(double) * in->nv);
    for (int64_t e = 0; e < in->nq; e++)
        in->q[e] = pa_tk_round((float)uniform(&rng, -1.5, 1.5), dtype);
    for (int64_t e = 0; e < in->nk; e++)
        in->k[e] = pa_tk_round((float)uniform(&rng, -1.5, 1.5), dtype);
    for (int64_t e = 0; e < in->nv; e++)
        in->v[e] = pa_tk_round((float)uniform(&rng, -1, 1), dtype);
    if (c->bias_layout) {
        score_layout(&in->bias_t, c->bias_layout, c);
        in->bias = malloc(sizeof(double) * in->bias_t.span);
        for (int64_t e = 0; e < in->bias_t.span; e++) {
            double x = uniform(&rng, -2, 2);
            if (c->special == SPECIAL_NEGINF_SPRINKLE && pa_tk_rng_next(&rng) % 6 == 0)
                x = -INFINITY;
            in->bias[e] = pa_tk_round((float)x, c->bias_dtype);
        }
    }
    if (c->mask_layout) {
        score_layout(&in->mask_t, c->mask_layout, c);
        in->mask = malloc((size_t)in->mask_t.span);
        for (int64_t e = 0; e < in->mask_t.span; e++)
            in->mask[e] =
                pa_tk_rng_next(&rng) % 4 == 0 ? 0 : (unsigned char)(1 + pa_tk_rng_next(&rng) % 255);
    }
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->hq; h++)
            for (int64_t j = 0; j < c->skv; j++) {
                const int64_t row = c->special == SPECIAL_MASK_ROW     ? 1
                                    : c->special == SPECIAL_NEGINF_ROW ? 2
                                                                       : 0;
                if (c->special == SPECIAL_MASK_ROW)
                    in->mask[score_index(&in->mask_t, b, h, row, j)] = 0;
                if (c->special == SPECIAL_NEGINF_ROW)
                    in->bias[score_index(&in->bias_t, b, h, row, j)] = -INFINITY;
                if (c->special == SPECIAL_NAN_ROW)
                    in->bias[score_index(&in->bias_t, b, h, row, j)] = NAN;
            }
    in->nslopes = c->alibi == PBH ? c->batch * c->hq : c->hq;
    if (c->alibi) {
        in->slopes = malloc(sizeof(double) * in->nslopes);
        for (int64_t e = 0; e < in->nslopes; e++)
            in->slopes[e] = (float)uniform(&rng, 0.05, 0.6);
    }
    if (c->sinks) {
        in->sinks = malloc(sizeof(double) * c->hq);
        for (int64_t h = 0; h < c->hq; h++)
            in->sinks[h] = (float)uniform(&rng, -1, 2.5);
    }
}

static void inputs_free(inputs *in)
{
    free(in->q), free(in->k), free(in->v), free(in->bias), free(in->mask), free(in->slopes);
    free(in->sinks);
}

/* ---- the test's own double reference ---- */

/* O [b,hq,sq,dv], LSE [b,hq,sq], P [b,hq,sq,skv] (any may be NULL), straight from the
 * definition: each pair decided on its own. */
static void reference_forward(const inputs *in, double *o, double *lse, double *probs)
{
    const vcase *c = in->c;
    double *s = malloc(sizeof(double) * c->skv);
    int *vis = malloc(sizeof(int) * c->skv);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->hq; h++)
            for (int64_t i = 0; i < c->sq; i++) {
                const int64_t hk = h / (c->hq / c->hkv), row = (b * c->hq + h) * c->sq + i;
                const int64_t diag = c->mask == TL ? i : i + c->skv - c->sq;
                const double sink = c->sinks ? in->sinks[h] : -INFINITY;
                int nvis = 0, bad = 0;
                double m = sink;
                for (int64_t j = 0; j < c->skv; j++) {
                    int seen = 1;
                    if (c->mask != NM && j > diag) seen = 0;
                    if (c->has_window && c->wl >= 0 && j < diag - c->wl) seen = 0;
                    if (c->has_window && c->wr >= 0 && j > diag + c->wr) seen = 0;
                    if (c->mask_layout && in->mask[score_index(&in->mask_t, b, h, i, j)] == 0)
                        seen = 0;
                    double bias =
                        c->bias_layout ? in->bias[score_index(&in->bias_t, b, h, i, j)] : 0.0;
                    if (bias == -INFINITY) seen = 0;
                    vis[j] = seen;
                    if (!seen) continue;
                    nvis++;
                    double x = 0;
                    for (int64_t e = 0; e < c->d; e++)
                        x += in->q[row * c->d + e] *
                             in->k[((b * c->hkv + hk) * c->skv + j) * c->d + e];
                    x *= in->scale;
                    if (c->softcap > 0) x = c->softcap * tanh(x / c->softcap);
                    if (c->alibi)
                        x -= in->slopes[c->alibi == PBH ? b * c->hq + h : h] *
                             fabs((double)(diag - j));
                    s[j] = x + bias;
                    if (isnan(s[j]) || s[j] == INFINITY) bad = 1;
                    if (s[j] > m) m = s[j];
                }
                if (nvis == 0 || bad || m == -INFINITY) {
                    const double fill = nvis == 0 ? 0.0 : NAN;
                    for (int64_t e = 0; e < c->dv; e++)
                        if (o) o[row * c->dv + e] = fill;
                    if (lse) lse[row] = nvis == 0 ? sink : NAN;
                    for (int64_t j = 0; j < c->skv; j++)
                        if (probs) probs[row * c->skv + j] = vis[j] ? fill : 0.0;
                    continue;
                }
                double l = c->sinks ? exp(sink - m) : 0.0;
                for (int64_t j = 0; j < c->skv; j++)
                    if (vis[j]) l += exp(s[j] - m);
                for (int64_t e = 0; e < c->dv; e++) {
                    double acc = 0;
                    for (int64_t j = 0; j < c->skv; j++)
                        if (vis[j])
                            acc +=
                                exp(s[j] - m) * in->v[((b * c->hkv + hk) * c->skv + j) * c->dv + e];
                    if (o) o[row * c->dv + e] = acc / l;
                }
                if (lse) lse[row] = m + log(l);
                for (int64_t j = 0; j < c->skv; j++)
                    if (probs) probs[row * c->skv + j] = vis[j] ? exp(s[j] - m) / l : 0.0;
            }
    free(s), free(vis);
}

/* ---- running through the public API ---- */

typedef struct device_set {
    polyattn_buffer *q, *k, *v, *slopes, *bias, *mask, *sinks;
    void *q_data, *k_data, *v_data, *bias_data;
    float *slopes_f, *sinks_f;
    polyattn_extra_tensors extra;
} device_set;

static void *encode_doubles(const double *x, int64_t n, polyattn_dtype dtype)
{
    float *f = malloc(sizeof(float) * (size_t)(n ? n : 1));
    void *out = malloc(polyattn_dtype_size(dtype) * (size_t)(n ? n : 1));
    for (int64_t e = 0; e < n; e++)
        f[e] = (float)x[e];
    pa_tk_encode(out, f, (size_t)n, dtype);
    free(f);
    return out;
}

static polyattn_buffer *wrap(void *p, uint64_t bytes)
{
    polyattn_buffer *buf = NULL;
    if (polyattn_host_buffer_wrap(ctx, p, bytes, &buf) != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "wrap failed: %s\n", polyattn_context_last_error(ctx));
        exit(1);
    }
    return buf;
}

static void device_set_init(device_set *ds, const inputs *in, polyattn_dtype dtype)
{
    const vcase *c = in->c;
    const size_t es = polyattn_dtype_size(dtype);
    memset(ds, 0, sizeof *ds);
    ds->q_data = encode_doubles(in->q, in->nq, dtype);
    ds->k_data = encode_doubles(in->k, in->nk, dtype);
    ds->v_data = encode_doubles(in->v, in->nv, dtype);
    ds->q = wrap(ds->q_data, es * in->nq);
    ds->k = wrap(ds->k_data, es * in->nk);
    ds->v = wrap(ds->v_data, es * in->nv);
    ds->extra.struct_size = sizeof ds->extra;
    if (c->bias_layout) {
        ds->bias_data = encode_doubles(in->bias, in->bias_t.span, c->bias_dtype);
        ds->extra.bias = ds->bias =
            wrap(ds->bias_data, polyattn_dtype_size(c->bias_dtype) * in->bias_t.span);
    }
    if (c->mask_layout) ds->extra.attn_mask = ds->mask = wrap(in->mask, in->mask_t.span);
    if (c->alibi) {
        ds->slopes_f = malloc(sizeof(float) * in->nslopes);
        for (int64_t e = 0; e < in->nslopes; e++)
            ds->slopes_f[e] = (float)in->slopes[e];
        ds->extra.alibi_slopes = ds->slopes = wrap(ds->slopes_f, 4 * in->nslopes);
    }
    if (c->sinks) {
        ds->sinks_f = malloc(sizeof(float) * c->hq);
        for (int64_t h = 0; h < c->hq; h++)
            ds->sinks_f[h] = (float)in->sinks[h];
        ds->extra.sinks = ds->sinks = wrap(ds->sinks_f, 4 * c->hq);
    }
}

static void device_set_free(device_set *ds)
{
    polyattn_buffer *bufs[] = {ds->q, ds->k, ds->v, ds->slopes, ds->bias, ds->mask, ds->sinks};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        polyattn_buffer_free(bufs[i]);
    free(ds->q_data), free(ds->k_data), free(ds->v_data), free(ds->bias_data);
    free(ds->slopes_f), free(ds->sinks_f);
}

static void case_desc(const inputs *in, polyattn_dtype dtype, polyattn_attention_desc *d)
{
    const vcase *c = in->c;
    polyattn_attention_desc_init(d, dtype, c->batch, c->hq, c->hkv, c->sq, c->skv, c->d, c->dv);
    d->scale = in->scale;
    d->mask = c->mask;
    d->has_window = c->has_window, d->window_left = c->wl, d->window_right = c->wr;
    d->softcap = c->softcap;
    d->alibi = c->alibi;
    if (c->bias_layout) {
        d->has_bias = 1;
        d->bias.dtype = c->bias_dtype;
        memcpy(d->bias.shape, in->bias_t.shape, sizeof d->bias.shape);
        memcpy(d->bias.strides, in->bias_t.strides, sizeof d->bias.strides);
        if (c->bias_layout == SCORE_B1) d->bias.strides[1] = 12345; /* ignored: extent 1 */
    }
    if (c->mask_layout) {
        d->has_attn_mask = 1;
        d->attn_mask.dtype = POLYATTN_DTYPE_U8;
        memcpy(d->attn_mask.shape, in->mask_t.shape, sizeof d->attn_mask.shape);
        memcpy(d->attn_mask.strides, in->mask_t.strides, sizeof d->attn_mask.strides);
    }
    d->has_sinks = c->sinks;
}

/* |out - ref| within tol * max(1, |ref|); NaN must match NaN, infinities must match. */
static long long compare(const char *what, const float *out, const double *ref, int64_t n,
                         double tol)
{
    long long bad = 0;
    for (int64_t e = 0; e < n; e++) {
        const double x = out[e], r = ref[e];
        int ok;
        if (isnan(r) || isnan(x)) ok = isnan(r) && isnan(x);
        else if (isinf(r) || isinf(x)) ok = x == r;
        else ok = fabs(x - r) <= tol * (fabs(r) > 1 ? fabs(r) : 1);
        if (!ok && bad++ < 3)
            fprintf(stderr, "    %s[%lld]: %.9g, reference %.9g\n", what, (long long)e, x, r);
    }
    return bad;
}

static double dtype_tol(polyattn_dtype dtype)
{
    return dtype == F32 ? 2e-6 : dtype == F16 ? 1.2e-3 : 9e-3;
}

static void run_forward(const vcase *c, polyattn_dtype dtype, polyattn_algo algo)
{
    inputs in;
    device_set ds;
    inputs_init(&in, c, dtype, (uint64_t)dtype * 7 + (uint64_t)algo);
    device_set_init(&ds, &in, dtype);
    polyattn_attention_desc d;
    case_desc(&in, dtype, &d);
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo, opt.want_lse = 1, opt.want_probs = algo == POLYATTN_ALGO_UNFUSED;
    polyattn_plan *plan = NULL;
    polyattn_status st = polyattn_plan_create(ctx, &d, &opt, &plan);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "  %s: plan: %s\n", c->name, polyattn_context_last_error(ctx));
        device_set_free(&ds), inputs_free(&in);
        return;
    }
    const size_t es = polyattn_dtype_size(dtype);
    const int64_t nlse = c->batch * c->hq * c->sq, np = nlse * c->skv;
    void *o_data = malloc(es * in.no);
    float *lse = malloc(4 * nlse), *probs = malloc(4 * np), *o = malloc(4 * in.no);
    pa_tk_poison(o_data, in.no, dtype), pa_tk_poison(lse, nlse, F32), pa_tk_poison(probs, np, F32);
    polyattn_buffer *bo = wrap(o_data, es * in.no), *bl = wrap(lse, 4 * nlse),
                    *bp = wrap(probs, 4 * np);
    st = polyattn_forward_ex(plan, ds.q, ds.k, ds.v, bo, bl, opt.want_probs ? bp : NULL, NULL,
                             &ds.extra);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS)
        fprintf(stderr, "  forward: %s\n", polyattn_context_last_error(ctx));
    pa_tk_decode(o, o_data, in.no, dtype);
    double *ro = malloc(sizeof(double) * in.no), *rl = malloc(sizeof(double) * nlse),
           *rp = malloc(sizeof(double) * np);
    reference_forward(&in, ro, rl, rp);
    long long bad =
        compare("O", o, ro, in.no, dtype_tol(dtype)) + compare("LSE", lse, rl, nlse, 2e-6);
    if (opt.want_probs) bad += compare("P", probs, rp, np, 2e-6);
    /* Fully masked rows and NaN rows are what the case is about: count them to be sure. */
    int64_t masked = 0, nan_rows = 0;
    for (int64_t r = 0; r < nlse; r++) {
        const int sink_only =
            c->sinks && rl[r] == in.sinks[(r / c->sq) % c->hq] && ro[r * c->dv] == 0.0;
        masked += rl[r] == -INFINITY || sink_only;
        nan_rows += isnan(rl[r]) != 0;
    }
    CHECK(bad == 0);
    if (c->special == SPECIAL_NAN_ROW) CHECK(nan_rows == c->batch * c->hq && nan_rows < nlse);
    if (c->special == SPECIAL_MASK_ROW || c->special == SPECIAL_NEGINF_ROW)
        CHECK(masked >= c->batch * c->hq);
    printf("  %-30s %-4s %-7s %s (masked rows %lld, NaN rows %lld)\n", c->name,
           polyattn_dtype_name(dtype), polyattn_algo_name(algo), bad ? "FAIL" : "ok",
           (long long)masked, (long long)nan_rows);
    polyattn_buffer_free(bo), polyattn_buffer_free(bl), polyattn_buffer_free(bp);
    polyattn_plan_destroy(plan);
    free(o_data), free(lse), free(probs), free(o), free(ro), free(rl), free(rp);
    device_set_free(&ds), inputs_free(&in);
}

/* ---- backward against finite differences ---- */

static double loss(const inputs *in, const double *d_o, double *o_scratch)
{
    reference_forward(in, o_scratch, NULL, NULL);
    double l = 0;
    for (int64_t e = 0; e < in->no; e++)
        l += o_scratch[e] * d_o[e];
    return l;
}

/* Central difference of the loss in x[e]. */
static double fd(inputs *in, double *x, const double *d_o, double *scratch)
{
    const double h = 1e-5, keep = *x;
    *x = keep + h;
    const double up = loss(in, d_o, scratch);
    *x = keep - h;
    const double down = loss(in, d_o, scratch);
    *x = keep;
    return (up - down) / (2 * h);
}

/* Compares a gradient with its finite differences relative to the largest of them. */
static long long compare_grad(const char *what, const float *g, const double *ref, int64_t n)
{
    double mx = 1e-3;
    long long bad = 0;
    for (int64_t e = 0; e < n; e++)
        mx = fabs(ref[e]) > mx ? fabs(ref[e]) : mx;
    for (int64_t e = 0; e < n; e++)
        if (!(fabs(g[e] - ref[e]) <= 2e-5 * mx) && bad++ < 3)
            fprintf(stderr, "    %s[%lld]: %.9g, finite differences %.9g\n", what, (long long)e,
                    g[e], ref[e]);
    return bad;
}

static void run_backward(const vcase *c, polyattn_algo algo)
{
    inputs in;
    device_set ds;
    inputs_init(&in, c, F32, 1000 + (uint64_t)algo);
    device_set_init(&ds, &in, F32);
    polyattn_attention_desc d;
    case_desc(&in, F32, &d);
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo, opt.want_backward = 1, opt.want_bias_grad = c->bias_layout != 0;
    polyattn_plan *plan = NULL;
    polyattn_status st = polyattn_plan_create(ctx, &d, &opt, &plan);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "  %s: plan: %s\n", c->name, polyattn_context_last_error(ctx));
        device_set_free(&ds), inputs_free(&in);
        return;
    }
    pa_tk_rng rng;
    pa_tk_rng_seed(&rng, pa_tk_hash(c->name, 99));
    const int64_t nlse = c->batch * c->hq * c->sq;
    const int64_t nbias =
        c->bias_layout ? in.bias_t.shape[0] * in.bias_t.shape[1] * c->sq * c->skv : 0;
    double *d_o = malloc(sizeof(double) * in.no), *scratch = malloc(sizeof(double) * in.no);
    float *d_o_f = malloc(4 * in.no), *o = malloc(4 * in.no), *lse = malloc(4 * nlse);
    float *dq = malloc(4 * in.nq), *dk = malloc(4 * in.nk), *dv = malloc(4 * in.nv);
    float *dbias = malloc(4 * (size_t)(nbias + 1)), *dsinks = malloc(4 * (size_t)c->hq);
    for (int64_t e = 0; e < in.no; e++)
        d_o[e] = d_o_f[e] = (float)pa_tk_rng_uniform(&rng);
    pa_tk_poison(o, in.no, F32), pa_tk_poison(lse, nlse, F32), pa_tk_poison(dq, in.nq, F32);
    pa_tk_poison(dk, in.nk, F32), pa_tk_poison(dv, in.nv, F32), pa_tk_poison(dbias, nbias + 1, F32);
    pa_tk_poison(dsinks, c->hq, F32);
    polyattn_buffer *bo = wrap(o, 4 * in.no), *bl = wrap(lse, 4 * nlse),
                    *bdo = wrap(d_o_f, 4 * in.no);
    polyattn_buffer *bdq = wrap(dq, 4 * in.nq), *bdk = wrap(dk, 4 * in.nk),
                    *bdv = wrap(dv, 4 * in.nv);
    polyattn_buffer *bdb = c->bias_layout ? wrap(dbias, 4 * nbias) : NULL;
    polyattn_buffer *bds = c->sinks ? wrap(dsinks, 4 * c->hq) : NULL;
    st = polyattn_forward_ex(plan, ds.q, ds.k, ds.v, bo, bl, NULL, NULL, &ds.extra);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    polyattn_extra_tensors ex = ds.extra;
    ex.d_bias = bdb, ex.d_sinks = bds;
    st = polyattn_backward_ex(plan, ds.q, ds.k, ds.v, bo, bdo, bl, bdq, bdk, bdv, NULL, &ex);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS)
        fprintf(stderr, "  backward: %s\n", polyattn_context_last_error(ctx));
    /* The inputs the library read are f32 exactly: finite differences on them. */
    double *ref = malloc(sizeof(double) * (size_t)(in.nq + in.nk + in.nv + nbias + c->hq + 1));
    long long bad = 0;
    for (int64_t e = 0; e < in.nq; e++)
        ref[e] = fd(&in, &in.q[e], d_o, scratch);
    bad += compare_grad("dQ", dq, ref, in.nq);
    for (int64_t e = 0; e < in.nk; e++)
        ref[e] = fd(&in, &in.k[e], d_o, scratch);
    bad += compare_grad("dK", dk, ref, in.nk);
    for (int64_t e = 0; e < in.nv; e++)
        ref[e] = fd(&in, &in.v[e], d_o, scratch);
    bad += compare_grad("dV", dv, ref, in.nv);
    if (c->bias_layout) {
        int64_t e = 0;
        for (int64_t b = 0; b < in.bias_t.shape[0]; b++)
            for (int64_t h = 0; h < in.bias_t.shape[1]; h++)
                for (int64_t i = 0; i < c->sq; i++)
                    for (int64_t j = 0; j < c->skv; j++, e++) {
                        double *x = &in.bias[score_index(&in.bias_t, b, h, i, j)];
                        ref[e] = *x == -INFINITY ? 0.0 : fd(&in, x, d_o, scratch);
                    }
        bad += compare_grad("d_bias", dbias, ref, nbias);
    }
    if (c->sinks) {
        for (int64_t h = 0; h < c->hq; h++)
            ref[h] = fd(&in, &in.sinks[h], d_o, scratch);
        bad += compare_grad("d_sinks", dsinks, ref, c->hq);
    }
    CHECK(bad == 0);
    printf("  %-30s %-7s backward %s\n", c->name, polyattn_algo_name(algo), bad ? "FAIL" : "ok");
    polyattn_buffer *bufs[] = {bo, bl, bdo, bdq, bdk, bdv, bdb, bds};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        polyattn_buffer_free(bufs[i]);
    polyattn_plan_destroy(plan);
    free(d_o), free(scratch), free(d_o_f), free(o), free(lse), free(dq), free(dk), free(dv);
    free(dbias), free(dsinks), free(ref);
    device_set_free(&ds), inputs_free(&in);
}

/* ---- errors of the _ex calls: the field named, nothing written ---- */

static int error_names(polyattn_status st, const char *field)
{
    const char *msg = polyattn_context_last_error(ctx);
    const int ok = st == POLYATTN_STATUS_INVALID_ARGUMENT && msg && strstr(msg, field);
    if (!ok)
        fprintf(stderr, "  expected an error naming %s, got %s: %s\n", field,
                polyattn_status_name(st), msg ? msg : "");
    return ok;
}

static void extra_errors(void)
{
    static const vcase c = {"errors", 1,  2, 1,  5,          6,   8, 8, NM, 0,
                            -1,       -1, 0, PH, SCORE_FULL, F32, 0, 1, 0};
    inputs in;
    device_set ds;
    inputs_init(&in, &c, F32, 5);
    device_set_init(&ds, &in, F32);
    polyattn_attention_desc d;
    case_desc(&in, F32, &d);
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = POLYATTN_ALGO_UNFUSED, opt.want_backward = 1;
    polyattn_plan *plan = NULL;
    CHECK(polyattn_plan_create(ctx, &d, &opt, &plan) == POLYATTN_STATUS_SUCCESS);
    if (!plan) return;
    const int64_t nlse = c.batch * c.hq * c.sq;
    unsigned char o[4 * 80], lse[4 * 10], grads[3][4 * 80], dsinks[4 * 2], small[4], extra_mask[64];
    memset(o, 0x5a, sizeof o), memset(lse, 0x5a, sizeof lse), memset(grads, 0x5a, sizeof grads);
    polyattn_buffer *bo = wrap(o, 4 * in.no), *bl = wrap(lse, 4 * nlse), *bsmall = wrap(small, 4);
    polyattn_buffer *bmask = wrap(extra_mask, sizeof extra_mask),
                    *bds = wrap(dsinks, sizeof dsinks);
    polyattn_buffer *bg[3] = {wrap(grads[0], 4 * in.nq), wrap(grads[1], 4 * in.nk),
                              wrap(grads[2], 4 * in.nv)};
    polyattn_extra_tensors ex = ds.extra;
    CHECK(error_names(polyattn_forward_ex(plan, ds.q, ds.k, ds.v, bo, bl, NULL, NULL, NULL),
                      "extra.alibi_slopes"));
    CHECK(error_names(polyattn_forward(plan, ds.q, ds.k, ds.v, bo, bl, NULL, NULL),
                      "extra.alibi_slopes"));
    ex.bias = NULL;
    CHECK(error_names(polyattn_forward_ex(plan, ds.q, ds.k, ds.v, bo, bl, NULL, NULL, &ex),
                      "extra.bias"));
    ex.bias = bsmall;
    CHECK(error_names(polyattn_forward_ex(plan, ds.q, ds.k, ds.v, bo, bl, NULL, NULL, &ex),
                      "extra.bias"));
    ex = ds.extra, ex.sinks = bsmall;
    CHECK(error_names(polyattn_forward_ex(plan, ds.q, ds.k, ds.v, bo, bl, NULL, NULL, &ex),
                      "extra.sinks"));
    ex = ds.extra, ex.attn_mask = bmask;
    CHECK(error_names(polyattn_forward_ex(plan, ds.q, ds.k, ds.v, bo, bl, NULL, NULL, &ex),
                      "extra.attn_mask"));
    ex = ds.extra, ex.struct_size = 8;
    CHECK(error_names(polyattn_forward_ex(plan, ds.q, ds.k, ds.v, bo, bl, NULL, NULL, &ex),
                      "struct_size"));
    int untouched = 1;
    for (size_t e = 0; e < sizeof o; e++)
        untouched &= o[e] == 0x5a;
    for (size_t e = 0; e < sizeof lse; e++)
        untouched &= lse[e] == 0x5a;
    CHECK(untouched);
    /* One struct serves the forward and its backward: the forward ignores the gradients. */
    ex = ds.extra, ex.d_sinks = bds;
    CHECK(polyattn_forward_ex(plan, ds.q, ds.k, ds.v, bo, bl, NULL, NULL, &ex) ==
          POLYATTN_STATUS_SUCCESS);
    /* Backward: d_sinks missing or short, d_bias without want_bias_grad. */
    ex = ds.extra;
    CHECK(error_names(
        polyattn_backward_ex(plan, ds.q, ds.k, ds.v, bo, bo, bl, bg[0], bg[1], bg[2], NULL, &ex),
        "extra.d_sinks"));
    ex.d_sinks = bsmall;
    CHECK(error_names(
        polyattn_backward_ex(plan, ds.q, ds.k, ds.v, bo, bo, bl, bg[0], bg[1], bg[2], NULL, &ex),
        "extra.d_sinks"));
    ex.d_sinks = bds, ex.d_bias = bmask;
    CHECK(error_names(
        polyattn_backward_ex(plan, ds.q, ds.k, ds.v, bo, bo, bl, bg[0], bg[1], bg[2], NULL, &ex),
        "extra.d_bias"));
    ex.d_bias = NULL, ex.sinks = NULL;
    CHECK(error_names(
        polyattn_backward_ex(plan, ds.q, ds.k, ds.v, bo, bo, bl, bg[0], bg[1], bg[2], NULL, &ex),
        "extra.sinks"));
    CHECK(error_names(
        polyattn_backward(plan, ds.q, ds.k, ds.v, bo, bo, bl, bg[0], bg[1], bg[2], NULL),
        "extra."));
    for (size_t e = 0; e < sizeof grads; e++)
        untouched &= ((unsigned char *)grads)[e] == 0x5a;
    CHECK(untouched);
    /* want_bias_grad: d_bias must then be given and large enough. */
    polyattn_plan *plan_bg = NULL;
    opt.want_bias_grad = 1;
    CHECK(polyattn_plan_create(ctx, &d, &opt, &plan_bg) == POLYATTN_STATUS_SUCCESS);
    ex = ds.extra, ex.d_sinks = bds;
    CHECK(error_names(
        polyattn_backward_ex(plan_bg, ds.q, ds.k, ds.v, bo, bo, bl, bg[0], bg[1], bg[2], NULL, &ex),
        "extra.d_bias"));
    ex.d_bias = bsmall;
    CHECK(error_names(
        polyattn_backward_ex(plan_bg, ds.q, ds.k, ds.v, bo, bo, bl, bg[0], bg[1], bg[2], NULL, &ex),
        "extra.d_bias"));
    for (size_t e = 0; e < sizeof grads; e++)
        untouched &= ((unsigned char *)grads)[e] == 0x5a;
    CHECK(untouched);
    polyattn_plan_destroy(plan_bg);
    polyattn_buffer *bufs[] = {bo, bl, bsmall, bmask, bds, bg[0], bg[1], bg[2]};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        polyattn_buffer_free(bufs[i]);
    polyattn_plan_destroy(plan);
    device_set_free(&ds), inputs_free(&in);
    printf("  extra-tensor errors checked\n");
}

/* The reference must be able to fail: a wrong sink, window or bias is caught. */
static void reference_can_fail(void)
{
    const vcase *c = &fwd_cases[0];
    inputs in;
    inputs_init(&in, c, F32, 3);
    double *a = malloc(sizeof(double) * in.no), *b = malloc(sizeof(double) * in.no);
    float *af = malloc(sizeof(float) * in.no);
    reference_forward(&in, a, NULL, NULL);
    vcase shifted = *c;
    shifted.wl = c->wl + 1;
    in.c = &shifted;
    reference_forward(&in, b, NULL, NULL);
    for (int64_t e = 0; e < in.no; e++)
        af[e] = (float)a[e];
    CHECK(compare("shifted window (expected to differ)", af, b, in.no, 1e-6) > 0);
    free(a), free(b), free(af);
    in.c = c;
    inputs_free(&in);
}

int main(void)
{
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "no host context: %s\n", polyattn_last_error());
        return 1;
    }
    const polyattn_dtype dtypes[] = {F32, F16, BF16};
    const polyattn_algo algos[] = {POLYATTN_ALGO_UNFUSED, POLYATTN_ALGO_FLASH};
    printf("forward:\n");
    for (size_t i = 0; i < sizeof fwd_cases / sizeof fwd_cases[0]; i++)
        for (int t = 0; t < 3; t++)
            for (int a = 0; a < 2; a++)
                run_forward(&fwd_cases[i], dtypes[t], algos[a]);
    printf("backward:\n");
    for (size_t i = 0; i < sizeof bwd_cases / sizeof bwd_cases[0]; i++)
        for (int a = 0; a < 2; a++)
            run_backward(&bwd_cases[i], algos[a]);
    extra_errors();
    reference_can_fail();
    polyattn_context_destroy(ctx);
    pa_tk_shutdown();
    printf("test_variants_host: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
