/* Gradient accumulation (f32 += f32/f16/bf16 rows) and f32 -> dtype stores. */
#include "cp_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

template <typename T>
__device__ float to_f32(T x);
template <>
__device__ float to_f32<float>(float x)
{
    return x;
}
template <>
__device__ float to_f32<__half>(__half x)
{
    return __half2float(x);
}
template <>
__device__ float to_f32<__nv_bfloat16>(__nv_bfloat16 x)
{
    return __bfloat162float(x);
}

template <typename T>
__device__ T from_f32(float x);
template <>
__device__ float from_f32<float>(float x)
{
    return x;
}
template <>
__device__ __half from_f32<__half>(float x)
{
    return __float2half_rn(x);
}
template <>
__device__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x)
{
    return __float2bfloat16_rn(x);
}

template <typename T>
__global__ void accumulate_rows_kernel(float *acc, int64_t acc_rows, int64_t acc_row0, const T *src,
                                       int64_t src_rows, int64_t src_row0, int64_t rows,
                                       int64_t width, int64_t total)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        int64_t x = i % width, r = (i / width) % rows, o = i / (width * rows);
        acc[(o * acc_rows + acc_row0 + r) * width + x] +=
            to_f32<T>(src[(o * src_rows + src_row0 + r) * width + x]);
    }
}

template <typename T>
__global__ void store_kernel(T *dst, const float *src, int64_t count)
{
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<T>(src[i]);
}

static unsigned grid_for(int64_t n)
{
    int64_t blocks = (n + 255) / 256;
    return (unsigned)(blocks < 65536 ? (blocks > 0 ? blocks : 1) : 65536);
}

extern "C" int pa_cp_cuda_accumulate(struct CUstream_st *stream, float *acc, int64_t acc_rows,
                                     int64_t acc_row0, const void *src, int dtype, int64_t src_rows,
                                     int64_t src_row0, int64_t outer, int64_t rows, int64_t width)
{
    int64_t total = outer * rows * width;
    if (total == 0) return cudaSuccess;
    cudaStream_t s = (cudaStream_t)stream;
    unsigned g = grid_for(total);
    switch (dtype) {
    case 0:
        accumulate_rows_kernel<float><<<g, 256, 0, s>>>(acc, acc_rows, acc_row0, (const float *)src,
                                                        src_rows, src_row0, rows, width, total);
        break;
    case 1:
        accumulate_rows_kernel<__half><<<g, 256, 0, s>>>(
            acc, acc_rows, acc_row0, (const __half *)src, src_rows, src_row0, rows, width, total);
        break;
    case 2:
        accumulate_rows_kernel<__nv_bfloat16>
            <<<g, 256, 0, s>>>(acc, acc_rows, acc_row0, (const __nv_bfloat16 *)src, src_rows,
                               src_row0, rows, width, total);
        break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

extern "C" int pa_cp_cuda_store(struct CUstream_st *stream, void *dst, int dtype, const float *src,
                                int64_t count)
{
    if (count == 0) return cudaSuccess;
    cudaStream_t s = (cudaStream_t)stream;
    unsigned g = grid_for(count);
    switch (dtype) {
    case 0: store_kernel<float><<<g, 256, 0, s>>>((float *)dst, src, count); break;
    case 1: store_kernel<__half><<<g, 256, 0, s>>>((__half *)dst, src, count); break;
    case 2: store_kernel<__nv_bfloat16><<<g, 256, 0, s>>>((__nv_bfloat16 *)dst, src, count); break;
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}
