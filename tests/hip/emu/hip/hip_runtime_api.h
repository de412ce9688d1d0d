/*
 * Test double of <hip/hip_runtime_api.h> for the CPU emulation of the hip backend
 * (tests/hip/emu): only what backends/hip/pa_hip.h, hip_algos.c and the shared device code
 * use.  Never installed, never seen by the real module.
 */
#ifndef PA_EMU_HIP_RUNTIME_API_H
#define PA_EMU_HIP_RUNTIME_API_H

#include <stddef.h>
#include <stdint.h>

typedef int hipError_t;
#define hipSuccess 0
#define hipErrorInvalidValue 1
#define hipErrorLaunchFailure 719
typedef void *hipStream_t;

#ifdef __cplusplus
extern "C" {
#endif
hipError_t hipSetDevice(int device);
hipError_t hipGetLastError(void);
const char *hipGetErrorName(hipError_t err);
const char *hipGetErrorString(hipError_t err);
#ifdef __cplusplus
}
#endif
#endif
