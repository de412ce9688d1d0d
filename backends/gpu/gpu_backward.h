/*
 * gpu_backward.h: elementwise kernels of the unfused backward, shared by the CUDA and HIP
 * backends.  The GEMMs are the vendor BLAS's; these kernels move tensors between the
 * caller's strided storage dtype and contiguous f32 work arrays and apply the softmax
 * Jacobian, with every score variant (gpu_variants.h).  Each enqueues on `stream` and
 * returns the runtime's launch error (0: ok).
 *
 * Order on the stream: rowdot (delta), the GEMMs of S and dP, dbias (reads S and dP), then
 * softmax_grad (turns them into P and dS in place), then dsinks, then the gradient GEMMs.
 */
#ifndef POLYATTN_GPU_BACKWARD_H
#define POLYATTN_GPU_BACKWARD_H

#include "flash_bwd.h"

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
/* In place over f32 [batch, heads_q, seq_q, seq_kv] (g->fwd: the problem, its variants and
 * the forward's LSE): scores (scale q.k) become P = exp(final score - LSE) on visible pairs,
 * 0 elsewhere and on fully masked rows (LSE = -inf); dp (dO V^T) becomes
 * dS = P * (dP - delta[row]), times 1 - tanh^2 under softcap (what the GEMMs of dQ and dK
 * take). */
int pa_gpu_bwd_softmax_grad(const pa_gpu_bwd_args *g, float *scores, float *dp, const float *delta,
                            void *stream);
/* g->d_bias (f32 contiguous [d_bias_batch, d_bias_heads, seq_q, seq_kv]) = dS = P (dP - delta)
 * of the final scores, summed over the (batch, head) pairs a broadcast bias shares, in a fixed
 * order; from scores and dp as the GEMMs left them (before pa_gpu_bwd_softmax_grad).  Every
 * element is written. */
int pa_gpu_bwd_dbias(const pa_gpu_bwd_args *g, const float *scores, const float *dp,
                     const float *delta, void *stream);
/* g->d_sinks[h] = -sum over the head's rows of exp(sink - LSE) * delta, one block a head in
 * a fixed order; delta in the LSE's index space ([heads_q, total_q] with varlen q).  The
 * flash backward uses it too. */
int pa_gpu_bwd_dsinks(const pa_gpu_bwd_args *g, const float *delta, void *stream);

#ifdef __cplusplus
}
#endif
#endif
