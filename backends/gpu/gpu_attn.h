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
    int dtype;   /* polyattn_dtype of q, k, v: 0 f32, 1 f16, 2 bf16, 4 e4m3 (generic flash) */
    int o_dtype; /* o's: dtype, or with e4m3 inputs 0 f32, 1 f16, 2 bf16 */
    int mask;    /* polyattn_mask */
    int batch, heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v;
    int64_t q_stride[4], k_stride[4], v_stride[4], o_stride[4]; /* elements */
    /* The score scale; with e4m3 inputs it carries q_descale * k_descale (rounded once from
     * double), and v_descale multiplies O (1 for other dtypes). */
    float scale;
    float v_descale;
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

    /* Serving layouts (pa_problem; all 0 / NULL: dense).  batch counts sequences, seq_q and
     * seq_kv bound each one's lengths; the lengths come from the int32 tensors below, and
     * every index read from them is clamped (gpu_serving.h), so bad values never address
     * memory outside the tensors. */
    int varlen_q, total_q;        /* q, o [1, heads_q, total_q, d]; lse [heads_q, total_q] */
    const int32_t *cu_seqlens_q;  /* [batch + 1] with varlen_q */
    int kv_layout;                /* polyattn_kv_layout */
    const int32_t *cu_seqlens_kv; /* varlen K/V [batch + 1] */
    const int32_t *seqused_kv;    /* caches: keys before the appended ones [batch] */
    const int32_t *block_table;   /* paged: [batch, max_blocks_per_seq] */
    int kv_count, kv_rows;        /* k.shape[0] and k.shape[2] (paged: num_blocks, block size) */
    int max_blocks_per_seq;
    int seq_new; /* appended rows a sequence */
    const void *k_new, *v_new;
    int64_t k_new_stride[4], v_new_stride[4];

    /* Split-KV (num_splits > 1): split s of each sequence takes the key tiles
     * [s * per, (s + 1) * per) of its own tile count n (per = ceil(n / num_splits)) and
     * writes its own normalised result over those keys, O f32 and LSE, to part_o [num_splits, rows,
     * head_dim_v] and part_lse [num_splits, rows] (rows: the LSE's index space,
     * pa_gpu_split_rows), every row of its sequence, -inf where it saw no key; sinks are
     * left to the merge (pa_gpu_merge over pa_gpu_split_merge_args). */
    int num_splits;
    float *part_o, *part_lse;
} pa_gpu_args;

/* polyattn_dtype's e4m3 (the device code does not include polyattn.h). */
#define PA_GPU_DTYPE_E4M3 4

/* Limits of the shared kernels. */
#define PA_GPU_MAX_HEAD_DIM 1024

/* Generic flash (SIMT, f32 accumulation, O(seq) memory): any head_dim <= 1024, any
 * strides, f32/f16/bf16, and e4m3 inputs with O in f32/f16/bf16 (o_dtype).  Needs pa_gpu_flash_generic_smem() bytes of shared memory.  Takes
 * every serving layout and split-KV (num_splits > 1: the partials, then pa_gpu_merge);
 * dense unsplit problems run their own instance.  Blocks: (ceil(seq_q / ROWS) x splits,
 * heads_q, batch), each over tiles of KEYS keys. */
#define PA_GPU_FLASH_GENERIC_ROWS 32
#define PA_GPU_FLASH_GENERIC_KEYS 64
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

/* Serving (gpu_serving.cu).  KV append: rows j of k_new / v_new land at key seqused_kv[b] + j
 * of each sequence's cache (dense or paged), bits copied (e4m3 bytes too); rows past the
 * cache are dropped. */
int pa_gpu_kv_append(const pa_gpu_args *a, void *stream);

/* Merge of partial results over disjoint key sets by log-sum-exp (split-KV and
 * polyattn_merge_states): out[b, h, i] = sum_p w_p part[p, b, h, i] with
 * w_p = exp(lse_p - lse), lse = log(sum_p exp(lse_p) (+ exp(sink[h]))). */
typedef struct pa_gpu_merge_args {
    const void *parts; /* part_dtype [P, B, H, S, dv] at part_stride (elements) */
    int part_dtype;
    int64_t part_stride[5];
    const float *parts_lse; /* f32 [P, B, H, S] contiguous */
    void *out;              /* out_dtype [B, H, S, dv] at out_stride */
    int out_dtype;
    int64_t out_stride[4];
    float *out_lse; /* NULL or f32 [B, H, S] contiguous */
    int num_parts, batch, heads, seq, head_dim_v;
    const float *sinks; /* NULL or [H]: one more part with O = 0 */
    /* NULL, or varlen rows: only rows i in [cu_rows[0], cu_rows[num_seqs]) are written */
    const int32_t *cu_rows;
    int num_seqs;
} pa_gpu_merge_args;
int pa_gpu_merge(const pa_gpu_merge_args *m, void *stream);

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
