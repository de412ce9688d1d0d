/* include/polyattn_opencl.h: contexts and buffers on caller-owned OpenCL objects. */
#include "ocl_internal.h"
#include "polyattn_opencl.h"

#include <stdlib.h>

polyattn_status polyattn_context_create_opencl(cl_context cl_ctx, cl_device_id device,
                                               cl_command_queue queue, polyattn_context **context)
{
    if (!context) return POLYATTN_STATUS_INVALID_ARGUMENT;
    *context = NULL;
    if (!cl_ctx || !device || !queue) return POLYATTN_STATUS_INVALID_ARGUMENT;
    /* The queue must belong to this context and device. */
    cl_context qctx = NULL;
    cl_device_id qdev = NULL;
    if (clGetCommandQueueInfo(queue, CL_QUEUE_CONTEXT, sizeof qctx, &qctx, NULL) != CL_SUCCESS ||
        clGetCommandQueueInfo(queue, CL_QUEUE_DEVICE, sizeof qdev, &qdev, NULL) != CL_SUCCESS ||
        qctx != cl_ctx || qdev != device)
        return POLYATTN_STATUS_INVALID_ARGUMENT;
    ocl_device *d = NULL;
    polyattn_status st = ocl_device_create(device, cl_ctx, queue, &d);
    if (st != POLYATTN_STATUS_SUCCESS) {
        if (d) ocl_backend_ops.device_close(&d->base);
        return st;
    }
    /* device_info looks devices up by index: find this one among the enumerated. */
    d->base.index = ocl_device_index_of(device);
    st = pa_context_wrap_device(&ocl_backend_ops, &d->base, context);
    if (st != POLYATTN_STATUS_SUCCESS) ocl_backend_ops.device_close(&d->base);
    return st;
}

polyattn_status polyattn_buffer_wrap_opencl(polyattn_context *context, cl_mem mem, uint64_t bytes,
                                            polyattn_buffer **buffer)
{
    if (!context || !mem || !buffer) return POLYATTN_STATUS_INVALID_ARGUMENT;
    pa_device *dev = pa_context_device(context);
    if (!dev || dev->ops != &ocl_backend_ops) return POLYATTN_STATUS_INVALID_ARGUMENT;
    ocl_device *d = (ocl_device *)dev;
    size_t size = 0;
    cl_context mctx = NULL;
    if (clGetMemObjectInfo(mem, CL_MEM_SIZE, sizeof size, &size, NULL) != CL_SUCCESS ||
        clGetMemObjectInfo(mem, CL_MEM_CONTEXT, sizeof mctx, &mctx, NULL) != CL_SUCCESS)
        return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT, "opencl: not a valid cl_mem");
    if (mctx != d->context)
        return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl: the cl_mem belongs to another cl_context");
    if (bytes == 0 || bytes > size)
        return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl: bytes %llu is 0 or larger than the cl_mem (%zu bytes)",
                       (unsigned long long)bytes, size);
    return pa_buffer_wrap(context, mem, bytes, buffer);
}
