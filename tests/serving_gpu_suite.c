/*
 * The serving cases on a GPU backend (CUDA, HIP, or the emulated HIP device) against the
 * fixture's double reference (serving_checks.c): every case in f32, f16 and bf16, through
 * every algorithm whose plan accepts it (AUTO, unfused, fused, flash), flash also with key
 * splits forced to 1, 3 and 128 (capped at the key tiles) besides the plan's own choice;
 * varlen backward, atomic and deterministic.  It does not assume which kernel runs: a plan
 * may refuse (reported), except flash, which serves every layout on the GPU backends.
 */
#include "serving_gpu_suite.h"

#include "serving_fixture.h"

static const polyattn_dtype F32 = POLYATTN_DTYPE_F32, F16 = POLYATTN_DTYPE_F16,
                            BF16 = POLYATTN_DTYPE_BF16;
static const polyattn_mask NONE = POLYATTN_MASK_NONE, TL = POLYATTN_MASK_CAUSAL_TOP_LEFT,
                           BR = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
static const polyattn_kv_layout DENSE = POLYATTN_KV_DENSE, VARLEN = POLYATTN_KV_VARLEN,
                                CACHE = POLYATTN_KV_CACHE, PAGED = POLYATTN_KV_PAGED;
static const polyattn_alibi AH = POLYATTN_ALIBI_PER_HEAD, ABH = POLYATTN_ALIBI_PER_BATCH_HEAD;

/* name, dtype (replaced per run), batch, hq, hkv, d, dv, varlen_q, seq_q, kv, seq_kv,
 * block_size, shuffle, share, seq_new, mask, window (on, left, right), softcap, alibi, sinks,
 * hints.  Key counts past 3 x 64 keys give the forced splits three key ranges. */
// clang-format off
static const scase fwd_cases[] = {
    {"varlen q+kv, none", F32, 5, 2, 2, 16, 16, 1, 9, VARLEN, 23, 0, 0, 0, 0, NONE, 0, -1, -1, 0, 0, 0, 0},
    {"varlen q+kv, bottom-right, gqa 4", F32, 6, 8, 2, 32, 16, 1, 13, VARLEN, 231, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 1},
    {"varlen q+kv, top-left, gqa 8", F32, 4, 8, 1, 8, 8, 1, 41, VARLEN, 17, 0, 0, 0, 0, TL, 0, -1, -1, 0, 0, 0, 0},
    {"varlen q, dense kv, window+softcap", F32, 4, 4, 4, 16, 16, 1, 7, DENSE, 219, 0, 0, 0, 0, BR, 1, 70, 2, 5.0f, 0, 0, 0},
    {"dense q, varlen kv, alibi per batch", F32, 5, 4, 2, 16, 8, 0, 3, VARLEN, 270, 0, 0, 0, 0, BR, 0, -1, -1, 0, ABH, 0, 1},
    {"varlen, sinks, window", F32, 4, 4, 1, 8, 8, 1, 9, VARLEN, 225, 0, 0, 0, 0, TL, 1, 100, -1, 0, 0, 1, 0},
    {"dense cache, decode, gqa 4", F32, 5, 8, 2, 32, 32, 0, 1, CACHE, 275, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0},
    {"dense cache, 4 queries, append 3", F32, 4, 4, 1, 16, 16, 0, 4, CACHE, 41, 0, 0, 0, 3, BR, 1, 6, 0, 0, AH, 0, 1},
    {"paged 16, shuffled", F32, 5, 4, 4, 16, 16, 0, 2, PAGED, 270, 16, 1, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0},
    {"paged 16, shared, gqa 8, top-left", F32, 3, 8, 1, 16, 16, 0, 5, PAGED, 40, 16, 1, 1, 0, TL, 0, -1, -1, 0, 0, 0, 0},
    {"paged 64, varlen q, append, softcap, sinks", F32, 4, 4, 2, 16, 16, 1, 6, PAGED, 250, 64, 1, 0, 2, BR, 0, -1, -1, 20.0f, 0, 1, 1},
    {"paged 64, shared, append, window", F32, 3, 4, 1, 8, 8, 0, 3, PAGED, 200, 64, 0, 1, 4, BR, 1, 20, -1, 0, 0, 0, 0},
    {"paged 256, decode, gqa 4, sinks, alibi", F32, 3, 4, 1, 16, 16, 0, 1, PAGED, 600, 256, 1, 0, 1, BR, 0, -1, -1, 0, AH, 1, 0},
    {"paged 256, varlen q, top-left window", F32, 3, 2, 2, 8, 8, 1, 9, PAGED, 280, 256, 1, 0, 0, TL, 1, 7, 3, 0, 0, 0, 1},
    {"varlen, head dim 128 x 64, gqa 4", F32, 3, 4, 1, 128, 64, 1, 70, VARLEN, 150, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0},
    {"paged 16, head dim 64, append, bottom-right", F32, 4, 8, 2, 64, 64, 1, 33, PAGED, 130, 16, 1, 0, 5, BR, 0, -1, -1, 0, 0, 0, 1},
    /* head dims of CUDA's tensor-core serving kernel (64, 128, 256): GQA-packed decode tiles,
     * varlen prefill tiles, the variants on both */
    {"tc decode, D128, gqa 4, cache, append, sinks", F32, 3, 8, 2, 128, 128, 0, 1, CACHE, 700, 0, 0, 0, 1, BR, 0, -1, -1, 0, 0, 1, 0},
    {"tc 16 queries, D64, gqa 4, paged 64, softcap, window", F32, 2, 16, 4, 64, 64, 0, 16, PAGED, 500, 64, 1, 0, 0, BR, 1, 100, 0, 30.0f, 0, 0, 0},
    {"tc varlen prefill, D128, gqa 2", F32, 3, 4, 2, 128, 128, 1, 150, VARLEN, 170, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 1},
    {"tc varlen, D256, alibi, top-left", F32, 2, 2, 1, 256, 256, 1, 70, VARLEN, 90, 0, 0, 0, 0, TL, 0, -1, -1, 0, AH, 0, 0},
    {"tc paged 256, D128, 5 queries, shared, append", F32, 2, 8, 8, 128, 128, 0, 5, PAGED, 600, 256, 1, 1, 5, BR, 0, -1, -1, 0, 0, 0, 0},
    /* head dim 96 (the Hopper kernel's padded columns when forced; elsewhere the generic
     * kernel) */
    {"varlen prefill, D96, gqa 3", F32, 3, 6, 2, 96, 96, 1, 140, VARLEN, 160, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0},
    {"paged 64, D96, 40 queries", F32, 2, 4, 2, 96, 96, 0, 40, PAGED, 300, 64, 1, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0},
};
static const scase bwd_cases[] = {
    {"bwd varlen q+kv, bottom-right, gqa 4", F32, 5, 8, 2, 16, 16, 1, 9, VARLEN, 21, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0},
    {"bwd varlen q+kv, top-left, long", F32, 3, 4, 4, 32, 32, 1, 70, VARLEN, 90, 0, 0, 0, 0, TL, 0, -1, -1, 0, 0, 0, 1},
    {"bwd varlen q, dense kv, gqa 4", F32, 4, 4, 1, 8, 16, 1, 7, DENSE, 11, 0, 0, 0, 0, TL, 0, -1, -1, 0, 0, 0, 0},
    {"bwd dense q, varlen kv, none", F32, 4, 2, 2, 8, 8, 0, 4, VARLEN, 15, 0, 0, 0, 0, NONE, 0, -1, -1, 0, 0, 0, 1},
    {"bwd varlen q+kv, sinks and window (variants)", F32, 4, 4, 1, 8, 8, 1, 7, VARLEN, 11, 0, 0, 0, 0, TL, 1, 3, 1, 0, 0, 1, 0},
};
// clang-format on

/* Whether a plan of flash with num_splits = n may report `got` splits when the shared
 * generic kernel runs it (pa_gpu_flash_generic_splits: n capped at the key tiles of 64 keys
 * of max_seqlen_kv, which is at least the longest sequence's keys; 1 below two tiles). */
static int generic_splits_ok(const scase *c, int n, int got)
{
    const int64_t tiles = (c->seq_kv + (c->seq_new > 0 ? c->seq_new : 0) + 63) / 64;
    if (n == 1) return got == 1;
    if (got < 1 || got > n) return 0;
    const int64_t least = tiles < n ? tiles : n; /* max_seqlen_kv may hold more tiles */
    return least < 2 ? 1 : got >= least;
}

void serving_suite_use(polyattn_context *context) { ctx = context; }

int serving_gpu_suite(const serving_suite_options *o)
{
    const polyattn_dtype dtypes[] = {F32, F16, BF16};
    const polyattn_algo algos[] = {POLYATTN_ALGO_AUTO,  POLYATTN_ALGO_UNFUSED, POLYATTN_ALGO_FUSED,
                                   POLYATTN_ALGO_FLASH, POLYATTN_ALGO_FLASH,   POLYATTN_ALGO_FLASH,
                                   POLYATTN_ALGO_FLASH};
    const int forced[] = {0, 0, 0, 0, 1, 3, 128};
    const int n_algos = o->quick ? 3 : 7; /* quick: flash with 0, 1 and 3 splits only */
    const int first_algo = o->quick ? 3 : 0;
    int runs = 0, refused = 0, split_runs = 0, tc_runs = 0, before = failures;
    const size_t n_fwd = sizeof fwd_cases / sizeof fwd_cases[0];
    for (size_t i = 0; i < n_fwd; i++)
        for (int t = 0; t < 3; t++) {
            if (o->quick && t > 0 && i % 3 != (size_t)t) continue; /* each dtype on a third */
            scase c = fwd_cases[i];
            c.dtype = dtypes[t];
            for (int a = first_algo; a < first_algo + n_algos && a < 7; a++) {
                const int flash = algos[a] == POLYATTN_ALGO_FLASH;
                serving_run run = {.algo = algos[a],
                                   .num_splits = forced[a],
                                   .tol_scale = o->tol_scale,
                                   .allow_unsupported = !flash || o->flash_may_refuse};
                polyattn_plan_info info;
                const int r = serving_check_forward(&c, &run, 7000 + 31 * i + t, &info);
                runs++;
                refused += r == 2;
                if (r == 0 && info.num_splits > 1) split_runs++;
                if (r == 0 && flash && c.dtype != F32 && c.d == c.dv &&
                    (c.d == 64 || c.d == 128 || c.d == 256))
                    tc_runs++;
                if (r == 0 && flash && o->generic_splits && forced[a] > 0) {
                    const int ok = generic_splits_ok(&c, forced[a], info.num_splits);
                    CHECK(ok);
                    if (!ok)
                        fprintf(stderr, "  %s: num_splits %d planned %d splits\n", c.name,
                                forced[a], info.num_splits);
                }
                if (r == 1 || o->verbose)
                    printf("%-46s %-4s %-7s splits %3d -> %3d: %s\n", c.name,
                           polyattn_dtype_name(c.dtype), polyattn_algo_name(algos[a]), forced[a],
                           r == 2 ? 0 : info.num_splits,
                           r == 0   ? "pass"
                           : r == 2 ? "refused"
                                    : "FAIL");
            }
        }
    /* A path that splits must have run somewhere (the generic kernel always can). */
    if (o->generic_splits) CHECK(split_runs > 0);
    if (o->tensor_cores) CHECK(tc_runs > 0);
    const size_t n_bwd = sizeof bwd_cases / sizeof bwd_cases[0];
    int bwd_runs = 0, bwd_refused = 0;
    for (size_t i = 0; i < n_bwd; i++)
        for (int det = 0; det < 2; det++) {
            if (o->quick && det != (int)(i % 2)) continue;
            const scase *c = &bwd_cases[i];
            /* The last case has score variants: a backward without them may refuse; so may
             * every case under a forced forward kernel (the f32 forward a backward plans
             * first is not that kernel's). */
            const int variants = c->has_window || c->sinks || c->softcap > 0 || c->alibi;
            serving_run run = {.algo = POLYATTN_ALGO_FLASH,
                               .deterministic = det,
                               .allow_unsupported = variants || o->flash_may_refuse};
            const int r = serving_check_backward(c, &run, 9000 + 7 * i + det);
            bwd_runs++;
            bwd_refused += r == 2;
            if (r == 1 || o->verbose)
                printf("%-46s f32  flash backward%s: %s\n", c->name, det ? " (deterministic)" : "",
                       r == 0   ? "pass"
                       : r == 2 ? "refused"
                                : "FAIL");
        }
    printf("%s serving: %d forward runs (%d refused by their plan, %d split), %d backward runs (%d "
           "refused), %d failures\n",
           o->label, runs, refused, split_runs, bwd_runs, bwd_refused, failures - before);
    return failures - before;
}
