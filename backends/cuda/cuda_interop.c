/* include/polyattn_cuda.h: contexts on a caller's stream, buffers over caller memory. */
#include "cuda_internal.h"

#include "polyattn_cuda.h"

polyattn_status polyattn_cuda_context_create(int device_index, struct CUstream_st *stream,
                                             polyattn_context **context)
{
    if (!context) return POLYATTN_STATUS_INVALID_ARGUMENT;
    *context = NULL;
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || device_index < 0 || device_index >= count) {
        (void)cudaGetLastError();
        return POLYATTN_STATUS_NOT_FOUND;
    }
    pa_device *dev = NULL;
    polyattn_status st = pa_cuda_open(device_index, (cudaStream_t)stream, 0, &dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    st = pa_context_wrap_device(&pa_cuda_ops, dev, context);
    if (st != POLYATTN_STATUS_SUCCESS) pa_cuda_ops.device_close(dev);
    return st;
}

static pa_cuda_device *cuda_context_device(polyattn_context *context)
{
    if (!context || polyattn_context_backend(context) != POLYATTN_BACKEND_CUDA) return NULL;
    pa_device *d = pa_context_device(context);
    return d && d->ops == &pa_cuda_ops ? pa_cuda_dev(d) : NULL;
}

polyattn_status polyattn_cuda_context_stream(polyattn_context *context, struct CUstream_st **stream)
{
    pa_cuda_device *dev = cuda_context_device(context);
    if (!dev || !stream) return POLYATTN_STATUS_INVALID_ARGUMENT;
    *stream = (struct CUstream_st *)dev->stream;
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status polyattn_cuda_buffer_wrap(polyattn_context *context, void *device_ptr,
                                          uint64_t bytes, polyattn_buffer **buffer)
{
    pa_cuda_device *dev = cuda_context_device(context);
    if (!dev || !buffer) return POLYATTN_STATUS_INVALID_ARGUMENT;
    *buffer = NULL;
    struct cudaPointerAttributes attr;
    cudaError_t e = cudaPointerGetAttributes(&attr, device_ptr);
    if (e != cudaSuccess ||
        (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)) {
        (void)cudaGetLastError();
        return pa_fail(&dev->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "polyattn_cuda_buffer_wrap: %p is not CUDA device memory", device_ptr);
    }
    if (attr.type == cudaMemoryTypeDevice && attr.device != dev->ordinal)
        return pa_fail(&dev->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "polyattn_cuda_buffer_wrap: memory of device %d, context on device %d",
                       attr.device, dev->ordinal);
    return pa_buffer_wrap(context, device_ptr, bytes, buffer);
}
