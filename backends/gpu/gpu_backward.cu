/*
 * Elementwise kernels of the unfused backward (see gpu_backward.h).  Grid-stride loops,
 * one element per thread step, f32 arithmetic; no atomics, so every result is
 * bitwise reproducible.
 */
#include "gpu_port.h"
#include "gpu_backward.h"

#include <math.h>

namespace
{

constexpr int kBwdThreads = 256;
constexpr int kBwdMaxBlocks = 65535;
constexpr int kDotGroup = 32; /* lanes per row of the rowsum: divides every warp size */

__device__ __forceinline__ float load_elem(const void *base, int64_t idx, int dtype)
{
    if (dtype == 0) return static_cast<const float *>(base)[idx];
    if (dtype == 1) return gpu_half_to_float(static_cast<const gpu_half *>(base)[idx]);
    return gpu_bf16_to_float(static_cast<const gpu_bf16 *>(base)[idx]);
}

__device__ __forceinline__ void store_elem_bwd(void *base, int64_t idx, int dtype, float v)
{
    if (dtype == 0) static_cast<float *>(base)[idx] = v;
    else if (dtype == 1) static_cast<gpu_half *>(base)[idx] = gpu_float_to_half(v);
    else static_cast<gpu_bf16 *>(base)[idx] = gpu_float_to_bf16(v);
}

struct Shape4 {
    int64_t dims[4], strides[4];
};

__device__ __forceinline__ int64_t strided_index(const Shape4 &s, int64_t i)
{
    const int64_t i3 = i % s.dims[3];
    i /= s.dims[3];
    const int64_t i2 = i % s.dims[2];
    i /= s.dims[2];
    const int64_t i1 = i % s.dims[1];
    const int64_t i0 = i / s.dims[1];
    return i0 * s.strides[0] + i1 * s.strides[1] + i2 * s.strides[2] + i3 * s.strides[3];
}

__global__ void bwd_pack_kernel(float *dst, const void *src, int dtype, Shape4 s, int64_t n)
{
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
        dst[i] = load_elem(src, strided_index(s, i), dtype);
}

__global__ void bwd_unpack_kernel(void *dst, const float *src, int dtype, Shape4 s, int64_t n)
{
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
        store_elem_bwd(dst, strided_index(s, i), dtype, src[i]);
}

/* One group of kDotGroup lanes per row (fixed summation order: reproducible). */
__global__ void bwd_rowdot_kernel(pa_gpu_args a, const void *d_o, float *delta)
{
    const int64_t rows = (int64_t)a.batch * a.heads_q * a.seq_q;
    const int lane = threadIdx.x % kDotGroup;
    const int64_t groups = (int64_t)gridDim.x * (blockDim.x / kDotGroup);
    /* The trip count is the block's, not the group's: every lane reaches the shuffles (a
     * wave64 holds two groups, and the CPU emulation treats a shuffle as a block barrier). */
    for (int64_t first = (int64_t)blockIdx.x * (blockDim.x / kDotGroup); first < rows;
         first += groups) {
        const int64_t row = first + threadIdx.x / kDotGroup;
        float acc = 0.f;
        if (row < rows) {
            const int64_t i = row % a.seq_q, h = (row / a.seq_q) % a.heads_q,
                          b = row / ((int64_t)a.seq_q * a.heads_q);
            const int64_t base = b * a.o_stride[0] + h * a.o_stride[1] + i * a.o_stride[2];
            for (int d = lane; d < a.head_dim_v; d += kDotGroup) {
                const int64_t at = base + d * a.o_stride[3];
                acc += load_elem(d_o, at, a.dtype) * load_elem(a.o, at, a.dtype);
            }
        }
        acc = gpu_group_sum<kDotGroup>(acc);
        if (row < rows && lane == 0) delta[row] = acc;
    }
}

__device__ __forceinline__ int visible_keys_bwd(const pa_gpu_args &a, int64_t query)
{
    int64_t n = a.seq_kv;
    if (a.mask == 1) n = query + 1;
    else if (a.mask == 2) n = query + 1 + ((int64_t)a.seq_kv - a.seq_q);
    return (int)(n < 0 ? 0 : (n > a.seq_kv ? a.seq_kv : n));
}

__global__ void bwd_probs_kernel(pa_gpu_args a, float *scores, const float *lse, int64_t n)
{
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        const int64_t row = i / a.seq_kv;
        const int key = (int)(i % a.seq_kv);
        const float l = lse[row];
        float p = 0.f;
        if (key < visible_keys_bwd(a, row % a.seq_q) && l != -INFINITY) p = expf(scores[i] - l);
        scores[i] = p;
    }
}

__global__ void bwd_dscores_kernel(pa_gpu_args a, const float *probs, float *dp, const float *delta,
                                   int64_t n)
{
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        const float p = probs[i];
        /* p == 0 (masked or underflowed) gives 0 without touching dP - delta. */
        dp[i] = p == 0.f ? 0.f : p * (dp[i] - delta[i / a.seq_kv]);
    }
}

unsigned blocks_for(int64_t n, int per_block)
{
    int64_t b = (n + per_block - 1) / per_block;
    if (b < 1) b = 1;
    return (unsigned)(b > kBwdMaxBlocks ? kBwdMaxBlocks : b);
}

Shape4 shape_of(const int64_t dims[4], const int64_t strides[4])
{
    Shape4 s;
    for (int i = 0; i < 4; ++i)
        s.dims[i] = dims[i], s.strides[i] = strides[i];
    return s;
}

} // namespace

extern "C" int pa_gpu_bwd_pack(float *dst, const void *src, int dtype, const int64_t dims[4],
                               const int64_t strides[4], void *stream)
{
    const int64_t n = dims[0] * dims[1] * dims[2] * dims[3];
    if (n == 0) return 0;
    bwd_pack_kernel<<<blocks_for(n, kBwdThreads), kBwdThreads, 0, (gpuStream_t)stream>>>(
        dst, src, dtype, shape_of(dims, strides), n);
    return (int)gpuGetLastError();
}

extern "C" int pa_gpu_bwd_unpack(void *dst, const float *src, int dtype, const int64_t dims[4],
                                 const int64_t strides[4], void *stream)
{
    const int64_t n = dims[0] * dims[1] * dims[2] * dims[3];
    if (n == 0) return 0;
    bwd_unpack_kernel<<<blocks_for(n, kBwdThreads), kBwdThreads, 0, (gpuStream_t)stream>>>(
        dst, src, dtype, shape_of(dims, strides), n);
    return (int)gpuGetLastError();
}

extern "C" int pa_gpu_bwd_rowdot(const pa_gpu_args *a, const void *d_o, float *delta, void *stream)
{
    const int64_t rows = (int64_t)a->batch * a->heads_q * a->seq_q;
    if (rows == 0) return 0;
    bwd_rowdot_kernel<<<blocks_for(rows, kBwdThreads / kDotGroup), kBwdThreads, 0,
                        (gpuStream_t)stream>>>(*a, d_o, delta);
    return (int)gpuGetLastError();
}

extern "C" int pa_gpu_bwd_probs(const pa_gpu_args *a, float *scores, const float *lse, void *stream)
{
    const int64_t n = (int64_t)a->batch * a->heads_q * a->seq_q * a->seq_kv;
    if (n == 0) return 0;
    bwd_probs_kernel<<<blocks_for(n, kBwdThreads), kBwdThreads, 0, (gpuStream_t)stream>>>(
        *a, scores, lse, n);
    return (int)gpuGetLastError();
}

extern "C" int pa_gpu_bwd_dscores(const pa_gpu_args *a, const float *probs, float *dp,
                                  const float *delta, void *stream)
{
    const int64_t n = (int64_t)a->batch * a->heads_q * a->seq_q * a->seq_kv;
    if (n == 0) return 0;
    bwd_dscores_kernel<<<blocks_for(n, kBwdThreads), kBwdThreads, 0, (gpuStream_t)stream>>>(
        *a, probs, dp, delta, n);
    return (int)gpuGetLastError();
}
