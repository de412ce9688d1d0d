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
 * entry; a third adds opencl.coop=serial, its other shape), which the dispatch log must
 * then name, with its shape, for every plan with at most 64 packed rows.
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

/* The coop kernel's shape the log must name: batched loads unless opencl.coop=serial. */
static const char *coop_loads(void)
{
    const char *f = getenv("POLYATTN_FORCE");
    return f && strstr(f, "opencl.coop=serial") ? "serial loads" : "batched loads";
}

/* The shared forward check (serving_checks.c: every element of O, LSE and the caches), then
 * what OpenCL's plan must say: flash, its split count and workspace, and under the forced
 * coop kernel the dispatch log naming it. */
static void check_forward(const scase *c, polyattn_algo algo, int num_splits, uint64_t seed)
{
    const serving_run run = {.algo = algo, .num_splits = num_splits};
    polyattn_plan_info info;
    log_text[0] = '\0';
    if (serving_check_forward(c, &run, seed, &info)) {
        fprintf(stderr, "  %s: splits %d asked\n", c->name, num_splits);
        return; /* counted and reported */
    }
    /* Forced, the coop kernel takes every plan of at most 64 packed rows (dense q: exact). */
    if (coop_forced() && !c->varlen_q && c->seq_q * (c->hq / c->hkv) <= 64) {
        CHECK(strstr(log_text, "cooperative decode kernel") != NULL);
        CHECK(strstr(log_text, coop_loads()) != NULL);
        if (!strstr(log_text, "cooperative decode kernel") || !strstr(log_text, coop_loads()))
            fprintf(stderr, "  %s: the log lacks the coop kernel with %s:\n%s", c->name,
                    coop_loads(), log_text);
    }
    CHECK(info.algo == POLYATTN_ALGO_FLASH);
    CHECK(info.num_splits >= 1 && (num_splits == 0 || info.num_splits <= num_splits));
    /* Forced splits are taken wherever the keys allow (key tiles of 16). */
    if (num_splits > 1 && c->seq_kv + c->seq_new >= 16 * num_splits)
        CHECK(info.num_splits == num_splits);
    CHECK((info.num_splits > 1) == (info.workspace_bytes > 0));
}

/* The shared varlen backward check: dQ, dK, dV (and d_sinks) against the reference. */
static void check_backward(const scase *c, polyattn_algo algo, uint64_t seed)
{
    const serving_run run = {.algo = algo};
    serving_check_backward(c, &run, seed);
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
