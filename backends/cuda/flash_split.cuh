/*
 * Device side of the wide flash kernels' schedules (flash_split.h): the balanced walk of key
 * tiles over blocks, key and column halves, shared by the kernels, the combine and the CPU
 * test of the walk (tests/cuda/test_flash_schedule.cu).
 */
#ifndef POLYATTN_CUDA_FLASH_SPLIT_CUH
#define POLYATTN_CUDA_FLASH_SPLIT_CUH

#include "flash_split.h"
#include "tc_common.cuh"

__host__ __device__ __forceinline__ int pa_flash_visible(const pa_gpu_args &a, int query)
{
    int n = a.seq_kv;
    if (a.mask == 1) n = query + 1;
    else if (a.mask == 2) n = query + 1 + (a.seq_kv - a.seq_q);
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
                                                       const pa_flash_split &s, int id, F &&segment)
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

/* Runs segment(w) for every segment of this block, in order: one query tile without a
 * split, else the balanced walk.  The caller synchronises the block between segments where
 * its segment code needs it. */
template <typename F>
__device__ __forceinline__ void pa_flash_schedule(const pa_gpu_args &a, const pa_flash_split &s,
                                                  F &&run_segment)
{
    auto &segment = run_segment;
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
        if (s.key_halves) w.t0 = rank, w.t1 = n, w.step = 2; /* block r: key tiles r, r + 2, ... */
        else w.t0 = 0, w.t1 = n, w.step = 1;                 /* column halves: every key tile */
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

#endif
