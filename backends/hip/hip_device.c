/*
 * hip backend: probing, devices, memory, events and the interop entry points of
 * include/polyattn_hip.h.  The module links libamdhip64; where that library is missing the
 * module does not load and the core reports 0 hip devices with the loader's message.  Where it
 * loads but no GPU or driver is present, probe says so (0 devices, a reason).
 */
#define _GNU_SOURCE /* dladdr: find the kernels library beside this module */
#include "pa_hip.h"
#include "polyattn_hip.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef POLYATTN_HIP_ARCHS
#define POLYATTN_HIP_ARCHS ""
#endif

static polyattn_status map_error(hipError_t err)
{
    switch (err) {
    case hipErrorOutOfMemory: return POLYATTN_STATUS_OUT_OF_MEMORY;
    case hipErrorNoDevice:
    case hipErrorInvalidDevice: return POLYATTN_STATUS_NOT_FOUND;
    case hipErrorNoBinaryForGpu:
    case hipErrorInvalidDeviceFunction: return POLYATTN_STATUS_UNSUPPORTED;
    default: return POLYATTN_STATUS_DEVICE_ERROR;
    }
}

/* "hipErrorOutOfMemory: out of memory"; ROCm 5.2 returns the name as the string too. */
static void error_text(hipError_t err, char *out, size_t n)
{
    const char *name = hipGetErrorName(err), *text = hipGetErrorString(err);
    if (!name) name = "unknown HIP error";
    if (text && strcmp(text, name) != 0) snprintf(out, n, "%s (%d): %s", name, (int)err, text);
    else snprintf(out, n, "%s (%d)", name, (int)err);
}

polyattn_status pa_hip_fail(pa_device *dev, hipError_t err, const char *expr, const char *file,
                            int line)
{
    const char *base = strrchr(file, '/');
    char text[256];
    error_text(err, text, sizeof text);
    return pa_fail(dev, map_error(err), "%s failed (%s:%d): %s", expr, base ? base + 1 : file, line,
                   text);
}

polyattn_status pa_hip_use(pa_device *dev)
{
    PA_HIP_TRY(dev, hipSetDevice(dev->index));
    return POLYATTN_STATUS_SUCCESS;
}

/* "gfx90a:sramecc+:xnack-" -> "gfx90a": code objects are built feature-agnostic ("any"). */
static void arch_base(const char *gcn_arch_name, char *out, size_t n)
{
    size_t i = 0;
    for (; i + 1 < n && gcn_arch_name[i] && gcn_arch_name[i] != ':'; i++)
        out[i] = gcn_arch_name[i];
    out[i] = '\0';
}

/* Whether this module holds a code object for arch (POLYATTN_HIP_ARCHS: "gfx908;gfx90a"). */
static int arch_compiled(const char *arch)
{
    const char *list = POLYATTN_HIP_ARCHS;
    size_t n = strlen(arch);
    for (const char *p = list; *p;) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && strncmp(p, arch, n) == 0) return 1;
        if (!end) break;
        p = end + 1;
    }
    return 0;
}

/* CDNA matrix cores (MFMA): gfx908 (MI100), gfx90a (MI200), gfx94x (MI300). */
static int arch_has_mfma(const char *arch)
{
    return strcmp(arch, "gfx908") == 0 || strcmp(arch, "gfx90a") == 0 ||
           strncmp(arch, "gfx94", 5) == 0;
}

/* ---- probing -------------------------------------------------------------- */

static char probe_reason[512];

static polyattn_status hip_probe(int *count, const char **reason)
{
    int n = 0;
    hipError_t err = hipGetDeviceCount(&n);
    if (err == hipSuccess && n > 0) {
        *count = n;
        *reason = NULL;
        return POLYATTN_STATUS_SUCCESS;
    }
    *count = 0;
    /* The runtime's own name for it, plus the usual cause when there is no driver node. */
    const char *hint = access("/dev/kfd", R_OK | W_OK) != 0
                           ? " (/dev/kfd is absent or not accessible: no amdgpu kernel driver, or "
                             "the user is not in the render/video group)"
                           : "";
    if (err != hipSuccess) {
        char text[256];
        error_text(err, text, sizeof text);
        snprintf(probe_reason, sizeof probe_reason,
                 "the HIP runtime sees no usable AMD GPU: hipGetDeviceCount: %s%s", text, hint);
    } else
        snprintf(probe_reason, sizeof probe_reason,
                 "the HIP runtime sees no AMD GPU (hipGetDeviceCount returned 0)%s", hint);
    *reason = probe_reason;
    return POLYATTN_STATUS_SUCCESS;
}

static void format_version(int v, char *out, size_t n)
{
    /* HIP_VERSION encoding: major * 10^7 + minor * 10^5 + patch. */
    snprintf(out, n, "%d.%d.%d", v / 10000000, (v / 100000) % 100, v % 100000);
}

static polyattn_status hip_device_info(int index, polyattn_device_info *info)
{
    hipDeviceProp_t prop;
    hipError_t err = hipGetDeviceProperties(&prop, index);
    if (err != hipSuccess)
        return pa_hip_fail(NULL, err, "hipGetDeviceProperties", __FILE__, __LINE__);
    int driver = 0, runtime = 0;
    char dv[32] = "?", rv[32] = "?";
    if (hipDriverGetVersion(&driver) == hipSuccess) format_version(driver, dv, sizeof dv);
    if (hipRuntimeGetVersion(&runtime) == hipSuccess) format_version(runtime, rv, sizeof rv);

    snprintf(info->name, sizeof info->name, "%s", prop.name);
    snprintf(info->vendor, sizeof info->vendor, "AMD");
    snprintf(info->driver_version, sizeof info->driver_version, "HIP driver %s, runtime %s", dv,
             rv);
    arch_base(prop.gcnArchName, info->arch, sizeof info->arch);
    info->global_mem_bytes = (uint64_t)prop.totalGlobalMem;
    info->local_mem_bytes = (uint64_t)prop.sharedMemPerBlock;
    info->compute_units = prop.multiProcessorCount;
    info->max_work_group_size = prop.maxThreadsPerBlock;
    info->subgroup_size = prop.warpSize;
    info->f16_storage = 1;
    info->bf16_storage = 1;
    info->f16_arithmetic = 1; /* packed f16 on every gfx9+ target */
    info->bf16_arithmetic = arch_has_mfma(info->arch);
    return POLYATTN_STATUS_SUCCESS;
}

/* ---- the kernels library ---------------------------------------------------- */

/* Loaded once per process, after every visible GPU proved to be a target of this build:
 * registering a code-object bundle that lacks a present GPU's ISA makes the HIP runtime
 * abort the process ("hipErrorNoBinaryForGpu"), which must never happen to an application
 * that merely probes polyattn's backends. */
static pthread_mutex_t kernels_lock = PTHREAD_MUTEX_INITIALIZER;
static int kernels_tried;
static pa_hip_kernels kernels;
static polyattn_status kernels_status = POLYATTN_STATUS_INTERNAL_ERROR;
static char kernels_error[1024];

static void *kernel_symbol(void *lib, const char *name, int *missing)
{
    void *sym = dlsym(lib, name);
    if (!sym && !*missing) {
        *missing = 1;
        snprintf(kernels_error, sizeof kernels_error, "libpolyattn_hip_kernels.so lacks %s", name);
    }
    return sym;
}

static void load_kernels_locked(void)
{
    int n = 0;
    hipError_t err = hipGetDeviceCount(&n);
    if (err != hipSuccess) {
        kernels_status = map_error(err);
        error_text(err, kernels_error, sizeof kernels_error);
        return;
    }
    for (int i = 0; i < n; i++) {
        hipDeviceProp_t prop;
        char arch[64];
        err = hipGetDeviceProperties(&prop, i);
        if (err != hipSuccess) {
            kernels_status = map_error(err);
            error_text(err, kernels_error, sizeof kernels_error);
            return;
        }
        arch_base(prop.gcnArchName, arch, sizeof arch);
        if (!arch_compiled(arch)) {
            kernels_status = POLYATTN_STATUS_UNSUPPORTED;
            snprintf(kernels_error, sizeof kernels_error,
                     "HIP device %d is %s (%s), which this build has no code objects for (it "
                     "holds %s), and the HIP runtime aborts a process that loads code objects "
                     "missing a visible GPU: rebuild with -DPOLYATTN_HIP_ARCHITECTURES including "
                     "%s, or hide that GPU with HIP_VISIBLE_DEVICES",
                     i, arch, prop.name, POLYATTN_HIP_ARCHS, arch);
            return;
        }
    }
    /* Beside this module (the build's lib/ folder, or the install's). */
    char path[1024] = "libpolyattn_hip_kernels.so";
    Dl_info info;
    if (dladdr((void *)&load_kernels_locked, &info) && info.dli_fname) {
        const char *slash = strrchr(info.dli_fname, '/');
        if (slash)
            snprintf(path, sizeof path, "%.*s/libpolyattn_hip_kernels.so",
                     (int)(slash - info.dli_fname), info.dli_fname);
    }
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        const char *e = dlerror();
        kernels_status = POLYATTN_STATUS_NOT_FOUND;
        snprintf(kernels_error, sizeof kernels_error, "the hip kernels library did not load: %s",
                 e ? e : path);
        return;
    }
    int missing = 0;
    pa_hip_kernels k;
    /* dlsym returns object pointers; POSIX guarantees they convert to function pointers. */
#define PA_HIP_SYM(field, name) *(void **)(&k.field) = kernel_symbol(lib, name, &missing)
    PA_HIP_SYM(flash_generic_smem, "pa_gpu_flash_generic_smem");
    PA_HIP_SYM(flash_generic, "pa_gpu_flash_generic");
    PA_HIP_SYM(fused_smem, "pa_gpu_fused_smem");
    PA_HIP_SYM(fused_workspace, "pa_gpu_fused_workspace");
    PA_HIP_SYM(fused, "pa_gpu_fused");
    PA_HIP_SYM(mask_softmax, "pa_gpu_mask_softmax");
    PA_HIP_SYM(gemm_qk, "pa_gpu_gemm_qk");
    PA_HIP_SYM(gemm_pv, "pa_gpu_gemm_pv");
    PA_HIP_SYM(flash_mfma, "pa_hip_flash_mfma");
    PA_HIP_SYM(fill_u32, "pa_hip_fill_u32");
    PA_HIP_SYM(flash_bwd_workspace, "pa_gpu_flash_bwd_workspace");
    PA_HIP_SYM(flash_bwd_smem, "pa_gpu_flash_bwd_smem");
    PA_HIP_SYM(flash_bwd, "pa_gpu_flash_bwd");
    PA_HIP_SYM(bwd_pack, "pa_gpu_bwd_pack");
    PA_HIP_SYM(bwd_rowdot, "pa_gpu_bwd_rowdot");
    PA_HIP_SYM(bwd_softmax_grad, "pa_gpu_bwd_softmax_grad");
    PA_HIP_SYM(bwd_dbias, "pa_gpu_bwd_dbias");
    PA_HIP_SYM(bwd_dsinks, "pa_gpu_bwd_dsinks");
    PA_HIP_SYM(gemm, "pa_gpu_gemm");
    PA_HIP_SYM(kv_append, "pa_gpu_kv_append");
    PA_HIP_SYM(merge, "pa_gpu_merge");
#undef PA_HIP_SYM
    if (missing) {
        kernels_status = POLYATTN_STATUS_INTERNAL_ERROR;
        dlclose(lib);
        return;
    }
    kernels = k; /* the library stays loaded for the life of the process */
    kernels_status = POLYATTN_STATUS_SUCCESS;
}

static polyattn_status load_kernels(pa_device *dev, const pa_hip_kernels **out)
{
    pthread_mutex_lock(&kernels_lock);
    if (!kernels_tried) {
        kernels_tried = 1;
        load_kernels_locked();
    }
    polyattn_status st = kernels_status;
    pthread_mutex_unlock(&kernels_lock);
    *out = st == POLYATTN_STATUS_SUCCESS ? &kernels : NULL;
    if (st != POLYATTN_STATUS_SUCCESS) return pa_fail(dev, st, "%s", kernels_error);
    return POLYATTN_STATUS_SUCCESS;
}

/* ---- devices -------------------------------------------------------------- */

/* Fills the record from the device's properties and proves that a kernel of this module
 * runs there: a device whose ISA is not among the built targets fails here, with advice,
 * rather than at the first attention call. */
static polyattn_status device_init(pa_hip_device *d)
{
    pa_device *dev = &d->base;
    hipDeviceProp_t prop;
    PA_HIP_TRY(dev, hipSetDevice(dev->index));
    PA_HIP_TRY(dev, hipGetDeviceProperties(&prop, dev->index));
    arch_base(prop.gcnArchName, d->arch, sizeof d->arch);
    d->compute_units = prop.multiProcessorCount;
    d->warp_size = prop.warpSize;
    d->lds_bytes = (uint64_t)prop.sharedMemPerBlock;
    d->max_threads = prop.maxThreadsPerBlock;
    d->has_mfma = arch_has_mfma(d->arch);
    if (!arch_compiled(d->arch))
        return pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED,
                       "HIP device %d is %s (%s) but this build of the hip backend holds code "
                       "objects only for %s; rebuild with -DPOLYATTN_HIP_ARCHITECTURES=%s",
                       dev->index, d->arch, prop.name, POLYATTN_HIP_ARCHS, d->arch);
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status self_test(pa_hip_device *d)
{
    pa_device *dev = &d->base;
    uint32_t *buf = NULL, host[64];
    PA_HIP_TRY(dev, hipMalloc((void **)&buf, sizeof host));
    hipError_t err = d->k->fill_u32(buf, 0x7fc00001u, 64, d->stream);
    if (err == hipSuccess)
        err = hipMemcpyAsync(host, buf, sizeof host, hipMemcpyDeviceToHost, d->stream);
    if (err == hipSuccess) err = hipStreamSynchronize(d->stream);
    hipError_t free_err = hipFree(buf);
    if (err != hipSuccess) return pa_hip_fail(dev, err, "self-test kernel", __FILE__, __LINE__);
    if (free_err != hipSuccess) return pa_hip_fail(dev, free_err, "hipFree", __FILE__, __LINE__);
    for (int i = 0; i < 64; i++)
        if (host[i] != 0x7fc00001u)
            return pa_fail(dev, POLYATTN_STATUS_DEVICE_ERROR,
                           "self-test kernel on %s wrote 0x%08x at %d instead of 0x7fc00001",
                           d->arch, host[i], i);
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status open_common(int index, hipStream_t stream, int owns_stream, pa_device **out)
{
    *out = NULL;
    pa_hip_device *d = calloc(1, sizeof *d);
    if (!d) return pa_fail(NULL, POLYATTN_STATUS_OUT_OF_MEMORY, "out of host memory");
    d->base.ops = &pa_hip_backend_ops;
    d->base.index = index;
    *out = &d->base; /* on failure the caller reads last_error, then calls device_close */
    polyattn_status st = device_init(d);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    st = load_kernels(&d->base, &d->k);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    if (owns_stream) {
        PA_HIP_TRY(&d->base, hipStreamCreateWithFlags(&d->stream, hipStreamNonBlocking));
        d->owns_stream = 1;
    } else {
        d->stream = stream;
    }
    return self_test(d);
}

static polyattn_status hip_device_open(int index, pa_device **out)
{
    return open_common(index, NULL, 1, out);
}

static void hip_device_close(pa_device *dev)
{
    if (!dev) return;
    pa_hip_device *d = pa_hip(dev);
    if (d->owns_stream && d->stream) {
        /* Nothing to report to: close must not fail, but it must not free under running work. */
        if (hipSetDevice(dev->index) == hipSuccess) {
            (void)hipStreamSynchronize(d->stream);
            (void)hipStreamDestroy(d->stream);
        }
    }
    free(d);
}

/* ---- memory --------------------------------------------------------------- */

static polyattn_status hip_mem_alloc(pa_device *dev, uint64_t bytes, void **mem)
{
    *mem = NULL;
    polyattn_status st = pa_hip_use(dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    hipError_t err = hipMalloc(mem, (size_t)bytes);
    if (err != hipSuccess) {
        *mem = NULL;
        (void)hipGetLastError(); /* hipMalloc failures are not sticky; clear the slot */
        char text[256];
        error_text(err, text, sizeof text);
        return pa_fail(dev, map_error(err), "hipMalloc(%llu bytes): %s", (unsigned long long)bytes,
                       text);
    }
    return POLYATTN_STATUS_SUCCESS;
}

static void hip_mem_free(pa_device *dev, void *mem)
{
    if (!mem) return;
    if (hipSetDevice(dev->index) == hipSuccess) (void)hipFree(mem);
}

/* Copies go through the context's stream so they order with its kernels, then wait. */
static polyattn_status hip_mem_write(pa_device *dev, void *mem, uint64_t offset, const void *src,
                                     uint64_t bytes)
{
    pa_hip_device *d = pa_hip(dev);
    polyattn_status st = pa_hip_use(dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    PA_HIP_TRY(dev, hipMemcpyAsync((char *)mem + offset, src, (size_t)bytes, hipMemcpyHostToDevice,
                                   d->stream));
    PA_HIP_TRY(dev, hipStreamSynchronize(d->stream));
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status hip_mem_read(pa_device *dev, void *mem, uint64_t offset, void *dst,
                                    uint64_t bytes)
{
    pa_hip_device *d = pa_hip(dev);
    polyattn_status st = pa_hip_use(dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    PA_HIP_TRY(dev, hipMemcpyAsync(dst, (const char *)mem + offset, (size_t)bytes,
                                   hipMemcpyDeviceToHost, d->stream));
    PA_HIP_TRY(dev, hipStreamSynchronize(d->stream));
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status hip_synchronize(pa_device *dev)
{
    polyattn_status st = pa_hip_use(dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    PA_HIP_TRY(dev, hipStreamSynchronize(pa_hip(dev)->stream));
    return POLYATTN_STATUS_SUCCESS;
}

/* ---- events --------------------------------------------------------------- */

static polyattn_status hip_event_create(pa_device *dev, void **event)
{
    *event = NULL;
    polyattn_status st = pa_hip_use(dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    hipEvent_t ev = NULL;
    PA_HIP_TRY(dev, hipEventCreate(&ev));
    *event = ev;
    return POLYATTN_STATUS_SUCCESS;
}

static void hip_event_destroy(pa_device *dev, void *event)
{
    if (event && hipSetDevice(dev->index) == hipSuccess) (void)hipEventDestroy((hipEvent_t)event);
}

static polyattn_status hip_event_record(pa_device *dev, void *event)
{
    polyattn_status st = pa_hip_use(dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    PA_HIP_TRY(dev, hipEventRecord((hipEvent_t)event, pa_hip(dev)->stream));
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status hip_event_elapsed_ms(pa_device *dev, void *start, void *end, double *ms)
{
    float f = 0.0f;
    polyattn_status st = pa_hip_use(dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    PA_HIP_TRY(dev, hipEventSynchronize((hipEvent_t)start));
    PA_HIP_TRY(dev, hipEventSynchronize((hipEvent_t)end));
    PA_HIP_TRY(dev, hipEventElapsedTime(&f, (hipEvent_t)start, (hipEvent_t)end));
    *ms = (double)f;
    return POLYATTN_STATUS_SUCCESS;
}

/* ---- the module's table and entry point ----------------------------------- */

const pa_backend_ops pa_hip_backend_ops = {
    .abi_version = PA_BACKEND_ABI_VERSION,
    .kind = POLYATTN_BACKEND_HIP,
    .name = "hip",
    .probe = hip_probe,
    .device_info = hip_device_info,
    .device_open = hip_device_open,
    .device_close = hip_device_close,
    .mem_alloc = hip_mem_alloc,
    .mem_free = hip_mem_free,
    .mem_write = hip_mem_write,
    .mem_read = hip_mem_read,
    .synchronize = hip_synchronize,
    .event_create = hip_event_create,
    .event_destroy = hip_event_destroy,
    .event_record = hip_event_record,
    .event_elapsed_ms = hip_event_elapsed_ms,
    .algos = pa_hip_algos,
    .n_algos = PA_HIP_N_ALGOS,
    .merge_states = pa_hip_merge_states,
};

POLYATTN_API const pa_backend_ops *polyattn_backend_entry(void);

const pa_backend_ops *polyattn_backend_entry(void) { return &pa_hip_backend_ops; }

/* ---- interop (include/polyattn_hip.h) ------------------------------------- */

static int is_hip_context(polyattn_context *context)
{
    pa_device *dev = pa_context_device(context);
    return dev && dev->ops && dev->ops->kind == POLYATTN_BACKEND_HIP;
}

polyattn_status polyattn_hip_context_create(int device, hipStream_t stream,
                                            polyattn_context **context)
{
    if (!context) return POLYATTN_STATUS_INVALID_ARGUMENT;
    *context = NULL;
    int n = 0;
    hipError_t err = hipGetDeviceCount(&n);
    if (err != hipSuccess || device < 0 || device >= n)
        return pa_fail(NULL, POLYATTN_STATUS_NOT_FOUND, "HIP device %d: %s (%d device(s))", device,
                       err != hipSuccess ? hipGetErrorName(err) : "out of range", n);
    pa_device *dev = NULL;
    polyattn_status st = open_common(device, stream, 0, &dev);
    if (st == POLYATTN_STATUS_SUCCESS)
        st = pa_context_wrap_device(&pa_hip_backend_ops, dev, context);
    if (st != POLYATTN_STATUS_SUCCESS) hip_device_close(dev);
    return st;
}

hipStream_t polyattn_hip_context_stream(polyattn_context *context)
{
    return is_hip_context(context) ? pa_hip(pa_context_device(context))->stream : NULL;
}

polyattn_status polyattn_hip_buffer_wrap(polyattn_context *context, void *device_ptr,
                                         uint64_t bytes, polyattn_buffer **buffer)
{
    if (!buffer) return POLYATTN_STATUS_INVALID_ARGUMENT;
    *buffer = NULL;
    if (!is_hip_context(context))
        return pa_fail(pa_context_device(context), POLYATTN_STATUS_INVALID_ARGUMENT,
                       "context: not a hip context");
    if (!device_ptr || bytes == 0)
        return pa_fail(pa_context_device(context), POLYATTN_STATUS_INVALID_ARGUMENT,
                       "device_ptr/bytes: a NULL pointer or 0 bytes cannot be wrapped");
    return pa_buffer_wrap(context, device_ptr, bytes, buffer);
}
