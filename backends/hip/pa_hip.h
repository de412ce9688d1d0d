/*
 * Internal to the hip backend module: the device record and the helpers its files share.
 * Host glue is C11 against hip_runtime_api.h (compiled by the C compiler with
 * __HIP_PLATFORM_AMD__); device code is compiled by hipcc (cmake/PolyattnHip.cmake) into a
 * second library, libpolyattn_hip_kernels.so, that the module loads only when every visible
 * GPU is a target of this build: the HIP runtime aborts the whole process when it registers a
 * code-object bundle that lacks a present GPU's ISA, so the module itself carries none.
 */
#ifndef PA_HIP_H
#define PA_HIP_H

#include "gpu_args_host.h" /* pa_gpu_ptr, pa_gpu_args_fill */
#include "flash_bwd.h"
#include "gemm_tiled.h"
#include "gpu_attn.h"
#include "gpu_backward.h"
#include "pa_backend.h"

#include <hip/hip_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The launchers of libpolyattn_hip_kernels.so (the .cu files of backends/gpu, the .hip here). */
typedef struct pa_hip_kernels {
    size_t (*flash_generic_smem)(const pa_gpu_args *a);
    int (*flash_generic)(const pa_gpu_args *a, void *stream);
    size_t (*fused_smem)(const pa_gpu_args *a, int scores_in_smem);
    uint64_t (*fused_workspace)(const pa_gpu_args *a);
    int (*fused)(const pa_gpu_args *a, int scores_in_smem, void *stream);
    int (*mask_softmax)(const pa_gpu_args *a, void *scores, void *stream);
    int (*gemm_qk)(const pa_gpu_args *a, float *scores, void *stream);
    int (*gemm_pv)(const pa_gpu_args *a, const void *p, int64_t p_row_stride, void *stream);
    int (*flash_mfma)(const pa_gpu_args *a, void *stream);
    /* backward */
    uint64_t (*flash_bwd_workspace)(const pa_gpu_bwd_args *a);
    size_t (*flash_bwd_smem)(const pa_gpu_bwd_args *a);
    int (*flash_bwd)(const pa_gpu_bwd_args *a, void *workspace, void *stream);
    int (*bwd_pack)(float *dst, const void *src, int dtype, const int64_t dims[4],
                    const int64_t strides[4], void *stream);
    int (*bwd_rowdot)(const pa_gpu_args *a, const void *d_o, float *delta, void *stream);
    int (*bwd_softmax_grad)(const pa_gpu_bwd_args *g, float *scores, float *dp, const float *delta,
                            void *stream);
    int (*bwd_dbias)(const pa_gpu_bwd_args *g, const float *scores, const float *dp,
                     const float *delta, void *stream);
    int (*bwd_dsinks)(const pa_gpu_bwd_args *g, const float *delta, void *stream);
    int (*gemm)(const pa_gpu_gemm_desc *d, void *stream);
    /* serving (gpu_serving.cu) */
    int (*kv_append)(const pa_gpu_args *a, void *stream);
    int (*merge)(const pa_gpu_merge_args *m, void *stream);
    hipError_t (*fill_u32)(void *dst, uint32_t value, uint64_t count, hipStream_t stream);
} pa_hip_kernels;

typedef struct pa_hip_device {
    pa_device base;     /* first member: base.index is the HIP device ordinal */
    hipStream_t stream; /* where every kernel and copy of this context goes */
    int owns_stream;    /* 0 for a caller's stream (polyattn_hip_context_create) */
    char arch[64];      /* gcnArchName without target features: "gfx90a" */
    int compute_units;
    int warp_size;           /* 64 on CDNA (gfx9), 32 on RDNA (gfx10+) */
    uint64_t lds_bytes;      /* LDS per work-group */
    int max_threads;         /* per work-group */
    int has_mfma;            /* CDNA matrix cores: gfx908, gfx90a, gfx94x */
    char why_not[256];       /* check()'s reasons that carry numbers */
    const pa_hip_kernels *k; /* set by device_open once the kernels library is loaded */
} pa_hip_device;

static inline pa_hip_device *pa_hip(pa_device *dev) { return (pa_hip_device *)dev; }

extern const pa_backend_ops pa_hip_backend_ops;
#define PA_HIP_N_ALGOS 3 /* unfused, fused, flash */
extern const pa_algo_ops pa_hip_algos[PA_HIP_N_ALGOS];

/* polyattn_merge_states through the shared merge kernel (hip_algos.c). */
polyattn_status pa_hip_merge_states(pa_device *dev, const pa_merge_problem *m,
                                    const pa_merge_io *io);

/* Records a failed HIP call in the context's error slot with the runtime's own words and
 * returns the mapped status. */
polyattn_status pa_hip_fail(pa_device *dev, hipError_t err, const char *expr, const char *file,
                            int line);

/* Evaluates a HIP call once; on failure returns from the caller with the mapped status. */
#define PA_HIP_TRY(dev, call)                                                                      \
    do {                                                                                           \
        hipError_t pa_hip_err_ = (call);                                                           \
        if (pa_hip_err_ != hipSuccess)                                                             \
            return pa_hip_fail((dev), pa_hip_err_, #call, __FILE__, __LINE__);                     \
    } while (0)

/* After a kernel launch: launch-configuration errors surface through hipGetLastError. */
#define PA_HIP_CHECK_LAUNCH(dev, what) PA_HIP_TRY(dev, (hipGetLastError()))

/* Makes dev's ordinal current on this thread (HIP's current device is per thread). */
polyattn_status pa_hip_use(pa_device *dev);

/* Device-side utility from hip_fill.hip (in the kernels library): fills count 32-bit words. */
hipError_t pa_hip_fill_u32(void *dst, uint32_t value, uint64_t count, hipStream_t stream);

#ifdef __cplusplus
}
#endif
#endif /* PA_HIP_H */
