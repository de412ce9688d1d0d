/* Tensor-core flash backward (NVIDIA sm_80+, f16/bf16): C interface for the host glue. */
#ifndef POLYATTN_CUDA_FLASH_TC_BWD_H
#define POLYATTN_CUDA_FLASH_TC_BWD_H

#include "../gpu/flash_bwd.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether head_dim has an instance (the family's table, PA_FLASH_TC_BWD_HEAD_DIMS in
 * flash_tc_bwd.cuh), its default dK/dV configuration ('a', 'b' or 'f'), and whether it has
 * configuration `tile`. */
int pa_cuda_flash_tc_bwd_has_head_dim(int head_dim);
char pa_cuda_flash_tc_bwd_default_tile(int head_dim);
int pa_cuda_flash_tc_bwd_has_tile(int head_dim, char tile);
/* Shared memory (bytes) the largest of its kernels needs at head_dim (0: no instance). */
size_t pa_cuda_flash_tc_bwd_smem(int head_dim);
/* Name of the dK/dV kernel of configuration `tile` (for the dispatch log). */
const char *pa_cuda_flash_tc_bwd_kernel(char tile);
/* Workspace bytes: f32 delta and lse2 rows, plus the f32 dQ accumulator unless deterministic. */
uint64_t pa_cuda_flash_tc_bwd_workspace(const pa_gpu_bwd_args *a);
/* Enqueues every kernel; returns the cudaError_t of the launches (0: ok).  Needs q, k, v,
 * o, d_o 16-byte aligned, dq/dk/dv 4-byte aligned, unit head_dim strides and the other
 * strides multiples of 8 (the caller checks). */
int pa_cuda_flash_tc_bwd(const pa_gpu_bwd_args *a, char tile, void *workspace, void *stream);
/* The backward's pre-pass alone (at its head dims): delta = rowsum(dO * O) and lse2 = LSE *
 * log2(e) (+inf on fully masked rows), f32, seq_pad >= seq_q rows a (batch, head) pair, the
 * rows past seq_q delta 0 and lse2 +inf (the Hopper backward's whole query tiles). */
int pa_cuda_flash_bwd_prep(const pa_gpu_bwd_args *a, int seq_pad, float *delta, float *lse2,
                           void *stream);

#ifdef __cplusplus
}
#endif
#endif
