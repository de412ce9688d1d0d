/*
 * Serving layouts on the OpenCL flash path (backends/opencl/ocl_serving.c) against the double
 * reference of tests/serving_fixture.c: varlen q and k/v, dense and paged caches (block sizes
 * 16 and 64, shuffled and shared blocks), KV append into both, odd and empty sequences, GQA 1
 * and 4, both causal alignments, window, softcap, ALiBi (per head and per batch), sinks;
 * f32, f16, bf16; key splits forced to 1 and to several, and the plan's own choice.  Outputs
 * are poisoned and every element is checked; rows outside the sequences must keep their
 * poison, the caches must hold exactly the appended rows.  AUTO must pick flash.
 */
#include "serving_fixture.h"

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
    polyattn_status st = polyattn_plan_create(ctx, &w.desc, &opt, &plan);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "  %s: plan: %s\n", c->name, polyattn_context_last_error(ctx));
        unbuild(&w);
        return;
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

int main(void)
{
    if (polyattn_context_create(POLYATTN_BACKEND_OPENCL, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        printf("no opencl device: skipped\n");
        return 77;
    }
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
    };
    // clang-format on
    const size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++)
        check_forward(&cases[i].c, i % 2 ? POLYATTN_ALGO_AUTO : POLYATTN_ALGO_FLASH,
                      cases[i].splits, 5000 + i);
    polyattn_context_destroy(ctx);
    pa_tk_shutdown();
    printf("test_ocl_serving: %zu forward cases, %d checks, %d failures\n", n, checks, failures);
    return failures ? 1 : 0;
}
