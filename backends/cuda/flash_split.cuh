/*
 * Balanced key-tile schedule of the wide flash forward kernels (head dims 512..1024: the
 * tensor-core f16/bf16 kernel and the 3xTF32 f32 kernel).
 *
 * With causal masks and few (batch, head) pairs the grid of query tiles is about one wave
 * and query tile i walks i + 1 key tiles: the longest block sets the time while the SMs
 * of the short ones idle (Nsight: a third of the SM cycles at 1x4096, D 1024).  The
 * balanced schedule lays every (batch, head, query tile, key tile) "unit" on one line,
 * query tiles longest and shortest alternately (last, first, second last, second, ...; a
 * block never collects a run of short tiles, each with its own Q load, pipeline fill and
 * epilogue: 1.23-1.34x at 1x4096 and 2x2048, f16/bf16, measured), and gives block b the
 * units [b*chunk, (b+1)*chunk): every block does the same number of key tiles, walking
 * from one query tile into the next.  A block that covers a whole query tile writes its O;
 * a query tile cut between blocks has one piece per block, each written (normalised, with
 * its log-sum-exp) to a partial slot: slot 2b for the piece that starts block b, 2b + 1
 * for the piece that ends it.  Each block records the cut tile that starts in it (if any),
 * and pa_cuda_flash_combine merges each cut tile's pieces.  A query tile that sees no key
 * counts one unit (its block writes zeros).  Memory: 2 slots and a record per block:
 * O(blocks * tile rows * head_dim).
 *
 * Key halves (sm_90+, instead of the balanced schedule or the unsplit grid where they pay):
 * each query tile runs on a 2-block cluster, block r walking key tiles r, r + 2, ... (the
 * clusters of one (batch, head) then stream the same K/V tiles at about the same time:
 * 1.00-1.01x over contiguous halves, session 7 call 4); at the end
 * block 1 hands its O accumulators and row statistics to block 0 through distributed shared
 * memory and block 0 merges and writes the tile (no workspace, no combine): the longest
 * chain of key tiles halves.  Clusters run as a 1-D grid, longest query tiles first over all
 * (batch, head) pairs, in waves when they do not all fit (pa_flash_halves_fit: where it pays,
 * up to two waves).
 *
 * Column halves (sm_90+, instead of the above where they pay): each query tile runs on a
 * 2-block cluster, block r owning head-dim columns [r*D/2, (r+1)*D/2) of Q, K, V and O and
 * walking every key tile.  Per key tile each block sums its partial scores Q K^T over its
 * columns, hands them to the other block through distributed shared memory and adds the
 * other's (pa_flash_col_exchange): both then hold the same scores and run the same
 * softmax, and each accumulates and writes its own columns of O (no merge, no workspace).
 * A block streams half of each K/V tile and its tiles fit more keys (f32 at D 1024: 32
 * instead of 8), for one score exchange per key tile.
 */
#ifndef POLYATTN_CUDA_FLASH_SPLIT_H
#define POLYATTN_CUDA_FLASH_SPLIT_H

#include "../gpu/gpu_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PA_FLASH_TILE_M 32 /* query rows per block of every wide kernel */

typedef struct pa_flash_split {
    int tile_m;   /* query rows per query tile (PA_FLASH_TILE_M for the wide kernels) */
    int chunk;    /* key tiles (units) per block; 0: no split, grid (q tiles, heads, batch) */
    int key_tile; /* keys per key tile of the kernel */
    int q_tiles;  /* query tiles per (batch, head) */
    int units;    /* units per (batch, head): key tiles of every query tile, at least one each */
    int blocks;   /* blocks of the balanced launch */
    int slots;    /* partial slots: 2 per block */
    int dependent_combine; /* launch the combine as a programmatic dependent (sm_90+);
                            * set by the backend from the device, 0 from the planner */
    int key_halves;        /* with chunk 0: 2-block clusters split each query tile's key
                            * tiles, block r taking tiles r, r + 2, ... (sm_90+; set by the
                            * backend, 0 from the planner) */
    int col_halves;        /* with chunk 0 and no key halves: 2-block clusters split the head
                            * dim, block r owning columns [r*D/2, (r+1)*D/2) (sm_90+; set by
                            * the backend, 0 from the planner) */
    int wgmma;             /* the warpgroup-MMA kernel (flash_wgmma.h) instead of all the
                            * above (sm_90; set by the backend, 0 from the planner) */
    int wgmma_plan;        /* with wgmma: its pa_wgmma_plan */
    void *part;   /* workspace: O [slot][tile_m][head_dim_v] in the storage dtype (f32 for
                   * f32; f16/bf16 for those: the output is rounded to it anyway), then LSE
                   * (log2 domain, f32) [slot][tile_m], then a record per block */
} pa_flash_split;

/* Chooses the schedule for a kernel with query tiles of tile_m rows and key tiles of
 * key_tile keys on `sms` SMs (one block per SM).  force: < 0 automatic, 0 never split,
 * > 0 that many key tiles per block. */
void pa_flash_split_plan(const pa_gpu_args *a, int tile_m, int key_tile, int sms, int force,
                         pa_flash_split *s);
/* Whether key halves should replace the plan s (split or not) on `sms` SMs: some query tile
 * has two key tiles or more and (unless forced) the measured rule of flash_split.cu says
 * they pay. */
int pa_flash_halves_fit(const pa_gpu_args *a, const pa_flash_split *s, int sms, int force);
/* Whether column halves should replace the plan on `sms` SMs, with the column-halves
 * kernel's key tiles of key_tile keys: forced, or the measured rule of flash_split.cu says
 * they pay. */
int pa_flash_col_halves_fit(const pa_gpu_args *a, int key_tile, int sms, int force);
/* Workspace bytes the plan needs (0 without a split). */
uint64_t pa_flash_split_bytes(const pa_gpu_args *a, const pa_flash_split *s);
/* Merges the partial slots into O (and LSE); returns the cudaError_t of the launch. */
int pa_cuda_flash_combine(const pa_gpu_args *a, const pa_flash_split *s, void *stream);

#ifdef __cplusplus
}

/* ---- device side of the schedule (shared by the kernels and the combine) ---- */
#ifdef __CUDACC__
#include "tc_common.cuh"

__host__ __device__ __forceinline__ int pa_flash_visible(const pa_gpu_args &a, int query)
{
    int n = a.seq_kv;
    if (a.mask == 1)
        n = query + 1;
    else if (a.mask == 2)
        n = query + 1 + (a.seq_kv - a.seq_q);
    return n < 0 ? 0 : (n > a.seq_kv ? a.seq_kv : n);
}

/* Key tiles query tile qt walks. */
__host__ __device__ __forceinline__ int pa_flash_tiles(const pa_gpu_args &a,
                                                       const pa_flash_split &s, int qt)
{
    int last = (qt + 1) * s.tile_m;
    last = (last < a.seq_q ? last : a.seq_q) - 1;
    return (pa_flash_visible(a, last) + s.key_tile - 1) / s.key_tile;
}

/* Units of query tile qt on the schedule's line: its key tiles, at least one. */
__host__ __device__ __forceinline__ int pa_flash_units(const pa_gpu_args &a,
                                                       const pa_flash_split &s, int qt)
{
    const int n = pa_flash_tiles(a, s, qt);
    return n > 0 ? n : 1;
}

/* Slot of block b's piece of a query tile that starts at unit `first`. */
__host__ __device__ __forceinline__ int pa_flash_piece_slot(const pa_flash_split &s, int first,
                                                            int b)
{
    return 2 * b + (b == first / s.chunk && first % s.chunk != 0 ? 1 : 0);
}

/* What one segment of a block does: key tiles t0, t0 + step, ... below t1 of query tile qt
 * of (batch, head) (step 2 only for key halves); slot >= 0: write the partial
 * result there, else write O directly. */
struct pa_flash_work {
    int batch, head, qt, t0, t1, step, slot;
    int first, units; /* the query tile's first unit on the line, and its units */
};

/* What block b tells the combine: the query tile that starts in b and runs past its end
 * (a cut tile; at most one per block: only b's last segment can run past its end), or
 * bh = -1.  One per block, written by every block, so the workspace needs no clearing;
 * the combine merges each cut tile once, from its record. */
struct pa_flash_record {
    int bh, qt, first, units;
};
__host__ __device__ __forceinline__ pa_flash_record *pa_flash_records(const pa_gpu_args &a,
                                                                     const pa_flash_split &s)
{
    const size_t es = a.dtype == 0 ? 4 : 2;
    const size_t bytes = (size_t)s.slots * s.tile_m * (a.head_dim_v * es + sizeof(float));
    return reinterpret_cast<pa_flash_record *>(static_cast<char *>(s.part) + bytes);
}
/* Updates a block's record with its segment w (called for each segment). */
__host__ __device__ __forceinline__ void pa_flash_note(const pa_gpu_args &a, const pa_flash_work &w,
                                                       pa_flash_record &rec)
{
    if (w.slot >= 0 && w.t0 == 0) /* starts here, cut: it runs past the block's end */
        rec = {w.batch * a.heads_q + w.head, w.qt, w.first, w.units};
}

/* The query tile at position i of a (batch, head)'s stretch of the line: the longest and
 * the shortest alternate (last and first query tiles, inward), so that no block collects a
 * run of short query tiles, each a segment with its own Q load, pipeline fill and epilogue. */
__host__ __device__ __forceinline__ int pa_flash_line_tile(const pa_flash_split &s, int i)
{
    return (i & 1) ? i / 2 : s.q_tiles - 1 - i / 2;
}

/* Finds the query tile that contains unit u of the line: its (batch*head) index bh, its
 * place pos on that stretch, the tile qt there, its units n and its first unit `first`. */
struct pa_flash_place {
    int bh, pos, qt, n;
    long long first;
};
__host__ __device__ __forceinline__ pa_flash_place pa_flash_locate(const pa_gpu_args &a,
                                                                   const pa_flash_split &s,
                                                                   long long u)
{
    pa_flash_place p;
    p.bh = (int)(u / s.units);
    int r = (int)(u % s.units);
    p.pos = 0, p.qt = pa_flash_line_tile(s, 0), p.n = pa_flash_units(a, s, p.qt);
    while (r >= p.n) { /* at most q_tiles steps: the planner keeps q_tiles small */
        r -= p.n;
        p.qt = pa_flash_line_tile(s, ++p.pos);
        p.n = pa_flash_units(a, s, p.qt);
    }
    p.first = u - r;
    return p;
}

/* The segments of block `id` of the balanced schedule (s.chunk > 0), in order: segment(w)
 * for each.  Host-callable, so tests/cuda/test_flash_schedule.cu checks the walk on the
 * CPU. */
#pragma nv_exec_check_disable /* segment: a device lambda in the kernels, a host one in the test */
template <typename F>
__host__ __device__ __forceinline__ void pa_flash_walk(const pa_gpu_args &a,
                                                       const pa_flash_split &s, int id,
                                                       F &&segment)
{
    pa_flash_work w;
    const long long total = (long long)a.batch * a.heads_q * s.units;
    const long long start = (long long)id * s.chunk;
    const long long end = start + s.chunk < total ? start + s.chunk : total;
    long long u = start;
    const pa_flash_place p = pa_flash_locate(a, s, start);
    int bh = p.bh, pos = p.pos, qt = p.qt, n = p.n, r = (int)(u - p.first);
    while (u < end) {
        const int len = (int)(end - u < n - r ? end - u : n - r);
        const int first = (int)(u - r); /* the query tile's first unit on the line */
        const int tiles = pa_flash_tiles(a, s, qt);
        w.batch = bh / a.heads_q, w.head = bh % a.heads_q, w.qt = qt;
        w.t0 = r < tiles ? r : tiles;
        w.t1 = r + len < tiles ? r + len : tiles;
        w.step = 1;
        w.slot = r == 0 && len == n ? -1 : pa_flash_piece_slot(s, first, id);
        w.first = first, w.units = n;
        segment(w);
        u += len, r = 0;
        if (++pos == s.q_tiles) pos = 0, ++bh;
        qt = pa_flash_line_tile(s, pos);
        if (u < end) n = pa_flash_units(a, s, qt);
    }
}

#ifdef PA_FLASH_TIMELINE
#include <cstdio>
/* Diagnostic builds only (-DPA_FLASH_TIMELINE): every block prints one line when it ends,
 *   TL <ticket> <grid blocks> <sm> <block> <batch*1000+head> <query tile> <t0> <t1>
 *      <segments> <start ns> <end ns>
 * (first segment's tile and key tiles; globaltimer nanoseconds).  Tickets count blocks
 * over all launches, so ticket / grid blocks numbers the launch; bench/gpu/timeline.py
 * summarises the last one. */
static __device__ unsigned int pa_flash_tl_ticket;
struct pa_flash_timeline {
    unsigned long long start;
    pa_flash_work first;
    int segments;
    __device__ pa_flash_timeline() : segments(0)
    {
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(start));
    }
    __device__ void note(const pa_flash_work &w)
    {
        if (!segments++) first = w;
    }
    __device__ ~pa_flash_timeline()
    {
        __syncthreads();
        if (threadIdx.x != 0) return;
        unsigned long long end;
        unsigned int sm;
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(end));
        asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
        const unsigned int blocks = gridDim.x * gridDim.y * gridDim.z;
        const unsigned int id = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
        printf("TL %u %u %u %u %d %d %d %d %d %llu %llu\n", atomicAdd(&pa_flash_tl_ticket, 1u),
               blocks, sm, id, first.batch * 1000 + first.head, first.qt, first.t0, first.t1,
               segments, start, end);
    }
};
#endif

#ifdef PA_FLASH_PHASES
#include <cstdio>
/* Diagnostic builds only (-DPA_FLASH_PHASES): thread 0 of a block notes the SM clock at marks
 * inside a segment and prints, at the segment's end, one line a key tile:
 *   PH <block> <query tile> <key tiles> <tile> <cycles since the previous mark, each mark>
 * and a last line with tile -1: cycles from the segment's start to its first mark, and from
 * its last mark to the end.  Only the first kMarks marks of a segment are kept. */
struct pa_flash_phases {
    static constexpr int kPerTile = 6, kMarks = 8 * kPerTile;
    long long last;
    int n, first, deltas[kMarks];
    __device__ static long long now()
    {
        long long t;
        asm volatile("mov.u64 %0, %%clock64;" : "=l"(t)::"memory");
        return t;
    }
    __device__ void begin() { last = now(), n = 0, first = 0; }
    __device__ void mark()
    {
        const long long t = now();
        if (n == 0) first = (int)(t - last);
        else if (n - 1 < kMarks) deltas[n - 1] = (int)(t - last);
        ++n, last = t;
    }
    __device__ void print(const pa_flash_work &w)
    {
        if (threadIdx.x != 0) return;
        const int tiles = (w.t1 - w.t0 + w.step - 1) / w.step;
        const int kept = n - 1 < kMarks ? n - 1 : kMarks;
        /* deltas[i]: mark i+1 after mark i; line t starts with the first mark of tile t */
        for (int t = 0; t * kPerTile < kept + 1; ++t) {
            int d[kPerTile];
            for (int j = 0; j < kPerTile; ++j) {
                const int i = t * kPerTile + j - 1;
                d[j] = i < 0 ? first : (i < kept ? deltas[i] : -1);
            }
            printf("PH %d %d %d %d %d %d %d %d %d %d\n", (int)blockIdx.x, w.qt, tiles, t, d[0], d[1],
                   d[2], d[3], d[4], d[5]);
        }
        printf("PH %d %d %d -1 %d %d\n", (int)blockIdx.x, w.qt, tiles, first, (int)(now() - last));
    }
};
#define PA_PHASE_BEGIN(p) (p).begin()
#define PA_PHASE_MARK(p) (p).mark()
#define PA_PHASE_PRINT(p, w) (p).print(w)
#else
struct pa_flash_phases {
};
#define PA_PHASE_BEGIN(p) ((void)(p))
#define PA_PHASE_MARK(p) ((void)(p))
#define PA_PHASE_PRINT(p, w) ((void)(p))
#endif

/* Runs segment(w) for every segment of this block, in order: one query tile without a
 * split, else the balanced walk.  The caller synchronises the block between segments where
 * its segment code needs it. */
template <typename F>
__device__ __forceinline__ void pa_flash_schedule(const pa_gpu_args &a, const pa_flash_split &s,
                                                  F &&run_segment)
{
#ifdef PA_FLASH_TIMELINE
    pa_flash_timeline tl;
    auto segment = [&](const pa_flash_work &w) {
        tl.note(w);
        run_segment(w);
    };
#else
    auto &segment = run_segment;
#endif
    if (!s.chunk && !s.key_halves && !s.col_halves) { /* one block per query tile, longest first */
        pa_flash_work w;
        w.qt = a.mask ? (int)gridDim.x - 1 - (int)blockIdx.x : (int)blockIdx.x;
        w.head = blockIdx.y, w.batch = blockIdx.z;
        w.t0 = 0, w.t1 = pa_flash_tiles(a, s, w.qt), w.step = 1, w.slot = -1;
        w.first = 0, w.units = w.t1;
        segment(w);
        return;
    }
    if (!s.chunk) { /* key or column halves: a 1-D grid of clusters, longest query tiles first
                     * over all (batch, head) pairs (more clusters than fit run in waves) */
        pa_flash_work w;
        const int bh = a.batch * a.heads_q, id = (int)blockIdx.x / 2, rank = (int)blockIdx.x % 2;
        const int order = id / bh, pair = id % bh;
        w.qt = a.mask ? s.q_tiles - 1 - order : order;
        w.batch = pair / a.heads_q, w.head = pair % a.heads_q;
        const int n = pa_flash_tiles(a, s, w.qt);
        if (s.key_halves)
            w.t0 = rank, w.t1 = n, w.step = 2; /* block r: key tiles r, r + 2, ... */
        else
            w.t0 = 0, w.t1 = n, w.step = 1; /* column halves: every key tile */
        w.slot = -1, w.first = 0, w.units = n;
        segment(w);
        return;
    }
    pa_flash_record rec = {-1, 0, 0, 0};
    pa_flash_walk(a, s, blockIdx.x, [&](const pa_flash_work &w) {
        pa_flash_note(a, w, rec);
        segment(w);
    });
    if (threadIdx.x == 0) pa_flash_records(a, s)[blockIdx.x] = rec;
}

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
/* This block's rank in its cluster (0 or 1 in the 2-block clusters of the halves). */
__device__ __forceinline__ int pa_cluster_rank()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    uint32_t rank;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(rank));
    return (int)rank;
#else
    return 0;
#endif
}

__device__ __forceinline__ void pa_cluster_sync()
{
    asm volatile("barrier.cluster.arrive.release.aligned;\n"
                 "barrier.cluster.wait.acquire.aligned;\n" ::
                     : "memory");
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
        const uint32_t peer_vals = pa_tc::cluster_addr(vals, 0), peer_stats = pa_tc::cluster_addr(stats, 0);
#pragma unroll
        for (int q = 0; q < kGroups; ++q) {
            const float *v = acc[q / J][q % J];
            pa_tc::st_cluster_v4(peer_vals + (uint32_t)((q * threads + tid) * 16), v[0], v[1], v[2], v[3]);
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
                    acc[mt][j][2 * r + e] = acc[mt][j][2 * r + e] * s0 +
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
 * for the K/V copies in flight (column halves at 0.5-0.7x, session 8 call 1), and no fence at
 * cluster scope either.  Two buffers and barriers alternate by key tile: a block sends tile
 * i's scores into the buffer the other read at tile i - 2, and it gets there only after the
 * other's scores of tile i - 1 arrived, which the other sends after a block barrier that
 * follows its reads of tile i - 2. */
template <int BM, int BN>
struct pa_flash_col_exchange {
    static constexpr uint32_t kTileBytes = BM * BN * 4;
    static constexpr size_t kBytes = 2 * (size_t)kTileBytes + 16; /* 16-byte aligned base */
    float *recv;   /* [2][BM][BN] */
    uint64_t *bar; /* [2] */
    int tiles;     /* key tiles of the segment (the same in both blocks) */

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
                asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(pa_tc::smem_addr(bar + p))
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
        const uint32_t dst = pa_tc::cluster_addr(mine, (int)other), dst_bar = pa_tc::cluster_addr(bar + p, (int)other);
        if constexpr (KPT == 4)
            asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.f32 [%0], {%1, %2, %3, %4}, [%5];\n" ::"r"(dst),
                         "f"(x[0]), "f"(x[1]), "f"(x[2]), "f"(x[3]), "r"(dst_bar)
                         : "memory");
        else if constexpr (KPT == 2)
            asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v2.f32 [%0], {%1, %2}, [%3];\n" ::"r"(dst),
                         "f"(x[0]), "f"(x[1]), "r"(dst_bar)
                         : "memory");
        else
            asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.f32 [%0], %1, [%2];\n" ::"r"(dst),
                         "f"(x[0]), "r"(dst_bar)
                         : "memory");
        /* Default semantics (acquire at CTA scope), as transaction barriers that wait for bytes
         * other blocks deliver are used; acquire.cluster cost a memory barrier a key tile
         * (session 8 calls 9-10: f32 16x128 1.06x without it). */
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
__device__ __forceinline__ void pa_flash_end_segment(const pa_gpu_args &a,
                                                     const pa_flash_split &s,
                                                     const pa_flash_work &w, T *o,
                                                     const float (&acc)[2][J][4], float run_m,
                                                     float run_l, int sr, bool stats_owner,
                                                     float *s_m, float *s_l, T *stage,
                                                     int stage_stride, int col0, int g, int t4,
                                                     bool write_lse = true)
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
            const float inv = l > 0.f ? 1.f / l : 0.f;
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
            float *pl = reinterpret_cast<float *>(static_cast<T *>(s.part) +
                                                  (int64_t)s.slots * BM * D) +
                        (int64_t)w.slot * BM;
            pl[lrow] = l > 0.f ? s_m[lrow] + log2f(l) : -INFINITY;
        } else if (a.lse && write_lse) {
            a.lse[((int64_t)w.batch * a.heads_q + w.head) * a.seq_q + row] =
                l > 0.f ? (s_m[lrow] + log2f(l)) * pa_tc::kLn2 : -INFINITY;
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
        return pa_tc::launch_pairs(kernel, 2 * s.q_tiles * a.heads_q * a.batch, Tr::kThreads, Tr::kSmem, stream,
                                   a, s);
    const dim3 grid(s.q_tiles, a.heads_q, a.batch);
    kernel<<<grid, Tr::kThreads, Tr::kSmem, stream>>>(a, s);
    return cudaGetLastError();
}
#endif
#endif
#endif
