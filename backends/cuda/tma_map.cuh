/*
 * TMA tensor maps of the warpgroup-MMA kernels (flash_wgmma.cu, flash_hopper.cu): 4-D maps
 * (head dim, sequence, head, batch) of Q, K, V and O with 64-column boxes and the 128-byte
 * swizzle of wgmma_sm90.cuh, made on the host for each call.
 */
#ifndef POLYATTN_CUDA_TMA_MAP_CUH
#define POLYATTN_CUDA_TMA_MAP_CUH

#include <cuda.h> /* CUtensorMap and its enums (types only: the encoder comes from cudart) */
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <stdint.h>

namespace pa_tma
{

/* The maps of one call's Q, K, V and O (a __grid_constant__ kernel parameter). */
struct TileMaps {
    CUtensorMap q, k, v, o;
};

/* cuTensorMapEncodeTiled, from the driver through cudart (no libcuda link); NULL if absent. */
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder()
{
    static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
        void *p = nullptr;
        cudaDriverEntryPointQueryResult q;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault,
                                             &q) != cudaSuccess ||
            q != cudaDriverEntryPointSuccess)
            p = nullptr;
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
    }();
    return fn;
}

/* The 4-D map of a [batch][heads][seq][dim] tensor with element strides st (batch, head,
 * seq, dim: 1), boxes of box_rows rows by 128 bytes (64 16-bit columns; dtype 4, e4m3:
 * 128 one-byte columns). */
inline cudaError_t make_map(CUtensorMap *map, const void *base, int dtype, int dim, int seq,
                            int heads, int batch, const int64_t *st, int box_rows)
{
    PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
    if (!encode) return cudaErrorNotSupported;
    const cuuint64_t extent[4] = {(cuuint64_t)dim, (cuuint64_t)seq, (cuuint64_t)heads,
                                  (cuuint64_t)batch};
    const int bytes = dtype == 4 ? 1 : 2; /* of an element */
    cuuint64_t stride[3];
    for (int i = 0; i < 3; ++i) /* bytes, dims 1..3; 0 only where the extent is 1 (the
                                 * backend checks), and TMA wants a multiple of 16 there */
        stride[i] = (cuuint64_t)(st[2 - i] > 0 ? st[2 - i] * bytes : 16);
    const cuuint32_t box[4] = {(cuuint32_t)(128 / bytes), (cuuint32_t)box_rows, 1, 1},
                     step[4] = {1, 1, 1, 1};
    const CUresult r =
        encode(map,
               dtype == 4   ? CU_TENSOR_MAP_DATA_TYPE_UINT8
               : dtype == 2 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16
                            : CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
               4, const_cast<void *>(base), extent, stride, box, step,
               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
               CU_TENSOR_MAP_L2_PROMOTION_L2_128B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

} // namespace pa_tma
#endif
