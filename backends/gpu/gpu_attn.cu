/*
 * Device code shared by the CUDA and HIP backends: generic flash (SIMT, online softmax),
 * fused (scores of a query tile kept whole, exact two-pass softmax) and the unfused
 * mask+softmax step.  One source, two compilers (nvcc, hipcc) through gpu_port.h.
 *
 * All kernels accumulate in f32; the storage dtype (f32/f16/bf16) is a run-time argument
 * (a uniform branch at each load), which keeps the number of compiled instances small.
 * The generic flash kernel also reads e4m3 inputs (T = gpu_e4m3, decoded exactly) and then
 * writes O in o_dtype (a uniform branch at each store), v_descale folded into the output.
 * The only template parameter is COLS: how many output columns of 32 one lane owns
 * (head_dim_v <= 32*COLS), because the output accumulator lives in registers.
 */
#include "gpu_port.h"
#include "gpu_attn.h"
#include "gpu_rows.h"
#include "gpu_serving.h"
#include "gpu_variants.h"

#include <math.h>

namespace
{

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

/* Tile of the SIMT kernels: 32 query rows x 64 keys, 256 threads.  Row ownership for the
 * softmax and the output: groups of kGroup lanes own 4 rows each (kGroup divides every
 * warp/wavefront size, so a group never spans two warps). */
constexpr int kRows = 32;
constexpr int kKeys = 64;
constexpr int kThreads = 256;
constexpr int kGroup = 32;
constexpr int kGroups = kThreads / kGroup;             /* 8 */
constexpr int kRowsPerGroup = kRows / kGroups;         /* 4 */
constexpr int kChunk = 32;                             /* head_dim slice staged for Q K^T */
constexpr int kChunkStride = kChunk + 4;               /* 16-byte rows, conflict-free float4 */
constexpr int kVKeys = kGroups;                        /* V rows staged per step: one a group */
constexpr int kQPerThread = kRows * kChunk / kThreads; /* 4 */
constexpr int kKPerThread = kKeys * kChunk / kThreads; /* 8 */
static_assert(kKeys == 2 * kGroup, "softmax step reads two scores per lane");
static_assert(kThreads % kChunk == 0, "a thread keeps one column of each staged chunk");

template <typename T>
__device__ __forceinline__ float to_f32(T x);
template <>
__device__ __forceinline__ float to_f32<float>(float x)
{
    return x;
}
template <>
__device__ __forceinline__ float to_f32<gpu_half>(gpu_half x)
{
    return gpu_half_to_float(x);
}
template <>
__device__ __forceinline__ float to_f32<gpu_bf16>(gpu_bf16 x)
{
    return gpu_bf16_to_float(x);
}
template <>
__device__ __forceinline__ float to_f32<gpu_e4m3>(gpu_e4m3 x)
{
    return gpu_e4m3_to_float(x);
}
template <typename T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x)
{
    return x;
}
template <>
__device__ __forceinline__ gpu_half from_f32<gpu_half>(float x)
{
    return gpu_float_to_half(x);
}
template <>
__device__ __forceinline__ gpu_bf16 from_f32<gpu_bf16>(float x)
{
    return gpu_float_to_bf16(x);
}

__device__ __forceinline__ void store_elem(void *base, int64_t idx, int dtype, float v)
{
    if (dtype == 0) static_cast<float *>(base)[idx] = v;
    else if (dtype == 1) static_cast<gpu_half *>(base)[idx] = gpu_float_to_half(v);
    else static_cast<gpu_bf16 *>(base)[idx] = gpu_float_to_bf16(v);
}

/* Element idx of O: of the inputs' dtype T, or with e4m3 inputs of o_dtype. */
template <typename T>
__device__ __forceinline__ void store_out(const pa_gpu_args &a, int64_t idx, float v)
{
    static_cast<T *>(a.o)[idx] = from_f32<T>(v);
}
template <>
__device__ __forceinline__ void store_out<gpu_e4m3>(const pa_gpu_args &a, int64_t idx, float v)
{
    store_elem(a.o, idx, a.o_dtype, v);
}

/* The factor of O's rows beyond the softmax's 1 / sum: e4m3's v_descale (exactly 1 else). */
template <typename T>
__device__ __forceinline__ float out_factor(const pa_gpu_args &a)
{
    (void)a;
    return 1.f;
}
template <>
__device__ __forceinline__ float out_factor<gpu_e4m3>(const pa_gpu_args &a)
{
    return a.v_descale;
}

/* Keys [0, n) are visible to query `query` (see pa_visible_keys in core/pa_backend.h). */
__device__ __forceinline__ int visible_keys(const pa_gpu_args &a, int query)
{
    int n = a.seq_kv;
    if (a.mask == 1) n = query + 1;
    else if (a.mask == 2) n = query + 1 + (a.seq_kv - a.seq_q);
    return n < 0 ? 0 : (n > a.seq_kv ? a.seq_kv : n);
}

struct TileBases {
    int64_t q, k, v, o, lse; /* lse: index of row 0 of the tile's (batch, head) */
    int head, batch, head_kv;
};

__device__ __forceinline__ TileBases tile_bases(const pa_gpu_args &a)
{
    TileBases t;
    t.head = blockIdx.y;
    t.batch = blockIdx.z;
    t.head_kv = t.head / (a.heads_q / a.heads_kv);
    t.q = t.batch * a.q_stride[0] + t.head * a.q_stride[1];
    t.k = t.batch * a.k_stride[0] + t.head_kv * a.k_stride[1];
    t.v = t.batch * a.v_stride[0] + t.head_kv * a.v_stride[1];
    t.o = t.batch * a.o_stride[0] + t.head * a.o_stride[1];
    t.lse = ((int64_t)t.batch * a.heads_q + t.head) * a.seq_q;
    return t;
}

/* The bases of sequence s of a serving problem (gpu_serving.h): Q, O and LSE rows and, for
 * every layout but paged, K and V rows are linear in the row from these. */
__device__ __forceinline__ TileBases serving_bases(const pa_gpu_args &a, int b, const pa_gpu_seq &s)
{
    TileBases t;
    t.head = blockIdx.y;
    t.batch = b;
    t.head_kv = t.head / (a.heads_q / a.heads_kv);
    t.q = pa_gpu_q_offset(a, b, s, t.head, 0, a.q_stride);
    t.o = pa_gpu_q_offset(a, b, s, t.head, 0, a.o_stride);
    t.lse = pa_gpu_lse_index(a, b, s, t.head, 0);
    t.k = a.kv_layout == PA_GPU_KV_PAGED ? t.head_kv * a.k_stride[1]
                                         : pa_gpu_kv_offset(a, b, s, t.head_kv, 0, a.k_stride);
    t.v = a.kv_layout == PA_GPU_KV_PAGED ? t.head_kv * a.v_stride[1]
                                         : pa_gpu_kv_offset(a, b, s, t.head_kv, 0, a.v_stride);
    return t;
}

/* Element offset of key row `key` of K or V (base: t.k or t.v): a paged serving problem
 * looks the key's block up in the block table (clamped), every other layout is linear. */
template <bool kServe>
__device__ __forceinline__ int64_t key_row(const pa_gpu_args &a, const TileBases &t, int64_t base,
                                           int key, const int64_t stride[4])
{
    if (kServe && a.kv_layout == PA_GPU_KV_PAGED) {
        const int n = key / a.kv_rows;
        const int blk = pa_gpu_clampi(a.block_table[(int64_t)t.batch * a.max_blocks_per_seq + n], 0,
                                      a.kv_count - 1);
        return base + blk * stride[0] + (int64_t)(key - n * a.kv_rows) * stride[2];
    }
    return base + (int64_t)key * stride[2];
}

/* Shared-memory plan of both SIMT kernels (floats). */
__host__ __device__ __forceinline__ int v_stride_of(int head_dim_v)
{
    return (head_dim_v + 3) & ~3;
}
constexpr int kQsFloats = kRows * kChunkStride;
constexpr int kKsFloats = kKeys * kChunkStride;
constexpr int kSsStride = kKeys + 1;
constexpr int kSsFloats = kRows * kSsStride;

/* One head_dim slice [dc, dc+32) of the Q tile (unscaled) and of the
 * key tile, fetched into registers: thread tid keeps column tid % 32 of rows tid/32 + 8i. */
template <typename T, bool kServe>
__device__ __forceinline__ void fetch_chunk(const pa_gpu_args &a, const TileBases &t, int row0,
                                            int key0, int dc, float qr[kQPerThread],
                                            float kr[kKPerThread])
{
    const T *q = static_cast<const T *>(a.q);
    const T *k = static_cast<const T *>(a.k);
    const int d = dc + threadIdx.x % kChunk, r0 = threadIdx.x / kChunk;
    const bool dok = d < a.head_dim;
#pragma unroll
    for (int i = 0; i < kQPerThread; ++i) {
        const int row = row0 + r0 + i * (kThreads / kChunk);
        qr[i] = dok && row < a.seq_q
                    ? to_f32(q[t.q + (int64_t)row * a.q_stride[2] + d * a.q_stride[3]])
                    : 0.f;
    }
#pragma unroll
    for (int i = 0; i < kKPerThread; ++i) {
        const int key = key0 + r0 + i * (kThreads / kChunk);
        kr[i] = dok && key < a.seq_kv
                    ? to_f32(k[key_row<kServe>(a, t, t.k, key, a.k_stride) + d * a.k_stride[3]])
                    : 0.f;
    }
}

/* Scores (exp2 domain) of the 32-row tile against keys [key0, key0+64): thread tid computes
 * rows 2*(tid/16) + {0,1} x keys tid%16 + 16*{0..3}.  The next head_dim slice is fetched
 * into registers while the current one is multiplied (float4 reads from shared memory).
 * The scale multiplies the finished dot products, so that a partial sum never overflows
 * where the score does not (polyattn.h, "Non-finite values"). */
template <typename T, bool kServe = false>
__device__ void score_tile(const pa_gpu_args &a, const TileBases &t, int row0, float *qs, float *ks,
                           int key0, float qscale, float acc[2][4])
{
    const int tid = threadIdx.x;
    const int sr = (tid / 16) * 2, sk = tid % 16;
    const int col = tid % kChunk, r0 = tid / kChunk;
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int i = 0; i < 4; ++i)
            acc[r][i] = 0.f;
    float qr[kQPerThread], kr[kKPerThread];
    fetch_chunk<T, kServe>(a, t, row0, key0, 0, qr, kr);
    for (int dc = 0; dc < a.head_dim; dc += kChunk) {
        __syncthreads(); /* everyone is done reading the previous slice */
#pragma unroll
        for (int i = 0; i < kQPerThread; ++i)
            qs[(r0 + i * (kThreads / kChunk)) * kChunkStride + col] = qr[i];
#pragma unroll
        for (int i = 0; i < kKPerThread; ++i)
            ks[(r0 + i * (kThreads / kChunk)) * kChunkStride + col] = kr[i];
        __syncthreads();
        if (dc + kChunk < a.head_dim) fetch_chunk<T, kServe>(a, t, row0, key0, dc + kChunk, qr, kr);
#pragma unroll
        for (int d = 0; d < kChunk; d += 4) {
            const float4 x0 = *reinterpret_cast<const float4 *>(qs + sr * kChunkStride + d);
            const float4 x1 = *reinterpret_cast<const float4 *>(qs + (sr + 1) * kChunkStride + d);
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const float4 y =
                    *reinterpret_cast<const float4 *>(ks + (sk + 16 * i) * kChunkStride + d);
                acc[0][i] =
                    fmaf(x0.x, y.x, fmaf(x0.y, y.y, fmaf(x0.z, y.z, fmaf(x0.w, y.w, acc[0][i]))));
                acc[1][i] =
                    fmaf(x1.x, y.x, fmaf(x1.y, y.y, fmaf(x1.z, y.z, fmaf(x1.w, y.w, acc[1][i]))));
            }
        }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r)
#pragma unroll
        for (int i = 0; i < 4; ++i)
            acc[r][i] *= qscale;
    __syncthreads();
}

/* o[rr][c][e] += sum_j p(rr, j) * V[key0 + j][4*lane + 128*c + e] over j < nkeys, where
 * p(rr, j) = p[rr * p_stride + j] for lo[rr] <= j < vis[rr] and 0 elsewhere.  V comes
 * through shared memory in steps of 8 rows (group g stages row g), converted to f32 once.
 * p is indexed by the key relative to key0; lo and vis are absolute keys. */
template <typename T, int C4, bool kServe = false>
__device__ void accumulate_pv(const pa_gpu_args &a, const TileBases &t, const float *p,
                              int p_stride, const int lo[kRowsPerGroup],
                              const int vis[kRowsPerGroup], float *vs, int key0, int nkeys,
                              float o[kRowsPerGroup][C4][4])
{
    const T *v = static_cast<const T *>(a.v);
    const int dim_v = a.head_dim_v, vstride = v_stride_of(dim_v);
    const int lane = threadIdx.x % kGroup, group = threadIdx.x / kGroup;
    for (int kc = 0; kc < nkeys; kc += kVKeys) {
        const int nk = min(kVKeys, nkeys - kc);
        __syncthreads();
        if (group < nk) {
            const int64_t vrow = key_row<kServe>(a, t, t.v, key0 + kc + group, a.v_stride);
            for (int c = lane; c < vstride; c += kGroup)
                vs[group * vstride + c] = c < dim_v ? to_f32(v[vrow + c * a.v_stride[3]]) : 0.f;
        }
        __syncthreads();
        for (int j = 0; j < nk; ++j) {
            const int key = kc + j;
            float pr[kRowsPerGroup];
#pragma unroll
            for (int rr = 0; rr < kRowsPerGroup; ++rr)
                pr[rr] =
                    key0 + key < vis[rr] && key0 + key >= lo[rr] ? p[rr * p_stride + key] : 0.f;
#pragma unroll
            for (int c = 0; c < C4; ++c) {
                const int col = 4 * lane + 4 * kGroup * c;
                if (col < dim_v) {
                    const float4 x = *reinterpret_cast<const float4 *>(vs + j * vstride + col);
#pragma unroll
                    for (int rr = 0; rr < kRowsPerGroup; ++rr) {
                        o[rr][c][0] = fmaf(pr[rr], x.x, o[rr][c][0]);
                        o[rr][c][1] = fmaf(pr[rr], x.y, o[rr][c][1]);
                        o[rr][c][2] = fmaf(pr[rr], x.z, o[rr][c][2]);
                        o[rr][c][3] = fmaf(pr[rr], x.w, o[rr][c][3]);
                    }
                }
            }
        }
    }
}

/* Writes O rows (times inv) and the LSE; lse2 is in the exp2 domain (-inf: no key).  A
 * split-KV block (kServe, part_o set) writes its partial instead: f32 O rows of head_dim_v
 * and the LSE, at the row's LSE index. */
template <typename T, int C4, bool kServe = false>
__device__ void store_rows(const pa_gpu_args &a, const TileBases &t, int row0,
                           const float o[kRowsPerGroup][C4][4], const float *inv, const float *lse2,
                           float *part_o = nullptr, float *part_lse = nullptr)
{
    const int lane = threadIdx.x % kGroup;
#pragma unroll
    for (int rr = 0; rr < kRowsPerGroup; ++rr) {
        const int row = row0 + rr;
        if (row >= a.seq_q) continue;
        const float lse = lse2[rr] == -INFINITY ? -INFINITY : lse2[rr] * kLn2;
        if (kServe && part_o) {
            float *prow = part_o + (t.lse + row) * a.head_dim_v;
#pragma unroll
            for (int c = 0; c < C4; ++c)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int col = 4 * lane + 4 * kGroup * c + e;
                    if (col < a.head_dim_v) prow[col] = o[rr][c][e] * inv[rr];
                }
            if (lane == 0) part_lse[t.lse + row] = lse;
            continue;
        }
        const int64_t orow = t.o + (int64_t)row * a.o_stride[2];
#pragma unroll
        for (int c = 0; c < C4; ++c)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int col = 4 * lane + 4 * kGroup * c + e;
                if (col < a.head_dim_v)
                    store_out<T>(a, orow + col * a.o_stride[3], o[rr][c][e] * inv[rr]);
            }
        if (a.lse && lane == 0) a.lse[t.lse + row] = lse;
    }
}

/* Generic flash forward of one 32-query tile: online softmax over 64-key tiles, no N x N
 * memory.  Dense problems (kServe false) see every key; a serving block passes its
 * sequence's arguments (pa_gpu_args_for_seq), its bases and its split's keys
 * [key_lo, key_hi), and with part_o set writes its split's partial without the sink. */
template <typename T, int C4, bool kServe>
__device__ __forceinline__ void flash_fwd_tile(const pa_gpu_args &a, const TileBases &t, int row0,
                                               int key_lo, int key_hi, float *part_o,
                                               float *part_lse)
{
    extern __shared__ float4 smem4[];
    float *qs = reinterpret_cast<float *>(smem4);
    float *ks = qs + kQsFloats;
    float *ss = ks + kKsFloats; /* [kRows][kKeys + 1] */
    float *vs = ss + ((kSsFloats + 3) & ~3);

    const int tid = threadIdx.x, lane = tid % kGroup, group = tid / kGroup;
    const int my_row0 = group * kRowsPerGroup;
    const int last_row = min(row0 + kRows, a.seq_q) - 1;
    /* Score variants (a uniform branch; gpu_variants.h): keys [key_begin, key_end) meet
     * some row of the tile (both ends of a row's range grow with the row); rows that see a
     * key are marked in `seen` (attn_mask and -inf bias hide pairs inside the range). */
    const bool var = pa_gpu_var_on(a);
    __shared__ int seen[kRows];
    int key_begin = 0, key_end = visible_keys(a, last_row);
    if (var) {
        int hi_first, lo_last;
        pa_gpu_visible_range(a, row0, key_begin, hi_first);
        pa_gpu_visible_range(a, last_row, lo_last, key_end);
        if (tid < kRows) seen[tid] = 0; /* published by score_tile's barriers */
    }
    if (kServe) { /* key_lo is a multiple of kKeys: the tiles stay aligned (none past key_hi) */
        key_begin = max(key_begin, key_lo);
        key_end = min(key_end, key_hi);
    }
    /* a split's partial leaves the sink to the merge */
    const float sink2 = var && !(kServe && part_o) ? pa_gpu_sink(a, t.head) * kLog2e : -INFINITY;

    float o[kRowsPerGroup][C4][4];
    float m[kRowsPerGroup], l[kRowsPerGroup];
    int my_lo[kRowsPerGroup], my_vis[kRowsPerGroup];
#pragma unroll
    for (int rr = 0; rr < kRowsPerGroup; ++rr) {
        m[rr] = sink2; /* a sink starts the max and the sum: exp2(sink - sink) = 1 */
        l[rr] = sink2 != -INFINITY ? 1.f : 0.f;
        my_lo[rr] = 0;
        my_vis[rr] = visible_keys(a, row0 + my_row0 + rr);
        if (var) pa_gpu_visible_range(a, row0 + my_row0 + rr, my_lo[rr], my_vis[rr]);
#pragma unroll
        for (int c = 0; c < C4; ++c)
            o[rr][c][0] = o[rr][c][1] = o[rr][c][2] = o[rr][c][3] = 0.f;
    }

    const int sr = (tid / 16) * 2, sk = tid % 16;
    const float qscale = var ? a.scale : a.scale * kLog2e; /* variants: natural units first */
    for (int key0 = key_begin - key_begin % kKeys; key0 < key_end; key0 += kKeys) {
        float acc[2][4];
        score_tile<T, kServe>(a, t, row0, qs, ks, key0, qscale, acc);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int row = row0 + sr + r;
            if (var) {
                const pa_gpu_var_row vr = pa_gpu_var_row_of(a, t.batch, t.head, row);
                bool any = false;
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const int key = key0 + sk + 16 * i;
                    float x;
                    const bool ok = row < a.seq_q && key >= vr.lo && key < vr.hi &&
                                    pa_gpu_var_score(a, vr, key, acc[r][i], x);
                    ss[(sr + r) * kSsStride + sk + 16 * i] = ok ? x * kLog2e : -INFINITY;
                    any |= ok;
                }
                if (any) seen[sr + r] = 1;
                continue;
            }
            const int vis = visible_keys(a, row);
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int key = key0 + sk + 16 * i;
                ss[(sr + r) * kSsStride + sk + 16 * i] = key < vis ? acc[r][i] : -INFINITY;
            }
        }
        __syncthreads();
#pragma unroll
        for (int rr = 0; rr < kRowsPerGroup; ++rr) {
            float *srow = ss + (my_row0 + rr) * kSsStride;
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
            for (int c = 0; c < C4; ++c)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    o[rr][c][e] *= alpha;
        }
        /* accumulate_pv starts with a barrier: the probabilities are complete before use */
        accumulate_pv<T, C4, kServe>(a, t, ss + my_row0 * kSsStride, kSsStride, my_lo, my_vis, vs,
                                     key0, min(kKeys, key_end - key0), o);
    }
    __syncthreads(); /* every row's seen mark is in */
    float inv[kRowsPerGroup], lse2[kRowsPerGroup];
#pragma unroll
    for (int rr = 0; rr < kRowsPerGroup; ++rr) {
        bool any = var ? seen[my_row0 + rr] != 0 : my_vis[rr] > 0;
        if (kServe && !var) any = min(my_vis[rr], key_hi) > max(my_lo[rr], key_lo);
        inv[rr] = pa_gpu_row_inv(l[rr], any) * out_factor<T>(a);
        lse2[rr] = pa_gpu_row_lse(m[rr] + log2f(l[rr]), l[rr], any);
    }
    store_rows<T, C4, kServe>(a, t, row0 + my_row0, o, inv, lse2, part_o, part_lse);
}

/* Dense: grid (query tiles, heads_q, batch).  Serving (kServe): grid (query tiles x splits,
 * heads_q, sequences); a block past its sequence's queries exits at once. */
template <typename T, int C4, bool kServe>
__global__ void __launch_bounds__(kThreads) flash_fwd_simt_kernel(pa_gpu_args a)
{
    if (!kServe) {
        flash_fwd_tile<T, C4, false>(a, tile_bases(a), blockIdx.x * kRows, 0, a.seq_kv, nullptr,
                                     nullptr);
        return;
    }
    const int nsplit = a.num_splits > 1 ? a.num_splits : 1;
    const int qtiles = gridDim.x / nsplit;
    const int split = blockIdx.x / qtiles, row0 = (blockIdx.x - split * qtiles) * kRows;
    const int b = blockIdx.z;
    const pa_gpu_seq s = pa_gpu_seq_of(a, b);
    if (row0 >= s.len_q) return; /* the whole block: before any barrier */
    const TileBases t = serving_bases(a, b, s);
    int key_lo = 0, key_hi = s.len_kv;
    float *part_o = nullptr, *part_lse = nullptr;
    if (nsplit > 1) { /* split `split` of the sequence's own key tiles */
        const int tiles = (s.len_kv + kKeys - 1) / kKeys, per = (tiles + nsplit - 1) / nsplit;
        key_lo = min(split * per, tiles) * kKeys; /* a multiple of kKeys, even when empty */
        key_hi = min(key_lo + per * kKeys, s.len_kv);
        const int64_t rows =
            a.varlen_q ? (int64_t)a.heads_q * a.total_q : (int64_t)a.batch * a.heads_q * a.seq_q;
        part_o = a.part_o + split * rows * a.head_dim_v;
        part_lse = a.part_lse + split * rows;
    }
    flash_fwd_tile<T, C4, true>(pa_gpu_args_for_seq(a, s), t, row0, key_lo, key_hi, part_o,
                                part_lse);
}

/* Fused: pass 1 writes every score of the tile (shared memory or workspace), pass 2 takes
 * the exact row max and sum and normalizes in place (and writes probs), pass 3 forms P V. */
template <typename T, int C4>
__global__ void __launch_bounds__(kThreads) fused_attn_kernel(pa_gpu_args a, int scores_in_smem)
{
    extern __shared__ float4 smem4[];
    float *qs = reinterpret_cast<float *>(smem4);
    float *ks = qs + kQsFloats;
    float *vs = ks + kKsFloats;
    const int sc_stride = a.seq_kv + 1;
    float *sc;
    if (scores_in_smem) {
        sc = vs + kVKeys * v_stride_of(a.head_dim_v);
    } else {
        const int64_t block =
            ((int64_t)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
        sc = static_cast<float *>(a.workspace) + block * kRows * (int64_t)sc_stride;
    }

    const TileBases t = tile_bases(a);
    const int row0 = blockIdx.x * kRows;
    const int tid = threadIdx.x, lane = tid % kGroup, group = tid / kGroup;
    const int my_row0 = group * kRowsPerGroup;
    const int last_row = min(row0 + kRows, a.seq_q) - 1;
    /* Score variants: as in flash_fwd_simt_kernel (keys [key_begin, key_end), seen marks). */
    const bool var = pa_gpu_var_on(a);
    __shared__ int seen[kRows];
    int key_begin = 0, key_end = visible_keys(a, last_row);
    if (var) {
        int hi_first, lo_last;
        pa_gpu_visible_range(a, row0, key_begin, hi_first);
        pa_gpu_visible_range(a, last_row, lo_last, key_end);
        if (tid < kRows) seen[tid] = 0;
    }

    /* pass 1: scores of visible tiles; entries past a row's visibility are never read. */
    const int sr = (tid / 16) * 2, sk = tid % 16;
    const float qscale = var ? a.scale : a.scale * kLog2e;
    for (int key0 = key_begin - key_begin % kKeys; key0 < key_end; key0 += kKeys) {
        float acc[2][4];
        score_tile<T>(a, t, row0, qs, ks, key0, qscale, acc);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int row = row0 + sr + r;
            pa_gpu_var_row vr;
            if (var) vr = pa_gpu_var_row_of(a, t.batch, t.head, row);
            bool any = false;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const int key = key0 + sk + 16 * i;
                if (key >= a.seq_kv) continue;
                float x = acc[r][i];
                if (var) { /* final score in the exp2 domain, or -inf where a mask hides it */
                    const bool ok = row < a.seq_q && key >= vr.lo && key < vr.hi &&
                                    pa_gpu_var_score(a, vr, key, acc[r][i], x);
                    x = ok ? x * kLog2e : -INFINITY;
                    any |= ok;
                }
                sc[(sr + r) * sc_stride + key] = x;
            }
            if (any) seen[sr + r] = 1;
        }
    }
    __syncthreads();

    /* pass 2: exact softmax per row, normalized in place. */
    float m[kRowsPerGroup], l[kRowsPerGroup];
    int lo[kRowsPerGroup], vis[kRowsPerGroup];
    bool any[kRowsPerGroup];
    const float sink2 = var ? pa_gpu_sink(a, t.head) * kLog2e : -INFINITY;
#pragma unroll
    for (int rr = 0; rr < kRowsPerGroup; ++rr) {
        const int row = row0 + my_row0 + rr;
        float *srow = sc + (my_row0 + rr) * sc_stride;
        lo[rr] = 0;
        vis[rr] = row < a.seq_q ? visible_keys(a, row) : 0;
        if (var && row < a.seq_q) pa_gpu_visible_range(a, row, lo[rr], vis[rr]);
        any[rr] = var ? seen[my_row0 + rr] != 0 : vis[rr] > 0;
        float mx = -INFINITY;
        for (int j = lo[rr] + lane; j < vis[rr]; j += kGroup)
            mx = fmaxf(mx, srow[j]);
        mx = fmaxf(gpu_group_max<kGroup>(mx), sink2); /* a sink joins the max */
        const float m_use = mx == -INFINITY ? 0.f : mx;
        float sum = 0.f;
        for (int j = lo[rr] + lane; j < vis[rr]; j += kGroup) {
            const float p = exp2f(srow[j] - m_use);
            srow[j] = p;
            sum += p;
        }
        sum = gpu_group_sum<kGroup>(sum);
        if (var) sum += exp2f(sink2 - m_use); /* the sink's term (0 without one) */
        const float inv = pa_gpu_row_inv(sum, any[rr]);
        float *prow = a.probs && row < a.seq_q
                          ? a.probs + (((int64_t)t.batch * a.heads_q + t.head) * a.seq_q + row) *
                                          (int64_t)a.seq_kv
                          : nullptr;
        /* each lane writes the probabilities it normalized (no lane reads another's) */
        for (int j = lo[rr] + lane; j < vis[rr]; j += kGroup) {
            srow[j] *= inv;
            if (prow) prow[j] = srow[j];
        }
        if (prow)
            for (int j = lane; j < a.seq_kv; j += kGroup)
                if (j < lo[rr] || j >= vis[rr]) prow[j] = 0.f;
        m[rr] = mx;
        l[rr] = sum;
    }

    /* pass 3: O = P V with P normalized (accumulate_pv's first barrier orders pass 2). */
    float o[kRowsPerGroup][C4][4];
#pragma unroll
    for (int rr = 0; rr < kRowsPerGroup; ++rr)
#pragma unroll
        for (int c = 0; c < C4; ++c)
            o[rr][c][0] = o[rr][c][1] = o[rr][c][2] = o[rr][c][3] = 0.f;
    accumulate_pv<T, C4>(a, t, sc + my_row0 * sc_stride + key_begin, sc_stride, lo, vis, vs,
                         key_begin, key_end - key_begin, o);
    float one[kRowsPerGroup], lse2[kRowsPerGroup];
#pragma unroll
    for (int rr = 0; rr < kRowsPerGroup; ++rr) {
        one[rr] = 1.f; /* P is normalized already */
        lse2[rr] = pa_gpu_row_lse(m[rr] + log2f(l[rr]), l[rr], any[rr]);
    }
    store_rows<T, C4>(a, t, row0 + my_row0, o, one, lse2);
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

    /* Scores beyond PA_GPU_SCORE_MAX count as +-inf, as in the exp2-domain kernels. */
    float mx = -INFINITY;
    for (int j = tid; j < vis; j += kThreads)
        mx = fmaxf(mx, pa_gpu_score_range(srow[j]));
    mx = gpu_group_max<kGroup>(mx);
    if (lane == 0) red[group] = mx;
    __syncthreads();
    mx = red[0];
    for (int g = 1; g < ngroups; ++g)
        mx = fmaxf(mx, red[g]);
    __syncthreads();
    const float m_use = mx == -INFINITY ? 0.f : mx;

    float sum = 0.f;
    for (int j = tid; j < vis; j += kThreads)
        sum += __expf(pa_gpu_score_range(srow[j]) - m_use);
    sum = gpu_group_sum<kGroup>(sum);
    if (lane == 0) red[group] = sum;
    __syncthreads();
    sum = 0.f;
    for (int g = 0; g < ngroups; ++g)
        sum += red[g];
    const float inv = pa_gpu_row_inv(sum, vis > 0);

    if (a.lse && tid == 0) a.lse[row] = pa_gpu_row_lse(m_use + logf(sum), sum, vis > 0);
    float *prow = a.probs ? a.probs + row * n : nullptr;
    void *dst = reinterpret_cast<char *>(scores) + row * n * (int64_t)sizeof(float);
    for (int base = 0; base < n; base += kThreads) {
        const int j = base + tid;
        float p = 0.f;
        if (j < vis) p = __expf(pa_gpu_score_range(srow[j]) - m_use) * inv;
        __syncthreads();
        if (j < n) {
            store_elem(dst, j, a.dtype, p);
            if (prow) prow[j] = p;
        }
    }
}

int c4_for(int head_dim_v)
{
    const int c4 = (head_dim_v + 4 * kGroup - 1) / (4 * kGroup);
    return c4 <= 1 ? 1 : c4 <= 2 ? 2 : c4 <= 4 ? 4 : 8;
}

template <template <typename, int> class Pick, typename Fn>
Fn pick_kernel(int dtype, int c4)
{
#define PA_PICK_C4(T)                                                                              \
    switch (c4) {                                                                                  \
    case 1: return Pick<T, 1>::fn;                                                                 \
    case 2: return Pick<T, 2>::fn;                                                                 \
    case 4: return Pick<T, 4>::fn;                                                                 \
    default: return Pick<T, 8>::fn;                                                                \
    }
    if (dtype == 0) PA_PICK_C4(float)
    if (dtype == 1) PA_PICK_C4(gpu_half)
    PA_PICK_C4(gpu_bf16)
#undef PA_PICK_C4
}

/* The instance of storage type T (e4m3 inputs: the generic flash kernel only). */
template <template <typename, int> class Pick, typename Fn, typename T>
Fn pick_c4(int c4)
{
    switch (c4) {
    case 1: return Pick<T, 1>::fn;
    case 2: return Pick<T, 2>::fn;
    case 4: return Pick<T, 4>::fn;
    default: return Pick<T, 8>::fn;
    }
}

typedef void (*flash_fn)(pa_gpu_args);
typedef void (*fused_fn)(pa_gpu_args, int);
template <typename T, int C4>
struct PickFlash {
    static constexpr flash_fn fn = flash_fwd_simt_kernel<T, C4, false>;
};
template <typename T, int C4>
struct PickFlashServe {
    static constexpr flash_fn fn = flash_fwd_simt_kernel<T, C4, true>;
};
template <typename T, int C4>
struct PickFused {
    static constexpr fused_fn fn = fused_attn_kernel<T, C4>;
};

} // namespace

extern "C" size_t pa_gpu_flash_generic_smem(const pa_gpu_args *a)
{
    return sizeof(float) * ((size_t)kQsFloats + kKsFloats + ((kSsFloats + 3) & ~3) +
                            (size_t)kVKeys * v_stride_of(a->head_dim_v));
}

extern "C" int pa_gpu_flash_generic(const pa_gpu_args *a, void *stream)
{
    const size_t smem = pa_gpu_flash_generic_smem(a);
    /* Serving layouts and splits take the kServe instance; dense problems keep theirs. */
    const bool serve = a->varlen_q || a->kv_layout != PA_GPU_KV_DENSE || a->num_splits > 1;
    const int c4 = c4_for(a->head_dim_v);
    flash_fn kernel = a->dtype == PA_GPU_DTYPE_E4M3
                          ? (serve ? pick_c4<PickFlashServe, flash_fn, gpu_e4m3>(c4)
                                   : pick_c4<PickFlash, flash_fn, gpu_e4m3>(c4))
                      : serve ? pick_kernel<PickFlashServe, flash_fn>(a->dtype, c4)
                              : pick_kernel<PickFlash, flash_fn>(a->dtype, c4);
    gpuError_t e = gpuFuncSetAttribute(kernel, 0, (int)smem);
    if (e != gpuSuccess) return (int)e;
    const int nsplit = serve && a->num_splits > 1 ? a->num_splits : 1;
    const int64_t qtiles = (a->seq_q + kRows - 1) / kRows;
    if (qtiles == 0 || a->heads_q == 0 || a->batch == 0) return 0; /* no query row */
    if (qtiles * nsplit > 0x7fffffff) return 1; /* cudaErrorInvalidValue / hipErrorInvalidValue */
    const dim3 grid((unsigned)(qtiles * nsplit), a->heads_q, a->batch);
    kernel<<<grid, kThreads, smem, (gpuStream_t)stream>>>(*a);
    return (int)gpuGetLastError();
}

extern "C" size_t pa_gpu_fused_smem(const pa_gpu_args *a, int scores_in_smem)
{
    size_t floats = (size_t)kQsFloats + kKsFloats + (size_t)kVKeys * v_stride_of(a->head_dim_v);
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
    fused_fn kernel = pick_kernel<PickFused, fused_fn>(a->dtype, c4_for(a->head_dim_v));
    gpuError_t e = gpuFuncSetAttribute(kernel, 0, (int)smem);
    if (e != gpuSuccess) return (int)e;
    const dim3 grid((a->seq_q + kRows - 1) / kRows, a->heads_q, a->batch);
    kernel<<<grid, kThreads, smem, (gpuStream_t)stream>>>(*a, scores_in_smem);
    return (int)gpuGetLastError();
}

extern "C" int pa_gpu_mask_softmax(const pa_gpu_args *a, void *scores, void *stream)
{
    if (pa_gpu_args_have_variants(a)) return pa_gpu_mask_softmax_variants(a, scores, stream);
    const int64_t rows = (int64_t)a->batch * a->heads_q * a->seq_q;
    mask_softmax_kernel<<<dim3((unsigned)rows), kThreads, 0, (gpuStream_t)stream>>>(
        *a, static_cast<float *>(scores));
    return (int)gpuGetLastError();
}
