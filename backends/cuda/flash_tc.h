/* Tensor-core flash forward (NVIDIA sm_80+, f16/bf16): C interface for the host glue. */
#ifndef POLYATTN_CUDA_FLASH_TC_H
#define POLYATTN_CUDA_FLASH_TC_H

#include "../gpu/gpu_attn.h"
#include "flash_split.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether head_dim has an instance, and the list of those (" 32 64 ..."), both from the
 * family's head-dim table (PA_FLASH_TC_HEAD_DIMS in flash_tc.cu). */
int pa_cuda_flash_tc_has_head_dim(int head_dim);
const char *pa_cuda_flash_tc_head_dims(void);
/* Shared memory the instance for head_dim needs (bytes); col_halves: the column-halves
 * instance of a wide head dim (flash_split.h), 0 for head dims without one. */
size_t pa_cuda_flash_tc_smem(int head_dim, int col_halves);
/* Keys per key tile of the wide kernel used at head_dim (> 256), else 0: the balanced
 * schedule (flash_split.h) is planned in these tiles (32 with or without column halves). */
int pa_cuda_flash_tc_key_tile(int head_dim, int col_halves);
/* Enqueues; returns the cudaError_t of the launch.  Needs q/k/v/o 16-byte aligned, unit
 * head_dim stride and other strides multiples of 8 (the caller checks).  split (may be
 * NULL): the wide kernels' balanced schedule, its workspace in split->part. */
int pa_cuda_flash_tc(const pa_gpu_args *a, const pa_flash_split *split, void *stream);

/* The serving kernel (flash_tc_serving.cu): varlen q, every K/V layout, split-KV partials
 * (a->num_splits > 1, then pa_gpu_merge), f16/bf16, and e4m3 with O in o_dtype.  pack: the query heads of a GQA group
 * share a tile (decode; the caller checks seq_q x group fits pa_cuda_flash_serving_rows and
 * that there is no ALiBi).  Same alignment needs as pa_cuda_flash_tc. */
int pa_cuda_flash_serving_has_head_dim(int head_dim);
/* Deepest K/V ring of the serving kernel (stages: 2 .. this). */
#define PA_CUDA_SERVING_MAX_STAGES 6
/* e4m3: inputs read as bytes (a ring of raw tiles, converted to f16 in shared memory). */
size_t pa_cuda_flash_serving_smem(int head_dim, int pack, int stages, int e4m3);
int pa_cuda_flash_serving_rows(int head_dim, int pack); /* query rows of a tile */
int pa_cuda_flash_serving_key_tile(int head_dim);
int pa_cuda_flash_serving(const pa_gpu_args *a, int pack, int stages, void *stream);

#ifdef __cplusplus
}
#endif
#endif
