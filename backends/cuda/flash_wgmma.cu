/*
 * flash_fwd_wgmma_kernel: the wide flash forward (head dims 512, 768; f16/bf16) on Hopper's
 * warpgroup MMA.  The mma.sync kernels of flash_tc.cu split each key tile's Q K^T across 8
 * warps and sum their partial scores through shared memory (split-K): at the short seed
 * shapes a 32 x 32 key tile took ~3000 cycles, most of it barriers, that sum and the
 * softmax (per-phase cycle counts), with the tensor pipes 11-21% busy.  Here one
 * warpgroup (128 threads) multiplies a 64-row query tile by a 64-key tile over the whole
 * head dim with wgmma, which reduces over the head dim inside the tensor core and leaves
 * the scores in registers.
 *
 * O's 64 x 256 f32 accumulator is 128 registers a thread, all a warpgroup can hold, so a
 * query tile runs on C = head_dim / 256 blocks (wide plan), block r owning columns
 * [256r, 256r + 256) of V and O; the narrow plan gives each block 128 columns (C doubles).
 * Every block computes the whole score tile itself (bit-identical in all C):
 * splitting Q K^T across them as well and summing the partial scores through distributed
 * shared memory cost 2300-3400 cycles a key tile, 3.5-5x the product (measured at commit 016d99b).
 * A narrow block's P V, V load and O store halve, its Q K^T does not: 1.07-1.12x where its
 * grid still fits the GPU, 0.56-0.77x where it does not (bench/results/2026-11-25-h100-cuda-wgmma-plans.md).
 * Per key tile:
 *   S = Q K^T      wgmma m64n64k16, both operands from shared memory (head_dim / 16 steps);
 *   softmax        online, in registers (exp2 domain, 4 threads a row);
 *   O_r += P V_r   wgmma m64n256k16 (m64n128k16 narrow), P from registers, V from shared
 *                  memory (N-major).
 * Q, K and V tiles sit in the 128-byte-swizzled layout of wgmma_sm90.cuh, loaded by TMA
 * (one thread issues 64 x 64 boxes, an mbarrier counts the bytes): issuing the same tiles
 * with cp.async cost 1200-1900 cycles of every thread a key tile (measured at commit 36ed94d).  K (V) of the
 * next key tile is loaded as soon as this tile's Q K^T (P V) is done, a key tile ahead (a
 * second K buffer, two tiles ahead, gained nothing: 0.96-1.02x, measured and reverted in 4204a3b).
 * The blocks of a query tile are adjacent in the grid (they stream the same K tiles at the
 * same time), longest query tiles first over all (batch, head) pairs.  O leaves by TMA.
 * O(N) memory: nothing but O and the LSE is written.
 *
 * Key split (kSplit): each wide block becomes a 2-block cluster, block s taking key tiles
 * s, s + 2, ... of the query tile; at the end each hands the other, through distributed
 * shared memory, the half of its O columns that the other writes (merge_split).  The
 * longest chain of key tiles halves, for a merge of ~4800 cycles: 1.35-1.72x with chains
 * of 8-64 key tiles in one wave, 0.83x at 16x128 D 512 (two).  flash_wgmma_plan.cu picks
 * the plan.
 */
#include "flash_wgmma.h"
#include "flash_split.cuh" /* pa_flash_visible */
#include "wgmma_sm90.cuh"

#include "tma_map.cuh"

namespace
{

using namespace pa_tc;

constexpr int kRows = PA_WGMMA_TILE;            /* query rows of a tile (one warpgroup) */
constexpr int kKeys = PA_WGMMA_TILE;            /* keys of a key tile */
constexpr int kWide = PA_WGMMA_WIDE_COLS;       /* columns of V and O a block owns: wide plans */
constexpr int kNarrow = PA_WGMMA_WIDE_COLS / 2; /* and narrow */
constexpr int kThreads = 128;                   /* one warpgroup */
static_assert(kRows == kKeys, "Q, K and V tiles share one layout");

/* A tile of 64 rows by `cols` 16-bit columns (swizzled layout of wgmma_sm90.cuh). */
__host__ __device__ constexpr uint32_t tile_bytes(int cols) { return (uint32_t)kRows * cols * 2; }
template <int D, int kCols>
constexpr size_t smem_bytes()
{
    /* 1024 for aligning the swizzled tiles; Q and K (D columns), V (this block's columns),
     * an mbarrier for each 64-column block of Q and K and one for V */
    return 1024 + 2 * (size_t)tile_bytes(D) + tile_bytes(kCols) + 8 * (D / 64 + 1);
}
static_assert(tile_bytes(kWide) <= tile_bytes(512), "O's staging fits the Q tile");
static_assert(kRows == 16 * (kThreads / 32), "16 rows of the tile a warp (the wgmma layout)");

/* The tensor maps of Q, K, V and O (4-D: head dim, sequence, head, batch; boxes of 64
 * columns by 64 rows, 16 for O (a warp's rows), 128-byte swizzle; loads past the sequence
 * read zeros, stores there are dropped), made on the host for each call (the pointers are
 * the call's). */
using pa_tma::TileMaps;

/* Loads rows [row, row + 64) of `map`, columns [col, col + 64 * blocks), of (head, batch),
 * into a swizzled tile: one TMA box a 64-column block, lane 0 of warp w issuing boxes w,
 * w + 4, ... (issuing all of a tile from one thread held its warp, and so the warpgroup's
 * next product, ~450 cycles, measured at commit 016d99b).  The caller's one thread arms the barrier. */
__device__ __forceinline__ void load_tile(unsigned char *dst, const CUtensorMap *map, int blocks,
                                          int col, int row, int head, int batch, uint64_t *bar)
{
    if (threadIdx.x % 32) return;
    for (int b = (int)threadIdx.x / 32; b < blocks; b += kThreads / 32)
        pa_wg::tma_load_4d(dst + b * kRows * 128, map, col + 64 * b, row, head, batch, bar);
}

/* Loads the K tile of keys [key0, key0 + 64) (and first the Q tile of rows [row0, row0 + 64)
 * when sq is given), 64-column block b of both completing on bars[b], so that Q K^T can
 * start on the first blocks while the rest stream in.  Lane 0 of warp w arms and issues
 * blocks w, w + 4, ..., Q's block before K's.  (Multicasting them once to all the blocks of
 * a query tile, as a cluster, was 0.69-0.83x: bench/results/2026-11-25-h100-cuda-wgmma-plans.md.) */
template <int kChunks>
__device__ __forceinline__ void load_qk(unsigned char *sq, unsigned char *sk, const TileMaps &maps,
                                        int row0, int key0, int head, int head_kv, int batch,
                                        uint64_t *bars)
{
    if (threadIdx.x % 32) return;
    for (int b = (int)threadIdx.x / 32; b < kChunks; b += kThreads / 32) {
        mbar_expect(&bars[b], (sq ? 2 : 1) * tile_bytes(64));
        if (sq)
            pa_wg::tma_load_4d(sq + b * kRows * 128, &maps.q, 64 * b, row0, head, batch, &bars[b]);
        pa_wg::tma_load_4d(sk + b * kRows * 128, &maps.k, 64 * b, key0, head_kv, batch, &bars[b]);
    }
}

/* Max and sum of 16 values as balanced trees (depth 4, not a chain of 15). */
__device__ __forceinline__ float tree_max(const float (&x)[16])
{
    float m[8];
#pragma unroll
    for (int q = 0; q < 8; ++q)
        m[q] = fmaxf(x[2 * q], x[2 * q + 1]);
#pragma unroll
    for (int w = 4; w > 0; w /= 2)
#pragma unroll
        for (int q = 0; q < w; ++q)
            m[q] = fmaxf(m[q], m[q + w]);
    return m[0];
}
__device__ __forceinline__ float tree_sum(const float (&x)[16])
{
    float m[8];
#pragma unroll
    for (int q = 0; q < 8; ++q)
        m[q] = x[2 * q] + x[2 * q + 1];
#pragma unroll
    for (int w = 4; w > 0; w /= 2)
#pragma unroll
        for (int q = 0; q < w; ++q)
            m[q] += m[q + w];
    return m[0];
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* kSplit: the two blocks of a cluster took alternate key tiles of one query tile and the
 * same 256 columns.  Block s keeps columns [128 s, 128 s + 128) of them: it sends the other
 * block its accumulators of the other half and its row statistics (m, l: l summed over the
 * row's 4 threads), into the other's K tile buffer `buf`, and merges what it receives into
 * its own half, each rescaled to the larger max.  Both then hold the merged statistics. */
constexpr int kSplitSlots = kWide / 8 / 2 + 1; /* 16-byte slots a thread: 16 chunks, stats */
__device__ __forceinline__ void merge_split(float (&acc)[128], float (&m)[2], float (&l)[2],
                                            int split, unsigned char *buf)
{
    const int tid = threadIdx.x;
    pa_cluster_sync(); /* both blocks are done with their K buffers */
    const uint32_t peer = cluster_addr(buf, 1 - split);
#pragma unroll
    for (int j = 0; j < kWide / 8; ++j) /* chunk j: columns 8j + 2 t4, + 1 of both rows */
        if (j / 16 != split)
            st_cluster_v4(peer + (uint32_t)(((j % 16) * kThreads + tid) * 16), acc[4 * j],
                          acc[4 * j + 1], acc[4 * j + 2], acc[4 * j + 3]);
    st_cluster_v4(peer + (uint32_t)((16 * kThreads + tid) * 16), m[0], m[1], l[0], l[1]);
    pa_cluster_sync(); /* the other block's half has landed here */
    const float4 *in = reinterpret_cast<const float4 *>(buf);
    const float4 st = in[16 * kThreads + tid];
    const float pm[2] = {st.x, st.y}, pl[2] = {st.z, st.w};
    float a0[2], a1[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const float mx = fmaxf(m[r], pm[r]), mu = mx == -INFINITY ? 0.f : mx;
        a0[r] = exp2f(m[r] - mu), a1[r] = exp2f(pm[r] - mu);
        l[r] = l[r] * a0[r] + pl[r] * a1[r];
        m[r] = mx;
    }
#pragma unroll
    for (int j = 0; j < kWide / 8; ++j)
        if (j / 16 == split) {
            const float4 v = in[(j % 16) * kThreads + tid];
            acc[4 * j] = acc[4 * j] * a0[0] + v.x * a1[0];
            acc[4 * j + 1] = acc[4 * j + 1] * a0[0] + v.y * a1[0];
            acc[4 * j + 2] = acc[4 * j + 2] * a0[1] + v.z * a1[1];
            acc[4 * j + 3] = acc[4 * j + 3] * a0[1] + v.w * a1[1];
        }
}
#endif

/* kCols: columns of V and O a block owns (kWide or kNarrow); kSplit: the key split. */
template <int D, typename T, int kCols, bool kSplit>
__global__ void __launch_bounds__(kThreads, 1)
    flash_fwd_wgmma_kernel(pa_gpu_args a, const __grid_constant__ TileMaps maps)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int C = D / kCols;      /* blocks a query tile's columns take */
    constexpr int S = kSplit ? 2 : 1; /* blocks its key tiles are dealt to */
    constexpr int kChunks = D / 64;   /* 64-column blocks of Q and K */
    static_assert(kSplitSlots * kThreads * 16 <= tile_bytes(D),
                  "the split's exchange fits a K tile");
    static_assert(!kSplit || kCols == kWide, "the key split merges wide blocks");
    static_assert(D % kCols == 0, "whole blocks of columns");
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char *base = smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u);
    unsigned char *sq = base, *sk = base + tile_bytes(D), *sv = base + 2 * tile_bytes(D);
    /* qk_bars[b]: block b of the Q and K tiles, v_bar: V tiles; phase i & 1 for this
     * block's i-th key tile */
    uint64_t *qk_bars = reinterpret_cast<uint64_t *>(sv + tile_bytes(kCols)),
             *v_bar = qk_bars + kChunks;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
    /* this block's query tile (longest first over all (batch, head) pairs), columns and key
     * tiles (split, split + S, ...; the split is the block's rank in its cluster) */
    const int q_tiles = (a.seq_q + kRows - 1) / kRows, bh = a.batch * a.heads_q;
    const int split = kSplit ? pa_cluster_rank() : 0, unit = (int)blockIdx.x / S;
    const int id = unit / C, rank = unit % C, order = id / bh, pair = id % bh;
    const int qt = a.mask ? q_tiles - 1 - order : order;
    const int batch = pair / a.heads_q, head = pair % a.heads_q;
    const int head_kv = head / (a.heads_q / a.heads_kv);
    const int col0 = rank * kCols;

    const int row0 = qt * kRows;
    const int last_row = min(row0 + kRows, a.seq_q) - 1;
    const int n_tiles = (pa_flash_visible(a, last_row) + kKeys - 1) / kKeys;
    const int first_vis = pa_flash_visible(a, row0); /* key tiles below it need no mask */

    if (tid == 0) {
        pa_wg::tma_prefetch(&maps.o); /* the store's map, ready at the end */
        for (int b = 0; b <= kChunks; ++b)
            pa_wg::bar_init(&qk_bars[b]);
        if (split < n_tiles) mbar_expect(v_bar, tile_bytes(kCols));
    }
    __syncthreads(); /* the barriers are initialised */
    if (split < n_tiles) {
        load_qk<kChunks>(sq, sk, maps, row0, split * kKeys, head, head_kv, batch, qk_bars);
        load_tile(sv, &maps.v, kCols / 64, col0, split * kKeys, head_kv, batch, v_bar);
    }

    /* this thread's rows of the tile (wgmma accumulator layout): 16 * warp + g, and + 8 */
    const int vis[2] = {pa_flash_visible(a, row0 + 16 * warp + g),
                        pa_flash_visible(a, row0 + 16 * warp + g + 8)};
    const float sl2 = a.scale * kLog2e;
    float run_m[2] = {-INFINITY, -INFINITY}, run_l[2] = {0.f, 0.f};
    float acc_o[kCols / 2];
#pragma unroll
    for (int e = 0; e < kCols / 2; ++e)
        acc_o[e] = 0.f;
    const uint32_t q_addr = smem_addr(sq), k_addr = smem_addr(sk), v_addr = smem_addr(sv);

    for (int i = 0, nt = split; nt < n_tiles; ++i, nt += S) { /* i: this block's i-th key tile */
        const int key0 = nt * kKeys;

        /* S = Q K^T: D / 64 blocks of 64 columns, 4 k-steps each, each block as soon as it
         * has landed */
        float s[32];
#pragma unroll
        for (int e = 0; e < 32; ++e)
            s[e] = 0.f;
        pa_wg::fence();
#pragma unroll
        for (int c = 0; c < kChunks; ++c) {
            mbar_wait(&qk_bars[c], i & 1);
#pragma unroll
            for (int kk = 0; kk < 4; ++kk) {
                const uint32_t off = (uint32_t)(c * kRows * 128 + kk * 32);
                pa_wg::Mma<T>::ss_m64n64k16(s, pa_wg::desc(q_addr + off, 16, pa_wg::kGroupBytes),
                                            pa_wg::desc(k_addr + off, 16, pa_wg::kGroupBytes), 1);
            }
        }
        pa_wg::commit();
        pa_wg::wait<0>();
        __syncthreads(); /* every warp's part of the product is done: K's buffer is free */
        if (nt + S < n_tiles)
            load_qk<kChunks>(nullptr, sk, maps, row0, key0 + S * kKeys, head, head_kv, batch,
                             qk_bars);

        /* online softmax of rows g (r = 0) and g + 8 (r = 1): 4 threads a row; the max and
         * the sum as trees (a single warp per scheduler hides no latency), exp2 as the
         * bare MUFU instruction */
        const bool need_mask = key0 + kKeys > first_vis;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float x[16];
#pragma unroll
            for (int j = 0; j < 8; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e)
                    x[2 * j + e] = (!need_mask || key0 + 8 * j + 2 * t4 + e < vis[r])
                                       ? s[4 * j + 2 * r + e] * sl2
                                       : -INFINITY;
            float mx = tree_max(x);
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = mx > run_m[r] + kRescaleSlack ? mx : run_m[r]; /* lazy */
            const float m_use = m_new == -INFINITY ? 0.f : m_new;
            const float alpha = pa_wg::exp2_approx(run_m[r] - m_use);
#pragma unroll
            for (int e = 0; e < 16; ++e)
                x[e] = pa_wg::exp2_approx(x[e] - m_use);
#pragma unroll
            for (int j = 0; j < 8; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e)
                    s[4 * j + 2 * r + e] = x[2 * j + e];
            run_l[r] = run_l[r] * alpha + tree_sum(x); /* this lane's part of the row */
            run_m[r] = m_new;
            /* O is still zero at the first key tile; later most tiles leave every alpha 1 */
            if (i > 0 && !__all_sync(0xffffffffu, alpha == 1.f)) {
#pragma unroll
                for (int j = 0; j < kCols / 8; ++j) {
                    acc_o[4 * j + 2 * r] *= alpha;
                    acc_o[4 * j + 2 * r + 1] *= alpha;
                }
            }
        }

        mbar_wait(v_bar, i & 1); /* V(nt) landed */

        /* O += P V: the scores' accumulator layout is the A-fragment layout of the product */
        uint32_t pf[kKeys / 16][4];
#pragma unroll
        for (int kk = 0; kk < kKeys / 16; ++kk)
#pragma unroll
            for (int q = 0; q < 4; ++q)
                pf[kk][q] = Dt<T>::pack(s[8 * kk + 2 * q], s[8 * kk + 2 * q + 1]);
        pa_wg::fence();
#pragma unroll
        for (int kk = 0; kk < kKeys / 16; ++kk)
            pa_wg::rs_m64nk16<T, kCols>(
                acc_o, pf[kk],
                pa_wg::desc(v_addr + (uint32_t)(kk * 2 * pa_wg::kGroupBytes), kKeys * 128,
                            pa_wg::kGroupBytes),
                1);
        pa_wg::commit();
        pa_wg::wait<0>();
        __syncthreads(); /* V's buffer is free */
        if (nt + S < n_tiles) {
            if (tid == 0) mbar_expect(v_bar, tile_bytes(kCols));
            load_tile(sv, &maps.v, kCols / 64, col0, key0 + S * kKeys, head_kv, batch, v_bar);
        }
    }

    float row_l[2]; /* the rows' sums (over their 4 threads) */
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        row_l[r] = run_l[r];
        row_l[r] += __shfl_xor_sync(0xffffffffu, row_l[r], 1);
        row_l[r] += __shfl_xor_sync(0xffffffffu, row_l[r], 2);
    }
    /* columns this block writes: chunks [j0, j0 + kOut / 8) of its 256 */
    constexpr int kOut = kCols / S;
    const int j0 = split * (kOut / 8);
    if constexpr (kSplit) merge_split(acc_o, run_m, row_l, split, sk);

    /* O / l, staged in the swizzled layout (the Q tile's first kOut * 128 bytes): each warp
     * stages its 16 rows one 64-column block at a time and stores each block by TMA as soon
     * as it is staged, so that the stores (~27 bytes a cycle: a 32 KB tile took ~1200
     * cycles, measured at commit 01f76f6) overlap the staging of the next blocks. */
    unsigned char *stage = sq;
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const float l = row_l[r];
        inv[r] = pa_gpu_row_inv(l, vis[r] > 0);
        const int row = row0 + 16 * warp + g + 8 * r;
        if (rank == 0 && split == 0 && t4 == 0 && a.lse && row < a.seq_q)
            a.lse[((int64_t)batch * a.heads_q + head) * a.seq_q + row] =
                pa_gpu_row_lse((run_m[r] + log2f(l)) * kLn2, l, vis[r] > 0);
    }
#pragma unroll
    for (int cb = 0; cb < kCols / 64; ++cb) { /* 64-column block: chunks 8 cb .. 8 cb + 7 */
        if (cb / (kOut / 64) != split) continue;
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
            for (int j = 8 * cb; j < 8 * cb + 8; ++j) /* columns 8j + 2 t4, + 1 of the row */
                *reinterpret_cast<uint32_t *>(
                    stage + pa_wg::chunk_offset(kRows, 16 * warp + g + 8 * r, j - j0) + 4 * t4) =
                    Dt<T>::pack(acc_o[4 * j + 2 * r] * inv[r], acc_o[4 * j + 2 * r + 1] * inv[r]);
        pa_wg::fence_async_shared(); /* the staged block is visible to the TMA store */
        __syncwarp();
        if (lane == 0)
            pa_wg::tma_store_4d(&maps.o, stage + (cb - j0 / 8) * kRows * 128 + 16 * warp * 128,
                                col0 + 64 * cb, row0 + 16 * warp, head, batch);
    }
    if (lane == 0) pa_wg::tma_store_wait(); /* the staging smem is read before the block exits */
#else
    (void)a;
    __trap(); /* launched on sm_90 only, where the sm_90a image runs */
#endif
}

template <int D, typename T, int kCols, bool kSplit>
cudaError_t launch(const pa_gpu_args &a, cudaStream_t stream)
{
    auto kernel = flash_fwd_wgmma_kernel<D, T, kCols, kSplit>;
    constexpr size_t smem = smem_bytes<D, kCols>();
    static unsigned long long attr_done = 0;
    cudaError_t e = smem_attr_once(kernel, smem, attr_done);
    if (e != cudaSuccess) return e;
    TileMaps maps;
    if ((e = pa_tma::make_map(&maps.q, a.q, a.dtype, D, a.seq_q, a.heads_q, a.batch, a.q_stride,
                              kRows)) != cudaSuccess ||
        (e = pa_tma::make_map(&maps.k, a.k, a.dtype, D, a.seq_kv, a.heads_kv, a.batch, a.k_stride,
                              kKeys)) != cudaSuccess ||
        (e = pa_tma::make_map(&maps.v, a.v, a.dtype, D, a.seq_kv, a.heads_kv, a.batch, a.v_stride,
                              kKeys)) != cudaSuccess ||
        (e = pa_tma::make_map(&maps.o, a.o, a.dtype, D, a.seq_q, a.heads_q, a.batch, a.o_stride,
                              16)) != cudaSuccess)
        return e;
    const int q_tiles = (a.seq_q + kRows - 1) / kRows;
    const unsigned blocks = (kSplit ? 2 : 1) * D / kCols * q_tiles * a.heads_q * a.batch;
    if (kSplit) { /* 2-block clusters */
        e = launch_pairs(kernel, blocks, kThreads, smem, stream, a, maps);
        if (e != cudaSuccess) return e;
    } else {
        kernel<<<blocks, kThreads, smem, stream>>>(a, maps);
    }
    return cudaGetLastError();
}

template <int D, typename T>
cudaError_t launch_plan(const pa_gpu_args &a, int plan, cudaStream_t stream)
{
    switch (plan) {
    case PA_WGMMA_WIDE: return launch<D, T, kWide, false>(a, stream);
    case PA_WGMMA_NARROW: return launch<D, T, kNarrow, false>(a, stream);
    case PA_WGMMA_KEY_SPLIT: return launch<D, T, kWide, true>(a, stream);
    default: return cudaErrorInvalidValue;
    }
}

/* The family's head dims, the one list that generates dispatch, "supported?" and the
 * shared-memory size (2 or 3 wide blocks of 256 columns a query tile; at 1024 the Q and K
 * tiles would not fit shared memory). */
#define PA_FLASH_WGMMA_HEAD_DIMS(X) X(512) X(768)

template <typename T>
cudaError_t dispatch(const pa_gpu_args &a, int plan, cudaStream_t stream)
{
#define PA_CASE(d)                                                                                 \
    case d: return launch_plan<d, T>(a, plan, stream);
    switch (a.head_dim) {
        PA_FLASH_WGMMA_HEAD_DIMS(PA_CASE)
    default: return cudaErrorInvalidValue;
    }
#undef PA_CASE
}

} // namespace

extern "C" int pa_cuda_flash_wgmma_has_head_dim(int head_dim)
{
#define PA_CASE(d) case d:
    switch (head_dim) {
        PA_FLASH_WGMMA_HEAD_DIMS(PA_CASE) return 1;
    default: return 0;
    }
#undef PA_CASE
}

extern "C" size_t pa_cuda_flash_wgmma_smem(int head_dim) /* the wide plans', the largest */
{
#define PA_CASE(d)                                                                                 \
    case d: return smem_bytes<d, kWide>();
    switch (head_dim) {
        PA_FLASH_WGMMA_HEAD_DIMS(PA_CASE)
    default: return 0;
    }
#undef PA_CASE
}

extern "C" int pa_cuda_flash_wgmma(const pa_gpu_args *a, int plan, void *stream)
{
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (a->dtype == 1) return (int)dispatch<__half>(*a, plan, s);
    if (a->dtype == 2) return (int)dispatch<__nv_bfloat16>(*a, plan, s);
    return (int)cudaErrorInvalidValue;
}
