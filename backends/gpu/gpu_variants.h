/*
 * gpu_variants.h: the score variants of a pa_gpu_args (include/polyattn.h; pa_problem in
 * core/pa_backend.h gives the one definition) on the device, for CUDA and HIP kernels:
 *   s = scale q.k; softcap: cap tanh(s / cap); - slope |d(i) - j| (ALiBi); + bias;
 *   visible keys: [lo, hi) from the causal mask and the window, then attn_mask and -inf bias.
 * Include after the runtime's header.
 */
#ifndef POLYATTN_GPU_VARIANTS_H
#define POLYATTN_GPU_VARIANTS_H

#include "gpu_attn.h"
#include "gpu_rows.h"

#include <math.h>

/* Whether the arguments carry a forward score variant (pa_gpu_args_have_variants on the
 * device). */
__host__ __device__ __forceinline__ bool pa_gpu_var_on(const pa_gpu_args &a)
{
    return a.has_window || a.softcap > 0.f || a.alibi_slopes || a.bias || a.attn_mask || a.sinks;
}

/* Key d(i) on the diagonal of query i: top-left under that mask, else bottom-right. */
__host__ __device__ __forceinline__ int pa_gpu_diagonal(const pa_gpu_args &a, int query)
{
    return a.mask == 1 ? query : query + (a.seq_kv - a.seq_q);
}

/* Keys [lo, hi) that the causal mask and the window leave visible to query i
 * (pa_visible_range); lo >= hi: none. */
__host__ __device__ __forceinline__ void pa_gpu_visible_range(const pa_gpu_args &a, int query,
                                                              int &lo, int &hi)
{
    const int d = pa_gpu_diagonal(a, query);
    int x = 0, y = a.seq_kv;
    if (a.mask != 0 && d + 1 < y) y = d + 1;
    if (a.has_window) {
        if (a.window_left >= 0 && d - a.window_left > x) x = d - a.window_left;
        if (a.window_right >= 0 && d + a.window_right + 1 < y) y = d + a.window_right + 1;
    }
    if (y < 0) y = 0;
    if (x > a.seq_kv) x = a.seq_kv;
    lo = x;
    hi = y > x ? y : x;
}

/* The ALiBi slope of (batch, head); 0 without ALiBi. */
__device__ __forceinline__ float pa_gpu_alibi_slope(const pa_gpu_args &a, int batch, int head)
{
    if (!a.alibi_slopes) return 0.f;
    return a.alibi_slopes[a.alibi_per_batch ? batch * a.heads_q + head : head];
}

/* The sink logit of head h (natural units), -inf without sinks. */
__device__ __forceinline__ float pa_gpu_sink(const pa_gpu_args &a, int head)
{
    return a.sinks ? a.sinks[head] : -INFINITY;
}

/* softcap, then ALiBi, on a natural-units score s of key `key` (slope 0: no ALiBi). */
__device__ __forceinline__ float pa_gpu_cap_alibi(const pa_gpu_args &a, float s, float slope,
                                                  int diag, int key)
{
    if (a.softcap > 0.f) s = a.softcap * tanhf(s / a.softcap);
    if (slope != 0.f) s -= slope * (float)(diag > key ? diag - key : key - diag);
    return s;
}

/* ---- Per-pair scores with bias and attn_mask: kernels built on gpu_port.h (its 16-bit
 * types load the bias). */
#ifdef POLYATTN_GPU_PORT_H
__device__ __forceinline__ float pa_gpu_load_any(const void *base, int64_t idx, int dtype)
{
    if (dtype == 0) return static_cast<const float *>(base)[idx];
    if (dtype == 1) return gpu_half_to_float(static_cast<const gpu_half *>(base)[idx]);
    return gpu_bf16_to_float(static_cast<const gpu_bf16 *>(base)[idx]);
}

/* Two neighbouring elements in one load: idx even, base 8-byte aligned. */
__device__ __forceinline__ void pa_gpu_load_pair(const void *base, int64_t idx, int dtype, float &x,
                                                 float &y)
{
    if (dtype == 0) {
        struct alignas(8) F2 {
            float lo, hi;
        };
        const F2 v = *reinterpret_cast<const F2 *>(static_cast<const float *>(base) + idx);
        x = v.lo, y = v.hi;
    } else if (dtype == 1) {
        struct alignas(4) H2 {
            gpu_half lo, hi;
        };
        const H2 v = *reinterpret_cast<const H2 *>(static_cast<const gpu_half *>(base) + idx);
        x = gpu_half_to_float(v.lo), y = gpu_half_to_float(v.hi);
    } else {
        struct alignas(4) B2 {
            gpu_bf16 lo, hi;
        };
        const B2 v = *reinterpret_cast<const B2 *>(static_cast<const gpu_bf16 *>(base) + idx);
        x = gpu_bf16_to_float(v.lo), y = gpu_bf16_to_float(v.hi);
    }
}

/* What a query row (batch, head, query) needs for its scores. */
struct pa_gpu_var_row {
    int lo, hi, diag;
    float slope, sink;
    int64_t bias_base, mask_base;
};

__device__ __forceinline__ pa_gpu_var_row pa_gpu_var_row_of(const pa_gpu_args &a, int batch,
                                                            int head, int query)
{
    pa_gpu_var_row r;
    pa_gpu_visible_range(a, query, r.lo, r.hi);
    r.diag = pa_gpu_diagonal(a, query);
    r.slope = pa_gpu_alibi_slope(a, batch, head);
    r.sink = pa_gpu_sink(a, head);
    r.bias_base = batch * a.bias_stride[0] + head * a.bias_stride[1] + query * a.bias_stride[2];
    r.mask_base = batch * a.attn_mask_stride[0] + head * a.attn_mask_stride[1] +
                  query * a.attn_mask_stride[2];
    return r;
}

/* The final natural-units score of key j (in [lo, hi)) from its scaled q.k into s; false
 * when attn_mask or a -inf bias hides the pair. */
__device__ __forceinline__ bool pa_gpu_var_score(const pa_gpu_args &a, const pa_gpu_var_row &r,
                                                 int j, float scaled_qk, float &s)
{
    if (a.attn_mask && a.attn_mask[r.mask_base + j * a.attn_mask_stride[3]] == 0) return false;
    float bias = 0.f;
    if (a.bias) {
        bias = pa_gpu_load_any(a.bias, r.bias_base + j * a.bias_stride[3], a.bias_dtype);
        if (bias == -INFINITY) return false;
    }
    s = pa_gpu_cap_alibi(a, pa_gpu_score_range(scaled_qk), r.slope, r.diag, j);
    s = pa_gpu_score_range(s + bias);
    return true;
}
#endif

#endif
