/* Hopper (sm_90a) flash forward for f16/bf16 at head dims 512 and 768: wgmma with 64-row
 * query tiles, one 2-block cluster per query tile (flash_wgmma.cu).  C interface. */
#ifndef POLYATTN_CUDA_FLASH_WGMMA_H
#define POLYATTN_CUDA_FLASH_WGMMA_H

#include "../gpu/gpu_attn.h"
#include "flash_split.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the backend was built with the sm_90a kernel (POLYATTN_CUDA_ARCHITECTURES has 90). */
int pa_cuda_flash_pair_built(void);
/* Head dims with an instance (512, 768; at 1024 two K/V stages do not fit). */
int pa_cuda_flash_pair_has_head_dim(int head_dim);
/* Shared memory one block of the instance needs (bytes), 0 for other head dims. */
size_t pa_cuda_flash_pair_smem(int head_dim);
#define PA_FLASH_PAIR_TILE_M 64 /* query rows per cluster (query tile) */
#define PA_FLASH_PAIR_KEY_TILE 32
/* Enqueues; returns the cudaError_t of the launch.  Needs a compute capability 9.0 device,
 * f16/bf16, q/k/v/o 16-byte aligned, unit head_dim stride and other strides multiples of 8
 * (the caller checks).  split (may be NULL): the balanced schedule planned with 64-row query
 * tiles and a cluster per block, its workspace in split->part. */
int pa_cuda_flash_pair(const pa_gpu_args *a, const pa_flash_split *split, void *stream);

#ifdef __cplusplus
}
#endif
#endif
