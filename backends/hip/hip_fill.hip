// A fill kernel for the hip backend: poisons outputs in debug runs and checks at device open
// that this module carries a code object the device can run.  Not an attention kernel; those
// are shared with CUDA in backends/gpu/.
#include <hip/hip_runtime.h>
#include <stdint.h>

#include "pa_hip.h"

// Grid-stride, so any count works with a bounded grid.
__global__ void fill_u32_kernel(uint32_t *dst, uint32_t value, uint64_t count)
{
    uint64_t stride = (uint64_t)gridDim.x * blockDim.x;
    for (uint64_t i = (uint64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
        dst[i] = value;
}

extern "C" hipError_t pa_hip_fill_u32(void *dst, uint32_t value, uint64_t count, hipStream_t stream)
{
    if (count == 0) return hipSuccess;
    const unsigned threads = 256;
    uint64_t blocks = (count + threads - 1) / threads;
    if (blocks > 4096) blocks = 4096;
    hipLaunchKernelGGL(fill_u32_kernel, dim3((unsigned)blocks), dim3(threads), 0, stream,
                       (uint32_t *)dst, value, count);
    return hipGetLastError();
}
