/*
 * flash_fwd_tf32x3_wide_kernel: f32 flash forward for head dims 512, 768, 1024 on tensor
 * cores (sm_80+) at f32 accuracy: every product in 3xTF32 (tf32x3.cuh says how).
 * Head dims up to 256 have the tile kernel of flash_f32_tile.cu.
 *
 * Layout as flash_fwd_tc_wide_kernel: 32 query rows per block, 8 warps each owning D/8
 * head-dim columns; S = Q K^T is split-K over the warps and the 8 partial scores are
 * summed through 4 shared-memory slots; 8 threads a row run the online softmax and write
 * P (f32) and the rescale factor; each warp accumulates its 32 x D/8 slice of O in
 * registers.  Q stays in shared memory as f32 (128 KiB at D = 1024), which leaves room for
 * single K and V tiles of 8 keys at D = 1024, 16 at 768, 32 at 512.  Each warp loads its
 * own head-dim slice of Q, K and V and refills its K (V) slice right after its own Q K^T
 * (P V), as in the 16-bit kernel.  Fragments come from shared memory
 * with ldmatrix (an 8x8 b16 matrix is 8 rows of 4 f32: exactly a tf32 fragment), except
 * V's (P V needs V transposed: plain 32-bit loads, rows padded to hit distinct banks).
 * The balanced schedule of flash_split.h applies as for the 16-bit kernel.
 */
#include "flash_f32.h"
#include "flash_wide.cuh"
#include "tc_common.cuh"
#include "tf32x3.cuh"

namespace
{

using namespace pa_tc;

/* COL_HALVES 2: the block owns half of the head dim (column halves, flash_split.h), which
 * leaves room for key tiles of 32 keys up to D 1024. */
template <int HEAD_DIM, int COL_HALVES = 1>
struct F32WideTraits {
    static constexpr int kWarps = 8;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kBlockM = 32;
    static constexpr int kCols = HEAD_DIM / COL_HALVES; /* head-dim columns of the block */
    static constexpr int kBlockN = kCols >= 1024 ? 8 : kCols >= 768 ? 16 : 32;
    static constexpr int kSlice = kCols / kWarps;
    /* Q and K rows: 16-byte aligned and 8 consecutive rows on distinct bank quads. */
    static constexpr int kQStride = kCols + 4;
    /* V rows: P V reads V[key t4][column g], banks t4 * 8 + g all distinct. */
    static constexpr int kVStride = kCols + 8;
    /* column halves: the other block's scores, two key tiles' worth */
    static constexpr int kRecvFloats =
        COL_HALVES == 2 ? (int)pa_flash_col_exchange<kBlockM, kBlockN>::kBytes / 4 : 0;
    static constexpr int kSStride = score_stride(kBlockN); /* partial scores */
    static constexpr int kPStride = kBlockN + 4;           /* probabilities (ldmatrix rows) */
    static constexpr size_t smem_with(int slots)
    {
        return ((size_t)(kBlockM + kBlockN) * kQStride + (size_t)kBlockN * kVStride +
                (size_t)slots * kBlockM * kSStride + (size_t)kBlockM * kPStride + 3 * kBlockM +
                kRecvFloats) *
               4;
    }
    /* One partial-score slot per warp saves a barrier per key tile (no add pass) where
     * shared memory allows; else warps w and w + 4 share one. */
    static constexpr int kSlots = smem_with(8) <= 227 * 1024 ? 8 : 4;
    static constexpr size_t kSmem = smem_with(kSlots);
    static_assert(kSlice % 16 == 0 && kBlockN % 8 == 0, "whole mma tiles");
    static_assert(kCols % 32 == 0, "the bank arithmetic of the strides needs D % 32 == 0");
    static_assert((kSmem - (size_t)kRecvFloats * 4) % 16 == 0,
                  "the exchange buffers start 16-byte aligned");
};

template <int HEAD_DIM, int COL_HALVES>
__global__ void __launch_bounds__(F32WideTraits<HEAD_DIM, COL_HALVES>::kThreads, 1)
    flash_fwd_tf32x3_wide_kernel(pa_gpu_args a, pa_flash_split split)
{
    using Tr = F32WideTraits<HEAD_DIM, COL_HALVES>;
    /* D: the head-dim columns this block reads and writes (all, or its half) */
    constexpr int D = Tr::kCols, BM = Tr::kBlockM, BN = Tr::kBlockN, QS = Tr::kQStride,
                  VS = Tr::kVStride, SL = Tr::kSlice, SS = Tr::kSStride, PS = Tr::kPStride;
    constexpr int KPT = BN / 8; /* keys per softmax thread */
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float *sq = reinterpret_cast<float *>(smem_raw);
    float *sk = sq + BM * QS;
    float *sv = sk + BN * QS;
    float *ss = sv + BN * VS;
    float *sp = ss + Tr::kSlots * BM * SS;
    float *s_alpha = sp + BM * PS;
    float *s_m = s_alpha + BM, *s_l = s_m + BM;
    pa_flash_col_exchange<BM, BN> xchg; /* column halves: its buffers follow s_l */

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = lane / 4, t4 = lane % 4;
    const int cbase = COL_HALVES == 2 ? pa_cluster_rank() * D : 0; /* first column owned */
    /* One segment of the schedule: key tiles [w.t0, w.t1) of one query tile. */
    pa_flash_schedule(a, split, [&](const pa_flash_work &w) {
        __syncthreads(); /* the previous segment is done with shared memory */
        const pa_flash_heads<float> h = pa_flash_heads_of<float>(a, w);
        const float *q = h.q + cbase, *k = h.k + cbase, *v = h.v + cbase;
        const int row0 = w.qt * BM;
        const int t0 = w.t0, t1 = w.t1, step = w.step;

        /* Warp w reads only columns [w*SL, (w+1)*SL) of Q, K and V, so it loads those itself
         * (see flash_fwd_tc_wide_kernel).  Q and K rows are QS floats apart in shared memory,
         * V rows VS. */
        const int col0 = warp * SL;
        auto load_k = [&](int first) {
            load_rows<BN, SL / 4, QS, 32>(sk + col0, k + col0, a.k_stride[2], first, a.seq_kv,
                                          lane);
        };
        auto load_v = [&](int first) {
            load_rows<BN, SL / 4, VS, 32>(sv + col0, v + col0, a.v_stride[2], first, a.seq_kv,
                                          lane);
        };

        load_rows<BM, SL / 4, QS, 32>(sq + col0, q + col0, a.q_stride[2], row0, a.seq_q, lane);
        if (t1 > t0) load_k(t0 * BN);
        cp_async_commit();
        if (t1 > t0) load_v(t0 * BN);
        cp_async_commit();
        if (COL_HALVES == 2) xchg.init(s_l + BM, t1 > t0 ? (t1 - t0 + step - 1) / step : 0);

        /* softmax ownership: row sr = tid / 8, keys KPT * (tid % 8) + {0..KPT-1} */
        const int sr = tid / 8, sc0 = KPT * (tid % 8);
        const int sr_vis = pa_flash_visible(a, row0 + sr);
        float run_m = -INFINITY, run_l = 0.f;
        const float sl2 = a.scale * kLog2e;

        float acc_o[2][SL / 8][4];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int j = 0; j < SL / 8; ++j)
                acc_o[mt][j][0] = acc_o[mt][j][1] = acc_o[mt][j][2] = acc_o[mt][j][3] = 0.f;

        for (int nt = t0; nt < t1; nt += step) {
            const int key0 = nt * BN;
            cp_async_wait<1>(); /* this warp's K(nt) (and Q) slice landed; V(nt) may still fly */
            __syncwarp();

            /* partial S over this warp's head-dim slice, 16 columns (two k8 steps) at a time.
             * With few key columns a warp has few accumulators and the mma chains on them
             * serialise: NACC copies (main/cross term, even/odd k8 step) run independently and
             * are summed at the end. */
            constexpr int NACC = BN >= 32 ? 1 : BN >= 16 ? 2 : 4;
            float accs[NACC][2][BN / 8][4];
#pragma unroll
            for (int c = 0; c < NACC; ++c)
#pragma unroll
                for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                    for (int j = 0; j < BN / 8; ++j)
                        accs[c][mt][j][0] = accs[c][mt][j][1] = accs[c][mt][j][2] =
                            accs[c][mt][j][3] = 0.f;
#pragma unroll 2
            for (int kk = 0; kk < SL / 16; ++kk) {
                const int d0 = warp * SL + kk * 16;
                uint32_t ah[2][2][4], al[2][2][4];
#pragma unroll
                for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        uint32_t raw[4];
                        ldmatrix_x4(raw, sq + (mt * 16 + (lane % 16)) * QS + d0 + h * 8 +
                                             (lane / 16) * 4);
#pragma unroll
                        for (int e = 0; e < 4; ++e)
                            split_tf32(raw[e], ah[mt][h][e], al[mt][h][e]);
                    }
#pragma unroll
                for (int p = 0; p < BN / 8; ++p) {
                    uint32_t raw[4], bh[4], bl[4];
                    ldmatrix_x4(raw, sk + (p * 8 + lane % 8) * QS + d0 + (lane / 8) * 4);
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        split_tf32(raw[e], bh[e], bl[e]);
#pragma unroll
                    for (int h = 0; h < 2; ++h)
#pragma unroll
                        for (int mt = 0; mt < 2; ++mt) {
                            float *cm = accs[(2 * h) % NACC][mt][p];
                            float *cx = accs[(2 * h + 1) % NACC][mt][p];
                            mma_tf32(cx, al[mt][h], bh[2 * h], bh[2 * h + 1]);
                            mma_tf32(cx, ah[mt][h], bl[2 * h], bl[2 * h + 1]);
                            mma_tf32(cm, ah[mt][h], bh[2 * h], bh[2 * h + 1]);
                        }
                }
            }
            float acc_s[2][BN / 8][4];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int j = 0; j < BN / 8; ++j)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        float sum = accs[0][mt][j][e];
#pragma unroll
                        for (int c = 1; c < NACC; ++c)
                            sum += accs[c][mt][j][e];
                        acc_s[mt][j][e] = sum;
                    }
            __syncwarp(); /* every lane's reads of the K slice are done: refill it */
            if (nt + step < t1) load_k(key0 + step * BN);
            cp_async_commit();

            exchange_scores<BN, Tr::kSlots>(ss, BM * SS, acc_s, warp, g, t4);
            __syncthreads(); /* scores complete (sum of the slots); P(nt-1) no longer read */

            /* online softmax: 8 threads per row, stats kept in registers (same in all 8) */
            {
                float x[KPT];
                sum_scores<BN, Tr::kSlots>(x, ss, BM * SS, sr, sc0);
                if (COL_HALVES == 2) xchg.add_other(x, (nt - t0) / step, sr, sc0);
                const float alpha = softmax_step8(x, key0 + sc0, sr_vis, sl2, run_m, run_l);
#pragma unroll
                for (int e = 0; e < KPT; ++e)
                    sp[sr * PS + sc0 + e] = x[e];
                if (tid % 8 == 0) s_alpha[sr] = alpha;
            }
            __syncthreads();    /* P(nt) and the alphas are complete; the slots are free */
            cp_async_wait<1>(); /* this warp's V(nt) slice landed; K(nt+1) may still fly */
            __syncwarp();

            /* O = O * alpha + P V over this warp's slice */
            rescale_rows<SL / 8>(acc_o, s_alpha, g);
#pragma unroll
            for (int kk = 0; kk < BN / 8; ++kk) {
                uint32_t ah[2][4], al[2][4];
#pragma unroll
                for (int mt = 0; mt < 2; ++mt) {
                    uint32_t raw[4];
                    ldmatrix_x4(raw, sp + (mt * 16 + (lane % 16)) * PS + kk * 8 + (lane / 16) * 4);
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        split_tf32(raw[e], ah[mt][e], al[mt][e]);
                }
                const float *vr0 = sv + (kk * 8 + t4) * VS + warp * SL + g;
                const float *vr1 = vr0 + 4 * VS;
#pragma unroll
                for (int j = 0; j < SL / 8; ++j) {
                    uint32_t bh0, bl0, bh1, bl1;
                    split_tf32(__float_as_uint(vr0[j * 8]), bh0, bl0);
                    split_tf32(__float_as_uint(vr1[j * 8]), bh1, bl1);
#pragma unroll
                    for (int mt = 0; mt < 2; ++mt)
                        mma3(acc_o[mt][j], ah[mt], al[mt], bh0, bh1, bl0, bl1);
                }
            }
            __syncwarp(); /* every lane's reads of the V slice are done: refill it */
            if (nt + step < t1) load_v(key0 + step * BN);
            cp_async_commit();
        }
        static_assert(pa_flash_halves_bytes<SL / 8>(Tr::kThreads) + 3 * BM * 4 <= Tr::kSmem,
                      "the key-halves scratch stays clear of the row statistics");
        if (split.key_halves &&
            !pa_flash_merge_halves<SL / 8>(acc_o, run_m, run_l, sr, tid % 8 == 0,
                                           reinterpret_cast<float *>(smem_raw), g))
            return; /* block 1 of the cluster: block 0 writes the merged tile */
        pa_flash_end_segment<D>(a, split, w, h.o + cbase, acc_o, run_m, run_l, sr, tid % 8 == 0,
                                s_m, s_l, sq, QS, warp * SL, g, t4, cbase == 0);
    });
}

template <int HEAD_DIM, int COL_HALVES>
cudaError_t launch_as(const pa_gpu_args &a, const pa_flash_split *split, cudaStream_t stream)
{
    static unsigned long long attr_done = 0;
    return pa_flash_launch_wide<F32WideTraits<HEAD_DIM, COL_HALVES>>(
        flash_fwd_tf32x3_wide_kernel<HEAD_DIM, COL_HALVES>, a, split, stream, attr_done);
}

template <int HEAD_DIM>
cudaError_t launch(const pa_gpu_args &a, const pa_flash_split *split, cudaStream_t stream)
{
    if (split && !split->chunk && !split->key_halves && split->col_halves)
        return launch_as<HEAD_DIM, 2>(a, split, stream);
    return launch_as<HEAD_DIM, 1>(a, split, stream);
}

/* The family's head dims, the one list that generates dispatch, "supported?" and the
 * shared-memory sizes. */
#define PA_FLASH_F32_HEAD_DIMS(X) X(512) X(768) X(1024)

} // namespace

extern "C" int pa_cuda_flash_f32_has_head_dim(int head_dim)
{
#define PA_CASE(d) case d:
    switch (head_dim) {
        PA_FLASH_F32_HEAD_DIMS(PA_CASE) return 1;
    default: return 0;
    }
#undef PA_CASE
}

extern "C" const char *pa_cuda_flash_f32_head_dims(void)
{
#define PA_NAME(d) " " #d
    return PA_FLASH_F32_HEAD_DIMS(PA_NAME);
#undef PA_NAME
}

extern "C" size_t pa_cuda_flash_f32_smem(int head_dim, int col_halves)
{
#define PA_CASE(d)                                                                                 \
    case d: return col_halves ? F32WideTraits<d, 2>::kSmem : F32WideTraits<d>::kSmem;
    switch (head_dim) {
        PA_FLASH_F32_HEAD_DIMS(PA_CASE)
    default: return 0;
    }
#undef PA_CASE
}

extern "C" int pa_cuda_flash_f32_key_tile(int head_dim, int col_halves)
{
#define PA_CASE(d)                                                                                 \
    case d: return col_halves ? F32WideTraits<d, 2>::kBlockN : F32WideTraits<d>::kBlockN;
    switch (head_dim) {
        PA_FLASH_F32_HEAD_DIMS(PA_CASE)
    default: return 0;
    }
#undef PA_CASE
}

extern "C" int pa_cuda_flash_f32(const pa_gpu_args *a, const pa_flash_split *split, void *stream)
{
    cudaStream_t s = static_cast<cudaStream_t>(stream);
#define PA_CASE(d)                                                                                 \
    case d: return (int)launch<d>(*a, split, s);
    switch (a->head_dim) {
        PA_FLASH_F32_HEAD_DIMS(PA_CASE)
    default: return (int)cudaErrorInvalidValue;
    }
#undef PA_CASE
}
