/*
 * Host-side helpers shared by the CUDA and HIP glue (C, never compiled for the device):
 * device pointers from tensor references and a pa_gpu_args filled from a pa_problem.
 */
#ifndef POLYATTN_GPU_ARGS_HOST_H
#define POLYATTN_GPU_ARGS_HOST_H

#include "gpu_attn.h"
#include "pa_backend.h"

#include <string.h>

/* Device pointer of a tensor reference (handle + byte offset); NULL when absent. */
static inline void *pa_gpu_ptr(const pa_tensor_ref *ref)
{
    return ref->mem ? (void *)((char *)ref->mem + ref->offset) : NULL;
}

/* The launchers' arguments for a problem; io may be NULL (sizes only). */
static inline void pa_gpu_args_fill(const pa_problem *p, const pa_io *io, pa_gpu_args *a)
{
    memset(a, 0, sizeof *a);
    if (io) {
        a->q = pa_gpu_ptr(&io->q);
        a->k = pa_gpu_ptr(&io->k);
        a->v = pa_gpu_ptr(&io->v);
        a->o = pa_gpu_ptr(&io->o);
        a->lse = p->want_lse ? (float *)pa_gpu_ptr(&io->lse) : NULL;
        a->probs = p->want_probs ? (float *)pa_gpu_ptr(&io->probs) : NULL;
        a->workspace = pa_gpu_ptr(&io->workspace);
    }
    a->dtype = (int)p->dtype;
    a->o_dtype = (int)p->o_dtype;
    a->mask = (int)p->mask;
    a->batch = (int)p->batch;
    a->heads_q = (int)p->heads_q;
    a->heads_kv = (int)p->heads_kv;
    a->seq_q = (int)p->seq_q;
    a->seq_kv = (int)p->seq_kv;
    a->head_dim = (int)p->head_dim;
    a->head_dim_v = (int)p->head_dim_v;
    memcpy(a->q_stride, p->q_stride, sizeof a->q_stride);
    memcpy(a->k_stride, p->k_stride, sizeof a->k_stride);
    memcpy(a->v_stride, p->v_stride, sizeof a->v_stride);
    memcpy(a->o_stride, p->o_stride, sizeof a->o_stride);
    a->scale = p->scale;
    a->v_descale = 1.0f;
    if (p->dtype == POLYATTN_DTYPE_E4M3) { /* the descales fold into the scale and O */
        a->scale = (float)((double)p->scale * p->q_descale * p->k_descale);
        a->v_descale = p->v_descale;
    }
    /* Score variants: the flags from the problem, the tensors from io. */
    const int64_t wmax = p->seq_q + p->seq_kv;
    a->has_window = p->has_window;
    a->window_left = p->has_window && p->window_left >= 0
                         ? (int)(p->window_left < wmax ? p->window_left : wmax)
                         : -1;
    a->window_right = p->has_window && p->window_right >= 0
                          ? (int)(p->window_right < wmax ? p->window_right : wmax)
                          : -1;
    a->softcap = p->softcap > 0.0f ? p->softcap : 0.0f;
    a->alibi_per_batch = p->alibi == POLYATTN_ALIBI_PER_BATCH_HEAD;
    a->bias_dtype = (int)p->bias_dtype;
    memcpy(a->bias_stride, p->bias_stride, sizeof a->bias_stride);
    memcpy(a->attn_mask_stride, p->attn_mask_stride, sizeof a->attn_mask_stride);
    if (io) {
        if (p->alibi != POLYATTN_ALIBI_NONE)
            a->alibi_slopes = (const float *)pa_gpu_ptr(&io->var.alibi_slopes);
        if (p->has_bias) a->bias = pa_gpu_ptr(&io->var.bias);
        if (p->has_attn_mask) a->attn_mask = (const unsigned char *)pa_gpu_ptr(&io->var.attn_mask);
        if (p->has_sinks) a->sinks = (const float *)pa_gpu_ptr(&io->var.sinks);
    }
    /* Serving layouts: the sizes from the problem, the int32 tensors from io. */
    a->varlen_q = p->varlen_q;
    a->total_q = (int)p->total_q;
    a->kv_layout = (int)p->kv_layout;
    a->kv_count = (int)p->kv_count;
    a->kv_rows = (int)p->kv_rows;
    a->max_blocks_per_seq = (int)p->max_blocks_per_seq;
    a->seq_new = p->has_kv_append ? (int)p->seq_new : 0;
    memcpy(a->k_new_stride, p->k_new_stride, sizeof a->k_new_stride);
    memcpy(a->v_new_stride, p->v_new_stride, sizeof a->v_new_stride);
    if (io) {
        a->cu_seqlens_q = (const int32_t *)pa_gpu_ptr(&io->srv.cu_seqlens_q);
        a->cu_seqlens_kv = (const int32_t *)pa_gpu_ptr(&io->srv.cu_seqlens_kv);
        a->seqused_kv = (const int32_t *)pa_gpu_ptr(&io->srv.seqused_kv);
        a->block_table = (const int32_t *)pa_gpu_ptr(&io->srv.block_table);
        a->k_new = pa_gpu_ptr(&io->srv.k_new);
        a->v_new = pa_gpu_ptr(&io->srv.v_new);
    }
}

/* Rows of the split-KV partials: the LSE's index space. */
static inline int64_t pa_gpu_split_rows(const pa_problem *p)
{
    return p->varlen_q ? p->heads_q * p->total_q : p->batch * p->heads_q * p->seq_q;
}

/* Workspace bytes of `splits` partial results (0 when splits <= 1). */
static inline uint64_t pa_gpu_split_workspace(const pa_problem *p, int splits)
{
    if (splits <= 1) return 0;
    return (uint64_t)splits * (uint64_t)pa_gpu_split_rows(p) * (uint64_t)(p->head_dim_v + 1) * 4u;
}

/* Points a's partials into its workspace (at byte `offset`) for `splits` splits. */
static inline void pa_gpu_split_bind(const pa_problem *p, pa_gpu_args *a, int splits,
                                     uint64_t offset)
{
    a->num_splits = splits > 1 ? splits : 0;
    if (splits <= 1 || !a->workspace) return;
    a->part_o = (float *)((char *)a->workspace + offset);
    a->part_lse = a->part_o + (int64_t)splits * pa_gpu_split_rows(p) * p->head_dim_v;
}

/* The merge of a's partials into o (and lse), sinks joined once. */
static inline void pa_gpu_split_merge_args(const pa_problem *p, const pa_gpu_args *a,
                                           pa_gpu_merge_args *m)
{
    memset(m, 0, sizeof *m);
    const int64_t rows = pa_gpu_split_rows(p), dv = p->head_dim_v;
    m->parts = a->part_o;
    m->part_dtype = 0;
    m->parts_lse = a->part_lse;
    m->num_parts = a->num_splits;
    m->batch = p->varlen_q ? 1 : (int)p->batch;
    m->heads = (int)p->heads_q;
    m->seq = (int)p->total_q;
    m->head_dim_v = (int)dv;
    const int64_t ps[5] = {rows * dv, (int64_t)m->heads * m->seq * dv, m->seq * dv, dv, 1};
    memcpy(m->part_stride, ps, sizeof ps);
    m->out = a->o;
    m->out_dtype = a->o_dtype;
    m->out_stride[0] = p->o_stride[0], m->out_stride[1] = p->o_stride[1];
    m->out_stride[2] = p->o_stride[2], m->out_stride[3] = p->o_stride[3];
    m->out_lse = a->lse;
    m->sinks = a->sinks;
    m->cu_rows = p->varlen_q ? a->cu_seqlens_q : NULL;
    m->num_seqs = (int)p->batch;
}

/* Key splits of the generic flash kernel for p on a device of `units` compute units
 * (polyattn_plan_options.num_splits): 1: none; N >= 2: at most N, capped at the key tiles;
 * 0: splits only when the grid has fewer than two blocks per unit, enough to give it two,
 * each split keeping at least two key tiles.  Capped at PA_MAX_SPLITS. */
static inline int pa_gpu_flash_generic_splits(const pa_problem *p, int units)
{
    const int64_t tiles = (p->seq_kv + PA_GPU_FLASH_GENERIC_KEYS - 1) / PA_GPU_FLASH_GENERIC_KEYS;
    if (p->num_splits == 1 || tiles < 2 || p->seq_q <= 0 || p->batch <= 0) return 1;
    int64_t n = p->num_splits;
    if (n < 2) {
        const int64_t blocks = (p->seq_q + PA_GPU_FLASH_GENERIC_ROWS - 1) /
                               PA_GPU_FLASH_GENERIC_ROWS * p->heads_q * p->batch;
        const int64_t want = 2 * (int64_t)(units > 0 ? units : 1);
        if (blocks >= want) return 1;
        n = (want + blocks - 1) / blocks;
        if (n > tiles / 2) n = tiles / 2;
    }
    if (n > tiles) n = tiles;
    if (n > PA_MAX_SPLITS) n = PA_MAX_SPLITS;
    return n < 2 ? 1 : (int)n;
}

/* pa_gpu_merge's arguments for a polyattn_merge_states call (no sinks, every row). */
static inline void pa_gpu_merge_args_fill(const pa_merge_problem *m, const pa_merge_io *io,
                                          pa_gpu_merge_args *g)
{
    memset(g, 0, sizeof *g);
    g->parts = pa_gpu_ptr(&io->parts);
    g->part_dtype = (int)m->part_dtype;
    memcpy(g->part_stride, m->part_stride, sizeof g->part_stride);
    g->parts_lse = (const float *)pa_gpu_ptr(&io->parts_lse);
    g->out = pa_gpu_ptr(&io->out);
    g->out_dtype = (int)m->out_dtype;
    memcpy(g->out_stride, m->out_stride, sizeof g->out_stride);
    g->out_lse = m->want_lse ? (float *)pa_gpu_ptr(&io->out_lse) : NULL;
    g->num_parts = (int)m->num_parts;
    g->batch = (int)m->batch;
    g->heads = (int)m->heads;
    g->seq = (int)m->seq;
    g->head_dim_v = (int)m->head_dim_v;
}

/* Why pa_gpu_merge cannot take m (its int dimensions), NULL when it can. */
static inline const char *pa_gpu_merge_refusal(const pa_merge_problem *m)
{
    if (m->num_parts > INT32_MAX || m->batch > INT32_MAX || m->heads > INT32_MAX ||
        m->seq > INT32_MAX || m->head_dim_v > INT32_MAX)
        return "merge_states: a dimension exceeds INT_MAX, the limit of the shared GPU kernel";
    if (m->part_dtype == POLYATTN_DTYPE_E4M3 || m->out_dtype == POLYATTN_DTYPE_E4M3)
        return "merge_states: e4m3 states: no kernel on this backend";
    return NULL;
}

/* Why the generic flash kernel cannot read p's dtypes (NULL: it can): f32/f16/bf16 with o
 * alike, or e4m3 q, k, v with o f32/f16/bf16.  The other shared kernels take
 * pa_problem_dtype_refusal (no e4m3). */
static inline const char *pa_gpu_flash_generic_dtype_refusal(const pa_problem *p)
{
    if (p->dtype != POLYATTN_DTYPE_E4M3) return pa_problem_dtype_refusal(p);
    if (p->o_dtype != POLYATTN_DTYPE_F32 && p->o_dtype != POLYATTN_DTYPE_F16 &&
        p->o_dtype != POLYATTN_DTYPE_BF16)
        return "e4m3 inputs write o in f32, f16 or bf16";
    if (p->want_backward) return "e4m3 inputs are forward only";
    return NULL;
}

/* 1 when the problem has a forward score variant (the kernels' variant paths). */
static inline int pa_gpu_has_variants(const pa_problem *p)
{
    return (pa_problem_features(p) & ~(unsigned)(PA_FEATURE_BIAS_GRAD | PA_FEATURE_E4M3)) != 0;
}

#endif
