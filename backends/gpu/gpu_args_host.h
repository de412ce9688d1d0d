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
}

/* 1 when the problem has a forward score variant (the kernels' variant paths). */
static inline int pa_gpu_has_variants(const pa_problem *p)
{
    return (pa_problem_features(p) & ~(unsigned)PA_FEATURE_BIAS_GRAD) != 0;
}

#endif
