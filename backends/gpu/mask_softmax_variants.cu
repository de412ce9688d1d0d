/*
 * The unfused softmax step with score variants (window, softcap, ALiBi, bias, attn_mask,
 * sinks; gpu_variants.h), shared by CUDA and HIP.  pa_gpu_mask_softmax (gpu_attn.cu) calls
 * it for problems that have variants, so plain problems keep their kernel.  One block a
 * score row, as there: the scores (scale applied, natural units) become probabilities in
 * the storage dtype in place.
 */
#include "gpu_port.h"
#include "gpu_attn.h"
#include "gpu_rows.h"
#include "gpu_variants.h"

#include <math.h>

namespace
{

constexpr int kThreads = 256;
constexpr int kGroup = 32; /* divides every warp/wavefront size */

__device__ __forceinline__ void store_any(void *base, int64_t idx, int dtype, float v)
{
    if (dtype == 0) static_cast<float *>(base)[idx] = v;
    else if (dtype == 1) static_cast<gpu_half *>(base)[idx] = gpu_float_to_half(v);
    else static_cast<gpu_bf16 *>(base)[idx] = gpu_float_to_bf16(v);
}

/* The row of score row `row` ([batch, heads_q, seq_q] order). */
__device__ __forceinline__ pa_gpu_var_row variant_row(const pa_gpu_args &a, int64_t row)
{
    const int query = (int)(row % a.seq_q);
    const int head = (int)((row / a.seq_q) % a.heads_q);
    const int batch = (int)(row / ((int64_t)a.seq_q * a.heads_q));
    return pa_gpu_var_row_of(a, batch, head, query);
}

template <bool kMax>
__device__ __forceinline__ float block_reduce(float x, float *red)
{
    const int lane = threadIdx.x % kGroup, group = threadIdx.x / kGroup;
    x = kMax ? gpu_group_max<kGroup>(x) : gpu_group_sum<kGroup>(x);
    if (lane == 0) red[group] = x;
    __syncthreads();
    float r = red[0];
    for (int g = 1; g < kThreads / kGroup; ++g)
        r = kMax ? fmaxf(r, red[g]) : r + red[g];
    __syncthreads(); /* red is reused by the next reduction */
    return r;
}

__global__ void __launch_bounds__(kThreads)
    mask_softmax_variants_kernel(pa_gpu_args a, float *scores)
{
    __shared__ float red[kThreads / kGroup];
    const int64_t row = blockIdx.x;
    const int n = a.seq_kv, tid = threadIdx.x;
    const pa_gpu_var_row r = variant_row(a, row);
    const float *srow = scores + row * n;

    float mx = -INFINITY, seen = 0.f;
    for (int j = r.lo + tid; j < r.hi; j += kThreads) {
        float s;
        if (pa_gpu_var_score(a, r, j, srow[j], s)) {
            mx = fmaxf(mx, s);
            seen = 1.f;
        }
    }
    mx = fmaxf(block_reduce<true>(mx, red), r.sink); /* the sink joins the max */
    const bool any = block_reduce<true>(seen, red) > 0.f;
    const float m_use = mx == -INFINITY ? 0.f : mx;

    float sum = 0.f;
    for (int j = r.lo + tid; j < r.hi; j += kThreads) {
        float s;
        if (pa_gpu_var_score(a, r, j, srow[j], s)) sum += __expf(s - m_use);
    }
    sum = block_reduce<false>(sum, red);
    if (a.sinks) sum += __expf(r.sink - m_use); /* exp(-inf) = 0 for a -inf sink */
    /* No visible key: O = 0 and LSE = the sink (-inf without one), which the sink's own
     * term gives; otherwise gpu_rows.h. */
    const float inv = pa_gpu_row_inv(sum, any);
    if (a.lse && tid == 0) a.lse[row] = pa_gpu_row_lse(m_use + logf(sum), sum, any);

    float *prow = a.probs ? a.probs + row * n : nullptr;
    void *dst = reinterpret_cast<char *>(scores) + row * n * (int64_t)sizeof(float);
    for (int base = 0; base < n; base += kThreads) {
        const int j = base + tid;
        float p = 0.f, s;
        if (j >= r.lo && j < r.hi && pa_gpu_var_score(a, r, j, srow[j], s))
            p = __expf(s - m_use) * inv;
        __syncthreads(); /* the chunk's scores are read before the narrower writes land */
        if (j < n) {
            store_any(dst, j, a.dtype, p);
            if (prow) prow[j] = p;
        }
    }
}

} // namespace

extern "C" int pa_gpu_mask_softmax_variants(const pa_gpu_args *a, void *scores, void *stream)
{
    const int64_t rows = (int64_t)a->batch * a->heads_q * a->seq_q;
    mask_softmax_variants_kernel<<<dim3((unsigned)rows), kThreads, 0, (gpuStream_t)stream>>>(
        *a, static_cast<float *>(scores));
    return (int)gpuGetLastError();
}
