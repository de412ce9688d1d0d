/*
 * Split-key scheduling of the wide flash forward kernels (head dims 512..1024: the
 * tensor-core f16/bf16 kernel and the 3xTF32 f32 kernel).
 *
 * With causal masks and few (batch, head) pairs the grid of query tiles is about one wave
 * and query tile i walks i + 1 key tiles: the longest block sets the time while half the
 * SMs idle.  With a split, query tile i's n_i key tiles are cut into k_i = ceil(n_i /
 * chunk) parts of near-equal length; each part is one block, which writes its O
 * (normalised, f32) and its log-sum-exp to a slot of the workspace, and
 * pa_cuda_flash_combine merges the slots.  A query tile with one part writes O directly.
 * Blocks are ordered roughly longest first (the last parts of the most-split tiles first,
 * the unsplit short tiles last) so the hardware's in-order dispatch packs the SMs.  Memory stays
 * O(batch * heads * seq * head_dim): at most PA_FLASH_MAX_SPLITS slots per query row.
 */
#ifndef POLYATTN_CUDA_FLASH_SPLIT_H
#define POLYATTN_CUDA_FLASH_SPLIT_H

#include "../gpu/gpu_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PA_FLASH_TILE_M 32    /* query rows per block of every wide kernel */
#define PA_FLASH_MAX_SPLITS 8 /* caps the workspace at 8 f32 copies of O */

typedef struct pa_flash_split {
    int tile_m;     /* query rows per scheduled tile (PA_FLASH_TILE_M for the wide kernels) */
    int chunk;      /* key tiles per split; 0: no split, grid (q tiles, heads, batch) */
    int key_tile;   /* keys per key tile of the kernel */
    int q_tiles;    /* query tiles per (batch, head) */
    int max_splits; /* splits of the longest query tile */
    int slots;      /* partial slots per (batch, head): sum of the splits of split tiles */
    void *part;     /* workspace: O [bh][slot][tile_m][head_dim_v] in the storage dtype (f32
                     * for f32, f16/bf16 for those: the output is rounded to it anyway),
                     * then LSE (log2 domain, f32) [bh][slot][tile_m] */
} pa_flash_split;

/* Chooses the chunk for a kernel with query tiles of tile_m rows and key tiles of key_tile
 * keys on `sms` SMs (one block per SM).  force: < 0 automatic, 0 never split, > 0 that
 * chunk. */
void pa_flash_split_plan(const pa_gpu_args *a, int tile_m, int key_tile, int sms, int force,
                         pa_flash_split *s);
/* Workspace bytes the plan needs (0 without a split). */
uint64_t pa_flash_split_bytes(const pa_gpu_args *a, const pa_flash_split *s);
/* Grid of the split kernel launch (blocks in x). */
int pa_flash_split_blocks(const pa_gpu_args *a, const pa_flash_split *s);
/* Merges the partial slots into O (and LSE); returns the cudaError_t of the launch. */
int pa_cuda_flash_combine(const pa_gpu_args *a, const pa_flash_split *s, void *stream);

#ifdef __cplusplus
}

/* ---- device side of the schedule (shared by the kernels and the combine) ---- */
#ifdef __CUDACC__
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

__host__ __device__ __forceinline__ int pa_flash_splits(const pa_flash_split &s, int n)
{
    return s.chunk && n > s.chunk ? (n + s.chunk - 1) / s.chunk : 1;
}

/* First slot of query tile qt within its (batch, head). */
__host__ __device__ __forceinline__ int pa_flash_slot_base(const pa_gpu_args &a,
                                                           const pa_flash_split &s, int qt)
{
    int base = 0;
    for (int i = 0; i < qt; ++i) {
        const int k = pa_flash_splits(s, pa_flash_tiles(a, s, i));
        base += k > 1 ? k : 0;
    }
    return base;
}

/* What one block does: key tiles [t0, t1) of query tile qt of (batch, head); slot >= 0:
 * write the partial result there (global slot index), else write O directly. */
struct pa_flash_work {
    int batch, head, qt, t0, t1, slot;
};

/* id: the block's (or cluster's) index along x, of count along x. */
__device__ __forceinline__ bool pa_flash_decode_at(const pa_gpu_args &a, const pa_flash_split &s,
                                                   pa_flash_work &w, int id, int count)
{
    if (!s.chunk) {
        w.qt = a.mask ? count - 1 - id : id;
        w.head = blockIdx.y, w.batch = blockIdx.z;
        w.t0 = 0, w.t1 = pa_flash_tiles(a, s, w.qt), w.slot = -1;
        return true;
    }
    /* (batch, head) fastest, then query tiles longest first, then the split index from
     * the highest (only the most-split tiles have one) down to 0 (every tile) */
    const int bhs = a.batch * a.heads_q;
    const int bh = id % bhs, item = id / bhs;
    const int r = s.max_splits - 1 - item / s.q_tiles, q = item % s.q_tiles;
    w.qt = a.mask ? s.q_tiles - 1 - q : q;
    w.head = bh % a.heads_q, w.batch = bh / a.heads_q;
    const int n = pa_flash_tiles(a, s, w.qt);
    const int k = pa_flash_splits(s, n);
    if (r >= k) return false;
    if (k == 1) {
        w.t0 = 0, w.t1 = n, w.slot = -1;
    } else {
        w.t0 = (int)((long long)r * n / k);
        w.t1 = (int)((long long)(r + 1) * n / k);
        w.slot = bh * s.slots + pa_flash_slot_base(a, s, w.qt) + r;
    }
    return true;
}

__device__ __forceinline__ bool pa_flash_decode(const pa_gpu_args &a, const pa_flash_split &s,
                                                pa_flash_work &w)
{
    return pa_flash_decode_at(a, s, w, blockIdx.x, gridDim.x);
}
#endif
#endif
#endif
