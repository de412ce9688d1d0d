/*
 * The tensor-core flash backward's deterministic dQ kernel: instead of the dK/dV kernels'
 * atomics, one block per (query tile, query head, batch) walks the key tiles in order and
 * recomputes S, P, dP and dS to form dQ = scale dS K in registers (bitwise reproducible;
 * flash_tc_bwd.cu explains the algorithm).
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

/* Deterministic dQ: one block per (query tile, query head, batch), key tiles in order. */
template <int HEAD_DIM, typename T, bool kVar>
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

    const int row0 = m_block * BM, row_last = min(row0 + BM, a.seq_q) - 1;
    int t_first, t_end, lo_last, hi_first, unused;
    bwd_key_tiles(a, row0, row_last, BN, t_first, t_end);
    pa_gpu_visible_range(a, row0, unused, hi_first);
    pa_gpu_visible_range(a, row_last, lo_last, unused);

    load_tile<D, S, NT, BM>(sq, q, a.q_stride[2], row0, a.seq_q);
    load_tile<D, S, NT, BM>(sdo, dO, a.o_stride[2], row0, a.seq_q);
    if (t_first < t_end) {
        load_tile<D, S, NT, BN>(sk + (t_first & 1) * BN * S, k, a.k_stride[2], t_first * BN,
                                a.seq_kv);
        load_tile<D, S, NT, BN>(sv + (t_first & 1) * BN * S, v, a.v_stride[2], t_first * BN,
                                a.seq_kv);
    }
    cp_async_commit();

    const int wrow = warp * 16;
    const int64_t rowbase = ((int64_t)batch * a.heads_q + head) * a.seq_q;
    float lse2[2], dl[2];
    int vlo[2], vhi[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = row0 + wrow + g + 8 * r;
        lse2[r] = row < a.seq_q ? bp.lse2[rowbase + row] : INFINITY;
        dl[r] = row < a.seq_q ? bp.delta[rowbase + row] : 0.f;
        pa_gpu_visible_range(a, row, vlo[r], vhi[r]);
    }
    const BwdScore sc = bwd_score(a, batch, head);
    float acc_q[D / 8][4];
#pragma unroll
    for (int j = 0; j < D / 8; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e)
            acc_q[j][e] = 0.f;

    for (int nt = t_first; nt < t_end; ++nt) {
        cp_async_wait<0>();
        __syncthreads();
        if (nt + 1 < t_end) {
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
        const bool need_mask = key0 + BN > hi_first || key0 < lo_last;
#pragma unroll
        for (int j = 0; j < BN / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int r = e >> 1, key = key0 + j * 8 + 2 * t4 + (e & 1);
                float p, ds;
                bwd_p_ds<kVar>(sc, a, acc_s[j][e], acc_dp[j][e], lse2[r], dl[r],
                               row0 + wrow + g + 8 * r, key,
                               need_mask && (key < vlo[r] || key >= vhi[r]), p, ds);
                acc_dp[j][e] = ds;
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

} // namespace

template <int HEAD_DIM, typename T, bool kVar>
cudaError_t pa_tc_bwd::launch_dq(const BwdParams &bp, void *dq, cudaStream_t stream)
{
    const pa_gpu_args &a = bp.f;
    using Tq = BwdDqTraits<HEAD_DIM>;
    auto kdq = flash_bwd_dq_tc_kernel<HEAD_DIM, T, kVar>;
    cudaError_t e =
        cudaFuncSetAttribute(kdq, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)Tq::kSmem);
    if (e != cudaSuccess) return e;
    const dim3 gq((a.seq_q + Tq::kBlockM - 1) / Tq::kBlockM, a.heads_q, a.batch);
    kdq<<<gq, Tq::kThreads, Tq::kSmem, stream>>>(bp, dq);
    return cudaGetLastError();
}

#define PA_INSTANCE_T(d, T)                                                                        \
    template cudaError_t pa_tc_bwd::launch_dq<d, T, false>(const pa_tc_bwd::BwdParams &, void *,   \
                                                           cudaStream_t);                          \
    template cudaError_t pa_tc_bwd::launch_dq<d, T, true>(const pa_tc_bwd::BwdParams &, void *,    \
                                                          cudaStream_t);
#define PA_INSTANCE(d, def, tiles) PA_INSTANCE_T(d, __half) PA_INSTANCE_T(d, __nv_bfloat16)
PA_FLASH_TC_BWD_HEAD_DIMS(PA_INSTANCE)
#undef PA_INSTANCE
#undef PA_INSTANCE_T
