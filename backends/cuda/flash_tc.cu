/*
 * flash_fwd_tc_kernel: FlashAttention-2-style forward on NVIDIA tensor cores (sm_80+).
 *
 * One block per (query tile, head, batch).  Each warp owns 16 query rows of the tile: it
 * forms S = Q K^T for a key tile with mma.sync m16n8k16 (f16/bf16 in, f32 accumulate),
 * keeps the running row max and sum in registers (online softmax, exp2 domain), converts
 * P to 16 bits in registers (the S accumulator layout is the A-operand layout of the next
 * mma) and accumulates O += P V.  K and V tiles are double-buffered in shared memory with
 * cp.async: the loads of tile j+1 fly while tile j is computed.  Shared-memory rows are
 * padded by 16 bytes so the 8 row addresses of each ldmatrix hit distinct banks.
 *
 * One tile configuration per head dim lives in FlashTcTraits; instances: head dims
 * 32, 64, 96, 128, 256 x {f16, bf16}.
 */
#include "flash_tc.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace
{

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

template <int HEAD_DIM, int BLOCK_N = (HEAD_DIM <= 128 ? 64 : 32)>
struct FlashTcTraits {
    static constexpr int kHeadDim = HEAD_DIM;
    /* 4 warps; each warp owns kMTiles m16 row tiles, so every K/V fragment loaded from
     * shared memory feeds 2*kMTiles mma (shared-memory bandwidth, not the tensor cores,
     * limits a warp that owns one m16 tile).  256: one m-tile and 32-key tiles so the O
     * accumulator (16 x 256 per warp) and two K/V stages still fit. */
    static constexpr int kWarps = 4;
    static constexpr int kMTiles = HEAD_DIM <= 128 ? 2 : 1;
    static constexpr int kBlockM = 16 * kMTiles * kWarps;
    static constexpr int kBlockN = BLOCK_N;
    static constexpr int kThreads = 32 * kWarps;
    static constexpr int kStride = HEAD_DIM + 8; /* elements per shared row (padded) */
    static constexpr int kStages = 2;
    static constexpr size_t kSmem = (size_t)(kBlockM + 2 * kStages * kBlockN) * kStride * 2;
    /* Two resident blocks per SM, so one block computes while the other waits. */
    static constexpr int kMinBlocks = 2;
    static_assert(HEAD_DIM % 16 == 0 && kBlockN % 16 == 0, "mma tiles are 16 wide");
};

template <typename T>
struct Dt;
template <>
struct Dt<__half> {
    static __device__ __forceinline__ uint32_t pack(float x, float y)
    {
        __half2 h = __floats2half2_rn(x, y);
        return *reinterpret_cast<uint32_t *>(&h);
    }
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
    static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0,
                                               uint32_t b1)
    {
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
};

__device__ __forceinline__ uint32_t smem_addr(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16-byte async copy; src_bytes 0 fills the destination with zeros (rows past the end). */
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
                 "r"(valid ? 16 : 0)
                 : "memory");
}
__device__ __forceinline__ void cp_async_commit()
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
__device__ __forceinline__ void cp_async_wait_all()
{
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
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

__device__ __forceinline__ int visible_keys(const pa_gpu_args &a, int query)
{
    int n = a.seq_kv;
    if (a.mask == 1)
        n = query + 1;
    else if (a.mask == 2)
        n = query + 1 + (a.seq_kv - a.seq_q);
    return n < 0 ? 0 : (n > a.seq_kv ? a.seq_kv : n);
}

/* rows x HEAD_DIM tile from global (row stride in elements) into padded shared rows. */
template <typename Tr, int ROWS, typename T>
__device__ __forceinline__ void load_tile(T *dst, const T *src, int64_t row_stride, int row0,
                                          int nrows)
{
    constexpr int kChunks = Tr::kHeadDim / 8;
    for (int i = threadIdx.x; i < ROWS * kChunks; i += Tr::kThreads) {
        const int r = i / kChunks, c = i % kChunks;
        const bool valid = row0 + r < nrows;
        const T *g = valid ? src + (int64_t)(row0 + r) * row_stride + c * 8 : src;
        cp_async16(dst + r * Tr::kStride + c * 8, g, valid);
    }
}

template <int HEAD_DIM, int BLOCK_N, typename T>
__global__ void __launch_bounds__(FlashTcTraits<HEAD_DIM, BLOCK_N>::kThreads,
                                  FlashTcTraits<HEAD_DIM, BLOCK_N>::kMinBlocks)
    flash_fwd_tc_kernel(pa_gpu_args a)
{
    using Tr = FlashTcTraits<HEAD_DIM, BLOCK_N>;
    constexpr int D = HEAD_DIM, BM = Tr::kBlockM, BN = Tr::kBlockN, S = Tr::kStride;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T *sq = reinterpret_cast<T *>(smem_raw);
    T *sk = sq + BM * S;     /* [stage][BN][S] */
    T *sv = sk + 2 * BN * S; /* [stage][BN][S] */

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = lane / 4, t4 = lane % 4;
    /* Causal: the last query tiles see the most keys; start them first. */
    const int m_block = a.mask ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
    const int head = blockIdx.y, batch = blockIdx.z;
    const int head_kv = head / (a.heads_q / a.heads_kv);
    const T *q = static_cast<const T *>(a.q) + batch * a.q_stride[0] + head * a.q_stride[1];
    const T *k = static_cast<const T *>(a.k) + batch * a.k_stride[0] + head_kv * a.k_stride[1];
    const T *v = static_cast<const T *>(a.v) + batch * a.v_stride[0] + head_kv * a.v_stride[1];
    T *o = static_cast<T *>(a.o) + batch * a.o_stride[0] + head * a.o_stride[1];

    const int row0 = m_block * BM;
    const int last_row = min(row0 + BM, a.seq_q) - 1;
    const int key_end = visible_keys(a, last_row);
    const int first_vis = visible_keys(a, row0); /* tiles below it need no mask */
    const int n_tiles = (key_end + BN - 1) / BN;

    load_tile<Tr, BM>(sq, q, a.q_stride[2], row0, a.seq_q);
    if (n_tiles > 0) {
        load_tile<Tr, BN>(sk, k, a.k_stride[2], 0, a.seq_kv);
        load_tile<Tr, BN>(sv, v, a.v_stride[2], 0, a.seq_kv);
    }
    cp_async_commit();

    constexpr int MT = Tr::kMTiles;
    const int wrow = warp * 16 * MT; /* this warp's first row in the tile */
    int vis[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
        vis[mt][0] = visible_keys(a, row0 + wrow + mt * 16 + g);
        vis[mt][1] = visible_keys(a, row0 + wrow + mt * 16 + g + 8);
    }
    const float sl2 = a.scale * kLog2e;

    float acc_o[MT][D / 8][4];
    float row_max[MT][2], row_sum[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int j = 0; j < D / 8; ++j)
            acc_o[mt][j][0] = acc_o[mt][j][1] = acc_o[mt][j][2] = acc_o[mt][j][3] = 0.f;
        row_max[mt][0] = row_max[mt][1] = -INFINITY;
        row_sum[mt][0] = row_sum[mt][1] = 0.f;
    }

    for (int nt = 0; nt < n_tiles; ++nt) {
        cp_async_wait_all();
        __syncthreads();
        if (nt + 1 < n_tiles) {
            const int st = (nt + 1) & 1;
            load_tile<Tr, BN>(sk + st * BN * S, k, a.k_stride[2], (nt + 1) * BN, a.seq_kv);
            load_tile<Tr, BN>(sv + st * BN * S, v, a.v_stride[2], (nt + 1) * BN, a.seq_kv);
        }
        cp_async_commit();
        const T *ks = sk + (nt & 1) * BN * S;
        const T *vs = sv + (nt & 1) * BN * S;
        const int key0 = nt * BN;

        /* S = Q K^T */
        float acc_s[MT][BN / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int j = 0; j < BN / 8; ++j)
                acc_s[mt][j][0] = acc_s[mt][j][1] = acc_s[mt][j][2] = acc_s[mt][j][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            uint32_t af[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
                ldmatrix_x4(af[mt],
                            sq + (wrow + mt * 16 + (lane % 16)) * S + kk * 16 + (lane / 16) * 8);
#pragma unroll
            for (int p = 0; p < BN / 16; ++p) {
                uint32_t bf[4];
                const int idx = lane / 8;
                ldmatrix_x4(bf, ks + (p * 16 + (idx >> 1) * 8 + lane % 8) * S + kk * 16 +
                                    (idx & 1) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    Dt<T>::mma(acc_s[mt][2 * p], af[mt], bf[0], bf[1]);
                    Dt<T>::mma(acc_s[mt][2 * p + 1], af[mt], bf[2], bf[3]);
                }
            }
        }

        /* mask, online softmax in the exp2 domain (scale folded into one FMA) */
        const bool need_mask = key0 + BN > first_vis;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            if (need_mask) {
#pragma unroll
                for (int j = 0; j < BN / 8; ++j)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const int key = key0 + j * 8 + 2 * t4 + (e & 1);
                        if (key >= vis[mt][e >> 1]) acc_s[mt][j][e] = -INFINITY;
                    }
            }
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                float mx = -INFINITY;
#pragma unroll
                for (int j = 0; j < BN / 8; ++j)
                    mx = fmaxf(mx, fmaxf(acc_s[mt][j][2 * r], acc_s[mt][j][2 * r + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_new = fmaxf(row_max[mt][r], mx * sl2);
                const float m_use = m_new == -INFINITY ? 0.f : m_new;
                const float alpha = exp2f(row_max[mt][r] - m_use);
                float sum = 0.f;
#pragma unroll
                for (int j = 0; j < BN / 8; ++j) {
                    const float p0 = exp2f(fmaf(acc_s[mt][j][2 * r], sl2, -m_use));
                    const float p1 = exp2f(fmaf(acc_s[mt][j][2 * r + 1], sl2, -m_use));
                    acc_s[mt][j][2 * r] = p0;
                    acc_s[mt][j][2 * r + 1] = p1;
                    sum += p0 + p1;
                }
                row_sum[mt][r] = row_sum[mt][r] * alpha + sum; /* per-lane partial */
                row_max[mt][r] = m_new;
#pragma unroll
                for (int j = 0; j < D / 8; ++j) {
                    acc_o[mt][j][2 * r] *= alpha;
                    acc_o[mt][j][2 * r + 1] *= alpha;
                }
            }
        }

        /* O += P V: the S accumulator of n-tiles (2kk, 2kk+1) is the A fragment of step kk */
#pragma unroll
        for (int kk = 0; kk < BN / 16; ++kk) {
            uint32_t af[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                af[mt][0] = Dt<T>::pack(acc_s[mt][2 * kk][0], acc_s[mt][2 * kk][1]);
                af[mt][1] = Dt<T>::pack(acc_s[mt][2 * kk][2], acc_s[mt][2 * kk][3]);
                af[mt][2] = Dt<T>::pack(acc_s[mt][2 * kk + 1][0], acc_s[mt][2 * kk + 1][1]);
                af[mt][3] = Dt<T>::pack(acc_s[mt][2 * kk + 1][2], acc_s[mt][2 * kk + 1][3]);
            }
#pragma unroll
            for (int p = 0; p < D / 16; ++p) {
                uint32_t bf[4];
                const int idx = lane / 8;
                ldmatrix_x4_trans(bf, vs + (kk * 16 + (idx & 1) * 8 + lane % 8) * S + p * 16 +
                                          (idx >> 1) * 8);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    Dt<T>::mma(acc_o[mt][2 * p], af[mt], bf[0], bf[1]);
                    Dt<T>::mma(acc_o[mt][2 * p + 1], af[mt], bf[2], bf[3]);
                }
            }
        }
    }
    cp_async_wait_all();

#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float l = row_sum[mt][r];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const int row = row0 + wrow + mt * 16 + g + 8 * r;
            if (row >= a.seq_q) continue;
            const float inv = l > 0.f ? 1.f / l : 0.f;
            T *orow = o + (int64_t)row * a.o_stride[2];
#pragma unroll
            for (int j = 0; j < D / 8; ++j)
                *reinterpret_cast<uint32_t *>(orow + j * 8 + 2 * t4) =
                    Dt<T>::pack(acc_o[mt][j][2 * r] * inv, acc_o[mt][j][2 * r + 1] * inv);
            if (a.lse && t4 == 0)
                a.lse[((int64_t)batch * a.heads_q + head) * a.seq_q + row] =
                    l > 0.f ? (row_max[mt][r] + log2f(l)) * kLn2 : -INFINITY;
        }
}

template <int HEAD_DIM, typename T, int BLOCK_N = FlashTcTraits<HEAD_DIM>::kBlockN>
cudaError_t launch(const pa_gpu_args &a, cudaStream_t stream)
{
    using Tr = FlashTcTraits<HEAD_DIM, BLOCK_N>;
    auto kernel = flash_fwd_tc_kernel<HEAD_DIM, BLOCK_N, T>;
    cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)Tr::kSmem);
    if (e != cudaSuccess) return e;
    const dim3 grid((a.seq_q + Tr::kBlockM - 1) / Tr::kBlockM, a.heads_q, a.batch);
    kernel<<<grid, Tr::kThreads, Tr::kSmem, stream>>>(a);
    return cudaGetLastError();
}

template <typename T>
cudaError_t dispatch(const pa_gpu_args &a, cudaStream_t stream)
{
    switch (a.head_dim) {
    case 32: return launch<32, T>(a, stream);
    case 64: return launch<64, T>(a, stream);
    case 96: return launch<96, T>(a, stream);
    /* 64-key tiles measured faster than 32 at head dim 128 on the H100 (1.84 vs 1.99 ms,
     * bf16, 4x16x4096, despite a few spilled registers). */
    case 128: return launch<128, T>(a, stream);
    case 256: return launch<256, T>(a, stream);
    default: return cudaErrorInvalidValue;
    }
}

} // namespace

extern "C" int pa_cuda_flash_tc_has_head_dim(int head_dim)
{
    return head_dim == 32 || head_dim == 64 || head_dim == 96 || head_dim == 128 || head_dim == 256;
}

extern "C" size_t pa_cuda_flash_tc_smem(int head_dim)
{
    switch (head_dim) {
    case 32: return FlashTcTraits<32>::kSmem;
    case 64: return FlashTcTraits<64>::kSmem;
    case 96: return FlashTcTraits<96>::kSmem;
    case 128: return FlashTcTraits<128>::kSmem;
    case 256: return FlashTcTraits<256>::kSmem;
    default: return 0;
    }
}

extern "C" int pa_cuda_flash_tc(const pa_gpu_args *a, void *stream)
{
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (a->dtype == 1) return (int)dispatch<__half>(*a, s);
    if (a->dtype == 2) return (int)dispatch<__nv_bfloat16>(*a, s);
    return (int)cudaErrorInvalidValue;
}
