/*
 * Serving kernels shared by the CUDA and HIP backends:
 *   kv_append_kernel  writes the appended rows k_new / v_new into a dense or paged cache;
 *   merge_kernel      merges partial (O, LSE) pairs over disjoint key sets by log-sum-exp,
 *                     for split-KV and for polyattn_merge_states.
 * Both are bandwidth-bound copies with a few flops; one thread per element (append) or one
 * warp per output row (merge).
 */
#include "gpu_port.h"

#include "gpu_attn.h"
#include "gpu_serving.h"

#include <math.h>

namespace
{

__device__ __forceinline__ float load_f(const void *base, int64_t idx, int dtype)
{
    if (dtype == 0) return static_cast<const float *>(base)[idx];
    if (dtype == 1) return gpu_half_to_float(static_cast<const gpu_half *>(base)[idx]);
    return gpu_bf16_to_float(static_cast<const gpu_bf16 *>(base)[idx]);
}

__device__ __forceinline__ void store_f(void *base, int64_t idx, int dtype, float v)
{
    if (dtype == 0) static_cast<float *>(base)[idx] = v;
    else if (dtype == 1) static_cast<gpu_half *>(base)[idx] = gpu_float_to_half(v);
    else static_cast<gpu_bf16 *>(base)[idx] = gpu_float_to_bf16(v);
}

/* Copies one element of the same dtype (bits, not values: NaN payloads and -0 survive). */
__device__ __forceinline__ void copy_elem(void *dst, int64_t di, const void *src, int64_t si,
                                          int dtype)
{
    if (dtype == 0) static_cast<uint32_t *>(dst)[di] = static_cast<const uint32_t *>(src)[si];
    else if (dtype == PA_GPU_DTYPE_E4M3)
        static_cast<uint8_t *>(dst)[di] = static_cast<const uint8_t *>(src)[si];
    else static_cast<uint16_t *>(dst)[di] = static_cast<const uint16_t *>(src)[si];
}

/* grid (seq_new, heads_kv, batch); threads stride over the head dims of K and V. */
__global__ void kv_append_kernel(pa_gpu_args a)
{
    const int j = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int cap = a.kv_layout == PA_GPU_KV_PAGED ? a.max_blocks_per_seq * a.kv_rows : a.kv_rows;
    const int key = pa_gpu_clampi(a.seqused_kv[b], 0, cap) + j;
    if (key >= cap) return; /* past the cache's end: check_device_inputs reports it */
    pa_gpu_seq s;
    s.q0 = s.len_q = s.kv0 = 0, s.len_kv = key + 1;
    const int64_t kd = pa_gpu_kv_offset(a, b, s, h, key, a.k_stride);
    const int64_t vd = pa_gpu_kv_offset(a, b, s, h, key, a.v_stride);
    const int64_t ks =
        b * a.k_new_stride[0] + h * a.k_new_stride[1] + (int64_t)j * a.k_new_stride[2];
    const int64_t vs =
        b * a.v_new_stride[0] + h * a.v_new_stride[1] + (int64_t)j * a.v_new_stride[2];
    void *k = const_cast<void *>(a.k), *v = const_cast<void *>(a.v);
    for (int d = threadIdx.x; d < a.head_dim; d += blockDim.x)
        copy_elem(k, kd + d * a.k_stride[3], a.k_new, ks + d * a.k_new_stride[3], a.dtype);
    for (int d = threadIdx.x; d < a.head_dim_v; d += blockDim.x)
        copy_elem(v, vd + d * a.v_stride[3], a.v_new, vs + d * a.v_new_stride[3], a.dtype);
}

/* Rows of 32 lanes each (not warps: the wavefront width differs between targets, and the
 * host pass that sizes the grid cannot know it); no lane exchanges data. */
constexpr int kMergeRows = 4, kMergeLanes = 32;

/* One group of 32 lanes per output row (b, h, i); lanes over the head dim. */
__global__ void merge_kernel(pa_gpu_merge_args m)
{
    const int64_t rows = (int64_t)m.batch * m.heads * m.seq;
    const int64_t r = (int64_t)blockIdx.x * kMergeRows + threadIdx.x / kMergeLanes;
    const int lane = threadIdx.x % kMergeLanes;
    if (r >= rows) return;
    const int i = (int)(r % m.seq), h = (int)((r / m.seq) % m.heads),
              b = (int)(r / m.seq / m.heads);
    if (m.cu_rows) { /* varlen rows: only those of some sequence */
        const int lo = m.cu_rows[0], hi = m.cu_rows[m.num_seqs];
        if (i < lo || i >= hi) return;
    }
    float mx = m.sinks ? m.sinks[h] : -INFINITY;
    bool nan_row = false; /* a NaN or +inf LSE makes the row NaN (fmaxf would drop a NaN) */
    for (int p = 0; p < m.num_parts; p++) {
        const float l = m.parts_lse[p * rows + r];
        nan_row |= l != l || l == INFINITY;
        mx = fmaxf(mx, l);
    }
    const int64_t po = b * m.part_stride[1] + h * m.part_stride[2] + (int64_t)i * m.part_stride[3];
    const int64_t oo = b * m.out_stride[0] + h * m.out_stride[1] + (int64_t)i * m.out_stride[2];
    if (nan_row) {
        for (int d = lane; d < m.head_dim_v; d += kMergeLanes)
            store_f(m.out, oo + d * m.out_stride[3], m.out_dtype, NAN);
        if (m.out_lse && lane == 0) m.out_lse[r] = NAN;
        return;
    }
    const float base = mx == -INFINITY ? 0.f : mx;
    float sum = m.sinks ? expf(m.sinks[h] - base) : 0.f;
    for (int p = 0; p < m.num_parts; p++)
        sum += expf(m.parts_lse[p * rows + r] - base);
    /* sum == 0: no part saw a key (and no sink): O = 0, LSE = -inf */
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    for (int d = lane; d < m.head_dim_v; d += kMergeLanes) {
        float acc = 0.f;
        for (int p = 0; p < m.num_parts; p++) {
            const float w = expf(m.parts_lse[p * rows + r] - base);
            if (w > 0.f)
                acc += w * load_f(m.parts, p * m.part_stride[0] + po + d * m.part_stride[4],
                                  m.part_dtype);
        }
        store_f(m.out, oo + d * m.out_stride[3], m.out_dtype, acc * inv);
    }
    if (m.out_lse && lane == 0) m.out_lse[r] = sum > 0.f ? base + logf(sum) : -INFINITY;
}

} // namespace

extern "C" int pa_gpu_kv_append(const pa_gpu_args *a, void *stream)
{
    if (a->seq_new <= 0 || a->batch <= 0) return 0;
    const dim3 grid(a->seq_new, a->heads_kv, a->batch);
    const int threads = a->head_dim > 64 || a->head_dim_v > 64 ? 128 : 64;
    /* (gpuStream_t) casts: the emulated test rewrites launches whose configuration has no '>' */
    kv_append_kernel<<<grid, threads, 0, (gpuStream_t)stream>>>(*a);
    return (int)gpuGetLastError();
}

extern "C" int pa_gpu_merge(const pa_gpu_merge_args *m, void *stream)
{
    const int64_t rows = (int64_t)m->batch * m->heads * m->seq;
    if (rows <= 0) return 0;
    const int64_t blocks = (rows + kMergeRows - 1) / kMergeRows;
    if (blocks > 0x7fffffff) return 1; /* cudaErrorInvalidValue / hipErrorInvalidValue */
    merge_kernel<<<(unsigned)blocks, kMergeRows * kMergeLanes, 0, (gpuStream_t)stream>>>(*m);
    return (int)gpuGetLastError();
}
