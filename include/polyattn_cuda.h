/*
 * polyattn_cuda.h: CUDA interop (optional).  Link libpolyattn_cuda as well as libpolyattn.
 *
 * Streams are taken as `struct CUstream_st *`, which is what cudaStream_t and CUstream are,
 * so this header needs no CUDA header and a cudaStream_t passes without a cast.
 */
#ifndef POLYATTN_CUDA_H
#define POLYATTN_CUDA_H

#include "polyattn.h"

#ifdef __cplusplus
extern "C" {
#endif

struct CUstream_st;

/* A context on CUDA device `device_index` whose work is queued on the caller's stream
 * (NULL: the legacy default stream).  polyattn never destroys the stream; the caller keeps
 * it alive until polyattn_context_destroy. */
POLYATTN_API polyattn_status polyattn_cuda_context_create(int device_index,
                                                          struct CUstream_st *stream,
                                                          polyattn_context **context);

/* CUDA graphs: polyattn_forward and polyattn_backward of a made plan allocate no memory,
 * never synchronise and read nothing back to the host (kernel, schedule and workspace are
 * fixed when the plan is made), so both can be captured on the context's stream
 * (cudaStreamBeginCapture, any capture mode) and the graph replayed with the same buffers.
 * The unfused algorithm runs cuBLAS, which (CUDA 12.2+) allocates its workspace
 * stream-ordered inside the graph. */

/* The stream a CUDA context queues its work on. */
POLYATTN_API polyattn_status polyattn_cuda_context_stream(polyattn_context *context,
                                                          struct CUstream_st **stream);

/* A buffer over caller-owned device memory (cudaMalloc/cudaMallocAsync/managed), no copy;
 * polyattn never frees it.  device_ptr must stay valid while the buffer lives. */
POLYATTN_API polyattn_status polyattn_cuda_buffer_wrap(polyattn_context *context, void *device_ptr,
                                                       uint64_t bytes, polyattn_buffer **buffer);

#ifdef __cplusplus
}
#endif
#endif /* POLYATTN_CUDA_H */
