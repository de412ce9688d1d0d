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

/* A general batched GEMM over (batch, head) for the unfused backward:
 * C[m][n] = alpha * sum_k A[m][k] * B[k][n], where the operand of grid head h starts at
 * batch * X_batch + (h / X_group) * X_head and X[r][c] is at r * X_row + c * X_col (elements,
 * any signs and gaps).  Each operand has its own dtype (0 f32, 1 f16, 2 bf16); accumulation
 * is f32 in a fixed order (bitwise reproducible). */
typedef struct pa_gpu_gemm_desc {
    const void *a, *b;
    void *c;
    int64_t a_batch, a_head, a_row, a_col;
    int64_t b_batch, b_head, b_row, b_col;
    int64_t c_batch, c_head, c_row, c_col;
    int a_group, b_group; /* >= 1 */
    int m, n, k;
    int a_dtype, b_dtype, c_dtype;
    int batch, heads; /* grid: heads x batch */
    float alpha;
} pa_gpu_gemm_desc;
int pa_gpu_gemm(const pa_gpu_gemm_desc *d, void *stream);

#ifdef __cplusplus
}
#endif
#endif
