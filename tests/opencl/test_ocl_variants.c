/*
 * OpenCL score variants (window, softcap, ALiBi, bias f32/f16/bf16 with broadcast, u8
 * attn_mask, sinks) on every algorithm, forward and backward, against a double-precision
 * evaluation of the semantics in polyattn.h, and against the host backend wherever the host
 * plans the same problem.  Odd sizes, GQA, both causal alignments, broadcast bias, fully
 * masked rows (seq_q > seq_kv bottom-right, attn_mask rows of zeros, -inf bias rows).
 * Outputs are poisoned before each call and every element is checked.  Last, a sliding
 * window flash forward must cost far less than the full one (key tiles are skipped).
 */
#include "pa_testkit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures;

typedef struct vcase {
    const char *name;
    int batch, hq, hk, sq, skv, d;
    polyattn_mask mask;
    int window;
    long wl, wr;
    float softcap;
    polyattn_alibi alibi;
    int bias;                  /* 0 none, else 1 + broadcast bits (1 batch, 2 heads) */
    polyattn_dtype bias_dtype; /* f32, f16, bf16 */
    int bias_masked_rows;      /* rows of -inf bias */
    int amask;                 /* u8 attn_mask (with a few all-zero rows) */
    int sinks;
} vcase;

static const vcase cases[] = {
    {"window", 2, 4, 2, 37, 53, 16, POLYATTN_MASK_NONE, 1, 5, 3, 0, 0, 0, 0, 0, 0, 0},
    {"window_causal_tl", 1, 2, 1, 41, 33, 16, POLYATTN_MASK_CAUSAL_TOP_LEFT, 1, 7, -1, 0, 0, 0, 0,
     0, 0, 0},
    {"softcap_causal_br", 2, 2, 2, 29, 19, 16, POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT, 0, 0, 0, 0.7f, 0,
     0, 0, 0, 0, 0},
    {"alibi_bias_f16_bcast_batch", 2, 4, 2, 23, 31, 16, POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT, 0, 0, 0,
     0, POLYATTN_ALIBI_PER_BATCH_HEAD, 1 + 1, POLYATTN_DTYPE_F16, 0, 0, 0},
    {"bias_f32_bcast_heads_inf_rows", 2, 3, 3, 27, 35, 16, POLYATTN_MASK_NONE, 0, 0, 0, 0, 0, 1 + 2,
     POLYATTN_DTYPE_F32, 1, 0, 0},
    {"bias_bf16_bcast_both_amask", 2, 2, 1, 33, 30, 16, POLYATTN_MASK_CAUSAL_TOP_LEFT, 0, 0, 0, 0,
     0, 1 + 3, POLYATTN_DTYPE_BF16, 0, 1, 0},
    {"sinks_window_softcap", 1, 4, 1, 45, 45, 16, POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT, 1, 9, 0, 1.3f,
     0, 0, 0, 0, 0, 1},
    {"all", 2, 2, 2, 31, 39, 16, POLYATTN_MASK_NONE, 1, 11, 4, 2.0f, POLYATTN_ALIBI_PER_HEAD, 1,
     POLYATTN_DTYPE_F32, 1, 1, 1},
};

typedef struct vdata {
    vcase c;
    float scale;
    size_t nq, nk, nv, no, nl, nb;
    float *q, *k, *v, *dout, *slopes, *bias, *sinks; /* bias: decoded, dense [bshape] */
    uint8_t *amask;
    void *bias_raw;
    int64_t bshape[4];
    /* reference */
    double *o, *lse, *probs, *dq, *dk, *dv, *dbias, *dsinks;
} vdata;

static float rnd(pa_tk_rng *r) { return (float)(2.0 * pa_tk_rng_uniform(r) - 1.0); }

static long diag_of(const vcase *c, long i)
{
    return c->mask == POLYATTN_MASK_CAUSAL_TOP_LEFT ? i : i + c->skv - c->sq;
}

static size_t bidx(const vdata *x, long b, long h, long i, long j)
{
    long bb = x->bshape[0] == 1 ? 0 : b, hh = x->bshape[1] == 1 ? 0 : h;
    return (((size_t)bb * (size_t)x->bshape[1] + (size_t)hh) * (size_t)x->c.sq + (size_t)i) *
               (size_t)x->c.skv +
           (size_t)j;
}

/* The score of (b, h, i, j) in double, *masked when the pair does not count. */
static double ref_score(const vdata *x, long b, long h, long i, long j, int *masked, double *dcap)
{
    const vcase *c = &x->c;
    long d = diag_of(c, i), hk = h / (c->hq / c->hk);
    *masked = 1;
    *dcap = 1.0;
    if (c->mask != POLYATTN_MASK_NONE && j > d) return -INFINITY;
    if (c->window && c->wl >= 0 && j < d - c->wl) return -INFINITY;
    if (c->window && c->wr >= 0 && j > d + c->wr) return -INFINITY;
    if (c->amask && !x->amask[bidx(x, b, h, i, j)]) return -INFINITY;
    double s = 0;
    for (int e = 0; e < c->d; e++)
        s += (double)x->q[(((size_t)b * c->hq + h) * c->sq + i) * c->d + e] *
             x->k[(((size_t)b * c->hk + hk) * c->skv + j) * c->d + e];
    s *= x->scale;
    if (c->softcap > 0) {
        double t = tanh(s / c->softcap);
        s = c->softcap * t;
        *dcap = 1 - t * t;
    }
    if (c->alibi)
        s -= x->slopes[c->alibi == POLYATTN_ALIBI_PER_HEAD ? h : b * c->hq + h] *
             fabs((double)(d - j));
    if (c->bias) {
        double bv = x->bias[bidx(x, b, h, i, j)];
        if (bv == -INFINITY) return -INFINITY;
        s += bv;
    }
    *masked = 0;
    return s;
}

static void reference(vdata *x)
{
    const vcase *c = &x->c;
    double *s = malloc(sizeof(double) * c->skv), *dc = malloc(sizeof(double) * c->skv);
    int *mk = malloc(sizeof(int) * c->skv);
    for (long b = 0; b < c->batch; b++)
        for (long h = 0; h < c->hq; h++) {
            long hk = h / (c->hq / c->hk);
            double sink = c->sinks ? x->sinks[h] : -INFINITY;
            for (long i = 0; i < c->sq; i++) {
                size_t row = ((size_t)b * c->hq + h) * c->sq + i;
                double m = sink;
                int any = 0;
                for (long j = 0; j < c->skv; j++) {
                    s[j] = ref_score(x, b, h, i, j, &mk[j], &dc[j]);
                    if (!mk[j]) any = 1, m = fmax(m, s[j]);
                }
                double *o = x->o + row * c->d, *go = x->dq + row * c->d,
                       *pr = x->probs + row * c->skv;
                if (!any && !c->sinks) {
                    for (int e = 0; e < c->d; e++)
                        o[e] = 0;
                    x->lse[row] = -INFINITY;
                    continue;
                }
                double l = c->sinks ? exp(sink - m) : 0;
                for (long j = 0; j < c->skv; j++)
                    if (!mk[j]) l += exp(s[j] - m);
                double lse = m + log(l);
                x->lse[row] = lse;
                for (int e = 0; e < c->d; e++)
                    o[e] = 0;
                for (long j = 0; j < c->skv; j++) {
                    if (mk[j]) continue;
                    double p = exp(s[j] - lse);
                    pr[j] = p;
                    const float *vr = x->v + (((size_t)b * c->hk + hk) * c->skv + j) * c->d;
                    for (int e = 0; e < c->d; e++)
                        o[e] += p * vr[e];
                }
                /* backward */
                const float *dor = x->dout + row * c->d;
                double D = 0;
                for (int e = 0; e < c->d; e++)
                    D += dor[e] * o[e];
                if (c->sinks) x->dsinks[h] -= exp(sink - lse) * D;
                for (long j = 0; j < c->skv; j++) {
                    if (mk[j]) continue;
                    double p = exp(s[j] - lse), dp = 0;
                    size_t kr = (((size_t)b * c->hk + hk) * c->skv + j) * c->d;
                    for (int e = 0; e < c->d; e++)
                        dp += dor[e] * x->v[kr + e];
                    double ds = p * (dp - D);
                    if (c->bias) x->dbias[bidx(x, b, h, i, j)] += ds;
                    double dr = ds * dc[j] * x->scale;
                    for (int e = 0; e < c->d; e++) {
                        go[e] += dr * x->k[kr + e];
                        x->dk[kr + e] += dr * x->q[row * c->d + e];
                        x->dv[kr + e] += p * dor[e];
                    }
                }
            }
        }
    free(s);
    free(dc);
    free(mk);
}

static void data_init(vdata *x, const vcase *c)
{
    memset(x, 0, sizeof *x);
    x->c = *c;
    x->scale = 1.0f / sqrtf((float)c->d);
    pa_tk_rng r;
    pa_tk_rng_seed(&r, pa_tk_hash(c->name, 5));
    x->nq = (size_t)c->batch * c->hq * c->sq * c->d;
    x->nk = x->nv = (size_t)c->batch * c->hk * c->skv * c->d;
    x->no = x->nq;
    x->nl = (size_t)c->batch * c->hq * c->sq;
    x->q = malloc(4 * x->nq), x->k = malloc(4 * x->nk), x->v = malloc(4 * x->nv);
    x->dout = malloc(4 * x->no);
    for (size_t i = 0; i < x->nq; i++)
        x->q[i] = 2 * rnd(&r);
    for (size_t i = 0; i < x->nk; i++)
        x->k[i] = 2 * rnd(&r), x->v[i] = rnd(&r);
    for (size_t i = 0; i < x->no; i++)
        x->dout[i] = rnd(&r);
    x->slopes = malloc(4 * (size_t)c->batch * c->hq);
    for (int i = 0; i < c->batch * c->hq; i++)
        x->slopes[i] = 0.05f + 0.2f * (float)pa_tk_rng_uniform(&r);
    x->sinks = malloc(4 * (size_t)c->hq);
    for (int i = 0; i < c->hq; i++)
        x->sinks[i] = 1.5f * rnd(&r);
    x->bshape[0] = (c->bias && ((c->bias - 1) & 1)) ? 1 : c->batch;
    x->bshape[1] = (c->bias && ((c->bias - 1) & 2)) ? 1 : c->hq;
    x->bshape[2] = c->sq, x->bshape[3] = c->skv;
    x->nb = (size_t)x->bshape[0] * x->bshape[1] * c->sq * c->skv;
    x->bias = malloc(4 * x->nb);
    x->amask = malloc(x->nb);
    polyattn_dtype bt = c->bias ? c->bias_dtype : POLYATTN_DTYPE_F32;
    x->bias_raw = malloc(x->nb * polyattn_dtype_size(bt));
    for (size_t i = 0; i < x->nb; i++) {
        size_t row = i / (size_t)c->skv;
        x->bias[i] = pa_tk_round(rnd(&r), bt);
        if (c->bias_masked_rows && row % 7 == 3) x->bias[i] = -INFINITY;
        else if (c->bias_masked_rows && pa_tk_rng_uniform(&r) < 0.2) x->bias[i] = -INFINITY;
        x->amask[i] = pa_tk_rng_uniform(&r) < 0.7;
        if (row % 5 == 2) x->amask[i] = 0; /* fully masked rows */
    }
    pa_tk_encode(x->bias_raw, x->bias, x->nb, bt);
    x->probs = calloc(x->nl * (size_t)c->skv, 8);
    x->o = calloc(x->no, 8), x->lse = calloc(x->nl, 8), x->dq = calloc(x->nq, 8);
    x->dk = calloc(x->nk, 8), x->dv = calloc(x->nv, 8), x->dbias = calloc(x->nb, 8);
    x->dsinks = calloc((size_t)c->hq, 8);
    reference(x);
}

static void data_free(vdata *x)
{
    void *p[] = {x->q,     x->k,     x->v,        x->dout,  x->slopes, x->bias,
                 x->sinks, x->amask, x->bias_raw, x->o,     x->lse,    x->probs,
                 x->dq,    x->dk,    x->dv,       x->dbias, x->dsinks};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        free(p[i]);
}

static void desc_of(const vdata *x, polyattn_attention_desc *d)
{
    const vcase *c = &x->c;
    polyattn_attention_desc_init(d, POLYATTN_DTYPE_F32, c->batch, c->hq, c->hk, c->sq, c->skv, c->d,
                                 c->d);
    d->mask = c->mask;
    d->has_window = c->window;
    d->window_left = c->wl;
    d->window_right = c->wr;
    d->softcap = c->softcap;
    d->alibi = c->alibi;
    polyattn_tensor_desc t;
    polyattn_tensor_desc_bhsd(&t, c->bias ? c->bias_dtype : POLYATTN_DTYPE_U8, x->bshape[0],
                              x->bshape[1], c->sq, c->skv);
    if (c->bias) d->has_bias = 1, d->bias = t;
    if (c->amask) {
        d->has_attn_mask = 1;
        d->attn_mask = t;
        d->attn_mask.dtype = POLYATTN_DTYPE_U8;
    }
    d->has_sinks = c->sinks;
}

/* |out - ref| <= tol (1 + |ref|), with -inf/NaN matching exactly; counts mismatches. */
static long compare(const char *what, const char *tag, const float *out, const double *ref,
                    size_t n, double tol)
{
    long bad = 0;
    for (size_t i = 0; i < n; i++) {
        double r = ref[i], o = out[i];
        int ok = isinf(r) ? o == r : (isnan(r) ? isnan(o) : fabs(o - r) <= tol * (1 + fabs(r)));
        if (!ok && bad++ < 3) printf("  %s %s[%zu] = %.7g, expected %.7g\n", tag, what, i, o, r);
    }
    return bad;
}

typedef struct bufs {
    polyattn_buffer *q, *k, *v, *o, *lse, *dout, *dq, *dk, *dv, *slopes, *bias, *amask, *sinks,
        *dbias, *dsinks, *ws, *bws;
} bufs;

static polyattn_buffer *upload(polyattn_context *ctx, const void *src, size_t bytes)
{
    polyattn_buffer *b = NULL;
    if (polyattn_buffer_alloc(ctx, bytes ? bytes : 4, &b)) return NULL;
    if (src && polyattn_buffer_write(b, 0, src, bytes)) {
        polyattn_buffer_free(b);
        return NULL;
    }
    return b;
}

static float *poisoned(size_t n)
{
    float *p = malloc(4 * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        p[i] = 12345.0f;
    return p;
}

/* One algorithm on one context; returns 1 when it ran, 0 when the plan was refused. */
static int run_case(polyattn_context *ctx, vdata *x, polyattn_algo algo, int backward)
{
    const vcase *c = &x->c;
    char tag[160];
    snprintf(tag, sizeof tag, "%s %s %s%s", polyattn_backend_name(polyattn_context_backend(ctx)),
             c->name, polyattn_algo_name(algo), backward ? " backward" : "");
    polyattn_attention_desc desc;
    desc_of(x, &desc);
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_lse = 1;
    opt.want_backward = backward;
    opt.want_bias_grad = backward && c->bias;
    opt.want_probs = !backward && algo != POLYATTN_ALGO_FLASH; /* the probabilities too */
    polyattn_plan *plan = NULL;
    polyattn_status st = polyattn_plan_create(ctx, &desc, &opt, &plan);
    if (st == POLYATTN_STATUS_UNSUPPORTED && backward && c->bias) {
        printf("note %s: no d_bias: %s\n", tag, polyattn_context_last_error(ctx));
        opt.want_bias_grad = 0; /* the gradients without d_bias */
        st = polyattn_plan_create(ctx, &desc, &opt, &plan);
    }
    if (st != POLYATTN_STATUS_SUCCESS) {
        printf("skip %s: %s\n", tag, polyattn_context_last_error(ctx));
        return 0;
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_plan_get_info(plan, &info);
    bufs B;
    memset(&B, 0, sizeof B);
    const size_t np = x->nl * (size_t)c->skv;
    float *probs = poisoned(np);
    polyattn_buffer *pb = opt.want_probs ? upload(ctx, probs, 4 * np) : NULL;
    float *o = poisoned(x->no), *lse = poisoned(x->nl), *dq = poisoned(x->nq),
          *dk = poisoned(x->nk), *dv = poisoned(x->nv), *dbias = poisoned(x->nb),
          *dsinks = poisoned((size_t)c->hq);
    size_t bsz = x->nb * polyattn_dtype_size(c->bias ? c->bias_dtype : POLYATTN_DTYPE_F32);
    B.q = upload(ctx, x->q, 4 * x->nq), B.k = upload(ctx, x->k, 4 * x->nk);
    B.v = upload(ctx, x->v, 4 * x->nv), B.o = upload(ctx, o, 4 * x->no);
    B.lse = upload(ctx, lse, 4 * x->nl), B.dout = upload(ctx, x->dout, 4 * x->no);
    B.dq = upload(ctx, dq, 4 * x->nq), B.dk = upload(ctx, dk, 4 * x->nk);
    B.dv = upload(ctx, dv, 4 * x->nv);
    polyattn_extra_tensors ex;
    memset(&ex, 0, sizeof ex);
    ex.struct_size = sizeof ex;
    if (c->alibi) ex.alibi_slopes = B.slopes = upload(ctx, x->slopes, 4 * (size_t)c->batch * c->hq);
    if (c->bias) ex.bias = B.bias = upload(ctx, x->bias_raw, bsz);
    if (c->amask) ex.attn_mask = B.amask = upload(ctx, x->amask, x->nb);
    if (c->sinks) ex.sinks = B.sinks = upload(ctx, x->sinks, 4 * (size_t)c->hq);
    if (info.workspace_bytes) B.ws = upload(ctx, NULL, info.workspace_bytes);
    st = polyattn_forward_ex(plan, B.q, B.k, B.v, B.o, B.lse, pb, B.ws, &ex);
    if (st == POLYATTN_STATUS_SUCCESS && pb) st = polyattn_buffer_read(pb, 0, probs, 4 * np);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_read(B.o, 0, o, 4 * x->no);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_read(B.lse, 0, lse, 4 * x->nl);
    if (st != POLYATTN_STATUS_SUCCESS) {
        printf("FAIL %s: forward: %s\n", tag, polyattn_context_last_error(ctx));
        failures++;
        goto done;
    }
    long bad =
        compare("O", tag, o, x->o, x->no, 2e-4) + compare("LSE", tag, lse, x->lse, x->nl, 2e-4);
    if (pb) bad += compare("P", tag, probs, x->probs, np, 2e-4);
    if (backward) {
        ex.alibi_slopes = B.slopes, ex.bias = B.bias, ex.attn_mask = B.amask, ex.sinks = B.sinks;
        if (opt.want_bias_grad) ex.d_bias = B.dbias = upload(ctx, dbias, 4 * x->nb);
        if (c->sinks) ex.d_sinks = B.dsinks = upload(ctx, dsinks, 4 * (size_t)c->hq);
        if (info.backward_workspace_bytes) B.bws = upload(ctx, NULL, info.backward_workspace_bytes);
        st = polyattn_backward_ex(plan, B.q, B.k, B.v, B.o, B.dout, B.lse, B.dq, B.dk, B.dv, B.bws,
                                  &ex);
        if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_read(B.dq, 0, dq, 4 * x->nq);
        if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_read(B.dk, 0, dk, 4 * x->nk);
        if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_read(B.dv, 0, dv, 4 * x->nv);
        if (st == POLYATTN_STATUS_SUCCESS && B.dbias)
            st = polyattn_buffer_read(B.dbias, 0, dbias, 4 * x->nb);
        if (st == POLYATTN_STATUS_SUCCESS && B.dsinks)
            st = polyattn_buffer_read(B.dsinks, 0, dsinks, 4 * (size_t)c->hq);
        if (st != POLYATTN_STATUS_SUCCESS) {
            printf("FAIL %s: backward: %s\n", tag, polyattn_context_last_error(ctx));
            failures++;
            goto done;
        }
        bad += compare("dQ", tag, dq, x->dq, x->nq, 1e-3) +
               compare("dK", tag, dk, x->dk, x->nk, 1e-3) +
               compare("dV", tag, dv, x->dv, x->nv, 1e-3);
        if (B.dbias) bad += compare("dBias", tag, dbias, x->dbias, x->nb, 1e-3);
        if (B.dsinks) bad += compare("dSinks", tag, dsinks, x->dsinks, (size_t)c->hq, 1e-3);
    }
    if (bad) {
        printf("FAIL %s: %ld elements differ\n", tag, bad);
        failures++;
    } else {
        printf("ok   %s%s\n", tag,
               backward && c->bias && !opt.want_bias_grad ? " (no d_bias)" : "");
    }
done:
    polyattn_plan_destroy(plan);
    polyattn_buffer *all[] = {B.q,     B.k,     B.v,      B.o,      B.lse,  B.dout,
                              B.dq,    B.dk,    B.dv,     B.slopes, B.bias, B.amask,
                              B.sinks, B.dbias, B.dsinks, B.ws,     B.bws};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        polyattn_buffer_free(all[i]);
    polyattn_buffer_free(pb);
    free(probs);
    free(o), free(lse), free(dq), free(dk), free(dv), free(dbias), free(dsinks);
    return 1;
}

/* Build log lines of the latest plans (POLYATTN_LOG_BUILD). */
static char build_log[8192];

static void on_log(polyattn_log_category cat, const char *message, void *user)
{
    (void)user;
    size_t n = strlen(build_log);
    if (cat == POLYATTN_LOG_BUILD && n + strlen(message) + 2 < sizeof build_log)
        snprintf(build_log + n, sizeof build_log - n, "%s\n", message);
}

/* A plain plan builds its kernels without the variants' source or options (the exact plain
 * kernels); a variant plan with them.  bf16, head dim 24: programs no other case builds. */
static void check_build_options(polyattn_context *ctx)
{
    for (int variant = 0; variant < 2; variant++) {
        polyattn_attention_desc desc;
        polyattn_attention_desc_init(&desc, POLYATTN_DTYPE_BF16, 1, 1, 1, 9, 9, 24, 24);
        desc.softcap = variant ? 3.0f : 0.0f;
        for (int a = 1; a <= 3; a++) {
            polyattn_plan_options opt;
            polyattn_plan_options_init(&opt);
            opt.algo = (polyattn_algo)a;
            opt.want_backward = 1;
            polyattn_plan *plan = NULL;
            build_log[0] = 0;
            polyattn_set_log_mask(POLYATTN_LOG_ERROR | POLYATTN_LOG_BUILD);
            polyattn_set_log_callback(on_log, NULL);
            polyattn_status st = polyattn_plan_create(ctx, &desc, &opt, &plan);
            polyattn_set_log_callback(NULL, NULL);
            polyattn_set_log_mask(POLYATTN_LOG_ERROR);
            polyattn_plan_destroy(plan);
            if (st != POLYATTN_STATUS_SUCCESS) {
                if (a == POLYATTN_ALGO_UNFUSED) continue; /* built without CLBlast */
                printf("FAIL: build-option plan %d: %s\n", a, polyattn_context_last_error(ctx));
                failures++;
                continue;
            }
            int has_var = strstr(build_log, "-DPA_VAR") != NULL,
                has_src = strstr(build_log, "variants.cl") != NULL;
            if (!strstr(build_log, "-DPA_DTYPE") || has_var != variant || has_src != variant ||
                (variant && !strstr(build_log, "-DPA_SOFTCAP"))) {
                printf("FAIL: %s plan of %s: build log\n%s", variant ? "softcap" : "plain",
                       polyattn_algo_name((polyattn_algo)a), build_log);
                failures++;
            }
        }
    }
    printf("%s build options: plain plans without variants, variant plans with them\n",
           failures ? "checked" : "ok  ");
}

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Milliseconds of the best of 3 flash forwards at seq n (window (left, 0) or full causal),
 * and the plan's FLOPs. */
static double time_flash(polyattn_context *ctx, int n, long left, double *flops)
{
    polyattn_attention_desc desc;
    polyattn_attention_desc_init(&desc, POLYATTN_DTYPE_F32, 1, 2, 2, n, n, 16, 16);
    desc.mask = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
    desc.has_window = left >= 0;
    desc.window_left = left;
    desc.window_right = 0;
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = POLYATTN_ALGO_FLASH;
    polyattn_plan *plan = NULL;
    if (polyattn_plan_create(ctx, &desc, &opt, &plan)) return -1;
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_plan_get_info(plan, &info);
    *flops = info.flops;
    size_t elems = (size_t)2 * n * 16;
    polyattn_buffer *q = upload(ctx, NULL, 4 * elems), *o = upload(ctx, NULL, 4 * elems);
    float *h = calloc(elems, 4);
    polyattn_buffer_write(q, 0, h, 4 * elems);
    double best = 1e30;
    for (int r = 0; r < 4 && q && o; r++) {
        double t0 = now_ms();
        if (polyattn_forward(plan, q, q, q, o, NULL, NULL, NULL) ||
            polyattn_context_synchronize(ctx))
            best = -1;
        double t = now_ms() - t0;
        if (r > 0 && best >= 0 && t < best) best = t;
    }
    free(h);
    polyattn_buffer_free(q);
    polyattn_buffer_free(o);
    polyattn_plan_destroy(plan);
    return best;
}

int main(int argc, char **argv)
{
    int count = 0;
    if (polyattn_device_count(POLYATTN_BACKEND_OPENCL, &count, NULL) != POLYATTN_STATUS_SUCCESS ||
        count == 0) {
        printf("no OpenCL device: skipped\n");
        return 77;
    }
    const char *only = argc > 1 ? argv[1] : NULL;
    polyattn_context *ctx = NULL, *host = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_OPENCL, 0, &ctx)) {
        printf("FAIL: context: %s\n", polyattn_last_error());
        return 1;
    }
    polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &host);
    const polyattn_algo algos[] = {POLYATTN_ALGO_UNFUSED, POLYATTN_ALGO_FUSED, POLYATTN_ALGO_FLASH};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (only && strcmp(only, "timing") && !strstr(cases[i].name, only)) continue;
        if (only && !strcmp(only, "timing")) break;
        vdata x;
        data_init(&x, &cases[i]);
        if (host) { /* the host backend, where it plans the variant, checks the evaluation */
            run_case(host, &x, POLYATTN_ALGO_UNFUSED, 0);
            run_case(host, &x, POLYATTN_ALGO_UNFUSED, 1);
        }
        for (int a = 0; a < 3; a++) {
            if (!run_case(ctx, &x, algos[a], 0)) {
                printf("FAIL: the forward of every algorithm must plan this case\n");
                failures++;
            }
            run_case(ctx, &x, algos[a], 1);
        }
        data_free(&x);
    }
    if (!only) check_build_options(ctx);
    if (!only || !strcmp(only, "timing")) {
        /* Tile skipping: the window's cost follows its visible pairs (1/16 of them here; a
         * kernel that skips nothing takes as long as the full one, so 2x keeps the check
         * clear of a loaded CI machine's noise, where 3.6x was seen against ~8x idle). */
        double f_full = 0, f_win = 0;
        double full = time_flash(ctx, 2048, -1, &f_full), win = time_flash(ctx, 2048, 64, &f_win);
        printf("flash causal n=2048: full %.1f ms (%.3g flop), window 64: %.1f ms (%.3g flop)\n",
               full, f_full, win, f_win);
        if (full <= 0 || win <= 0 || win * 2 > full || f_win * 10 > f_full) {
            printf("FAIL: the window forward does not skip key tiles\n");
            failures++;
        }
    }
    polyattn_context_destroy(ctx);
    if (host) polyattn_context_destroy(host);
    printf("%s\n", failures ? "FAILED" : "passed");
    return failures ? 1 : 0;
}
