/*
 * polyattn OpenCL interop: run polyattn on the caller's OpenCL context and queue, on the
 * caller's cl_mem buffers, without copies.  Link libpolyattn_opencl (and libpolyattn).
 */
#ifndef POLYATTN_OPENCL_H
#define POLYATTN_OPENCL_H

#include "polyattn.h"

#ifndef CL_TARGET_OPENCL_VERSION
#define CL_TARGET_OPENCL_VERSION 120
#endif
#include <CL/cl.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A context on the caller's context, device and in-order queue (all retained while the
 * polyattn context lives; none is released beyond that).  The queue must have
 * CL_QUEUE_PROFILING_ENABLE for polyattn events to time; forward work goes onto it. */
POLYATTN_API polyattn_status polyattn_context_create_opencl(cl_context cl_ctx, cl_device_id device,
                                                            cl_command_queue queue,
                                                            polyattn_context **context);

/* A buffer over the caller's cl_mem (bytes <= its size), never copied nor released by
 * polyattn; the cl_mem must belong to the context's cl_context. */
POLYATTN_API polyattn_status polyattn_buffer_wrap_opencl(polyattn_context *context, cl_mem mem,
                                                         uint64_t bytes, polyattn_buffer **buffer);

#ifdef __cplusplus
}
#endif
#endif /* POLYATTN_OPENCL_H */
