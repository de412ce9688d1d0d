/*
 * flash_fwd_tc_kernel: FlashAttention-2-style forward on NVIDIA tensor cores (sm_80+).
 *
 * One block per (query tile, head, batch).  Each warp owns 16 query rows of the tile: it
 * forms S = Q K^T for a key tile with mma.sync m16n8k16 (f16/bf16 in, f32 accumulate),
 * keeps the running row max and sum in registers (online softmax, exp2 domain), converts
 * P to 16 bits in registers (the S accumulator layout is the A-operand layout of the next
 * mma) and accumulates O += P V.  K and V tiles are double-buffered in shared memory with
 * cp.async: the loads of tile j+1 fly while tile j is computed.  Shared-memory rows are
 * padded by 16 bytes so the 8 row addresses of each ldmatrix hit distinct banks.
 *
 * One tile configuration per head dim lives in FlashTcTraits; instances: head dims
 * 32, 64, 96, 128, 256 x {f16, bf16}; head dims 512, 768, 1024 use the wide variant below
 * (FlashTcWideTraits).
 */
#include "flash_tc.h"
#include "flash_tc_tile.cuh"
#include "flash_wide.cuh"

namespace
{

using namespace pa_tc;

template <int HEAD_DIM, int BLOCK_N, typename T, int VAR>
__global__ void __launch_bounds__(FlashTcTraits<HEAD_DIM, BLOCK_N>::kThreads,
                                  FlashTcTraits<HEAD_DIM, BLOCK_N>::kMinBlocks)
    flash_fwd_tc_kernel(pa_gpu_args a)
{
    using Tr = FlashTcTraits<HEAD_DIM, BLOCK_N>;
    constexpr int D = HEAD_DIM, BM = Tr::kBlockM, BN = Tr::kBlockN, S = Tr::kStride;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sq = reinterpret_cast<T *>(smem_raw);
    T *sk = sq + BM * S;     /* [stage][BN][S] */
    T *sv = sk + 2 * BN * S; /* [stage][BN][S] */

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = lane / 4, t4 = lane % 4;
    /* Causal: the last query tiles see the most keys; start them first. */
    const int m_block = a.mask ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
    const int head = blockIdx.y, batch = blockIdx.z;
    const int head_kv = head / (a.heads_q / a.heads_kv);
    const T *q = static_cast<const T *>(a.q) + batch * a.q_stride[0] + head * a.q_stride[1];
    const T *k = static_cast<const T *>(a.k) + batch * a.k_stride[0] + head_kv * a.k_stride[1];
    const T *v = static_cast<const T *>(a.v) + batch * a.v_stride[0] + head_kv * a.v_stride[1];
    T *o = static_cast<T *>(a.o) + batch * a.o_stride[0] + head * a.o_stride[1];

    const int row0 = m_block * BM;
    const int last_row = min(row0 + BM, a.seq_q) - 1;
    /* Keys [key_begin, key_end) meet some row of the tile; keys [mask_lo, mask_hi) are
     * visible to all of them (tiles inside need no mask).  Without a window key_begin is 0;
     * with one, both ends of a row's range grow with the row. */
    int key_begin = 0, key_end, mask_lo = 0, mask_hi;
    if constexpr (VAR != kVarNone) {
        int lo_last, hi_first;
        pa_gpu_visible_range(a, row0, key_begin, hi_first);
        pa_gpu_visible_range(a, last_row, lo_last, key_end);
        mask_lo = lo_last;
        mask_hi = hi_first;
    } else {
        key_end = pa_flash_visible(a, last_row);
        mask_hi = pa_flash_visible(a, row0); /* tiles below it need no mask */
    }
    const int t_begin = key_begin / BN;
    const int n_tiles = key_end > key_begin ? (key_end + BN - 1) / BN - t_begin : 0;

    load_tile<Tr, BM>(sq, q, a.q_stride[2], row0, a.seq_q);
    if (n_tiles > 0) {
        load_tile<Tr, BN>(sk, k, a.k_stride[2], t_begin * BN, a.seq_kv);
        load_tile<Tr, BN>(sv, v, a.v_stride[2], t_begin * BN, a.seq_kv);
    }
    cp_async_commit();

    constexpr int MT = Tr::kMTiles;
    const int wrow = warp * 16 * MT; /* this warp's first row in the tile */
    /* keys [vlo, vis) of rows g and g + 8 of each m-tile; diag: d(i) for ALiBi */
    TileRows<MT> rows;
    int(&vis)[MT][2] = rows.vis;
    int(&vlo)[MT][2] = rows.vlo;
    int(&diag)[MT][2] = rows.diag;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int row = row0 + wrow + mt * 16 + g + 8 * r;
            if constexpr (VAR != kVarNone) {
                pa_gpu_visible_range(a, row, vlo[mt][r], vis[mt][r]);
                diag[mt][r] = pa_gpu_diagonal(a, row);
            } else {
                vis[mt][r] = pa_flash_visible(a, row);
                vlo[mt][r] = diag[mt][r] = 0;
            }
        }
    /* Plain: raw scores times sl2 in the softmax.  VAR: the scores become final exp2-domain
     * values first (factor 1 then). */
    const float sl2 = VAR == kVarScore ? 1.f : a.scale * kLog2e;
    const float slope = VAR == kVarScore ? pa_gpu_alibi_slope(a, batch, head) : 0.f;
    const float sink2 = VAR != kVarNone ? pa_gpu_sink(a, head) * kLog2e : -INFINITY;
    /* kVarScore: s -> cap * tanh(s / cap) - slope |d - j|, in natural units, then log2(e). */
    const float cap = a.softcap, inv_cap = cap > 0.f ? 1.f / cap : 0.f;
    const TileScore sc = {a.scale, sl2, cap, inv_cap, slope, mask_lo, mask_hi};

    float acc_o[MT][D / 8][4];
    float row_max[MT][2], row_sum[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int j = 0; j < D / 8; ++j)
            acc_o[mt][j][0] = acc_o[mt][j][1] = acc_o[mt][j][2] = acc_o[mt][j][3] = 0.f;
        /* a sink starts each row's max and sum (exp2(sink - sink) = 1, held by one lane of
         * the four that share the row) */
        row_max[mt][0] = row_max[mt][1] = sink2;
        row_sum[mt][0] = row_sum[mt][1] =
            (VAR != kVarNone && t4 == 0 && sink2 != -INFINITY) ? 1.f : 0.f;
    }

    for (int nt = 0; nt < n_tiles; ++nt) {
        cp_async_wait<0>();
        __syncthreads();
        if (nt + 1 < n_tiles) {
            const int st = (nt + 1) & 1;
            load_tile<Tr, BN>(sk + st * BN * S, k, a.k_stride[2], (t_begin + nt + 1) * BN,
                              a.seq_kv);
            load_tile<Tr, BN>(sv + st * BN * S, v, a.v_stride[2], (t_begin + nt + 1) * BN,
                              a.seq_kv);
        }
        cp_async_commit();
        const T *ks = sk + (nt & 1) * BN * S;
        const T *vs = sv + (nt & 1) * BN * S;
        const int key0 = (t_begin + nt) * BN;

        tile_step<Tr, T, VAR, MT>(sq, ks, vs, wrow, lane, key0, rows, sc, acc_o, row_max, row_sum);
    }
    cp_async_wait<0>();

#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float l = row_sum[mt][r];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const int row = row0 + wrow + mt * 16 + g + 8 * r;
            if (row >= a.seq_q) continue;
            const bool seen = vis[mt][r] > vlo[mt][r];
            const float inv = pa_gpu_row_inv(l, seen);
            T *orow = o + (int64_t)row * a.o_stride[2];
#pragma unroll
            for (int j = 0; j < D / 8; ++j)
                *reinterpret_cast<uint32_t *>(orow + j * 8 + 2 * t4) =
                    Dt<T>::pack(acc_o[mt][j][2 * r] * inv, acc_o[mt][j][2 * r + 1] * inv);
            if (a.lse && t4 == 0)
                a.lse[((int64_t)batch * a.heads_q + head) * a.seq_q + row] =
                    pa_gpu_row_lse((row_max[mt][r] + log2f(l)) * kLn2, l, seen);
        }
}

/*
 * flash_fwd_tc_wide_kernel: the same algorithm for head dims 512..1024 (the seed's shapes),
 * where a warp cannot hold the O accumulator of 16 full rows.  A block takes 32 query rows
 * and 8 warps; warp w owns the head-dim slice [w*D/8, (w+1)*D/8):
 *   S = Q K^T: each warp multiplies its slice (split-K); the 8 partial 32 x 32 scores are
 *              summed through shared-memory slots (one per warp at D 512/768; at 1024
 *              warps w and w + 4 share one);
 *   softmax:   8 threads a row update the running max/sum, write P (16-bit) and the rescale
 *              factor of each row;
 *   O += P V:  each warp accumulates its 32 x D/8 slice of O in registers.
 * Q stays in shared memory; K and V have one buffer each.  Each warp loads (cp.async) and
 * reads only its own head-dim slice of Q, K and V, so it refills its K slice right after
 * its Q K^T and its V slice right after its P V: every load has a whole key tile to land,
 * and a key tile needs only the block barriers of the score exchange (two; three with
 * 4 slots).  A block runs the segments the schedule of flash_split.h gives it: a whole
 * query tile, or a run of key tiles that may cross query tiles (balanced schedule).
 */

/* COL_HALVES 2: the block owns half of the head dim (column halves, flash_split.h). */
template <int HEAD_DIM, int COL_HALVES = 1>
struct FlashTcWideTraits {
    static constexpr int kWarps = 8;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kBlockM = 32;
    static constexpr int kBlockN = 32;
    static constexpr int kCols = HEAD_DIM / COL_HALVES;    /* head-dim columns of the block */
    static constexpr int kSlice = kCols / kWarps;          /* head-dim columns of one warp */
    static constexpr int kStride = kCols + 8;              /* padded shared rows (elements) */
    static constexpr int kSStride = score_stride(kBlockN); /* f32 partial scores */
    static constexpr int kPStride = kBlockN + 8;           /* 16-bit probabilities */
    static constexpr size_t kTileBytes = (size_t)kBlockM * kStride * 2;
    /* column halves: the other block's scores, two key tiles' worth */
    static constexpr size_t kRecvBytes =
        COL_HALVES == 2 ? pa_flash_col_exchange<kBlockM, kBlockN>::kBytes : 0;
    static constexpr size_t smem_with(int slots)
    {
        return 3 * kTileBytes + (size_t)slots * kBlockM * kSStride * 4 + kBlockM * kPStride * 2 +
               3 * kBlockM * 4 + kRecvBytes;
    }
    /* Partial-score slots: one per warp where shared memory allows (no add pass, one
     * barrier less per key tile: head dims 512, 768), else warps w and w + 4 share one. */
    static constexpr int kSlots = smem_with(8) <= 227 * 1024 ? 8 : 4;
    static constexpr size_t kSmem = smem_with(kSlots);
    static_assert(kSlice % 16 == 0, "each warp's slice is a whole number of mma tiles");
    static_assert(kBlockM == kBlockN, "Q, K and V tiles share one row count");
    static_assert((kSmem - kRecvBytes) % 16 == 0, "the exchange buffers start 16-byte aligned");
};

template <int HEAD_DIM, int COL_HALVES, typename T>
__global__ void __launch_bounds__(FlashTcWideTraits<HEAD_DIM, COL_HALVES>::kThreads, 1)
    flash_fwd_tc_wide_kernel(pa_gpu_args a, pa_flash_split split)
{
    using Tr = FlashTcWideTraits<HEAD_DIM, COL_HALVES>;
    /* D: the head-dim columns this block reads and writes (all, or its half) */
    constexpr int D = Tr::kCols, BM = Tr::kBlockM, BN = Tr::kBlockN, S = Tr::kStride;
    constexpr int SL = Tr::kSlice, SS = Tr::kSStride, PS = Tr::kPStride;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sq = reinterpret_cast<T *>(smem_raw);
    T *sk = sq + BM * S;
    T *sv = sk + BN * S;
    float *ss = reinterpret_cast<float *>(sv + BN * S);
    T *sp = reinterpret_cast<T *>(ss + Tr::kSlots * BM * SS); /* ss: kSlots partial scores */
    float *s_alpha = reinterpret_cast<float *>(sp + BM * PS);
    float *s_m = s_alpha + BM, *s_l = s_m + BM;
    pa_flash_col_exchange<BM, BN> xchg; /* column halves: its buffers follow s_l */

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = lane / 4, t4 = lane % 4;
    const int cbase = COL_HALVES == 2 ? pa_cluster_rank() * D : 0; /* first column owned */
    /* One segment of the schedule: key tiles [w.t0, w.t1) of one query tile. */
    pa_flash_schedule(a, split, [&](const pa_flash_work &w) {
        __syncthreads(); /* the previous segment is done with shared memory */
        const pa_flash_heads<T> h = pa_flash_heads_of<T>(a, w);
        const T *q = h.q + cbase, *k = h.k + cbase, *v = h.v + cbase;
        const int row0 = w.qt * BM;
        const int t0 = w.t0, t1 = w.t1, step = w.step; /* key tiles of this block */

        /* Warp w reads only columns [w*SL, (w+1)*SL) of Q, K and V, so it loads those itself:
         * its copies need a __syncwarp, not a block barrier, and it refills its K (V) slice
         * as soon as its own Q K^T (P V) is done, a whole key tile ahead of the next use. */
        const int col0 = warp * SL;
        auto load_slice = [&](T *dst, const T *src, int64_t row_stride, int first, int limit) {
            load_rows<BM, SL / 8, S, 32>(dst + col0, src + col0, row_stride, first, limit, lane);
        }; /* Q, K and V tiles: BM (== BN) rows */

        load_slice(sq, q, a.q_stride[2], row0, a.seq_q);
        if (t1 > t0) load_slice(sk, k, a.k_stride[2], t0 * BN, a.seq_kv);
        cp_async_commit();
        if (t1 > t0) load_slice(sv, v, a.v_stride[2], t0 * BN, a.seq_kv);
        cp_async_commit();
        if (COL_HALVES == 2) xchg.init(s_l + BM, t1 > t0 ? (t1 - t0 + step - 1) / step : 0);

        /* softmax ownership: row sr = tid / 8, keys 4 * (tid % 8) + {0..3} */
        const int sr = tid / 8, sc0 = 4 * (tid % 8);
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

            /* partial S over this warp's head-dim slice */
            float acc_s[2][BN / 8][4];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt)
#pragma unroll
                for (int j = 0; j < BN / 8; ++j)
                    acc_s[mt][j][0] = acc_s[mt][j][1] = acc_s[mt][j][2] = acc_s[mt][j][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < SL / 16; ++kk) {
                const int d0 = col0 + kk * 16;
                uint32_t af[2][4];
#pragma unroll
                for (int mt = 0; mt < 2; ++mt)
                    ldmatrix_x4(af[mt], sq + (mt * 16 + (lane % 16)) * S + d0 + (lane / 16) * 8);
#pragma unroll
                for (int p = 0; p < BN / 16; ++p) {
                    uint32_t bf[4];
                    const int idx = lane / 8;
                    ldmatrix_x4(bf,
                                sk + (p * 16 + (idx >> 1) * 8 + lane % 8) * S + d0 + (idx & 1) * 8);
#pragma unroll
                    for (int mt = 0; mt < 2; ++mt) {
                        Dt<T>::mma(acc_s[mt][2 * p], af[mt], bf[0], bf[1]);
                        Dt<T>::mma(acc_s[mt][2 * p + 1], af[mt], bf[2], bf[3]);
                    }
                }
            }
            __syncwarp(); /* every lane's ldmatrix of the K slice is done: refill it */
            if (nt + step < t1) load_slice(sk, k, a.k_stride[2], key0 + step * BN, a.seq_kv);
            cp_async_commit();

            exchange_scores<BN, Tr::kSlots>(ss, BM * SS, acc_s, warp, g, t4);
            __syncthreads(); /* scores complete (sum of the slots); P(nt-1) no longer read */

            /* online softmax: 8 threads per row, stats kept in registers (same in all 8) */
            {
                float x[4];
                sum_scores<BN, Tr::kSlots>(x, ss, BM * SS, sr, sc0);
                if (COL_HALVES == 2) xchg.add_other(x, (nt - t0) / step, sr, sc0);
                const float alpha = softmax_step8(x, key0 + sc0, sr_vis, sl2, run_m, run_l);
                uint32_t *pp = reinterpret_cast<uint32_t *>(sp + sr * PS + sc0);
                pp[0] = Dt<T>::pack(x[0], x[1]);
                pp[1] = Dt<T>::pack(x[2], x[3]);
                if (tid % 8 == 0) s_alpha[sr] = alpha;
            }
            __syncthreads();    /* P(nt) and the alphas are complete; the slots are free */
            cp_async_wait<1>(); /* this warp's V(nt) slice landed; K(nt+1) may still fly */
            __syncwarp();

            /* O = O * alpha + P V over this warp's slice */
            rescale_rows<SL / 8>(acc_o, s_alpha, g);
#pragma unroll
            for (int kk = 0; kk < BN / 16; ++kk) {
                uint32_t af[2][4];
#pragma unroll
                for (int mt = 0; mt < 2; ++mt)
                    ldmatrix_x4(af[mt],
                                sp + (mt * 16 + (lane % 16)) * PS + kk * 16 + (lane / 16) * 8);
#pragma unroll
                for (int p = 0; p < SL / 16; ++p) {
                    uint32_t bf[4];
                    const int idx = lane / 8;
                    ldmatrix_x4_trans(bf, sv + (kk * 16 + (idx & 1) * 8 + lane % 8) * S + col0 +
                                              p * 16 + (idx >> 1) * 8);
#pragma unroll
                    for (int mt = 0; mt < 2; ++mt) {
                        Dt<T>::mma(acc_o[mt][2 * p], af[mt], bf[0], bf[1]);
                        Dt<T>::mma(acc_o[mt][2 * p + 1], af[mt], bf[2], bf[3]);
                    }
                }
            }
            __syncwarp(); /* every lane's ldmatrix of the V slice is done: refill it */
            if (nt + step < t1) load_slice(sv, v, a.v_stride[2], key0 + step * BN, a.seq_kv);
            cp_async_commit();
        }
        static_assert(pa_flash_halves_bytes<SL / 8>(Tr::kThreads) + 3 * BM * 4 <= Tr::kSmem,
                      "the key-halves scratch stays clear of the row statistics");
        if (split.key_halves &&
            !pa_flash_merge_halves<SL / 8>(acc_o, run_m, run_l, sr, tid % 8 == 0,
                                           reinterpret_cast<float *>(smem_raw), g))
            return; /* block 1 of the cluster: block 0 writes the merged tile */
        pa_flash_end_segment<D>(a, split, w, h.o + cbase, acc_o, run_m, run_l, sr, tid % 8 == 0,
                                s_m, s_l, sq, S, warp * SL, g, t4, cbase == 0);
    });
}

template <int HEAD_DIM, int COL_HALVES, typename T>
cudaError_t launch_wide_as(const pa_gpu_args &a, const pa_flash_split *split, cudaStream_t stream)
{
    static unsigned long long attr_done = 0;
    return pa_flash_launch_wide<FlashTcWideTraits<HEAD_DIM, COL_HALVES>>(
        flash_fwd_tc_wide_kernel<HEAD_DIM, COL_HALVES, T>, a, split, stream, attr_done);
}

template <int HEAD_DIM, typename T>
cudaError_t launch_wide(const pa_gpu_args &a, const pa_flash_split *split, cudaStream_t stream)
{
    if (split && !split->chunk && !split->key_halves && split->col_halves)
        return launch_wide_as<HEAD_DIM, 2, T>(a, split, stream);
    return launch_wide_as<HEAD_DIM, 1, T>(a, split, stream);
}

template <int HEAD_DIM, typename T, int VAR, int BLOCK_N = FlashTcTraits<HEAD_DIM>::kBlockN>
cudaError_t launch(const pa_gpu_args &a, cudaStream_t stream)
{
    using Tr = FlashTcTraits<HEAD_DIM, BLOCK_N>;
    auto kernel = flash_fwd_tc_kernel<HEAD_DIM, BLOCK_N, T, VAR>;
    static unsigned long long attr_done = 0;
    cudaError_t e = smem_attr_once(kernel, Tr::kSmem, attr_done);
    if (e != cudaSuccess) return e;
    const dim3 grid((a.seq_q + Tr::kBlockM - 1) / Tr::kBlockM, a.heads_q, a.batch);
    kernel<<<grid, Tr::kThreads, Tr::kSmem, stream>>>(a);
    return cudaGetLastError();
}

/* The family's head dims, the one list that generates dispatch, "supported?" and the
 * shared-memory sizes: X(head_dim) for the tile kernel (one block per query tile), W(head_dim)
 * for the wide kernel (split-K across 8 warps, the schedules of flash_split.h).  64-key tiles
 * measured faster than 32 at head dim 128 on the H100 (1.84 vs 1.99 ms, bf16, 4x16x4096,
 * despite a few spilled registers): FlashTcTraits' default. */
#define PA_FLASH_TC_HEAD_DIMS(X, W) X(32) X(64) X(96) X(128) X(256) W(512) W(768) W(1024)

template <typename T>
cudaError_t dispatch(const pa_gpu_args &a, const pa_flash_split *split, cudaStream_t stream)
{
#define PA_TILE(d)                                                                                 \
    case d:                                                                                        \
        return a.softcap > 0.f || a.alibi_slopes ? launch<d, T, kVarScore>(a, stream)              \
               : pa_gpu_args_have_variants(&a)   ? launch<d, T, kVarMask>(a, stream)               \
                                                 : launch<d, T, kVarNone>(a, stream);
#define PA_WIDE(d)                                                                                 \
    case d: return launch_wide<d, T>(a, split, stream);
    switch (a.head_dim) {
        PA_FLASH_TC_HEAD_DIMS(PA_TILE, PA_WIDE)
    default: return cudaErrorInvalidValue;
    }
#undef PA_TILE
#undef PA_WIDE
}

} // namespace

extern "C" int pa_cuda_flash_tc_has_head_dim(int head_dim)
{
#define PA_CASE(d) case d:
    switch (head_dim) {
        PA_FLASH_TC_HEAD_DIMS(PA_CASE, PA_CASE) return 1;
    default: return 0;
    }
#undef PA_CASE
}

extern "C" const char *pa_cuda_flash_tc_head_dims(void)
{
#define PA_NAME(d) " " #d
    return PA_FLASH_TC_HEAD_DIMS(PA_NAME, PA_NAME);
#undef PA_NAME
}

extern "C" size_t pa_cuda_flash_tc_smem(int head_dim, int col_halves)
{
    // clang-format off
#define PA_TILE(d) case d: return col_halves ? 0 : FlashTcTraits<d>::kSmem;
#define PA_WIDE(d) case d: return col_halves ? FlashTcWideTraits<d, 2>::kSmem : FlashTcWideTraits<d>::kSmem;
    switch (head_dim) {
    PA_FLASH_TC_HEAD_DIMS(PA_TILE, PA_WIDE)
    default: return 0;
    }
#undef PA_TILE
#undef PA_WIDE
    // clang-format on
}

extern "C" int pa_cuda_flash_tc_key_tile(int head_dim, int col_halves)
{
    // clang-format off
#define PA_TILE(d) case d: return 0;
#define PA_WIDE(d) case d: return col_halves ? FlashTcWideTraits<d, 2>::kBlockN : FlashTcWideTraits<d>::kBlockN;
    switch (head_dim) {
    PA_FLASH_TC_HEAD_DIMS(PA_TILE, PA_WIDE)
    default: return 0;
    }
#undef PA_TILE
#undef PA_WIDE
    // clang-format on
}

extern "C" int pa_cuda_flash_tc(const pa_gpu_args *a, const pa_flash_split *split, void *stream)
{
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (a->dtype == 1) return (int)dispatch<__half>(*a, split, s);
    if (a->dtype == 2) return (int)dispatch<__nv_bfloat16>(*a, split, s);
    return (int)cudaErrorInvalidValue;
}
