/*
 * gpu_port.h: the few runtime calls and intrinsics that the device code shared by the
 * CUDA and HIP backends (backends/gpu/) uses, under neutral names.
 *
 * Rules for shared code: the warp (wavefront) width is GPU_WARP_SIZE, taken from the target
 * (64 on CDNA, 32 on NVIDIA and RDNA wave32); never assume 32 lanes and never build a 32-bit
 * lane mask.  Reductions work on groups of a fixed width that divides GPU_WARP_SIZE
 * (gpu_group_max/sum), so a kernel behaves the same whatever the wavefront size is.
 *
 * Owners: the CUDA branch belongs to the cuda backend, the HIP branch to the hip backend.
 */
#ifndef POLYATTN_GPU_PORT_H
#define POLYATTN_GPU_PORT_H

#if defined(__HIPCC__) || defined(__HIP_PLATFORM_AMD__)
/* ---------------------------------------------------------------- HIP branch */
/* Must build with ROCm 5.2 (Debian 12) and newer: only hip_runtime.h and hip_fp16.h. */
#include <hip/hip_runtime.h>
#include <hip/hip_fp16.h>
#include <stdint.h>
#define GPU_BACKEND_HIP 1
/* Wavefront width of the target of this device pass: clang defines __AMDGCN_WAVEFRONT_SIZE
 * per target (64 on gfx9/CDNA, 32 on RDNA).  The host pass of a fat binary serves every
 * target at once (and clang sets the macro there too, to 64), so on the host GPU_WARP_SIZE is
 * the narrowest width, 32: good for static checks (a group that fits 32 lanes fits every
 * target), wrong for launch geometry or kernel template arguments, which must not use it. */
#if defined(__HIP_DEVICE_COMPILE__) && defined(__AMDGCN_WAVEFRONT_SIZE)
#define GPU_WARP_SIZE __AMDGCN_WAVEFRONT_SIZE
#elif defined(__HIP_DEVICE_COMPILE__)
#error "HIP device pass without __AMDGCN_WAVEFRONT_SIZE: unknown wavefront width"
#else
#define GPU_WARP_SIZE 32
#endif
typedef hipStream_t gpuStream_t;
typedef hipError_t gpuError_t;
#define gpuSuccess hipSuccess
#define gpuGetLastError hipGetLastError
#define gpuGetErrorString hipGetErrorString
/* AMD has no opt-in for dynamic LDS: up to the device's 64 KiB per work-group always works,
 * and the hip backend's check() refuses more.  A no-op keeps ROCm versions that reject this
 * CUDA-compatibility attribute from failing every launch. */
#define gpuFuncSetAttribute(fn, attr, value) ((void)(fn), (void)(attr), (void)(value), hipSuccess)
typedef __half gpu_half;
/* bf16 as its bits: ROCm 5.2 has no __hip_bfloat16, and hip_bfloat16 (a class) differs by
 * version.  Same layout as __nv_bfloat16 (2 bytes), converted below. */
typedef struct gpu_bf16 {
    uint16_t bits;
} gpu_bf16;
__device__ __forceinline__ float gpu_shfl_xor(float v, int lane_mask, int width)
{
    return __shfl_xor(v, lane_mask, width);
}
__device__ __forceinline__ float gpu_half_to_float(gpu_half h) { return __half2float(h); }
__device__ __forceinline__ gpu_half gpu_float_to_half(float f) { return __float2half_rn(f); }
__device__ __forceinline__ float gpu_bf16_to_float(gpu_bf16 h)
{
    return __uint_as_float((uint32_t)h.bits << 16);
}
/* Round to nearest even on the upper 16 bits, as the host's pa_f32_to_bf16; NaN stays NaN. */
__device__ __forceinline__ gpu_bf16 gpu_float_to_bf16(float f)
{
    uint32_t u = __float_as_uint(f);
    gpu_bf16 r;
    if ((u & 0x7fffffffu) > 0x7f800000u) r.bits = (uint16_t)((u >> 16) | 0x40u);
    else r.bits = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return r;
}

#else
/* --------------------------------------------------------------- CUDA branch */
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <stdint.h>
#define GPU_BACKEND_CUDA 1
/* warpSize is not a constant expression in CUDA; every NVIDIA target has 32 lanes. */
#define GPU_WARP_SIZE 32
typedef cudaStream_t gpuStream_t;
typedef cudaError_t gpuError_t;
#define gpuSuccess cudaSuccess
#define gpuGetLastError cudaGetLastError
#define gpuGetErrorString cudaGetErrorString
#define gpuFuncSetAttribute(fn, attr, value)                                                       \
    cudaFuncSetAttribute((fn), cudaFuncAttributeMaxDynamicSharedMemorySize, (value))
typedef __half gpu_half;
typedef __nv_bfloat16 gpu_bf16;
/* Every lane of the warp takes part in the shuffles of shared code (no divergent calls),
 * so the full-warp member mask is right; it is spelled without a 32-bit literal. */
__device__ __forceinline__ float gpu_shfl_xor(float v, int lane_mask, int width)
{
    return __shfl_xor_sync(~0u, v, lane_mask, width);
}
__device__ __forceinline__ float gpu_half_to_float(gpu_half h) { return __half2float(h); }
__device__ __forceinline__ gpu_half gpu_float_to_half(float f) { return __float2half_rn(f); }
__device__ __forceinline__ float gpu_bf16_to_float(gpu_bf16 h) { return __bfloat162float(h); }
__device__ __forceinline__ gpu_bf16 gpu_float_to_bf16(float f) { return __float2bfloat16_rn(f); }
#endif

/* ------------------------------------------------------------ both backends */

/* FP8 e4m3 (OCP e4m3fn) as its byte; decoded exactly in software on every target: sign,
 * exponent bias 7, 3 mantissa bits, subnormals m x 2^-9, S.1111.111 NaN, no infinities. */
typedef struct gpu_e4m3 {
    uint8_t bits;
} gpu_e4m3;
__device__ __forceinline__ float gpu_e4m3_to_float(gpu_e4m3 x)
{
    const uint32_t b = x.bits, sign = (b & 0x80u) << 24, e = (b >> 3) & 15u, m = b & 7u;
    if ((b & 0x7fu) == 0x7fu) return __uint_as_float(sign | 0x7fc00000u);
    if (e == 0) return __uint_as_float(sign | __float_as_uint((float)m * 0.001953125f));
    return __uint_as_float(sign | ((e + 120u) << 23) | (m << 20));
}

/* Reductions over aligned groups of `width` consecutive lanes; width is a power of two
 * that divides GPU_WARP_SIZE, and every lane of the group gets the result. */
template <int WIDTH>
__device__ __forceinline__ float gpu_group_max(float v)
{
    static_assert(WIDTH <= GPU_WARP_SIZE && GPU_WARP_SIZE % WIDTH == 0, "group must fit a warp");
#pragma unroll
    for (int m = WIDTH / 2; m > 0; m /= 2)
        v = fmaxf(v, gpu_shfl_xor(v, m, WIDTH));
    return v;
}
template <int WIDTH>
__device__ __forceinline__ float gpu_group_sum(float v)
{
    static_assert(WIDTH <= GPU_WARP_SIZE && GPU_WARP_SIZE % WIDTH == 0, "group must fit a warp");
#pragma unroll
    for (int m = WIDTH / 2; m > 0; m /= 2)
        v += gpu_shfl_xor(v, m, WIDTH);
    return v;
}

#endif /* POLYATTN_GPU_PORT_H */
