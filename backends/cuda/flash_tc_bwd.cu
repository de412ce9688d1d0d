/*
 * FlashAttention-2-style backward on NVIDIA tensor cores (sm_80+, f16/bf16 storage, f32
 * accumulation), head dims 64 and 128.  Conventions (fragment layouts, ldmatrix
 * addressing, padded shared rows, exp2 domain) follow the forward in flash_tc.cu.
 *
 * Kernels, in launch order:
 *   1. flash_bwd_prep_kernel: delta[row] = rowsum(dO * O) and lse2 = lse * log2(e) (+inf
 *      on fully masked rows), into the workspace.
 *   2. flash_bwd_dkdv_tc_kernel: one block per (key tile, kv head, batch).  Each warp owns
 *      16*MT keys; dK and dV of those keys stay in registers while the block walks the
 *      query heads of the GQA group (in order) and their query tiles, each tile (and its
 *      lse2/delta rows) double-buffered with cp.async.  Per query tile (BM queries) a warp
 *      forms, transposed so keys are the mma rows:  S^T = K Q^T,  dP^T = V dO^T  (A from
 *      K/V rows, B from Q/dO rows),  P^T = exp2(S^T * scale*log2e - lse2),
 *      dS^T = P^T (dP^T - delta),  dV += P^T dO,  dK += dS^T Q  (the accumulators are the
 *      A operands, as P in the forward; B via ldmatrix.trans of Q/dO rows).  Unless
 *      deterministic, dS^T goes to shared memory and the block forms dQ_partial = dS K for
 *      the tile (warps split rows and head-dim columns), added to an f32 workspace with
 *      (vector) atomics.
 *   3. flash_bwd_dq_convert_kernel: dq = scale * accumulator, in dq's dtype and strides.
 *   Deterministic: instead of 2's atomics, flash_bwd_dq_tc_kernel, one block per (query
 *      tile, query head, batch), walks the key tiles in order and recomputes S, P, dP, dS
 *      to form dQ = scale dS K in registers (no atomics: bitwise reproducible).
 * Masking: lse2 = +inf on fully masked rows gives P = exp2(x - inf) = 0 without a branch;
 * keys past a row's visible count are zeroed in the tiles that straddle the boundary;
 * query tiles that see none of the key tile are skipped (causal).
 *
 * Cost (FA2 sweep, per (batch, head), N = seq, D = head_dim): 5 GEMM-shaped products of
 * 2 N^2 D FLOPs = 10 N^2 D = 2.5x the forward's 4 N^2 D (halved when causal).  Memory:
 * Q, K, V, O, dO read and dQ, dK, dV written once from HBM (~8 N D 2-byte values, a few
 * MB a head: negligible beside the arithmetic) plus the dQ accumulator: N/BN key tiles
 * each add N x D f32 with L2 atomics (N = 4096, D = 128, BN = 128: 32 x 2 MB a head).
 * The limit is shared-memory bandwidth: with one m16 key tile per warp (configuration
 * A), a warp issues ~0.58 ldmatrix.x4 (512 B) per m16n8k16 mma; at 128 B/clk/SM that is
 * ~2.3 clk of shared memory per mma against ~1-1.5 clk of tensor-core time, so this
 * design caps near 40% of the mma.sync peak: ~200-250 TFLOP/s expected at long
 * sequences.  Measured (H100, bf16, first version, configuration A): 170-214 TFLOP/s,
 * 0.62-0.75x PyTorch's FA2 backward.  Configuration B (head dim 64: two m16 key tiles a
 * warp, 32-query steps) reuses each Q/dO fragment twice, and F (head dim 128, FA2's 2-D
 * warp grids) every fragment: ~0.45 ldmatrix per mma.  With the prep pass feeding lse2 and
 * delta by cp.async: 222-268 TFLOP/s at N = 16384, 0.81-0.88x PyTorch's FA2 backward at
 * every N >= 2048 (bench/results/cuda-flash-backward-h100-2026-11-24.md).
 */
#include "flash_tc_bwd.h"
#include "flash_tc_bwd.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

namespace
{

using namespace pa_tc;
using namespace pa_tc_bwd;

template <typename Tr, typename T>
__global__ void __launch_bounds__(Tr::kThreads, Tr::kMinBlocks)
    flash_bwd_dkdv_tc_kernel(BwdParams bp)
{
    constexpr int D = Tr::kStride - 8, BM = Tr::kBlockM, BN = Tr::kBlockN, S = Tr::kStride;
    constexpr int SS = Tr::kSStride, NT = Tr::kThreads, MT = Tr::kMTiles;
    const pa_gpu_args &a = bp.f;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sk = reinterpret_cast<T *>(smem_raw);
    T *sv = sk + BN * S;
    T *sq = sv + BN * S;                                    /* [stage][BM][S] */
    T *sdo = sq + 2 * BM * S;                               /* [stage][BM][S] */
    T *sds = sdo + 2 * BM * S;                              /* [BN][SS]: dS^T of the current tile */
    float *slse = reinterpret_cast<float *>(sds + BN * SS); /* [stage][BM], exp2 domain */
    float *sdelta = slse + 2 * BM;                          /* [stage][BM] */

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = lane / 4, t4 = lane % 4, idx = lane / 8;
    const int head_kv = blockIdx.y, batch = blockIdx.z;
    const int key0 = blockIdx.x * BN;
    const DkdvQueries<D, S, NT, BM, T> walk(bp, batch, head_kv, key0, sq, sdo, slse, sdelta);
    const int n_iter = walk.n_iter;
    dkdv_begin<D, S, NT, BN>(bp, walk, head_kv, key0, sk, sv);

    const int wrow = warp * 16 * MT; /* this warp's first key in the tile */
    const float sl2 = a.scale * kLog2e;
    float acc_dk[MT][D / 8][4], acc_dv[MT][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int j = 0; j < D / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                acc_dk[mt][j][e] = acc_dv[mt][j][e] = 0.f;

    for (int it = 0; it < n_iter; ++it) {
        cp_async_wait<0>();
        __syncthreads(); /* stage it landed; everyone is done with stage it+1 and sds */
        if (it + 1 < n_iter) walk.load(it + 1, (it + 1) & 1);
        cp_async_commit();
        const int st = it & 1;
        const T *qs = sq + st * BM * S, *dos = sdo + st * BM * S;
        const float *lse2 = slse + st * BM, *dl = sdelta + st * BM;
        const int hq = walk.hq(it), q0 = walk.q0(it);

        /* S^T = K Q^T and dP^T = V dO^T for this warp's MT*16 keys x BM queries */
        float acc_s[MT][BM / 8][4], acc_dp[MT][BM / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int j = 0; j < BM / 8; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    acc_s[mt][j][e] = acc_dp[mt][j][e] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            uint32_t ak[MT][4], av[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                const int off_a = (wrow + mt * 16 + (lane % 16)) * S + kk * 16 + (lane / 16) * 8;
                ldmatrix_x4(ak[mt], sk + off_a);
                ldmatrix_x4(av[mt], sv + off_a);
            }
#pragma unroll
            for (int p = 0; p < BM / 16; ++p) {
                uint32_t bq[4], bd[4];
                const int off_b =
                    (p * 16 + (idx >> 1) * 8 + lane % 8) * S + kk * 16 + (idx & 1) * 8;
                ldmatrix_x4(bq, qs + off_b);
                ldmatrix_x4(bd, dos + off_b);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    Dt<T>::mma(acc_s[mt][2 * p], ak[mt], bq[0], bq[1]);
                    Dt<T>::mma(acc_s[mt][2 * p + 1], ak[mt], bq[2], bq[3]);
                    Dt<T>::mma(acc_dp[mt][2 * p], av[mt], bd[0], bd[1]);
                    Dt<T>::mma(acc_dp[mt][2 * p + 1], av[mt], bd[2], bd[3]);
                }
            }
        }

        /* P^T and dS^T in place (rows: keys, columns: queries) */
        const bool need_mask = pa_flash_visible(a, q0) < key0 + BN;
#pragma unroll
        for (int j = 0; j < BM / 8; ++j) {
            const float2 l2 = *reinterpret_cast<const float2 *>(lse2 + j * 8 + 2 * t4);
            const float2 dd = *reinterpret_cast<const float2 *>(dl + j * 8 + 2 * t4);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int qc = j * 8 + 2 * t4 + (e & 1);
                    float p = fast_exp2(fmaf(acc_s[mt][j][e], sl2, -(e & 1 ? l2.y : l2.x)));
                    if (need_mask &&
                        key0 + wrow + mt * 16 + g + 8 * (e >> 1) >= pa_flash_visible(a, q0 + qc))
                        p = 0.f;
                    acc_dp[mt][j][e] = p * (acc_dp[mt][j][e] - (e & 1 ? dd.y : dd.x));
                    acc_s[mt][j][e] = p;
                }
        }

        /* dV += P^T dO and dK += dS^T Q (k runs over the tile's queries) */
#pragma unroll
        for (int kk = 0; kk < BM / 16; ++kk) {
            uint32_t ap[MT][4], as[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                ap[mt][0] = Dt<T>::pack(acc_s[mt][2 * kk][0], acc_s[mt][2 * kk][1]);
                ap[mt][1] = Dt<T>::pack(acc_s[mt][2 * kk][2], acc_s[mt][2 * kk][3]);
                ap[mt][2] = Dt<T>::pack(acc_s[mt][2 * kk + 1][0], acc_s[mt][2 * kk + 1][1]);
                ap[mt][3] = Dt<T>::pack(acc_s[mt][2 * kk + 1][2], acc_s[mt][2 * kk + 1][3]);
                as[mt][0] = Dt<T>::pack(acc_dp[mt][2 * kk][0], acc_dp[mt][2 * kk][1]);
                as[mt][1] = Dt<T>::pack(acc_dp[mt][2 * kk][2], acc_dp[mt][2 * kk][3]);
                as[mt][2] = Dt<T>::pack(acc_dp[mt][2 * kk + 1][0], acc_dp[mt][2 * kk + 1][1]);
                as[mt][3] = Dt<T>::pack(acc_dp[mt][2 * kk + 1][2], acc_dp[mt][2 * kk + 1][3]);
                if (bp.dq_acc) { /* keep dS^T for the block's dQ product */
                    T *row_lo = sds + (wrow + mt * 16 + g) * SS + kk * 16 + 2 * t4;
                    T *row_hi = row_lo + 8 * SS;
                    *reinterpret_cast<uint32_t *>(row_lo) = as[mt][0];
                    *reinterpret_cast<uint32_t *>(row_hi) = as[mt][1];
                    *reinterpret_cast<uint32_t *>(row_lo + 8) = as[mt][2];
                    *reinterpret_cast<uint32_t *>(row_hi + 8) = as[mt][3];
                }
            }
#pragma unroll
            for (int p = 0; p < D / 16; ++p) {
                uint32_t bd[4], bq[4];
                const int off_b =
                    (kk * 16 + (idx & 1) * 8 + lane % 8) * S + p * 16 + (idx >> 1) * 8;
                ldmatrix_x4_trans(bd, dos + off_b);
                ldmatrix_x4_trans(bq, qs + off_b);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    Dt<T>::mma(acc_dv[mt][2 * p], ap[mt], bd[0], bd[1]);
                    Dt<T>::mma(acc_dv[mt][2 * p + 1], ap[mt], bd[2], bd[3]);
                    Dt<T>::mma(acc_dk[mt][2 * p], as[mt], bq[0], bq[1]);
                    Dt<T>::mma(acc_dk[mt][2 * p + 1], as[mt], bq[2], bq[3]);
                }
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
    cp_async_wait<0>();

    /* dK = scale dS^T Q, dV = P^T dO for this warp's keys */
    T *dk = static_cast<T *>(bp.dk) + batch * a.k_stride[0] + head_kv * a.k_stride[1];
    T *dv = static_cast<T *>(bp.dv) + batch * a.v_stride[0] + head_kv * a.v_stride[1];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int key = key0 + wrow + mt * 16 + g + 8 * r;
            if (key >= a.seq_kv) continue;
            T *dkr = dk + (int64_t)key * a.k_stride[2];
            T *dvr = dv + (int64_t)key * a.v_stride[2];
#pragma unroll
            for (int j = 0; j < D / 8; ++j) {
                *reinterpret_cast<uint32_t *>(dkr + j * 8 + 2 * t4) =
                    Dt<T>::pack(acc_dk[mt][j][2 * r] * a.scale, acc_dk[mt][j][2 * r + 1] * a.scale);
                *reinterpret_cast<uint32_t *>(dvr + j * 8 + 2 * t4) =
                    Dt<T>::pack(acc_dv[mt][j][2 * r], acc_dv[mt][j][2 * r + 1]);
            }
        }
}

/*
 * Configuration F (FlashAttention-2's split): the same algorithm, but the products are
 * spread over the 8 warps as 2-D warp grids so each warp owns a 32 x 32 (or 32 x 64)
 * output block and reuses every fragment it loads for two m16 tiles:
 *   phase 1: S = Q K^T and dP = dO V^T (64 queries x 128 keys), warps 2 x 4 (32 x 32);
 *            P and dS (queries x keys) go to shared memory as 16-bit values;
 *   phase 2: dV += P^T dO and dK += dS^T Q, warps 4 x 2 (32 keys x D/2 columns), A
 *            operands by transposed ldmatrix from the P and dS rows;
 *   phase 3: dQ_partial = dS K, warps 2 x 4 (32 queries x D/4 columns), f32 atomics.
 * ~0.45 ldmatrix.x4 per mma instead of ~0.58 (configuration A), at the price of writing
 * P to shared memory too.
 */
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

template <int HEAD_DIM, typename T>
__global__ void __launch_bounds__(256, 1) flash_bwd_dkdv_f_tc_kernel(BwdParams bp)
{
    using Tr = BwdFTraits<HEAD_DIM>;
    constexpr int D = HEAD_DIM, BM = Tr::kBlockM, BN = Tr::kBlockN, S = Tr::kStride;
    constexpr int SP = Tr::kPStride, NT = Tr::kThreads;
    constexpr int DW = D / 2; /* phase 2 columns a warp */
    constexpr int CW = D / 4; /* phase 3 columns a warp */
    const pa_gpu_args &a = bp.f;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sk = reinterpret_cast<T *>(smem_raw);
    T *sv = sk + BN * S;
    T *sq = sv + BN * S;                                    /* [stage][BM][S] */
    T *sdo = sq + 2 * BM * S;                               /* [stage][BM][S] */
    T *sp = sdo + 2 * BM * S;                               /* [BM][SP]: P */
    T *sds = sp + BM * SP;                                  /* [BM][SP]: dS */
    float *slse = reinterpret_cast<float *>(sds + BM * SP); /* [stage][BM] */
    float *sdelta = slse + 2 * BM;                          /* [stage][BM] */

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = lane / 4, t4 = lane % 4, idx = lane / 8;
    const int head_kv = blockIdx.y, batch = blockIdx.z;
    const int key0 = blockIdx.x * BN;
    const DkdvQueries<D, S, NT, BM, T> walk(bp, batch, head_kv, key0, sq, sdo, slse, sdelta);
    const int n_iter = walk.n_iter;
    dkdv_begin<D, S, NT, BN>(bp, walk, head_kv, key0, sk, sv);

    const float sl2 = a.scale * kLog2e;
    /* phase 1 grid: 2 (queries) x 4 (keys); phase 2: 4 (keys) x 2 (columns);
     * phase 3: 2 (queries) x 4 (columns) */
    const int p1m = warp % 2, p1n = warp / 2;
    const int p2k = warp % 4, p2c = warp / 4;
    const int p3m = warp % 2, p3c = warp / 2;
    float acc_dk[2][DW / 8][4], acc_dv[2][DW / 8][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int j = 0; j < DW / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e)
                acc_dk[mt][j][e] = acc_dv[mt][j][e] = 0.f;

    for (int it = 0; it < n_iter; ++it) {
        cp_async_wait<0>();
        __syncthreads(); /* stage it landed; everyone is done with stage it+1, P and dS */
        if (it + 1 < n_iter) walk.load(it + 1, (it + 1) & 1);
        cp_async_commit();
        const int st = it & 1;
        const T *qs = sq + st * BM * S, *dos = sdo + st * BM * S;
        const float *lse2 = slse + st * BM, *dl = sdelta + st * BM;
        const int hq = walk.hq(it), q0 = walk.q0(it);

        /* phase 1: S and dP for queries p1m*32.., keys p1n*32.. */
        {
            float acc_s[2][4][4], acc_dp[2][4][4];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int j = 0; j < 4; ++j)
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        acc_s[mt][j][e] = acc_dp[mt][j][e] = 0.f;
#pragma unroll
            for (int kk = 0; kk < D / 16; ++kk) {
                uint32_t aq[2][4], ad[2][4];
#pragma unroll
                for (int mt = 0; mt < 2; ++mt) {
                    const int off_a =
                        (p1m * 32 + mt * 16 + (lane % 16)) * S + kk * 16 + (lane / 16) * 8;
                    ldmatrix_x4(aq[mt], qs + off_a);
                    ldmatrix_x4(ad[mt], dos + off_a);
                }
#pragma unroll
                for (int p = 0; p < 2; ++p) {
                    uint32_t bk[4], bv[4];
                    const int off_b = (p1n * 32 + p * 16 + (idx >> 1) * 8 + lane % 8) * S +
                                      kk * 16 + (idx & 1) * 8;
                    ldmatrix_x4(bk, sk + off_b);
                    ldmatrix_x4(bv, sv + off_b);
#pragma unroll
                    for (int mt = 0; mt < 2; ++mt) {
                        Dt<T>::mma(acc_s[mt][2 * p], aq[mt], bk[0], bk[1]);
                        Dt<T>::mma(acc_s[mt][2 * p + 1], aq[mt], bk[2], bk[3]);
                        Dt<T>::mma(acc_dp[mt][2 * p], ad[mt], bv[0], bv[1]);
                        Dt<T>::mma(acc_dp[mt][2 * p + 1], ad[mt], bv[2], bv[3]);
                    }
                }
            }
            const bool need_mask = pa_flash_visible(a, q0) < key0 + BN;
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int ql = p1m * 32 + mt * 16 + g + 8 * r; /* query in the tile */
                    const float l2 = lse2[ql], dd = dl[ql];
                    const int vis = need_mask ? pa_flash_visible(a, q0 + ql) : a.seq_kv;
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        const int kl = p1n * 32 + j * 8 + 2 * t4; /* key in the tile */
                        float p0 = fast_exp2(fmaf(acc_s[mt][j][2 * r], sl2, -l2));
                        float p1 = fast_exp2(fmaf(acc_s[mt][j][2 * r + 1], sl2, -l2));
                        if (need_mask) {
                            if (key0 + kl >= vis) p0 = 0.f;
                            if (key0 + kl + 1 >= vis) p1 = 0.f;
                        }
                        const float ds0 = p0 * (acc_dp[mt][j][2 * r] - dd);
                        const float ds1 = p1 * (acc_dp[mt][j][2 * r + 1] - dd);
                        *reinterpret_cast<uint32_t *>(sp + ql * SP + kl) = Dt<T>::pack(p0, p1);
                        *reinterpret_cast<uint32_t *>(sds + ql * SP + kl) = Dt<T>::pack(ds0, ds1);
                    }
                }
        }
        __syncthreads(); /* P and dS of the whole tile are in shared memory */

        /* phase 2: dV += P^T dO, dK += dS^T Q for keys p2k*32.., columns p2c*DW.. */
#pragma unroll
        for (int kk = 0; kk < BM / 16; ++kk) {
            uint32_t ap[2][4], as[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
                /* A (keys x queries) from [query][key] rows: transposed 8x8 loads */
                const int off_a =
                    (kk * 16 + (idx >> 1) * 8 + lane % 8) * SP + p2k * 32 + mt * 16 + (idx & 1) * 8;
                ldmatrix_x4_trans(ap[mt], sp + off_a);
                ldmatrix_x4_trans(as[mt], sds + off_a);
            }
#pragma unroll
            for (int p = 0; p < DW / 16; ++p) {
                uint32_t bd[4], bq[4];
                const int off_b =
                    (kk * 16 + (idx & 1) * 8 + lane % 8) * S + p2c * DW + p * 16 + (idx >> 1) * 8;
                ldmatrix_x4_trans(bd, dos + off_b);
                ldmatrix_x4_trans(bq, qs + off_b);
#pragma unroll
                for (int mt = 0; mt < 2; ++mt) {
                    Dt<T>::mma(acc_dv[mt][2 * p], ap[mt], bd[0], bd[1]);
                    Dt<T>::mma(acc_dv[mt][2 * p + 1], ap[mt], bd[2], bd[3]);
                    Dt<T>::mma(acc_dk[mt][2 * p], as[mt], bq[0], bq[1]);
                    Dt<T>::mma(acc_dk[mt][2 * p + 1], as[mt], bq[2], bq[3]);
                }
            }
        }

        /* phase 3: dQ_partial = dS K for queries p3m*32.., columns p3c*CW.. */
        if (bp.dq_acc) {
            float acc_q[2][CW / 8][4];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int j = 0; j < CW / 8; ++j)
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        acc_q[mt][j][e] = 0.f;
#pragma unroll
            for (int kk = 0; kk < BN / 16; ++kk) {
                uint32_t af[2][4];
#pragma unroll
                for (int mt = 0; mt < 2; ++mt)
                    ldmatrix_x4(af[mt], sds + (p3m * 32 + mt * 16 + (lane % 16)) * SP + kk * 16 +
                                            (lane / 16) * 8);
#pragma unroll
                for (int p = 0; p < CW / 16; ++p) {
                    uint32_t bk[4];
                    ldmatrix_x4_trans(bk, sk + (kk * 16 + (idx & 1) * 8 + lane % 8) * S + p3c * CW +
                                              p * 16 + (idx >> 1) * 8);
#pragma unroll
                    for (int mt = 0; mt < 2; ++mt) {
                        Dt<T>::mma(acc_q[mt][2 * p], af[mt], bk[0], bk[1]);
                        Dt<T>::mma(acc_q[mt][2 * p + 1], af[mt], bk[2], bk[3]);
                    }
                }
            }
            float *dq_rows = bp.dq_acc + (((int64_t)batch * a.heads_q + hq) * a.seq_q) * D;
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int row = q0 + p3m * 32 + mt * 16 + g + 8 * r;
                    if (row >= a.seq_q) continue;
                    float *dst = dq_rows + (int64_t)row * D + p3c * CW + 2 * t4;
#pragma unroll
                    for (int j = 0; j < CW / 8; ++j)
                        atomic_add2(dst + j * 8, acc_q[mt][j][2 * r], acc_q[mt][j][2 * r + 1]);
                }
        }
    }
    cp_async_wait<0>();

    T *dk = static_cast<T *>(bp.dk) + batch * a.k_stride[0] + head_kv * a.k_stride[1];
    T *dv = static_cast<T *>(bp.dv) + batch * a.v_stride[0] + head_kv * a.v_stride[1];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int key = key0 + p2k * 32 + mt * 16 + g + 8 * r;
            if (key >= a.seq_kv) continue;
            T *dkr = dk + (int64_t)key * a.k_stride[2] + p2c * DW;
            T *dvr = dv + (int64_t)key * a.v_stride[2] + p2c * DW;
#pragma unroll
            for (int j = 0; j < DW / 8; ++j) {
                *reinterpret_cast<uint32_t *>(dkr + j * 8 + 2 * t4) =
                    Dt<T>::pack(acc_dk[mt][j][2 * r] * a.scale, acc_dk[mt][j][2 * r + 1] * a.scale);
                *reinterpret_cast<uint32_t *>(dvr + j * 8 + 2 * t4) =
                    Dt<T>::pack(acc_dv[mt][j][2 * r], acc_dv[mt][j][2 * r + 1]);
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
    const int key_end = pa_flash_visible(a, min(row0 + BM, a.seq_q) - 1);
    const int first_vis = pa_flash_visible(a, row0);
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
        lse2[r] = row < a.seq_q ? bp.lse2[rowbase + row] : INFINITY;
        dl[r] = row < a.seq_q ? bp.delta[rowbase + row] : 0.f;
        vis[r] = pa_flash_visible(a, row);
    }
    const float sl2 = a.scale * kLog2e;
    float acc_q[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e)
            acc_q[j][e] = 0.f;

    for (int nt = 0; nt < n_tiles; ++nt) {
        cp_async_wait<0>();
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
                const int off_b =
                    (p * 16 + (idx >> 1) * 8 + lane % 8) * S + kk * 16 + (idx & 1) * 8;
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
                float p = fast_exp2(fmaf(acc_s[j][e], sl2, -lse2[r]));
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
    cp_async_wait<0>();

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

uint64_t round_up(uint64_t x) { return (x + 255) & ~(uint64_t)255; }

/* Workspace: delta and lse2 rows, then (unless deterministic) the f32 dQ accumulator. */
struct WsLayout {
    float *delta, *lse2, *dq_acc;
};
WsLayout ws_layout(const pa_gpu_bwd_args &ba, void *workspace)
{
    const uint64_t rows = (uint64_t)ba.fwd.batch * ba.fwd.heads_q * ba.fwd.seq_q;
    char *w = static_cast<char *>(workspace);
    WsLayout l;
    l.delta = reinterpret_cast<float *>(w);
    l.lse2 = reinterpret_cast<float *>(w + round_up(rows * 4));
    l.dq_acc = ba.deterministic ? nullptr : reinterpret_cast<float *>(w + 2 * round_up(rows * 4));
    return l;
}

template <typename Tr, typename T>
cudaError_t launch_dkdv(const BwdParams &bp, cudaStream_t stream)
{
    auto kernel = flash_bwd_dkdv_tc_kernel<Tr, T>;
    cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)Tr::kSmem);
    if (e != cudaSuccess) return e;
    const dim3 grid((bp.f.seq_kv + Tr::kBlockN - 1) / Tr::kBlockN, bp.f.heads_kv, bp.f.batch);
    kernel<<<grid, Tr::kThreads, Tr::kSmem, stream>>>(bp);
    return cudaGetLastError();
}

/* The family's head dims and the dK/dV configurations each has, the one table that
 * generates dispatch, "supported?" and the shared-memory sizes: X(head_dim, default tile,
 * tiles).  B by default at head dim 64 and F at 128 (both issue ~0.45 ldmatrix.x4 per mma;
 * F at head dim 64 spends ~0.55, its dQ tile being small); A and, at 64, B stay for
 * comparisons (POLYATTN_FORCE=cuda.bwd_tile=...). */
#define PA_FLASH_TC_BWD_HEAD_DIMS(X) X(64, 'b', "abf") X(128, 'f', "af")

template <int HEAD_DIM, typename T>
cudaError_t launch_dkdv_f(const BwdParams &bp, cudaStream_t stream)
{
    using Tr = BwdFTraits<HEAD_DIM>;
    auto kernel = flash_bwd_dkdv_f_tc_kernel<HEAD_DIM, T>;
    cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)Tr::kSmem);
    if (e != cudaSuccess) return e;
    const dim3 grid((bp.f.seq_kv + Tr::kBlockN - 1) / Tr::kBlockN, bp.f.heads_kv, bp.f.batch);
    kernel<<<grid, Tr::kThreads, Tr::kSmem, stream>>>(bp);
    return cudaGetLastError();
}

template <int HEAD_DIM, typename T>
cudaError_t launch(const pa_gpu_bwd_args &ba, char tile, void *workspace, cudaStream_t stream)
{
    const pa_gpu_args &a = ba.fwd;
    const uint64_t rows = (uint64_t)a.batch * a.heads_q * a.seq_q;
    const WsLayout w = ws_layout(ba, workspace);
    flash_bwd_prep_kernel<HEAD_DIM, T>
        <<<(unsigned)((rows + 31) / 32), 256, 0, stream>>>(a, ba.d_o, w.delta, w.lse2);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    if (w.dq_acc) {
        e = cudaMemsetAsync(w.dq_acc, 0, rows * HEAD_DIM * sizeof(float), stream);
        if (e != cudaSuccess) return e;
    }
    BwdParams bp;
    bp.f = a;
    bp.d_o = ba.d_o;
    bp.dk = ba.dk;
    bp.dv = ba.dv;
    bp.delta = w.delta;
    bp.lse2 = w.lse2;
    bp.dq_acc = w.dq_acc;

    switch (tile) {
    case 'a': e = launch_dkdv<BwdA<HEAD_DIM>, T>(bp, stream); break;
    case 'b': e = launch_dkdv<BwdB<64>, T>(bp, stream); break;
    case 'f': e = launch_dkdv_f<HEAD_DIM, T>(bp, stream); break;
    default: return cudaErrorInvalidValue;
    }
    if (e != cudaSuccess) return e;

    if (w.dq_acc) {
        const int64_t n = (int64_t)rows * HEAD_DIM / 2;
        int64_t blocks = (n + 255) / 256;
        if (blocks > 65535) blocks = 65535;
        flash_bwd_dq_convert_kernel<T><<<(unsigned)blocks, 256, 0, stream>>>(a, w.dq_acc, ba.dq);
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
cudaError_t dispatch(const pa_gpu_bwd_args &ba, char tile, void *workspace, cudaStream_t stream)
{
#define PA_CASE(d, def, tiles)                                                                     \
    case d: return launch<d, T>(ba, tile, workspace, stream);
    switch (ba.fwd.head_dim) {
        PA_FLASH_TC_BWD_HEAD_DIMS(PA_CASE)
    default: return cudaErrorInvalidValue;
    }
#undef PA_CASE
}

constexpr size_t smax(size_t x, size_t y) { return x > y ? x : y; }

/* The largest shared memory of the kernels a head dim's tiles launch (B exists at 64 only). */
template <int HEAD_DIM>
constexpr size_t smem_of()
{
    return smax(smax(BwdA<HEAD_DIM>::kSmem, HEAD_DIM == 64 ? BwdB<64>::kSmem : 0),
                smax(BwdFTraits<HEAD_DIM>::kSmem, BwdDqTraits<HEAD_DIM>::kSmem));
}

} // namespace

extern "C" int pa_cuda_flash_tc_bwd_has_head_dim(int head_dim)
{
#define PA_CASE(d, def, tiles)                                                                     \
    case d: return 1;
    switch (head_dim) {
        PA_FLASH_TC_BWD_HEAD_DIMS(PA_CASE)
    default: return 0;
    }
#undef PA_CASE
}

extern "C" char pa_cuda_flash_tc_bwd_default_tile(int head_dim)
{
#define PA_CASE(d, def, tiles)                                                                     \
    case d: return def;
    switch (head_dim) {
        PA_FLASH_TC_BWD_HEAD_DIMS(PA_CASE)
    default: return 0;
    }
#undef PA_CASE
}

extern "C" int pa_cuda_flash_tc_bwd_has_tile(int head_dim, char tile)
{
#define PA_CASE(d, def, tiles)                                                                     \
    case d: return tile && strchr(tiles, tile) != nullptr;
    switch (head_dim) {
        PA_FLASH_TC_BWD_HEAD_DIMS(PA_CASE)
    default: return 0;
    }
#undef PA_CASE
}

extern "C" size_t pa_cuda_flash_tc_bwd_smem(int head_dim)
{
#define PA_CASE(d, def, tiles)                                                                     \
    case d: return smem_of<d>();
    switch (head_dim) {
        PA_FLASH_TC_BWD_HEAD_DIMS(PA_CASE)
    default: return 0;
    }
#undef PA_CASE
}

extern "C" const char *pa_cuda_flash_tc_bwd_kernel(char tile)
{
    switch (tile) {
    case 'a': return "flash_bwd_dkdv_tc_kernel (configuration A: 8 warps x 16 keys)";
    case 'b': return "flash_bwd_dkdv_tc_kernel (configuration B: 4 warps x 32 keys)";
    default: return "flash_bwd_dkdv_f_tc_kernel (8 warps, 2-D warp grids)";
    }
}

extern "C" uint64_t pa_cuda_flash_tc_bwd_workspace(const pa_gpu_bwd_args *a)
{
    const uint64_t rows = (uint64_t)a->fwd.batch * a->fwd.heads_q * a->fwd.seq_q;
    uint64_t bytes = 2 * round_up(rows * 4);
    if (!a->deterministic) bytes += round_up(rows * (uint64_t)a->fwd.head_dim * 4);
    return bytes;
}

extern "C" int pa_cuda_flash_tc_bwd(const pa_gpu_bwd_args *a, char tile, void *workspace,
                                    void *stream)
{
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (!pa_cuda_flash_tc_bwd_has_tile(a->fwd.head_dim, tile)) return (int)cudaErrorInvalidValue;
    if (a->fwd.dtype == 1) return (int)dispatch<__half>(*a, tile, workspace, s);
    if (a->fwd.dtype == 2) return (int)dispatch<__nv_bfloat16>(*a, tile, workspace, s);
    return (int)cudaErrorInvalidValue;
}
