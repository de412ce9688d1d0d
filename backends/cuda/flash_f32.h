/* f32 flash forward on tensor cores at f32 accuracy (3xTF32, sm_80+): the tile kernel for
 * head dims up to 256 (flash_f32_tile.cu) and the wide kernel for 512, 768, 1024
 * (flash_f32.cu).  C interface for the host glue. */
#ifndef POLYATTN_CUDA_FLASH_F32_H
#define POLYATTN_CUDA_FLASH_F32_H

#include "../gpu/gpu_attn.h"
#include "flash_split.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether head_dim has an instance, and the list of those (" 512 ..."), both from the
 * family's head-dim table (PA_FLASH_F32_HEAD_DIMS in flash_f32.cu). */
int pa_cuda_flash_f32_has_head_dim(int head_dim);
const char *pa_cuda_flash_f32_head_dims(void);
/* Shared memory the instance for head_dim needs (bytes); col_halves: the column-halves
 * instance of a wide head dim (flash_split.h), 0 for head dims without one. */
size_t pa_cuda_flash_f32_smem(int head_dim, int col_halves);
/* Keys per key tile of the instance (the unit of the split schedule), with or without
 * column halves. */
int pa_cuda_flash_f32_key_tile(int head_dim, int col_halves);
/* Enqueues; returns the cudaError_t of the launch.  Needs q/k/v/o 16-byte aligned, unit
 * head_dim stride, other strides multiples of 4 and head_dim_v == head_dim (the caller
 * checks).  split may be NULL (no split). */
int pa_cuda_flash_f32(const pa_gpu_args *a, const pa_flash_split *split, void *stream);

/* The tile kernel: whether head_dim has an instance and the list of those, both from its
 * head-dim table (PA_FLASH_F32_TILE_HEAD_DIMS in flash_f32_tile.cu); its shared memory
 * (bytes) and query rows a block.  It has no schedules and no score variants; same
 * alignment needs as pa_cuda_flash_f32. */
int pa_cuda_flash_f32_tile_has_head_dim(int head_dim);
const char *pa_cuda_flash_f32_tile_head_dims(void);
size_t pa_cuda_flash_f32_tile_smem(int head_dim);
int pa_cuda_flash_f32_tile_rows(int head_dim);
int pa_cuda_flash_f32_tile(const pa_gpu_args *a, void *stream);

#ifdef __cplusplus
}
#endif
#endif
