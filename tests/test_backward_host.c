/*
 * The host backward checked against central finite differences of the forward.
 *
 * Why finite differences in double, in the test itself: the loss L = sum(dO * O) is
 * differentiated by a small double-precision forward written here (independent of the
 * library), with step h = 1e-4 on the very values the library reads (inputs rounded to the
 * dtype first).  The truncation error is O(h^2) ~ 1e-8 and the cancellation error
 * ~ 1e-16 / h ~ 1e-12, so the finite differences are exact far below the library's own
 * output rounding; a tolerance of 2e-6 (f32) relative to the largest gradient then checks
 * the gradients tightly (a missing softmax-Jacobian term or a wrong GQA sum is off by O(1)).
 * Finite differences of the library's f32 forward would need h ~ 1e-2 and a loose
 * tolerance that hides real errors.
 *
 * Also: the library's forward agrees with the test's (same semantics of masks, scale and
 * GQA); unfused and flash backward agree to ~1e-6; fully masked rows give dq = 0 exactly,
 * keys no query sees give dk = dv = 0; outputs are poisoned before each run and every
 * element is checked; the deterministic flag gives bitwise-equal results; each validation
 * rejection of polyattn_backward names its argument.
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

typedef struct bwd_case {
    const char *name;
    int64_t batch, heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v;
    polyattn_mask mask;
    int bshd; /* heads interleaved: strides that are not BHSD */
    float scale;
} bwd_case;

static const bwd_case cases[] = {
    {"none-basic", 1, 2, 2, 5, 7, 8, 8, POLYATTN_MASK_NONE, 0, 0.0f},
    {"tl-gqa-dv12", 2, 4, 2, 7, 5, 8, 12, POLYATTN_MASK_CAUSAL_TOP_LEFT, 0, 0.0f},
    {"br-masked-rows", 1, 3, 1, 9, 5, 16, 8, POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT, 1, 0.0f},
    {"br-long-kv", 2, 4, 4, 6, 13, 8, 8, POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT, 1, 0.3f},
    {"tl-unseen-keys", 1, 2, 1, 5, 11, 12, 12, POLYATTN_MASK_CAUSAL_TOP_LEFT, 0, 0.0f},
    {"none-kv70-blocks", 1, 2, 1, 7, 70, 8, 8, POLYATTN_MASK_NONE, 1, 0.0f},
    {"tl-kv70-gqa", 1, 4, 2, 70, 67, 8, 8, POLYATTN_MASK_CAUSAL_TOP_LEFT, 0, 0.0f},
};

/* ---- the test's own double forward (BHSD contiguous arrays) ---- */

typedef struct dims {
    int64_t batch, heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v;
    polyattn_mask mask;
    double scale;
} dims;

static int64_t visible(const dims *d, int64_t i)
{
    int64_t n = d->seq_kv;
    if (d->mask == POLYATTN_MASK_CAUSAL_TOP_LEFT) n = i + 1;
    if (d->mask == POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT) n = i + 1 + d->seq_kv - d->seq_q;
    return n < 0 ? 0 : (n > d->seq_kv ? d->seq_kv : n);
}

/* O in double; lse may be NULL. */
static void forward_double(const dims *d, const double *q, const double *k, const double *v,
                           double *o, double *lse)
{
    double *s = malloc((size_t)d->seq_kv * sizeof *s);
    for (int64_t b = 0; b < d->batch; b++)
        for (int64_t h = 0; h < d->heads_q; h++) {
            const int64_t hk = h / (d->heads_q / d->heads_kv);
            const double *kh = k + (b * d->heads_kv + hk) * d->seq_kv * d->head_dim;
            const double *vh = v + (b * d->heads_kv + hk) * d->seq_kv * d->head_dim_v;
            for (int64_t i = 0; i < d->seq_q; i++) {
                const int64_t row = (b * d->heads_q + h) * d->seq_q + i, n = visible(d, i);
                const double *qi = q + row * d->head_dim;
                double *oi = o + row * d->head_dim_v, mx = -INFINITY, sum = 0.0;
                for (int64_t x = 0; x < d->head_dim_v; x++)
                    oi[x] = 0.0;
                if (lse) lse[row] = -INFINITY;
                if (n == 0) continue;
                for (int64_t j = 0; j < n; j++) {
                    double dot = 0.0;
                    for (int64_t x = 0; x < d->head_dim; x++)
                        dot += qi[x] * kh[j * d->head_dim + x];
                    s[j] = d->scale * dot;
                    if (s[j] > mx) mx = s[j];
                }
                for (int64_t j = 0; j < n; j++)
                    sum += (s[j] = exp(s[j] - mx));
                for (int64_t j = 0; j < n; j++)
                    for (int64_t x = 0; x < d->head_dim_v; x++)
                        oi[x] += s[j] / sum * vh[j * d->head_dim_v + x];
                if (lse) lse[row] = mx + log(sum);
            }
        }
    free(s);
}

static double loss(const dims *d, const double *q, const double *k, const double *v,
                   const double *d_o, double *o_scratch, size_t o_n)
{
    double l = 0.0;
    forward_double(d, q, k, v, o_scratch, NULL);
    for (size_t i = 0; i < o_n; i++)
        l += d_o[i] * o_scratch[i];
    return l;
}

/* Central differences of the loss with respect to every element of x (one of q, k, v). */
static void finite_differences(const dims *d, double *q, double *k, double *v, const double *d_o,
                               double *x, size_t n, double *grad, size_t o_n)
{
    const double h = 1e-4;
    double *o = malloc(o_n * sizeof *o);
    for (size_t i = 0; i < n; i++) {
        const double x0 = x[i];
        double lp, lm;
        x[i] = x0 + h;
        lp = loss(d, q, k, v, d_o, o, o_n);
        x[i] = x0 - h;
        lm = loss(d, q, k, v, d_o, o, o_n);
        x[i] = x0;
        grad[i] = (lp - lm) / (2.0 * h);
    }
    free(o);
}

/* ---- moving BHSD double arrays in and out of strided device tensors ---- */

static void tensor_desc(polyattn_tensor_desc *t, polyattn_dtype dtype, int bshd, int64_t batch,
                        int64_t heads, int64_t seq, int64_t dim)
{
    if (bshd) polyattn_tensor_desc_bshd(t, dtype, batch, heads, seq, dim);
    else polyattn_tensor_desc_bhsd(t, dtype, batch, heads, seq, dim);
}

static size_t elems(const polyattn_tensor_desc *t)
{
    return (size_t)(t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3]);
}

static int64_t offset_of(const polyattn_tensor_desc *t, size_t linear)
{
    int64_t idx[4], rest = (int64_t)linear, off = 0;
    for (int a = 3; a >= 0; a--)
        idx[a] = rest % t->shape[a], rest /= t->shape[a];
    for (int a = 0; a < 4; a++)
        off += idx[a] * t->strides[a];
    return off;
}

static polyattn_buffer *upload(const polyattn_tensor_desc *t, const double *src)
{
    const uint64_t bytes = polyattn_tensor_desc_bytes(t);
    const size_t es = polyattn_dtype_size(t->dtype);
    unsigned char *raw = malloc((size_t)bytes);
    polyattn_buffer *buf = NULL;
    pa_tk_poison(raw, (size_t)bytes / es, t->dtype);
    for (size_t i = 0; i < elems(t); i++) {
        float f = (float)src[i];
        pa_tk_encode(raw + offset_of(t, i) * (int64_t)es, &f, 1, t->dtype);
    }
    if (polyattn_buffer_alloc(ctx, bytes, &buf) == POLYATTN_STATUS_SUCCESS)
        polyattn_buffer_write(buf, 0, raw, bytes);
    free(raw);
    return buf;
}

static polyattn_buffer *poisoned(uint64_t bytes)
{
    polyattn_buffer *buf = NULL;
    unsigned char *raw = malloc((size_t)bytes);
    pa_tk_poison(raw, (size_t)bytes / 4, POLYATTN_DTYPE_F32);
    if (polyattn_buffer_alloc(ctx, bytes, &buf) == POLYATTN_STATUS_SUCCESS)
        polyattn_buffer_write(buf, 0, raw, bytes);
    free(raw);
    return buf;
}

static void download(const polyattn_tensor_desc *t, const polyattn_buffer *buf, double *dst)
{
    const uint64_t bytes = polyattn_tensor_desc_bytes(t);
    const size_t es = polyattn_dtype_size(t->dtype);
    unsigned char *raw = malloc((size_t)bytes);
    polyattn_buffer_read(buf, 0, raw, bytes);
    for (size_t i = 0; i < elems(t); i++) {
        float f;
        pa_tk_decode(&f, raw + offset_of(t, i) * (int64_t)es, 1, t->dtype);
        dst[i] = f;
    }
    free(raw);
}

/* ---- one case, one dtype ---- */

typedef struct grads {
    double *dq, *dk, *dv;
} grads;

typedef struct problem {
    const bwd_case *c;
    polyattn_dtype dtype;
    dims d;
    polyattn_attention_desc desc;
    size_t nq, nk, nv, no, rows;
    double *q, *k, *v, *d_o; /* rounded to dtype */
    grads fd;                /* finite differences */
} problem;

static void problem_init(problem *pr, const bwd_case *c, polyattn_dtype dtype)
{
    pa_tk_rng rng;
    memset(pr, 0, sizeof *pr);
    pr->c = c;
    pr->dtype = dtype;
    polyattn_attention_desc_init(&pr->desc, dtype, c->batch, c->heads_q, c->heads_kv, c->seq_q,
                                 c->seq_kv, c->head_dim, c->head_dim_v);
    tensor_desc(&pr->desc.q, dtype, c->bshd, c->batch, c->heads_q, c->seq_q, c->head_dim);
    tensor_desc(&pr->desc.k, dtype, c->bshd, c->batch, c->heads_kv, c->seq_kv, c->head_dim);
    tensor_desc(&pr->desc.v, dtype, c->bshd, c->batch, c->heads_kv, c->seq_kv, c->head_dim_v);
    tensor_desc(&pr->desc.o, dtype, c->bshd, c->batch, c->heads_q, c->seq_q, c->head_dim_v);
    pr->desc.mask = c->mask;
    pr->desc.scale = c->scale;
    pr->d = (dims){c->batch,
                   c->heads_q,
                   c->heads_kv,
                   c->seq_q,
                   c->seq_kv,
                   c->head_dim,
                   c->head_dim_v,
                   c->mask,
                   c->scale != 0.0f ? (double)c->scale : 1.0 / sqrt((double)c->head_dim)};
    pr->nq = elems(&pr->desc.q), pr->nk = elems(&pr->desc.k), pr->nv = elems(&pr->desc.v);
    pr->no = elems(&pr->desc.o);
    pr->rows = (size_t)(c->batch * c->heads_q * c->seq_q);
    pr->q = malloc(pr->nq * sizeof(double)), pr->k = malloc(pr->nk * sizeof(double));
    pr->v = malloc(pr->nv * sizeof(double)), pr->d_o = malloc(pr->no * sizeof(double));
    pa_tk_rng_seed(&rng, pa_tk_hash(c->name, (uint64_t)dtype));
    /* Magnitude 2 makes the softmax far from uniform, so P's Jacobian matters. */
    for (size_t i = 0; i < pr->nq; i++)
        pr->q[i] = pa_tk_round((float)(2.0 * pa_tk_rng_uniform(&rng)), dtype);
    for (size_t i = 0; i < pr->nk; i++)
        pr->k[i] = pa_tk_round((float)(2.0 * pa_tk_rng_uniform(&rng)), dtype);
    for (size_t i = 0; i < pr->nv; i++)
        pr->v[i] = pa_tk_round((float)pa_tk_rng_uniform(&rng), dtype);
    for (size_t i = 0; i < pr->no; i++)
        pr->d_o[i] = pa_tk_round((float)pa_tk_rng_uniform(&rng), dtype);
    pr->fd.dq = malloc(pr->nq * sizeof(double));
    pr->fd.dk = malloc(pr->nk * sizeof(double));
    pr->fd.dv = malloc(pr->nv * sizeof(double));
    finite_differences(&pr->d, pr->q, pr->k, pr->v, pr->d_o, pr->q, pr->nq, pr->fd.dq, pr->no);
    finite_differences(&pr->d, pr->q, pr->k, pr->v, pr->d_o, pr->k, pr->nk, pr->fd.dk, pr->no);
    finite_differences(&pr->d, pr->q, pr->k, pr->v, pr->d_o, pr->v, pr->nv, pr->fd.dv, pr->no);
}

static void grads_free(grads *g)
{
    free(g->dq), free(g->dk), free(g->dv);
    memset(g, 0, sizeof *g);
}

static void problem_free(problem *pr)
{
    free(pr->q), free(pr->k), free(pr->v), free(pr->d_o);
    grads_free(&pr->fd);
}

/* Forward (want_backward) then backward on the host through the public API.  Checks the
 * forward against the test's double forward on the way. */
static polyattn_status run_library(const problem *pr, polyattn_algo algo, int deterministic,
                                   grads *out)
{
    polyattn_plan_options opt;
    polyattn_plan *plan = NULL;
    polyattn_plan_info info;
    polyattn_status st;
    const polyattn_attention_desc *desc = &pr->desc;
    polyattn_buffer *bq, *bk, *bv, *bo, *bl, *bdo, *bdq, *bdk, *bdv;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_backward = 1;
    opt.deterministic = deterministic;
    st = polyattn_plan_create(ctx, desc, &opt, &plan);
    if (st != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "%s: plan: %s\n", pr->c->name, polyattn_context_last_error(ctx));
        return st;
    }
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK(polyattn_plan_get_info(plan, &info) == POLYATTN_STATUS_SUCCESS);
    CHECK(info.algo == algo && info.backward_workspace_bytes == 0);
    bq = upload(&desc->q, pr->q), bk = upload(&desc->k, pr->k), bv = upload(&desc->v, pr->v);
    bdo = upload(&desc->o, pr->d_o);
    bo = poisoned(polyattn_tensor_desc_bytes(&desc->o));
    bl = poisoned(pr->rows * 4);
    bdq = poisoned(polyattn_tensor_desc_bytes(&desc->q));
    bdk = poisoned(polyattn_tensor_desc_bytes(&desc->k));
    bdv = poisoned(polyattn_tensor_desc_bytes(&desc->v));
    /* want_backward implies want_lse: the forward must get an LSE buffer. */
    CHECK(polyattn_forward(plan, bq, bk, bv, bo, NULL, NULL, NULL) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(polyattn_context_last_error(ctx), "lse") != NULL);
    st = polyattn_forward(plan, bq, bk, bv, bo, bl, NULL, NULL);
    if (st == POLYATTN_STATUS_SUCCESS) {
        /* The library's forward must be the function the finite differences differentiate. */
        double *o = malloc(pr->no * sizeof *o), *o_ref = malloc(pr->no * sizeof *o_ref);
        double max_err = 0.0, max_ref = 0.0;
        forward_double(&pr->d, pr->q, pr->k, pr->v, o_ref, NULL);
        download(&desc->o, bo, o);
        for (size_t i = 0; i < pr->no; i++) {
            max_err = fmax(max_err, fabs(o[i] - o_ref[i]));
            max_ref = fmax(max_ref, fabs(o_ref[i]));
            if (isnan(o[i])) max_err = INFINITY;
        }
        CHECK(max_err <= (pr->dtype == POLYATTN_DTYPE_F32 ? 1e-6 : 1e-2) * max_ref);
        free(o), free(o_ref);
        st = polyattn_backward(plan, bq, bk, bv, bo, bdo, bl, bdq, bdk, bdv, NULL);
        if (st != POLYATTN_STATUS_SUCCESS)
            fprintf(stderr, "%s: backward: %s\n", pr->c->name, polyattn_context_last_error(ctx));
    }
    if (st == POLYATTN_STATUS_SUCCESS) {
        out->dq = malloc(pr->nq * sizeof(double));
        out->dk = malloc(pr->nk * sizeof(double));
        out->dv = malloc(pr->nv * sizeof(double));
        download(&desc->q, bdq, out->dq);
        download(&desc->k, bdk, out->dk);
        download(&desc->v, bdv, out->dv);
    }
    polyattn_buffer_free(bq), polyattn_buffer_free(bk), polyattn_buffer_free(bv);
    polyattn_buffer_free(bo), polyattn_buffer_free(bl), polyattn_buffer_free(bdo);
    polyattn_buffer_free(bdq), polyattn_buffer_free(bdk), polyattn_buffer_free(bdv);
    polyattn_plan_destroy(plan);
    return st;
}

/* Largest |got - want| over the largest |want|; NaN anywhere gives infinity. */
static double rel_error(const double *got, const double *want, size_t n)
{
    double err = 0.0, ref = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(got[i]) || isinf(got[i])) return INFINITY;
        err = fmax(err, fabs(got[i] - want[i]));
        ref = fmax(ref, fabs(want[i]));
    }
    return ref > 0.0 ? err / ref : err;
}

static double tolerance(polyattn_dtype dtype)
{
    /* f32: output rounding 6e-8 plus the f32 LSE and O the flash path reads (~1e-6);
     * f16/bf16: output rounding (2^-11, 2^-8) and the rounded O and LSE. */
    return dtype == POLYATTN_DTYPE_F32 ? 2e-6 : (dtype == POLYATTN_DTYPE_F16 ? 2e-3 : 1.5e-2);
}

static void check_grads(const problem *pr, const char *what, const grads *g, const grads *want,
                        double tol)
{
    const double eq = rel_error(g->dq, want->dq, pr->nq), ek = rel_error(g->dk, want->dk, pr->nk),
                 ev = rel_error(g->dv, want->dv, pr->nv);
    const int ok = eq <= tol && ek <= tol && ev <= tol;
    checks++;
    if (!ok) failures++;
    printf("%-4s %-18s %-6s %-26s dq %.2e dk %.2e dv %.2e (tol %.0e)\n", ok ? "ok" : "FAIL",
           pr->c->name, polyattn_dtype_name(pr->dtype), what, eq, ek, ev, tol);
}

/* Exact zeros where the gradient is structurally zero. */
static void check_structural_zeros(const problem *pr, const grads *g)
{
    const dims *d = &pr->d;
    long long bad = 0;
    for (int64_t b = 0; b < d->batch; b++)
        for (int64_t h = 0; h < d->heads_q; h++)
            for (int64_t i = 0; i < d->seq_q; i++)
                if (visible(d, i) == 0)
                    for (int64_t x = 0; x < d->head_dim; x++)
                        bad +=
                            g->dq[((b * d->heads_q + h) * d->seq_q + i) * d->head_dim + x] != 0.0;
    /* A key no query sees: beyond the last query's visible range. */
    int64_t seen = 0;
    for (int64_t i = 0; i < d->seq_q; i++)
        seen = visible(d, i) > seen ? visible(d, i) : seen;
    for (int64_t b = 0; b < d->batch; b++)
        for (int64_t hk = 0; hk < d->heads_kv; hk++)
            for (int64_t j = seen; j < d->seq_kv; j++) {
                for (int64_t x = 0; x < d->head_dim; x++)
                    bad += g->dk[((b * d->heads_kv + hk) * d->seq_kv + j) * d->head_dim + x] != 0.0;
                for (int64_t x = 0; x < d->head_dim_v; x++)
                    bad +=
                        g->dv[((b * d->heads_kv + hk) * d->seq_kv + j) * d->head_dim_v + x] != 0.0;
            }
    CHECK(bad == 0);
}

static int same_bits(const double *a, const double *b, size_t n)
{
    return memcmp(a, b, n * sizeof *a) == 0;
}

static void test_case(const bwd_case *c, polyattn_dtype dtype)
{
    problem pr;
    grads unf = {0}, fla = {0}, again = {0};
    problem_init(&pr, c, dtype);
    CHECK(run_library(&pr, POLYATTN_ALGO_UNFUSED, 0, &unf) == POLYATTN_STATUS_SUCCESS);
    CHECK(run_library(&pr, POLYATTN_ALGO_FLASH, 0, &fla) == POLYATTN_STATUS_SUCCESS);
    if (unf.dq && fla.dq) {
        check_grads(&pr, "unfused vs finite diff", &unf, &pr.fd, tolerance(dtype));
        check_grads(&pr, "flash vs finite diff", &fla, &pr.fd, tolerance(dtype));
        if (dtype == POLYATTN_DTYPE_F32) check_grads(&pr, "flash vs unfused", &fla, &unf, 1e-6);
        check_structural_zeros(&pr, &unf);
        check_structural_zeros(&pr, &fla);
    }
    /* Deterministic mode: accepted, and two runs give the same bits. */
    if (fla.dq && run_library(&pr, POLYATTN_ALGO_FLASH, 1, &again) == POLYATTN_STATUS_SUCCESS) {
        CHECK(same_bits(again.dq, fla.dq, pr.nq) && same_bits(again.dk, fla.dk, pr.nk) &&
              same_bits(again.dv, fla.dv, pr.nv));
    } else {
        CHECK(!"deterministic flash backward ran");
    }
    grads_free(&unf), grads_free(&fla), grads_free(&again);
    problem_free(&pr);
}

/* ---- validation ---- */

static void expect_reject(int line, polyattn_status st, polyattn_status want, const char *name)
{
    const char *msg = polyattn_context_last_error(ctx);
    checks++;
    /* "q: " must begin the message (so that "dq: ..." does not pass for q). */
    if (st != want || !(name[strlen(name) - 1] == ' ' ? strncmp(msg, name, strlen(name)) == 0
                                                      : strstr(msg, name) != NULL)) {
        fprintf(stderr, "line %d: got %s \"%s\", want %s naming \"%s\"\n", line,
                polyattn_status_name(st), msg, polyattn_status_name(want), name);
        failures++;
    }
}

static void test_validation(void)
{
    polyattn_attention_desc desc;
    polyattn_plan_options opt;
    polyattn_plan *plan = NULL, *fwd_only = NULL;
    polyattn_context *other = NULL;
    polyattn_buffer *bq, *bk, *bv, *bo, *bdo, *bl, *bdq, *bdk, *bdv, *small, *foreign = NULL;
    polyattn_buffer *big = NULL, *dq_in_big = NULL, *dk_in_big = NULL;
    polyattn_status st;
    polyattn_attention_desc_init(&desc, POLYATTN_DTYPE_F32, 1, 2, 1, 5, 6, 8, 4);
    const uint64_t qb = polyattn_tensor_desc_bytes(&desc.q),
                   kb = polyattn_tensor_desc_bytes(&desc.k),
                   vb = polyattn_tensor_desc_bytes(&desc.v),
                   ob = polyattn_tensor_desc_bytes(&desc.o);
    polyattn_plan_options_init(&opt);
    CHECK(opt.want_backward == 0 && opt.deterministic == 0);
    CHECK(polyattn_plan_create(ctx, &desc, &opt, &fwd_only) == POLYATTN_STATUS_SUCCESS);
    opt.want_backward = 1;
    opt.deterministic = 1;
    CHECK(polyattn_plan_create(ctx, &desc, &opt, &plan) == POLYATTN_STATUS_SUCCESS);
    /* The host has no fused algorithm at all; asking for it with backward says why. */
    {
        polyattn_plan *fused = NULL;
        opt.algo = POLYATTN_ALGO_FUSED;
        st = polyattn_plan_create(ctx, &desc, &opt, &fused);
        expect_reject(__LINE__, st, POLYATTN_STATUS_UNSUPPORTED, "fused");
        CHECK(fused == NULL);
        opt.algo = POLYATTN_ALGO_AUTO;
    }
    bq = poisoned(qb), bk = poisoned(kb), bv = poisoned(vb), bo = poisoned(ob);
    bdo = poisoned(ob), bl = poisoned(10 * 4), bdq = poisoned(qb), bdk = poisoned(kb);
    bdv = poisoned(vb), small = poisoned(4);
    CHECK(polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &other) == POLYATTN_STATUS_SUCCESS);
    if (other) polyattn_buffer_alloc(other, qb, &foreign);
    /* dq and dk as two views of one buffer, overlapping by one element. */
    polyattn_buffer_alloc(ctx, qb + kb, &big);
    polyattn_buffer_view(big, 0, qb, &dq_in_big);
    polyattn_buffer_view(big, qb - 4, kb, &dk_in_big);

    CHECK(polyattn_backward(NULL, bq, bk, bv, bo, bdo, bl, bdq, bdk, bdv, NULL) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    st = polyattn_backward(fwd_only, bq, bk, bv, bo, bdo, bl, bdq, bdk, bdv, NULL);
    expect_reject(__LINE__, st, POLYATTN_STATUS_INVALID_ARGUMENT, "want_backward");

    /* Each argument NULL, too small, and from another context. */
    const char *names[9] = {"q", "k", "v", "o", "d_o", "lse", "dq", "dk", "dv"};
    for (int a = 0; a < 9; a++) {
        polyattn_buffer *args[9] = {bq, bk, bv, bo, bdo, bl, bdq, bdk, bdv};
        char want[32];
        for (int kind = 0; kind < 3; kind++) {
            args[a] = kind == 0 ? NULL : (kind == 1 ? small : foreign);
            if (kind == 2 && !foreign) continue;
            st = polyattn_backward(plan, args[0], args[1], args[2], args[3], args[4], args[5],
                                   args[6], args[7], args[8], NULL);
            snprintf(want, sizeof want, "%s: ", names[a]);
            expect_reject(__LINE__, st, POLYATTN_STATUS_INVALID_ARGUMENT, want);
        }
    }
    /* Outputs aliasing inputs or each other. */
    st = polyattn_backward(plan, bq, bk, bv, bo, bdo, bl, bq, bdk, bdv, NULL);
    expect_reject(__LINE__, st, POLYATTN_STATUS_INVALID_ARGUMENT, "dq: overlaps q");
    st = polyattn_backward(plan, bq, bk, bv, bo, bdo, bl, bdq, bdk, bo, NULL);
    expect_reject(__LINE__, st, POLYATTN_STATUS_INVALID_ARGUMENT, "dv: overlaps o");
    st = polyattn_backward(plan, bq, bk, bv, bo, bdo, bl, bdq, bdq, bdv, NULL);
    expect_reject(__LINE__, st, POLYATTN_STATUS_INVALID_ARGUMENT, "dk: overlaps dq");
    if (dq_in_big && dk_in_big) {
        st = polyattn_backward(plan, bq, bk, bv, bo, bdo, bl, dq_in_big, dk_in_big, bdv, NULL);
        expect_reject(__LINE__, st, POLYATTN_STATUS_INVALID_ARGUMENT, "dk: overlaps dq");
    }
    /* Inputs may share memory: o and d_o the same buffer is fine (both read). */
    st = polyattn_backward(plan, bq, bk, bv, bo, bo, bl, bdq, bdk, bdv, NULL);
    CHECK(st == POLYATTN_STATUS_SUCCESS);

    polyattn_buffer_free(dk_in_big), polyattn_buffer_free(dq_in_big), polyattn_buffer_free(big);
    polyattn_buffer_free(foreign);
    polyattn_context_destroy(other);
    polyattn_buffer_free(bq), polyattn_buffer_free(bk), polyattn_buffer_free(bv);
    polyattn_buffer_free(bo), polyattn_buffer_free(bdo), polyattn_buffer_free(bl);
    polyattn_buffer_free(bdq), polyattn_buffer_free(bdk), polyattn_buffer_free(bdv);
    polyattn_buffer_free(small);
    polyattn_plan_destroy(plan);
    polyattn_plan_destroy(fwd_only);
}

int main(void)
{
    const polyattn_dtype dtypes[3] = {POLYATTN_DTYPE_F32, POLYATTN_DTYPE_F16, POLYATTN_DTYPE_BF16};
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "cannot create a host context: %s\n", polyattn_last_error());
        return 1;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (int t = 0; t < 3; t++)
            if (t == 0 || i % 3 == 1 || i == 2) test_case(&cases[i], dtypes[t]);
    test_validation();
    polyattn_context_destroy(ctx);
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
