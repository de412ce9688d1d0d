/* Warp-specialized Hopper flash forward (sm_90 exactly: wgmma and TMA, an sm_90a image;
 * f16/bf16, head dims 64, 96 (as 128 columns), 128, 192, 256, head_dim == head_dim_v;
 * window, softcap, ALiBi, sinks and bias; varlen, dense and paged KV caches): C interface
 * for the host glue.  Built only when the CUDA architectures include 90
 * (POLYATTN_CUDA_HAVE_WGMMA). */
#ifndef POLYATTN_CUDA_FLASH_HOPPER_H
#define POLYATTN_CUDA_FLASH_HOPPER_H

#include "../gpu/gpu_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether head_dim has an instance (the traits table in flash_hopper.cu). */
int pa_cuda_flash_hopper_has_head_dim(int head_dim);
/* Shared memory a block of the head_dim instance needs (bytes; with a bias tensor its
 * tiles too), 0 without one. */
size_t pa_cuda_flash_hopper_smem(int head_dim, int bias);
/* Query rows of a block's tile (two consumer warpgroups of 64 rows). */
#define PA_HOPPER_TILE_M 128
/* Enqueues a; returns the cudaError_t of the launch.  Input rules of pa_cuda_flash_wgmma
 * (16-byte aligned q/k/v/o, unit head_dim stride, other strides multiples of 8, no broadcast
 * strides); no attn_mask tensor, no key splits (the plan checks).
 * flags: PA_HOPPER_PINGPONG, the two consumer warpgroups take turns issuing their
 * products; PA_HOPPER_OVERLAP, each consumer overlaps tile j + 1's Q K^T and softmax with
 * tile j's P V; PA_HOPPER_BIAS_SMEM, a 16-bit bias with 16-byte aligned rows goes through
 * shared memory (else its values are loaded into registers); PA_HOPPER_EXP2_POLY, with
 * softcap (and without ping-pong), half the softmax's exponentials are computed on the FMA
 * pipe, beside MUFU's tanh and ex2. */
enum {
    PA_HOPPER_PINGPONG = 1,
    PA_HOPPER_BIAS_SMEM = 2,
    PA_HOPPER_OVERLAP = 4,
    PA_HOPPER_EXP2_POLY = 8
};
int pa_cuda_flash_hopper(const pa_gpu_args *a, unsigned flags, void *stream);

/* e4m3 inputs (dtype 4; head dim 128, dense layouts, O f16 or bf16, no bias; the serial
 * loop): the kernel reads V transposed, which pa_cuda_flash_hopper first writes into
 * a->workspace with pa_cuda_e4m3_vt (e4m3_vt.cu): pa_cuda_e4m3_vt_bytes of it, keys padded
 * to pa_cuda_e4m3_vt_keys. */
int pa_cuda_flash_hopper_e4m3_takes(const pa_gpu_args *a);
int pa_cuda_e4m3_vt_keys(int seq_kv);
size_t pa_cuda_e4m3_vt_bytes(int batch, int heads_kv, int head_dim, int seq_kv);
int pa_cuda_e4m3_vt(const pa_gpu_args *a, void *vt, void *stream);

#ifdef __cplusplus
}
#endif
#endif
