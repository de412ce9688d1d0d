/* Warpgroup-MMA flash forward (NVIDIA sm_90 exactly: wgmma is an sm_90a feature; f16/bf16,
 * head dims 512, 768): C interface for the host glue.  Built only when the CUDA
 * architectures include 90 (POLYATTN_CUDA_HAVE_WGMMA). */
#ifndef POLYATTN_CUDA_FLASH_WGMMA_H
#define POLYATTN_CUDA_FLASH_WGMMA_H

#include "../gpu/gpu_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Head dims with an instance (512, 768: 2 or 3 blocks of 256 columns a query tile; at
 * 1024 the Q and K tiles would not fit shared memory). */
int pa_cuda_flash_wgmma_has_head_dim(int head_dim);
/* Shared memory a block of the head_dim instance needs (bytes), 0 without one. */
size_t pa_cuda_flash_wgmma_smem(int head_dim);
/* Whether the key split should run a (on `sms` SMs): each query tile's blocks become
 * 2-block clusters taking alternate key tiles, where the plain grid fills at most half the
 * GPU and some query tile has two key tiles or more; force: wherever it can run. */
int pa_cuda_flash_wgmma_split_fits(const pa_gpu_args *a, int sms, int force);
/* Enqueues (with the key split if key_split); returns the cudaError_t of the launch.  Same
 * input rules as pa_cuda_flash_tc (16-byte aligned q/k/v/o, unit head_dim stride, other
 * strides multiples of 8), f16 or bf16, head_dim == head_dim_v. */
int pa_cuda_flash_wgmma(const pa_gpu_args *a, int key_split, void *stream);

#ifdef __cplusplus
}
#endif
#endif
