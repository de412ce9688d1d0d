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
 * 1.00-1.01x over contiguous halves, measured at commit 82a8172); at the end
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
    void *part;            /* workspace: O [slot][tile_m][head_dim_v] in the storage dtype (f32 for
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
#endif
#endif
