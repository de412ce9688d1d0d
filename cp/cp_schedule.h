/*
 * The ring schedule of context-parallel attention, as plain C (no NCCL, no CUDA): how the
 * global sequence is cut into chunks, which chunks each rank holds, whose K/V block a rank
 * holds at each step, and which attention calls (query rows x key rows, mask) each step
 * runs.  Shared by the NCCL driver and the host simulation test.
 */
#ifndef PA_CP_SCHEDULE_H
#define PA_CP_SCHEDULE_H

#include "polyattn_cp.h"

#include <stdint.h>

/* A rank holds at most this many chunks (zig-zag: 2) and a step runs at most one call per
 * local query chunk. */
#define PA_CP_MAX_LOCAL_CHUNKS 2
#define PA_CP_MAX_CALLS PA_CP_MAX_LOCAL_CHUNKS

typedef struct pa_cp_layout {
    int world_size;
    polyattn_cp_sharding sharding;
    int causal;
    int64_t seq; /* global sequence length */
} pa_cp_layout;

/* How a (query chunk, key chunk) pair is attended. */
typedef enum pa_cp_pair {
    PA_CP_PAIR_SKIP = 0, /* no query of the chunk sees a key of the other */
    PA_CP_PAIR_FULL = 1, /* every query sees every key: no mask */
    PA_CP_PAIR_DIAG = 2  /* the same chunk: causal */
} pa_cp_pair;

/* One attention call of a step: local query rows [q_row0, q_row0 + q_len) against rows
 * [kv_row0, kv_row0 + kv_len) of the K/V block held at that step. */
typedef struct pa_cp_call {
    int q_chunk; /* index of the query chunk among the rank's chunks (0 or 1) */
    int64_t q_row0, q_len;
    int64_t kv_row0, kv_len;
    polyattn_mask mask; /* NONE or CAUSAL_BOTTOM_RIGHT (the diagonal chunk comes last) */
} pa_cp_call;

void pa_cp_layout_from_desc(const polyattn_cp_desc *desc, pa_cp_layout *layout);
int pa_cp_num_chunks(const pa_cp_layout *l);
int64_t pa_cp_chunk_begin(const pa_cp_layout *l, int chunk);
int64_t pa_cp_chunk_len(const pa_cp_layout *l, int chunk);
/* The rank's chunks in local order (ascending global order); returns their count. */
int pa_cp_rank_chunks(const pa_cp_layout *l, int rank, int chunks[PA_CP_MAX_LOCAL_CHUNKS]);
int64_t pa_cp_rank_rows(const pa_cp_layout *l, int rank);
/* Local row where the rank's k-th chunk starts. */
int64_t pa_cp_local_row0(const pa_cp_layout *l, int rank, int k);
/* The rank whose K/V block `rank` holds at `step`: blocks travel to rank + 1 each step. */
int pa_cp_block_owner(const pa_cp_layout *l, int rank, int step);
pa_cp_pair pa_cp_pair_kind(const pa_cp_layout *l, int q_chunk, int k_chunk);
/* The calls of `step` on `rank` (0 when every pair is skipped); -1 when a query chunk's
 * visible keys are not one run of the block ending at the diagonal (no layout here does
 * that). */
int pa_cp_step_calls(const pa_cp_layout *l, int rank, int step, pa_cp_call calls[PA_CP_MAX_CALLS]);

#endif
