/*
 * FlashAttention-2-style backward on NVIDIA tensor cores (sm_80+, f16/bf16 storage, f32
 * accumulation), head dims 64 and 128.  Conventions (fragment layouts, ldmatrix
 * addressing, padded shared rows, exp2 domain) follow the forward in flash_tc.cu.
 *
 * Kernels, in launch order:
 *   1. pa_gpu_bwd_rowdot (backends/gpu): delta[row] = rowsum(dO * O).
 *   2. flash_bwd_dkdv_tc_kernel: one block per (key tile, kv head, batch).  Warp w owns 16
 *      keys; dK and dV of those keys stay in registers while the block walks the query
 *      heads of the GQA group (in order) and their query tiles, each double-buffered with
 *      cp.async.  Per query tile (BM queries) a warp forms, all transposed so keys are the
 *      mma rows:  S^T = K Q^T,  dP^T = V dO^T  (A from K/V rows, B from Q/dO rows),
 *      P^T = exp2(S^T * scale*log2e - lse*log2e),  dS^T = P^T (dP^T - delta),
 *      dV += P^T dO,  dK += dS^T Q  (the accumulators are the A operands, as P in the
 *      forward; B via ldmatrix.trans of Q/dO rows).  Unless deterministic, dS^T goes to
 *      shared memory and the block forms dQ_partial = dS K for the tile (warps split rows
 *      and head-dim columns), added to an f32 workspace with atomics.
 *   3. flash_bwd_dq_convert_kernel: dq = scale * accumulator, in dq's dtype and strides.
 *   Deterministic: instead of 2's atomics, flash_bwd_dq_tc_kernel, one block per (query
 *      tile, query head, batch), walks the key tiles in order and recomputes S, P, dP, dS
 *      to form dQ = scale dS K in registers (no atomics: bitwise reproducible).
 * Masking: lse = -inf (a fully masked row), and rows past seq_q, are stored as +inf so
 * P = exp2(x - inf) = 0 without a branch; keys past a row's visible count are zeroed in
 * the tiles that straddle the boundary; query tiles that see none of the key tile are
 * skipped (causal).
 *
 * Cost (FA2 sweep, per (batch, head), N = seq, D = head_dim): 5 GEMM-shaped products of
 * 2 N^2 D FLOPs = 10 N^2 D = 2.5x the forward's 4 N^2 D (halved when causal).  Memory:
 * Q, K, V, O, dO read and dQ, dK, dV written once from HBM (~8 N D 2-byte values) plus
 * the dQ accumulator: N/128 key tiles each add BM x D f32 per query tile, i.e. N/128 * N D
 * f32 atomics in L2 (for N = 4096, D = 128: 32 x 2 MB per head): L2 atomics, not HBM,
 * are the second limit after the tensor cores.  Expected: the arithmetic is ~12 mma per
 * ldmatrix-ed B fragment pair per warp (one m16 tile a warp), so shared-memory bandwidth
 * caps this design near 40-50% of the mma peak, i.e. roughly 200-300 TFLOP/s on an H100
 * at long sequences (PyTorch's FA2 backward reaches a similar range).
 */
#include "flash_tc_bwd.h"

#include "../gpu/gpu_backward.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace
{

constexpr float kLog2e = 1.4426950408889634f;

/* dK/dV kernel tiles: 8 warps x 16 keys, query tiles of 64 (two stages). */
template <int HEAD_DIM>
struct BwdTraits {
    static constexpr int kWarps = 8;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kBlockN = 16 * kWarps; /* keys per block */
    static constexpr int kBlockM = 64;          /* queries per step */
    static constexpr int kStride = HEAD_DIM + 8;  /* padded 16-bit rows (elements) */
    static constexpr int kSStride = kBlockM + 8;  /* dS^T rows [key][query] */
    static constexpr int kRowGroups = kBlockM / 16;           /* dQ: warps over rows */
    static constexpr int kColGroups = kWarps / kRowGroups;    /* ... and head-dim columns */
    static constexpr int kColsPerWarp = HEAD_DIM / kColGroups;
    static constexpr int kColChunk = kColsPerWarp > 64 ? 64 : kColsPerWarp;
    static constexpr size_t kSmem = (size_t)(2 * kBlockN + 4 * kBlockM) * kStride * 2 +
                                    (size_t)kBlockN * kSStride * 2 + 4 * kBlockM * 4;
    static_assert(HEAD_DIM % 16 == 0 && kColsPerWarp % 16 == 0 && kColsPerWarp % kColChunk == 0,
                  "mma tiles are 16 wide");
};

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

template <typename T>
struct Dt;
template <>
struct Dt<__half> {
    static __device__ __forceinline__ uint32_t pack(float x, float y)
    {
        __half2 h = __floats2half2_rn(x, y);
        return *reinterpret_cast<uint32_t *>(&h);
    }
    static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0,
                                               uint32_t b1)
    {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ void store(__half *p, float x) { *p = __float2half_rn(x); }
};
template <>
struct Dt<__nv_bfloat16> {
    static __device__ __forceinline__ uint32_t pack(float x, float y)
    {
        __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
        return *reinterpret_cast<uint32_t *>(&h);
    }
    static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0,
                                               uint32_t b1)
    {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ void store(__nv_bfloat16 *p, float x)
    {
        *p = __float2bfloat16_rn(x);
    }
};

__device__ __forceinline__ uint32_t smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}
/* 16-byte async copy; src_bytes 0 fills the destination with zeros (rows past the end). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
__device__ __forceinline__ void cp_async_wait_all()
{
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

__device__ __forceinline__ int visible_keys(const pa_gpu_args &a, int query)
{
    int n = a.seq_kv;
    if (a.mask == 1)
        n = query + 1;
    else if (a.mask == 2)
        n = query + 1 + (a.seq_kv - a.seq_q);
    return n < 0 ? 0 : (n > a.seq_kv ? a.seq_kv : n);
}

/* rows x D tile from global (row stride in elements) into padded shared rows. */
template <int D, int STRIDE, int THREADS, int ROWS, typename T>
__device__ __forceinline__ void load_tile(T *dst, const T *src, int64_t row_stride, int row0,
                                          int nrows)
{
    constexpr int kChunks = D / 8;
    for (int i = threadIdx.x; i < ROWS * kChunks; i += THREADS) {
        const int r = i / kChunks, c = i % kChunks;
        const bool valid = row0 + r < nrows;
        const T *g = valid ? src + (int64_t)(row0 + r) * row_stride + c * 8 : src;
        cp_async16(dst + r * STRIDE + c * 8, g, valid);
    }
}

/* lse in the exp2 domain; +inf for fully masked rows and rows past the end (P = 0). */
__device__ __forceinline__ float lse2_of(const float *lse, int64_t idx, bool valid)
{
    if (!valid) return INFINITY;
    const float l = lse[idx];
    return l == -INFINITY ? INFINITY : l * kLog2e;
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

struct BwdParams {
    pa_gpu_args f;     /* q, k, v, o, lse, dims, strides, scale */
    const void *d_o;   /* o's strides */
    void *dk, *dv;     /* k's and v's strides */
    const float *delta;
    float *dq_acc;     /* f32 [batch, heads_q, seq_q, head_dim]; NULL: no dQ here */
};

template <int HEAD_DIM, typename T>
__global__ void __launch_bounds__(BwdTraits<HEAD_DIM>::kThreads, 1)
    flash_bwd_dkdv_tc_kernel(BwdParams bp)
{
    using Tr = BwdTraits<HEAD_DIM>;
    constexpr int D = HEAD_DIM, BM = Tr::kBlockM, BN = Tr::kBlockN, S = Tr::kStride;
    constexpr int SS = Tr::kSStride, NT = Tr::kThreads;
    const pa_gpu_args &a = bp.f;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sk = reinterpret_cast<T *>(smem_raw);
    T *sv = sk + BN * S;
    T *sq = sv + BN * S;     /* [stage][BM][S] */
    T *sdo = sq + 2 * BM * S; /* [stage][BM][S] */
    T *sds = sdo + 2 * BM * S; /* [BN][SS]: dS^T of the current tile */
    float *slse = reinterpret_cast<float *>(sds + BN * SS); /* [stage][BM] */
    float *sdelta = slse + 2 * BM;                          /* [stage][BM] */

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = lane / 4, t4 = lane % 4, idx = lane / 8;
    const int head_kv = blockIdx.y, batch = blockIdx.z;
    const int group = a.heads_q / a.heads_kv;
    const int key0 = blockIdx.x * BN;
    const T *k = static_cast<const T *>(a.k) + batch * a.k_stride[0] + head_kv * a.k_stride[1];
    const T *v = static_cast<const T *>(a.v) + batch * a.v_stride[0] + head_kv * a.v_stride[1];

    /* The first query that sees key0; earlier query tiles see none of this key tile. */
    const int off = a.mask == 2 ? a.seq_kv - a.seq_q : 0;
    const int q_first = a.mask ? max(0, key0 - off) : 0;
    const int m_first = q_first / BM;
    const int m_tiles = (a.seq_q + BM - 1) / BM;
    const int per_head = q_first < a.seq_q ? m_tiles - m_first : 0;
    const int n_iter = group * per_head;

    auto load_stage = [&](int it, int st) {
        const int hq = head_kv * group + it / per_head;
        const int q0 = (m_first + it % per_head) * BM;
        const T *q = static_cast<const T *>(a.q) + batch * a.q_stride[0] + hq * a.q_stride[1];
        const T *dO =
            static_cast<const T *>(bp.d_o) + batch * a.o_stride[0] + hq * a.o_stride[1];
        load_tile<D, S, NT, BM>(sq + st * BM * S, q, a.q_stride[2], q0, a.seq_q);
        load_tile<D, S, NT, BM>(sdo + st * BM * S, dO, a.o_stride[2], q0, a.seq_q);
        const int64_t rowbase = ((int64_t)batch * a.heads_q + hq) * a.seq_q;
        for (int i = tid; i < 2 * BM; i += NT) {
            const int r = i % BM, row = q0 + r;
            if (i < BM)
                slse[st * BM + r] = lse2_of(a.lse, rowbase + row, row < a.seq_q);
            else
                sdelta[st * BM + r] = row < a.seq_q ? bp.delta[rowbase + row] : 0.f;
        }
    };

    load_tile<D, S, NT, BN>(sk, k, a.k_stride[2], key0, a.seq_kv);
    load_tile<D, S, NT, BN>(sv, v, a.v_stride[2], key0, a.seq_kv);
    if (n_iter > 0) load_stage(0, 0);
    cp_async_commit();

    const int wrow = warp * 16; /* this warp's first key in the tile */
    const float sl2 = a.scale * kLog2e;
    float acc_dk[D / 8][4], acc_dv[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e)
            acc_dk[j][e] = acc_dv[j][e] = 0.f;

    for (int it = 0; it < n_iter; ++it) {
        cp_async_wait_all();
        __syncthreads(); /* stage it landed; everyone is done with stage it+1 and sds */
        if (it + 1 < n_iter) load_stage(it + 1, (it + 1) & 1);
        cp_async_commit();
        const int st = it & 1;
        const T *qs = sq + st * BM * S, *dos = sdo + st * BM * S;
        const float *lse2 = slse + st * BM, *dl = sdelta + st * BM;
        const int hq = head_kv * group + it / per_head;
        const int q0 = (m_first + it % per_head) * BM;

        /* S^T = K Q^T and dP^T = V dO^T for this warp's 16 keys x BM queries */
        float acc_s[BM / 8][4], acc_dp[BM / 8][4];
#pragma unroll
        for (int j = 0; j < BM / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                acc_s[j][e] = acc_dp[j][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            uint32_t ak[4], av[4];
            ldmatrix_x4(ak, sk + (wrow + (lane % 16)) * S + kk * 16 + (lane / 16) * 8);
            ldmatrix_x4(av, sv + (wrow + (lane % 16)) * S + kk * 16 + (lane / 16) * 8);
#pragma unroll
            for (int p = 0; p < BM / 16; ++p) {
                uint32_t bq[4], bd[4];
                const int off_b = (p * 16 + (idx >> 1) * 8 + lane % 8) * S + kk * 16 + (idx & 1) * 8;
                ldmatrix_x4(bq, qs + off_b);
                ldmatrix_x4(bd, dos + off_b);
                Dt<T>::mma(acc_s[2 * p], ak, bq[0], bq[1]);
                Dt<T>::mma(acc_s[2 * p + 1], ak, bq[2], bq[3]);
                Dt<T>::mma(acc_dp[2 * p], av, bd[0], bd[1]);
                Dt<T>::mma(acc_dp[2 * p + 1], av, bd[2], bd[3]);
            }
        }

        /* P^T and dS^T in place (rows: keys, columns: queries) */
        const bool need_mask = visible_keys(a, q0) < key0 + BN;
#pragma unroll
        for (int j = 0; j < BM / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int qc = j * 8 + 2 * t4 + (e & 1);
                float p = exp2f(fmaf(acc_s[j][e], sl2, -lse2[qc]));
                if (need_mask && key0 + wrow + g + 8 * (e >> 1) >= visible_keys(a, q0 + qc))
                    p = 0.f;
                acc_dp[j][e] = p * (acc_dp[j][e] - dl[qc]);
                acc_s[j][e] = p;
            }

        /* dV += P^T dO and dK += dS^T Q (k runs over the tile's queries) */
#pragma unroll
        for (int kk = 0; kk < BM / 16; ++kk) {
            uint32_t ap[4], as[4];
            ap[0] = Dt<T>::pack(acc_s[2 * kk][0], acc_s[2 * kk][1]);
            ap[1] = Dt<T>::pack(acc_s[2 * kk][2], acc_s[2 * kk][3]);
            ap[2] = Dt<T>::pack(acc_s[2 * kk + 1][0], acc_s[2 * kk + 1][1]);
            ap[3] = Dt<T>::pack(acc_s[2 * kk + 1][2], acc_s[2 * kk + 1][3]);
            as[0] = Dt<T>::pack(acc_dp[2 * kk][0], acc_dp[2 * kk][1]);
            as[1] = Dt<T>::pack(acc_dp[2 * kk][2], acc_dp[2 * kk][3]);
            as[2] = Dt<T>::pack(acc_dp[2 * kk + 1][0], acc_dp[2 * kk + 1][1]);
            as[3] = Dt<T>::pack(acc_dp[2 * kk + 1][2], acc_dp[2 * kk + 1][3]);
            if (bp.dq_acc) { /* keep dS^T for the block's dQ product */
                *reinterpret_cast<uint32_t *>(sds + (wrow + g) * SS + kk * 16 + 2 * t4) = as[0];
                *reinterpret_cast<uint32_t *>(sds + (wrow + g + 8) * SS + kk * 16 + 2 * t4) = as[1];
                *reinterpret_cast<uint32_t *>(sds + (wrow + g) * SS + kk * 16 + 8 + 2 * t4) = as[2];
                *reinterpret_cast<uint32_t *>(sds + (wrow + g + 8) * SS + kk * 16 + 8 + 2 * t4) =
                    as[3];
            }
#pragma unroll
            for (int p = 0; p < D / 16; ++p) {
                uint32_t bd[4], bq[4];
                const int off_b = (kk * 16 + (idx & 1) * 8 + lane % 8) * S + p * 16 + (idx >> 1) * 8;
                ldmatrix_x4_trans(bd, dos + off_b);
                ldmatrix_x4_trans(bq, qs + off_b);
                Dt<T>::mma(acc_dv[2 * p], ap, bd[0], bd[1]);
                Dt<T>::mma(acc_dv[2 * p + 1], ap, bd[2], bd[3]);
                Dt<T>::mma(acc_dk[2 * p], as, bq[0], bq[1]);
                Dt<T>::mma(acc_dk[2 * p + 1], as, bq[2], bq[3]);
            }
        }

        if (bp.dq_acc) {
            __syncthreads(); /* dS^T of every warp is in sds */
            /* dQ_partial (BM x D) = dS K: warp -> 16 rows x kColsPerWarp columns */
            constexpr int CW = Tr::kColsPerWarp, CH = Tr::kColChunk;
            const int rg = warp % Tr::kRowGroups, cg = warp / Tr::kRowGroups;
            float *dq_rows = bp.dq_acc + (((int64_t)batch * a.heads_q + hq) * a.seq_q) * D;
#pragma unroll
            for (int c0 = 0; c0 < CW; c0 += CH) {
                float acc_q[CH / 8][4];
#pragma unroll
                for (int j = 0; j < CH / 8; ++j)
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        acc_q[j][e] = 0.f;
#pragma unroll
                for (int kk = 0; kk < BN / 16; ++kk) {
                    uint32_t af[4];
                    /* A = dS (queries x keys) from dS^T rows: transposed 8x8 loads */
                    ldmatrix_x4_trans(af, sds + (kk * 16 + (idx >> 1) * 8 + lane % 8) * SS +
                                              rg * 16 + (idx & 1) * 8);
#pragma unroll
                    for (int p = 0; p < CH / 16; ++p) {
                        uint32_t bk[4];
                        ldmatrix_x4_trans(bk, sk + (kk * 16 + (idx & 1) * 8 + lane % 8) * S +
                                                  cg * CW + c0 + p * 16 + (idx >> 1) * 8);
                        Dt<T>::mma(acc_q[2 * p], af, bk[0], bk[1]);
                        Dt<T>::mma(acc_q[2 * p + 1], af, bk[2], bk[3]);
                    }
                }
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int row = q0 + rg * 16 + g + 8 * r;
                    if (row >= a.seq_q) continue;
                    float *dst = dq_rows + (int64_t)row * D + cg * CW + c0 + 2 * t4;
#pragma unroll
                    for (int j = 0; j < CH / 8; ++j)
                        atomic_add2(dst + j * 8, acc_q[j][2 * r], acc_q[j][2 * r + 1]);
                }
            }
        }
    }
    cp_async_wait_all();

    /* dK = scale dS^T Q, dV = P^T dO for this warp's keys */
    T *dk = static_cast<T *>(bp.dk) + batch * a.k_stride[0] + head_kv * a.k_stride[1];
    T *dv = static_cast<T *>(bp.dv) + batch * a.v_stride[0] + head_kv * a.v_stride[1];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int key = key0 + wrow + g + 8 * r;
        if (key >= a.seq_kv) continue;
        T *dkr = dk + (int64_t)key * a.k_stride[2];
        T *dvr = dv + (int64_t)key * a.v_stride[2];
#pragma unroll
        for (int j = 0; j < D / 8; ++j) {
            *reinterpret_cast<uint32_t *>(dkr + j * 8 + 2 * t4) =
                Dt<T>::pack(acc_dk[j][2 * r] * a.scale, acc_dk[j][2 * r + 1] * a.scale);
            *reinterpret_cast<uint32_t *>(dvr + j * 8 + 2 * t4) =
                Dt<T>::pack(acc_dv[j][2 * r], acc_dv[j][2 * r + 1]);
        }
    }
}

/* Deterministic dQ: one block per (query tile, query head, batch), key tiles in order. */
template <int HEAD_DIM, typename T>
__global__ void __launch_bounds__(BwdDqTraits<HEAD_DIM>::kThreads, 2)
    flash_bwd_dq_tc_kernel(BwdParams bp, void *dq_out)
{
    using Tr = BwdDqTraits<HEAD_DIM>;
    constexpr int D = HEAD_DIM, BM = Tr::kBlockM, BN = Tr::kBlockN, S = Tr::kStride;
    constexpr int NT = Tr::kThreads;
    const pa_gpu_args &a = bp.f;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sq = reinterpret_cast<T *>(smem_raw);
    T *sdo = sq + BM * S;
    T *sk = sdo + BM * S; /* [stage][BN][S] */
    T *sv = sk + 2 * BN * S;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = lane / 4, t4 = lane % 4, idx = lane / 8;
    const int m_block = a.mask ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
    const int head = blockIdx.y, batch = blockIdx.z;
    const int head_kv = head / (a.heads_q / a.heads_kv);
    const T *q = static_cast<const T *>(a.q) + batch * a.q_stride[0] + head * a.q_stride[1];
    const T *dO = static_cast<const T *>(bp.d_o) + batch * a.o_stride[0] + head * a.o_stride[1];
    const T *k = static_cast<const T *>(a.k) + batch * a.k_stride[0] + head_kv * a.k_stride[1];
    const T *v = static_cast<const T *>(a.v) + batch * a.v_stride[0] + head_kv * a.v_stride[1];

    const int row0 = m_block * BM;
    const int key_end = visible_keys(a, min(row0 + BM, a.seq_q) - 1);
    const int first_vis = visible_keys(a, row0);
    const int n_tiles = (key_end + BN - 1) / BN;

    load_tile<D, S, NT, BM>(sq, q, a.q_stride[2], row0, a.seq_q);
    load_tile<D, S, NT, BM>(sdo, dO, a.o_stride[2], row0, a.seq_q);
    if (n_tiles > 0) {
        load_tile<D, S, NT, BN>(sk, k, a.k_stride[2], 0, a.seq_kv);
        load_tile<D, S, NT, BN>(sv, v, a.v_stride[2], 0, a.seq_kv);
    }
    cp_async_commit();

    const int wrow = warp * 16;
    const int64_t rowbase = ((int64_t)batch * a.heads_q + head) * a.seq_q;
    float lse2[2], dl[2];
    int vis[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = row0 + wrow + g + 8 * r;
        lse2[r] = lse2_of(a.lse, rowbase + row, row < a.seq_q);
        dl[r] = row < a.seq_q ? bp.delta[rowbase + row] : 0.f;
        vis[r] = visible_keys(a, row);
    }
    const float sl2 = a.scale * kLog2e;
    float acc_q[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e)
            acc_q[j][e] = 0.f;

    for (int nt = 0; nt < n_tiles; ++nt) {
        cp_async_wait_all();
        __syncthreads();
        if (nt + 1 < n_tiles) {
            const int st = (nt + 1) & 1;
            load_tile<D, S, NT, BN>(sk + st * BN * S, k, a.k_stride[2], (nt + 1) * BN, a.seq_kv);
            load_tile<D, S, NT, BN>(sv + st * BN * S, v, a.v_stride[2], (nt + 1) * BN, a.seq_kv);
        }
        cp_async_commit();
        const T *ks = sk + (nt & 1) * BN * S, *vs = sv + (nt & 1) * BN * S;
        const int key0 = nt * BN;

        float acc_s[BN / 8][4], acc_dp[BN / 8][4];
#pragma unroll
        for (int j = 0; j < BN / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                acc_s[j][e] = acc_dp[j][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            uint32_t aq[4], ad[4];
            ldmatrix_x4(aq, sq + (wrow + (lane % 16)) * S + kk * 16 + (lane / 16) * 8);
            ldmatrix_x4(ad, sdo + (wrow + (lane % 16)) * S + kk * 16 + (lane / 16) * 8);
#pragma unroll
            for (int p = 0; p < BN / 16; ++p) {
                uint32_t bk[4], bv[4];
                const int off_b = (p * 16 + (idx >> 1) * 8 + lane % 8) * S + kk * 16 + (idx & 1) * 8;
                ldmatrix_x4(bk, ks + off_b);
                ldmatrix_x4(bv, vs + off_b);
                Dt<T>::mma(acc_s[2 * p], aq, bk[0], bk[1]);
                Dt<T>::mma(acc_s[2 * p + 1], aq, bk[2], bk[3]);
                Dt<T>::mma(acc_dp[2 * p], ad, bv[0], bv[1]);
                Dt<T>::mma(acc_dp[2 * p + 1], ad, bv[2], bv[3]);
            }
        }
        const bool need_mask = key0 + BN > first_vis;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int r = e >> 1;
                float p = exp2f(fmaf(acc_s[j][e], sl2, -lse2[r]));
                if (need_mask && key0 + j * 8 + 2 * t4 + (e & 1) >= vis[r]) p = 0.f;
                acc_dp[j][e] = p * (acc_dp[j][e] - dl[r]);
            }
        /* dQ += dS K */
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk) {
            uint32_t as[4];
            as[0] = Dt<T>::pack(acc_dp[2 * kk][0], acc_dp[2 * kk][1]);
            as[1] = Dt<T>::pack(acc_dp[2 * kk][2], acc_dp[2 * kk][3]);
            as[2] = Dt<T>::pack(acc_dp[2 * kk + 1][0], acc_dp[2 * kk + 1][1]);
            as[3] = Dt<T>::pack(acc_dp[2 * kk + 1][2], acc_dp[2 * kk + 1][3]);
#pragma unroll
            for (int p = 0; p < D / 16; ++p) {
                uint32_t bk[4];
                ldmatrix_x4_trans(bk, ks + (kk * 16 + (idx & 1) * 8 + lane % 8) * S + p * 16 +
                                          (idx >> 1) * 8);
                Dt<T>::mma(acc_q[2 * p], as, bk[0], bk[1]);
                Dt<T>::mma(acc_q[2 * p + 1], as, bk[2], bk[3]);
            }
        }
    }
    cp_async_wait_all();

    T *dq = static_cast<T *>(dq_out) + batch * a.q_stride[0] + head * a.q_stride[1];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = row0 + wrow + g + 8 * r;
        if (row >= a.seq_q) continue;
        T *dqr = dq + (int64_t)row * a.q_stride[2];
#pragma unroll
        for (int j = 0; j < D / 8; ++j)
            *reinterpret_cast<uint32_t *>(dqr + j * 8 + 2 * t4) =
                Dt<T>::pack(acc_q[j][2 * r] * a.scale, acc_q[j][2 * r + 1] * a.scale);
    }
}

/* dq (dtype, q strides) = scale * accumulator (f32 contiguous); two elements a thread. */
template <typename T>
__global__ void flash_bwd_dq_convert_kernel(pa_gpu_args a, const float *acc, void *dq_out)
{
    const int d2 = a.head_dim / 2;
    const int64_t n = (int64_t)a.batch * a.heads_q * a.seq_q * d2;
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        const int c = (int)(i % d2) * 2;
        const int64_t row = i / d2;
        const int64_t s = row % a.seq_q, h = (row / a.seq_q) % a.heads_q,
                      b = row / ((int64_t)a.seq_q * a.heads_q);
        const float2 x = *reinterpret_cast<const float2 *>(acc + row * a.head_dim + c);
        T *dst = static_cast<T *>(dq_out) + b * a.q_stride[0] + h * a.q_stride[1] +
                 s * a.q_stride[2] + c;
        *reinterpret_cast<uint32_t *>(dst) = Dt<T>::pack(x.x * a.scale, x.y * a.scale);
    }
}

uint64_t round_up(uint64_t x)
{
    return (x + 255) & ~(uint64_t)255;
}

template <int HEAD_DIM, typename T>
cudaError_t launch(const pa_gpu_bwd_args &ba, void *workspace, cudaStream_t stream)
{
    const pa_gpu_args &a = ba.fwd;
    const uint64_t rows = (uint64_t)a.batch * a.heads_q * a.seq_q;
    float *delta = static_cast<float *>(workspace);
    float *dq_acc = ba.deterministic ? nullptr
                                     : reinterpret_cast<float *>(static_cast<char *>(workspace) +
                                                                 round_up(rows * 4));
    cudaError_t e = (cudaError_t)pa_gpu_bwd_rowdot(&a, ba.d_o, delta, stream);
    if (e != cudaSuccess) return e;
    if (dq_acc) {
        e = cudaMemsetAsync(dq_acc, 0, rows * HEAD_DIM * sizeof(float), stream);
        if (e != cudaSuccess) return e;
    }
    BwdParams bp;
    bp.f = a;
    bp.d_o = ba.d_o;
    bp.dk = ba.dk;
    bp.dv = ba.dv;
    bp.delta = delta;
    bp.dq_acc = dq_acc;

    using Tr = BwdTraits<HEAD_DIM>;
    auto kdkdv = flash_bwd_dkdv_tc_kernel<HEAD_DIM, T>;
    e = cudaFuncSetAttribute(kdkdv, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)Tr::kSmem);
    if (e != cudaSuccess) return e;
    const dim3 grid((a.seq_kv + Tr::kBlockN - 1) / Tr::kBlockN, a.heads_kv, a.batch);
    kdkdv<<<grid, Tr::kThreads, Tr::kSmem, stream>>>(bp);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;

    if (dq_acc) {
        const int64_t n = (int64_t)rows * HEAD_DIM / 2;
        int64_t blocks = (n + 255) / 256;
        if (blocks > 65535) blocks = 65535;
        flash_bwd_dq_convert_kernel<T><<<(unsigned)blocks, 256, 0, stream>>>(a, dq_acc, ba.dq);
        return cudaGetLastError();
    }
    using Tq = BwdDqTraits<HEAD_DIM>;
    auto kdq = flash_bwd_dq_tc_kernel<HEAD_DIM, T>;
    e = cudaFuncSetAttribute(kdq, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)Tq::kSmem);
    if (e != cudaSuccess) return e;
    const dim3 gq((a.seq_q + Tq::kBlockM - 1) / Tq::kBlockM, a.heads_q, a.batch);
    kdq<<<gq, Tq::kThreads, Tq::kSmem, stream>>>(bp, ba.dq);
    return cudaGetLastError();
}

template <typename T>
cudaError_t dispatch(const pa_gpu_bwd_args &ba, void *workspace, cudaStream_t stream)
{
    switch (ba.fwd.head_dim) {
    case 64: return launch<64, T>(ba, workspace, stream);
    case 128: return launch<128, T>(ba, workspace, stream);
    default: return cudaErrorInvalidValue;
    }
}

} // namespace

extern "C" int pa_cuda_flash_tc_bwd_has_head_dim(int head_dim)
{
    return head_dim == 64 || head_dim == 128;
}

extern "C" size_t pa_cuda_flash_tc_bwd_smem(int head_dim)
{
    switch (head_dim) {
    case 64: return BwdTraits<64>::kSmem > BwdDqTraits<64>::kSmem ? BwdTraits<64>::kSmem
                                                                    : BwdDqTraits<64>::kSmem;
    case 128: return BwdTraits<128>::kSmem > BwdDqTraits<128>::kSmem ? BwdTraits<128>::kSmem
                                                                      : BwdDqTraits<128>::kSmem;
    default: return 0;
    }
}

extern "C" uint64_t pa_cuda_flash_tc_bwd_workspace(const pa_gpu_bwd_args *a)
{
    const uint64_t rows = (uint64_t)a->fwd.batch * a->fwd.heads_q * a->fwd.seq_q;
    uint64_t bytes = round_up(rows * 4);
    if (!a->deterministic) bytes += round_up(rows * (uint64_t)a->fwd.head_dim * 4);
    return bytes;
}

extern "C" int pa_cuda_flash_tc_bwd(const pa_gpu_bwd_args *a, void *workspace, void *stream)
{
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (a->fwd.dtype == 1) return (int)dispatch<__half>(*a, workspace, s);
    if (a->fwd.dtype == 2) return (int)dispatch<__nv_bfloat16>(*a, workspace, s);
    return (int)cudaErrorInvalidValue;
}
