/*
 * The oracle checked on its own: hand-computed cases, an independent naive double
 * implementation, and properties (P rows sum to 1, masked keys are ignored, GQA equals
 * repeated K/V heads, fully masked rows, LSE, flash == unfused, BHSD == BSHD, f16/bf16
 * inputs read exactly).
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

#define CHECK_NEAR(got, want, tol)                                                                 \
    do {                                                                                           \
        double g_ = (got), w_ = (want);                                                            \
        checks++;                                                                                  \
        if (!(fabs(g_ - w_) <= (tol))) {                                                           \
            fprintf(stderr, "%s:%d: %s = %.9g, want %.9g (tol %g)\n", __FILE__, __LINE__, #got,    \
                    g_, w_, (double)(tol));                                                        \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static polyattn_context *ctx;

/* Runs desc on the host backend with raw inputs; o_raw gets the raw O buffer. */
static polyattn_status host_run(const polyattn_attention_desc *desc, polyattn_algo algo,
                                const void *q, const void *k, const void *v, void *o_raw,
                                float *lse, float *probs)
{
    polyattn_plan_options opt;
    polyattn_plan *plan = NULL;
    polyattn_buffer *bq = NULL, *bk = NULL, *bv = NULL, *bo = NULL, *bl = NULL, *bp = NULL;
    const uint64_t qb = polyattn_tensor_desc_bytes(&desc->q),
                   kb = polyattn_tensor_desc_bytes(&desc->k),
                   vb = polyattn_tensor_desc_bytes(&desc->v),
                   ob = polyattn_tensor_desc_bytes(&desc->o);
    const uint64_t rows = (uint64_t)(desc->q.shape[0] * desc->q.shape[1] * desc->q.shape[2]);
    const uint64_t lb = rows * 4, pb = rows * (uint64_t)desc->k.shape[2] * 4;
    polyattn_status st;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_lse = lse != NULL;
    opt.want_probs = probs != NULL;
    st = polyattn_plan_create(ctx, desc, &opt, &plan);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_alloc(ctx, qb, &bq);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_alloc(ctx, kb, &bk);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_alloc(ctx, vb, &bv);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_alloc(ctx, ob, &bo);
    if (st == POLYATTN_STATUS_SUCCESS && lse) st = polyattn_buffer_alloc(ctx, lb, &bl);
    if (st == POLYATTN_STATUS_SUCCESS && probs) st = polyattn_buffer_alloc(ctx, pb, &bp);
    if (st == POLYATTN_STATUS_SUCCESS) {
        polyattn_buffer_write(bq, 0, q, qb);
        polyattn_buffer_write(bk, 0, k, kb);
        polyattn_buffer_write(bv, 0, v, vb);
        polyattn_buffer_write(bo, 0, o_raw, ob); /* callers poison O; gaps must survive */
        st = polyattn_forward(plan, bq, bk, bv, bo, bl, bp, NULL);
    }
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_read(bo, 0, o_raw, ob);
    if (st == POLYATTN_STATUS_SUCCESS && lse) st = polyattn_buffer_read(bl, 0, lse, lb);
    if (st == POLYATTN_STATUS_SUCCESS && probs) st = polyattn_buffer_read(bp, 0, probs, pb);
    if (st != POLYATTN_STATUS_SUCCESS)
        fprintf(stderr, "host run failed: %s: %s\n", polyattn_status_name(st),
                polyattn_context_last_error(ctx));
    polyattn_buffer_free(bq);
    polyattn_buffer_free(bk);
    polyattn_buffer_free(bv);
    polyattn_buffer_free(bo);
    polyattn_buffer_free(bl);
    polyattn_buffer_free(bp);
    polyattn_plan_destroy(plan);
    return st;
}

/* ---- 1. hand-computed cases ---- */

static void test_hand_computed(void)
{
    /* q = k = I (2x2), v = [[1,2],[3,4]], scale 1: row 0 scores (1, 0), row 1 (0, 1). */
    const float q[4] = {1, 0, 0, 1}, k[4] = {1, 0, 0, 1}, v[4] = {1, 2, 3, 4};
    const double e = exp(1.0), p_hi = e / (e + 1), p_lo = 1 / (e + 1);
    polyattn_attention_desc d;
    float o[4], lse[2], probs[4];
    int algo;
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, 1, 1, 1, 2, 2, 2, 2);
    d.scale = 1.0f;
    for (algo = POLYATTN_ALGO_UNFUSED; algo <= POLYATTN_ALGO_FLASH; algo += 2) {
        const int flash = algo == POLYATTN_ALGO_FLASH;
        CHECK(host_run(&d, (polyattn_algo)algo, q, k, v, o, lse, flash ? NULL : probs) == 0);
        CHECK_NEAR(o[0], p_hi * 1 + p_lo * 3, 1e-6);
        CHECK_NEAR(o[1], p_hi * 2 + p_lo * 4, 1e-6);
        CHECK_NEAR(o[2], p_lo * 1 + p_hi * 3, 1e-6);
        CHECK_NEAR(o[3], p_lo * 2 + p_hi * 4, 1e-6);
        CHECK_NEAR(lse[0], log(e + 1), 1e-6);
        CHECK_NEAR(lse[1], log(e + 1), 1e-6);
        if (!flash) {
            CHECK_NEAR(probs[0], p_hi, 1e-7);
            CHECK_NEAR(probs[1], p_lo, 1e-7);
            CHECK_NEAR(probs[2], p_lo, 1e-7);
            CHECK_NEAR(probs[3], p_hi, 1e-7);
        }
    }
    /* causal: row 0 sees key 0 only -> O = v[0], LSE = score 1 */
    d.mask = POLYATTN_MASK_CAUSAL_TOP_LEFT;
    CHECK(host_run(&d, POLYATTN_ALGO_UNFUSED, q, k, v, o, lse, probs) == 0);
    CHECK(o[0] == 1.0f && o[1] == 2.0f);
    CHECK_NEAR(lse[0], 1.0, 1e-7);
    CHECK(probs[0] == 1.0f && probs[1] == 0.0f);
    CHECK_NEAR(o[2], p_lo * 1 + p_hi * 3, 1e-6);

    /* default scale 1/sqrt(4) = 0.5; one query, keys (2,0,0,0) and (0,0,0,0):
     * scores 1 and 0 -> same weights as above */
    {
        const float q1[4] = {1, 0, 0, 0}, k2[8] = {2, 0, 0, 0, 0, 0, 0, 0};
        const float v2[8] = {1, 1, 1, 1, -1, 0, 1, 2};
        float o1[4], l1[1];
        polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, 1, 1, 1, 1, 2, 4, 4);
        CHECK(host_run(&d, POLYATTN_ALGO_UNFUSED, q1, k2, v2, o1, l1, NULL) == 0);
        CHECK_NEAR(o1[0], p_hi * 1 - p_lo, 1e-6);
        CHECK_NEAR(o1[1], p_hi, 1e-6);
        CHECK_NEAR(o1[2], 1.0, 1e-6);
        CHECK_NEAR(o1[3], p_hi + 2 * p_lo, 1e-6);
        CHECK_NEAR(l1[0], log(e + 1), 1e-6);
    }
    /* bottom-right with seq_q 3 > seq_kv 1: rows 0, 1 fully masked, row 2 sees key 0 */
    {
        const float q3[3] = {0.5f, -1, 2}, k1[1] = {3}, v1[1] = {-7};
        float o3[3], l3[3], p3[3];
        polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, 1, 1, 1, 3, 1, 1, 1);
        d.mask = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
        for (algo = POLYATTN_ALGO_UNFUSED; algo <= POLYATTN_ALGO_FLASH; algo += 2) {
            const int flash = algo == POLYATTN_ALGO_FLASH;
            CHECK(host_run(&d, (polyattn_algo)algo, q3, k1, v1, o3, l3, flash ? NULL : p3) == 0);
            CHECK(o3[0] == 0.0f && o3[1] == 0.0f && o3[2] == -7.0f);
            CHECK(isinf(l3[0]) && l3[0] < 0 && isinf(l3[1]) && l3[1] < 0);
            CHECK_NEAR(l3[2], 6.0, 1e-6); /* score 2 * 3 * scale 1 */
            if (!flash) CHECK(p3[0] == 0.0f && p3[1] == 0.0f && p3[2] == 1.0f);
        }
    }
}

/* ---- 2. an independent naive implementation (BHSD f32 in, double out) ---- */

static void naive(const pa_tk_case *c, const float *q, const float *k, const float *v, double *o,
                  double *lse)
{
    /* the API's scale is a float: 1/sqrt(head_dim) rounded to f32, as every backend sees it */
    const double scale = c->scale > 0 ? c->scale : (double)(float)(1.0 / sqrt((double)c->head_dim));
    const int64_t group = c->heads_q / c->heads_kv;
    int64_t b, h, i, j, d;
    double *s = (double *)malloc((size_t)c->seq_kv * sizeof(double));
    for (b = 0; b < c->batch; b++)
        for (h = 0; h < c->heads_q; h++)
            for (i = 0; i < c->seq_q; i++) {
                const float *qi = q + ((b * c->heads_q + h) * c->seq_q + i) * c->head_dim;
                const int64_t kvh = b * c->heads_kv + h / group;
                double *oi = o + ((b * c->heads_q + h) * c->seq_q + i) * c->head_dim_v;
                double mx = -INFINITY, sum = 0;
                int64_t visible = c->seq_kv;
                if (c->mask == POLYATTN_MASK_CAUSAL_TOP_LEFT) visible = i + 1;
                else if (c->mask == POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT)
                    visible = i + 1 + c->seq_kv - c->seq_q;
                if (visible > c->seq_kv) visible = c->seq_kv;
                for (d = 0; d < c->head_dim_v; d++)
                    oi[d] = 0;
                if (visible <= 0) {
                    lse[(b * c->heads_q + h) * c->seq_q + i] = -INFINITY;
                    continue;
                }
                for (j = 0; j < visible; j++) {
                    const float *kj = k + (kvh * c->seq_kv + j) * c->head_dim;
                    double acc = 0;
                    for (d = 0; d < c->head_dim; d++)
                        acc += (double)qi[d] * kj[d];
                    s[j] = acc * scale;
                    if (s[j] > mx) mx = s[j];
                }
                for (j = 0; j < visible; j++)
                    sum += exp(s[j] - mx);
                for (j = 0; j < visible; j++) {
                    const float *vj = v + (kvh * c->seq_kv + j) * c->head_dim_v;
                    const double w = exp(s[j] - mx) / sum;
                    for (d = 0; d < c->head_dim_v; d++)
                        oi[d] += w * vj[d];
                }
                lse[(b * c->heads_q + h) * c->seq_q + i] = mx + log(sum);
            }
    free(s);
}

/* Random BHSD f32 arrays for a case. */
typedef struct arrays {
    float *q, *k, *v, *o, *lse, *probs;
    size_t nq, nk, nv, no, nl, np;
} arrays;

static void arrays_free(arrays *a)
{
    free(a->q), free(a->k), free(a->v), free(a->o), free(a->lse), free(a->probs);
    memset(a, 0, sizeof *a);
}

static void arrays_init(arrays *a, const pa_tk_case *c, uint64_t seed)
{
    pa_tk_rng rng;
    size_t i;
    a->nq = (size_t)(c->batch * c->heads_q * c->seq_q * c->head_dim);
    a->nk = (size_t)(c->batch * c->heads_kv * c->seq_kv * c->head_dim);
    a->nv = (size_t)(c->batch * c->heads_kv * c->seq_kv * c->head_dim_v);
    a->no = (size_t)(c->batch * c->heads_q * c->seq_q * c->head_dim_v);
    a->nl = (size_t)(c->batch * c->heads_q * c->seq_q);
    a->np = a->nl * (size_t)c->seq_kv;
    a->q = (float *)malloc(a->nq * 4), a->k = (float *)malloc(a->nk * 4);
    a->v = (float *)malloc(a->nv * 4), a->o = (float *)malloc(a->no * 4);
    a->lse = (float *)malloc(a->nl * 4), a->probs = (float *)malloc(a->np * 4);
    pa_tk_rng_seed(&rng, pa_tk_hash(c->name, seed));
    for (i = 0; i < a->nq; i++)
        a->q[i] = (float)(pa_tk_rng_uniform(&rng) * c->magnitude);
    for (i = 0; i < a->nk; i++)
        a->k[i] = (float)(pa_tk_rng_uniform(&rng) * c->magnitude);
    for (i = 0; i < a->nv; i++)
        a->v[i] = (float)(pa_tk_rng_uniform(&rng) * c->magnitude);
    pa_tk_poison(a->o, a->no, POLYATTN_DTYPE_F32);
}

static void bhsd_desc(const pa_tk_case *c, polyattn_attention_desc *d)
{
    polyattn_attention_desc_init(d, POLYATTN_DTYPE_F32, c->batch, c->heads_q, c->heads_kv, c->seq_q,
                                 c->seq_kv, c->head_dim, c->head_dim_v);
    d->scale = c->scale;
    d->mask = c->mask;
}

static const pa_tk_case prop_cases[] = {
    {"p_none_gqa", 2, 6, 2, 23, 41, 24, 20, POLYATTN_MASK_NONE, PA_TK_BHSD, 0.f, 1.f, 1},
    {"p_tl", 1, 2, 2, 70, 150, 16, 16, POLYATTN_MASK_CAUSAL_TOP_LEFT, PA_TK_BHSD, 0.f, 1.f, 1},
    {"p_br_masked", 1, 3, 1, 90, 67, 32, 8, POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT, PA_TK_BHSD, 0.f, 2.f,
     1},
    {"p_big_mag", 1, 2, 2, 33, 130, 64, 64, POLYATTN_MASK_NONE, PA_TK_BHSD, 0.f, 30.f, 1},
    /* large enough to use worker threads */
    {"p_threads", 2, 4, 4, 129, 200, 64, 64, POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT, PA_TK_BHSD, 0.3f,
     1.f, 1},
};
#define N_PROP (sizeof prop_cases / sizeof prop_cases[0])

static void test_against_naive_and_properties(void)
{
    size_t ci;
    for (ci = 0; ci < N_PROP; ci++) {
        const pa_tk_case *c = &prop_cases[ci];
        polyattn_attention_desc d;
        arrays a;
        double *ro =
            (double *)malloc((size_t)(c->batch * c->heads_q * c->seq_q * c->head_dim_v) * 8);
        double *rl = (double *)malloc((size_t)(c->batch * c->heads_q * c->seq_q) * 8);
        double max_o = 0, err_o = 0, err_l = 0, worst_row = 0, flash_o = 0, flash_l = 0;
        size_t i, row;
        arrays_init(&a, c, 1);
        bhsd_desc(c, &d);
        naive(c, a.q, a.k, a.v, ro, rl);
        CHECK(host_run(&d, POLYATTN_ALGO_UNFUSED, a.q, a.k, a.v, a.o, a.lse, a.probs) == 0);
        for (i = 0; i < a.no; i++) {
            if (fabs(ro[i]) > max_o) max_o = fabs(ro[i]);
            /* the host result is the double result rounded once to f32 */
            if (!(fabs(a.o[i] - ro[i]) <= fabs(ro[i]) * 1e-7 + 1e-12))
                err_o = fmax(err_o, fabs(a.o[i] - ro[i]) + (isnan(a.o[i]) ? 1 : 0));
        }
        for (row = 0; row < a.nl; row++) {
            double sum = 0;
            int64_t j;
            if (isinf(rl[row])) {
                CHECK(isinf(a.lse[row]) && a.lse[row] < 0);
            } else if (!(fabs(a.lse[row] - rl[row]) <= fabs(rl[row]) * 1e-7 + 1e-7)) {
                err_l = fmax(err_l, fabs(a.lse[row] - rl[row]) + (isnan(a.lse[row]) ? 1 : 0));
            }
            /* P rows sum to 1 (0 for masked rows) */
            for (j = 0; j < c->seq_kv; j++)
                sum += a.probs[row * (size_t)c->seq_kv + j];
            worst_row = fmax(worst_row, fabs(sum - (isinf(rl[row]) ? 0.0 : 1.0)));
        }
        if (err_o > 0 || err_l > 0)
            fprintf(stderr, "%s: host vs naive: O error %g (max|O| %g), LSE error %g\n", c->name,
                    err_o, max_o, err_l);
        CHECK(err_o == 0 && err_l == 0);
        CHECK(worst_row <= 1e-5); /* f32 probabilities, seq_kv terms */

        /* flash (host) == unfused (host): both double-accurate, so O agrees to f32 rounding */
        {
            float *o2 = (float *)malloc(a.no * 4), *l2 = (float *)malloc(a.nl * 4);
            pa_tk_poison(o2, a.no, POLYATTN_DTYPE_F32);
            CHECK(host_run(&d, POLYATTN_ALGO_FLASH, a.q, a.k, a.v, o2, l2, NULL) == 0);
            for (i = 0; i < a.no; i++)
                flash_o = fmax(flash_o, isnan(o2[i]) ? INFINITY : fabs(o2[i] - a.o[i]));
            for (i = 0; i < a.nl; i++)
                flash_l = fmax(flash_l, isinf(a.lse[i]) ? (l2[i] == a.lse[i] ? 0 : INFINITY)
                                                        : fabs(l2[i] - a.lse[i]));
            if (!(flash_o <= 2.4e-7 * max_o) || !(flash_l <= 1e-5))
                fprintf(stderr, "%s: flash vs unfused: O %g (max|O| %g), LSE %g\n", c->name,
                        flash_o, max_o, flash_l);
            CHECK(flash_o <= 2.4e-7 * max_o); /* 2 ulp of f32 at max|O| */
            CHECK(flash_l <= 1e-5 * fmax(1.0, fabs(a.lse[a.nl - 1])));
            free(o2);
            free(l2);
        }
        printf(
            "%-12s host vs naive ok, P rows sum to 1 (worst %.2g), flash-unfused O %.2g LSE %.2g\n",
            c->name, worst_row, flash_o, flash_l);
        free(ro);
        free(rl);
        arrays_free(&a);
    }
}

/* Work is split over threads by (batch, head): results must not depend on the split. */
static void test_deterministic(void)
{
    const pa_tk_case *c = &prop_cases[N_PROP - 1]; /* large enough for worker threads */
    polyattn_attention_desc d;
    arrays a;
    float *o2, *l2;
    int algo;
    arrays_init(&a, c, 5);
    bhsd_desc(c, &d);
    o2 = (float *)malloc(a.no * 4);
    l2 = (float *)malloc(a.nl * 4);
    for (algo = POLYATTN_ALGO_UNFUSED; algo <= POLYATTN_ALGO_FLASH; algo += 2) {
        CHECK(host_run(&d, (polyattn_algo)algo, a.q, a.k, a.v, a.o, a.lse, NULL) == 0);
        CHECK(host_run(&d, (polyattn_algo)algo, a.q, a.k, a.v, o2, l2, NULL) == 0);
        CHECK(memcmp(a.o, o2, a.no * 4) == 0 && memcmp(a.lse, l2, a.nl * 4) == 0);
    }
    free(o2);
    free(l2);
    arrays_free(&a);
}

/* ---- 3. masked keys are ignored; GQA == repeated heads; layouts agree ---- */

static void test_masked_keys_ignored(void)
{
    const pa_tk_case *c = &prop_cases[1];  /* top-left, seq_q 70 < seq_kv 150 */
    const pa_tk_case *c2 = &prop_cases[2]; /* bottom-right, fully masked rows */
    const pa_tk_case *cases2[2] = {c, c2};
    int t;
    for (t = 0; t < 2; t++) {
        const pa_tk_case *cc = cases2[t];
        polyattn_attention_desc d;
        arrays a;
        float *o2;
        int64_t b, h, i, dd, key = 0, changed_rows = 0, bad_rows = 0;
        arrays_init(&a, cc, 2);
        bhsd_desc(cc, &d);
        CHECK(host_run(&d, POLYATTN_ALGO_UNFUSED, a.q, a.k, a.v, a.o, NULL, NULL) == 0);
        /* perturb key/value index `key` (a middle one) of every kv head */
        key = (cc->seq_q < cc->seq_kv ? cc->seq_q : cc->seq_kv) / 2;
        for (b = 0; b < cc->batch * cc->heads_kv; b++) {
            for (dd = 0; dd < cc->head_dim; dd++)
                a.k[(b * cc->seq_kv + key) * cc->head_dim + dd] += 5.0f;
            for (dd = 0; dd < cc->head_dim_v; dd++)
                a.v[(b * cc->seq_kv + key) * cc->head_dim_v + dd] -= 3.0f;
        }
        o2 = (float *)malloc(a.no * 4);
        pa_tk_poison(o2, a.no, POLYATTN_DTYPE_F32);
        CHECK(host_run(&d, POLYATTN_ALGO_UNFUSED, a.q, a.k, a.v, o2, NULL, NULL) == 0);
        for (b = 0; b < cc->batch; b++)
            for (h = 0; h < cc->heads_q; h++)
                for (i = 0; i < cc->seq_q; i++) {
                    int64_t visible = cc->mask == POLYATTN_MASK_CAUSAL_TOP_LEFT
                                          ? i + 1
                                          : i + 1 + cc->seq_kv - cc->seq_q;
                    size_t at = (size_t)(((b * cc->heads_q + h) * cc->seq_q + i) * cc->head_dim_v);
                    int same = memcmp(a.o + at, o2 + at, (size_t)cc->head_dim_v * 4) == 0;
                    if (visible > key) {
                        changed_rows += !same; /* sees the key: must change */
                        bad_rows += same;
                    } else {
                        bad_rows += !same; /* must not see it: bitwise unchanged */
                    }
                }
        CHECK(bad_rows == 0);
        CHECK(changed_rows > 0);
        free(o2);
        arrays_free(&a);
    }
}

static void test_gqa_equals_repeated_heads(void)
{
    const pa_tk_case *c = &prop_cases[0]; /* heads_q 6, heads_kv 2 */
    pa_tk_case rep = *c;
    polyattn_attention_desc d, d_rep;
    arrays a;
    float *k_rep, *v_rep, *o_rep, *l_rep;
    const int64_t group = c->heads_q / c->heads_kv;
    int64_t b, h;
    int algo;
    rep.heads_kv = c->heads_q;
    arrays_init(&a, c, 3);
    bhsd_desc(c, &d);
    bhsd_desc(&rep, &d_rep);
    k_rep = (float *)malloc(a.nk * (size_t)group * 4);
    v_rep = (float *)malloc(a.nv * (size_t)group * 4);
    o_rep = (float *)malloc(a.no * 4);
    l_rep = (float *)malloc(a.nl * 4);
    for (b = 0; b < c->batch; b++)
        for (h = 0; h < c->heads_q; h++) {
            const size_t kn = (size_t)(c->seq_kv * c->head_dim),
                         vn = (size_t)(c->seq_kv * c->head_dim_v);
            const int64_t src = b * c->heads_kv + h / group, dst = b * c->heads_q + h;
            memcpy(k_rep + (size_t)dst * kn, a.k + (size_t)src * kn, kn * 4);
            memcpy(v_rep + (size_t)dst * vn, a.v + (size_t)src * vn, vn * 4);
        }
    for (algo = POLYATTN_ALGO_UNFUSED; algo <= POLYATTN_ALGO_FLASH; algo += 2) {
        pa_tk_poison(a.o, a.no, POLYATTN_DTYPE_F32);
        pa_tk_poison(o_rep, a.no, POLYATTN_DTYPE_F32);
        CHECK(host_run(&d, (polyattn_algo)algo, a.q, a.k, a.v, a.o, a.lse, NULL) == 0);
        CHECK(host_run(&d_rep, (polyattn_algo)algo, a.q, k_rep, v_rep, o_rep, l_rep, NULL) == 0);
        CHECK(memcmp(a.o, o_rep, a.no * 4) == 0);
        CHECK(memcmp(a.lse, l_rep, a.nl * 4) == 0);
    }
    free(k_rep), free(v_rep), free(o_rep), free(l_rep);
    arrays_free(&a);
}

/* BSHD (and padded BSHD) hold the same logical tensors: results must be identical. */
static void test_layouts_agree(void)
{
    pa_tk_case c = prop_cases[2];
    pa_tk_problem pb, ps;
    int layout;
    c.name = "layouts";
    CHECK(pa_tk_problem_init(&pb, &c, POLYATTN_DTYPE_F32, 9) == 0);
    CHECK(pa_tk_problem_reference(&pb, NULL, 0) == 0);
    for (layout = PA_TK_BSHD; layout <= PA_TK_BSHD_PAD; layout++) {
        int64_t b, h, s, d;
        long long mismatches = 0;
        c.layout = (pa_tk_layout)layout;
        /* same name + seed + dtype: the same random stream in the same logical order */
        CHECK(pa_tk_problem_init(&ps, &c, POLYATTN_DTYPE_F32, 9) == 0);
        CHECK(pa_tk_problem_reference(&ps, NULL, 0) == 0);
        for (b = 0; b < c.batch; b++)
            for (h = 0; h < c.heads_q; h++)
                for (s = 0; s < c.seq_q; s++)
                    for (d = 0; d < c.head_dim_v; d++) {
                        const polyattn_tensor_desc *tb = &pb.desc.o, *ts = &ps.desc.o;
                        float x = pb.ref_o[b * tb->strides[0] + h * tb->strides[1] +
                                           s * tb->strides[2] + d];
                        float y = ps.ref_o[b * ts->strides[0] + h * ts->strides[1] +
                                           s * ts->strides[2] + d];
                        mismatches += memcmp(&x, &y, 4) != 0;
                    }
        CHECK(mismatches == 0);
        CHECK(memcmp(pb.ref_lse, ps.ref_lse, pb.lse_elems * 4) == 0);
        CHECK(memcmp(pb.ref_probs, ps.ref_probs, pb.probs_elems * 4) == 0);
        printf("bhsd vs %s: %lld mismatches\n", pa_tk_layout_name(c.layout), mismatches);
        pa_tk_problem_free(&ps);
    }
    pa_tk_problem_free(&pb);
}

/* f16 / bf16 inputs: the host reads them exactly and rounds O once (double -> f32 -> dtype). */
static void test_half_inputs(void)
{
    pa_tk_case c = prop_cases[0];
    int dt;
    for (dt = POLYATTN_DTYPE_F16; dt <= POLYATTN_DTYPE_BF16; dt++) {
        pa_tk_problem p;
        pa_tk_result r;
        const polyattn_dtype dtype = (polyattn_dtype)dt;
        CHECK(pa_tk_problem_init(&p, &c, dtype, 4) == 0);
        /* the full helper: plan, poison, run, compare against the f32 reference */
        CHECK(pa_tk_run(ctx, &p, POLYATTN_ALGO_UNFUSED, 1, 1, &r) == 0);
        CHECK(r.pass);
        /* stronger: O must equal the f32 reference rounded to dtype, bit for bit */
        {
            const size_t es = 2;
            unsigned char *raw = (unsigned char *)malloc(p.o_elems * es);
            unsigned char *want = (unsigned char *)malloc(p.o_elems * es);
            pa_tk_poison(raw, p.o_elems, dtype);
            CHECK(host_run(&p.desc, POLYATTN_ALGO_UNFUSED, p.q_data, p.k_data, p.v_data, raw, NULL,
                           NULL) == 0);
            pa_tk_encode(want, p.ref_o, p.o_elems, dtype);
            CHECK(memcmp(raw, want, p.o_elems * es) == 0);
            free(raw);
            free(want);
        }
        printf("%s inputs: O max error %.3g (rel %.3g), bitwise equal to rounded f32 reference\n",
               polyattn_dtype_name(dtype), r.o_max_abs, r.o_max_rel);
        pa_tk_problem_free(&p);
    }
}

/* The comparison helper must be able to fail: a perturbed or unwritten O is caught. */
static void test_helpers_can_fail(void)
{
    const float ref[4] = {1, 2, 3, -INFINITY};
    float out[4] = {1, 2, 3, -INFINITY};
    double worst;
    CHECK(pa_tk_compare(out, ref, 4, 1e-6, &worst) == 0 && worst == 0);
    out[1] = 2.001f;
    CHECK(pa_tk_compare(out, ref, 4, 1e-6, &worst) == 1 && worst > 9e-4);
    pa_tk_poison(out, 1, POLYATTN_DTYPE_F32);
    CHECK(pa_tk_compare(out, ref, 4, 1e-6, &worst) == 2 && isnan(worst));
    out[0] = 1, out[1] = 2, out[3] = 0;
    CHECK(pa_tk_compare(out, ref, 4, 1e-6, &worst) == 1);
    /* tolerances are ordered by precision */
    CHECK(pa_tk_tolerance_for(POLYATTN_DTYPE_F32).o_rel <
          pa_tk_tolerance_for(POLYATTN_DTYPE_F16).o_rel);
    CHECK(pa_tk_tolerance_for(POLYATTN_DTYPE_F16).o_rel <
          pa_tk_tolerance_for(POLYATTN_DTYPE_BF16).o_rel);
}

/* Events and memory statistics of the host device. */
static void test_events_and_stats(void)
{
    polyattn_event *e0 = NULL, *e1 = NULL;
    polyattn_memory_stats st;
    polyattn_buffer *b = NULL;
    double ms = -1;
    CHECK(polyattn_event_create(ctx, &e0) == 0 && polyattn_event_create(ctx, &e1) == 0);
    CHECK(polyattn_event_record(e0) == 0);
    CHECK(polyattn_buffer_alloc(ctx, 1 << 20, &b) == 0);
    CHECK(polyattn_context_memory_stats(ctx, 0, &st) == 0 && st.current_bytes >= (1u << 20));
    CHECK(polyattn_event_record(e1) == 0);
    CHECK(polyattn_event_elapsed_ms(e0, e1, &ms) == 0 && ms >= 0.0 && ms < 60000.0);
    CHECK(polyattn_context_synchronize(ctx) == 0);
    polyattn_buffer_free(b);
    CHECK(polyattn_context_memory_stats(ctx, 1, &st) == 0 && st.peak_bytes >= (1u << 20));
    polyattn_event_destroy(e0);
    polyattn_event_destroy(e1);
}

int main(void)
{
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "no host context: %s\n", polyattn_last_error());
        return 1;
    }
    test_hand_computed();
    test_against_naive_and_properties();
    test_deterministic();
    test_masked_keys_ignored();
    test_gqa_equals_repeated_heads();
    test_layouts_agree();
    test_half_inputs();
    test_helpers_can_fail();
    test_events_and_stats();
    polyattn_context_destroy(ctx);
    pa_tk_shutdown();
    if (failures) {
        fprintf(stderr, "test_host_reference: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("test_host_reference: %d checks passed\n", checks);
    return 0;
}
