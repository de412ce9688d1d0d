/*
 * flash_bwd.h: FlashAttention-2-style backward shared by the CUDA and HIP backends (SIMT,
 * f32 accumulation, every dtype, head dims up to PA_GPU_MAX_HEAD_DIM).  P is recomputed
 * tile by tile from Q, K and the forward's LSE, so no seq_q x seq_kv array exists.
 *
 * dK and dV are accumulated per key tile by the block that owns it (summed over the query
 * heads of a GQA group in a fixed order); dQ is either accumulated with f32 atomics into
 * the workspace (default) or, when deterministic, computed by a second pass over the key
 * tiles of each query tile (no atomics: bitwise-reproducible, more arithmetic).
 *
 * Score variants (gpu_variants.h): P is recomputed from the same final scores as the
 * forward's (the sinks are in the LSE already); dS of the final score goes to d_bias and,
 * times 1 - tanh^2 under softcap, to dQ and dK.  d_bias is dS summed over the dimensions
 * the bias broadcasts: plain stores when no two (batch, head) pairs share an element, f32
 * atomics when they do, and when deterministic a separate pass per d_bias tile over the
 * sharing pairs in order.  d_sinks[h] = -sum over rows of exp(sink - LSE) * delta, one
 * block per head in a fixed order.
 */
#ifndef POLYATTN_GPU_FLASH_BWD_H
#define POLYATTN_GPU_FLASH_BWD_H

#include "gpu_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pa_gpu_bwd_args {
    /* q, k, v, o (the forward's output), dims, strides, dtype, mask, scale; lse is the
     * forward's LSE (input, -inf on fully masked rows); probs unused. */
    pa_gpu_args fwd;
    const void *d_o;    /* o's dtype and strides */
    void *dq, *dk, *dv; /* q's, k's and v's dtype and strides; every element is written */
    int deterministic;  /* 1: no atomics anywhere */
    /* Variants' gradients (NULL: not wanted): d_bias f32 contiguous [d_bias_batch,
     * d_bias_heads, seq_q, seq_kv] (the bias's shape: batch or 1, heads_q or 1); d_sinks f32
     * [heads_q].  Every element is written. */
    float *d_bias, *d_sinks;
    int d_bias_batch, d_bias_heads;
} pa_gpu_bwd_args;

/* Bytes of device workspace pa_gpu_flash_bwd needs (f32 delta rows, and the f32 dQ
 * accumulator unless deterministic). */
uint64_t pa_gpu_flash_bwd_workspace(const pa_gpu_bwd_args *a);
/* Shared memory (bytes) the kernels need; 0 when the problem is beyond them. */
size_t pa_gpu_flash_bwd_smem(const pa_gpu_bwd_args *a);
/* Enqueues every kernel on `stream`; returns the runtime's launch error (0: ok). */
int pa_gpu_flash_bwd(const pa_gpu_bwd_args *a, void *workspace, void *stream);

#ifdef __cplusplus
}
#endif
#endif
