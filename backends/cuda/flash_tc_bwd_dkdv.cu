/*
 * The tensor-core flash backward's dK/dV kernel in configurations A and B (a warp owns
 * 16*MT keys over every query of a step; flash_tc_bwd.cu explains the algorithm), adding
 * each step's dQ contribution to the f32 accumulator unless deterministic.
 */
#include "flash_tc_bwd.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace
{

using namespace pa_tc;
using namespace pa_tc_bwd;

template <typename Tr, typename T, bool kVar>
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
    const DkdvQueries<D, S, NT, BM, T> walk(bp, batch, head_kv, key0, BN, sq, sdo, slse, sdelta);
    const int n_iter = walk.n_iter;
    dkdv_begin<D, S, NT, BN>(bp, walk, head_kv, key0, sk, sv);

    const int wrow = warp * 16 * MT; /* this warp's first key in the tile */
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
        const BwdScore v = bwd_score(a, batch, hq);
        const bool need_mask = !bwd_tile_inside<kVar>(a, q0, min(q0 + BM, a.seq_q) - 1, key0, BN);
#pragma unroll
        for (int j = 0; j < BM / 8; ++j) {
            const float2 l2 = *reinterpret_cast<const float2 *>(lse2 + j * 8 + 2 * t4);
            const float2 dd = *reinterpret_cast<const float2 *>(dl + j * 8 + 2 * t4);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    const int query = q0 + j * 8 + 2 * t4 + (e & 1);
                    const int key = key0 + wrow + mt * 16 + g + 8 * (e >> 1);
                    float p, ds;
                    bwd_p_ds<kVar>(v, a, acc_s[mt][j][e], acc_dp[mt][j][e], e & 1 ? l2.y : l2.x,
                                   e & 1 ? dd.y : dd.x, query, key,
                                   need_mask && bwd_masked<kVar>(a, query, key), p, ds);
                    acc_dp[mt][j][e] = ds;
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

} // namespace

template <typename Tr, typename T, bool kVar>
cudaError_t pa_tc_bwd::launch_dkdv(const BwdParams &bp, cudaStream_t stream)
{
    auto kernel = flash_bwd_dkdv_tc_kernel<Tr, T, kVar>;
    cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)Tr::kSmem);
    if (e != cudaSuccess) return e;
    const dim3 grid((bp.f.seq_kv + Tr::kBlockN - 1) / Tr::kBlockN, bp.f.heads_kv, bp.f.batch);
    kernel<<<grid, Tr::kThreads, Tr::kSmem, stream>>>(bp);
    return cudaGetLastError();
}

#define PA_INSTANCE_TR(Tr)                                                                         \
    template cudaError_t pa_tc_bwd::launch_dkdv<Tr, __half, false>(const pa_tc_bwd::BwdParams &,   \
                                                                   cudaStream_t);                  \
    template cudaError_t pa_tc_bwd::launch_dkdv<Tr, __half, true>(const pa_tc_bwd::BwdParams &,    \
                                                                  cudaStream_t);                   \
    template cudaError_t pa_tc_bwd::launch_dkdv<Tr, __nv_bfloat16, false>(                         \
        const pa_tc_bwd::BwdParams &, cudaStream_t);                                               \
    template cudaError_t pa_tc_bwd::launch_dkdv<Tr, __nv_bfloat16, true>(                          \
        const pa_tc_bwd::BwdParams &, cudaStream_t);
#define PA_INSTANCE(d, def, tiles) PA_INSTANCE_TR(pa_tc_bwd::BwdA<d>)
PA_FLASH_TC_BWD_HEAD_DIMS(PA_INSTANCE)
PA_INSTANCE_TR(pa_tc_bwd::BwdB<64>)
#undef PA_INSTANCE
#undef PA_INSTANCE_TR
