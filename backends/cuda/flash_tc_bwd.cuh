/*
 * The tensor-core flash backward's tile configurations (traits), its head-dim table, its
 * parameters, the device helpers and tile walks its dK/dV and dQ kernels share, and the
 * launchers each kernel's file defines (flash_tc_bwd.cu explains the algorithm).
 */
#ifndef POLYATTN_CUDA_FLASH_TC_BWD_CUH
#define POLYATTN_CUDA_FLASH_TC_BWD_CUH

#include "flash_tc_bwd.h"
#include "flash_split.cuh"
#include "gpu_variants.h"
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

/* dK/dV kernel, configuration F (FA2's 2-D warp grids; flash_tc_bwd_dkdv_f.cu): 8 warps,
 * 128 keys, 64-query steps (two stages), P and dS of a step in shared memory. */
template <int HEAD_DIM>
struct BwdFTraits {
    static constexpr int kThreads = 256; /* 8 warps */
    static constexpr int kBlockN = 128;
    static constexpr int kBlockM = 64;
    static constexpr int kStride = HEAD_DIM + 8;
    static constexpr int kPStride = kBlockN + 8; /* P and dS rows [query][key] */
    static constexpr size_t kSmem = (size_t)(2 * kBlockN + 4 * kBlockM) * kStride * 2 +
                                    (size_t)2 * kBlockM * kPStride * 2 + 4 * kBlockM * 4;
    static_assert(HEAD_DIM % 64 == 0, "phase 3 gives each warp HEAD_DIM/4 columns");
};

/* The family's head dims and the dK/dV configurations each has, the one table that
 * generates dispatch, "supported?", the shared-memory sizes and the kernels' instances:
 * X(head_dim, default tile, tiles).  B by default at head dim 64 and F at 128 (both issue
 * ~0.45 ldmatrix.x4 per mma; F at head dim 64 spends ~0.55, its dQ tile being small); A and,
 * at 64, B stay for comparisons (POLYATTN_FORCE=cuda.bwd_tile=...). */
#define PA_FLASH_TC_BWD_HEAD_DIMS(X) X(64, 'b', "abf") X(128, 'f', "af")

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

/* The score variants the kernels take (window, softcap, ALiBi; sinks act through the LSE and
 * d_sinks only; never bias or attn_mask): kVar instances recompute each score as the forward
 * does (flash_tc_tile.cuh's kVarScore) and mask keys outside [lo, hi) on both sides. */
struct BwdScore {
    float sl2, scale, cap, inv_cap, slope;
};
__device__ __forceinline__ BwdScore bwd_score(const pa_gpu_args &a, int batch, int head)
{
    BwdScore v;
    v.scale = a.scale;
    v.sl2 = a.scale * kLog2e;
    v.cap = a.softcap;
    v.inv_cap = a.softcap > 0.f ? 1.f / a.softcap : 0.f;
    v.slope = pa_gpu_alibi_slope(a, batch, head);
    return v;
}

/* P and dS = P (dP - delta) of one score s (Q.K, unscaled) of query `query` and key `key`;
 * masked: P = 0.  kVar: s is scaled, capped and given its ALiBi term as in the forward, and
 * dS (with respect to the scaled score) carries softcap's 1 - tanh^2. */
template <bool kVar>
__device__ __forceinline__ void bwd_p_ds(const BwdScore &v, const pa_gpu_args &a, float s, float dp,
                                         float lse2, float delta, int query, int key, bool masked,
                                         float &p, float &ds)
{
    if constexpr (!kVar) {
        p = masked ? 0.f : fast_exp2(fmaf(s, v.sl2, -lse2));
        ds = p * (dp - delta);
    } else {
        float x = pa_gpu_score_range(s * v.scale), dcap = 1.f;
        if (v.cap > 0.f) {
            const float t = tanh_fast(x * v.inv_cap);
            x = v.cap * t;
            dcap = 1.f - t * t;
        }
        const int dist = pa_gpu_diagonal(a, query) - key;
        x = fmaf(-v.slope, (float)(dist < 0 ? -dist : dist), x);
        /* a query tile's rows past seq_q have zero Q, dO and lse2: P must be 0 there, not
         * exp(ALiBi term), which a negative slope could take to inf (inf x 0 in dV) */
        p = masked || query >= a.seq_q ? 0.f : fast_exp2(fmaf(x, kLog2e, -lse2));
        ds = p * (dp - delta) * dcap;
    }
}

/* Whether key `key` is outside query `query`'s visible keys: [lo, hi) under a window (kVar),
 * else [0, the causal count) as the plain instances need (fewer registers). */
template <bool kVar>
__device__ __forceinline__ bool bwd_masked(const pa_gpu_args &a, int query, int key)
{
    if constexpr (!kVar) return key >= pa_flash_visible(a, query);
    int lo, hi;
    pa_gpu_visible_range(a, query, lo, hi);
    return key < lo || key >= hi;
}

/* Whether every query of [q0, q_last] sees every key of [key0, key0 + bn): no masking. */
template <bool kVar>
__device__ __forceinline__ bool bwd_tile_inside(const pa_gpu_args &a, int q0, int q_last, int key0,
                                                int bn)
{
    if constexpr (!kVar) return pa_flash_visible(a, q0) >= key0 + bn;
    int lo0, hi0, lo1, hi1;
    pa_gpu_visible_range(a, q0, lo0, hi0);
    pa_gpu_visible_range(a, q_last, lo1, hi1);
    return lo1 <= key0 && hi0 >= key0 + bn; /* lo and hi never decrease along the queries */
}

/* The queries [first, end) that see a key of [key0, key0 + bn) (end <= first: none), from the
 * causal mask and the window; 64-bit sums: a window side may be near INT_MAX. */
__host__ __device__ __forceinline__ void bwd_queries_of_keys(const pa_gpu_args &a, int key0, int bn,
                                                             int &first, int &end)
{
    const int64_t off = a.mask == 1 ? 0 : (int64_t)a.seq_kv - a.seq_q; /* d(i) = i + off */
    int64_t right = -1;                                                /* -1: unbounded */
    if (a.mask != 0) right = 0;
    if (a.has_window && a.window_right >= 0 && (right < 0 || a.window_right < right))
        right = a.window_right;
    int64_t f = right < 0 ? 0 : (int64_t)key0 - off - right; /* d(i) + right >= key0 */
    int64_t e = a.seq_q;
    const int64_t key_end = (int64_t)key0 + bn < a.seq_kv ? (int64_t)key0 + bn : a.seq_kv;
    if (a.has_window && a.window_left >= 0) /* d(i) - left < the tile's last key + 1 */
        e = key_end + a.window_left - off;
    f = f < 0 ? 0 : f;
    e = e > a.seq_q ? a.seq_q : e;
    first = (int)(f > a.seq_q ? a.seq_q : f);
    end = (int)(e < first ? first : e);
}

/* The key tiles [first, end) of bn keys that rows [row0, row_last] see (end <= first: none):
 * from the first row's first visible key to the last row's last (lo and hi never decrease
 * along the queries). */
__host__ __device__ __forceinline__ void bwd_key_tiles(const pa_gpu_args &a, int row0, int row_last,
                                                       int bn, int &first, int &end)
{
    int lo0, hi0, lo1, hi1;
    pa_gpu_visible_range(a, row0, lo0, hi0);
    pa_gpu_visible_range(a, row_last, lo1, hi1);
    first = lo0 / bn;
    end = hi1 > lo0 ? (hi1 + bn - 1) / bn : first;
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

/* The query stages a dK/dV block (bn keys from key0 of KV head head_kv) walks: for each query
 * head of the group, the query tiles of BM rows with a query that sees one of its keys
 * (bwd_queries_of_keys; none when no query does); stage `it` is query head hq(it), rows from
 * q0(it).
 * load(it, st) starts stage it's Q, dO, lse2 and delta into buffer st (cp.async). */
template <int D, int S, int NT, int BM, typename T>
struct DkdvQueries {
    const BwdParams &bp;
    int batch, head0, m_first, per_head, n_iter;
    T *sq, *sdo;          /* [stage][BM][S] */
    float *slse, *sdelta; /* [stage][BM] */
    __device__ DkdvQueries(const BwdParams &p, int batch_, int head_kv, int key0, int bn, T *q,
                           T *d_o, float *lse, float *delta)
        : bp(p), batch(batch_), sq(q), sdo(d_o), slse(lse), sdelta(delta)
    {
        const pa_gpu_args &a = p.f;
        const int group = a.heads_q / a.heads_kv;
        int q_first, q_end;
        bwd_queries_of_keys(a, key0, bn, q_first, q_end);
        head0 = head_kv * group;
        m_first = q_first / BM;
        per_head = q_first < q_end ? (q_end + BM - 1) / BM - m_first : 0;
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

/* The launchers, each defined in its kernel's file: set the kernel's shared-memory limit
 * and enqueue it; return the launch's error.  Instances: the table's head dims (Tr: BwdA
 * at each, and BwdB<64>), T = __half and __nv_bfloat16, kVar (BwdScore) false and true. */
/* configuration A or B (flash_tc_bwd_dkdv.cu) */
template <typename Tr, typename T, bool kVar>
cudaError_t launch_dkdv(const BwdParams &bp, cudaStream_t stream);
/* configuration F (flash_tc_bwd_dkdv_f.cu) */
template <int HEAD_DIM, typename T, bool kVar>
cudaError_t launch_dkdv_f(const BwdParams &bp, cudaStream_t stream);
/* deterministic dQ into dq (q's dtype and strides; flash_tc_bwd_dq.cu) */
template <int HEAD_DIM, typename T, bool kVar>
cudaError_t launch_dq(const BwdParams &bp, void *dq, cudaStream_t stream);

} // namespace pa_tc_bwd

#endif
