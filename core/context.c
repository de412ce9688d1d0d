/* Contexts, buffers and events: thin, checked wrappers over a backend's device ops. */
#include "pa_core.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char global_error[1024];

void pa_set_global_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(global_error, sizeof global_error, fmt, ap);
    va_end(ap);
    pa_log(POLYATTN_LOG_ERROR, "%s", global_error);
}

const char *polyattn_last_error(void) { return global_error; }

polyattn_status pa_context_fail(polyattn_context *ctx, polyattn_status status, const char *fmt, ...)
{
    char buf[sizeof ctx->dev->last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return pa_fail(ctx->dev, status, "%s", buf);
}

void pa_context_clear_error(polyattn_context *ctx) { ctx->dev->last_error[0] = '\0'; }

static polyattn_backend first_backend_with_device(void)
{
    static const polyattn_backend order[] = {POLYATTN_BACKEND_CUDA, POLYATTN_BACKEND_HIP,
                                             POLYATTN_BACKEND_OPENCL, POLYATTN_BACKEND_HOST};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        int count = 0;
        if (polyattn_device_count(order[i], &count, NULL) == POLYATTN_STATUS_SUCCESS && count > 0)
            return order[i];
    }
    return POLYATTN_BACKEND_HOST;
}

static polyattn_status context_new(const pa_backend_ops *ops, pa_device *dev, int owns,
                                   polyattn_context **out)
{
    polyattn_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        pa_set_global_error("out of host memory for a context");
        return POLYATTN_STATUS_OUT_OF_MEMORY;
    }
    dev->ops = ops;
    polyattn_status st = pa_force_read(dev);
    if (st != POLYATTN_STATUS_SUCCESS) {
        free(ctx);
        return st;
    }
    ctx->ops = ops;
    ctx->dev = dev;
    ctx->owns_device = owns;
    *out = ctx;
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status polyattn_context_create(polyattn_backend backend, int device_index,
                                        polyattn_context **context)
{
    if (!context) {
        pa_set_global_error("context: NULL output pointer");
        return POLYATTN_STATUS_INVALID_ARGUMENT;
    }
    *context = NULL;
    if ((int)backend < 0 || (int)backend >= POLYATTN_BACKEND_COUNT) {
        pa_set_global_error("backend: %d is not a polyattn_backend value", (int)backend);
        return POLYATTN_STATUS_INVALID_ARGUMENT;
    }
    if (backend == POLYATTN_BACKEND_AUTO) backend = first_backend_with_device();
    const char *why = NULL;
    const pa_backend_ops *ops = pa_registry_backend(backend, &why);
    if (!ops) {
        pa_set_global_error("%s backend has no device: %s", polyattn_backend_name(backend), why);
        return POLYATTN_STATUS_NOT_FOUND;
    }
    int count = 0;
    polyattn_device_count(backend, &count, NULL);
    if (device_index < 0 || device_index >= count) {
        pa_set_global_error("device index %d out of range: the %s backend has %d device(s)",
                            device_index, polyattn_backend_name(backend), count);
        return POLYATTN_STATUS_NOT_FOUND;
    }
    pa_device *dev = NULL;
    polyattn_status st = ops->device_open(device_index, &dev);
    if (st != POLYATTN_STATUS_SUCCESS || !dev) {
        pa_set_global_error("%s device %d did not open: %s", ops->name, device_index,
                            dev && dev->last_error[0] ? dev->last_error
                                                      : polyattn_status_string(st));
        if (dev) ops->device_close(dev);
        return st != POLYATTN_STATUS_SUCCESS ? st : POLYATTN_STATUS_INTERNAL_ERROR;
    }
    dev->index = device_index;
    st = context_new(ops, dev, 1, context);
    if (st != POLYATTN_STATUS_SUCCESS) ops->device_close(dev);
    return st;
}

polyattn_status pa_context_wrap_device(const pa_backend_ops *ops, pa_device *dev,
                                       polyattn_context **context)
{
    if (!ops || !dev || !context) return POLYATTN_STATUS_INVALID_ARGUMENT;
    /* The device was opened on caller handles; the context closes it (the backend's
     * device_close must release only what it created). */
    return context_new(ops, dev, 1, context);
}

pa_device *pa_context_device(polyattn_context *context) { return context ? context->dev : NULL; }

void polyattn_context_destroy(polyattn_context *context)
{
    if (!context) return;
    if (context->owns_device) context->ops->device_close(context->dev);
    free(context);
}

polyattn_backend polyattn_context_backend(const polyattn_context *context)
{
    return context ? context->ops->kind : POLYATTN_BACKEND_AUTO;
}

polyattn_status polyattn_context_get_device_info(const polyattn_context *context,
                                                 polyattn_device_info *info)
{
    if (!context) return POLYATTN_STATUS_INVALID_ARGUMENT;
    if (!info || info->struct_size < sizeof(polyattn_device_info))
        return pa_fail(context->dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "info: NULL or struct_size smaller than sizeof(polyattn_device_info)");
    size_t size = info->struct_size;
    memset(info, 0, size);
    info->struct_size = size;
    info->backend = context->ops->kind;
    info->index = context->dev->index;
    return context->ops->device_info(context->dev->index, info);
}

const char *polyattn_context_last_error(const polyattn_context *context)
{
    return context ? context->dev->last_error : polyattn_last_error();
}

polyattn_status polyattn_context_synchronize(polyattn_context *context)
{
    if (!context) return POLYATTN_STATUS_INVALID_ARGUMENT;
    return context->ops->synchronize(context->dev);
}

polyattn_status polyattn_context_memory_stats(polyattn_context *context, int reset_peak,
                                              polyattn_memory_stats *stats)
{
    if (!context || !stats) return POLYATTN_STATUS_INVALID_ARGUMENT;
    stats->current_bytes = context->current_bytes;
    stats->peak_bytes = context->peak_bytes;
    if (reset_peak) context->peak_bytes = context->current_bytes;
    return POLYATTN_STATUS_SUCCESS;
}

/* ---- buffers ---- */

static polyattn_status buffer_new(polyattn_context *ctx, void *mem, uint64_t offset, uint64_t bytes,
                                  polyattn_buffer *parent, int owns, polyattn_buffer **out)
{
    polyattn_buffer *b = calloc(1, sizeof *b);
    if (!b) return pa_context_fail(ctx, POLYATTN_STATUS_OUT_OF_MEMORY, "out of host memory");
    b->ctx = ctx;
    b->mem = mem;
    b->offset = offset;
    b->bytes = bytes;
    b->parent = parent;
    b->owns_mem = owns;
    *out = b;
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status polyattn_buffer_alloc(polyattn_context *context, uint64_t bytes,
                                      polyattn_buffer **buffer)
{
    if (!context) return POLYATTN_STATUS_INVALID_ARGUMENT;
    if (!buffer)
        return pa_context_fail(context, POLYATTN_STATUS_INVALID_ARGUMENT, "buffer: NULL output");
    *buffer = NULL;
    if (bytes == 0 || bytes > (uint64_t)INT64_MAX)
        return pa_context_fail(context, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "bytes: %llu is not a valid allocation size",
                               (unsigned long long)bytes);
    void *mem = NULL;
    polyattn_status st = context->ops->mem_alloc(context->dev, bytes, &mem);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    st = buffer_new(context, mem, 0, bytes, NULL, 1, buffer);
    if (st != POLYATTN_STATUS_SUCCESS) {
        context->ops->mem_free(context->dev, mem);
        return st;
    }
    context->current_bytes += bytes;
    if (context->current_bytes > context->peak_bytes) context->peak_bytes = context->current_bytes;
    return st;
}

polyattn_status pa_buffer_wrap(polyattn_context *context, void *mem, uint64_t bytes,
                               polyattn_buffer **buffer)
{
    if (!context || !mem || !buffer || bytes == 0) return POLYATTN_STATUS_INVALID_ARGUMENT;
    return buffer_new(context, mem, 0, bytes, NULL, 0, buffer);
}

polyattn_status polyattn_host_buffer_wrap(polyattn_context *context, void *ptr, uint64_t bytes,
                                          polyattn_buffer **buffer)
{
    if (!context) {
        pa_set_global_error("context: NULL");
        return POLYATTN_STATUS_INVALID_ARGUMENT;
    }
    if (!buffer) return pa_context_fail(context, POLYATTN_STATUS_INVALID_ARGUMENT, "buffer: NULL");
    *buffer = NULL;
    if (context->ops->kind != POLYATTN_BACKEND_HOST)
        return pa_context_fail(context, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "context: the %s backend's memory is not host memory; wrap "
                               "device memory with its interop header",
                               context->ops->name);
    if (!ptr || bytes == 0)
        return pa_context_fail(context, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "ptr/bytes: a host buffer needs a non-NULL pointer and bytes > 0");
    return pa_buffer_wrap(context, ptr, bytes, buffer);
}

polyattn_status pa_check_buffers(polyattn_context *ctx, pa_buffer_binding *b, int n,
                                 const char *call)
{
    for (int i = 0; i < n; i++) {
        if (b[i].need == 0) {
            b[i].buf = NULL;
            continue;
        }
        if (!b[i].buf)
            return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                                   "%s: NULL but the %s needs %llu bytes", b[i].name, call,
                                   (unsigned long long)b[i].need);
        if (b[i].buf->ctx != ctx)
            return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                                   "%s: buffer belongs to another context", b[i].name);
        if (b[i].buf->bytes < b[i].need)
            return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                                   "%s: buffer holds %llu bytes but the tensor needs %llu",
                                   b[i].name, (unsigned long long)b[i].buf->bytes,
                                   (unsigned long long)b[i].need);
    }
    /* Inputs may share memory (packed QKV); an output may overlap nothing. */
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (b[i].buf && b[j].buf && (b[i].is_output || b[j].is_output) &&
                !(b[i].alias_group && b[i].alias_group == b[j].alias_group) &&
                pa_buffers_overlap(b[i].buf, b[j].buf))
                return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                                       "%s: overlaps %s in memory; outputs must not alias",
                                       b[j].name, b[i].name);
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status polyattn_buffer_view(polyattn_buffer *parent, uint64_t offset, uint64_t bytes,
                                     polyattn_buffer **view)
{
    if (!parent) return POLYATTN_STATUS_INVALID_ARGUMENT;
    polyattn_context *ctx = parent->ctx;
    if (!view) return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT, "view: NULL output");
    *view = NULL;
    if (bytes == 0 || offset > parent->bytes || bytes > parent->bytes - offset)
        return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "offset/bytes: [%llu, +%llu) is not inside the %llu-byte buffer",
                               (unsigned long long)offset, (unsigned long long)bytes,
                               (unsigned long long)parent->bytes);
    polyattn_status st =
        buffer_new(ctx, parent->mem, parent->offset + offset, bytes, parent, 0, view);
    if (st == POLYATTN_STATUS_SUCCESS) parent->n_views++;
    return st;
}

void polyattn_buffer_free(polyattn_buffer *buffer)
{
    if (!buffer) return;
    if (buffer->n_views > 0) {
        /* Freeing a parent under live views would leave them dangling: refuse loudly. */
        pa_context_fail(buffer->ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                        "buffer: freed while %d view(s) of it are alive; the buffer is leaked",
                        buffer->n_views);
        return;
    }
    if (buffer->parent) buffer->parent->n_views--;
    if (buffer->owns_mem) {
        buffer->ctx->ops->mem_free(buffer->ctx->dev, buffer->mem);
        buffer->ctx->current_bytes -= buffer->bytes;
    }
    free(buffer);
}

uint64_t polyattn_buffer_size(const polyattn_buffer *buffer) { return buffer ? buffer->bytes : 0; }

static polyattn_status check_copy(const polyattn_buffer *buffer, uint64_t offset, const void *host,
                                  uint64_t bytes, const char *what)
{
    if (!host && bytes)
        return pa_context_fail(buffer->ctx, POLYATTN_STATUS_INVALID_ARGUMENT, "%s: NULL", what);
    if (offset > buffer->bytes || bytes > buffer->bytes - offset)
        return pa_context_fail(buffer->ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "offset/bytes: [%llu, +%llu) is not inside the %llu-byte buffer",
                               (unsigned long long)offset, (unsigned long long)bytes,
                               (unsigned long long)buffer->bytes);
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status polyattn_buffer_write(polyattn_buffer *buffer, uint64_t offset, const void *src,
                                      uint64_t bytes)
{
    if (!buffer) return POLYATTN_STATUS_INVALID_ARGUMENT;
    polyattn_status st = check_copy(buffer, offset, src, bytes, "src");
    if (st != POLYATTN_STATUS_SUCCESS || bytes == 0) return st;
    return buffer->ctx->ops->mem_write(buffer->ctx->dev, buffer->mem, buffer->offset + offset, src,
                                       bytes);
}

polyattn_status polyattn_buffer_read(const polyattn_buffer *buffer, uint64_t offset, void *dst,
                                     uint64_t bytes)
{
    if (!buffer) return POLYATTN_STATUS_INVALID_ARGUMENT;
    polyattn_status st = check_copy(buffer, offset, dst, bytes, "dst");
    if (st != POLYATTN_STATUS_SUCCESS || bytes == 0) return st;
    return buffer->ctx->ops->mem_read(buffer->ctx->dev, buffer->mem, buffer->offset + offset, dst,
                                      bytes);
}

/* ---- events ---- */

polyattn_status polyattn_event_create(polyattn_context *context, polyattn_event **event)
{
    if (!context) return POLYATTN_STATUS_INVALID_ARGUMENT;
    if (!event)
        return pa_context_fail(context, POLYATTN_STATUS_INVALID_ARGUMENT, "event: NULL output");
    *event = NULL;
    polyattn_event *e = calloc(1, sizeof *e);
    if (!e) return pa_context_fail(context, POLYATTN_STATUS_OUT_OF_MEMORY, "out of host memory");
    e->ctx = context;
    polyattn_status st = context->ops->event_create(context->dev, &e->handle);
    if (st != POLYATTN_STATUS_SUCCESS) {
        free(e);
        return st;
    }
    *event = e;
    return st;
}

void polyattn_event_destroy(polyattn_event *event)
{
    if (!event) return;
    event->ctx->ops->event_destroy(event->ctx->dev, event->handle);
    free(event);
}

polyattn_status polyattn_event_record(polyattn_event *event)
{
    if (!event) return POLYATTN_STATUS_INVALID_ARGUMENT;
    return event->ctx->ops->event_record(event->ctx->dev, event->handle);
}

polyattn_status polyattn_event_elapsed_ms(polyattn_event *start, polyattn_event *end, double *ms)
{
    if (!start || !end || !ms) return POLYATTN_STATUS_INVALID_ARGUMENT;
    if (start->ctx != end->ctx)
        return pa_context_fail(start->ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "end: event of another context");
    return start->ctx->ops->event_elapsed_ms(start->ctx->dev, start->handle, end->handle, ms);
}
