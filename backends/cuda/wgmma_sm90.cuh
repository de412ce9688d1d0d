/*
 * Hopper warpgroup MMA (wgmma, sm_90a only) for the wgmma flash kernel (flash_wgmma.cu):
 * shared-memory matrix descriptors of the 128-byte-swizzled tiles it keeps, and the
 * products it issues.  Compiled only in a pass for sm_90a (__CUDA_ARCH_FEAT_SM90_ALL).
 *
 * Tile layout (Q, K and V alike; what a TMA load of 64 x 64 boxes with the 128-byte swizzle
 * writes): a tile of R rows by 256 columns (16-bit) is four blocks
 * of 64 columns, R * 128 bytes apart; in a block, row r takes 128 bytes at (r/8)*1024 +
 * (r%8)*128, and its 16-byte chunk c sits at chunk c ^ (r%8) (the 128-byte swizzle, on
 * address bits, so every block starts 1024-byte aligned).  That is the canonical K-major
 * layout for Q and K (row = M or N, column = K) and the canonical MN-major layout for V
 * (row = K, column = N): PTX ISA, "Shared Memory Matrix Layout".
 */
#ifndef POLYATTN_CUDA_WGMMA_SM90_CUH
#define POLYATTN_CUDA_WGMMA_SM90_CUH

#include "tc_common.cuh"

#include <string.h>

namespace pa_wg
{

using pa_tc::smem_addr;

constexpr int kGroupBytes = 1024; /* 8 rows of one block: the swizzle pattern's period */

/* Byte offset of the 16-byte chunk holding columns [8*chunk, 8*chunk + 8) of row r in a
 * tile of `rows` rows. */
__host__ __device__ constexpr uint32_t chunk_offset(int rows, int r, int chunk)
{
    return (uint32_t)((chunk / 8) * rows * 128 + (r / 8) * kGroupBytes + (r % 8) * 128 +
                      (((chunk % 8) ^ (r % 8)) * 16));
}

/* Descriptor of the matrix starting at shared address addr (1024-byte aligned block, plus
 * a k offset inside the 128-byte rows), 128-byte swizzle; lbo, sbo in bytes. */
__device__ __forceinline__ uint64_t desc(uint32_t addr, uint32_t lbo, uint32_t sbo)
{
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)((lbo & 0x3FFFF) >> 4) << 16) |
           ((uint64_t)((sbo & 0x3FFFF) >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ void fence()
{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void commit()
{
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N>
__device__ __forceinline__ void wait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Pins registers at this point of the program for the compiler (an empty asm that reads and
 * writes them): plain instructions defining a product's inputs stay before it */
template <int N>
__device__ __forceinline__ void fence_regs(float (&r)[N])
{
#pragma unroll
    for (int i = 0; i < N; ++i)
        asm volatile("" : "+f"(r[i])::"memory");
}
template <int N, int M>
__device__ __forceinline__ void fence_regs(uint32_t (&r)[N][M])
{
#pragma unroll
    for (int i = 0; i < N; ++i)
#pragma unroll
        for (int k = 0; k < M; ++k)
            asm volatile("" : "+r"(r[i][k])::"memory");
}
/* Makes this thread's generic-proxy shared-memory writes (cp.async, st.shared) visible to
 * the async proxy that wgmma reads its shared operands through. */
__device__ __forceinline__ void fence_async_shared()
{
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/* D[32] (+)= A (64 x 16, K-major, descriptor) * B (64 x 16, K-major, descriptor)^T */
#define PA_WGMMA_SS_M64N64K16(TY)                                                                  \
    asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %34, 0;\n"                                    \
                 " wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {"                     \
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"           \
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"  \
                 "}, %32, %33, p, 1, 1, 0, 0;\n}\n"                                                \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),         \
                   "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),       \
                   "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),   \
                   "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),   \
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),   \
                   "+f"(d[30]), "+f"(d[31])                                                        \
                 : "l"(desc_a), "l"(desc_b), "r"(scale_d))

/* D[128] (+)= A (64 x 16, registers) * B (16 x 256, N-major, descriptor) */
#define PA_WGMMA_RS_M64N256K16(TY)                                                                 \
    asm volatile(                                                                                  \
        "{\n .reg .pred p;\n setp.ne.b32 p, %133, 0;\n"                                            \
        " wgmma.mma_async.sync.aligned.m64n256k16.f32." TY "." TY " {"                             \
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"                    \
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"          \
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"          \
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63,"          \
        "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79,"          \
        "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95,"          \
        "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, "   \
        "%111,"                                                                                    \
        "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, "     \
        "%126, %127"                                                                               \
        "}, {%128, %129, %130, %131}, %132, p, 1, 1, 1;\n}\n"                                      \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),      \
          "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),  \
          "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),            \
          "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]),            \
          "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),            \
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]),            \
          "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]),            \
          "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]),            \
          "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),            \
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]),            \
          "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]),            \
          "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]),            \
          "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),            \
          "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]),            \
          "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]),            \
          "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]),            \
          "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),        \
          "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]),      \
          "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]),      \
          "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]),      \
          "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])       \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d))

/* D[64] (+)= A (64 x K, registers) * B (K x 128, descriptor).  SHAPE: the instruction's
 * shape and types; TAIL: its immediates after scale-d (16-bit: "1, 1, 1", B N-major; e4m3,
 * which has no transposes: "1, 1", B K-major). */
#define PA_WGMMA_RS_M64N128(SHAPE, TAIL)                                                           \
    asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %69, 0;\n"                                    \
                 " wgmma.mma_async.sync.aligned." SHAPE " {"                                       \
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"           \
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31," \
                 "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47," \
                 "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"  \
                 "}, {%64, %65, %66, %67}, %68, p, " TAIL ";\n}\n"                                 \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),         \
                   "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),       \
                   "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),   \
                   "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),   \
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),   \
                   "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),   \
                   "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]),   \
                   "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),   \
                   "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]),   \
                   "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]),   \
                   "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])                              \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d))

/* D[64] (+)= A (64 x K, K-major, descriptor) * B (128 x K, K-major, descriptor)^T.  SHAPE
 * and TAIL as for PA_WGMMA_RS_M64N128 (16-bit: "1, 1, 0, 0"; e4m3: "1, 1"). */
#define PA_WGMMA_SS_M64N128(SHAPE, TAIL)                                                           \
    asm volatile(                                                                                  \
        "{\n .reg .pred p;\n setp.ne.b32 p, %66, 0;\n"                                             \
        " wgmma.mma_async.sync.aligned." SHAPE " {"                                                \
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "    \
        "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, "    \
        "%36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, "    \
        "%53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"                                    \
        "}, %64, %65, p, " TAIL ";\n}\n"                                                           \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),      \
          "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),  \
          "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]),            \
          "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]),            \
          "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),            \
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]),            \
          "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]),            \
          "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]),            \
          "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),            \
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]),            \
          "+f"(d[62]), "+f"(d[63])                                                                 \
        : "l"(desc_a), "l"(desc_b), "r"(scale_d))

/* D[32] (+)= A (64 x 16, registers) * B (16 x 64, N-major, descriptor) */
#define PA_WGMMA_RS_M64N64K16(TY)                                                                  \
    asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %37, 0;\n"                                    \
                 " wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " {"                     \
                 "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, "     \
                 "%17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"       \
                 "}, {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"                                  \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),         \
                   "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),       \
                   "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),   \
                   "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),   \
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),   \
                   "+f"(d[30]), "+f"(d[31])                                                        \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(scale_d))

/* ---- TMA tile loads, completed on an mbarrier (pa_tc::mbar_expect arms it, pa_tc::mbar_wait
 * waits) */
__device__ __forceinline__ void bar_init(uint64_t *bar)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n"
                 "fence.mbarrier_init.release.cluster;\n" ::"r"(smem_addr(bar))
                 : "memory");
}
/* An mbarrier whose phase completes after `count` plain arrivals (mbar_arrive). */
__device__ __forceinline__ void bar_init_count(uint64_t *bar, int count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n"
                 "fence.mbarrier_init.release.cluster;\n" ::"r"(smem_addr(bar)),
                 "r"(count)
                 : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint64_t *bar)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_addr(bar)) : "memory");
}
/* Named barrier `id` (1..15; 0 is __syncthreads) of `threads` threads: sync waits for the
 * count (its own warps included), arrive counts its warps and goes on. */
__device__ __forceinline__ void named_sync(int id, int threads)
{
    asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
__device__ __forceinline__ void named_arrive(int id, int threads)
{
    asm volatile("bar.arrive %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}
/* Hands registers back to (dec) or takes them from (inc) the SM's pool, for the whole
 * warpgroup: producer warps need few, the consumers' accumulators many. */
template <int N>
__device__ __forceinline__ void regs_dec()
{
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void regs_inc()
{
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}

/* The box at coordinates (c0 innermost .. c3) of a 4-D tensor map into shared memory at
 * dst, counted on bar. */
__device__ __forceinline__ void tma_load_4d(void *dst, const void *map, int c0, int c1, int c2,
                                            int c3, uint64_t *bar)
{
    asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(smem_addr(dst)),
                 "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3),
                 "r"(smem_addr(bar))
                 : "memory");
}

/* `bytes` (a multiple of 16, both addresses 16-byte aligned) from global src into shared dst
 * by the TMA unit (a 1-D bulk copy), counted on bar. */
__device__ __forceinline__ void bulk_load(void *dst, const void *src, uint32_t bytes, uint64_t *bar)
{
    asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes"
                 " [%0], [%1], %2, [%3];\n" ::"r"(smem_addr(dst)),
                 "l"(src), "r"(bytes), "r"(smem_addr(bar))
                 : "memory");
}

/* 2^x as the bare MUFU instruction (flushes subnormal results to zero; -inf gives 0, 0
 * gives 1 exactly), without exp2f's extra range handling. */
__device__ __forceinline__ float exp2_approx(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
    return y;
}

/* 2^x on the FMA pipe, for a share of the softmax's exponentials beside MUFU's ex2 (softcap
 * spends a second MUFU op a score on tanh): x = n + f with n rounded to nearest (the 1.5 x
 * 2^23 trick: no conversion instruction), 2^f for |f| <= 1/2 by a degree-3 polynomial
 * (relative error 1.0e-4, below f16's rounding), n added into the exponent bits (t's low
 * bits hold n, and magic << 23 vanishes mod 2^32).  x below -127 gives 0 (-inf included),
 * NaN stays NaN. */
__host__ __device__ __forceinline__ float exp2_poly(float x)
{
    x = x < -127.f ? -127.f : x; /* (false for NaN) */
    const float t = x + 12582912.f;
    const float f = x - (t - 12582912.f);
    const float p = fmaf(fmaf(fmaf(0.0550184846f, f, 0.242210984f), f, 0.693280935f), f, 1.f);
#ifdef __CUDA_ARCH__
    return __int_as_float(__float_as_int(p) + (__float_as_int(t) << 23));
#else /* the same bits on the host (tests/cuda/test_exp2_poly.cu) */
    uint32_t pb, tb;
    memcpy(&pb, &p, 4), memcpy(&tb, &t, 4);
    const uint32_t rb = pb + (tb << 23);
    float r;
    memcpy(&r, &rb, 4);
    return r;
#endif
}

/* Four floats as e4m3 (round to nearest even, saturated to +-448), x0 in the lowest byte
 * (cvt puts its first source in the upper half). */
__device__ __forceinline__ uint32_t e4m3x4(float x0, float x1, float x2, float x3)
{
    uint16_t lo, hi;
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(lo) : "f"(x1), "f"(x0));
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;\n" : "=h"(hi) : "f"(x3), "f"(x2));
    return (uint32_t)lo | ((uint32_t)hi << 16);
}

/* Fetches a tensor map (a __grid_constant__ kernel parameter) into the TMA unit's
 * descriptor cache ahead of its first use. */
__device__ __forceinline__ void tma_prefetch(const void *map)
{
    asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

/* Stores the box at (c0 .. c3) of a 4-D tensor map from shared memory at src (rows past the
 * tensor's end are not written), as a bulk group of the issuing thread; tma_store_wait then
 * waits until the smem of all its groups has been read. */
__device__ __forceinline__ void tma_store_4d(const void *map, const void *src, int c0, int c1,
                                             int c2, int c3)
{
    asm volatile(
        "cp.async.bulk.tensor.4d.global.shared::cta.bulk_group [%0, {%2, %3, %4, %5}], [%1];\n"
        "cp.async.bulk.commit_group;\n" ::"l"(reinterpret_cast<uint64_t>(map)),
        "r"(smem_addr(src)), "r"(c0), "r"(c1), "r"(c2), "r"(c3)
        : "memory");
}
__device__ __forceinline__ void tma_store_wait()
{
    asm volatile("cp.async.bulk.wait_group.read 0;\n" ::: "memory");
}

template <typename T>
struct Mma;
template <>
struct Mma<__half> {
    static __device__ __forceinline__ void ss_m64n128k16(float (&d)[64], uint64_t desc_a,
                                                         uint64_t desc_b, int scale_d)
    {
        PA_WGMMA_SS_M64N128("m64n128k16.f32.f16.f16", "1, 1, 0, 0");
    }
    static __device__ __forceinline__ void rs_m64n64k16(float (&d)[32], const uint32_t (&a)[4],
                                                        uint64_t desc_b, int scale_d)
    {
        PA_WGMMA_RS_M64N64K16("f16");
    }
    static __device__ __forceinline__ void ss_m64n64k16(float (&d)[32], uint64_t desc_a,
                                                        uint64_t desc_b, int scale_d)
    {
        PA_WGMMA_SS_M64N64K16("f16");
    }
    static __device__ __forceinline__ void rs_m64n256k16(float (&d)[128], const uint32_t (&a)[4],
                                                         uint64_t desc_b, int scale_d)
    {
        PA_WGMMA_RS_M64N256K16("f16");
    }
    static __device__ __forceinline__ void rs_m64n128k16(float (&d)[64], const uint32_t (&a)[4],
                                                         uint64_t desc_b, int scale_d)
    {
        PA_WGMMA_RS_M64N128("m64n128k16.f32.f16.f16", "1, 1, 1");
    }
};
template <>
struct Mma<__nv_bfloat16> {
    static __device__ __forceinline__ void ss_m64n128k16(float (&d)[64], uint64_t desc_a,
                                                         uint64_t desc_b, int scale_d)
    {
        PA_WGMMA_SS_M64N128("m64n128k16.f32.bf16.bf16", "1, 1, 0, 0");
    }
    static __device__ __forceinline__ void rs_m64n64k16(float (&d)[32], const uint32_t (&a)[4],
                                                        uint64_t desc_b, int scale_d)
    {
        PA_WGMMA_RS_M64N64K16("bf16");
    }
    static __device__ __forceinline__ void ss_m64n64k16(float (&d)[32], uint64_t desc_a,
                                                        uint64_t desc_b, int scale_d)
    {
        PA_WGMMA_SS_M64N64K16("bf16");
    }
    static __device__ __forceinline__ void rs_m64n256k16(float (&d)[128], const uint32_t (&a)[4],
                                                         uint64_t desc_b, int scale_d)
    {
        PA_WGMMA_RS_M64N256K16("bf16");
    }
    static __device__ __forceinline__ void rs_m64n128k16(float (&d)[64], const uint32_t (&a)[4],
                                                         uint64_t desc_b, int scale_d)
    {
        PA_WGMMA_RS_M64N128("m64n128k16.f32.bf16.bf16", "1, 1, 1");
    }
};

/* FP8 e4m3 (one byte an element): 32-column K steps, both operands K-major (wgmma has no
 * transposes for 8-bit types, so P V's B operand is V^T, keys contiguous).  A K step is 32
 * bytes, as the 16-bit forms' 16 columns are: the descriptors advance alike. */
struct MmaE4M3 {
    static __device__ __forceinline__ void ss_m64n128k32(float (&d)[64], uint64_t desc_a,
                                                         uint64_t desc_b, int scale_d)
    {
        PA_WGMMA_SS_M64N128("m64n128k32.f32.e4m3.e4m3", "1, 1");
    }
    static __device__ __forceinline__ void rs_m64n128k32(float (&d)[64], const uint32_t (&a)[4],
                                                         uint64_t desc_b, int scale_d)
    {
        PA_WGMMA_RS_M64N128("m64n128k32.f32.e4m3.e4m3", "1, 1");
    }
};

/* D[N / 2] (+)= A (64 x 16, registers) * B (16 x N): N = 256, 128 or 64 */
template <typename T, int N>
__device__ __forceinline__ void rs_m64nk16(float (&d)[N / 2], const uint32_t (&a)[4],
                                           uint64_t desc_b, int scale_d)
{
    static_assert(N == 256 || N == 128 || N == 64, "the widths the kernels use");
    if constexpr (N == 256) Mma<T>::rs_m64n256k16(d, a, desc_b, scale_d);
    else if constexpr (N == 128) Mma<T>::rs_m64n128k16(d, a, desc_b, scale_d);
    else Mma<T>::rs_m64n64k16(d, a, desc_b, scale_d);
}

/* D[N / 2] (+)= A (64 x 16, K-major) * B (N x 16, K-major)^T, both descriptors: N = 128 or 64 */
template <typename T, int N>
__device__ __forceinline__ void ss_m64nk16(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b,
                                           int scale_d)
{
    static_assert(N == 128 || N == 64, "the widths the kernels use");
    if constexpr (N == 128) Mma<T>::ss_m64n128k16(d, desc_a, desc_b, scale_d);
    else Mma<T>::ss_m64n64k16(d, desc_a, desc_b, scale_d);
}

#undef PA_WGMMA_SS_M64N64K16
#undef PA_WGMMA_RS_M64N256K16
#undef PA_WGMMA_RS_M64N128
#undef PA_WGMMA_SS_M64N128
#undef PA_WGMMA_RS_M64N64K16

} // namespace pa_wg
#endif
