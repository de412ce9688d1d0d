/*
 * One rank's compute of context-parallel attention, on a polyattn context of any backend:
 * the local plans of every step, the partial results and their merge, the backward's
 * gradient accumulation.  Written against the public API only; the transport (NCCL, or
 * memcpy in the host simulation test) and the few elementwise operations (device kernels,
 * or loops on the host) come from the caller, so the same steps run on GPUs and on the
 * host backend.
 */
#ifndef PA_CP_ENGINE_H
#define PA_CP_ENGINE_H

#include "cp_schedule.h"

#include <stddef.h>

/* A polyattn buffer and the native address of its first byte (host or device). */
typedef struct pa_cp_mem {
    polyattn_buffer *buf;
    void *ptr;
} pa_cp_mem;

/* What the engine needs from the device beside polyattn; queued in order with the
 * context's work. */
typedef struct pa_cp_device_ops {
    polyattn_status (*alloc)(void *user, uint64_t bytes, pa_cp_mem *mem);
    void (*free)(void *user, pa_cp_mem *mem);
    polyattn_status (*zero)(void *user, void *ptr, uint64_t bytes);
    /* acc[o][acc_row0 + i][x] += src[o][src_row0 + i][x] for o < outer, i < rows,
     * x < width; acc is f32 with acc_rows rows per o, src `dtype` with src_rows rows. */
    polyattn_status (*accumulate)(void *user, float *acc, int64_t acc_rows, int64_t acc_row0,
                                  const void *src, polyattn_dtype dtype, int64_t src_rows,
                                  int64_t src_row0, int64_t outer, int64_t rows, int64_t width);
    /* dst[i] = src[i] rounded to dtype, i < count. */
    polyattn_status (*store)(void *user, void *dst, polyattn_dtype dtype, const float *src,
                             int64_t count);
} pa_cp_device_ops;

typedef struct pa_cp_engine pa_cp_engine;

/* Checks a descriptor (rank included); *why names the field. */
polyattn_status pa_cp_desc_check(const polyattn_cp_desc *desc, const char **why);

polyattn_status pa_cp_engine_create(polyattn_context *ctx, const polyattn_cp_desc *desc,
                                    const polyattn_cp_options *options, const pa_cp_device_ops *ops,
                                    void *user, pa_cp_engine **engine, char *err, size_t err_len);
void pa_cp_engine_destroy(pa_cp_engine *e);
const pa_cp_layout *pa_cp_engine_layout(const pa_cp_engine *e);
/* Rows of a rank's K/V block and its bytes (dtype; f32 for the gradient accumulators). */
int64_t pa_cp_engine_block_rows(const pa_cp_engine *e, int owner);
uint64_t pa_cp_engine_kv_bytes(const pa_cp_engine *e, int owner, int v, int f32);
void pa_cp_engine_info(const pa_cp_engine *e, polyattn_cp_plan_info *info);
uint64_t pa_cp_engine_device_bytes(const pa_cp_engine *e);
const char *pa_cp_engine_error(const pa_cp_engine *e);

/* Forward: every step with the K/V block held at that step, then the merge. */
polyattn_status pa_cp_fwd_step(pa_cp_engine *e, int step, const pa_cp_mem *q,
                               const pa_cp_mem *k_block, const pa_cp_mem *v_block);
polyattn_status pa_cp_fwd_finish(pa_cp_engine *e, const pa_cp_mem *o, const pa_cp_mem *lse);

/* Backward: begin (zeroes dQ), then per step the local backward into scratch and the
 * accumulation into dQ and into the travelling f32 dK/dV of the block, then finish
 * (stores dQ).  The final o and the merged lse make each step's gradients exact parts. */
polyattn_status pa_cp_bwd_begin(pa_cp_engine *e);
polyattn_status pa_cp_bwd_step(pa_cp_engine *e, int step, const pa_cp_mem *q,
                               const pa_cp_mem *k_block, const pa_cp_mem *v_block,
                               const pa_cp_mem *o, const pa_cp_mem *d_o, const pa_cp_mem *lse);
polyattn_status pa_cp_bwd_accumulate(pa_cp_engine *e, int step, const pa_cp_mem *dk_acc,
                                     const pa_cp_mem *dv_acc);
polyattn_status pa_cp_bwd_finish(pa_cp_engine *e, const pa_cp_mem *dq);

#endif
