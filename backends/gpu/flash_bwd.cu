/*
 * Shared SIMT flash backward (see flash_bwd.h): FlashAttention-2's recomputation scheme in
 * plain f32 FMAs, one source for nvcc and hipcc through gpu_port.h.
 *
 * Kernels (one launch each, in this order on the stream):
 *   flash_bwd_prep_kernel   delta = rowsum(dO * O); zeroes the f32 dQ accumulator (atomic mode)
 *   flash_bwd_dkdv_kernel   one block per (key tile, kv head, batch): K_j, V_j stay in shared
 *                           memory, the query tiles that can see the key tile stream past (every
 *                           query head of the GQA group in order), dK_j and dV_j stay in
 *                           registers; in atomic mode it also adds scale * dS K_j into dQ
 *   flash_bwd_dq_kernel     deterministic mode: one block per (query tile, query head, batch)
 *                           over the visible key tiles in order; no atomics anywhere
 *   flash_bwd_dq_store_kernel  atomic mode: dQ accumulator -> the caller's dtype and strides
 *   zero_rows_kernel        varlen: zeroes dK, dV (packed keys) and, deterministic, dQ first,
 *                           so rows outside every sequence read 0; zeroes d_bias before the
 *                           dK/dV kernel stores or adds into it
 *   flash_bwd_dbias_kernel  deterministic d_bias of a broadcast bias: one block per d_bias
 *                           tile sums dS over the (batch, head) pairs sharing it, in order
 *                           (flash_bwd_dbias.cu)
 *   bwd_dsinks_kernel       d_sinks: one block per head over its rows in a fixed order
 *                           (gpu_backward.cu, shared with the unfused backward)
 *
 * Score variants (window, softcap, ALiBi, bias, attn_mask) run the kVar instances: P from
 * the forward's final scores (gpu_variants.h), dS times 1 - tanh^2 under softcap for dQ and
 * dK, whole tiles outside the causal band or the window skipped.  The plain instances are
 * the variant-free code as it was (the variant branches are compile-time).
 *
 * Varlen problems (varlen q, varlen K/V: gpu_serving.h) run the kServe instances: a block
 * resolves its sequence, exits when its tile is past the sequence's rows and works on the
 * sequence's lengths; delta, the LSE and the dQ accumulator use the LSE's index space
 * ([heads_q, total_q] with varlen q).
 *
 * Tiles are chosen at run time from the head dims (one compiled instance per kernel; dtype is
 * a uniform run-time branch at loads and stores).  Shared memory stays within 64 KiB so the
 * same plan fits AMD's LDS; rows are padded to an odd stride so the column walks hit
 * distinct banks.  The tile machinery (plan, loads, micro GEMMs, scores_tile) is in
 * flash_bwd_tile.cuh.
 */
#include "flash_bwd_tile.cuh"
#include "gpu_backward.h" /* pa_gpu_bwd_dsinks */

namespace
{

/* delta[row] = sum_e dO[row][e] * O[row][e] (one 32-lane group per row, fixed order); zeroes
 * the dQ accumulator row when there is one. */
__global__ void __launch_bounds__(kThreads)
    flash_bwd_prep_kernel(pa_gpu_bwd_args g, float *delta, float *dq_acc)
{
    const pa_gpu_args &a = g.fwd;
    constexpr int kGroup = 32;
    const int64_t rows = bwd_rows(a);
    const int lane = threadIdx.x % kGroup;
    const int64_t step = (int64_t)gridDim.x * (kThreads / kGroup);
    /* every lane runs the same trip count: the shuffles stay convergent */
    for (int64_t base = (int64_t)blockIdx.x * (kThreads / kGroup); base < rows; base += step) {
        const int64_t row = base + threadIdx.x / kGroup;
        float acc = 0.f;
        if (row < rows) {
            const int64_t at = bwd_row_elem(a, row, a.o_stride);
            for (int d = lane; d < a.head_dim_v; d += kGroup) {
                const int64_t e = at + d * a.o_stride[3];
                acc = fmaf(load_elem(g.d_o, e, a.dtype), load_elem(a.o, e, a.dtype), acc);
            }
            if (dq_acc)
                for (int d = lane; d < a.head_dim; d += kGroup)
                    dq_acc[row * a.head_dim + d] = 0.f;
        }
        acc = gpu_group_sum<kGroup>(acc);
        if (row < rows && lane == 0) delta[row] = acc;
    }
}

/* dK, dV of key tile [key0, key0 + bk) of kv head hk in sequence b (s): a holds the
 * sequence's lengths, g.fwd the problem's. */
template <bool kServe, bool kVar>
__device__ __forceinline__ void
dkdv_tile(const pa_gpu_bwd_args &g, const pa_gpu_args &a, const BwdPlan &pl, const float *delta,
          float *dq_acc, int dbias_mode, int b, const pa_gpu_seq &s, int hk, int key0)
{
    extern __shared__ float bwd_smem[];
    float *sm = bwd_smem;
    const int nk = min(pl.bk, a.seq_kv - key0);
    const int group = a.heads_q / a.heads_kv;

    const BwdBases kx = bwd_bases<kServe>(g.fwd, b, s, hk * group, hk);
    load_key_tile(a, pl, sm, kx, key0, nk);
    const Micro mk = micro_of(pl.bk, a.head_dim), mv = micro_of(pl.bk, a.head_dim_v);
    const Micro mq = micro_of(pl.bq, a.head_dim);
    float dk[kMicro][kMicro], dv[kMicro][kMicro];
    micro_zero(dk);
    micro_zero(dv);

    /* queries outside [q_begin, q_end) see none of the tile */
    int q_begin, q_end;
    if (kVar) queries_seeing(a, key0, key0 + nk, q_begin, q_end);
    else q_begin = first_query_seeing(a, key0), q_end = a.seq_q;
    VarTile vt = {b, 0, dbias_mode, nullptr, a.seq_kv};
    float dsum[kMaxEntries] = {}; /* unused: d_bias is stored or added */
    for (int h = hk * group; h < (hk + 1) * group; ++h) {
        const BwdBases qx = bwd_bases<kServe>(g.fwd, b, s, h, hk);
        vt.head = h;
        for (int q0 = q_begin; q0 < q_end; q0 += pl.bq) {
            const int nq = min(pl.bq, q_end - q0);
            __syncthreads(); /* the previous tile's readers are done */
            load_query_tile(g, a, pl, sm, delta, qx, q0, nq);
            __syncthreads();
            if (kVar && dbias_mode != kDbiasNone) {
                /* d_bias [nb, nh, seq_q, seq_kv] (dense layouts only: no bias with varlen) */
                const int64_t slice = (int64_t)(g.d_bias_batch == 1 ? 0 : b) * g.d_bias_heads +
                                      (g.d_bias_heads == 1 ? 0 : h);
                vt.dbias = g.d_bias + (slice * a.seq_q + q0) * a.seq_kv + key0;
            }
            scores_tile<kVar>(a, pl, sm, q0, nq, key0, nk, vt, dsum);
            __syncthreads();
            /* dV += P^T dO, dK += dS^T Q (the scale is applied at the store) */
            micro_gemm(dv, mv, nq, sm + pl.p_off, pl.ps, 1, sm + pl.o_off, pl.os, 1);
            micro_gemm(dk, mk, nq, sm + pl.ds_off, pl.ps, 1, sm + pl.q_off, pl.qs, 1);
            if (dq_acc) {
                /* dQ_i += dS K_j, added atomically: other key tiles add to the same rows */
                float dq[kMicro][kMicro];
                micro_zero(dq);
                micro_gemm(dq, mq, nk, sm + pl.ds_off, 1, pl.ps, sm + pl.k_off, pl.ks, 1);
                float *base = dq_acc + (qx.row + q0) * a.head_dim;
#pragma unroll
                for (int r = 0; r < kMicro; ++r)
#pragma unroll
                    for (int c = 0; c < kMicro; ++c)
                        if (micro_valid(mq, r, c, nq, a.head_dim))
                            atomicAdd(base + (int64_t)mq.row[r] * a.head_dim + mq.col[c], dq[r][c]);
            }
        }
    }

    /* Every key of the tile is written, zeros for keys that no query sees. */
#pragma unroll
    for (int r = 0; r < kMicro; ++r)
#pragma unroll
        for (int c = 0; c < kMicro; ++c) {
            if (micro_valid(mk, r, c, nk, a.head_dim))
                store_elem(g.dk,
                           kx.k + (int64_t)(key0 + mk.row[r]) * a.k_stride[2] +
                               (int64_t)mk.col[c] * a.k_stride[3],
                           a.dtype, a.scale * dk[r][c]);
            if (micro_valid(mv, r, c, nk, a.head_dim_v))
                store_elem(g.dv,
                           kx.v + (int64_t)(key0 + mv.row[r]) * a.v_stride[2] +
                               (int64_t)mv.col[c] * a.v_stride[3],
                           a.dtype, dv[r][c]);
        }
}

template <bool kServe, bool kVar>
__global__ void __launch_bounds__(kThreads)
    flash_bwd_dkdv_kernel(pa_gpu_bwd_args g, BwdPlan pl, const float *delta, float *dq_acc,
                          int dbias_mode)
{
    const int key0 = blockIdx.x * pl.bk, hk = blockIdx.y, b = blockIdx.z;
    if (!kServe) {
        const pa_gpu_seq s = {0, g.fwd.seq_q, 0, g.fwd.seq_kv};
        dkdv_tile<false, kVar>(g, g.fwd, pl, delta, dq_acc, dbias_mode, b, s, hk, key0);
        return;
    }
    const pa_gpu_seq s = pa_gpu_seq_of(g.fwd, b);
    if (key0 >= s.len_kv) return; /* the whole block: zero_rows_kernel zeroed its rows */
    dkdv_tile<true, kVar>(g, pa_gpu_args_for_seq(g.fwd, s), pl, delta, dq_acc, dbias_mode, b, s, hk,
                          key0);
}

/* Deterministic dQ: the query tile stays, the visible key tiles stream past in order. */
template <bool kServe, bool kVar>
__device__ __forceinline__ void dq_tile(const pa_gpu_bwd_args &g, const pa_gpu_args &a,
                                        const BwdPlan &pl, const float *delta, int b,
                                        const pa_gpu_seq &s, int h, int q0)
{
    extern __shared__ float bwd_smem[];
    float *sm = bwd_smem;
    const int nq = min(pl.bq, a.seq_q - q0);
    const int hk = h / (a.heads_q / a.heads_kv);
    int key_begin = 0, key_end;
    if (kVar) keys_seen(a, q0, nq, key_begin, key_end);
    else key_end = visible_keys(a, q0 + nq - 1);
    const VarTile vt = {b, h, kDbiasNone, nullptr, 0};
    float dsum[kMaxEntries] = {}; /* unused */
    const BwdBases x = bwd_bases<kServe>(g.fwd, b, s, h, hk);

    load_query_tile(g, a, pl, sm, delta, x, q0, nq);
    const Micro mq = micro_of(pl.bq, a.head_dim);
    float dq[kMicro][kMicro];
    micro_zero(dq);
    for (int key0 = key_begin; key0 < key_end; key0 += pl.bk) {
        const int nk = min(pl.bk, a.seq_kv - key0);
        __syncthreads();
        load_key_tile(a, pl, sm, x, key0, nk);
        __syncthreads();
        scores_tile<kVar>(a, pl, sm, q0, nq, key0, nk, vt, dsum);
        __syncthreads();
        micro_gemm(dq, mq, nk, sm + pl.ds_off, 1, pl.ps, sm + pl.k_off, pl.ks, 1);
    }
#pragma unroll
    for (int r = 0; r < kMicro; ++r)
#pragma unroll
        for (int c = 0; c < kMicro; ++c)
            if (micro_valid(mq, r, c, nq, a.head_dim))
                store_elem(g.dq,
                           x.q + (int64_t)(q0 + mq.row[r]) * a.q_stride[2] +
                               (int64_t)mq.col[c] * a.q_stride[3],
                           a.dtype, a.scale * dq[r][c]);
}

template <bool kServe, bool kVar>
__global__ void __launch_bounds__(kThreads)
    flash_bwd_dq_kernel(pa_gpu_bwd_args g, BwdPlan pl, const float *delta)
{
    const int q0 = blockIdx.x * pl.bq, h = blockIdx.y, b = blockIdx.z;
    if (!kServe) {
        const pa_gpu_seq s = {0, g.fwd.seq_q, 0, g.fwd.seq_kv};
        dq_tile<false, kVar>(g, g.fwd, pl, delta, b, s, h, q0);
        return;
    }
    const pa_gpu_seq s = pa_gpu_seq_of(g.fwd, b);
    if (q0 >= s.len_q) return; /* the whole block: zero_rows_kernel zeroed its rows */
    dq_tile<true, kVar>(g, pa_gpu_args_for_seq(g.fwd, s), pl, delta, b, s, h, q0);
}

/* Zeroes heads x rows x dim elements of a packed [1, heads, rows, dim] tensor (varlen dQ,
 * dK, dV), so that rows outside every sequence read 0. */
__global__ void __launch_bounds__(kThreads)
    zero_rows_kernel(void *dst, int dtype, int64_t s1, int64_t s2, int64_t s3, int64_t rows,
                     int64_t dim, int64_t n)
{
    const int64_t step = (int64_t)gridDim.x * kThreads;
    for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += step) {
        const int64_t d = i % dim, r = (i / dim) % rows, h = i / (dim * rows);
        store_elem(dst, h * s1 + r * s2 + d * s3, dtype, 0.f);
    }
}

/* dQ = scale * accumulator, into the caller's dtype and strides. */
__global__ void __launch_bounds__(kThreads)
    flash_bwd_dq_store_kernel(pa_gpu_bwd_args g, const float *dq_acc)
{
    const pa_gpu_args &a = g.fwd;
    const int64_t n = bwd_rows(a) * a.head_dim;
    const int64_t step = (int64_t)gridDim.x * kThreads;
    for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += step) {
        const int64_t d = i % a.head_dim, row = i / a.head_dim;
        store_elem(g.dq, bwd_row_elem(a, row, a.q_stride) + d * a.q_stride[3], a.dtype,
                   a.scale * dq_acc[i]);
    }
}

/* The runtime's "invalid value" code, returned for a problem pa_gpu_flash_bwd_smem refuses. */
#if defined(GPU_BACKEND_HIP)
constexpr int kInvalidValue = (int)hipErrorInvalidValue;
#else
constexpr int kInvalidValue = (int)cudaErrorInvalidValue;
#endif

uint64_t align_up(uint64_t x) { return (x + 255) & ~(uint64_t)255; }

/* Rows of the LSE's index space (bwd_rows on the host). */
uint64_t host_rows(const pa_gpu_args &a)
{
    return a.varlen_q ? (uint64_t)a.heads_q * a.total_q : (uint64_t)a.batch * a.heads_q * a.seq_q;
}

uint64_t delta_bytes(const pa_gpu_args &a) { return align_up(host_rows(a) * sizeof(float)); }

bool serving(const pa_gpu_args &a) { return a.varlen_q || a.kv_layout != PA_GPU_KV_DENSE; }

/* Whether a variant changes the scores (the kVar instances); sinks alone are in the LSE. */
bool scores_vary(const pa_gpu_args &a)
{
    return a.has_window || a.softcap > 0.f || a.alibi_slopes || a.bias || a.attn_mask;
}

/* Whether several (batch, head) pairs add into one d_bias element. */
bool dbias_shared(const pa_gpu_bwd_args &g)
{
    return (g.d_bias_batch == 1 && g.fwd.batch > 1) || (g.d_bias_heads == 1 && g.fwd.heads_q > 1);
}

/* Zeroes a packed varlen tensor ([1, heads, rows, dim] at stride). */
int zero_rows(void *dst, int dtype, const int64_t stride[4], int heads, int rows, int dim,
              gpuStream_t st)
{
    const int64_t n = (int64_t)heads * rows * dim;
    if (n <= 0) return 0;
    zero_rows_kernel<<<grid_for(n, kThreads), kThreads, 0, st>>>(dst, dtype, stride[1], stride[2],
                                                                 stride[3], rows, dim, n);
    return (int)gpuGetLastError();
}

} // namespace

extern "C" uint64_t pa_gpu_flash_bwd_workspace(const pa_gpu_bwd_args *g)
{
    const pa_gpu_args &a = g->fwd;
    uint64_t bytes = delta_bytes(a);
    if (!g->deterministic) bytes += align_up(host_rows(a) * a.head_dim * sizeof(float));
    return bytes;
}

extern "C" size_t pa_gpu_flash_bwd_smem(const pa_gpu_bwd_args *g)
{
    const pa_gpu_args &a = g->fwd;
    if (a.head_dim < 1 || a.head_dim_v < 1 || a.head_dim > PA_GPU_MAX_HEAD_DIM ||
        a.head_dim_v > PA_GPU_MAX_HEAD_DIM)
        return 0;
    BwdPlan pl;
    return plan_for(a.head_dim, a.head_dim_v, &pl) ? (size_t)pl.floats * sizeof(float) : 0;
}

extern "C" int pa_gpu_flash_bwd(const pa_gpu_bwd_args *g, void *workspace, void *stream)
{
    const pa_gpu_args &a = g->fwd;
    BwdPlan pl;
    if (!plan_for(a.head_dim, a.head_dim_v, &pl)) return kInvalidValue;
    const gpuStream_t st = (gpuStream_t)stream;
    float *delta = static_cast<float *>(workspace);
    float *dq_acc =
        g->deterministic
            ? nullptr
            : reinterpret_cast<float *>(static_cast<char *>(workspace) + delta_bytes(a));
    const int64_t rows = (int64_t)host_rows(a);
    const size_t smem = (size_t)pl.floats * sizeof(float);
    const bool serve = serving(a);
    gpuError_t e;
    /* Varlen: the rows outside every sequence are zero (the kernels below skip them). */
    if (serve && a.kv_layout == PA_GPU_KV_VARLEN) {
        int z = zero_rows(g->dk, a.dtype, a.k_stride, a.heads_kv, a.kv_rows, a.head_dim, st);
        if (z == 0)
            z = zero_rows(g->dv, a.dtype, a.v_stride, a.heads_kv, a.kv_rows, a.head_dim_v, st);
        if (z != 0) return z;
    }
    if (serve && a.varlen_q && g->deterministic) {
        const int z = zero_rows(g->dq, a.dtype, a.q_stride, a.heads_q, a.total_q, a.head_dim, st);
        if (z != 0) return z;
    }
    /* d_bias: stored (or, shared, added) by the dK/dV kernel into zeros; deterministic and
     * shared, written whole by its own pass at the end. */
    const bool var = scores_vary(a);
    const bool dbias_pass = g->d_bias && g->deterministic && dbias_shared(*g);
    const int dbias_mode = !g->d_bias || dbias_pass ? kDbiasNone
                           : dbias_shared(*g)       ? kDbiasAtomic
                                                    : kDbiasStore;
    const int64_t dbias_elems =
        (int64_t)g->d_bias_batch * g->d_bias_heads * a.seq_q * (int64_t)a.seq_kv;
    if (dbias_mode != kDbiasNone && dbias_elems > 0) {
        zero_rows_kernel<<<grid_for(dbias_elems, kThreads), kThreads, 0, st>>>(
            g->d_bias, 0, 0, 0, 1, 1, dbias_elems, dbias_elems);
        if ((e = gpuGetLastError()) != gpuSuccess) return (int)e;
    }
    if (rows > 0) {
        flash_bwd_prep_kernel<<<grid_for(rows, kThreads / 32), kThreads, 0, st>>>(*g, delta,
                                                                                  dq_acc);
        if ((e = gpuGetLastError()) != gpuSuccess) return (int)e;
    }
    if (a.seq_kv > 0 && a.batch > 0) {
        auto dkdv =
            serve
                ? (var ? flash_bwd_dkdv_kernel<true, true> : flash_bwd_dkdv_kernel<true, false>)
                : (var ? flash_bwd_dkdv_kernel<false, true> : flash_bwd_dkdv_kernel<false, false>);
        e = gpuFuncSetAttribute(dkdv, 0, (int)smem);
        if (e != gpuSuccess) return (int)e;
        const dim3 grid((a.seq_kv + pl.bk - 1) / pl.bk, a.heads_kv, a.batch);
        dkdv<<<grid, kThreads, smem, st>>>(*g, pl, delta, dq_acc, dbias_mode);
        if ((e = gpuGetLastError()) != gpuSuccess) return (int)e;
    }
    if (rows > 0 && g->deterministic && a.seq_q > 0 && a.batch > 0) {
        auto dq =
            serve ? (var ? flash_bwd_dq_kernel<true, true> : flash_bwd_dq_kernel<true, false>)
                  : (var ? flash_bwd_dq_kernel<false, true> : flash_bwd_dq_kernel<false, false>);
        e = gpuFuncSetAttribute(dq, 0, (int)smem);
        if (e != gpuSuccess) return (int)e;
        const dim3 grid((a.seq_q + pl.bq - 1) / pl.bq, a.heads_q, a.batch);
        dq<<<grid, kThreads, smem, st>>>(*g, pl, delta);
    } else if (rows > 0 && !g->deterministic) {
        flash_bwd_dq_store_kernel<<<grid_for(rows * a.head_dim, kThreads), kThreads, 0, st>>>(
            *g, dq_acc);
    }
    if ((e = gpuGetLastError()) != gpuSuccess) return (int)e;
    if (dbias_pass && dbias_elems > 0) {
        const int z = pa_gpu_flash_bwd_dbias_pass(g, delta, st);
        if (z != 0) return z;
    }
    if (g->d_sinks) return pa_gpu_bwd_dsinks(g, delta, stream);
    return 0;
}
