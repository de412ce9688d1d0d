/*
 * Flash forward on CDNA matrix cores (MFMA 32x32x8, gfx908 / gfx90a): f16 (both) and bf16
 * (gfx90a), head_dim and head_dim_v <= 128, head_dim a multiple of 8.  Other problems go to
 * the shared generic kernel.  Not yet run on AMD hardware: see hip_algos.c for its gate.
 */
#ifndef PA_HIP_FLASH_MFMA_H
#define PA_HIP_FLASH_MFMA_H

#include "gpu_attn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bytes of LDS a work-group uses (the P tile of each wave). */
size_t pa_hip_flash_mfma_lds(void);
/* Enqueues the kernel; returns the launch's error code (0: ok). */
int pa_hip_flash_mfma(const pa_gpu_args *a, void *stream);

#ifdef __cplusplus
}
#endif
#endif
