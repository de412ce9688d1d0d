/*
 * Test double of <hip/hip_runtime.h> (tests/hip/emu): runs the shared device code on the CPU.
 * A launch runs its blocks one after another, each with blockDim.x fibers (ucontext); shared
 * memory is per block (static for __shared__ arrays, a fresh NaN-filled buffer for the
 * dynamic part), __syncthreads is a barrier and a shuffle is a block-wide exchange (so every
 * thread must reach it, as on the GPU where the shared code calls it without divergence).
 * The device pass of gfx9 is emulated: wavefront 64, 64 KiB of LDS per work-group.
 */
#ifndef PA_EMU_HIP_RUNTIME_H
#define PA_EMU_HIP_RUNTIME_H

#include "hip_runtime_api.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <algorithm>

#define PA_EMU_LDS_BYTES 65536

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct pa_emu_uint3 {
    unsigned x, y, z;
};
extern pa_emu_uint3 threadIdx;
extern pa_emu_uint3 blockIdx;
extern dim3 gridDim, blockDim;
extern void *pa_emu_dynamic_smem;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __expf expf
using std::max;
using std::min;

void __syncthreads();
float pa_emu_exchange(float v, int lane_xor);
inline float __shfl_xor(float v, int lane_mask, int width)
{
    (void)width; /* lane ^ mask stays inside its aligned group when mask < width */
    return pa_emu_exchange(v, lane_mask);
}
/* One OS thread runs every fiber and switches only at barriers: a plain add is atomic. */
inline float atomicAdd(float *address, float v)
{
    const float old = *address;
    *address = old + v;
    return old;
}
inline float __uint_as_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
inline uint32_t __float_as_uint(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* v_mfma_f32_32x32x8 of one wave64 (backends/hip/flash_mfma.hip documents the layout):
 * collective over the block like the shuffles; a, b: this lane's 4 operand elements. */
void pa_emu_mfma_32x32x8(const float *a, const float *b, float *acc);

enum { hipFuncAttributeMaxDynamicSharedMemorySize = 8 };
/* Refuses more than the LDS of the emulated device, as the launch would on AMD. */
hipError_t hipFuncSetAttribute(const void *fn, int attr, int value);

void pa_emu_run(void (*body)(void *), void *ctx, dim3 grid, dim3 block, size_t smem);

template <typename F>
void pa_emu_trampoline(void *f)
{
    (*static_cast<F *>(f))();
}

template <typename... P>
struct pa_emu_launcher {
    void (*fn)(P...);
    dim3 grid, block;
    size_t smem;
    template <typename... A>
    void operator()(const A &...args)
    {
        auto call = [&]() { fn(args...); };
        pa_emu_run(&pa_emu_trampoline<decltype(call)>, &call, grid, block, smem);
    }
};
/* kernel<<<grid, block, smem, stream>>>(args) is rewritten (tests/hip/CMakeLists.txt) into
 * pa_emu_launch(kernel, grid, block, smem, stream)(args). */
template <typename... P>
pa_emu_launcher<P...> pa_emu_launch(void (*fn)(P...), dim3 grid, dim3 block, size_t smem = 0,
                                    hipStream_t stream = 0)
{
    (void)stream;
    pa_emu_launcher<P...> l;
    l.fn = fn;
    l.grid = grid;
    l.block = block;
    l.smem = smem;
    return l;
}
#endif
