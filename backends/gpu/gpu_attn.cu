/*
 * Device code shared by the CUDA and HIP backends: generic flash (SIMT, online softmax),
 * fused (scores of a query tile kept whole, exact two-pass softmax) and the unfused
 * mask+softmax step.  One source, two compilers (nvcc, hipcc) through gpu_port.h.
 *
 * All kernels accumulate in f32; the storage dtype (f32/f16/bf16) is a run-time argument
 * (a uniform branch at each load), which keeps the number of compiled instances small.
 * The only template parameter is COLS: how many output columns of 32 one lane owns
 * (head_dim_v <= 32*COLS), because the output accumulator lives in registers.
 */
#include "gpu_port.h"
#include "gpu_attn.h"

#include <math.h>

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

/* Tile of the SIMT kernels: 32 query rows x 64 keys, 256 threads.  Row ownership for the
 * softmax and the output: groups of kGroup lanes own 4 rows each (kGroup divides every
 * warp/wavefront size, so a group never spans two warps). */
constexpr int kRows = 32;
constexpr int kKeys = 64;
constexpr int kThreads = 256;
constexpr int kGroup = 32;
constexpr int kRowsPerGroup = kRows / (kThreads / kGroup); /* 4 */
constexpr int kChunk = 32; /* head_dim chunk staged for Q K^T */
constexpr int kKeyStride = kChunk + 1;
static_assert(kKeys == 2 * kGroup, "softmax step reads two scores per lane");

__device__ __forceinline__ float load_elem(const void *base, int64_t idx, int dtype)
{
    if (dtype == 0) return static_cast<const float *>(base)[idx];
    if (dtype == 1) return gpu_half_to_float(static_cast<const gpu_half *>(base)[idx]);
    return gpu_bf16_to_float(static_cast<const gpu_bf16 *>(base)[idx]);
}

__device__ __forceinline__ void store_elem(void *base, int64_t idx, int dtype, float v)
{
    if (dtype == 0)
        static_cast<float *>(base)[idx] = v;
    else if (dtype == 1)
        static_cast<gpu_half *>(base)[idx] = gpu_float_to_half(v);
    else
        static_cast<gpu_bf16 *>(base)[idx] = gpu_float_to_bf16(v);
}

/* Keys [0, n) are visible to query `query` (see pa_visible_keys in core/pa_backend.h). */
__device__ __forceinline__ int visible_keys(const pa_gpu_args &a, int query)
{
    int n = a.seq_kv;
    if (a.mask == 1)
        n = query + 1;
    else if (a.mask == 2)
        n = query + 1 + (a.seq_kv - a.seq_q);
    return n < 0 ? 0 : (n > a.seq_kv ? a.seq_kv : n);
}

struct TileBases {
    int64_t q, k, v, o;
    int head, batch;
};

__device__ __forceinline__ TileBases tile_bases(const pa_gpu_args &a)
{
    TileBases t;
    t.head = blockIdx.y;
    t.batch = blockIdx.z;
    const int head_kv = t.head / (a.heads_q / a.heads_kv);
    t.q = t.batch * a.q_stride[0] + t.head * a.q_stride[1];
    t.k = t.batch * a.k_stride[0] + head_kv * a.k_stride[1];
    t.v = t.batch * a.v_stride[0] + head_kv * a.v_stride[1];
    t.o = t.batch * a.o_stride[0] + t.head * a.o_stride[1];
    return t;
}

/* Q tile -> shared memory as f32, pre-multiplied by scale*log2(e) so scores come out in
 * the exp2 domain.  Rows past seq_q are zero. */
__device__ void load_q_tile(const pa_gpu_args &a, const TileBases &t, int row0, float *qs,
                            int qs_stride)
{
    const float qscale = a.scale * kLog2e;
    const int dim = a.head_dim;
    for (int i = threadIdx.x; i < kRows * dim; i += kThreads) {
        const int r = i / dim, d = i - r * dim;
        float x = 0.f;
        if (row0 + r < a.seq_q)
            x = load_elem(a.q, t.q + (int64_t)(row0 + r) * a.q_stride[2] + d * a.q_stride[3],
                          a.dtype) * qscale;
        qs[r * qs_stride + d] = x;
    }
}

/* Scores of the 32-row Q tile against keys [key0, key0+64): each thread computes rows
 * 2*(tid/16) + {0,1} x keys tid%16 + 16*{0..3}.  Starts and ends with a barrier so the
 * caller may reuse shared memory freely around it. */
__device__ void score_tile(const pa_gpu_args &a, const TileBases &t, const float *qs,
                           int qs_stride, float *ks, int key0, float acc[2][4])
{
    const int tid = threadIdx.x;
    const int sr = (tid / 16) * 2, sk = tid % 16;
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[r][i] = 0.f;
    for (int dc = 0; dc < a.head_dim; dc += kChunk) {
        __syncthreads();
        for (int i = tid; i < kKeys * kChunk; i += kThreads) {
            const int kr = i / kChunk, kd = i % kChunk;
            const int key = key0 + kr, d = dc + kd;
            float x = 0.f;
            if (key < a.seq_kv && d < a.head_dim)
                x = load_elem(a.k, t.k + (int64_t)key * a.k_stride[2] + d * a.k_stride[3],
                              a.dtype);
            ks[kr * kKeyStride + kd] = x;
        }
        __syncthreads();
        const int dn = min(kChunk, a.head_dim - dc);
        const float *q0 = qs + sr * qs_stride + dc;
        const float *q1 = q0 + qs_stride;
#pragma unroll 4
        for (int d = 0; d < dn; ++d) {
            const float x0 = q0[d], x1 = q1[d];
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float kv = ks[(sk + 16 * i) * kKeyStride + d];
                acc[0][i] = fmaf(x0, kv, acc[0][i]);
                acc[1][i] = fmaf(x1, kv, acc[1][i]);
            }
        }
    }
    __syncthreads();
}

/* o[rr][c] += sum_j p(rr, j) * V[key0 + j][lane + 32c] for j < nkeys. */
template <int COLS>
__device__ __forceinline__ void accumulate_pv(const pa_gpu_args &a, const TileBases &t,
                                              const float *p, int p_stride, int key0,
                                              int nkeys, int lane, float o[kRowsPerGroup][COLS])
{
    const int dim_v = a.head_dim_v;
#pragma unroll 2
    for (int j = 0; j < nkeys; ++j) {
        float pr[kRowsPerGroup];
#pragma unroll
        for (int rr = 0; rr < kRowsPerGroup; ++rr) pr[rr] = p[rr * p_stride + j];
        const int64_t vrow = t.v + (int64_t)(key0 + j) * a.v_stride[2];
#pragma unroll
        for (int c = 0; c < COLS; ++c) {
            const int col = lane + kGroup * c;
            if (col < dim_v) {
                const float x = load_elem(a.v, vrow + col * a.v_stride[3], a.dtype);
#pragma unroll
                for (int rr = 0; rr < kRowsPerGroup; ++rr) o[rr][c] = fmaf(pr[rr], x, o[rr][c]);
            }
        }
    }
}

/* Writes O rows (times inv) and the LSE; lse2 is in the exp2 domain (-inf: no key). */
template <int COLS>
__device__ void store_rows(const pa_gpu_args &a, const TileBases &t, int row0, int lane,
                           const float o[kRowsPerGroup][COLS], const float *inv,
                           const float *lse2)
{
#pragma unroll
    for (int rr = 0; rr < kRowsPerGroup; ++rr) {
        const int row = row0 + rr;
        if (row >= a.seq_q) continue;
#pragma unroll
        for (int c = 0; c < COLS; ++c) {
            const int col = lane + kGroup * c;
            if (col < a.head_dim_v)
                store_elem(a.o, t.o + (int64_t)row * a.o_stride[2] + col * a.o_stride[3], a.dtype,
                           o[rr][c] * inv[rr]);
        }
        if (a.lse && lane == 0)
            a.lse[((int64_t)t.batch * a.heads_q + t.head) * a.seq_q + row] =
                lse2[rr] == -INFINITY ? -INFINITY : lse2[rr] * kLn2;
    }
}

/* Generic flash forward: online softmax over 64-key tiles, no N x N memory. */
template <int COLS>
__global__ void __launch_bounds__(kThreads) flash_fwd_simt_kernel(pa_gpu_args a)
{
    extern __shared__ float smem[];
    const int qs_stride = a.head_dim + 1;
    float *qs = smem;
    float *ks = qs + kRows * qs_stride;
    float *ss = ks + kKeys * kKeyStride; /* [kRows][kKeys + 1] */
    constexpr int ss_stride = kKeys + 1;

    const TileBases t = tile_bases(a);
    const int row0 = blockIdx.x * kRows;
    const int tid = threadIdx.x, lane = tid % kGroup, group = tid / kGroup;
    const int my_row0 = group * kRowsPerGroup;
    load_q_tile(a, t, row0, qs, qs_stride);

    const int last_row = min(row0 + kRows, a.seq_q) - 1;
    const int key_end = visible_keys(a, last_row); /* causal visibility grows with the row */

    float o[kRowsPerGroup][COLS];
    float m[kRowsPerGroup], l[kRowsPerGroup];
#pragma unroll
    for (int rr = 0; rr < kRowsPerGroup; ++rr) {
        m[rr] = -INFINITY;
        l[rr] = 0.f;
#pragma unroll
        for (int c = 0; c < COLS; ++c) o[rr][c] = 0.f;
    }

    const int sr = (tid / 16) * 2, sk = tid % 16;
    for (int key0 = 0; key0 < key_end; key0 += kKeys) {
        float acc[2][4];
        score_tile(a, t, qs, qs_stride, ks, key0, acc);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int vis = visible_keys(a, row0 + sr + r);
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int key = key0 + sk + 16 * i;
                ss[(sr + r) * ss_stride + sk + 16 * i] = key < vis ? acc[r][i] : -INFINITY;
            }
        }
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < kRowsPerGroup; ++rr) {
            float *srow = ss + (my_row0 + rr) * ss_stride;
            const float s0 = srow[lane], s1 = srow[lane + kGroup];
            const float m_new = fmaxf(m[rr], gpu_group_max<kGroup>(fmaxf(s0, s1)));
            const float m_use = m_new == -INFINITY ? 0.f : m_new;
            const float alpha = exp2f(m[rr] - m_use);
            const float p0 = exp2f(s0 - m_use), p1 = exp2f(s1 - m_use);
            srow[lane] = p0;
            srow[lane + kGroup] = p1;
            l[rr] = l[rr] * alpha + gpu_group_sum<kGroup>(p0 + p1);
            m[rr] = m_new;
#pragma unroll
            for (int c = 0; c < COLS; ++c) o[rr][c] *= alpha;
        }
        __syncthreads();
        accumulate_pv<COLS>(a, t, ss + my_row0 * ss_stride, ss_stride, key0,
                            min(kKeys, key_end - key0), lane, o);
    }
    float inv[kRowsPerGroup], lse2[kRowsPerGroup];
#pragma unroll
    for (int rr = 0; rr < kRowsPerGroup; ++rr) {
        inv[rr] = l[rr] > 0.f ? 1.f / l[rr] : 0.f;
        lse2[rr] = l[rr] > 0.f ? m[rr] + log2f(l[rr]) : -INFINITY;
    }
    store_rows<COLS>(a, t, row0 + my_row0, lane, o, inv, lse2);
}

/* Fused: pass 1 writes every score of the tile (shared memory or workspace), pass 2 takes
 * the exact row max and sum and normalizes in place (and writes probs), pass 3 forms P V. */
template <int COLS>
__global__ void __launch_bounds__(kThreads) fused_attn_kernel(pa_gpu_args a, int scores_in_smem)
{
    extern __shared__ float smem[];
    const int qs_stride = a.head_dim + 1;
    float *qs = smem;
    float *ks = qs + kRows * qs_stride;
    const int sc_stride = a.seq_kv + 1;
    float *sc;
    if (scores_in_smem) {
        sc = ks + kKeys * kKeyStride;
    } else {
        const int64_t block =
            ((int64_t)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
        sc = static_cast<float *>(a.workspace) + block * kRows * (int64_t)sc_stride;
    }

    const TileBases t = tile_bases(a);
    const int row0 = blockIdx.x * kRows;
    const int tid = threadIdx.x, lane = tid % kGroup, group = tid / kGroup;
    const int my_row0 = group * kRowsPerGroup;
    load_q_tile(a, t, row0, qs, qs_stride);
    const int last_row = min(row0 + kRows, a.seq_q) - 1;
    const int key_end = visible_keys(a, last_row);

    /* pass 1: scores of visible tiles; entries past a row's visibility are never read. */
    const int sr = (tid / 16) * 2, sk = tid % 16;
    for (int key0 = 0; key0 < key_end; key0 += kKeys) {
        float acc[2][4];
        score_tile(a, t, qs, qs_stride, ks, key0, acc);
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int key = key0 + sk + 16 * i;
                if (key < a.seq_kv) sc[(sr + r) * sc_stride + key] = acc[r][i];
            }
    }
    __syncthreads();

    /* pass 2: exact softmax per row, normalized in place. */
    float m[kRowsPerGroup], l[kRowsPerGroup];
    int vis[kRowsPerGroup];
#pragma unroll
    for (int rr = 0; rr < kRowsPerGroup; ++rr) {
        const int row = row0 + my_row0 + rr;
        float *srow = sc + (my_row0 + rr) * sc_stride;
        vis[rr] = row < a.seq_q ? visible_keys(a, row) : 0;
        float mx = -INFINITY;
        for (int j = lane; j < vis[rr]; j += kGroup) mx = fmaxf(mx, srow[j]);
        mx = gpu_group_max<kGroup>(mx);
        const float m_use = mx == -INFINITY ? 0.f : mx;
        float sum = 0.f;
        for (int j = lane; j < vis[rr]; j += kGroup) {
            const float p = exp2f(srow[j] - m_use);
            srow[j] = p;
            sum += p;
        }
        sum = gpu_group_sum<kGroup>(sum);
        const float inv = sum > 0.f ? 1.f / sum : 0.f;
        for (int j = lane; j < vis[rr]; j += kGroup) srow[j] *= inv;
        if (a.probs && row < a.seq_q) {
            float *prow = a.probs + (((int64_t)t.batch * a.heads_q + t.head) * a.seq_q + row) *
                                        (int64_t)a.seq_kv;
            for (int j = lane; j < a.seq_kv; j += kGroup) prow[j] = j < vis[rr] ? srow[j] : 0.f;
        }
        m[rr] = mx;
        l[rr] = sum;
    }
    __syncthreads();

    /* pass 3: O = P V with P normalized. */
    float o[kRowsPerGroup][COLS];
#pragma unroll
    for (int rr = 0; rr < kRowsPerGroup; ++rr)
#pragma unroll
        for (int c = 0; c < COLS; ++c) o[rr][c] = 0.f;
    const int dim_v = a.head_dim_v;
    const float *p = sc + my_row0 * sc_stride;
    for (int j = 0; j < key_end; ++j) {
        float pr[kRowsPerGroup];
#pragma unroll
        for (int rr = 0; rr < kRowsPerGroup; ++rr)
            pr[rr] = j < vis[rr] ? p[rr * sc_stride + j] : 0.f;
        const int64_t vrow = t.v + (int64_t)j * a.v_stride[2];
#pragma unroll
        for (int c = 0; c < COLS; ++c) {
            const int col = lane + kGroup * c;
            if (col < dim_v) {
                const float x = load_elem(a.v, vrow + col * a.v_stride[3], a.dtype);
#pragma unroll
                for (int rr = 0; rr < kRowsPerGroup; ++rr) o[rr][c] = fmaf(pr[rr], x, o[rr][c]);
            }
        }
    }
    float one[kRowsPerGroup], lse2[kRowsPerGroup];
#pragma unroll
    for (int rr = 0; rr < kRowsPerGroup; ++rr) {
        one[rr] = 1.f; /* P is normalized already */
        lse2[rr] = l[rr] > 0.f ? m[rr] + log2f(l[rr]) : -INFINITY;
    }
    store_rows<COLS>(a, t, row0 + my_row0, lane, o, one, lse2);
}

/* Unfused softmax: one block per score row.  Scores carry the scale already (natural
 * units).  The probabilities overwrite the scores in place in the storage dtype; a
 * barrier between each chunk's reads and writes keeps the narrower writes from landing
 * on scores not yet read. */
__global__ void __launch_bounds__(kThreads) mask_softmax_kernel(pa_gpu_args a, float *scores)
{
    __shared__ float red[kThreads / kGroup];
    const int64_t row = blockIdx.x;
    const int query = (int)(row % a.seq_q);
    const int n = a.seq_kv;
    const int vis = visible_keys(a, query);
    const float *srow = scores + row * n;
    const int tid = threadIdx.x, lane = tid % kGroup, group = tid / kGroup;
    constexpr int ngroups = kThreads / kGroup;

    float mx = -INFINITY;
    for (int j = tid; j < vis; j += kThreads) mx = fmaxf(mx, srow[j]);
    mx = gpu_group_max<kGroup>(mx);
    if (lane == 0) red[group] = mx;
    __syncthreads();
    mx = red[0];
    for (int g = 1; g < ngroups; ++g) mx = fmaxf(mx, red[g]);
    __syncthreads();
    const float m_use = mx == -INFINITY ? 0.f : mx;

    float sum = 0.f;
    for (int j = tid; j < vis; j += kThreads) sum += __expf(srow[j] - m_use);
    sum = gpu_group_sum<kGroup>(sum);
    if (lane == 0) red[group] = sum;
    __syncthreads();
    sum = 0.f;
    for (int g = 0; g < ngroups; ++g) sum += red[g];
    const float inv = sum > 0.f ? 1.f / sum : 0.f;

    if (a.lse && tid == 0) a.lse[row] = sum > 0.f ? m_use + logf(sum) : -INFINITY;
    float *prow = a.probs ? a.probs + row * n : nullptr;
    void *dst = reinterpret_cast<char *>(scores) + row * n * (int64_t)sizeof(float);
    for (int base = 0; base < n; base += kThreads) {
        const int j = base + tid;
        float p = 0.f;
        if (j < vis) p = __expf(srow[j] - m_use) * inv;
        __syncthreads();
        if (j < n) {
            store_elem(dst, j, a.dtype, p);
            if (prow) prow[j] = p;
        }
    }
}

int cols_for(int head_dim_v)
{
    const int cols = (head_dim_v + kGroup - 1) / kGroup;
    return cols <= 4 ? 4 : cols <= 8 ? 8 : cols <= 16 ? 16 : 32;
}

} // namespace

extern "C" size_t pa_gpu_flash_generic_smem(const pa_gpu_args *a)
{
    return sizeof(float) *
           ((size_t)kRows * (a->head_dim + 1) + kKeys * kKeyStride + kRows * (kKeys + 1));
}

extern "C" int pa_gpu_flash_generic(const pa_gpu_args *a, void *stream)
{
    const size_t smem = pa_gpu_flash_generic_smem(a);
    void (*kernel)(pa_gpu_args);
    switch (cols_for(a->head_dim_v)) {
    case 4: kernel = flash_fwd_simt_kernel<4>; break;
    case 8: kernel = flash_fwd_simt_kernel<8>; break;
    case 16: kernel = flash_fwd_simt_kernel<16>; break;
    default: kernel = flash_fwd_simt_kernel<32>; break;
    }
    gpuError_t e = gpuFuncSetAttribute(kernel, 0, (int)smem);
    if (e != gpuSuccess) return (int)e;
    const dim3 grid((a->seq_q + kRows - 1) / kRows, a->heads_q, a->batch);
    kernel<<<grid, kThreads, smem, (gpuStream_t)stream>>>(*a);
    return (int)gpuGetLastError();
}

extern "C" size_t pa_gpu_fused_smem(const pa_gpu_args *a, int scores_in_smem)
{
    size_t floats = (size_t)kRows * (a->head_dim + 1) + kKeys * kKeyStride;
    if (scores_in_smem) floats += (size_t)kRows * (a->seq_kv + 1);
    return floats * sizeof(float);
}

extern "C" uint64_t pa_gpu_fused_workspace(const pa_gpu_args *a)
{
    const uint64_t blocks =
        (uint64_t)((a->seq_q + kRows - 1) / kRows) * a->heads_q * (uint64_t)a->batch;
    return blocks * kRows * (uint64_t)(a->seq_kv + 1) * sizeof(float);
}

extern "C" int pa_gpu_fused(const pa_gpu_args *a, int scores_in_smem, void *stream)
{
    const size_t smem = pa_gpu_fused_smem(a, scores_in_smem);
    void (*kernel)(pa_gpu_args, int);
    switch (cols_for(a->head_dim_v)) {
    case 4: kernel = fused_attn_kernel<4>; break;
    case 8: kernel = fused_attn_kernel<8>; break;
    case 16: kernel = fused_attn_kernel<16>; break;
    default: kernel = fused_attn_kernel<32>; break;
    }
    gpuError_t e = gpuFuncSetAttribute(kernel, 0, (int)smem);
    if (e != gpuSuccess) return (int)e;
    const dim3 grid((a->seq_q + kRows - 1) / kRows, a->heads_q, a->batch);
    kernel<<<grid, kThreads, smem, (gpuStream_t)stream>>>(*a, scores_in_smem);
    return (int)gpuGetLastError();
}

extern "C" int pa_gpu_mask_softmax(const pa_gpu_args *a, void *scores, void *stream)
{
    const int64_t rows = (int64_t)a->batch * a->heads_q * a->seq_q;
    mask_softmax_kernel<<<dim3((unsigned)rows), kThreads, 0, (gpuStream_t)stream>>>(
        *a, static_cast<float *>(scores));
    return (int)gpuGetLastError();
}
