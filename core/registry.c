/*
 * The registry of backends: the host backend is built in.  In a shared build the GPU
 * backends are modules (libpolyattn_<name>.so.<SOVERSION>) loaded on first use from the
 * folder of libpolyattn itself or from $POLYATTN_MODULE_PATH; a module is used only when it
 * was built for this very library version and backend interface.  A static build
 * (POLYATTN_STATIC_BACKENDS) links the backends in and takes their entry points from a table
 * instead: no dlopen.  A backend that is not built, not found or fails to load (its vendor
 * runtime is missing) means zero devices and a reason, never an error.
 */
#define _GNU_SOURCE /* dladdr */
#include "pa_core.h"
#include "host/pa_host.h"

#include <stdlib.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#ifndef POLYATTN_STATIC_BACKENDS
#include <dlfcn.h>
#include <unistd.h>
#endif

typedef struct backend_slot {
    polyattn_backend kind;
    const char *name;
    int compiled;
    int loaded; /* load attempted */
    const pa_backend_ops *ops;
    char why_not[2048]; /* reason for no ops or no devices */
    int device_count;   /* -1 until probed */
} backend_slot;

#ifndef POLYATTN_HAVE_CUDA
#define POLYATTN_HAVE_CUDA 0
#endif
#ifndef POLYATTN_HAVE_HIP
#define POLYATTN_HAVE_HIP 0
#endif
#ifndef POLYATTN_HAVE_OPENCL
#define POLYATTN_HAVE_OPENCL 0
#endif

static backend_slot slots[POLYATTN_BACKEND_COUNT] = {
    [POLYATTN_BACKEND_CUDA] = {POLYATTN_BACKEND_CUDA, "cuda", POLYATTN_HAVE_CUDA, 0, NULL, "", -1},
    [POLYATTN_BACKEND_HIP] = {POLYATTN_BACKEND_HIP, "hip", POLYATTN_HAVE_HIP, 0, NULL, "", -1},
    [POLYATTN_BACKEND_OPENCL] = {POLYATTN_BACKEND_OPENCL, "opencl", POLYATTN_HAVE_OPENCL, 0, NULL,
                                 "", -1},
    [POLYATTN_BACKEND_HOST] = {POLYATTN_BACKEND_HOST, "host", 1, 0, NULL, "", -1},
};
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;

#ifdef POLYATTN_STATIC_BACKENDS
/* Entry points of the backends linked into this library: the build renames each backend's
 * polyattn_backend_entry to pa_<name>_backend_entry (cmake/PolyattnBackendModule.cmake). */
#if POLYATTN_HAVE_CUDA
const pa_backend_ops *pa_cuda_backend_entry(void);
#endif
#if POLYATTN_HAVE_HIP
const pa_backend_ops *pa_hip_backend_entry(void);
#endif
#if POLYATTN_HAVE_OPENCL
const pa_backend_ops *pa_opencl_backend_entry(void);
#endif

static pa_backend_entry_fn linked_entry(polyattn_backend kind)
{
    switch (kind) {
#if POLYATTN_HAVE_CUDA
    case POLYATTN_BACKEND_CUDA: return pa_cuda_backend_entry;
#endif
#if POLYATTN_HAVE_HIP
    case POLYATTN_BACKEND_HIP: return pa_hip_backend_entry;
#endif
#if POLYATTN_HAVE_OPENCL
    case POLYATTN_BACKEND_OPENCL: return pa_opencl_backend_entry;
#endif
    default: return NULL;
    }
}

static void load_module(backend_slot *slot)
{
    pa_backend_entry_fn entry = linked_entry(slot->kind);
    const pa_backend_ops *ops = entry ? entry() : NULL;
    if (!ops || ops->abi_version != PA_BACKEND_ABI_VERSION || ops->kind != slot->kind) {
        snprintf(slot->why_not, sizeof slot->why_not,
                 "the %s backend linked into this library is not of interface version %d",
                 slot->name, PA_BACKEND_ABI_VERSION);
        pa_log(POLYATTN_LOG_DISPATCH, "%s backend: %s", slot->name, slot->why_not);
        return;
    }
    slot->ops = ops;
}
#else
#ifndef PA_MODULE_SOVERSION
#error "PA_MODULE_SOVERSION (the library's SOVERSION, as a string) must be defined"
#endif
/* Exported by every module (cmake/polyattn_module_version.c.in). */
#define PA_MODULE_VERSION_SYMBOL "polyattn_backend_version"
typedef const char *(*pa_module_version_fn)(void);

/* Folder holding libpolyattn, found from the address of one of its functions. */
static void module_dir(char *out, size_t n)
{
    Dl_info info;
    out[0] = '\0';
    if (dladdr((void *)&module_dir, &info) && info.dli_fname) {
        snprintf(out, n, "%s", info.dli_fname);
        char *slash = strrchr(out, '/');
        if (slash) slash[1] = '\0';
        else out[0] = '\0';
    }
}

/* The module's library version, or NULL when it exports none. */
static const char *module_version(void *handle)
{
    pa_module_version_fn fn;
    void *sym = dlsym(handle, PA_MODULE_VERSION_SYMBOL);
    if (!sym) return NULL;
    memcpy(&fn, &sym, sizeof fn); /* object pointer to function pointer, POSIX-style */
    return fn();
}

static void load_module(backend_slot *slot)
{
    char path[1024], dir[768];
    const char *env = getenv("POLYATTN_MODULE_PATH");
    if (env && *env) snprintf(dir, sizeof dir, "%s/", env);
    else module_dir(dir, sizeof dir);
    /* The versioned name (the module's SONAME) first; the bare .so where only that exists
     * (a module copied by hand).  Either way the version check below decides. */
    snprintf(path, sizeof path, "%slibpolyattn_%s.so." PA_MODULE_SOVERSION, dir, slot->name);
    if (access(path, F_OK) != 0)
        snprintf(path, sizeof path, "%slibpolyattn_%s.so", dir, slot->name);

    dlerror();
    void *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        const char *err = dlerror();
        snprintf(slot->why_not, sizeof slot->why_not, "module %s did not load: %s", path,
                 err ? err : "unknown error");
        pa_log(POLYATTN_LOG_DISPATCH, "%s backend: %s", slot->name, slot->why_not);
        return;
    }
    /* The module interface is internal: only a module of this very release is used. */
    const char *version = module_version(handle);
    if (!version || strcmp(version, POLYATTN_VERSION_STRING) != 0) {
        snprintf(slot->why_not, sizeof slot->why_not,
                 "module %s is %s%s, but this libpolyattn is version %s", path,
                 version ? "version " : "of an unknown version", version ? version : "",
                 POLYATTN_VERSION_STRING);
        pa_log(POLYATTN_LOG_DISPATCH, "%s backend: %s", slot->name, slot->why_not);
        dlclose(handle);
        return;
    }
    pa_backend_entry_fn entry;
    void *sym = dlsym(handle, PA_BACKEND_ENTRY_SYMBOL);
    memcpy(&entry, &sym, sizeof entry); /* object pointer to function pointer, POSIX-style */
    const pa_backend_ops *ops = sym ? entry() : NULL;
    if (!ops || ops->abi_version != PA_BACKEND_ABI_VERSION || ops->kind != slot->kind) {
        snprintf(slot->why_not, sizeof slot->why_not,
                 "module %s is not a polyattn %s backend of interface version %d", path, slot->name,
                 PA_BACKEND_ABI_VERSION);
        pa_log(POLYATTN_LOG_DISPATCH, "%s backend: %s", slot->name, slot->why_not);
        dlclose(handle);
        return;
    }
    slot->ops = ops; /* the module stays loaded for the life of the process */
}
#endif

/* Loads and probes once.  Call with registry_lock held. */
static void ensure_probed(backend_slot *slot)
{
    if (slot->loaded) return;
    slot->loaded = 1;
    slot->device_count = 0;
    if (!slot->compiled) {
        snprintf(slot->why_not, sizeof slot->why_not,
                 "the %s backend was not compiled into this build", slot->name);
        return;
    }
    if (slot->kind == POLYATTN_BACKEND_HOST) slot->ops = pa_host_backend_ops();
    else load_module(slot);
    if (!slot->ops) return;

    const char *reason = NULL;
    int count = 0;
    polyattn_status st = slot->ops->probe(&count, &reason);
    if (st != POLYATTN_STATUS_SUCCESS || count <= 0) {
        snprintf(slot->why_not, sizeof slot->why_not, "%s",
                 reason ? reason
                        : (st != POLYATTN_STATUS_SUCCESS ? polyattn_status_string(st)
                                                         : "no devices found"));
        count = 0;
    }
    slot->device_count = count;
    pa_log(POLYATTN_LOG_DISPATCH, "%s backend: %d device(s)%s%s", slot->name, count,
           count ? "" : ": ", count ? "" : slot->why_not);
}

static backend_slot *slot_of(polyattn_backend backend)
{
    if ((int)backend <= (int)POLYATTN_BACKEND_AUTO || (int)backend >= POLYATTN_BACKEND_COUNT)
        return NULL;
    return &slots[backend];
}

int polyattn_backend_compiled(polyattn_backend backend)
{
    backend_slot *slot = slot_of(backend);
    return slot ? slot->compiled : 0;
}

polyattn_status polyattn_device_count(polyattn_backend backend, int *count, const char **reason)
{
    if (reason) *reason = NULL;
    if (!count) return POLYATTN_STATUS_INVALID_ARGUMENT;
    *count = 0;
    backend_slot *slot = slot_of(backend);
    if (!slot) {
        if (reason) *reason = "not a backend (AUTO names none)";
        return POLYATTN_STATUS_INVALID_ARGUMENT;
    }
    pthread_mutex_lock(&registry_lock);
    ensure_probed(slot);
    *count = slot->device_count;
    pthread_mutex_unlock(&registry_lock);
    if (reason && *count == 0) *reason = slot->why_not;
    return POLYATTN_STATUS_SUCCESS;
}

const pa_backend_ops *pa_registry_backend(polyattn_backend backend, const char **why_not)
{
    backend_slot *slot = slot_of(backend);
    if (!slot) {
        *why_not = "unknown backend";
        return NULL;
    }
    pthread_mutex_lock(&registry_lock);
    ensure_probed(slot);
    const pa_backend_ops *ops = slot->device_count > 0 ? slot->ops : NULL;
    pthread_mutex_unlock(&registry_lock);
    *why_not = slot->why_not;
    return ops;
}

polyattn_status polyattn_device_get_info(polyattn_backend backend, int index,
                                         polyattn_device_info *info)
{
    if (!info || info->struct_size < sizeof(polyattn_device_info)) {
        pa_set_global_error("info: NULL or struct_size smaller than sizeof(polyattn_device_info)");
        return POLYATTN_STATUS_INVALID_ARGUMENT;
    }
    const char *why = NULL;
    const pa_backend_ops *ops = pa_registry_backend(backend, &why);
    if (!ops) {
        pa_set_global_error("%s backend has no device: %s", polyattn_backend_name(backend), why);
        return POLYATTN_STATUS_NOT_FOUND;
    }
    int count = 0;
    polyattn_device_count(backend, &count, NULL);
    if (index < 0 || index >= count) {
        pa_set_global_error("device index %d out of range: the %s backend has %d device(s)", index,
                            polyattn_backend_name(backend), count);
        return POLYATTN_STATUS_NOT_FOUND;
    }
    size_t size = info->struct_size;
    memset(info, 0, size);
    info->struct_size = size;
    info->backend = backend;
    info->index = index;
    return ops->device_info(index, info);
}
