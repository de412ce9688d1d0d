/*
 * Device helpers shared by the NVIDIA tensor-core kernels (flash_tc.cu, flash_tc_bwd.cu,
 * flash_f32.cu): PTX wrappers for cp.async, ldmatrix and mma.sync, the 16-bit pack/unpack
 * per storage type, the tile loader, and the once-per-device shared-memory attribute.
 * sm_80 and newer.
 */
#ifndef POLYATTN_CUDA_TC_COMMON_CUH
#define POLYATTN_CUDA_TC_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "../gpu/gpu_rows.h"

namespace pa_tc
{

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

/* tanh through exp2 and a fast reciprocal: two MUFU operations against libdevice's longer
 * sequence, absolute error a few 1e-7 (cap * that in the score); +-inf give +-1, NaN stays. */
__device__ __forceinline__ float tanh_fast(float x)
{
    return 1.f - __fdividef(2.f, exp2f(x * (2.f * 1.4426950408889634f)) + 1.f);
}

/* cudaFuncSetAttribute once per kernel instance and device (flag: a static of the caller's
 * instance): a driver call per launch is host time the article's small shapes feel. */
template <typename K>
cudaError_t smem_attr_once(K kernel, size_t bytes, unsigned long long &done)
{
    int dev = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess) return e;
    const unsigned long long bit = dev >= 0 && dev < 64 ? 1ull << dev : 0;
    if (bit && (__atomic_load_n(&done, __ATOMIC_RELAXED) & bit)) return cudaSuccess;
    e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    if (e == cudaSuccess && bit) __atomic_fetch_or(&done, bit, __ATOMIC_RELAXED);
    return e;
}

/* Launches kernel(args...) as a 1-D grid of `blocks` blocks in 2-block clusters (sm_90+). */
template <typename K, typename... Args>
cudaError_t launch_pairs(K kernel, unsigned blocks, unsigned threads, size_t smem,
                         cudaStream_t stream, const Args &...args)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(blocks);
    cfg.blockDim = dim3(threads);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = 2, attr.val.clusterDim.y = 1, attr.val.clusterDim.z = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, kernel, args...);
}

__device__ __forceinline__ uint32_t smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* Two e4m3 codes (bits 0-7 the first, 8-15 the second) as f16x2, exactly: every e4m3 value
 * is an f16 value.  sm_89+ has the conversion; before it, the code's exponent and mantissa
 * go into an f16's (e4m3's bias 7 below f16's 15, subnormals included) and a multiply by
 * 2^8 rebiases them; the NaN codes (S.1111.111) become NaN. */
__host__ __device__ __forceinline__ uint32_t e4m3x2_to_f16x2(uint32_t two)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    uint32_t r;
    asm("{\n .reg .b16 t;\n cvt.u16.u32 t, %1;\n cvt.rn.f16x2.e4m3x2 %0, t;\n}\n"
        : "=r"(r)
        : "r"(two));
    return r;
#else
    const uint32_t u = (two & 0xffu) | ((two & 0xff00u) << 8); /* codes at bits 0 and 16 */
    const uint32_t bits = ((u & 0x007f007fu) << 7) | ((u & 0x00800080u) << 8);
    __half2 h = *reinterpret_cast<const __half2 *>(&bits);
    h = __hmul2(h, __float2half2_rn(256.f));
    uint32_t r = *reinterpret_cast<uint32_t *>(&h);
    if ((u & 0x7fu) == 0x7fu) r = (r & 0xffff0000u) | 0x7e00u;
    if ((u & 0x7f0000u) == 0x7f0000u) r = (r & 0x0000ffffu) | 0x7e000000u;
    return r;
#endif
}

/* 16-byte async copy; valid false fills the destination with zeros (rows past the end). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
/* 16-byte async copy of its first `bytes` (0-16) bytes, zeros after them. */
__device__ __forceinline__ void cp_async16_n(void *dst, const void *src, int bytes)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
/* Waits until at most N committed groups are still in flight. */
template <int N>
__device__ __forceinline__ void cp_async_wait()
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* Distributed shared memory (sm_90+, clusters): the shared::cluster address of `p` (this
 * block's shared memory) in the block of cluster rank `rank`, and a 16-byte store there. */
__device__ __forceinline__ uint32_t cluster_addr(const void *p, int rank)
{
    uint32_t a;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(a) : "r"(smem_addr(p)), "r"(rank));
    return a;
}
__device__ __forceinline__ void st_cluster_v4(uint32_t addr, float x, float y, float z, float w)
{
    asm volatile("st.shared::cluster.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "f"(x), "f"(y),
                 "f"(z), "f"(w)
                 : "memory");
}

/* mbarrier (sm_90+): the one arrival of the barrier's current phase, which then also waits
 * for `bytes` delivered by asynchronous copies or remote st.async; and the wait for phase
 * `parity` to complete (default semantics: acquire at CTA scope). */
__device__ __forceinline__ void mbar_expect(uint64_t *bar, uint32_t bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)),
                 "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *bar, uint32_t parity)
{
    uint32_t done = 0;
    while (!done)
        asm volatile("{\n .reg .pred r;\n"
                     " mbarrier.try_wait.parity.shared::cta.b64 r, [%1], %2;\n"
                     " selp.u32 %0, 1, 0, r;\n}\n"
                     : "=r"(done)
                     : "r"(smem_addr(bar)), "r"(parity)
                     : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_addr(p)));
}

/*
 * ROWS rows of CHUNKS 16-byte chunks from global memory (rows row_stride elements apart,
 * starting at row `first`; rows at or past `limit` are zero-filled) into shared rows
 * STRIDE elements apart, by THREADS threads with cp.async (tid: the caller's index among
 * them, threadIdx.x by default; a warp loading its own slice passes its lane).  Thread t
 * copies chunks t, t + THREADS, ...: its (row, chunk) pairs are compile-time offsets from
 * its first one, so a copy costs an address add and a compare (the i / CHUNKS, i % CHUNKS
 * form of a plain loop cost about 30 instructions per copy, half the instructions of a
 * wide kernel's key tile); when CHUNKS divides THREADS the add is a pointer increment.
 */
template <int ROWS, int CHUNKS, int STRIDE, int THREADS, typename T>
__device__ __forceinline__ void load_rows(T *dst, const T *src, int64_t row_stride, int first,
                                          int limit, int tid = threadIdx.x)
{
    constexpr int kElems = 16 / (int)sizeof(T);
    constexpr int kTotal = ROWS * CHUNKS;
    constexpr int kIters = (kTotal + THREADS - 1) / THREADS;
    const int r0 = tid / CHUNKS, c0 = tid % CHUNKS;
    const int avail = limit - first - r0; /* this thread's row r0 + dr is valid iff dr < avail */
    const T *g0 = src + ((int64_t)first + r0) * row_stride + c0 * kElems;
    T *s0 = dst + r0 * STRIDE + c0 * kElems;
    if constexpr (THREADS % CHUNKS == 0) {
        /* every copy of a thread is R rows below its previous one: one pointer add each
         * (profiled: the general form's 64-bit multiply and selects per copy made the K/V
         * refills ~30% of a wide kernel's stall samples) */
        constexpr int R = THREADS / CHUNKS;
        const int64_t step = (int64_t)R * row_stride;
        const T *g = g0;
#pragma unroll
        for (int j = 0; j < kIters; ++j) {
            if (kTotal % THREADS != 0 && tid + j * THREADS >= kTotal) break;
            const bool valid = j * R < avail;
            cp_async16(s0 + j * R * STRIDE, valid ? g : src, valid);
            g += step;
        }
    } else {
#pragma unroll
        for (int j = 0; j < kIters; ++j) {
            if (kTotal % THREADS != 0 && tid + j * THREADS >= kTotal) break;
            int dr = (j * THREADS) / CHUNKS, dc = (j * THREADS) % CHUNKS;
            if (c0 + dc >= CHUNKS) {
                dc -= CHUNKS;
                dr += 1;
            }
            const bool valid = dr < avail;
            const T *gp = valid ? g0 + (int64_t)dr * row_stride + dc * kElems : src;
            cp_async16(s0 + dr * STRIDE + dc * kElems, gp, valid);
        }
    }
}

/*
 * Lazy rescaling of the online softmax (wide forward kernels): a row keeps its running
 * max m until a key tile's max exceeds it by more than kRescaleSlack (log2 units).  The
 * probabilities exp2(s - m) are then at most 2^8, well inside f16, bf16 and f32, and O and
 * the row sum stay scaled by the same m, so the final O / l is unchanged; most key tiles
 * after the first few leave every alpha at exactly 1 and skip the O rescale.
 */
constexpr float kRescaleSlack = 8.f;

/* acc_o[mt][j][e] *= alpha of its row (rows mt*16 + g and + 8 of a 32-row tile, alphas in
 * shared memory); skipped when every alpha of the warp is 1. */
template <int NJ>
__device__ __forceinline__ void rescale_rows(float (&acc_o)[2][NJ][4], const float *s_alpha, int g)
{
    float al[2][2];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
        al[mt][0] = s_alpha[mt * 16 + g];
        al[mt][1] = s_alpha[mt * 16 + g + 8];
    }
    const bool ones = al[0][0] == 1.f && al[0][1] == 1.f && al[1][0] == 1.f && al[1][1] == 1.f;
    if (__all_sync(0xffffffffu, ones)) return;
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int j = 0; j < NJ; ++j) {
            acc_o[mt][j][0] *= al[mt][0];
            acc_o[mt][j][1] *= al[mt][0];
            acc_o[mt][j][2] *= al[mt][1];
            acc_o[mt][j][3] *= al[mt][1];
        }
}

/*
 * Split-K partial scores of the wide forward kernels: warp w holds the m16n8 accumulators
 * of a 32 x BN score tile summed over its head-dim slice; the slots of all warps are
 * summed by the softmax threads (8 per row, BN/8 keys each).
 * Row stride: float2 stores by lanes (g, t4) of a half warp hit bank pairs
 * (g * stride / 2 + t4) mod 16, distinct when stride = 8 or 24 (mod 32); a softmax thread
 * then reads its BN/8 keys of a slot as one vector.  (A stride of BN + 1 made the
 * scalar stores 4-way bank conflicts.)
 */
__host__ __device__ constexpr int score_stride(int bn) { return bn == 8 ? 8 : bn + 8; }

/* acc[mt][j][e] of rows mt*16 + g (+8 for e >= 2), keys j*8 + 2*t4 (+1) into the slot;
 * ADD: added to what is there. */
template <int BN, bool ADD>
__device__ __forceinline__ void store_scores(float *slot, const float (&acc)[2][BN / 8][4], int g,
                                             int t4)
{
    constexpr int SS = score_stride(BN);
    static_assert(SS % 32 == 8 || SS % 32 == 24, "conflict-free float2 stores");
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int j = 0; j < BN / 8; ++j)
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                float2 *p =
                    reinterpret_cast<float2 *>(slot + (mt * 16 + g + 8 * r) * SS + j * 8 + 2 * t4);
                float2 x = make_float2(acc[mt][j][2 * r], acc[mt][j][2 * r + 1]);
                if (ADD) {
                    const float2 y = *p;
                    x.x += y.x;
                    x.y += y.y;
                }
                *p = x;
            }
}

/* The 8 warps' partial scores to SLOTS slots (slot_floats apart): warp w stores into slot
 * w % SLOTS; with 4 slots warps 0-3 store, then (after a block barrier) 4-7 add theirs.
 * The caller's block barrier afterwards completes the sums. */
template <int BN, int SLOTS>
__device__ __forceinline__ void exchange_scores(float *ss, int slot_floats,
                                                const float (&acc)[2][BN / 8][4], int warp, int g,
                                                int t4)
{
    float *slot = ss + (warp % SLOTS) * slot_floats;
    if (warp < SLOTS) store_scores<BN, false>(slot, acc, g, t4);
    if (SLOTS < 8) {
        __syncthreads(); /* warps 0-3 stored */
        if (warp >= SLOTS) store_scores<BN, true>(slot, acc, g, t4);
    }
}

/* x[0..KPT) = sum over SLOTS slots (slot_floats apart) of row `row`, keys col..col+KPT. */
template <int BN, int SLOTS, int KPT>
__device__ __forceinline__ void sum_scores(float (&x)[KPT], const float *slots, int slot_floats,
                                           int row, int col)
{
    constexpr int SS = score_stride(BN);
    const float *cell = slots + row * SS + col;
#pragma unroll
    for (int e = 0; e < KPT; ++e)
        x[e] = 0.f;
#pragma unroll
    for (int sl = 0; sl < SLOTS; ++sl) {
        const float *c = cell + sl * slot_floats;
        if constexpr (KPT == 4) {
            const float4 v = *reinterpret_cast<const float4 *>(c);
            x[0] += v.x, x[1] += v.y, x[2] += v.z, x[3] += v.w;
        } else if constexpr (KPT == 2) {
            const float2 v = *reinterpret_cast<const float2 *>(c);
            x[0] += v.x, x[1] += v.y;
        } else {
#pragma unroll
            for (int e = 0; e < KPT; ++e)
                x[e] += c[e];
        }
    }
}

/* One key tile of the online softmax for the 8 threads that share a row (lanes 8i..8i+7
 * of a warp): x[0..KPT) holds this thread's raw scores of keys key..key+KPT, keys at or
 * past `visible` are masked; on return x holds exp2(x * sl2 - m) and the row's running max
 * m (log2 domain, lazily rescaled) and sum l are updated in every thread of the 8.
 * Returns alpha, the factor O must be rescaled by. */
template <int KPT>
__device__ __forceinline__ float softmax_step8(float (&x)[KPT], int key, int visible, float sl2,
                                               float &m, float &l)
{
    float mx = -INFINITY;
#pragma unroll
    for (int e = 0; e < KPT; ++e) {
        x[e] = key + e < visible ? x[e] * sl2 : -INFINITY;
        mx = fmaxf(mx, x[e]);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 4));
    const float m_new = mx > m + kRescaleSlack ? mx : m; /* lazy rescale */
    const float m_use = m_new == -INFINITY ? 0.f : m_new;
    const float alpha = exp2f(m - m_use);
    float sum = 0.f;
#pragma unroll
    for (int e = 0; e < KPT; ++e) {
        x[e] = exp2f(x[e] - m_use);
        sum += x[e];
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    sum += __shfl_xor_sync(0xffffffffu, sum, 4);
    l = l * alpha + sum;
    m = m_new;
    return alpha;
}

template <typename T>
struct Dt;
template <>
struct Dt<__half> {
    static __device__ __forceinline__ uint32_t pack(float x, float y)
    {
        __half2 h = __floats2half2_rn(x, y);
        return *reinterpret_cast<uint32_t *>(&h);
    }
    static __device__ __forceinline__ float2 unpack(uint32_t u)
    {
        return __half22float2(*reinterpret_cast<__half2 *>(&u));
    }
    /* c += a b, m16n8k16, f32 accumulate */
    static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0,
                                               uint32_t b1)
    {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};
template <>
struct Dt<__nv_bfloat16> {
    static __device__ __forceinline__ uint32_t pack(float x, float y)
    {
        __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
        return *reinterpret_cast<uint32_t *>(&h);
    }
    static __device__ __forceinline__ float2 unpack(uint32_t u)
    {
        return __bfloat1622float2(*reinterpret_cast<__nv_bfloat162 *>(&u));
    }
    static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0,
                                               uint32_t b1)
    {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

} // namespace pa_tc

#endif
