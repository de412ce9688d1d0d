/* The elementwise kernels of the NCCL driver: gradient accumulation and stores. */
#ifndef PA_CP_KERNELS_H
#define PA_CP_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st;

/* dtype: 0 f32, 1 f16, 2 bf16 (polyattn_dtype).  Return a cudaError_t. */
int pa_cp_cuda_accumulate(struct CUstream_st *stream, float *acc, int64_t acc_rows,
                          int64_t acc_row0, const void *src, int dtype, int64_t src_rows,
                          int64_t src_row0, int64_t outer, int64_t rows, int64_t width);
int pa_cp_cuda_store(struct CUstream_st *stream, void *dst, int dtype, const float *src,
                     int64_t count);

#ifdef __cplusplus
}
#endif
#endif
