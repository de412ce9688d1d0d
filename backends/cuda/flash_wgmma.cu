/*
 * flash_fwd_wgmma_kernel: the wide flash forward (head dims 512, 768, 1024; f16/bf16) on
 * Hopper's warpgroup MMA.  The mma.sync kernels of flash_tc.cu split each key tile's
 * Q K^T across 8 warps and sum their partial scores through shared memory (split-K): at
 * the short seed shapes a 32 x 32 key tile took ~3000 cycles, most of it barriers, that
 * sum and the softmax (session 9, -DPA_FLASH_PHASES), with the tensor pipes 11-21% busy.
 * Here one warpgroup (128 threads) multiplies a 64-row query tile by a 64-key tile over all
 * of its columns with wgmma, which reduces over the head dim in the tensor core and leaves
 * the scores in registers.
 *
 * A query tile runs on a cluster of C = head_dim / 256 blocks; block r owns columns
 * [256r, 256r + 256) of Q, K, V and O (O's 64 x 256 f32 accumulator is 128 registers a
 * thread: a warpgroup holds no more).  Per key tile:
 *   S_r = Q_r K_r^T    wgmma m64n64k16, both operands from shared memory (16 steps);
 *   S = sum_r S_r      each block sends its 64 x 64 partial scores to the others with
 *                      st.async (counted on the receiver's mbarrier) and adds theirs in rank
 *                      order, so every block holds bit-identical scores;
 *   softmax            online, in registers (exp2 domain, 4 threads a row);
 *   O_r += P V_r       wgmma m64n256k16, P from registers, V from shared memory (N-major).
 * Q, K and V tiles sit in the 128-byte-swizzled layout of wgmma_sm90.cuh, loaded with
 * cp.async; K (V) of the next key tile is loaded as soon as this tile's Q K^T (P V) is done,
 * a key tile ahead.  Clusters run as a 1-D grid, longest query tiles first over all (batch,
 * head) pairs.  O(N) memory: nothing but O and the LSE is written.
 */
#include "flash_wgmma.h"
#include "flash_split.h" /* pa_flash_visible, pa_cluster_rank */
#include "tc_common.cuh"
#include "wgmma_sm90.cuh"

namespace
{

using namespace pa_tc;

constexpr int kRows = 64;     /* query rows of a tile (one warpgroup) */
constexpr int kKeys = 64;     /* keys of a key tile */
constexpr int kCols = 256;    /* head-dim columns of a block */
constexpr int kThreads = 128; /* one warpgroup */
constexpr uint32_t kTileBytes = kRows * kCols * 2;       /* Q, K or V tile (16-bit) */
constexpr uint32_t kScoreBytes = kThreads * 32 * 4;      /* one block's 64 x 64 f32 scores */
constexpr int kStageStride = kCols + 8;                  /* O staging rows (elements) */
static_assert(kRows == kKeys, "Q, K and V tiles share one layout");
static_assert((size_t)kRows * kStageStride * 2 <= 2 * kTileBytes, "O staging fits Q + K");

template <int C>
constexpr size_t smem_bytes()
{
    /* 1024 for aligning the swizzled tiles, Q K V, the received scores [2][C-1], 2 barriers */
    return 1024 + 3 * (size_t)kTileBytes + 2 * (size_t)(C - 1) * kScoreBytes + 16;
}

/* 64 rows x 256 columns from global (rows row_stride apart from row `first`, rows at or
 * past `limit` zero-filled) into a swizzled tile.  Warp w copies rows w, w + 4, ...: each
 * warp instruction moves one row's 512 contiguous bytes. */
template <typename T>
__device__ __forceinline__ void load_tile(unsigned char *dst, const T *src, int64_t row_stride,
                                          int first, int limit)
{
    const int c = threadIdx.x % 32, r0 = threadIdx.x / 32;
#pragma unroll
    for (int j = 0; j < kRows / 4; ++j) {
        const int r = r0 + 4 * j;
        const bool valid = first + r < limit;
        const T *g = valid ? src + (int64_t)(first + r) * row_stride + c * 8 : src;
        cp_async16(dst + pa_wg::chunk_offset(kRows, r, c), g, valid);
    }
}

/* Cluster exchange of the partial scores (C > 1): parity p = key tile & 1 selects one of two
 * receive areas and mbarriers.  Area [p][slot] holds the scores of one other block (slot:
 * its rank, minus one above this block's), as 8 float4 planes of 128 threads (thread t's
 * q-th float4 at (q * 128 + t) * 16: conflict-free for both the sends and the reads).
 * Reuse: a block sends tile i into area i & 1 only after it has every block's tile i - 1,
 * which each block sends after the block barrier that follows its reads of tile i - 2. */
template <int C>
struct ScoreExchange {
    float4 *recv;  /* [2][C - 1][8][kThreads] */
    uint64_t *bar; /* [2] */
    int tiles, rank;

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    __device__ void init(void *base, int n)
    {
        recv = static_cast<float4 *>(base);
        bar = reinterpret_cast<uint64_t *>(recv + 2 * (C - 1) * 8 * kThreads);
        tiles = n;
        rank = pa_cluster_rank();
        if (threadIdx.x == 0) {
            for (int p = 0; p < 2; ++p) {
                asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;\n" ::"r"(smem_addr(bar + p))
                             : "memory");
                if (p < n) expect(p);
            }
            asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        }
        /* relaxed: the fence publishes the barriers; a releasing arrive would wait for the
         * Q/K/V copies in flight (flash_split.h, pa_flash_col_exchange) */
        asm volatile("barrier.cluster.arrive.relaxed.aligned;\n"
                     "barrier.cluster.wait.aligned;\n" ::
                         : "memory");
    }
    __device__ void expect(int p)
    {
        asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar + p)),
                     "r"((uint32_t)((C - 1) * kScoreBytes))
                     : "memory");
    }
    /* Key tile i: s holds this block's partial scores; on return, the sum over the cluster. */
    __device__ void reduce(float (&s)[32], int i)
    {
        const int p = i & 1, t = threadIdx.x;
#pragma unroll
        for (int q = 1; q < C; ++q) {
            const int peer = (rank + q) % C;
            const int slot = rank < peer ? rank : rank - 1; /* this block's slot at the peer */
            float4 *mine = recv + ((p * (C - 1) + slot) * 8) * kThreads + t;
            uint32_t dst, dst_bar;
            asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(dst) : "r"(smem_addr(mine)), "r"(peer));
            asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(dst_bar) : "r"(smem_addr(bar + p)), "r"(peer));
#pragma unroll
            for (int v = 0; v < 8; ++v)
                asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.f32 [%0], {%1, %2, %3, %4}, [%5];\n" ::"r"(
                                 dst + (uint32_t)(v * kThreads * 16)),
                             "f"(s[4 * v]), "f"(s[4 * v + 1]), "f"(s[4 * v + 2]), "f"(s[4 * v + 3]),
                             "r"(dst_bar)
                             : "memory");
        }
        const uint32_t parity = (uint32_t)(i >> 1) & 1u, b = smem_addr(bar + p);
        uint32_t done = 0;
        while (!done)
            asm volatile("{\n .reg .pred r;\n"
                         " mbarrier.try_wait.parity.shared::cta.b64 r, [%1], %2;\n"
                         " selp.u32 %0, 1, 0, r;\n}\n"
                         : "=r"(done)
                         : "r"(b), "r"(parity)
                         : "memory");
        /* the full sums, in rank order in every block: bit-identical scores everywhere */
        float sum[32];
#pragma unroll
        for (int e = 0; e < 32; ++e)
            sum[e] = 0.f;
#pragma unroll
        for (int r = 0; r < C; ++r) {
            if (r == rank) {
#pragma unroll
                for (int e = 0; e < 32; ++e)
                    sum[e] += s[e];
                continue;
            }
            const int slot = r < rank ? r : r - 1;
            const float4 *in = recv + ((p * (C - 1) + slot) * 8) * kThreads + t;
#pragma unroll
            for (int v = 0; v < 8; ++v) {
                const float4 x = in[v * kThreads];
                sum[4 * v] += x.x, sum[4 * v + 1] += x.y, sum[4 * v + 2] += x.z, sum[4 * v + 3] += x.w;
            }
        }
#pragma unroll
        for (int e = 0; e < 32; ++e)
            s[e] = sum[e];
        if (threadIdx.x == 0 && i + 2 < tiles) expect(p); /* before any block can send i + 2 */
    }
#else
    __device__ void init(void *, int) { __trap(); }
    __device__ void reduce(float (&)[32], int) { __trap(); }
#endif
};

template <int C, typename T>
__global__ void __launch_bounds__(kThreads, 1) flash_fwd_wgmma_kernel(pa_gpu_args a)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char *base = smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u);
    unsigned char *sq = base, *sk = base + kTileBytes, *sv = base + 2 * kTileBytes;
    ScoreExchange<C> xchg;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
    const int rank = C > 1 ? pa_cluster_rank() : 0;
    /* this cluster's query tile: longest first over all (batch, head) pairs */
    const int q_tiles = (a.seq_q + kRows - 1) / kRows, bh = a.batch * a.heads_q;
    const int id = (int)blockIdx.x / C, order = id / bh, pair = id % bh;
    const int qt = a.mask ? q_tiles - 1 - order : order;
    const int batch = pair / a.heads_q, head = pair % a.heads_q;
    const int head_kv = head / (a.heads_q / a.heads_kv);
    const int col0 = rank * kCols;
    const T *q = static_cast<const T *>(a.q) + batch * a.q_stride[0] + head * a.q_stride[1] + col0;
    const T *k = static_cast<const T *>(a.k) + batch * a.k_stride[0] + head_kv * a.k_stride[1] + col0;
    const T *v = static_cast<const T *>(a.v) + batch * a.v_stride[0] + head_kv * a.v_stride[1] + col0;
    T *o = static_cast<T *>(a.o) + batch * a.o_stride[0] + head * a.o_stride[1] + col0;

    const int row0 = qt * kRows;
    const int last_row = min(row0 + kRows, a.seq_q) - 1;
    const int n_tiles = (pa_flash_visible(a, last_row) + kKeys - 1) / kKeys;
    const int first_vis = pa_flash_visible(a, row0); /* key tiles below it need no mask */

    load_tile(sq, q, a.q_stride[2], row0, a.seq_q);
    if (n_tiles > 0) load_tile(sk, k, a.k_stride[2], 0, a.seq_kv);
    cp_async_commit();
    if (n_tiles > 0) load_tile(sv, v, a.v_stride[2], 0, a.seq_kv);
    cp_async_commit();
    if (C > 1) xchg.init(base + 3 * kTileBytes, n_tiles);

    /* this thread's rows of the tile (wgmma accumulator layout): 16 * warp + g, and + 8 */
    const int vis[2] = {pa_flash_visible(a, row0 + 16 * warp + g),
                        pa_flash_visible(a, row0 + 16 * warp + g + 8)};
    const float sl2 = a.scale * kLog2e;
    float run_m[2] = {-INFINITY, -INFINITY}, run_l[2] = {0.f, 0.f};
    float acc_o[128];
#pragma unroll
    for (int e = 0; e < 128; ++e)
        acc_o[e] = 0.f;
    const uint32_t q_addr = smem_addr(sq), k_addr = smem_addr(sk), v_addr = smem_addr(sv);

    for (int nt = 0; nt < n_tiles; ++nt) {
        const int key0 = nt * kKeys;
        cp_async_wait<1>(); /* Q and K(nt) landed (this thread's copies) */
        pa_wg::fence_async_shared();
        __syncthreads(); /* ... everyone's */

        /* S = Q K^T over this block's columns: 4 blocks of 64 columns, 4 k-steps each */
        float s[32];
#pragma unroll
        for (int e = 0; e < 32; ++e)
            s[e] = 0.f;
        pa_wg::fence();
#pragma unroll
        for (int kk = 0; kk < kCols / 16; ++kk) {
            const uint32_t off = (uint32_t)((kk / 4) * kRows * 128 + (kk % 4) * 32);
            pa_wg::Mma<T>::ss_m64n64k16(s, pa_wg::desc(q_addr + off, 16, pa_wg::kGroupBytes),
                                        pa_wg::desc(k_addr + off, 16, pa_wg::kGroupBytes), 1);
        }
        pa_wg::commit();
        pa_wg::wait<0>();
        __syncthreads(); /* every warp's part of the product is done: K's buffer is free */
        if (nt + 1 < n_tiles) load_tile(sk, k, a.k_stride[2], key0 + kKeys, a.seq_kv);
        cp_async_commit();

        if (C > 1) xchg.reduce(s, nt);

        /* online softmax of rows g (r = 0) and g + 8 (r = 1): 4 threads a row */
        const bool need_mask = key0 + kKeys > first_vis;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < 8; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    float &x = s[4 * j + 2 * r + e];
                    x = (!need_mask || key0 + 8 * j + 2 * t4 + e < vis[r]) ? x * sl2 : -INFINITY;
                    mx = fmaxf(mx, x);
                }
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = fmaxf(run_m[r], mx);
            const float m_use = m_new == -INFINITY ? 0.f : m_new;
            const float alpha = exp2f(run_m[r] - m_use);
            float sum = 0.f;
#pragma unroll
            for (int j = 0; j < 8; ++j)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    float &x = s[4 * j + 2 * r + e];
                    x = exp2f(x - m_use);
                    sum += x;
                }
            run_l[r] = run_l[r] * alpha + sum; /* this lane's part of the row */
            run_m[r] = m_new;
#pragma unroll
            for (int j = 0; j < 32; ++j) {
                acc_o[4 * j + 2 * r] *= alpha;
                acc_o[4 * j + 2 * r + 1] *= alpha;
            }
        }

        cp_async_wait<1>(); /* V(nt) landed; K(nt+1) may still fly */
        pa_wg::fence_async_shared();
        __syncthreads();

        /* O += P V: the scores' accumulator layout is the A-fragment layout of the product */
        uint32_t pf[kKeys / 16][4];
#pragma unroll
        for (int kk = 0; kk < kKeys / 16; ++kk)
#pragma unroll
            for (int i = 0; i < 4; ++i)
                pf[kk][i] = Dt<T>::pack(s[8 * kk + 2 * i], s[8 * kk + 2 * i + 1]);
        pa_wg::fence();
#pragma unroll
        for (int kk = 0; kk < kKeys / 16; ++kk)
            pa_wg::Mma<T>::rs_m64n256k16(acc_o, pf[kk],
                                         pa_wg::desc(v_addr + (uint32_t)(kk * 2 * pa_wg::kGroupBytes),
                                                     kKeys * 128, pa_wg::kGroupBytes),
                                         1);
        pa_wg::commit();
        pa_wg::wait<0>();
        __syncthreads(); /* V's buffer is free */
        if (nt + 1 < n_tiles) load_tile(sv, v, a.v_stride[2], key0 + kKeys, a.seq_kv);
        cp_async_commit();
    }
    cp_async_wait<0>();
    __syncthreads(); /* every copy landed (a tile with no key tile still loaded Q) */

    /* O / l, staged through shared memory (padded rows) for 16-byte stores */
    T *stage = reinterpret_cast<T *>(sq);
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float l = run_l[r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const float inv = l > 0.f ? 1.f / l : 0.f;
        const int lrow = 16 * warp + g + 8 * r;
        T *srow = stage + lrow * kStageStride + 2 * t4;
#pragma unroll
        for (int j = 0; j < 32; ++j)
            *reinterpret_cast<uint32_t *>(srow + 8 * j) =
                Dt<T>::pack(acc_o[4 * j + 2 * r] * inv, acc_o[4 * j + 2 * r + 1] * inv);
        const int row = row0 + lrow;
        if (rank == 0 && t4 == 0 && a.lse && row < a.seq_q)
            a.lse[((int64_t)batch * a.heads_q + head) * a.seq_q + row] =
                l > 0.f ? (run_m[r] + log2f(l)) * kLn2 : -INFINITY;
    }
    __syncthreads();
    const int rows = min(kRows, a.seq_q - row0);
    for (int i = tid; i < rows * (kCols / 8); i += kThreads) {
        const int lrow = i / (kCols / 8), c = (i % (kCols / 8)) * 8;
        *reinterpret_cast<uint4 *>(o + (int64_t)(row0 + lrow) * a.o_stride[2] + c) =
            *reinterpret_cast<const uint4 *>(stage + lrow * kStageStride + c);
    }
#else
    (void)a;
    __trap(); /* launched on sm_90 only, where the sm_90a image runs */
#endif
}

template <int C, typename T>
cudaError_t launch(const pa_gpu_args &a, cudaStream_t stream)
{
    auto kernel = flash_fwd_wgmma_kernel<C, T>;
    static unsigned long long attr_done = 0;
    cudaError_t e = smem_attr_once(kernel, smem_bytes<C>(), attr_done);
    if (e != cudaSuccess) return e;
    const int q_tiles = (a.seq_q + kRows - 1) / kRows;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(C * q_tiles * a.heads_q * a.batch);
    cfg.blockDim = dim3(kThreads);
    cfg.dynamicSmemBytes = smem_bytes<C>();
    cfg.stream = stream;
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = C, attr.val.clusterDim.y = 1, attr.val.clusterDim.z = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, kernel, a);
}

template <typename T>
cudaError_t dispatch(const pa_gpu_args &a, cudaStream_t stream)
{
    switch (a.head_dim) {
    case 512: return launch<2, T>(a, stream);
    case 768: return launch<3, T>(a, stream);
    case 1024: return launch<4, T>(a, stream);
    default: return cudaErrorInvalidValue;
    }
}

} // namespace

extern "C" int pa_cuda_flash_wgmma_has_head_dim(int head_dim)
{
    return head_dim == 512 || head_dim == 768 || head_dim == 1024;
}

extern "C" size_t pa_cuda_flash_wgmma_smem(int head_dim)
{
    switch (head_dim) {
    case 512: return smem_bytes<2>();
    case 768: return smem_bytes<3>();
    case 1024: return smem_bytes<4>();
    default: return 0;
    }
}

extern "C" int pa_cuda_flash_wgmma(const pa_gpu_args *a, void *stream)
{
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (a->dtype == 1) return (int)dispatch<__half>(*a, s);
    if (a->dtype == 2) return (int)dispatch<__nv_bfloat16>(*a, s);
    return (int)cudaErrorInvalidValue;
}
