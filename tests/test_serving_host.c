/*
 * Serving layouts on the host backend (the oracle of every other backend), checked against
 * a straightforward double reference written here from include/polyattn.h, one sequence at
 * a time (nothing of the library's host code is called for the reference):
 *   varlen q (packed rows with padding before and after), varlen k/v, a dense KV cache with
 *   seqused_kv, a paged cache (block sizes 16, 64, 256; blocks shuffled, shared between
 *   sequences, unused table entries -1), KV append into dense and paged caches; odd and
 *   empty sequences, GQA 1/4/8, both causal alignments, windows, softcap, ALiBi, sinks;
 *   f32, f16, bf16; unfused and flash.  Outputs are poisoned and every element is checked,
 *   rows outside every sequence must stay poisoned, caches must hold exactly the appended
 *   rows afterwards.  Backward of varlen: dQ, dK, dV and d_sinks against the reference's
 *   own gradients (rows outside the sequences: 0).  Bad inputs: test_serving_errors.c.
 */
#include "serving_fixture.h"

int main(void)
{
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        printf("no host device: skipped\n");
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
     * share, seq_new, mask, window (on, left, right), softcap, alibi, sinks, hints */
    // clang-format off
    const scase cases[] = {
        {"varlen q+kv, none", F32, 5, 2, 2, 16, 16, 1, 9, VARLEN, 23, 0, 0, 0, 0, NONE, 0, -1, -1, 0, 0, 0, 0},
        {"varlen q+kv, bottom-right, gqa 4", F32, 6, 8, 2, 32, 16, 1, 13, VARLEN, 31, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 1},
        {"varlen q+kv, top-left, gqa 8", F32, 4, 8, 1, 8, 8, 1, 11, VARLEN, 17, 0, 0, 0, 0, TL, 0, -1, -1, 0, 0, 0, 0},
        {"varlen q, dense kv, window+softcap", F32, 4, 4, 4, 16, 16, 1, 7, DENSE, 19, 0, 0, 0, 0, BR, 1, 5, 2, 5.0f, 0, 0, 0},
        {"dense q, varlen kv, alibi per batch", F32, 5, 4, 2, 16, 8, 0, 3, VARLEN, 70, 0, 0, 0, 0, BR, 0, -1, -1, 0, ABH, 0, 1},
        {"varlen, sinks, window", F32, 4, 4, 1, 8, 8, 1, 9, VARLEN, 25, 0, 0, 0, 0, TL, 1, 3, -1, 0, 0, 1, 0},
        {"dense cache, decode, gqa 4", F32, 5, 8, 2, 32, 32, 0, 1, CACHE, 75, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0},
        {"dense cache, 4 queries, append 3", F32, 4, 4, 1, 16, 16, 0, 4, CACHE, 41, 0, 0, 0, 3, BR, 1, 6, 0, 0, AH, 0, 1},
        {"paged 16, shuffled", F32, 5, 4, 4, 16, 16, 0, 2, PAGED, 70, 16, 1, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0},
        {"paged 16, shared, gqa 8, top-left", F32, 3, 8, 1, 16, 16, 0, 5, PAGED, 40, 16, 1, 1, 0, TL, 0, -1, -1, 0, 0, 0, 0},
        {"paged 64, varlen q, append, softcap", F32, 4, 4, 2, 16, 16, 1, 6, PAGED, 150, 64, 1, 0, 2, BR, 0, -1, -1, 20.0f, 0, 1, 1},
        {"paged 64, shared, append, window", F32, 3, 4, 1, 8, 8, 0, 3, PAGED, 100, 64, 0, 1, 4, BR, 1, 20, -1, 0, 0, 0, 0},
        {"paged 256, decode, gqa 4, sinks", F32, 3, 4, 1, 16, 16, 0, 1, PAGED, 300, 256, 1, 0, 1, BR, 0, -1, -1, 0, AH, 1, 0},
        {"paged 256, varlen q, top-left window", F32, 3, 2, 2, 8, 8, 1, 9, PAGED, 280, 256, 1, 0, 0, TL, 1, 7, 3, 0, 0, 0, 1},
        {"varlen f16", F16, 4, 4, 2, 32, 32, 1, 10, VARLEN, 33, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0},
        {"paged bf16, append", BF16, 3, 4, 2, 16, 16, 1, 5, PAGED, 50, 16, 1, 1, 2, BR, 0, -1, -1, 0, 0, 0, 0},
        {"dense cache f16, append, softcap+window", F16, 3, 4, 4, 16, 16, 0, 3, CACHE, 30, 0, 0, 0, 2, BR, 1, 4, 1, 10.0f, 0, 0, 0},
    };
    // clang-format on
    const size_t n_cases = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n_cases; i++) {
        const serving_run unfused = {.algo = POLYATTN_ALGO_UNFUSED};
        const serving_run flash = {.algo = POLYATTN_ALGO_FLASH};
        serving_check_forward(&cases[i], &unfused, 1000 + i, NULL);
        serving_check_forward(&cases[i], &flash, 2000 + i, NULL);
    }
    // clang-format off
    const scase bwd_cases[] = {
        {"bwd varlen q+kv, bottom-right, gqa 4", F32, 5, 8, 2, 16, 16, 1, 9, VARLEN, 21, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0},
        {"bwd varlen q, dense kv, top-left, window, softcap, sinks", F32, 4, 4, 1, 8, 16, 1, 7, DENSE, 11, 0, 0, 0, 0, TL, 1, 3, 1, 4.0f, 0, 1, 0},
        {"bwd dense q, varlen kv, alibi per batch", F32, 4, 2, 2, 8, 8, 0, 4, VARLEN, 15, 0, 0, 0, 0, NONE, 0, -1, -1, 0, ABH, 0, 1},
    };
    // clang-format on
    for (size_t i = 0; i < sizeof bwd_cases / sizeof bwd_cases[0]; i++) {
        const serving_run unfused = {.algo = POLYATTN_ALGO_UNFUSED};
        const serving_run flash = {.algo = POLYATTN_ALGO_FLASH};
        serving_check_backward(&bwd_cases[i], &unfused, 3000 + i);
        serving_check_backward(&bwd_cases[i], &flash, 4000 + i);
    }
    polyattn_context_destroy(ctx);
    pa_tk_shutdown();
    printf("test_serving_host: %zu forward cases x 2 algorithms, %d checks, %d failures\n", n_cases,
           checks, failures);
    return failures ? 1 : 0;
}
