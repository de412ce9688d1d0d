/*
 * flash_fwd_pair_kernel: f16/bf16 flash forward at head dims 512 and 768 on Hopper
 * (sm_90a only: wgmma and clusters).
 *
 * Why another wide kernel: the mma.sync one (flash_tc.cu) takes 32 query rows a block and
 * moves ~320 KB through an SM's shared memory per 32-key tile (K/V fills and ldmatrix, Q
 * reloads, the 8-way split-K score exchange), ~4.5k cycles a tile (session-5 profile).
 * Here a cluster of 2 blocks takes 64 query rows; block r of the pair owns head-dim half r
 * of Q, K, V and O, and each of its 2 warpgroups a quarter of D (D/4 columns):
 *   S = Q K^T:  each warpgroup multiplies its quarter (wgmma m64n32k16, Q and K read from
 *               shared memory by the tensor cores), a 4-way split-K over the cluster; the
 *               4 partial 64 x 32 score tiles are exchanged through shared memory (the
 *               peer block's by distributed shared memory), one cluster barrier a key tile;
 *   softmax:    every warpgroup sums the 4 partials in the same order and runs the same
 *               online softmax in registers (each thread 2 rows x 8 keys);
 *   O += P V:   P stays in registers as the A operand (wgmma m64n64k16, V read from shared
 *               memory transposed), each warpgroup accumulating its 64 x D/4 slice of O.
 * Per block and key tile that is ~200 KB of shared-memory traffic for the same work the
 * mma.sync block does with ~320 KB, and each K/V byte from L2 serves 64 query rows, not 32.
 * Each warpgroup loads (cp.async) its own quarter of Q, K and V into 128-byte swizzled tiles
 * (the layout wgmma descriptors describe) and refills K (V) as soon as its own product is
 * done with it.  A cluster runs one query tile, or the segments of flash_split.h's balanced
 * schedule (64-row query tiles, a cluster per schedule block; the combine merges cut tiles).
 */
#include "flash_wgmma.h"
#include "flash_split.h"
#include "tc_common.cuh"

#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "flash_wgmma.cu is built for sm_90a only (backends/cuda/CMakeLists.txt)"
#endif

namespace
{

using namespace pa_tc;

template <int HEAD_DIM>
struct PairTraits {
    static constexpr int kRows = 64;                /* query rows of a cluster (and block) */
    static constexpr int kKeys = 32;                /* keys per key tile */
    static constexpr int kGroups = 2;               /* warpgroups per block */
    static constexpr int kThreads = 128 * kGroups;
    static constexpr int kCols = HEAD_DIM / 4;      /* head-dim columns of one warpgroup */
    static constexpr int kColBlocks = kCols / 64;   /* 64-column (128-byte) swizzle blocks */
    static constexpr int kQBytes = kRows * kCols * 2;
    static constexpr int kKBytes = kKeys * kCols * 2; /* K or V tile of one warpgroup */
    static constexpr int kStages = 2;               /* K/V tiles in flight */
    static constexpr int kGroupBytes = kQBytes + 2 * kStages * kKBytes;
    static constexpr int kSlotFloats = 128 * 16;    /* a warpgroup's 64 x 32 partial scores */
    /* 1 KB for aligning the swizzled tiles, the tiles of both warpgroups, then 2 sets of 4
     * score slots (one per warpgroup of the cluster; sets alternate between key tiles). */
    static constexpr size_t kSmem =
        1024 + (size_t)kGroups * kGroupBytes + 2 * 4 * (size_t)kSlotFloats * 4;
    static_assert(kCols % 64 == 0, "whole 128-byte swizzle blocks");
    static_assert(kRows == PA_FLASH_PAIR_TILE_M && kKeys == PA_FLASH_PAIR_KEY_TILE,
                  "the host plans the schedule in these tiles");
};

/* ---- PTX: wgmma, fences, cluster ---- */

/* Shared-memory matrix descriptor, 128-byte swizzle: start, leading and stride byte offsets. */
__device__ __forceinline__ uint64_t sw128_desc(uint32_t addr, uint32_t lbo, uint32_t sbo)
{
    return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)(lbo >> 4) << 16) |
           ((uint64_t)(sbo >> 4) << 32) | (1ull << 62);
}

__device__ __forceinline__ void wgmma_fence()
{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit()
{
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void wgmma_wait_all()
{
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}
/* Orders this thread's generic-proxy writes (cp.async) before the tensor cores' reads. */
__device__ __forceinline__ void fence_proxy_async()
{
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}
/* Barrier of one warpgroup (ids 1, 2; 0 is __syncthreads). */
__device__ __forceinline__ void group_barrier(int group)
{
    asm volatile("bar.sync %0, 128;\n" ::"r"(group + 1) : "memory");
}
__device__ __forceinline__ uint32_t cluster_rank()
{
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}
/* Every thread of both blocks: writes before it (shared memory, both blocks') are visible
 * to reads after it. */
__device__ __forceinline__ void cluster_sync()
{
    asm volatile("barrier.cluster.arrive.release.aligned;\n"
                 "barrier.cluster.wait.acquire.aligned;\n" ::
                     : "memory");
}
/* The address of the same shared-memory location in block `rank` of the cluster. */
__device__ __forceinline__ uint32_t map_to_rank(uint32_t addr, uint32_t rank)
{
    uint32_t r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(addr), "r"(rank));
    return r;
}
__device__ __forceinline__ void st_cluster_v4(uint32_t addr, float4 v)
{
    asm volatile("st.shared::cluster.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "f"(v.x),
                 "f"(v.y), "f"(v.z), "f"(v.w)
                 : "memory");
}

/* d (+)= A B, m64n32k16, A and B (K-major) from shared memory; accumulate unless first. */
template <typename T>
__device__ __forceinline__ void wgmma_m64n32_ss(float (&d)[16], uint64_t da, uint64_t db,
                                                bool first)
{
#define PA_WGMMA_SS(TY)                                                                            \
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"                                      \
                 "wgmma.mma_async.sync.aligned.m64n32k16.f32." TY "." TY " "                       \
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, "        \
                 "%16, %17, p, 1, 1, 0, 0;\n}\n"                                                   \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),         \
                   "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),       \
                   "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])                              \
                 : "l"(da), "l"(db), "r"(first ? 0 : 1))
    if constexpr (std::is_same<T, __half>::value)
        PA_WGMMA_SS("f16");
    else
        PA_WGMMA_SS("bf16");
#undef PA_WGMMA_SS
}

/* d += A B, m64n64k16, A from registers (mma.sync A-fragment layout), B from shared memory
 * MN-major (transposed). */
template <typename T>
__device__ __forceinline__ void wgmma_m64n64_rs(float (&d)[32], const uint32_t (&a)[4],
                                                uint64_t db)
{
#define PA_WGMMA_RS(TY)                                                                            \
    asm volatile("wgmma.mma_async.sync.aligned.m64n64k16.f32." TY "." TY " "                       \
                 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "         \
                 "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, "     \
                 "%31}, {%32, %33, %34, %35}, %36, 1, 1, 1, 1;\n"                                  \
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]),         \
                   "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]),       \
                   "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]),   \
                   "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),   \
                   "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]),   \
                   "+f"(d[30]), "+f"(d[31])                                                        \
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db))
    if constexpr (std::is_same<T, __half>::value)
        PA_WGMMA_RS("f16");
    else
        PA_WGMMA_RS("bf16");
#undef PA_WGMMA_RS
}

/* Byte offset of 16-byte chunk `ch` of row r in a swizzled tile of `rows` rows: 64-column
 * blocks one after the other, rows of 128 bytes in each, chunk ch % 8 of a row stored at
 * (ch % 8) ^ (r % 8) (the 128-byte swizzle: 8 rows hit 8 distinct bank quads). */
template <int ROWS>
__device__ __forceinline__ int sw128_offset(int r, int ch)
{
    return (ch / 8) * ROWS * 128 + r * 128 + (((ch % 8) ^ (r % 8)) << 4);
}

/* A warpgroup copies rows [first, first + ROWS) x COLS columns of a head into its swizzled
 * tile; rows at or past `limit` are zero-filled. */
template <int ROWS, int COLS, typename T>
__device__ __forceinline__ void load_tile(unsigned char *dst, const T *src, int64_t row_stride,
                                          int first, int limit, int t)
{
    constexpr int kChunks = COLS / 8;
    constexpr int kTotal = ROWS * kChunks;
    static_assert(kTotal % 128 == 0, "whole copies per thread");
#pragma unroll
    for (int i = t; i < kTotal; i += 128) {
        const int r = i / kChunks, ch = i % kChunks;
        const bool valid = first + r < limit;
        const T *g = valid ? src + (int64_t)(first + r) * row_stride + ch * 8 : src;
        cp_async16(dst + sw128_offset<ROWS>(r, ch), g, valid);
    }
}

#ifdef PA_PAIR_PROFILE
/* Profile build (-DPA_PAIR_PROFILE): clock64 at 8 points of each key tile in thread 0 of the
 * first cluster's block 0 of (batch 0, head 0) (the longest query tile under a causal mask),
 * printed after the loop: cycles between consecutive marks, summed over the segment's tiles. */
#define PA_PAIR_MARK_DECL                                                                          \
    long long pa_marks[8] = {0}, pa_prev = clock64(), pa_start = pa_prev;                          \
    const bool pa_prof = threadIdx.x == 0 && blockIdx.x == 0 && blockIdx.y == 0 && blockIdx.z == 0
#define PA_PAIR_MARK(i)                                                                            \
    do {                                                                                           \
        if (pa_prof) {                                                                             \
            const long long now = clock64();                                                       \
            pa_marks[i] += now - pa_prev;                                                          \
            pa_prev = now;                                                                         \
        }                                                                                          \
    } while (0)
#define PA_PAIR_MARK_PRINT                                                                         \
    if (pa_prof)                                                                                   \
    printf("pair-profile D %d tiles %d loop %lld cycles: wait %lld qk %lld write %lld cluster %lld " \
           "softmax %lld pv %lld refill %lld loop-top %lld\n",                                     \
           HEAD_DIM, t1 - t0, clock64() - pa_start, pa_marks[1], pa_marks[2], pa_marks[3], pa_marks[4], pa_marks[5],    \
           pa_marks[6], pa_marks[7], pa_marks[0])
#else
#define PA_PAIR_MARK_DECL
#define PA_PAIR_MARK(i)
#define PA_PAIR_MARK_PRINT
#endif

template <int HEAD_DIM, typename T>
__global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(PairTraits<HEAD_DIM>::kThreads, 1)
    flash_fwd_pair_kernel(pa_gpu_args a, pa_flash_split split)
{
    using Tr = PairTraits<HEAD_DIM>;
    constexpr int BM = Tr::kRows, BN = Tr::kKeys, WC = Tr::kCols, CB = Tr::kColBlocks;
    extern __shared__ unsigned char smem_raw[];
    unsigned char *base = reinterpret_cast<unsigned char *>(
        (reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~static_cast<uintptr_t>(1023));

    const int tid = threadIdx.x, group = tid / 128, t = tid % 128;
    const int warp = t / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
    const uint32_t rank = cluster_rank();
    const int cluster = (int)blockIdx.x / 2;
    unsigned char *sq = base + group * Tr::kGroupBytes;
    unsigned char *sk = sq + Tr::kQBytes;                  /* K stages, then V stages */
    unsigned char *sv = sk + Tr::kStages * Tr::kKBytes;
    float *slots = reinterpret_cast<float *>(base + Tr::kGroups * Tr::kGroupBytes);
    const uint32_t q_addr = smem_addr(sq), k_addr = smem_addr(sk), v_addr = smem_addr(sv);
    const int col0 = (int)rank * (HEAD_DIM / 2) + group * WC; /* this warpgroup's columns */
    const int my_slot = (int)rank * 2 + group;
    const int lr0 = warp * 16 + g; /* this thread's rows of the tile: lr0, lr0 + 8 */
    const float sl2 = a.scale * kLog2e;

    /* One segment: key tiles [w.t0, w.t1) of query tile w.qt; both blocks of the cluster run
     * the same segments, so their cluster barriers pair up. */
    auto segment = [&](const pa_flash_work &w) {
        const pa_flash_heads<T> h = pa_flash_heads_of<T>(a, w);
        const int row0 = w.qt * BM;
        const int t0 = w.t0, t1 = w.t1;
        /* K and V of key tile nt go to stage (nt - t0) % kStages, one copy group a tile */
        auto load_kv = [&](int nt) {
            const int st = (nt - t0) % Tr::kStages;
            load_tile<BN, WC>(sk + st * Tr::kKBytes, h.k + col0, a.k_stride[2], nt * BN, a.seq_kv, t);
            load_tile<BN, WC>(sv + st * Tr::kKBytes, h.v + col0, a.v_stride[2], nt * BN, a.seq_kv, t);
        };
        group_barrier(group); /* the previous segment's copy-out is done with the Q tile */
        load_tile<BM, WC>(sq, h.q + col0, a.q_stride[2], row0, a.seq_q, t);
#pragma unroll
        for (int i = 0; i < Tr::kStages; ++i) {
            if (t0 + i < t1) load_kv(t0 + i);
            cp_async_commit();
        }
        /* the peer block runs, and every thread of both is done with the previous segment's
         * score slots, before any store into them */
        cluster_sync();

        int vis[2];
        float run_m[2], run_l[2]; /* running max and sum (log2 domain) */
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            vis[r] = pa_flash_visible(a, row0 + lr0 + 8 * r);
            run_m[r] = -INFINITY, run_l[r] = 0.f;
        }
        float acc_o[CB][32]; /* column block cb: m64n64 accumulator fragments */
#pragma unroll
        for (int cb = 0; cb < CB; ++cb)
#pragma unroll
            for (int i = 0; i < 32; ++i)
                acc_o[cb][i] = 0.f;

        PA_PAIR_MARK_DECL;
        for (int nt = t0; nt < t1; ++nt) {
            const int key0 = nt * BN, it = nt - t0;
            const uint32_t kst = k_addr + (it % Tr::kStages) * Tr::kKBytes;
            const uint32_t vst = v_addr + (it % Tr::kStages) * Tr::kKBytes;
            PA_PAIR_MARK(0);
            cp_async_wait<Tr::kStages - 1>(); /* this thread's K(nt), V(nt) (and Q) landed */
            fence_proxy_async();
            group_barrier(group); /* ... and the whole warpgroup's */
            PA_PAIR_MARK(1);

            /* partial S over this warpgroup's columns: 16 columns (32 bytes) a step */
            float s[16];
#pragma unroll
            for (int i = 0; i < 16; ++i)
                s[i] = 0.f;
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < WC / 16; ++kk) {
                const uint32_t off = (kk % 4) * 32; /* within the 128-byte row */
                const uint64_t da = sw128_desc(q_addr + (kk / 4) * (BM * 128) + off, 16, 1024);
                const uint64_t db = sw128_desc(kst + (kk / 4) * (BN * 128) + off, 16, 1024);
                wgmma_m64n32_ss<T>(s, da, db, kk == 0);
            }
            wgmma_commit();
            wgmma_wait_all();
            PA_PAIR_MARK(2);

            /* exchange: slot my_slot of this tile's set, here and in the peer block */
            float *set = slots + (it & 1) * 4 * Tr::kSlotFloats;
            {
                float *mine = set + my_slot * Tr::kSlotFloats;
                const uint32_t peer = map_to_rank(smem_addr(mine), rank ^ 1u);
#pragma unroll
                for (int q4 = 0; q4 < 4; ++q4) {
                    const float4 v4 =
                        make_float4(s[4 * q4], s[4 * q4 + 1], s[4 * q4 + 2], s[4 * q4 + 3]);
                    *reinterpret_cast<float4 *>(mine + (q4 * 128 + t) * 4) = v4;
                    st_cluster_v4(peer + (q4 * 128 + t) * 16, v4);
                }
            }
            PA_PAIR_MARK(3);
            cluster_sync(); /* all 4 partials of this tile are in both blocks */
            PA_PAIR_MARK(4);
            float x[16];
#pragma unroll
            for (int i = 0; i < 16; ++i)
                x[i] = 0.f;
#pragma unroll
            for (int sl = 0; sl < 4; ++sl) { /* the same order in every warpgroup */
                const float *src = set + sl * Tr::kSlotFloats;
#pragma unroll
                for (int q4 = 0; q4 < 4; ++q4) {
                    const float4 v4 = sl == my_slot ? make_float4(s[4 * q4], s[4 * q4 + 1],
                                                                  s[4 * q4 + 2], s[4 * q4 + 3])
                                                    : *reinterpret_cast<const float4 *>(
                                                          src + (q4 * 128 + t) * 4);
                    x[4 * q4] += v4.x, x[4 * q4 + 1] += v4.y;
                    x[4 * q4 + 2] += v4.z, x[4 * q4 + 3] += v4.w;
                }
            }

            /* online softmax: x[4j + 2r + e] is row lr0 + 8r, key key0 + 8j + 2t4 + e; the 4
             * threads of a quad share the rows */
            float alpha[2];
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                float mx = -INFINITY;
#pragma unroll
                for (int j = 0; j < 4; ++j)
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        float &v = x[4 * j + 2 * r + e];
                        v = key0 + 8 * j + 2 * t4 + e < vis[r] ? v * sl2 : -INFINITY;
                        mx = fmaxf(mx, v);
                    }
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float m_new = mx > run_m[r] + kRescaleSlack ? mx : run_m[r]; /* lazy */
                const float m_use = m_new == -INFINITY ? 0.f : m_new;
                alpha[r] = exp2f(run_m[r] - m_use);
                float sum = 0.f;
#pragma unroll
                for (int j = 0; j < 4; ++j)
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        float &v = x[4 * j + 2 * r + e];
                        v = exp2f(v - m_use);
                        sum += v;
                    }
                sum += __shfl_xor_sync(0xffffffffu, sum, 1);
                sum += __shfl_xor_sync(0xffffffffu, sum, 2);
                run_l[r] = run_l[r] * alpha[r] + sum;
                run_m[r] = m_new;
            }
            if (alpha[0] != 1.f || alpha[1] != 1.f) {
#pragma unroll
                for (int cb = 0; cb < CB; ++cb)
#pragma unroll
                    for (int j = 0; j < 8; ++j)
#pragma unroll
                        for (int i = 0; i < 4; ++i)
                            acc_o[cb][4 * j + i] *= alpha[i / 2];
            }
            /* P as the A operand: keys 16ks..16ks+15 are accumulator blocks 2ks, 2ks + 1 */
            uint32_t pa[2][4];
#pragma unroll
            for (int ks = 0; ks < 2; ++ks) {
                pa[ks][0] = Dt<T>::pack(x[8 * ks + 0], x[8 * ks + 1]);
                pa[ks][1] = Dt<T>::pack(x[8 * ks + 2], x[8 * ks + 3]);
                pa[ks][2] = Dt<T>::pack(x[8 * ks + 4], x[8 * ks + 5]);
                pa[ks][3] = Dt<T>::pack(x[8 * ks + 6], x[8 * ks + 7]);
            }
            PA_PAIR_MARK(5);
            wgmma_fence();
#pragma unroll
            for (int cb = 0; cb < CB; ++cb)
#pragma unroll
                for (int ks = 0; ks < 2; ++ks)
                    wgmma_m64n64_rs<T>(acc_o[cb], pa[ks],
                                       sw128_desc(vst + cb * (BN * 128) + ks * 16 * 128,
                                                  BN * 128, 1024));
            wgmma_commit();
            wgmma_wait_all();
            PA_PAIR_MARK(6);
            group_barrier(group); /* every warp's products have read this stage: refill it */
            if (nt + Tr::kStages < t1) load_kv(nt + Tr::kStages);
            cp_async_commit();
            PA_PAIR_MARK(7);
        }
        PA_PAIR_MARK_PRINT;
        cp_async_wait<0>();

        /* O / l, staged in this warpgroup's Q tile (free: its last product is done) with the
         * same swizzle, then copied out in 16-byte rows: to O (and the LSE) when the segment
         * covers its query tile, else to its partial slot (flash_split.h's layout). */
        float inv[2];
#pragma unroll
        for (int r = 0; r < 2; ++r)
            inv[r] = run_l[r] > 0.f ? 1.f / run_l[r] : 0.f;
        group_barrier(group);
#pragma unroll
        for (int cb = 0; cb < CB; ++cb)
#pragma unroll
            for (int j = 0; j < 8; ++j)
#pragma unroll
                for (int r = 0; r < 2; ++r)
                    *reinterpret_cast<uint32_t *>(sq + sw128_offset<BM>(lr0 + 8 * r, cb * 8 + j) +
                                                  4 * t4) =
                        Dt<T>::pack(acc_o[cb][4 * j + 2 * r] * inv[r],
                                    acc_o[cb][4 * j + 2 * r + 1] * inv[r]);
        group_barrier(group);
        constexpr int kChunks = WC / 8;
        const int rows = a.seq_q - row0 < BM ? a.seq_q - row0 : BM;
        T *dst = w.slot >= 0 ? static_cast<T *>(split.part) + (int64_t)w.slot * BM * HEAD_DIM
                             : h.o + (int64_t)row0 * a.o_stride[2];
        const int64_t dst_stride = w.slot >= 0 ? HEAD_DIM : a.o_stride[2];
        for (int i = t; i < rows * kChunks; i += 128) {
            const int r = i / kChunks, ch = i % kChunks;
            *reinterpret_cast<uint4 *>(dst + (int64_t)r * dst_stride + col0 + ch * 8) =
                *reinterpret_cast<const uint4 *>(sq + sw128_offset<BM>(r, ch));
        }
        if (rank == 0 && group == 0 && t4 == 0) {
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int lr = lr0 + 8 * r, row = row0 + lr;
                const float lse2 = run_l[r] > 0.f ? run_m[r] + log2f(run_l[r]) : -INFINITY;
                if (row >= a.seq_q) continue;
                if (w.slot >= 0)
                    reinterpret_cast<float *>(static_cast<T *>(split.part) +
                                              (int64_t)split.slots * BM * HEAD_DIM)[(int64_t)w.slot * BM + lr] = lse2;
                else if (a.lse)
                    a.lse[((int64_t)w.batch * a.heads_q + w.head) * a.seq_q + row] = lse2 * kLn2;
            }
        }
    };

    if (!split.chunk) { /* one query tile per cluster, longest first under a causal mask */
        pa_flash_work w;
        const int q_tiles = gridDim.x / 2;
        w.qt = a.mask ? q_tiles - 1 - cluster : cluster;
        w.head = blockIdx.y, w.batch = blockIdx.z;
        w.t0 = 0, w.t1 = pa_flash_tiles(a, split, w.qt), w.slot = -1;
        w.first = 0, w.units = w.t1;
        segment(w);
        return;
    }
    pa_flash_record rec = {-1, 0, 0, 0}; /* flash_split.h: the balanced schedule, per cluster */
    pa_flash_walk(a, split, cluster, [&](const pa_flash_work &w) {
        pa_flash_note(a, w, rec);
        segment(w);
    });
    if (threadIdx.x == 0 && rank == 0) pa_flash_records(a, split)[cluster] = rec;
}

template <int HEAD_DIM, typename T>
cudaError_t launch(const pa_gpu_args &a, const pa_flash_split *split, cudaStream_t stream)
{
    using Tr = PairTraits<HEAD_DIM>;
    static unsigned long long attr_done = 0;
    auto kernel = flash_fwd_pair_kernel<HEAD_DIM, T>;
    cudaError_t e = smem_attr_once(kernel, Tr::kSmem, attr_done);
    if (e != cudaSuccess) return e;
    if (split && split->chunk) { /* a cluster per schedule block, then the combine */
        kernel<<<2 * split->blocks, Tr::kThreads, Tr::kSmem, stream>>>(a, *split);
        e = cudaGetLastError();
        return e != cudaSuccess ? e : (cudaError_t)pa_cuda_flash_combine(&a, split, stream);
    }
    pa_flash_split s = {};
    s.tile_m = Tr::kRows, s.key_tile = Tr::kKeys;
    s.q_tiles = (a.seq_q + Tr::kRows - 1) / Tr::kRows;
    const dim3 grid(2 * s.q_tiles, a.heads_q, a.batch);
    kernel<<<grid, Tr::kThreads, Tr::kSmem, stream>>>(a, s);
    return cudaGetLastError();
}

template <typename T>
cudaError_t dispatch(const pa_gpu_args &a, const pa_flash_split *split, cudaStream_t stream)
{
    switch (a.head_dim) {
    case 512: return launch<512, T>(a, split, stream);
    case 768: return launch<768, T>(a, split, stream);
    default: return cudaErrorInvalidValue;
    }
}

} // namespace

extern "C" int pa_cuda_flash_pair_built(void)
{
    return 1;
}

extern "C" int pa_cuda_flash_pair_has_head_dim(int head_dim)
{
    return head_dim == 512 || head_dim == 768;
}

extern "C" size_t pa_cuda_flash_pair_smem(int head_dim)
{
    switch (head_dim) {
    case 512: return PairTraits<512>::kSmem;
    case 768: return PairTraits<768>::kSmem;
    default: return 0;
    }
}

extern "C" int pa_cuda_flash_pair(const pa_gpu_args *a, const pa_flash_split *split, void *stream)
{
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (a->dtype == 1) return (int)dispatch<__half>(*a, split, s);
    if (a->dtype == 2) return (int)dispatch<__nv_bfloat16>(*a, split, s);
    return (int)cudaErrorInvalidValue;
}
