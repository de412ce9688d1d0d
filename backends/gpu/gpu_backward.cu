/*
 * Elementwise kernels of the unfused backward (see gpu_backward.h).  Grid-stride loops,
 * one element per thread step, f32 arithmetic; no atomics, so every result is
 * bitwise reproducible.  Score variants: the softmax step recomputes each pair's final
 * score from S exactly as the forward's softmax does (gpu_variants.h); problems without a
 * score-changing variant run the plain instance.
 */
#include "gpu_port.h"
#include "gpu_backward.h"
#include "gpu_serving.h"
#include "gpu_variants.h"

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

/* Whether a variant changes the scores (the kVar instances); sinks alone are in the LSE. */
__host__ __device__ __forceinline__ bool scores_vary(const pa_gpu_args &a)
{
    return a.has_window || a.softcap > 0.f || a.alibi_slopes || a.bias || a.attn_mask;
}

/* P of pair (row, key) from its scaled q.k and the row's LSE, 0 when masked or when the row
 * is fully masked; *dcap receives d final score / d scaled q.k (1 - tanh^2 under softcap). */
template <bool kVar>
__device__ __forceinline__ float pair_prob(const pa_gpu_args &a, int64_t row, int key, float s,
                                           float l, float *dcap)
{
    *dcap = 1.f;
    if (l == -INFINITY) return 0.f;
    const int query = (int)(row % a.seq_q);
    if (!kVar) return key < visible_keys_bwd(a, query) ? expf(s - l) : 0.f;
    const int head = (int)((row / a.seq_q) % a.heads_q);
    const int batch = (int)(row / ((int64_t)a.seq_q * a.heads_q));
    const pa_gpu_var_row r = pa_gpu_var_row_of(a, batch, head, query);
    float x;
    if (key < r.lo || key >= r.hi || !pa_gpu_var_score(a, r, key, s, x)) return 0.f;
    if (a.softcap > 0.f) {
        const float t = tanhf(pa_gpu_score_range(s) / a.softcap);
        *dcap = 1.f - t * t;
    }
    return expf(x - l);
}

template <bool kVar>
__global__ void bwd_softmax_grad_kernel(pa_gpu_args a, float *scores, float *dp, const float *delta,
                                        int64_t n)
{
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        const int64_t row = i / a.seq_kv;
        float dcap;
        const float p = pair_prob<kVar>(a, row, (int)(i % a.seq_kv), scores[i], a.lse[row], &dcap);
        scores[i] = p;
        /* p == 0 (masked or underflowed) gives 0 without touching dP - delta. */
        dp[i] = p == 0.f ? 0.f : p * (dp[i] - delta[row]) * dcap;
    }
}

/* One thread per d_bias element: dS of the pairs that share it, (batch, head) in order. */
__global__ void bwd_dbias_kernel(pa_gpu_bwd_args g, const float *scores, const float *dp,
                                 const float *delta, int64_t n)
{
    const pa_gpu_args &a = g.fwd;
    const int nb = g.d_bias_batch, nh = g.d_bias_heads;
    const int64_t plane = (int64_t)a.seq_q * a.seq_kv;
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
        const int64_t z = e / plane, ij = e % plane;
        const int bb = (int)(z / nh), hh = (int)(z % nh), key = (int)(ij % a.seq_kv);
        const int b_end = nb == 1 ? a.batch : bb + 1, h_end = nh == 1 ? a.heads_q : hh + 1;
        float acc = 0.f;
        for (int b = nb == 1 ? 0 : bb; b < b_end; ++b)
            for (int h = nh == 1 ? 0 : hh; h < h_end; ++h) {
                const int64_t row = ((int64_t)b * a.heads_q + h) * a.seq_q + ij / a.seq_kv;
                const int64_t at = row * a.seq_kv + key;
                float dcap;
                const float p = pair_prob<true>(a, row, key, scores[at], a.lse[row], &dcap);
                if (p != 0.f) acc += p * (dp[at] - delta[row]);
            }
        g.d_bias[e] = acc;
    }
}

/* The sink's share of a row's softmax times delta; rows with delta = 0 (fully masked ones
 * among them) add nothing. */
__device__ __forceinline__ float sink_term(float sink, float lse, float delta)
{
    return delta == 0.f ? 0.f : expf(sink - lse) * delta;
}

__global__ void __launch_bounds__(kBwdThreads)
    bwd_dsinks_kernel(pa_gpu_bwd_args g, const float *delta)
{
    __shared__ float red[kBwdThreads];
    const pa_gpu_args &a = g.fwd;
    const int h = blockIdx.x;
    const float sink = a.sinks[h];
    float acc = 0.f;
    if (a.varlen_q) {
        for (int b = 0; b < a.batch; ++b) {
            const pa_gpu_seq s = pa_gpu_seq_of(a, b);
            for (int i = threadIdx.x; i < s.len_q; i += kBwdThreads) {
                const int64_t row = (int64_t)h * a.total_q + s.q0 + i;
                acc += sink_term(sink, a.lse[row], delta[row]);
            }
        }
    } else {
        const int64_t n = (int64_t)a.batch * a.seq_q;
        for (int64_t t = threadIdx.x; t < n; t += kBwdThreads) {
            const int64_t row = ((t / a.seq_q) * a.heads_q + h) * a.seq_q + t % a.seq_q;
            acc += sink_term(sink, a.lse[row], delta[row]);
        }
    }
    const int tid = threadIdx.x;
    red[tid] = acc;
    __syncthreads();
    for (int w = kBwdThreads / 2; w > 0; w /= 2) {
        if (tid < w) red[tid] += red[tid + w];
        __syncthreads();
    }
    if (tid == 0) g.d_sinks[h] = 0.f - red[0]; /* +0 without rows */
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

extern "C" int pa_gpu_bwd_softmax_grad(const pa_gpu_bwd_args *g, float *scores, float *dp,
                                       const float *delta, void *stream)
{
    const pa_gpu_args &a = g->fwd;
    const int64_t n = (int64_t)a.batch * a.heads_q * a.seq_q * a.seq_kv;
    if (n == 0) return 0;
    auto kernel = scores_vary(a) ? bwd_softmax_grad_kernel<true> : bwd_softmax_grad_kernel<false>;
    kernel<<<blocks_for(n, kBwdThreads), kBwdThreads, 0, (gpuStream_t)stream>>>(a, scores, dp,
                                                                                delta, n);
    return (int)gpuGetLastError();
}

extern "C" int pa_gpu_bwd_dbias(const pa_gpu_bwd_args *g, const float *scores, const float *dp,
                                const float *delta, void *stream)
{
    const int64_t n =
        (int64_t)g->d_bias_batch * g->d_bias_heads * g->fwd.seq_q * (int64_t)g->fwd.seq_kv;
    if (n == 0) return 0;
    bwd_dbias_kernel<<<blocks_for(n, kBwdThreads), kBwdThreads, 0, (gpuStream_t)stream>>>(
        *g, scores, dp, delta, n);
    return (int)gpuGetLastError();
}

extern "C" int pa_gpu_bwd_dsinks(const pa_gpu_bwd_args *g, const float *delta, void *stream)
{
    const unsigned heads = g->fwd.heads_q > 0 ? (unsigned)g->fwd.heads_q : 0u;
    if (heads == 0) return 0;
    bwd_dsinks_kernel<<<heads, kBwdThreads, 0, (gpuStream_t)stream>>>(*g, delta);
    return (int)gpuGetLastError();
}
