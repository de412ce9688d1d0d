/*
 * gpu_backward.h: elementwise kernels of the unfused backward, shared by the CUDA and HIP
 * backends.  The GEMMs are the vendor BLAS's; these kernels move tensors between the
 * caller's strided storage dtype and contiguous f32 work arrays and apply the softmax
 * Jacobian.  Each enqueues on `stream` and returns the runtime's launch error (0: ok).
 */
#ifndef POLYATTN_GPU_BACKWARD_H
#define POLYATTN_GPU_BACKWARD_H

#include "gpu_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dst f32 contiguous [d0, d1, d2, d3] <- src (dtype, element strides). */
int pa_gpu_bwd_pack(float *dst, const void *src, int dtype, const int64_t dims[4],
                    const int64_t strides[4], void *stream);
/* dst (dtype, element strides) <- src f32 contiguous [d0, d1, d2, d3]. */
int pa_gpu_bwd_unpack(void *dst, const float *src, int dtype, const int64_t dims[4],
                      const int64_t strides[4], void *stream);
/* delta f32 [batch, heads_q, seq_q] = rowsum(d_o * o); d_o has o's strides and dtype
 * (a->o is O, d_o the gradient). */
int pa_gpu_bwd_rowdot(const pa_gpu_args *a, const void *d_o, float *delta, void *stream);
/* In place over f32 [batch, heads_q, seq_q, seq_kv]: scores (scale applied) become
 * P = exp(S - lse) on visible keys, 0 elsewhere and on fully masked rows (lse = -inf). */
int pa_gpu_bwd_probs(const pa_gpu_args *a, float *scores, const float *lse, void *stream);
/* In place: dp becomes dS = P * (dP - delta[row]). */
int pa_gpu_bwd_dscores(const pa_gpu_args *a, const float *probs, float *dp, const float *delta,
                       void *stream);

#ifdef __cplusplus
}
#endif
#endif
