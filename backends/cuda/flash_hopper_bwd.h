/* The flash backward on Hopper's warpgroup MMA (flash_hopper_bwd.cu; sm_90 exactly, an sm_90a
 * image; f16/bf16, head dims 64 and 128, dense layouts, no mask or causal, GQA; no atomics,
 * so deterministic too): C interface for the host glue.  Built only when the CUDA
 * architectures include 90 (POLYATTN_CUDA_HAVE_WGMMA). */
#ifndef POLYATTN_CUDA_FLASH_HOPPER_BWD_H
#define POLYATTN_CUDA_FLASH_HOPPER_BWD_H

#include "../gpu/flash_bwd.h"

#ifdef __cplusplus
extern "C" {
#endif

int pa_cuda_flash_hopper_bwd_has_head_dim(int head_dim);
/* Shared memory (bytes) the larger of its two kernels needs at head_dim (0: no instance). */
size_t pa_cuda_flash_hopper_bwd_smem(int head_dim);
/* Workspace bytes: f32 delta and lse2 rows, padded to whole 64-query tiles. */
uint64_t pa_cuda_flash_hopper_bwd_workspace(const pa_gpu_bwd_args *a);
/* Enqueues the prep, dK/dV and dQ kernels; returns the cudaError_t of the launches.  Needs
 * q, k, v, o, d_o 16-byte aligned, dq/dk/dv 4-byte aligned, unit head_dim strides, the other
 * strides multiples of 8 and none 0 on a dimension longer than 1, seq_q and seq_kv > 0 (the
 * caller checks). */
int pa_cuda_flash_hopper_bwd(const pa_gpu_bwd_args *a, void *workspace, void *stream);

#ifdef __cplusplus
}
#endif
#endif
