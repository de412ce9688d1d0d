/*
 * AUTO's default order on CUDA devices, from the H100 measurements committed under
 * bench/results/ (each rule names its evidence; tables in docs/performance.md).  Autotune (a plan option) measures
 * instead; debug mode and requests for the probabilities put unfused first (core/plan.c).
 */
#include "cuda_policy.h"

#include <stdlib.h>
#include <string.h>

#define U POLYATTN_ALGO_UNFUSED
#define F POLYATTN_ALGO_FUSED
#define L POLYATTN_ALGO_FLASH

static void set(polyattn_algo order[3], polyattn_algo a, polyattn_algo b, polyattn_algo c)
{
    order[0] = a, order[1] = b, order[2] = c;
}

/* bench/results/2026-11-25-h100-cuda-wgmma-flash-vs-unfused.md (GPU time, f16 and bf16): on sm_90 the
 * wgmma flash kernel (head dims 512 and 768) against cuBLAS unfused:
 * - D 512 causal: faster at every N measured, 128-4096 (1.25-1.97x);
 * - D 512: faster up to N = 1024 (1.06-1.96x), 0.87-0.88x from 2048;
 * - D 768 causal: faster up to 1024 (1.11-1.73x), 0.88-0.92x from 2048;
 * - D 768: faster up to 256 (1.25-1.68x), 0.46-0.74x from 512. */
static int wgmma_flash_first(const char *arch, const pa_problem *p, int64_t longest)
{
    if (!arch || strcmp(arch, "sm_90") || p->dtype == POLYATTN_DTYPE_F32 ||
        p->head_dim != p->head_dim_v)
        return 0;
    const int causal = p->mask != POLYATTN_MASK_NONE;
    if (p->head_dim == 512) return causal || longest <= 1024;
    if (p->head_dim == 768) return longest <= (causal ? 1024 : 256);
    return 0;
}

/* Whether arch ("sm_75", ...) predates the mma.sync kernels (sm_80); unknown: no. */
static int pre_ampere(const char *arch)
{
    return arch && !strncmp(arch, "sm_", 3) && atoi(arch + 3) > 0 && atoi(arch + 3) < 80;
}

void pa_cuda_auto_order(const char *arch, const pa_problem *p, polyattn_algo order[3],
                        const char **why)
{
    const int64_t longest = p->seq_q > p->seq_kv ? p->seq_q : p->seq_kv;
    if (p->dtype == POLYATTN_DTYPE_E4M3) {
        set(order, L, U, F);
        *why = "cuda, e4m3 inputs: flash first, the only algorithm that reads them (the generic "
               "SIMT kernel)";
        return;
    }
    /* bench/results/2026-11-24-h100-cuda-algorithms-fa2.csv, -decode.csv and
     * 2026-11-24-h100-cuda-forward-algorithms.md: fused was the slowest on every shape
     * (3-15x behind unfused); cuBLAS unfused beat flash in decode (seq_q 1, seq_kv >= 4096:
     * 1.2-4x); tensor-core flash beat unfused 2.7-9.5x on every FlashAttention-2 shape
     * (f16/bf16, head_dim 64/128, N 512-16384).  On the article's shapes (head_dim
     * 512-1024), in GPU time (CUDA-graph replays,
     * 2026-11-24-h100-cuda-flash-vs-unfused-article-shapes.md): f32 flash (3xTF32 tensor
     * cores, column halves) 1.8-2.1x faster than unfused and no N x N scores; f16/bf16
     * unfused 1.5-1.6x faster than flash from N = 512 at head_dim 1024, flash 1.23x faster
     * at 16x128.  Other head dims above 256 have no tensor-core flash kernel. */
    if (p->head_dim > 256 || p->head_dim_v > 256) {
        const int wide = p->head_dim == p->head_dim_v &&
                         (p->head_dim == 512 || p->head_dim == 768 || p->head_dim == 1024);
        if (p->dtype == POLYATTN_DTYPE_F32 && wide) {
            set(order, L, U, F);
            *why = "cuda, f32, head_dim 512/768/1024: flash (3xTF32 tensor cores) first, "
                   "measured 1.8-2.1x faster than unfused on the article's shapes (GPU time)";
        } else if (wgmma_flash_first(arch, p, longest)) {
            set(order, L, U, F);
            *why = "cuda sm_90, f16/bf16, head_dim 512/768: the wgmma flash kernel first, "
                   "measured 1.06-1.97x faster than unfused at this head dim, mask and "
                   "length (GPU time, N 128-4096)";
        } else if (wide && p->seq_q <= 128 && p->seq_kv <= 128) {
            set(order, L, U, F);
            *why = "cuda, f16/bf16, head_dim 512/768/1024, seq <= 128: tensor-core flash "
                   "first, measured 1.23x faster than unfused at 16x128 D 512 (GPU time)";
        } else {
            set(order, U, L, F);
            *why = "cuda, head_dim > 256: unfused (cuBLAS) first, measured 1.5-1.6x faster "
                   "than flash in f16/bf16 on the article's shapes from N = 512 (GPU time)";
        }
    } else if (p->seq_q <= 16 && p->seq_kv >= 4096 && p->dtype != POLYATTN_DTYPE_F32 &&
               !pre_ampere(arch) && p->head_dim == p->head_dim_v &&
               (p->head_dim == 64 || p->head_dim == 128 || p->head_dim == 256)) {
        /* bench/results/2026-12-07-h100-serving.md: the tensor-core serving kernel with key
         * splits against cuBLAS unfused, bf16 D 128, GQA 32/8, batch 8: 3.1-3.6x faster
         * (one query, 8k-128k keys). */
        set(order, L, U, F);
        *why = "cuda, f16/bf16 decode (seq_q <= 16, seq_kv >= 4096) at head_dim 64/128/256: "
               "flash (tensor-core serving kernel, key splits) first, measured 3.1-3.6x "
               "faster than unfused";
    } else if (p->seq_q <= 16 && p->seq_kv >= 4096 &&
               (double)p->batch * (double)p->heads_q * (double)p->seq_q < 8192) {
        /* bench/results/2026-11-24-h100-auto-vs-autotune.csv: flash won back at
         * batch 16 x 32 heads x 16 queries (8192 rows fill the GPU). */
        set(order, U, L, F);
        *why = "cuda, decode (seq_q <= 16, seq_kv >= 4096, < 8192 query rows): unfused "
               "first, measured 1.2-4x faster than flash";
    } else if (p->dtype == POLYATTN_DTYPE_F32 && !pre_ampere(arch) &&
               p->head_dim == p->head_dim_v && (p->head_dim == 64 || p->head_dim == 128)) {
        /* bench/results/2026-12-07-h200-f32-tile-vs-torch.csv: the 3xTF32 tile kernel at
         * 66 TFLOP/s (D 64) and 53 (D 128) on the FlashAttention-2 sweep, above cuBLAS
         * unfused's best 37 and without its N x N scores */
        set(order, L, U, F);
        *why = "cuda, f32, head_dim 64/128: flash (3xTF32 tile kernel) first, measured 53-66 "
               "TFLOP/s against unfused's 37 at best";
    } else if (p->dtype == POLYATTN_DTYPE_F32) {
        set(order, U, L, F);
        *why = "cuda, f32, head_dim <= 256: unfused (cuBLAS) first; flash's f32 path "
               "there has no tensor cores";
    } else {
        set(order, L, U, F);
        *why = "cuda, f16/bf16, head_dim <= 256: tensor-core flash first, measured "
               "2.7-9.5x faster than unfused";
    }
}
