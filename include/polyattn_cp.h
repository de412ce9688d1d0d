/*
 * polyattn_cp.h: context-parallel (ring) attention over NCCL (optional component).
 * Link libpolyattn_cp as well as libpolyattn; needs the CUDA backend module at run time.
 *
 * The sequence of one attention problem is sharded over the ranks of a NCCL communicator.
 * Each rank holds the Q, K and V rows of its chunks; K/V blocks travel around the ring
 * (rank r sends to r + 1) on a communication stream while the compute stream attends the
 * block it holds with the single-GPU plans of polyattn, and the partial results are merged
 * by log-sum-exp with polyattn_merge_states.  The result is exact attention over the whole
 * sequence.  The backward passes the dK/dV accumulators around the ring with the blocks.
 *
 * Sharding (polyattn_cp_sharding): the global sequence of `seq` rows is cut into chunks of
 * seq / n or seq / n + 1 rows (the first seq % n chunks hold one more), n = 2 x world_size
 * for ZIGZAG, world_size for CONTIGUOUS.  Under ZIGZAG rank r holds chunks r and
 * 2 x world_size - 1 - r, in that order, so every rank does the same causal work.
 * polyattn_cp_local_chunks gives each rank's global row ranges.
 *
 * Local tensors, contiguous, in the descriptor's dtype (rows = polyattn_cp_local_seq):
 *   q, o, d_o, dq  [batch, heads_q,  rows, head_dim(_v)]
 *   k, v, dk, dv   [batch, heads_kv, rows, head_dim(_v)]
 *   lse            f32, chunk by chunk: the rank's k-th chunk is a contiguous
 *                  [batch, heads_q, chunk rows] block right after the (k-1)-th one
 *                  (with one chunk per rank, the usual [batch, heads_q, rows]).
 * The mask is over global positions: causal means query i sees keys j <= i.
 *
 * Like polyattn_cuda.h, this header needs no vendor header: a ncclComm_t is a
 * `struct ncclComm *` and a cudaStream_t a `struct CUstream_st *`.
 */
#ifndef POLYATTN_CP_H
#define POLYATTN_CP_H

#include "polyattn.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ncclComm;
struct CUstream_st;

typedef enum polyattn_cp_sharding {
    POLYATTN_CP_ZIGZAG = 0,    /* rank r: chunks r and 2P-1-r of 2P (causal balance) */
    POLYATTN_CP_CONTIGUOUS = 1 /* rank r: chunk r of P */
} polyattn_cp_sharding;

typedef struct polyattn_cp_desc {
    size_t struct_size; /* sizeof(polyattn_cp_desc) */
    int world_size;     /* ranks of the communicator */
    int rank;           /* this rank */
    polyattn_cp_sharding sharding;
    polyattn_dtype dtype; /* f32, f16 or bf16: every tensor but the LSE */
    int64_t batch, heads_q, heads_kv;
    int64_t seq; /* the global sequence length, at least one row per chunk */
    int64_t head_dim, head_dim_v;
    float scale; /* 0: 1/sqrt(head_dim) */
    int causal;  /* 0: no mask; 1: query i sees keys j <= i (global positions) */
} polyattn_cp_desc;

/* ZIGZAG, no mask, scale 0. */
POLYATTN_API void polyattn_cp_desc_init(polyattn_cp_desc *desc, polyattn_dtype dtype,
                                        int world_size, int rank, int64_t batch, int64_t heads_q,
                                        int64_t heads_kv, int64_t seq, int64_t head_dim,
                                        int64_t head_dim_v);

/* Rows a rank holds (0 on a malformed descriptor or rank). */
POLYATTN_API int64_t polyattn_cp_local_seq(const polyattn_cp_desc *desc, int rank);
/* The global rows [begin[k], begin[k] + len[k]) of the rank's chunks, in local order;
 * returns the chunk count (1 or 2), 0 on a malformed descriptor or rank. */
POLYATTN_API int polyattn_cp_local_chunks(const polyattn_cp_desc *desc, int rank, int64_t begin[2],
                                          int64_t len[2]);

typedef struct polyattn_cp_options {
    size_t struct_size; /* sizeof(polyattn_cp_options) */
    polyattn_algo algo; /* of every local step (AUTO: the backend's policy per shape) */
    int want_backward;  /* prepare polyattn_cp_backward */
    int deterministic;  /* passed to the local backward plans */
    /* Benchmarks only: issue no NCCL transfer (each step attends whatever the ring buffers
     * hold), to time the compute alone.  Results are wrong. */
    int skip_communication;
} polyattn_cp_options;

POLYATTN_API void polyattn_cp_options_init(polyattn_cp_options *options);

typedef struct polyattn_cp_plan polyattn_cp_plan;

typedef struct polyattn_cp_plan_info {
    size_t struct_size;
    polyattn_algo algo;    /* of the local steps (AUTO when the steps differ) */
    int steps;             /* world_size */
    int local_calls;       /* attention calls per forward on this rank */
    uint64_t device_bytes; /* device memory the plan holds (ring buffers, partials) */
    double flops;          /* this rank's forward FLOPs (visible pairs only) */
    double comm_bytes;     /* bytes this rank sends per forward */
    double comm_bytes_bwd; /* bytes this rank sends per backward (K/V and dK/dV) */
} polyattn_cp_plan_info;

/* Makes the local plans and allocates the ring buffers on the communicator's device
 * (ncclCommCuDevice).  Work is queued on `stream`, the communication on a stream of the
 * plan's own; calls return when queued.  desc->world_size and rank must match the
 * communicator.  Every rank of the communicator must create its plan with the same
 * descriptor (but its own rank) and options. */
POLYATTN_API polyattn_status polyattn_cp_plan_create(const polyattn_cp_desc *desc,
                                                     const polyattn_cp_options *options,
                                                     struct ncclComm *comm,
                                                     struct CUstream_st *stream,
                                                     polyattn_cp_plan **plan);
POLYATTN_API void polyattn_cp_plan_destroy(polyattn_cp_plan *plan);
POLYATTN_API polyattn_status polyattn_cp_plan_get_info(const polyattn_cp_plan *plan,
                                                       polyattn_cp_plan_info *info);
/* Why the last call on the plan failed ("" if none); polyattn_last_error for plan_create. */
POLYATTN_API const char *polyattn_cp_plan_last_error(const polyattn_cp_plan *plan);

/* Forward on every rank (each calls it, as with any collective): device pointers to the
 * local tensors described above; lse may be NULL unless the backward will follow. */
POLYATTN_API polyattn_status polyattn_cp_forward(polyattn_cp_plan *plan, const void *q,
                                                 const void *k, const void *v, void *o, float *lse);
/* Backward of a plan made with want_backward: o and lse from polyattn_cp_forward, d_o the
 * gradient of o; writes dq, dk, dv (local shards, laid out like q, k, v). */
POLYATTN_API polyattn_status polyattn_cp_backward(polyattn_cp_plan *plan, const void *q,
                                                  const void *k, const void *v, const void *o,
                                                  const void *d_o, const float *lse, void *dq,
                                                  void *dk, void *dv);

#ifdef __cplusplus
}
#endif
#endif /* POLYATTN_CP_H */
