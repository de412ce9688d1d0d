/*
 * gemm_tiled.h: the two batched GEMMs of the unfused path as a portable tiled kernel (SIMT,
 * f32 accumulation), for backends without a vendor BLAS (HIP without hipBLAS).  Shared by
 * the GPU backends like gpu_attn.h; GQA and arbitrary strides as in pa_gpu_args.
 */
#ifndef POLYATTN_GEMM_TILED_H
#define POLYATTN_GEMM_TILED_H

#include "gpu_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* scores[b, h, i, j] = scale * sum_d Q[b, h, i, d] * K[b, h / (heads_q / heads_kv), j, d]
 * into f32 contiguous [batch, heads_q, seq_q, seq_kv].  Returns the launch's error code. */
int pa_gpu_gemm_qk(const pa_gpu_args *a, float *scores, void *stream);

/* O[b, h, i, e] = sum_j P[b, h, i, j] * V[b, h / group, j, e], O at a->o_stride in the
 * storage dtype.  P is in the storage dtype, rows of p_row_stride elements, the rows of one
 * (batch, head) consecutive (the layout pa_gpu_mask_softmax leaves in place). */
int pa_gpu_gemm_pv(const pa_gpu_args *a, const void *p, int64_t p_row_stride, void *stream);

#ifdef __cplusplus
}
#endif
#endif
