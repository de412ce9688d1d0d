/*
 * flash_tc_tile.cuh: the tile configuration and the key-tile step of the tensor-core flash
 * forward (flash_tc.cu explains the algorithm), shared by the dense kernel (flash_tc.cu)
 * and the serving kernel (flash_tc_serving.cu) so that both run the same math.
 */
#ifndef POLYATTN_CUDA_FLASH_TC_TILE_CUH
#define POLYATTN_CUDA_FLASH_TC_TILE_CUH

#include "gpu_variants.h"
#include "tc_common.cuh"

namespace pa_tc
{

/* MTILES: m16 row tiles per warp (0: the head dim's default). */
template <int HEAD_DIM, int BLOCK_N = (HEAD_DIM <= 128 ? 64 : 32), int MTILES = 0>
struct FlashTcTraits {
    static constexpr int kHeadDim = HEAD_DIM;
    /* 4 warps; each warp owns kMTiles m16 row tiles, so every K/V fragment loaded from
     * shared memory feeds 2*kMTiles mma (shared-memory bandwidth, not the tensor cores,
     * limits a warp that owns one m16 tile).  256: one m-tile and 32-key tiles so the O
     * accumulator (16 x 256 per warp) and two K/V stages still fit. */
    static constexpr int kWarps = 4;
    static constexpr int kMTiles = MTILES ? MTILES : (HEAD_DIM <= 128 ? 2 : 1);
    static constexpr int kBlockM = 16 * kMTiles * kWarps;
    static constexpr int kBlockN = BLOCK_N;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kStride = HEAD_DIM + 8; /* elements per shared row (padded) */
    static constexpr int kStages = 2;
    static constexpr size_t kSmem = (size_t)(kBlockM + 2 * kStages * kBlockN) * kStride * 2;
    /* Two resident blocks per SM, so one block computes while the other waits. */
    static constexpr int kMinBlocks = 2;
    static_assert(HEAD_DIM % 16 == 0 && kBlockN % 16 == 0, "mma tiles are 16 wide");
};

/* rows x HEAD_DIM tile from global (row stride in elements) into padded shared rows. */
template <typename Tr, int ROWS, typename T>
__device__ __forceinline__ void load_tile(T *dst, const T *src, int64_t row_stride, int row0,
                                          int nrows)
{
    load_rows<ROWS, Tr::kHeadDim / 8, Tr::kStride, Tr::kThreads>(dst, src, row_stride, row0, nrows);
}

/* VAR: which score variants (gpu_variants.h; never bias or attn_mask) the instance takes,
 * each its own instance so that a problem pays only for what it uses:
 *   kVarNone   plain;
 *   kVarMask   window and sinks: masks and the softmax's start, the plain score path;
 *   kVarScore  softcap and ALiBi too: every score is transformed before the softmax.
 * Under a window the key tiles outside the query tile's visible keys are skipped. */
enum { kVarNone = 0, kVarMask = 1, kVarScore = 2 };

/* Which key range each row of a warp's m-tiles sees: keys [vlo, vis); diag: d(i) for ALiBi. */
template <int MT>
struct TileRows {
    int vis[MT][2], vlo[MT][2], diag[MT][2];
};

/* What a key tile's scores need besides the rows: plain problems use sl2 (scale * log2 e);
 * kVarScore turns scores into final values first (softcap cap, ALiBi slope). */
struct TileScore {
    float scale, sl2, cap, inv_cap, slope;
    int mask_lo, mask_hi; /* keys visible to every row of the block's tile */
};

/*
 * One key tile (keys key0 .. key0 + BN) for the warp's MT m-tiles: S = Q K^T from shared Q
 * (rows wrow ..) and K, masking, the online softmax in the exp2 domain, O += P V.  The S
 * accumulator of n-tiles (2kk, 2kk+1) is the A fragment of P V's step kk.
 */
template <typename Tr, typename T, int VAR, int MT>
__device__ __forceinline__ void tile_step(const T *sq, const T *ks, const T *vs, int wrow, int lane,
                                          int key0, const TileRows<MT> &rows, const TileScore &sc,
                                          float (&acc_o)[MT][Tr::kHeadDim / 8][4],
                                          float (&row_max)[MT][2], float (&row_sum)[MT][2])
{
    constexpr int D = Tr::kHeadDim, BN = Tr::kBlockN, S = Tr::kStride;
    const int t4 = lane % 4;
    const int(&vis)[MT][2] = rows.vis;
    const int(&vlo)[MT][2] = rows.vlo;
    const int(&diag)[MT][2] = rows.diag;
    const float scale = sc.scale, sl2 = sc.sl2, cap = sc.cap, inv_cap = sc.inv_cap;
    const float slope = sc.slope;
    const int mask_lo = sc.mask_lo, mask_hi = sc.mask_hi;
    /* S = Q K^T */
    float acc_s[MT][BN / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int j = 0; j < BN / 8; ++j)
            acc_s[mt][j][0] = acc_s[mt][j][1] = acc_s[mt][j][2] = acc_s[mt][j][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
        uint32_t af[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
            ldmatrix_x4(af[mt],
                        sq + (wrow + mt * 16 + (lane % 16)) * S + kk * 16 + (lane / 16) * 8);
#pragma unroll
        for (int p = 0; p < BN / 16; ++p) {
            uint32_t bf[4];
            const int idx = lane / 8;
            ldmatrix_x4(bf,
                        ks + (p * 16 + (idx >> 1) * 8 + lane % 8) * S + kk * 16 + (idx & 1) * 8);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                Dt<T>::mma(acc_s[mt][2 * p], af[mt], bf[0], bf[1]);
                Dt<T>::mma(acc_s[mt][2 * p + 1], af[mt], bf[2], bf[3]);
            }
        }
    }

    /* mask, online softmax in the exp2 domain (scale folded into one FMA) */
    const bool need_mask = key0 + BN > mask_hi || key0 < mask_lo;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        if constexpr (VAR == kVarScore) { /* final scores, then log2(e) */
#pragma unroll
            for (int j = 0; j < BN / 8; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int key = key0 + j * 8 + 2 * t4 + (e & 1);
                    float s = pa_gpu_score_range(acc_s[mt][j][e] * scale);
                    if (cap > 0.f) s = cap * tanh_fast(s * inv_cap);
                    const int dist = diag[mt][e >> 1] - key;
                    s = fmaf(-slope, (float)(dist < 0 ? -dist : dist), s);
                    acc_s[mt][j][e] = s * kLog2e;
                }
        }
        if (need_mask) {
#pragma unroll
            for (int j = 0; j < BN / 8; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int key = key0 + j * 8 + 2 * t4 + (e & 1);
                    if (key >= vis[mt][e >> 1] || (VAR != kVarNone && key < vlo[mt][e >> 1]))
                        acc_s[mt][j][e] = -INFINITY;
                }
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < BN / 8; ++j)
                mx = fmaxf(mx, fmaxf(acc_s[mt][j][2 * r], acc_s[mt][j][2 * r + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = fmaxf(row_max[mt][r], mx * sl2);
            const float m_use = m_new == -INFINITY ? 0.f : m_new;
            const float alpha = exp2f(row_max[mt][r] - m_use);
            float sum = 0.f;
#pragma unroll
            for (int j = 0; j < BN / 8; ++j) {
                const float p0 = exp2f(fmaf(acc_s[mt][j][2 * r], sl2, -m_use));
                const float p1 = exp2f(fmaf(acc_s[mt][j][2 * r + 1], sl2, -m_use));
                acc_s[mt][j][2 * r] = p0;
                acc_s[mt][j][2 * r + 1] = p1;
                sum += p0 + p1;
            }
            row_sum[mt][r] = row_sum[mt][r] * alpha + sum; /* per-lane partial */
            row_max[mt][r] = m_new;
#pragma unroll
            for (int j = 0; j < D / 8; ++j) {
                acc_o[mt][j][2 * r] *= alpha;
                acc_o[mt][j][2 * r + 1] *= alpha;
            }
        }
    }

    /* O += P V: the S accumulator of n-tiles (2kk, 2kk+1) is the A fragment of step kk */
#pragma unroll
    for (int kk = 0; kk < BN / 16; ++kk) {
        uint32_t af[MT][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            af[mt][0] = Dt<T>::pack(acc_s[mt][2 * kk][0], acc_s[mt][2 * kk][1]);
            af[mt][1] = Dt<T>::pack(acc_s[mt][2 * kk][2], acc_s[mt][2 * kk][3]);
            af[mt][2] = Dt<T>::pack(acc_s[mt][2 * kk + 1][0], acc_s[mt][2 * kk + 1][1]);
            af[mt][3] = Dt<T>::pack(acc_s[mt][2 * kk + 1][2], acc_s[mt][2 * kk + 1][3]);
        }
#pragma unroll
        for (int p = 0; p < D / 16; ++p) {
            uint32_t bf[4];
            const int idx = lane / 8;
            ldmatrix_x4_trans(bf, vs + (kk * 16 + (idx & 1) * 8 + lane % 8) * S + p * 16 +
                                      (idx >> 1) * 8);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                Dt<T>::mma(acc_o[mt][2 * p], af[mt], bf[0], bf[1]);
                Dt<T>::mma(acc_o[mt][2 * p + 1], af[mt], bf[2], bf[3]);
            }
        }
    }
}

} // namespace pa_tc

#endif
