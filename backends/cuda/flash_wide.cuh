/*
 * Device helpers of the wide flash kernels (flash_tc.cu, flash_f32.cu: head dims 512..1024)
 * on the schedules of flash_split.cuh: the key-halves merge and column-halves score exchange
 * between the blocks of a 2-block cluster, the end of a segment (O and LSE to memory or a
 * partial slot), and the launcher.
 */
#ifndef POLYATTN_CUDA_FLASH_WIDE_CUH
#define POLYATTN_CUDA_FLASH_WIDE_CUH

#include "flash_split.cuh"

/* Key halves (s.key_halves): called by every thread of both blocks of the cluster after
 * their key tiles, with their O accumulators (m16n8 fragments as in pa_flash_end_segment)
 * and the running max/sum of softmax row sr (log2 domain).  Block 1 stores its accumulators
 * and statistics into block 0's `scratch` (its tile buffers: free once both blocks are done
 * with them, which the first cluster barrier ensures); block 0 merges them into its own
 * (each half rescaled to the larger max).  Returns true in block 0, which then writes the
 * tile; false in block 1.  scratch needs pa_flash_halves_bytes<J>(threads) bytes. */
template <int J>
__host__ __device__ constexpr size_t pa_flash_halves_bytes(int threads)
{
    return ((size_t)2 * J * 4 * threads + 4 * PA_FLASH_TILE_M) * sizeof(float);
}
template <int J>
__device__ __forceinline__ bool pa_flash_merge_halves(float (&acc)[2][J][4], float &run_m,
                                                      float &run_l, int sr, bool stats_owner,
                                                      float *scratch, int g)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    constexpr int kGroups = 2 * J; /* float4 groups of accumulators a thread */
    const int threads = blockDim.x, tid = threadIdx.x;
    float *vals = scratch;                          /* [kGroups][threads][4] */
    float *stats = scratch + kGroups * 4 * threads; /* max, sum of block 1; a0, a1 a row */
    constexpr int BM = PA_FLASH_TILE_M;
    const int rank = pa_cluster_rank();
    pa_tc::cp_async_wait<0>();
    pa_cluster_sync(); /* both blocks are done with their tiles */
    if (rank == 1) {
        const uint32_t peer_vals = pa_tc::cluster_addr(vals, 0),
                       peer_stats = pa_tc::cluster_addr(stats, 0);
#pragma unroll
        for (int q = 0; q < kGroups; ++q) {
            const float *v = acc[q / J][q % J];
            pa_tc::st_cluster_v4(peer_vals + (uint32_t)((q * threads + tid) * 16), v[0], v[1], v[2],
                                 v[3]);
        }
        if (stats_owner) {
            asm volatile("st.shared::cluster.f32 [%0], %1;\n" ::"r"(peer_stats + sr * 4), "f"(run_m)
                         : "memory");
            asm volatile("st.shared::cluster.f32 [%0], %1;\n" ::"r"(peer_stats + (BM + sr) * 4),
                         "f"(run_l)
                         : "memory");
        }
    }
    pa_cluster_sync(); /* block 1's half is in block 0 */
    if (rank == 1) return false;
    const float m1 = stats[sr], l1 = stats[BM + sr];
    const float m = fmaxf(run_m, m1), mu = m == -INFINITY ? 0.f : m;
    const float a0 = exp2f(run_m - mu), a1 = exp2f(m1 - mu);
    run_l = run_l * a0 + l1 * a1;
    run_m = m;
    if (stats_owner) stats[2 * BM + sr] = a0, stats[3 * BM + sr] = a1;
    __syncthreads();
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int row = mt * 16 + g + 8 * r;
            const float s0 = stats[2 * BM + row], s1 = stats[3 * BM + row];
#pragma unroll
            for (int j = 0; j < J; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e)
                    acc[mt][j][2 * r + e] =
                        acc[mt][j][2 * r + e] * s0 +
                        vals[((mt * J + j) * threads + tid) * 4 + 2 * r + e] * s1;
        }
    return true;
#else
    (void)acc, (void)run_m, (void)run_l, (void)sr, (void)stats_owner, (void)scratch, (void)g;
    __trap(); /* the backend plans key halves on sm_90+ only */
    return false;
#endif
}

/* Column halves (s.col_halves): the per-key-tile score exchange between the two blocks of
 * a cluster.  Each thread sends its KPT summed scores of one row (over its block's columns)
 * into the other block's buffer with st.async, which counts the bytes on that block's
 * mbarrier; each block waits on its own mbarrier for the other's bytes and adds them: the
 * scores are then the full sums, bit-identical in both blocks (x + y == y + x), so both run
 * the same softmax.  No cluster-wide barrier a key tile: that one's release semantics waited
 * for the K/V copies in flight (column halves at 0.5-0.7x, measured at commit 180a744), and no fence at
 * cluster scope either.  Two buffers and barriers alternate by key tile: a block sends tile
 * i's scores into the buffer the other read at tile i - 2, and it gets there only after the
 * other's scores of tile i - 1 arrived, which the other sends after a block barrier that
 * follows its reads of tile i - 2. */
template <int BM, int BN>
struct pa_flash_col_exchange {
    static constexpr uint32_t kTileBytes = BM * BN * 4;
    static constexpr size_t kBytes = 2 * (size_t)kTileBytes + 16; /* 16-byte aligned base */
    float *recv;                                                  /* [2][BM][BN] */
    uint64_t *bar;                                                /* [2] */
    int tiles; /* key tiles of the segment (the same in both blocks) */

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    /* Every thread, at the start of a segment of `tiles` key tiles, before any exchange;
     * ends with a cluster barrier (both blocks' mbarriers ready). */
    __device__ void init(void *base, int n)
    {
        recv = static_cast<float *>(base);
        bar = reinterpret_cast<uint64_t *>(recv + 2 * BM * BN);
        tiles = n;
        if (threadIdx.x == 0) {
            for (int p = 0; p < 2; ++p) {
                asm volatile(
                    "mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(pa_tc::smem_addr(bar + p))
                    : "memory");
                if (p < n) expect(p);
            }
            asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        }
        /* A relaxed arrive: the fence above publishes the barriers, and a releasing one would
         * wait for this block's Q/K/V copies in flight. */
        asm volatile("barrier.cluster.arrive.relaxed.aligned;\n"
                     "barrier.cluster.wait.aligned;\n" ::
                         : "memory");
    }
    __device__ void expect(int p) { pa_tc::mbar_expect(bar + p, kTileBytes); }
    /* Key tile i of the segment: x = this block's scores of keys col..col+KPT of row `row`. */
    template <int KPT>
    __device__ void add_other(float (&x)[KPT], int i, int row, int col)
    {
        static_assert(KPT == 1 || KPT == 2 || KPT == 4, "one st.async a thread");
        const int p = i & 1;
        float *mine = recv + p * BM * BN + row * BN + col;
        const uint32_t other = (uint32_t)(pa_cluster_rank() ^ 1);
        const uint32_t dst = pa_tc::cluster_addr(mine, (int)other),
                       dst_bar = pa_tc::cluster_addr(bar + p, (int)other);
        if constexpr (KPT == 4)
            asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.f32 [%0], {%1, "
                         "%2, %3, %4}, [%5];\n" ::"r"(dst),
                         "f"(x[0]), "f"(x[1]), "f"(x[2]), "f"(x[3]), "r"(dst_bar)
                         : "memory");
        else if constexpr (KPT == 2)
            asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v2.f32 [%0], {%1, "
                         "%2}, [%3];\n" ::"r"(dst),
                         "f"(x[0]), "f"(x[1]), "r"(dst_bar)
                         : "memory");
        else
            asm volatile(
                "st.async.shared::cluster.mbarrier::complete_tx::bytes.f32 [%0], %1, [%2];\n" ::"r"(
                    dst),
                "f"(x[0]), "r"(dst_bar)
                : "memory");
        /* Default semantics (acquire at CTA scope), as transaction barriers that wait for bytes
         * other blocks deliver are used; acquire.cluster cost a memory barrier a key tile
         * (f32 16x128 1.06x without it:
         * bench/results/2026-11-24-h100-cuda-column-halves-exchange-f32.md). */
        pa_tc::mbar_wait(bar + p, (uint32_t)(i >> 1) & 1u);
#pragma unroll
        for (int e = 0; e < KPT; ++e)
            x[e] += mine[e];
        /* The next use of this barrier (tile i + 2) expects its bytes before the other block
         * can send them (it needs this block's tile i + 1 first). */
        if (threadIdx.x == 0 && i + 2 < tiles) expect(p);
    }
#else
    __device__ void init(void *, int) { __trap(); } /* planned on sm_90+ only */
    template <int KPT>
    __device__ void add_other(float (&)[KPT], int, int, int)
    {
        __trap();
    }
#endif
};

/* The (batch, head) slices of Q, K, V (through GQA) and O a segment works on. */
template <typename T>
struct pa_flash_heads {
    const T *q, *k, *v;
    T *o;
};
template <typename T>
__device__ __forceinline__ pa_flash_heads<T> pa_flash_heads_of(const pa_gpu_args &a,
                                                               const pa_flash_work &w)
{
    const int head_kv = w.head / (a.heads_q / a.heads_kv);
    pa_flash_heads<T> h;
    h.q = static_cast<const T *>(a.q) + w.batch * a.q_stride[0] + w.head * a.q_stride[1];
    h.k = static_cast<const T *>(a.k) + w.batch * a.k_stride[0] + head_kv * a.k_stride[1];
    h.v = static_cast<const T *>(a.v) + w.batch * a.v_stride[0] + head_kv * a.v_stride[1];
    h.o = static_cast<T *>(a.o) + w.batch * a.o_stride[0] + w.head * a.o_stride[1];
    return h;
}

__device__ __forceinline__ void pa_flash_store_pair(float *p, float x, float y)
{
    *reinterpret_cast<float2 *>(p) = make_float2(x, y);
}
template <typename T>
__device__ __forceinline__ void pa_flash_store_pair(T *p, float x, float y)
{
    *reinterpret_cast<uint32_t *>(p) = pa_tc::Dt<T>::pack(x, y);
}

/* The end of a wide kernel's segment, called by every thread: waits for the last copies,
 * publishes the row statistics (run_m, run_l of row sr, from one stats_owner thread a row)
 * in s_m, s_l, divides a warp's O accumulators (m16n8 fragments: rows mt*16 + g (+8),
 * columns col0 + 8j + 2*t4 (+1) of the 32 query rows) by the rows' sums into `stage`
 * (32 rows of D values, stage_stride apart: the Q tile's buffer, free at this point), then
 * the whole block copies the rows out in 16-byte pieces, to O (and the LSE) when the
 * segment covers its query tile, else to the segment's partial slot with its log2-domain
 * LSE (flash_split.h's layout, which the combine reads).  With column halves D is the
 * block's half of the head dim, o points at its first column, and only block 0 writes the
 * LSE (write_lse).  Writing the fragments to global memory directly cost ~6k cycles a
 * segment (4-byte stores, 8 rows per warp store). */
template <int D, typename T, int J>
__device__ __forceinline__ void
pa_flash_end_segment(const pa_gpu_args &a, const pa_flash_split &s, const pa_flash_work &w, T *o,
                     const float (&acc)[2][J][4], float run_m, float run_l, int sr,
                     bool stats_owner, float *s_m, float *s_l, T *stage, int stage_stride, int col0,
                     int g, int t4, bool write_lse = true)
{
    constexpr int BM = PA_FLASH_TILE_M;
    pa_tc::cp_async_wait<0>();
    if (stats_owner) {
        s_m[sr] = run_m;
        s_l[sr] = run_l;
    }
    __syncthreads(); /* statistics published; every warp is done with the Q tile */
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int lrow = mt * 16 + g + 8 * r;
            const float l = s_l[lrow];
            /* a partial slot keeps 0 for a row with no sum; the row's end follows gpu_rows.h */
            const float inv = w.slot >= 0
                                  ? (l > 0.f ? 1.f / l : 0.f)
                                  : pa_gpu_row_inv(l, pa_flash_visible(a, w.qt * BM + lrow) > 0);
            T *srow = stage + lrow * stage_stride + col0;
#pragma unroll
            for (int j = 0; j < J; ++j)
                pa_flash_store_pair(srow + j * 8 + 2 * t4, acc[mt][j][2 * r] * inv,
                                    acc[mt][j][2 * r + 1] * inv);
        }
    __syncthreads(); /* the tile's O is staged */
    const int row0 = w.qt * BM;
    const int rows = a.seq_q - row0 < BM ? a.seq_q - row0 : BM;
    T *dst = w.slot >= 0 ? static_cast<T *>(s.part) + (int64_t)w.slot * BM * D
                         : o + (int64_t)row0 * a.o_stride[2];
    const int64_t dst_stride = w.slot >= 0 ? D : a.o_stride[2];
    constexpr int kPer = 16 / (int)sizeof(T); /* values per 16-byte piece */
    constexpr int kPieces = D / kPer;         /* pieces per row */
    for (int i = threadIdx.x; i < rows * kPieces; i += blockDim.x) {
        const int lrow = i / kPieces, c = (i % kPieces) * kPer;
        *reinterpret_cast<uint4 *>(dst + lrow * dst_stride + c) =
            *reinterpret_cast<const uint4 *>(stage + lrow * stage_stride + c);
    }
    if (threadIdx.x < rows) {
        const int lrow = threadIdx.x, row = row0 + lrow;
        const float l = s_l[lrow];
        if (w.slot >= 0) {
            float *pl =
                reinterpret_cast<float *>(static_cast<T *>(s.part) + (int64_t)s.slots * BM * D) +
                (int64_t)w.slot * BM;
            /* no sum: -inf (the combine skips it); a NaN sum stays NaN for the combine */
            pl[lrow] = l > 0.f ? s_m[lrow] + log2f(l) : (l == 0.f ? -INFINITY : NAN);
        } else if (a.lse && write_lse) {
            a.lse[((int64_t)w.batch * a.heads_q + w.head) * a.seq_q + row] = pa_gpu_row_lse(
                (s_m[lrow] + log2f(l)) * pa_tc::kLn2, l, pa_flash_visible(a, row) > 0);
        }
    }
}

/* Launches a wide kernel (Tr: its traits; blocks of Tr::kThreads threads, Tr::kSmem bytes)
 * on the schedule `split` (NULL or chunk 0: one block per query tile), then the combine
 * when the schedule cut query tiles.  attr_done: the caller's once-per-device flag. */
template <typename Tr, typename K>
cudaError_t pa_flash_launch_wide(K kernel, const pa_gpu_args &a, const pa_flash_split *split,
                                 cudaStream_t stream, unsigned long long &attr_done)
{
    static_assert(Tr::kBlockM == PA_FLASH_TILE_M, "the schedule counts 32-row tiles");
    cudaError_t e = pa_tc::smem_attr_once(kernel, Tr::kSmem, attr_done);
    if (e != cudaSuccess) return e;
    pa_flash_split s;
    if (split && split->chunk) {
        s = *split;
        kernel<<<s.blocks, Tr::kThreads, Tr::kSmem, stream>>>(a, s);
        e = cudaGetLastError();
        if (e != cudaSuccess) return e;
        return (cudaError_t)pa_cuda_flash_combine(&a, &s, stream);
    }
    s.tile_m = Tr::kBlockM, s.chunk = 0, s.key_tile = Tr::kBlockN;
    s.q_tiles = (a.seq_q + Tr::kBlockM - 1) / Tr::kBlockM;
    s.units = 0, s.blocks = 0, s.slots = 0, s.dependent_combine = 0, s.part = nullptr;
    s.wgmma = 0;
    s.key_halves = split ? split->key_halves : 0;
    s.col_halves = split && !s.key_halves ? split->col_halves : 0;
    if (s.key_halves || s.col_halves) /* 2-block clusters: key tiles or columns halved */
        return pa_tc::launch_pairs(kernel, 2 * s.q_tiles * a.heads_q * a.batch, Tr::kThreads,
                                   Tr::kSmem, stream, a, s);
    const dim3 grid(s.q_tiles, a.heads_q, a.batch);
    kernel<<<grid, Tr::kThreads, Tr::kSmem, stream>>>(a, s);
    return cudaGetLastError();
}

#endif
