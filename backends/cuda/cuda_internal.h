/* CUDA backend internals shared by its C files. */
#ifndef POLYATTN_CUDA_INTERNAL_H
#define POLYATTN_CUDA_INTERNAL_H

#include "pa_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

typedef struct pa_cuda_device {
    pa_device base; /* first member: the core reaches last_error through it */
    int ordinal;
    cudaStream_t stream;
    int own_stream;
    cublasHandle_t blas; /* created on the first unfused plan */
    int cc_major, cc_minor, sm_count;
    size_t smem_optin, l2_bytes, total_mem;
    char why[256];     /* device-owned rejection reasons of check() */
    char note[3][160]; /* check()'s note on how an eligible algorithm runs, per algo */
} pa_cuda_device;

static inline pa_cuda_device *pa_cuda_dev(pa_device *d)
{
    return (pa_cuda_device *)d;
}

polyattn_status pa_cuda_status(cudaError_t e);
polyattn_status pa_cuda_fail(pa_device *dev, cudaError_t e, const char *expr, const char *file,
                             int line);
polyattn_status pa_cublas_fail(pa_device *dev, cublasStatus_t e, const char *expr, const char *file,
                               int line);

/* Evaluates a CUDA runtime call once; on failure records the runtime's message, the
 * expression and its place in the context's last error and returns the mapped status. */
#define PA_CU(dev, expr)                                                                           \
    do {                                                                                           \
        cudaError_t pa_cu_e_ = (expr);                                                             \
        if (pa_cu_e_ != cudaSuccess)                                                               \
            return pa_cuda_fail((dev), pa_cu_e_, #expr, __FILE__, __LINE__);                       \
    } while (0)
#define PA_CUBLAS(dev, expr)                                                                       \
    do {                                                                                           \
        cublasStatus_t pa_cb_e_ = (expr);                                                          \
        if (pa_cb_e_ != CUBLAS_STATUS_SUCCESS)                                                     \
            return pa_cublas_fail((dev), pa_cb_e_, #expr, __FILE__, __LINE__);                     \
    } while (0)

extern const pa_algo_ops pa_cuda_algos[3];

polyattn_status pa_cuda_open(int index, cudaStream_t stream, int own_stream, pa_device **out);
extern const pa_backend_ops pa_cuda_ops;

#endif
