/*
 * gpu_attn.h: C interface of the device code shared by the CUDA and HIP backends.
 * The host glue of each backend (C) fills a pa_gpu_args and calls these launchers, which
 * enqueue on the given stream and return the runtime's error code of the launch (0: ok).
 */
#ifndef POLYATTN_GPU_ATTN_H
#define POLYATTN_GPU_ATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pa_gpu_args {
    const void *q, *k, *v; /* element pointers (byte offsets already applied) */
    void *o;
    float *lse;   /* NULL unless wanted: f32 [batch, heads_q, seq_q] */
    float *probs; /* NULL unless wanted: f32 [batch, heads_q, seq_q, seq_kv] */
    void *workspace;
    int dtype; /* polyattn_dtype: 0 f32, 1 f16, 2 bf16 */
    int mask;  /* polyattn_mask */
    int batch, heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v;
    int64_t q_stride[4], k_stride[4], v_stride[4], o_stride[4]; /* elements */
    float scale;
    /* Score variants (pa_problem; all off when 0 / NULL), read by the kernels whose
     * algorithm lists them in its .features.  Windows are clamped to seq_q + seq_kv (the
     * same keys; fits an int). */
    int has_window, window_left, window_right; /* -1: unbounded on that side */
    float softcap;                             /* 0: off */
    const float *alibi_slopes;                 /* NULL: off; [heads_q] or [batch, heads_q] */
    int alibi_per_batch;
    const void *bias; /* NULL: off; bias_dtype elements, strides 0 on broadcast dims */
    int bias_dtype;
    int64_t bias_stride[4];
    const unsigned char *attn_mask; /* NULL: off; 0 masks a pair */
    int64_t attn_mask_stride[4];
    const float *sinks; /* NULL: off; [heads_q] logits, unscaled */
} pa_gpu_args;

/* Limits of the shared kernels. */
#define PA_GPU_MAX_HEAD_DIM 1024

/* Generic flash (SIMT, f32 accumulation, O(seq) memory): any head_dim <= 1024, any
 * strides, f32/f16/bf16.  Needs pa_gpu_flash_generic_smem() bytes of shared memory. */
size_t pa_gpu_flash_generic_smem(const pa_gpu_args *a);
int pa_gpu_flash_generic(const pa_gpu_args *a, void *stream);

/* Fused: one launch; the scores of a 32-query tile against every key live in shared
 * memory when pa_gpu_fused_smem(a, 1) fits, else in a workspace of
 * pa_gpu_fused_workspace(a) bytes (then pa_gpu_fused_smem(a, 0) of shared memory). */
size_t pa_gpu_fused_smem(const pa_gpu_args *a, int scores_in_smem);
uint64_t pa_gpu_fused_workspace(const pa_gpu_args *a);
int pa_gpu_fused(const pa_gpu_args *a, int scores_in_smem, void *stream);

/* Unfused softmax step: scores f32 [batch, heads_q, seq_q, seq_kv] (scale applied) in
 * `scores`; writes the probabilities in the storage dtype in place (row r starts at byte
 * r*seq_kv*4, so the probability matrix has a row stride of seq_kv*4/sizeof(dtype)
 * elements), plus probs/lse when wanted. */
int pa_gpu_mask_softmax(const pa_gpu_args *a, void *scores, void *stream);
/* Its kernel for problems with score variants (mask_softmax_variants.cu); pa_gpu_mask_softmax
 * calls it when the arguments carry any. */
int pa_gpu_mask_softmax_variants(const pa_gpu_args *a, void *scores, void *stream);

/* 1 when the arguments carry a forward score variant. */
static inline int pa_gpu_args_have_variants(const pa_gpu_args *a)
{
    return a->has_window || a->softcap > 0.0f || a->alibi_slopes || a->bias || a->attn_mask ||
           a->sinks;
}

#ifdef __cplusplus
}
#endif
#endif
