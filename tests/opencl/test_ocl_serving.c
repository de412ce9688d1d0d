/*
 * Serving layouts on the OpenCL flash path (backends/opencl/ocl_serving.c) against the double
 * reference of tests/serving_fixture.c: varlen q and k/v, dense and paged caches (block sizes
 * 16 and 64, shuffled and shared blocks), KV append into both, odd and empty sequences, GQA 1
 * and 4, both causal alignments, window, softcap, ALiBi (per head and per batch), sinks;
 * f32, f16, bf16; key splits forced to 1 and to several, and the plan's own choice.  Outputs
 * are poisoned and every element is checked; rows outside the sequences must keep their
 * poison, the caches must hold exactly the appended rows.  AUTO must pick flash.  The varlen
 * backward: dQ, dK, dV against the reference's gradients (zeros outside the sequences).
 * Decode cases (1 to 16 queries, GQA 4 and 8, a few thousand keys, block sizes 16/64/256)
 * run the cooperative GPU kernel under POLYATTN_FORCE=opencl.serving=coop (a second ctest
 * entry), which the dispatch log must then name for every plan with at most 64 packed rows.
 */
#include "serving_fixture.h"

static char log_text[4096];

static void on_log(polyattn_log_category category, const char *message, void *user)
{
    (void)category, (void)user;
    size_t n = strlen(log_text);
    snprintf(log_text + n, sizeof log_text - n, "%s\n", message);
}

/* Whether POLYATTN_FORCE asks for the cooperative kernel. */
static int coop_forced(void)
{
    const char *f = getenv("POLYATTN_FORCE");
    return f && strstr(f, "opencl.serving=coop") != NULL;
}

static void check_forward(const scase *c, polyattn_algo algo, int num_splits, uint64_t seed)
{
    built w;
    build(&w, c, seed);
    const polyattn_dtype dt = c->dtype;
    const size_t es = polyattn_dtype_size(dt);
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_lse = 1;
    opt.num_splits = num_splits;
    polyattn_plan *plan = NULL;
    log_text[0] = '\0';
    polyattn_status st = polyattn_plan_create(ctx, &w.desc, &opt, &plan);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "  %s: plan: %s\n", c->name, polyattn_context_last_error(ctx));
        unbuild(&w);
        return;
    }
    /* Forced, the coop kernel takes every plan of at most 64 packed rows (dense q: exact). */
    if (coop_forced() && !c->varlen_q && c->seq_q * (c->hq / c->hkv) <= 64) {
        CHECK(strstr(log_text, "cooperative decode kernel") != NULL);
        if (!strstr(log_text, "cooperative decode kernel"))
            fprintf(stderr, "  %s: the log lacks the coop kernel:\n%s", c->name, log_text);
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK(polyattn_plan_get_info(plan, &info) == POLYATTN_STATUS_SUCCESS);
    CHECK(info.algo == POLYATTN_ALGO_FLASH);
    CHECK(info.num_splits >= 1 && (num_splits == 0 || info.num_splits <= num_splits));
    /* Forced splits are taken wherever the keys allow (key tiles of 16). */
    if (num_splits > 1 && c->seq_kv + c->seq_new >= 16 * num_splits)
        CHECK(info.num_splits == num_splits);
    CHECK((info.num_splits > 1) == (info.workspace_bytes > 0));
    polyattn_buffer *ws = info.workspace_bytes ? upload(NULL, info.workspace_bytes) : NULL;
    st = polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, ws, &w.extra);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS)
        fprintf(stderr, "  %s: forward: %s\n", c->name, polyattn_context_last_error(ctx));
    unsigned char *o = malloc(w.o_bytes), *k = malloc(w.k_bytes), *v = malloc(w.v_bytes);
    float *lse = malloc(w.lse_elems * 4);
    unsigned char *written = calloc(w.o_bytes / es, 1), *lse_written = calloc(w.lse_elems, 1);
    polyattn_buffer_read(w.bo, 0, o, w.o_bytes);
    polyattn_buffer_read(w.blse, 0, lse, w.lse_elems * 4);
    polyattn_buffer_read(w.bk, 0, k, w.k_bytes), polyattn_buffer_read(w.bv, 0, v, w.v_bytes);
    const double o_tol = dt == POLYATTN_DTYPE_F32 ? 2e-5 : dt == POLYATTN_DTYPE_F16 ? 2e-3 : 1.6e-2;
    double *ro = malloc((size_t)c->dv * sizeof *ro);
    long long bad = 0;
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->hq; h++)
            for (int64_t i = 0; i < w.lq[b]; i++) {
                ref_row rr;
                ref_row_init(&w, b, h, i, &rr);
                ref_o(&w, b, h, i, &rr, ro);
                for (int64_t x = 0; x < c->dv; x++) {
                    int64_t e = at(&w.desc.o, c->varlen_q ? 0 : b, h, w.q0[b] + i, x);
                    float got;
                    pa_tk_decode(&got, o + (size_t)e * es, 1, dt);
                    written[e] = 1;
                    if (!(fabs(got - ro[x]) <= o_tol) && bad++ < 4)
                        fprintf(stderr,
                                "  %s: seq %lld head %lld query %lld O[%lld] = %g, want %g\n",
                                c->name, (long long)b, (long long)h, (long long)i, (long long)x,
                                got, ro[x]);
                }
                int64_t li = lse_index(&w, b, h, i);
                lse_written[li] = 1;
                double want = rr.lse, got = lse[li];
                int ok = isinf(want) ? got == want : fabs(got - want) <= 2e-5 * (1.0 + fabs(want));
                if (!ok && bad++ < 4)
                    fprintf(stderr, "  %s: seq %lld head %lld query %lld LSE %g, want %g\n",
                            c->name, (long long)b, (long long)h, (long long)i, got, want);
            }
    long long touched = 0;
    for (size_t e = 0; e < w.o_bytes / es; e++)
        if (!written[e] && memcmp(o + e * es, w.o_img + e * es, es) != 0) touched++;
    float poison;
    pa_tk_poison(&poison, 1, POLYATTN_DTYPE_F32);
    for (size_t e = 0; e < w.lse_elems; e++)
        if (!lse_written[e] && memcmp(&lse[e], &poison, 4) != 0) touched++;
    const unsigned char *k_want = c->seq_new ? w.k_after : w.k_img,
                        *v_want = c->seq_new ? w.v_after : w.v_img;
    long long cache_bad = memcmp(k, k_want, w.k_bytes) != 0 || memcmp(v, v_want, w.v_bytes) != 0;
    CHECK(bad == 0);
    CHECK(touched == 0);
    CHECK(cache_bad == 0);
    if (bad || touched || cache_bad)
        fprintf(stderr,
                "  %s (splits %d of %d): %lld bad, %lld padding elements written, caches %s\n",
                c->name, info.num_splits, num_splits, bad, touched, cache_bad ? "wrong" : "right");
    free(o), free(k), free(v), free(lse), free(written), free(lse_written), free(ro);
    polyattn_buffer_free(ws);
    polyattn_plan_destroy(plan);
    unbuild(&w);
}

/* ---- backward of varlen: dQ, dK, dV, d_sinks against the reference's gradients ---- */

static void check_backward(const scase *c, polyattn_algo algo, uint64_t seed)
{
    built w;
    build(&w, c, seed);
    const size_t es = 4; /* f32 only */
    polyattn_plan *plan = NULL;
    polyattn_status st = plan_for(&w, algo, 1, &plan);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "  %s backward (%s): plan: %s\n", c->name, polyattn_algo_name(algo),
                polyattn_context_last_error(ctx));
        unbuild(&w);
        return;
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK(polyattn_plan_get_info(plan, &info) == POLYATTN_STATUS_SUCCESS);
    polyattn_buffer *fws = info.workspace_bytes ? upload(NULL, info.workspace_bytes) : NULL;
    polyattn_buffer *bws =
        info.backward_workspace_bytes ? upload(NULL, info.backward_workspace_bytes) : NULL;
    pa_tk_rng r;
    pa_tk_rng_seed(&r, seed ^ 0x5eed);
    const size_t on = w.o_bytes / es, qn = w.q_bytes / es, kn = w.k_bytes / es, vn = w.v_bytes / es;
    float *d_o = malloc(on * 4);
    for (size_t e = 0; e < on; e++)
        d_o[e] = (float)pa_tk_rng_uniform(&r);
    polyattn_buffer *bdo = upload(d_o, on * 4), *bdq = upload(NULL, qn * 4);
    polyattn_buffer *bdk = upload(NULL, kn * 4), *bdv = upload(NULL, vn * 4);
    polyattn_buffer *bds = c->sinks ? upload(NULL, (size_t)c->hq * 4) : NULL;
    float *poison = malloc((qn > kn ? (qn > vn ? qn : vn) : (kn > vn ? kn : vn)) * 4);
    pa_tk_poison(poison, qn > kn ? (qn > vn ? qn : vn) : (kn > vn ? kn : vn), POLYATTN_DTYPE_F32);
    polyattn_buffer_write(bdq, 0, poison, qn * 4), polyattn_buffer_write(bdk, 0, poison, kn * 4);
    polyattn_buffer_write(bdv, 0, poison, vn * 4);
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, fws, &w.extra) ==
          POLYATTN_STATUS_SUCCESS);
    polyattn_extra_tensors ex = w.extra;
    ex.d_sinks = bds;
    st = polyattn_backward_ex(plan, w.bq, w.bk, w.bv, w.bo, bdo, w.blse, bdq, bdk, bdv, bws, &ex);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS)
        fprintf(stderr, "  backward: %s\n", polyattn_context_last_error(ctx));
    float *dq = malloc(qn * 4), *dk = malloc(kn * 4), *dv = malloc(vn * 4),
          *ds = malloc((size_t)c->hq * 4);
    polyattn_buffer_read(bdq, 0, dq, qn * 4), polyattn_buffer_read(bdk, 0, dk, kn * 4);
    polyattn_buffer_read(bdv, 0, dv, vn * 4);
    if (bds) polyattn_buffer_read(bds, 0, ds, (size_t)c->hq * 4);
    /* Reference gradients in the physical layouts (zeros outside the sequences). */
    double *rq = calloc(qn, sizeof *rq), *rk = calloc(kn, sizeof *rk), *rv = calloc(vn, sizeof *rv);
    double *rs = calloc((size_t)c->hq, sizeof *rs);
    double *ro = malloc((size_t)c->dv * sizeof *ro),
           *dp = malloc((size_t)(w.total_kv + 64) * sizeof *dp);
    const double scale = 1.0 / sqrt((double)c->d);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->hq; h++)
            for (int64_t i = 0; i < w.lq[b]; i++) {
                const int64_t hk = h / (c->hq / c->hkv), qa = c->varlen_q ? 0 : b;
                ref_row rr;
                ref_row_init(&w, b, h, i, &rr);
                if (rr.lse == -INFINITY) continue;
                ref_o(&w, b, h, i, &rr, ro);
                const float *g = d_o; /* dO of the row at o's strides */
                double D = 0.0, dc;
                for (int64_t x = 0; x < c->dv; x++)
                    D += (double)g[at(&w.desc.o, qa, h, w.q0[b] + i, x)] * ro[x];
                for (int64_t j = 0; j < w.lk[b]; j++) {
                    if (!visible(c, rr.diag, j)) continue;
                    const double p = exp(score(&w, b, h, i, j, rr.diag, &dc) - rr.lse);
                    int64_t a, row;
                    kv_pos(&w, b, j, &a, &row);
                    double dpj = 0.0;
                    for (int64_t x = 0; x < c->dv; x++) {
                        const double gx = g[at(&w.desc.o, qa, h, w.q0[b] + i, x)];
                        dpj += gx * w.V[b][(hk * w.lk[b] + j) * c->dv + x];
                        rv[at(&w.desc.v, a, hk, row, x)] += p * gx;
                    }
                    const double dsj = p * (dpj - D) * dc * scale;
                    for (int64_t x = 0; x < c->d; x++) {
                        rq[at(&w.desc.q, qa, h, w.q0[b] + i, x)] +=
                            dsj * w.K[b][(hk * w.lk[b] + j) * c->d + x];
                        rk[at(&w.desc.k, a, hk, row, x)] +=
                            dsj * w.Q[b][(h * w.lq[b] + i) * c->d + x];
                    }
                }
                if (c->sinks) rs[h] -= exp(rr.sink - rr.lse) * D;
            }
    double mq = 1e-30, mk = 1e-30, mv = 1e-30;
    for (size_t e = 0; e < qn; e++)
        mq = fmax(mq, fabs(rq[e]));
    for (size_t e = 0; e < kn; e++)
        mk = fmax(mk, fabs(rk[e]));
    for (size_t e = 0; e < vn; e++)
        mv = fmax(mv, fabs(rv[e]));
    long long bad = 0;
    const double tol = 1e-4;
    for (size_t e = 0; e < qn; e++)
        bad += !(fabs(dq[e] - rq[e]) <= tol * mq);
    for (size_t e = 0; e < kn; e++)
        bad += !(fabs(dk[e] - rk[e]) <= tol * mk);
    for (size_t e = 0; e < vn; e++)
        bad += !(fabs(dv[e] - rv[e]) <= tol * mv);
    for (int64_t h = 0; c->sinks && h < c->hq; h++)
        bad += !(fabs(ds[h] - rs[h]) <= 1e-4 * (1.0 + fabs(rs[h])));
    CHECK(bad == 0);
    if (bad)
        fprintf(stderr, "  %s backward (%s): %lld bad gradient elements\n", c->name,
                polyattn_algo_name(algo), bad);
    free(d_o), free(poison), free(dq), free(dk), free(dv), free(ds), free(rq), free(rk), free(rv),
        free(rs);
    free(ro), free(dp);
    polyattn_buffer_free(bdo), polyattn_buffer_free(bdq), polyattn_buffer_free(bdk);
    polyattn_buffer_free(bdv), polyattn_buffer_free(bds);
    polyattn_buffer_free(fws), polyattn_buffer_free(bws);
    polyattn_plan_destroy(plan);
    unbuild(&w);
}

int main(void)
{
    if (polyattn_context_create(POLYATTN_BACKEND_OPENCL, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        printf("no opencl device: skipped\n");
        return 77;
    }
    polyattn_set_log_callback(on_log, NULL);
    polyattn_set_log_mask(POLYATTN_LOG_DISPATCH);
    const polyattn_dtype F32 = POLYATTN_DTYPE_F32, F16 = POLYATTN_DTYPE_F16,
                         BF16 = POLYATTN_DTYPE_BF16;
    const polyattn_mask NONE = POLYATTN_MASK_NONE, TL = POLYATTN_MASK_CAUSAL_TOP_LEFT,
                        BR = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
    const polyattn_kv_layout DENSE = POLYATTN_KV_DENSE, VARLEN = POLYATTN_KV_VARLEN,
                             CACHE = POLYATTN_KV_CACHE, PAGED = POLYATTN_KV_PAGED;
    const polyattn_alibi AH = POLYATTN_ALIBI_PER_HEAD, ABH = POLYATTN_ALIBI_PER_BATCH_HEAD;
    /* name, dtype, batch, hq, hkv, d, dv, varlen_q, seq_q, kv, seq_kv, block_size, shuffle,
     * share, seq_new, mask, window (on, left, right), softcap, alibi, sinks, hints;
     * then the splits forced (0: the plan's choice). */
    // clang-format off
    const struct { scase c; int splits; } cases[] = {
        {{"varlen q+kv, none", F32, 5, 2, 2, 16, 16, 1, 9, VARLEN, 23, 0, 0, 0, 0, NONE, 0, -1, -1, 0, 0, 0, 0}, 1},
        {{"varlen q+kv, bottom-right, gqa 4", F32, 6, 8, 2, 32, 16, 1, 13, VARLEN, 31, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 1}, 0},
        {{"varlen q+kv, top-left, gqa 4, 3 splits", F32, 4, 4, 1, 8, 8, 1, 11, VARLEN, 57, 0, 0, 0, 0, TL, 0, -1, -1, 0, 0, 0, 0}, 3},
        {{"varlen q, dense kv, window+softcap", F32, 4, 4, 4, 16, 16, 1, 7, DENSE, 19, 0, 0, 0, 0, BR, 1, 5, 2, 5.0f, 0, 0, 0}, 0},
        {{"dense q, varlen kv, alibi per batch, 2 splits", F32, 5, 4, 2, 16, 8, 0, 3, VARLEN, 70, 0, 0, 0, 0, BR, 0, -1, -1, 0, ABH, 0, 1}, 2},
        {{"varlen, sinks, window", F32, 4, 4, 1, 8, 8, 1, 9, VARLEN, 25, 0, 0, 0, 0, TL, 1, 3, -1, 0, 0, 1, 0}, 1},
        {{"dense cache, decode, gqa 4", F32, 5, 8, 2, 32, 32, 0, 1, CACHE, 75, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0}, 0},
        {{"dense cache, decode, gqa 4, 4 splits", F32, 5, 8, 2, 32, 32, 0, 1, CACHE, 75, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0}, 4},
        {{"dense cache, 4 queries, append 3, 2 splits", F32, 4, 4, 1, 16, 16, 0, 4, CACHE, 41, 0, 0, 0, 3, BR, 1, 6, 0, 0, AH, 0, 1}, 2},
        {{"paged 16, shuffled", F32, 5, 4, 4, 16, 16, 0, 2, PAGED, 70, 16, 1, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0}, 1},
        {{"paged 16, shared, gqa 4, top-left, 5 splits", F32, 3, 4, 1, 16, 16, 0, 5, PAGED, 100, 16, 1, 1, 0, TL, 0, -1, -1, 0, 0, 0, 0}, 5},
        {{"paged 64, varlen q, append, softcap, sinks", F32, 4, 4, 2, 16, 16, 1, 6, PAGED, 150, 64, 1, 0, 2, BR, 0, -1, -1, 20.0f, 0, 1, 1}, 1},
        {{"paged 64, varlen q, append, sinks, 3 splits", F32, 4, 4, 2, 16, 16, 1, 6, PAGED, 150, 64, 1, 0, 2, BR, 0, -1, -1, 20.0f, 0, 1, 1}, 3},
        {{"paged 64, shared, append, window", F32, 3, 4, 1, 8, 8, 0, 3, PAGED, 100, 64, 0, 1, 4, BR, 1, 20, -1, 0, 0, 0, 0}, 0},
        {{"paged 64, decode, gqa 4, sinks, alibi", F32, 3, 4, 1, 16, 16, 0, 1, PAGED, 300, 64, 1, 0, 1, BR, 0, -1, -1, 0, AH, 1, 0}, 0},
        {{"paged 64, decode, gqa 4, sinks, 8 splits", F32, 3, 4, 1, 16, 16, 0, 1, PAGED, 300, 64, 1, 0, 1, BR, 0, -1, -1, 0, AH, 1, 0}, 8},
        {{"varlen f16", F16, 4, 4, 2, 32, 32, 1, 10, VARLEN, 33, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0}, 0},
        {{"paged bf16, append, 2 splits", BF16, 3, 4, 2, 16, 16, 1, 5, PAGED, 50, 16, 1, 1, 2, BR, 0, -1, -1, 0, 0, 0, 0}, 2},
        {{"dense cache f16, append, softcap+window", F16, 3, 4, 4, 16, 16, 0, 3, CACHE, 30, 0, 0, 0, 2, BR, 1, 4, 1, 10.0f, 0, 0, 0}, 1},
        {{"dense cache f16, decode, strided head dim 24", F16, 4, 4, 1, 24, 24, 0, 1, CACHE, 90, 0, 0, 0, 1, NONE, 0, -1, -1, 0, 0, 0, 0}, 3},
        /* decode: long keys, GQA 4 and 8, 1 to 16 queries, paged 16/64/256 */
        {{"decode paged 16, gqa 4, 1 query, bf16", BF16, 3, 8, 2, 64, 64, 0, 1, PAGED, 3000, 16, 1, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0}, 0},
        {{"decode paged 64, gqa 8, 8 queries, f16, shared", F16, 2, 16, 2, 64, 64, 0, 8, PAGED, 2500, 64, 1, 1, 0, BR, 0, -1, -1, 0, 0, 0, 0}, 0},
        {{"decode paged 256, gqa 4, 16 queries, f32, 5 splits", F32, 2, 8, 2, 128, 128, 0, 16, PAGED, 2000, 256, 1, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0}, 5},
        {{"decode cache, gqa 8, 1 query, bf16, append, sinks", BF16, 4, 16, 2, 128, 128, 0, 1, CACHE, 3000, 0, 0, 0, 1, BR, 0, -1, -1, 0, 0, 1, 0}, 0},
        {{"decode varlen kv, gqa 4, f16, head dim 96, softcap, 3 splits", F16, 3, 8, 2, 96, 96, 0, 1, VARLEN, 2000, 0, 0, 0, 0, BR, 0, -1, -1, 30.0f, 0, 0, 1}, 3},
        {{"decode paged 64, gqa 8, 8 queries, f32, append, window, alibi", F32, 2, 16, 2, 32, 32, 0, 8, PAGED, 1500, 64, 1, 1, 2, BR, 1, 300, -1, 0, AH, 0, 0}, 0},
        {{"decode paged 256, gqa 8, 16 queries (128 rows), f16", F16, 2, 16, 2, 32, 32, 0, 16, PAGED, 1200, 256, 1, 0, 0, TL, 0, -1, -1, 0, 0, 0, 0}, 0},
        {{"decode varlen q, dense kv, gqa 4, bf16, 2 splits", BF16, 3, 8, 2, 64, 32, 1, 4, DENSE, 1000, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 1}, 2},
        {{"decode paged 16, gqa 4, 16 queries, bf16, head dim 256", BF16, 1, 4, 1, 256, 256, 0, 16, PAGED, 700, 16, 1, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0}, 0},
    };
    // clang-format on
    const size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++)
        check_forward(&cases[i].c, i % 2 ? POLYATTN_ALGO_AUTO : POLYATTN_ALGO_FLASH,
                      cases[i].splits, 5000 + i);
    // clang-format off
    const scase bwd_cases[] = {
        {"bwd varlen q+kv, bottom-right, gqa 4", F32, 5, 8, 2, 16, 16, 1, 9, VARLEN, 21, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0},
        {"bwd varlen q, dense kv, top-left, window, softcap", F32, 4, 4, 1, 8, 16, 1, 7, DENSE, 11, 0, 0, 0, 0, TL, 1, 3, 1, 4.0f, 0, 0, 0},
        {"bwd dense q, varlen kv, alibi per batch", F32, 4, 2, 2, 8, 8, 0, 4, VARLEN, 15, 0, 0, 0, 0, NONE, 0, -1, -1, 0, ABH, 0, 1},
    };
    // clang-format on
    for (size_t i = 0; i < sizeof bwd_cases / sizeof bwd_cases[0]; i++)
        check_backward(&bwd_cases[i], POLYATTN_ALGO_FLASH, 6000 + i);
    polyattn_context_destroy(ctx);
    pa_tk_shutdown();
    printf("test_ocl_serving: %zu forward cases, %d checks, %d failures\n", n, checks, failures);
    return failures ? 1 : 0;
}
