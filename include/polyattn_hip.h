/*
 * polyattn HIP interop: run polyattn on a caller's hipStream_t and on caller-owned device
 * memory, without copies.  Optional header: it includes <hip/hip_runtime_api.h>, so compile
 * with ROCm's include folder and, outside hipcc, -D__HIP_PLATFORM_AMD__ (CMake's hip::host
 * target sets both); link libpolyattn_hip besides libpolyattn.
 *
 * The functions live in the hip backend module (libpolyattn_hip.so) because they need the HIP
 * runtime; libpolyattn itself never depends on a vendor runtime.
 */
#ifndef POLYATTN_HIP_H
#define POLYATTN_HIP_H

#include "polyattn.h"

#include <hip/hip_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A context on HIP device `device` whose work is enqueued on `stream` (may be NULL: the null
 * stream).  The stream stays the caller's: polyattn never destroys it, and the caller keeps it
 * alive until polyattn_context_destroy.  Blocking calls (buffer copies, synchronize) wait for
 * this stream only. */
POLYATTN_API polyattn_status polyattn_hip_context_create(int device, hipStream_t stream,
                                                         polyattn_context **context);

/* The stream a hip context enqueues on (its own or the caller's); NULL for a context of
 * another backend. */
POLYATTN_API hipStream_t polyattn_hip_context_stream(polyattn_context *context);

/* A buffer around caller-owned device memory [device_ptr, device_ptr + bytes) on the
 * context's device (hipMalloc'd or any device pointer HIP accepts).  polyattn never frees it;
 * polyattn_buffer_free releases only the wrapper.  Views work as on any buffer. */
POLYATTN_API polyattn_status polyattn_hip_buffer_wrap(polyattn_context *context, void *device_ptr,
                                                      uint64_t bytes, polyattn_buffer **buffer);

#ifdef __cplusplus
}
#endif
#endif /* POLYATTN_HIP_H */
