/*
 * CUDA backend: probing, devices, memory, events, and the module entry point.
 * Built as libpolyattn_cuda.so with the static CUDA runtime, so it loads on a machine
 * without the toolkit; with no driver, the probe reports 0 devices and the reason.
 */
#include "cuda_internal.h"
#include "cuda_policy.h"

#include "../gpu/flash_bwd.h"
#include "../gpu/gpu_glue.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

polyattn_status pa_cuda_status(cudaError_t e)
{
    switch (e) {
    case cudaSuccess: return POLYATTN_STATUS_SUCCESS;
    case cudaErrorMemoryAllocation: return POLYATTN_STATUS_OUT_OF_MEMORY;
    case cudaErrorInvalidValue:
    case cudaErrorInvalidDevicePointer: return POLYATTN_STATUS_INVALID_ARGUMENT;
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorInvalidPtx:
    case cudaErrorUnsupportedPtxVersion: return POLYATTN_STATUS_UNSUPPORTED;
    default: return POLYATTN_STATUS_DEVICE_ERROR;
    }
}

polyattn_status pa_cuda_fail(pa_device *dev, cudaError_t e, const char *expr, const char *file,
                             int line)
{
    return pa_fail(dev, pa_cuda_status(e), "CUDA error %d (%s): %s at %s:%d", (int)e,
                   cudaGetErrorString(e), expr, file, line);
}

polyattn_status pa_cublas_fail(pa_device *dev, cublasStatus_t e, const char *expr, const char *file,
                               int line)
{
    polyattn_status st = e == CUBLAS_STATUS_ALLOC_FAILED    ? POLYATTN_STATUS_OUT_OF_MEMORY
                         : e == CUBLAS_STATUS_NOT_SUPPORTED ? POLYATTN_STATUS_UNSUPPORTED
                                                            : POLYATTN_STATUS_DEVICE_ERROR;
    return pa_fail(dev, st, "cuBLAS error %d (%s): %s at %s:%d", (int)e, cublasGetStatusString(e),
                   expr, file, line);
}

static char probe_reason[256];

/* Whether the NVIDIA driver library can be loaded.  The static runtime says "CUDA driver
 * version is insufficient" both for an old driver and for none at all; this tells them apart. */
static int cuda_driver_present(void)
{
    void *lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!lib) return 0;
    dlclose(lib);
    return 1;
}

static polyattn_status cuda_probe(int *count, const char **reason)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    *count = 0;
    if (e != cudaSuccess) {
        /* No driver, no device, or a driver older than this runtime: not an error. */
        if (e == cudaErrorInsufficientDriver && !cuda_driver_present())
            snprintf(probe_reason, sizeof probe_reason,
                     "no NVIDIA driver found (libcuda.so.1 cannot be loaded)");
        else
            snprintf(probe_reason, sizeof probe_reason, "CUDA runtime: %s (error %d)",
                     cudaGetErrorString(e), (int)e);
        if (reason) *reason = probe_reason;
        (void)cudaGetLastError();
        return POLYATTN_STATUS_SUCCESS;
    }
    *count = n;
    if (reason) *reason = n ? "" : "CUDA runtime sees no device";
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status cuda_device_info(int index, polyattn_device_info *info)
{
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, index) != cudaSuccess) {
        (void)cudaGetLastError();
        return POLYATTN_STATUS_NOT_FOUND;
    }
    int attr = 0, driver = 0;
    info->backend = POLYATTN_BACKEND_CUDA;
    info->index = index;
    snprintf(info->name, sizeof info->name, "%s", prop.name);
    snprintf(info->vendor, sizeof info->vendor, "NVIDIA");
    if (cudaDriverGetVersion(&driver) == cudaSuccess)
        snprintf(info->driver_version, sizeof info->driver_version, "CUDA driver %d.%d",
                 driver / 1000, (driver % 1000) / 10);
    snprintf(info->arch, sizeof info->arch, "sm_%d%d", prop.major, prop.minor);
    info->global_mem_bytes = prop.totalGlobalMem;
    if (cudaDeviceGetAttribute(&attr, cudaDevAttrMaxSharedMemoryPerBlockOptin, index) ==
        cudaSuccess)
        info->local_mem_bytes = (uint64_t)attr;
    info->compute_units = prop.multiProcessorCount;
    info->max_work_group_size = prop.maxThreadsPerBlock;
    info->subgroup_size = prop.warpSize;
    info->f16_storage = 1;
    info->bf16_storage = 1;
    info->f16_arithmetic = prop.major >= 7;
    info->bf16_arithmetic = prop.major >= 8;
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status pa_cuda_open(int index, cudaStream_t stream, int own_stream, pa_device **out)
{
    pa_cuda_device *dev = calloc(1, sizeof *dev);
    if (!dev) return POLYATTN_STATUS_OUT_OF_MEMORY;
    dev->base.ops = &pa_cuda_ops;
    dev->base.index = index;
    dev->ordinal = index;
    pa_device *d = &dev->base;
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    int v = 0;
    cudaError_t e = cudaSetDevice(index);
    if (e == cudaSuccess && own_stream)
        e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        st = pa_cuda_fail(d, e, "open device", __FILE__, __LINE__);
        pa_log(POLYATTN_LOG_ERROR, "%s", d->last_error);
        free(dev);
        return st;
    }
    dev->stream = stream;
    dev->own_stream = own_stream;
#define ATTR(field, a)                                                                             \
    if (cudaDeviceGetAttribute(&v, a, index) == cudaSuccess) dev->field = v
    ATTR(cc_major, cudaDevAttrComputeCapabilityMajor);
    ATTR(cc_minor, cudaDevAttrComputeCapabilityMinor);
    ATTR(sm_count, cudaDevAttrMultiProcessorCount);
    ATTR(smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin);
    ATTR(l2_bytes, cudaDevAttrL2CacheSize);
#undef ATTR
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) dev->total_mem = total_b;
    (void)cudaGetLastError();
    pa_log(POLYATTN_LOG_DISPATCH,
           "cuda: device %d sm_%d%d, %d SMs, %zu KiB opt-in shared memory per block, %zu MiB L2, "
           "%zu MiB memory, %s stream",
           index, dev->cc_major, dev->cc_minor, dev->sm_count, dev->smem_optin / 1024,
           dev->l2_bytes >> 20, dev->total_mem >> 20, own_stream ? "own" : "caller's");
    *out = d;
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status cuda_device_open(int index, pa_device **out)
{
    return pa_cuda_open(index, NULL, 1, out);
}

static void cuda_device_close(pa_device *d)
{
    if (!d) return;
    pa_cuda_device *dev = pa_cuda_dev(d);
    cudaSetDevice(dev->ordinal);
    if (dev->blas) cublasDestroy(dev->blas);
    if (dev->own_stream && dev->stream) cudaStreamDestroy(dev->stream);
    (void)cudaGetLastError();
    free(dev);
}

static polyattn_status cuda_mem_alloc(pa_device *d, uint64_t bytes, void **mem)
{
    PA_CU(d, cudaSetDevice(pa_cuda_dev(d)->ordinal));
    PA_CU(d, cudaMalloc(mem, (size_t)bytes));
    return POLYATTN_STATUS_SUCCESS;
}

static void cuda_mem_free(pa_device *d, void *mem)
{
    cudaSetDevice(pa_cuda_dev(d)->ordinal);
    if (cudaFree(mem) != cudaSuccess) (void)cudaGetLastError();
}

static polyattn_status cuda_mem_write(pa_device *d, void *mem, uint64_t offset, const void *src,
                                      uint64_t bytes)
{
    pa_cuda_device *dev = pa_cuda_dev(d);
    PA_CU(d, cudaSetDevice(dev->ordinal));
    /* On the context's stream, so the copy is ordered with queued kernels; blocking. */
    PA_CU(d, cudaMemcpyAsync((char *)mem + offset, src, (size_t)bytes, cudaMemcpyHostToDevice,
                             dev->stream));
    PA_CU(d, cudaStreamSynchronize(dev->stream));
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status cuda_mem_read(pa_device *d, void *mem, uint64_t offset, void *dst,
                                     uint64_t bytes)
{
    pa_cuda_device *dev = pa_cuda_dev(d);
    PA_CU(d, cudaSetDevice(dev->ordinal));
    PA_CU(d, cudaMemcpyAsync(dst, (const char *)mem + offset, (size_t)bytes, cudaMemcpyDeviceToHost,
                             dev->stream));
    PA_CU(d, cudaStreamSynchronize(dev->stream));
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status cuda_synchronize(pa_device *d)
{
    pa_cuda_device *dev = pa_cuda_dev(d);
    PA_CU(d, cudaSetDevice(dev->ordinal));
    PA_CU(d, cudaStreamSynchronize(dev->stream));
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status cuda_event_create(pa_device *d, void **event)
{
    PA_CU(d, cudaSetDevice(pa_cuda_dev(d)->ordinal));
    cudaEvent_t ev;
    PA_CU(d, cudaEventCreate(&ev));
    *event = ev;
    return POLYATTN_STATUS_SUCCESS;
}

static void cuda_event_destroy(pa_device *d, void *event)
{
    (void)d;
    if (event && cudaEventDestroy((cudaEvent_t)event) != cudaSuccess) (void)cudaGetLastError();
}

static polyattn_status cuda_event_record(pa_device *d, void *event)
{
    PA_CU(d, cudaEventRecord((cudaEvent_t)event, pa_cuda_dev(d)->stream));
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status cuda_event_elapsed_ms(pa_device *d, void *start, void *end, double *ms)
{
    float f = 0.f;
    PA_CU(d, cudaEventSynchronize((cudaEvent_t)end));
    PA_CU(d, cudaEventElapsedTime(&f, (cudaEvent_t)start, (cudaEvent_t)end));
    *ms = f;
    return POLYATTN_STATUS_SUCCESS;
}

/* Dtypes the kernels take (e4m3: flash only, pa_cuda_sizes_refusal) and sizes they index
 * with int (grid dims, rows). */
const char *pa_cuda_int_sizes_refusal(const pa_problem *p)
{
    const char *dtype_why = pa_problem_dtype_refusal(p);
    return dtype_why ? dtype_why : pa_cuda_sizes_refusal(p);
}

const char *pa_cuda_sizes_refusal(const pa_problem *p)
{
    const int64_t lim = 0x7fffffff;
    if (p->seq_q > lim || p->seq_kv > lim || p->batch > 65535 || p->heads_q > 65535)
        return "sizes beyond the CUDA kernels' limits (seq <= 2^31-1, batch and heads_q <= 65535)";
    return NULL;
}

static polyattn_status glue_launch_status(pa_device *dev, int err, const char *what)
{
    return err ? pa_cuda_fail(dev, (cudaError_t)err, what, __FILE__, __LINE__)
               : POLYATTN_STATUS_SUCCESS;
}

static const pa_gpu_glue_fns glue_fns = {
    .fused_smem = pa_gpu_fused_smem,
    .fused_workspace = pa_gpu_fused_workspace,
    .fused = pa_gpu_fused,
#ifdef POLYATTN_CUDA_HAVE_SIMT_BWD
    .flash_bwd_workspace = pa_gpu_flash_bwd_workspace,
    .flash_bwd_smem = pa_gpu_flash_bwd_smem,
    .flash_bwd = pa_gpu_flash_bwd,
#endif
};

void pa_cuda_glue(pa_cuda_device *dev, pa_gpu_glue *g)
{
    g->dev = &dev->base;
    g->fns = &glue_fns;
    g->smem_limit = dev->smem_optin;
    g->smem_name = "shared memory";
    g->why = dev->why;
    g->why_size = sizeof dev->why;
    g->launch_status = glue_launch_status;
}

/* polyattn_merge_states through the shared merge kernel (backends/gpu/gpu_serving.cu); the
 * core checked every size and overlap. */
static polyattn_status cuda_merge_states(pa_device *d, const pa_merge_problem *m,
                                         const pa_merge_io *io)
{
    const char *why = pa_gpu_merge_refusal(m);
    if (why) return pa_fail(d, POLYATTN_STATUS_UNSUPPORTED, "%s", why);
    pa_cuda_device *dev = pa_cuda_dev(d);
    PA_CU(d, cudaSetDevice(dev->ordinal));
    pa_gpu_merge_args g;
    pa_gpu_merge_args_fill(m, io, &g);
    return glue_launch_status(d, pa_gpu_merge(&g, dev->stream), "pa_gpu_merge (merge_kernel)");
}

#define PA_CUDA_ALGO(ALGO, name, release_fn, forward_features, bwd_features)                       \
    {                                                                                              \
        .algo = ALGO, .features = forward_features, .backward_features = bwd_features,             \
        .check = pa_cuda_##name##_check, .workspace_size = pa_cuda_##name##_workspace,             \
        .kernel_launches = pa_cuda_##name##_launches, .prepare = pa_cuda_##name##_prepare,         \
        .release = release_fn, .forward = pa_cuda_##name##_forward,                                \
        .backward_workspace_size = pa_cuda_##name##_backward_workspace,                            \
        .backward = pa_cuda_##name##_backward                                                      \
    }
/* Score variants: every forward has them all: the unfused softmax
 * (mask_softmax_variants.cu), the shared fused and generic flash kernels, and the mma.sync
 * f16/bf16 tile kernel (flash_tc.cu, head dims <= 256) for window, softcap, ALiBi and sinks
 * (cuda_flash_plan.c sends the rest to the generic kernel).  Every backward has them all
 * with d_bias and d_sinks: fused and flash through the tensor-core FA2 backward (window,
 * softcap, ALiBi, sinks) or the shared SIMT one (bias, attn_mask; cuda_backward.c), unfused through the shared elementwise kernels of
 * gpu_backward.h around its SGEMMs. */
#define PA_CUDA_FORWARD_FEATURES                                                                   \
    (PA_FEATURE_WINDOW | PA_FEATURE_SOFTCAP | PA_FEATURE_ALIBI | PA_FEATURE_BIAS |                 \
     PA_FEATURE_ATTN_MASK | PA_FEATURE_SINKS)
/* Serving layouts: flash only (the tensor-core serving kernel, flash_tc_serving.cu, or the
 * generic one); the SIMT backward has varlen. */
#define PA_CUDA_SERVING_FEATURES                                                                   \
    (PA_FEATURE_VARLEN_Q | PA_FEATURE_VARLEN_KV | PA_FEATURE_KV_CACHE | PA_FEATURE_PAGED_KV |      \
     PA_FEATURE_KV_APPEND)
const pa_algo_ops pa_cuda_algos[3] = {
    PA_CUDA_ALGO(POLYATTN_ALGO_UNFUSED, unfused, NULL,
                 PA_CUDA_FORWARD_FEATURES | PA_FEATURE_BIAS_GRAD,
                 PA_CUDA_FORWARD_FEATURES | PA_FEATURE_BIAS_GRAD),
    PA_CUDA_ALGO(POLYATTN_ALGO_FUSED, fused, pa_cuda_plan_release,
                 PA_CUDA_FORWARD_FEATURES | PA_FEATURE_BIAS_GRAD,
                 PA_CUDA_FORWARD_FEATURES | PA_FEATURE_BIAS_GRAD),
    {
        .algo = POLYATTN_ALGO_FLASH,
        /* e4m3: the generic SIMT kernel (cuda_flash_plan.c) */
        .features = PA_CUDA_FORWARD_FEATURES | PA_FEATURE_BIAS_GRAD | PA_CUDA_SERVING_FEATURES |
                    PA_FEATURE_E4M3,
        .check = pa_cuda_flash_check,
        .workspace_size = pa_cuda_flash_workspace,
        .kernel_launches = pa_cuda_flash_launches,
        .prepare = pa_cuda_flash_prepare,
        .release = pa_cuda_plan_release,
        .forward = pa_cuda_flash_forward,
        .backward_workspace_size = pa_cuda_flash_backward_workspace,
        .backward = pa_cuda_flash_backward,
        .backward_features = PA_CUDA_FORWARD_FEATURES | PA_FEATURE_BIAS_GRAD | PA_FEATURE_VARLEN_Q |
                             PA_FEATURE_VARLEN_KV,
        .splits = pa_cuda_flash_splits,
    },
};
#undef PA_CUDA_ALGO

const pa_backend_ops pa_cuda_ops = {
    .abi_version = PA_BACKEND_ABI_VERSION,
    .kind = POLYATTN_BACKEND_CUDA,
    .name = "cuda",
    .probe = cuda_probe,
    .device_info = cuda_device_info,
    .device_open = cuda_device_open,
    .device_close = cuda_device_close,
    .mem_alloc = cuda_mem_alloc,
    .mem_free = cuda_mem_free,
    .mem_write = cuda_mem_write,
    .mem_read = cuda_mem_read,
    .synchronize = cuda_synchronize,
    .event_create = cuda_event_create,
    .event_destroy = cuda_event_destroy,
    .event_record = cuda_event_record,
    .event_elapsed_ms = cuda_event_elapsed_ms,
    .algos = pa_cuda_algos,
    .n_algos = 3,
    .auto_order = pa_cuda_auto_order,
    .merge_states = cuda_merge_states,
};

__attribute__((visibility("default"))) const pa_backend_ops *polyattn_backend_entry(void);
const pa_backend_ops *polyattn_backend_entry(void) { return &pa_cuda_ops; }
