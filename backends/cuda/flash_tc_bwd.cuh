/*
 * The tensor-core flash backward's tile configurations (traits), its parameters, the prep
 * kernel (delta and lse2 rows) and the tile walks its dK/dV and dQ kernels share
 * (flash_tc_bwd.cu).
 */
#ifndef POLYATTN_CUDA_FLASH_TC_BWD_CUH
#define POLYATTN_CUDA_FLASH_TC_BWD_CUH

#include "flash_tc_bwd.h"
#include "flash_split.cuh"
#include "tc_common.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace pa_tc_bwd
{

using namespace pa_tc;

/* dK/dV kernel tiles: WARPS warps x MT*16 keys, query tiles of BM (two stages).  A warp
 * owning MT m16 key tiles reuses every Q/dO fragment it reads from shared memory for MT
 * tiles: shared-memory bandwidth, not the tensor cores, limits one m16 tile per warp.
 * Head dim 128 cannot: 32 keys x 128 columns of dK and dV are 256 f32 registers. */
template <int HEAD_DIM, int MT, int WARPS, int BM>
struct BwdTraits {
    static constexpr int kMTiles = MT;
    static constexpr int kWarps = WARPS;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kBlockN = 16 * MT * kWarps;       /* keys per block */
    static constexpr int kBlockM = BM;                     /* queries per step */
    static constexpr int kStride = HEAD_DIM + 8;           /* padded 16-bit rows (elements) */
    static constexpr int kSStride = kBlockM + 8;           /* dS^T rows [key][query] */
    static constexpr int kRowGroups = kBlockM / 16;        /* dQ: warps over rows */
    static constexpr int kColGroups = kWarps / kRowGroups; /* ... and head-dim columns */
    static constexpr int kColsPerWarp = HEAD_DIM / kColGroups;
    static constexpr int kColChunk = kColsPerWarp > 64 ? 64 : kColsPerWarp;
    static constexpr int kMinBlocks = WARPS == 4 ? 2 : 1;
    static constexpr size_t kSmem = (size_t)(2 * kBlockN + 4 * kBlockM) * kStride * 2 +
                                    (size_t)kBlockN * kSStride * 2 + 4 * kBlockM * 4;
    static_assert(kWarps % kRowGroups == 0, "warps cover the dQ rows evenly");
    static_assert(HEAD_DIM % 16 == 0 && kColsPerWarp % 16 == 0 && kColsPerWarp % kColChunk == 0,
                  "mma tiles are 16 wide");
};
/* Configurations: A = 8 warps x 16 keys, 64-query steps; B = 4 warps x 32 keys, 32-query
 * steps (head dim 64 only). */
template <int HEAD_DIM>
using BwdA = BwdTraits<HEAD_DIM, 1, 8, 64>;
template <int HEAD_DIM>
using BwdB = BwdTraits<HEAD_DIM, 2, 4, 32>;

/* dQ kernel (deterministic mode): 4 warps x 16 queries, key tiles of 64 (two stages). */
template <int HEAD_DIM>
struct BwdDqTraits {
    static constexpr int kWarps = 4;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kBlockM = 16 * kWarps;
    static constexpr int kBlockN = 64;
    static constexpr int kStride = HEAD_DIM + 8;
    static constexpr size_t kSmem = (size_t)(2 * kBlockM + 4 * kBlockN) * kStride * 2;
};

/* 4-byte async copy (lse/delta rows); src_bytes 0 writes a zero. */
__device__ __forceinline__ void cp_async4(void *dst, const void *src, bool valid)
{
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 4 : 0)
                 : "memory");
}
/* 2^x (ex2.approx: -inf gives 0, results below 2^-126 flush to 0) */
__device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
/* rows x D tile from global (row stride in elements) into padded shared rows. */
template <int D, int STRIDE, int THREADS, int ROWS, typename T>
__device__ __forceinline__ void load_tile(T *dst, const T *src, int64_t row_stride, int row0,
                                          int nrows)
{
    load_rows<ROWS, D / 8, STRIDE, THREADS>(dst, src, row_stride, row0, nrows);
}

__device__ __forceinline__ void atomic_add2(float *p, float x, float y)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float2 *>(p), make_float2(x, y));
#else
    atomicAdd(p, x);
    atomicAdd(p + 1, y);
#endif
}

/* Pre-pass: delta[row] = rowsum(dO * O) and lse2[row] = lse * log2(e) (+inf where the
 * row is fully masked, so P = exp2(s - lse2) = 0 there).  8 lanes a row, 16-byte loads. */
template <int HEAD_DIM, typename T>
__global__ void flash_bwd_prep_kernel(pa_gpu_args a, const void *d_o, float *delta, float *lse2)
{
    const int64_t rows = (int64_t)a.batch * a.heads_q * a.seq_q;
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 8) + threadIdx.x / 8;
    const int sub = threadIdx.x % 8;
    float acc = 0.f;
    if (row < rows) {
        const int64_t i = row % a.seq_q, h = (row / a.seq_q) % a.heads_q,
                      b = row / ((int64_t)a.seq_q * a.heads_q);
        const int64_t base = b * a.o_stride[0] + h * a.o_stride[1] + i * a.o_stride[2];
        const T *o = static_cast<const T *>(a.o) + base;
        const T *g = static_cast<const T *>(d_o) + base;
#pragma unroll
        for (int c = sub * 8; c < HEAD_DIM; c += 64) {
            const uint4 x = *reinterpret_cast<const uint4 *>(o + c);
            const uint4 y = *reinterpret_cast<const uint4 *>(g + c);
            const uint32_t xs[4] = {x.x, x.y, x.z, x.w}, ys[4] = {y.x, y.y, y.z, y.w};
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float2 fx = Dt<T>::unpack(xs[e]), fy = Dt<T>::unpack(ys[e]);
                acc = fmaf(fx.x, fy.x, fmaf(fx.y, fy.y, acc));
            }
        }
    }
    acc += __shfl_xor_sync(0xffffffffu, acc, 1);
    acc += __shfl_xor_sync(0xffffffffu, acc, 2);
    acc += __shfl_xor_sync(0xffffffffu, acc, 4);
    if (row < rows && sub == 0) {
        delta[row] = acc;
        const float l = a.lse[row];
        lse2[row] = l == -INFINITY ? INFINITY : l * kLog2e;
    }
}

struct BwdParams {
    pa_gpu_args f;      /* q, k, v, o, lse, dims, strides, scale */
    const void *d_o;    /* o's strides */
    void *dk, *dv;      /* k's and v's strides */
    const float *delta; /* f32 [batch, heads_q, seq_q] */
    const float *lse2;  /* lse * log2(e), +inf on fully masked rows; same shape */
    float *dq_acc;      /* f32 [batch, heads_q, seq_q, head_dim]; NULL: no dQ here */
};

/* Q, dO, lse2 and delta of query rows [q0, q0 + BM) of head hq into one stage.  Rows past
 * seq_q load as zeros: their P = 1 meets zero Q and dO rows and their dS is 0, so they add
 * nothing, and their dQ is never stored. */
template <int D, int S, int NT, int BM, typename T>
__device__ __forceinline__ void load_query_stage(const BwdParams &bp, int batch, int hq, int q0,
                                                 T *sq, T *sdo, float *slse, float *sdelta)
{
    const pa_gpu_args &a = bp.f;
    const T *q = static_cast<const T *>(a.q) + batch * a.q_stride[0] + hq * a.q_stride[1];
    const T *dO = static_cast<const T *>(bp.d_o) + batch * a.o_stride[0] + hq * a.o_stride[1];
    load_tile<D, S, NT, BM>(sq, q, a.q_stride[2], q0, a.seq_q);
    load_tile<D, S, NT, BM>(sdo, dO, a.o_stride[2], q0, a.seq_q);
    const int64_t rowbase = ((int64_t)batch * a.heads_q + hq) * a.seq_q + q0;
    for (int i = threadIdx.x; i < 2 * BM; i += NT) {
        const int r = i % BM;
        const bool valid = q0 + r < a.seq_q;
        const float *src = (i < BM ? bp.lse2 : bp.delta) + (valid ? rowbase + r : 0);
        cp_async4((i < BM ? slse : sdelta) + r, src, valid);
    }
}

/* The query stages a dK/dV block (key tile key0 of KV head head_kv) walks: for each query
 * head of the group, the query tiles of BM rows that see key0, from the first one to the
 * end (none when no query sees it); stage `it` is query head hq(it), rows from q0(it).
 * load(it, st) starts stage it's Q, dO, lse2 and delta into buffer st (cp.async). */
template <int D, int S, int NT, int BM, typename T>
struct DkdvQueries {
    const BwdParams &bp;
    int batch, head0, m_first, per_head, n_iter;
    T *sq, *sdo;          /* [stage][BM][S] */
    float *slse, *sdelta; /* [stage][BM] */
    __device__ DkdvQueries(const BwdParams &p, int batch_, int head_kv, int key0, T *q, T *d_o,
                           float *lse, float *delta)
        : bp(p), batch(batch_), sq(q), sdo(d_o), slse(lse), sdelta(delta)
    {
        const pa_gpu_args &a = p.f;
        const int group = a.heads_q / a.heads_kv;
        const int off = a.mask == 2 ? a.seq_kv - a.seq_q : 0;
        const int q_first = a.mask ? max(0, key0 - off) : 0; /* the first query that sees key0 */
        head0 = head_kv * group;
        m_first = q_first / BM;
        per_head = q_first < a.seq_q ? (a.seq_q + BM - 1) / BM - m_first : 0;
        n_iter = group * per_head;
    }
    __device__ int hq(int it) const { return head0 + it / per_head; }
    __device__ int q0(int it) const { return (m_first + it % per_head) * BM; }
    __device__ void load(int it, int st) const
    {
        load_query_stage<D, S, NT, BM>(bp, batch, hq(it), q0(it), sq + st * BM * S,
                                       sdo + st * BM * S, slse + st * BM, sdelta + st * BM);
    }
};

/* The start of a dK/dV block: its K and V tiles (BN keys from key0) and the first query
 * stage in flight, one cp.async group. */
template <int D, int S, int NT, int BN, typename W, typename T>
__device__ __forceinline__ void dkdv_begin(const BwdParams &bp, const W &walk, int head_kv,
                                           int key0, T *sk, T *sv)
{
    const pa_gpu_args &a = bp.f;
    const int batch = walk.batch;
    const T *k = static_cast<const T *>(a.k) + batch * a.k_stride[0] + head_kv * a.k_stride[1];
    const T *v = static_cast<const T *>(a.v) + batch * a.v_stride[0] + head_kv * a.v_stride[1];
    load_tile<D, S, NT, BN>(sk, k, a.k_stride[2], key0, a.seq_kv);
    load_tile<D, S, NT, BN>(sv, v, a.v_stride[2], key0, a.seq_kv);
    if (walk.n_iter > 0) walk.load(0, 0);
    cp_async_commit();
}

} // namespace pa_tc_bwd

#endif
