/*
 * tf32x3.cuh: f32 products on tf32 tensor cores at f32 accuracy (sm_80+), shared by the f32
 * flash kernels (flash_f32.cu, flash_f32_tile.cu).  Every product a*b is formed as
 *     a_hi*b_hi + a_hi*b_lo + a_lo*b_hi      (mma.sync m16n8k8 tf32, f32 accumulate)
 * with a_hi = tf32(a) rounded to nearest and a_lo = a - a_hi (the mma truncates it to
 * tf32).  The dropped a_lo*b_lo and the truncated low parts are ~2^-21 relative: below the
 * f32 accumulation noise, where plain TF32 would be ~1e-3.
 */
#ifndef POLYATTN_CUDA_TF32X3_CUH
#define POLYATTN_CUDA_TF32X3_CUH

#include <cuda_runtime.h>
#include <stdint.h>

namespace pa_tc
{

/* x = hi + lo: hi rounded to tf32, lo the remainder (f32 bits; the mma reads its top 19). */
__device__ __forceinline__ void split_tf32(uint32_t x, uint32_t &hi, uint32_t &lo)
{
    const float f = __uint_as_float(x);
    uint32_t h;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(h) : "f"(f));
    hi = h;
    lo = __float_as_uint(f - __uint_as_float(h));
}

__device__ __forceinline__ void mma_tf32(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
{
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
                 "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* c += a*b in 3xTF32: the small cross terms first. */
__device__ __forceinline__ void mma3(float c[4], const uint32_t ah[4], const uint32_t al[4],
                                     uint32_t bh0, uint32_t bh1, uint32_t bl0, uint32_t bl1)
{
    mma_tf32(c, al, bh0, bh1);
    mma_tf32(c, ah, bl0, bl1);
    mma_tf32(c, ah, bh0, bh1);
}

} // namespace pa_tc

#endif
