/*
 * gpu_rows.h: how every CUDA/HIP forward kernel finishes a query row (include/polyattn.h,
 * "Non-finite values"), so that all of them give the same rows:
 *   - a row that sees no key (causal, window) gets O = 0 and LSE = -inf;
 *   - a row that sees keys but whose sum is not positive (a NaN or +inf score made it NaN,
 *     or every score was -inf) gets NaN in O and LSE.
 * Include after the runtime's header (cuda_runtime.h, hip_runtime.h or gpu_port.h).
 */
#ifndef POLYATTN_GPU_ROWS_H
#define POLYATTN_GPU_ROWS_H

#include <math.h>

/* The largest score whose exp2-domain value (score x log2(e)) is a finite float: kernels
 * that work in natural units treat scores beyond it as +-inf, as the exp2 domain does. */
#define PA_GPU_SCORE_MAX 2.3587511e38f

/* 1 / l for the O of a row; `seen`: the row has at least one visible key. */
__device__ __forceinline__ float pa_gpu_row_inv(float l, bool seen)
{
    return l > 0.f ? 1.f / l : (seen ? NAN : 0.f);
}

/* The row's LSE from its finite value `lse` (used when l > 0). */
__device__ __forceinline__ float pa_gpu_row_lse(float lse, float l, bool seen)
{
    return l > 0.f ? lse : (seen ? NAN : -INFINITY);
}

/* A natural-units score beyond PA_GPU_SCORE_MAX as +-inf (NaN stays NaN). */
__device__ __forceinline__ float pa_gpu_score_range(float s)
{
    return fabsf(s) > PA_GPU_SCORE_MAX ? copysignf(INFINITY, s) : s;
}

#endif
