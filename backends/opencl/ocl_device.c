/* OpenCL backend: discovery, probing, devices, memory, events and the ops table. */
#include "ocl_algos.h"
#include "ocl_internal.h"
#include "ocl_policy.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OCL_MAX_DEVICES 64

/* The OpenCL error codes polyattn may meet, by name. */
#define OCL_ERROR_NAME(x)                                                                          \
    {                                                                                              \
        x, #x                                                                                      \
    }
static const struct {
    cl_int code;
    const char *name;
} ocl_error_names[] = {
    OCL_ERROR_NAME(CL_SUCCESS),
    OCL_ERROR_NAME(CL_DEVICE_NOT_FOUND),
    OCL_ERROR_NAME(CL_DEVICE_NOT_AVAILABLE),
    OCL_ERROR_NAME(CL_COMPILER_NOT_AVAILABLE),
    OCL_ERROR_NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE),
    OCL_ERROR_NAME(CL_OUT_OF_RESOURCES),
    OCL_ERROR_NAME(CL_OUT_OF_HOST_MEMORY),
    OCL_ERROR_NAME(CL_PROFILING_INFO_NOT_AVAILABLE),
    OCL_ERROR_NAME(CL_MEM_COPY_OVERLAP),
    OCL_ERROR_NAME(CL_IMAGE_FORMAT_MISMATCH),
    OCL_ERROR_NAME(CL_IMAGE_FORMAT_NOT_SUPPORTED),
    OCL_ERROR_NAME(CL_BUILD_PROGRAM_FAILURE),
    OCL_ERROR_NAME(CL_MAP_FAILURE),
    OCL_ERROR_NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET),
    OCL_ERROR_NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST),
    OCL_ERROR_NAME(CL_COMPILE_PROGRAM_FAILURE),
    OCL_ERROR_NAME(CL_LINKER_NOT_AVAILABLE),
    OCL_ERROR_NAME(CL_LINK_PROGRAM_FAILURE),
    OCL_ERROR_NAME(CL_DEVICE_PARTITION_FAILED),
    OCL_ERROR_NAME(CL_KERNEL_ARG_INFO_NOT_AVAILABLE),
    OCL_ERROR_NAME(CL_INVALID_VALUE),
    OCL_ERROR_NAME(CL_INVALID_DEVICE_TYPE),
    OCL_ERROR_NAME(CL_INVALID_PLATFORM),
    OCL_ERROR_NAME(CL_INVALID_DEVICE),
    OCL_ERROR_NAME(CL_INVALID_CONTEXT),
    OCL_ERROR_NAME(CL_INVALID_QUEUE_PROPERTIES),
    OCL_ERROR_NAME(CL_INVALID_COMMAND_QUEUE),
    OCL_ERROR_NAME(CL_INVALID_HOST_PTR),
    OCL_ERROR_NAME(CL_INVALID_MEM_OBJECT),
    OCL_ERROR_NAME(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR),
    OCL_ERROR_NAME(CL_INVALID_IMAGE_SIZE),
    OCL_ERROR_NAME(CL_INVALID_SAMPLER),
    OCL_ERROR_NAME(CL_INVALID_BINARY),
    OCL_ERROR_NAME(CL_INVALID_BUILD_OPTIONS),
    OCL_ERROR_NAME(CL_INVALID_PROGRAM),
    OCL_ERROR_NAME(CL_INVALID_PROGRAM_EXECUTABLE),
    OCL_ERROR_NAME(CL_INVALID_KERNEL_NAME),
    OCL_ERROR_NAME(CL_INVALID_KERNEL_DEFINITION),
    OCL_ERROR_NAME(CL_INVALID_KERNEL),
    OCL_ERROR_NAME(CL_INVALID_ARG_INDEX),
    OCL_ERROR_NAME(CL_INVALID_ARG_VALUE),
    OCL_ERROR_NAME(CL_INVALID_ARG_SIZE),
    OCL_ERROR_NAME(CL_INVALID_KERNEL_ARGS),
    OCL_ERROR_NAME(CL_INVALID_WORK_DIMENSION),
    OCL_ERROR_NAME(CL_INVALID_WORK_GROUP_SIZE),
    OCL_ERROR_NAME(CL_INVALID_WORK_ITEM_SIZE),
    OCL_ERROR_NAME(CL_INVALID_GLOBAL_OFFSET),
    OCL_ERROR_NAME(CL_INVALID_EVENT_WAIT_LIST),
    OCL_ERROR_NAME(CL_INVALID_EVENT),
    OCL_ERROR_NAME(CL_INVALID_OPERATION),
    OCL_ERROR_NAME(CL_INVALID_GL_OBJECT),
    OCL_ERROR_NAME(CL_INVALID_BUFFER_SIZE),
    OCL_ERROR_NAME(CL_INVALID_MIP_LEVEL),
    OCL_ERROR_NAME(CL_INVALID_GLOBAL_WORK_SIZE),
    OCL_ERROR_NAME(CL_INVALID_PROPERTY),
    OCL_ERROR_NAME(CL_INVALID_IMAGE_DESCRIPTOR),
    OCL_ERROR_NAME(CL_INVALID_COMPILER_OPTIONS),
    OCL_ERROR_NAME(CL_INVALID_LINKER_OPTIONS),
    OCL_ERROR_NAME(CL_INVALID_DEVICE_PARTITION_COUNT),
    {-1001, "CL_PLATFORM_NOT_FOUND_KHR"},
};
#undef OCL_ERROR_NAME

const char *ocl_error_name(cl_int err)
{
    for (size_t i = 0; i < sizeof ocl_error_names / sizeof ocl_error_names[0]; i++)
        if (ocl_error_names[i].code == err) return ocl_error_names[i].name;
    return "CL_UNKNOWN_ERROR";
}

polyattn_status ocl_fail(ocl_device *d, cl_int err, const char *what)
{
    polyattn_status st = POLYATTN_STATUS_DEVICE_ERROR;
    if (err == CL_MEM_OBJECT_ALLOCATION_FAILURE || err == CL_OUT_OF_HOST_MEMORY ||
        err == CL_INVALID_BUFFER_SIZE)
        st = POLYATTN_STATUS_OUT_OF_MEMORY;
    else if (err == CL_BUILD_PROGRAM_FAILURE) st = POLYATTN_STATUS_KERNEL_BUILD_FAILED;
    return pa_fail(&d->base, st, "opencl: %s: %s (%d)", what, ocl_error_name(err), (int)err);
}

/* ---- discovery ----------------------------------------------------------- */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static struct {
    int count;
    cl_device_id devices[OCL_MAX_DEVICES];
    ocl_caps caps[OCL_MAX_DEVICES];
    const char *reason;
} g_list;

static void str_info(cl_device_id dev, cl_device_info what, char *buf, size_t size)
{
    buf[0] = '\0';
    if (clGetDeviceInfo(dev, what, size, buf, NULL) != CL_SUCCESS) buf[0] = '\0';
    buf[size - 1] = '\0';
}

static int has_ext(const char *exts, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = exts; (p = strstr(p, name)) != NULL; p += n)
        if ((p == exts || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0')) return 1;
    return 0;
}

polyattn_status ocl_probe_caps(cl_device_id dev, ocl_caps *c)
{
    memset(c, 0, sizeof *c);
    str_info(dev, CL_DEVICE_NAME, c->name, sizeof c->name);
    str_info(dev, CL_DEVICE_VENDOR, c->vendor, sizeof c->vendor);
    str_info(dev, CL_DRIVER_VERSION, c->driver, sizeof c->driver);
    str_info(dev, CL_DEVICE_VERSION, c->version, sizeof c->version);
    str_info(dev, CL_DEVICE_OPENCL_C_VERSION, c->c_version, sizeof c->c_version);
    cl_platform_id plat = NULL;
    if (clGetDeviceInfo(dev, CL_DEVICE_PLATFORM, sizeof plat, &plat, NULL) == CL_SUCCESS) {
        char pname[128] = "", pver[120] = "";
        clGetPlatformInfo(plat, CL_PLATFORM_NAME, sizeof pname, pname, NULL);
        clGetPlatformInfo(plat, CL_PLATFORM_VERSION, sizeof pver, pver, NULL);
        pname[sizeof pname - 1] = pver[sizeof pver - 1] = '\0';
        snprintf(c->platform, sizeof c->platform, "%s / %s", pname, pver);
    }
    cl_ulong u = 0;
    cl_uint ui = 0;
    size_t sz = 0;
    clGetDeviceInfo(dev, CL_DEVICE_TYPE, sizeof c->type, &c->type, NULL);
    clGetDeviceInfo(dev, CL_DEVICE_VENDOR_ID, sizeof c->vendor_id, &c->vendor_id, NULL);
    if (clGetDeviceInfo(dev, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof u, &u, NULL) == CL_SUCCESS)
        c->global_mem = u;
    if (clGetDeviceInfo(dev, CL_DEVICE_LOCAL_MEM_SIZE, sizeof u, &u, NULL) == CL_SUCCESS)
        c->local_mem = u;
    if (clGetDeviceInfo(dev, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof u, &u, NULL) == CL_SUCCESS)
        c->max_alloc = u;
    if (clGetDeviceInfo(dev, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof ui, &ui, NULL) == CL_SUCCESS)
        c->compute_units = (int)ui;
    if (clGetDeviceInfo(dev, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof sz, &sz, NULL) == CL_SUCCESS)
        c->max_wg = (int)sz;

    size_t ext_len = 0;
    char *exts = NULL;
    if (clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_len) == CL_SUCCESS &&
        (exts = calloc(1, ext_len + 1)) != NULL)
        clGetDeviceInfo(dev, CL_DEVICE_EXTENSIONS, ext_len, exts, NULL);
    const char *e = exts ? exts : "";
    c->fp16 = has_ext(e, "cl_khr_fp16");
    c->subgroups = has_ext(e, "cl_khr_subgroups") || has_ext(e, "cl_intel_subgroups");

    char vend_lc[128];
    size_t i;
    for (i = 0; c->vendor[i] && i + 1 < sizeof vend_lc; i++)
        vend_lc[i] =
            (char)(c->vendor[i] >= 'A' && c->vendor[i] <= 'Z' ? c->vendor[i] + 32 : c->vendor[i]);
    vend_lc[i] = '\0';
    c->is_nvidia = strstr(vend_lc, "nvidia") != NULL || c->vendor_id == 0x10de;
    c->is_cpu = (c->type & CL_DEVICE_TYPE_CPU) != 0;
    /* CPUs through PoCL report their CPU vendor ("AuthenticAMD", "GenuineIntel"). */
    c->is_amd = !c->is_cpu && (strstr(vend_lc, "advanced micro") != NULL ||
                               strstr(vend_lc, "amd") != NULL || c->vendor_id == 0x1002);
    c->is_intel = !c->is_cpu && (strstr(vend_lc, "intel") != NULL || c->vendor_id == 0x8086);
    c->is_pocl = strstr(c->version, "PoCL") != NULL || strstr(c->platform, "Portable") != NULL;

    /* Subgroup width: Intel lists its sizes (cl_intel_required_subgroup_size); NVIDIA warps
     * are 32, AMD wavefronts 64 (GCN/CDNA; RDNA reports 32 through its own query). */
    if (has_ext(e, "cl_intel_required_subgroup_size")) {
#ifndef CL_DEVICE_SUB_GROUP_SIZES_INTEL
#define CL_DEVICE_SUB_GROUP_SIZES_INTEL 0x4108
#endif
        size_t sizes[8] = {0}, bytes = 0;
        if (clGetDeviceInfo(dev, CL_DEVICE_SUB_GROUP_SIZES_INTEL, sizeof sizes, sizes, &bytes) ==
            CL_SUCCESS)
            for (size_t k = 0; k < bytes / sizeof sizes[0]; k++)
                if ((int)sizes[k] > c->subgroup_size) c->subgroup_size = (int)sizes[k];
    } else if (c->is_nvidia) {
        c->subgroup_size = 32;
    } else if (c->is_amd) {
#ifndef CL_DEVICE_WAVEFRONT_WIDTH_AMD
#define CL_DEVICE_WAVEFRONT_WIDTH_AMD 0x4043
#endif
        cl_uint w = 0;
        c->subgroup_size =
            clGetDeviceInfo(dev, CL_DEVICE_WAVEFRONT_WIDTH_AMD, sizeof w, &w, NULL) == CL_SUCCESS &&
                    w
                ? (int)w
                : 64;
    }
    free(exts);
    return POLYATTN_STATUS_SUCCESS;
}

static void enumerate(void)
{
    cl_uint n_plat = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &n_plat);
    if (err == -1001 /* CL_PLATFORM_NOT_FOUND_KHR: no ICD installed */ || n_plat == 0) {
        g_list.reason = "no OpenCL platform found (no ICD registered in /etc/OpenCL/vendors)";
        return;
    }
    if (err != CL_SUCCESS) {
        g_list.reason = "clGetPlatformIDs failed";
        return;
    }
    cl_platform_id plats[16];
    if (n_plat > 16) n_plat = 16;
    if (clGetPlatformIDs(n_plat, plats, NULL) != CL_SUCCESS) {
        g_list.reason = "clGetPlatformIDs failed";
        return;
    }
    /* GPUs and accelerators first, then CPUs: device 0 is the likeliest fast one. */
    for (int pass = 0; pass < 2; pass++)
        for (cl_uint p = 0; p < n_plat; p++) {
            cl_uint n_dev = 0;
            if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &n_dev) != CL_SUCCESS)
                continue;
            cl_device_id devs[OCL_MAX_DEVICES];
            if (n_dev > OCL_MAX_DEVICES) n_dev = OCL_MAX_DEVICES;
            if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, n_dev, devs, NULL) != CL_SUCCESS)
                continue;
            for (cl_uint k = 0; k < n_dev && g_list.count < OCL_MAX_DEVICES; k++) {
                cl_bool avail = CL_FALSE;
                cl_device_type type = 0;
                clGetDeviceInfo(devs[k], CL_DEVICE_AVAILABLE, sizeof avail, &avail, NULL);
                clGetDeviceInfo(devs[k], CL_DEVICE_TYPE, sizeof type, &type, NULL);
                if (!avail || ((type & CL_DEVICE_TYPE_CPU) != 0) != (pass == 1)) continue;
                g_list.devices[g_list.count] = devs[k];
                ocl_probe_caps(devs[k], &g_list.caps[g_list.count]);
                g_list.count++;
            }
        }
    if (g_list.count == 0) g_list.reason = "OpenCL platforms found, but no available device";
}

static polyattn_status ocl_probe(int *count, const char **reason)
{
    pthread_once(&g_once, enumerate);
    *count = g_list.count;
    if (reason) *reason = g_list.reason;
    return POLYATTN_STATUS_SUCCESS;
}

int ocl_device_index_of(cl_device_id dev)
{
    pthread_once(&g_once, enumerate);
    for (int i = 0; i < g_list.count; i++)
        if (g_list.devices[i] == dev) return i;
    return -1;
}

static void copy_str(char *dst, size_t size, const char *src) { snprintf(dst, size, "%s", src); }

static void fill_info(const ocl_caps *c, polyattn_device_info *info)
{
    copy_str(info->name, sizeof info->name, c->name);
    copy_str(info->vendor, sizeof info->vendor, c->vendor);
    copy_str(info->driver_version, sizeof info->driver_version, c->driver);
    copy_str(info->arch, sizeof info->arch, c->c_version);
    info->global_mem_bytes = c->global_mem;
    info->local_mem_bytes = c->local_mem;
    info->compute_units = c->compute_units;
    info->max_work_group_size = c->max_wg;
    info->subgroup_size = c->subgroup_size;
    info->f16_storage = 1; /* vload_half/vstore_half need no extension */
    info->bf16_storage = 1;
    info->f16_arithmetic = c->fp16;
    info->bf16_arithmetic = 0;
}

static polyattn_status ocl_device_info(int index, polyattn_device_info *info)
{
    pthread_once(&g_once, enumerate);
    if (index < 0 || index >= g_list.count) return POLYATTN_STATUS_NOT_FOUND;
    fill_info(&g_list.caps[index], info);
    return POLYATTN_STATUS_SUCCESS;
}

/* ---- devices ------------------------------------------------------------- */

polyattn_status ocl_device_create(cl_device_id dev_id, cl_context ctx, cl_command_queue queue,
                                  ocl_device **out)
{
    *out = NULL;
    ocl_device *d = calloc(1, sizeof *d);
    if (!d) return POLYATTN_STATUS_OUT_OF_MEMORY;
    d->base.ops = &ocl_backend_ops;
    d->device = dev_id;
    *out = d;
    ocl_probe_caps(dev_id, &d->caps);
    cl_int err = CL_SUCCESS;
    if (ctx) {
        d->context = ctx;
        clRetainContext(ctx);
    } else {
        d->context = clCreateContext(NULL, 1, &dev_id, NULL, NULL, &err);
        if (err != CL_SUCCESS) return ocl_fail(d, err, "clCreateContext");
    }
    d->owns_context = 1; /* retained or created: released on close either way */
    if (queue) {
        /* Events need profiling: a caller queue without it cannot time. */
        d->queue = queue;
        clRetainCommandQueue(queue);
    } else {
        d->queue = clCreateCommandQueue(d->context, dev_id, CL_QUEUE_PROFILING_ENABLE, &err);
        if (err != CL_SUCCESS) return ocl_fail(d, err, "clCreateCommandQueue");
    }
    d->owns_queue = 1;
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status ocl_device_open(int index, pa_device **out)
{
    pthread_once(&g_once, enumerate);
    if (index < 0 || index >= g_list.count) return POLYATTN_STATUS_NOT_FOUND;
    ocl_device *d = NULL;
    polyattn_status st = ocl_device_create(g_list.devices[index], NULL, NULL, &d);
    *out = d ? &d->base : NULL;
    if (d) d->base.index = index;
    return st;
}

static void ocl_device_close(pa_device *dev)
{
    ocl_device *d = (ocl_device *)dev;
    if (!d) return;
    if (d->queue) clFinish(d->queue);
    ocl_release_programs(d);
    if (d->queue && d->owns_queue) clReleaseCommandQueue(d->queue);
    if (d->context && d->owns_context) clReleaseContext(d->context);
    free(d);
}

/* ---- memory -------------------------------------------------------------- */

static polyattn_status ocl_mem_alloc(pa_device *dev, uint64_t bytes, void **mem)
{
    ocl_device *d = (ocl_device *)dev;
    *mem = NULL;
    if (d->caps.max_alloc && bytes > d->caps.max_alloc)
        return pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY,
                       "opencl: %llu bytes exceed the device's largest allocation (%llu bytes)",
                       (unsigned long long)bytes, (unsigned long long)d->caps.max_alloc);
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(d->context, CL_MEM_READ_WRITE, (size_t)bytes, NULL, &err);
    if (err != CL_SUCCESS) return ocl_fail(d, err, "clCreateBuffer");
    *mem = m;
    return POLYATTN_STATUS_SUCCESS;
}

static void ocl_mem_free(pa_device *dev, void *mem)
{
    (void)dev;
    if (mem) clReleaseMemObject((cl_mem)mem);
}

static polyattn_status ocl_mem_write(pa_device *dev, void *mem, uint64_t offset, const void *src,
                                     uint64_t bytes)
{
    ocl_device *d = (ocl_device *)dev;
    cl_int err = clEnqueueWriteBuffer(d->queue, (cl_mem)mem, CL_TRUE, (size_t)offset, (size_t)bytes,
                                      src, 0, NULL, NULL);
    return err == CL_SUCCESS ? POLYATTN_STATUS_SUCCESS : ocl_fail(d, err, "clEnqueueWriteBuffer");
}

static polyattn_status ocl_mem_read(pa_device *dev, void *mem, uint64_t offset, void *dst,
                                    uint64_t bytes)
{
    ocl_device *d = (ocl_device *)dev;
    cl_int err = clEnqueueReadBuffer(d->queue, (cl_mem)mem, CL_TRUE, (size_t)offset, (size_t)bytes,
                                     dst, 0, NULL, NULL);
    return err == CL_SUCCESS ? POLYATTN_STATUS_SUCCESS : ocl_fail(d, err, "clEnqueueReadBuffer");
}

static polyattn_status ocl_synchronize(pa_device *dev)
{
    ocl_device *d = (ocl_device *)dev;
    cl_int err = clFinish(d->queue);
    return err == CL_SUCCESS ? POLYATTN_STATUS_SUCCESS : ocl_fail(d, err, "clFinish");
}

/* ---- events: markers on the profiling queue ------------------------------ */

typedef struct ocl_event {
    cl_event ev;
} ocl_event;

static polyattn_status ocl_event_create(pa_device *dev, void **event)
{
    (void)dev;
    ocl_event *e = calloc(1, sizeof *e);
    if (!e) return POLYATTN_STATUS_OUT_OF_MEMORY;
    *event = e;
    return POLYATTN_STATUS_SUCCESS;
}

static void ocl_event_destroy(pa_device *dev, void *event)
{
    (void)dev;
    ocl_event *e = event;
    if (!e) return;
    if (e->ev) clReleaseEvent(e->ev);
    free(e);
}

static polyattn_status ocl_event_record(pa_device *dev, void *event)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_event *e = event;
    if (e->ev) clReleaseEvent(e->ev);
    e->ev = NULL;
    cl_int err = clEnqueueMarkerWithWaitList(d->queue, 0, NULL, &e->ev);
    return err == CL_SUCCESS ? POLYATTN_STATUS_SUCCESS
                             : ocl_fail(d, err, "clEnqueueMarkerWithWaitList");
}

static polyattn_status ocl_event_elapsed_ms(pa_device *dev, void *start, void *end, double *ms)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_event *a = start, *b = end;
    if (!a->ev || !b->ev)
        return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT, "opencl: event never recorded");
    cl_event both[2] = {a->ev, b->ev};
    cl_int err = clWaitForEvents(2, both);
    if (err != CL_SUCCESS) return ocl_fail(d, err, "clWaitForEvents");
    cl_ulong t0 = 0, t1 = 0;
    err = clGetEventProfilingInfo(a->ev, CL_PROFILING_COMMAND_END, sizeof t0, &t0, NULL);
    if (err == CL_SUCCESS)
        err = clGetEventProfilingInfo(b->ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
    if (err != CL_SUCCESS)
        return ocl_fail(d, err, "clGetEventProfilingInfo (is the queue profiling-enabled?)");
    *ms = ((double)t1 - (double)t0) * 1e-6;
    return POLYATTN_STATUS_SUCCESS;
}

const pa_backend_ops ocl_backend_ops = {
    .abi_version = PA_BACKEND_ABI_VERSION,
    .kind = POLYATTN_BACKEND_OPENCL,
    .name = "opencl",
    .probe = ocl_probe,
    .device_info = ocl_device_info,
    .device_open = ocl_device_open,
    .device_close = ocl_device_close,
    .mem_alloc = ocl_mem_alloc,
    .mem_free = ocl_mem_free,
    .mem_write = ocl_mem_write,
    .mem_read = ocl_mem_read,
    .synchronize = ocl_synchronize,
    .event_create = ocl_event_create,
    .event_destroy = ocl_event_destroy,
    .event_record = ocl_event_record,
    .event_elapsed_ms = ocl_event_elapsed_ms,
    .algos = ocl_algos,
    .n_algos = OCL_N_ALGOS,
    .auto_order = pa_ocl_auto_order,
    .merge_states = ocl_merge_states,
};

__attribute__((visibility("default"))) const pa_backend_ops *polyattn_backend_entry(void);
const pa_backend_ops *polyattn_backend_entry(void) { return &ocl_backend_ops; }
