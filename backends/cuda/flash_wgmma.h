/* Warpgroup-MMA flash forward (NVIDIA sm_90 exactly: wgmma is an sm_90a feature; f16/bf16,
 * head dims 512, 768): C interface for the host glue.  Built only when the CUDA
 * architectures include 90 (POLYATTN_CUDA_HAVE_WGMMA). */
#ifndef POLYATTN_CUDA_FLASH_WGMMA_H
#define POLYATTN_CUDA_FLASH_WGMMA_H

#include "../gpu/gpu_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether head_dim has an instance (the family's head-dim table, PA_FLASH_WGMMA_HEAD_DIMS
 * in flash_wgmma.cu). */
int pa_cuda_flash_wgmma_has_head_dim(int head_dim);
/* Shared memory a block of the head_dim instance needs (bytes), 0 without one. */
size_t pa_cuda_flash_wgmma_smem(int head_dim);
/* Query rows of a query tile and keys of a key tile; columns of V and O a wide block owns
 * (a narrow one half). */
#define PA_WGMMA_TILE 64
#define PA_WGMMA_WIDE_COLS 256

/* How the blocks of a query tile divide its work (flash_wgmma.cu); the choice is made by
 * flash_wgmma_plan.cu (host code only, built without sm_90a too). */
typedef enum pa_wgmma_plan {
    PA_WGMMA_WIDE = 0,  /* head_dim / 256 blocks */
    PA_WGMMA_NARROW,    /* head_dim / 128 blocks: shorter products and stores, more blocks */
    PA_WGMMA_KEY_SPLIT, /* wide blocks as 2-block clusters taking alternate key tiles */
    PA_WGMMA_PLANS
} pa_wgmma_plan;
/* The plan's name ("wide", "narrow", "key-split"). */
const char *pa_cuda_flash_wgmma_plan_name(int plan);
/* The plan for a on `sms` SMs; force: a plan's name to take wherever it can run (NULL or
 * unknown: the measured choice). */
int pa_cuda_flash_wgmma_plan(const pa_gpu_args *a, int sms, const char *force);
/* Enqueues a with the plan; returns the cudaError_t of the launch.  Same input rules as
 * pa_cuda_flash_tc (16-byte aligned q/k/v/o, unit head_dim stride, other strides multiples
 * of 8), f16 or bf16, head_dim == head_dim_v. */
int pa_cuda_flash_wgmma(const pa_gpu_args *a, int plan, void *stream);

#ifdef __cplusplus
}
#endif
#endif
