/*
 * The tensor-core flash backward's dK/dV kernel in configuration F (FlashAttention-2's
 * split; flash_tc_bwd.cu explains the algorithm): the same algorithm as configurations A
 * and B, but the products are spread over the 8 warps as 2-D warp grids so each warp owns
 * a 32 x 32 (or 32 x 64) output block and reuses every fragment it loads for two m16 tiles:
 *   phase 1: S = Q K^T and dP = dO V^T (64 queries x 128 keys), warps 2 x 4 (32 x 32);
 *            P and dS (queries x keys) go to shared memory as 16-bit values;
 *   phase 2: dV += P^T dO and dK += dS^T Q, warps 4 x 2 (32 keys x D/2 columns), A
 *            operands by transposed ldmatrix from the P and dS rows;
 *   phase 3: dQ_partial = dS K, warps 2 x 4 (32 queries x D/4 columns), f32 atomics.
 * ~0.45 ldmatrix.x4 per mma instead of ~0.58 (configuration A), at the price of writing
 * P to shared memory too.
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

template <int HEAD_DIM, typename T, bool kVar>
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
    const DkdvQueries<D, S, NT, BM, T> walk(bp, batch, head_kv, key0, BN, sq, sdo, slse, sdelta);
    const int n_iter = walk.n_iter;
    dkdv_begin<D, S, NT, BN>(bp, walk, head_kv, key0, sk, sv);

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
            const BwdScore v = bwd_score(a, batch, hq);
            const bool need_mask =
                !bwd_tile_inside<kVar>(a, q0, min(q0 + BM, a.seq_q) - 1, key0, BN);
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int r = 0; r < 2; ++r) {
                    const int ql = p1m * 32 + mt * 16 + g + 8 * r; /* query in the tile */
                    const float l2 = lse2[ql], dd = dl[ql];
                    int lo = 0, hi = a.seq_kv;
                    if (need_mask) {
                        if constexpr (kVar) pa_gpu_visible_range(a, q0 + ql, lo, hi);
                        else hi = pa_flash_visible(a, q0 + ql);
                    }
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        const int kl = p1n * 32 + j * 8 + 2 * t4; /* key in the tile */
                        const int k0 = key0 + kl, k1 = k0 + 1;
                        float p0, p1, ds0, ds1;
                        bwd_p_ds<kVar>(v, a, acc_s[mt][j][2 * r], acc_dp[mt][j][2 * r], l2, dd,
                                       q0 + ql, k0, k0 < lo || k0 >= hi, p0, ds0);
                        bwd_p_ds<kVar>(v, a, acc_s[mt][j][2 * r + 1], acc_dp[mt][j][2 * r + 1], l2,
                                       dd, q0 + ql, k1, k1 < lo || k1 >= hi, p1, ds1);
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

} // namespace

template <int HEAD_DIM, typename T, bool kVar>
cudaError_t pa_tc_bwd::launch_dkdv_f(const BwdParams &bp, cudaStream_t stream)
{
    using Tr = BwdFTraits<HEAD_DIM>;
    auto kernel = flash_bwd_dkdv_f_tc_kernel<HEAD_DIM, T, kVar>;
    cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)Tr::kSmem);
    if (e != cudaSuccess) return e;
    const dim3 grid((bp.f.seq_kv + Tr::kBlockN - 1) / Tr::kBlockN, bp.f.heads_kv, bp.f.batch);
    kernel<<<grid, Tr::kThreads, Tr::kSmem, stream>>>(bp);
    return cudaGetLastError();
}

#define PA_INSTANCE_T(d, T)                                                                        \
    template cudaError_t pa_tc_bwd::launch_dkdv_f<d, T, false>(const pa_tc_bwd::BwdParams &,       \
                                                               cudaStream_t);                      \
    template cudaError_t pa_tc_bwd::launch_dkdv_f<d, T, true>(const pa_tc_bwd::BwdParams &,        \
                                                              cudaStream_t);
#define PA_INSTANCE(d, def, tiles) PA_INSTANCE_T(d, __half) PA_INSTANCE_T(d, __nv_bfloat16)
PA_FLASH_TC_BWD_HEAD_DIMS(PA_INSTANCE)
#undef PA_INSTANCE
#undef PA_INSTANCE_T
