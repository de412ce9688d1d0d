/*
 * flash_fwd_tf32x3_tile_kernel: f32 flash forward for head dims up to 256 on tensor cores
 * (sm_80+) at f32 accuracy, every product in 3xTF32 (tf32x3.cuh).  The structure of the
 * 16-bit tile kernel (flash_tc.cu): one block per (query tile, head, batch), 4 warps, each
 * owning 16 * kMTiles query rows; K and V tiles double-buffered in shared memory with
 * cp.async; S = Q K^T, the online softmax (exp2 domain) and O += P V in registers.
 *
 * Fragments (mma.sync m16n8k8 tf32; g = lane / 4, t4 = lane % 4):
 *   Q (A):  ldmatrix from f32 rows (an 8x8 b16 matrix is 8 rows of 4 f32: a tf32 fragment).
 *   K (B):  ldmatrix too, its 8 row addresses permuted: lane g of the fragment gets key
 *           perm(g) = g / 2 + 4 * (g % 2) of the 8.  The S accumulator of lane (g, t4) then
 *           holds keys t4 and t4 + 4 (c0, c1; c2, c3 for row g + 8), which is exactly the
 *           A fragment of P V for that 8-key step (a0 = (g, t4), a2 = (g, t4 + 4), a1 and
 *           a3 the same for row g + 8).  So P goes from the S accumulator to the next mma
 *           with no shuffle and no round trip through shared memory (either would cost
 *           instructions or shared memory per key tile; the permutation costs nothing).
 *   V (B):  b0 = V[key t4][column n], b1 = V[key t4 + 4][column n]: V transposed, which
 *           ldmatrix cannot do on 32-bit elements.  Plain loads, 128 bits at a time: lane
 *           (g, t4) reads columns 4g .. 4g + 3 of a 32-column group, the B fragments of four
 *           n-tiles whose column n is 4n + i (i = 0..3).  Rows are padded to D + 8 floats, so
 *           the 8 lanes of each 128-bit phase hit distinct banks.  The O accumulator of
 *           those n-tiles holds, for lane (g, t4), columns 8 t4 + i (c0) and 8 t4 + 4 + i
 *           (c1) of the group: two float4 stores a row at the end.
 * Each operand is split into hi/lo as it is read (Q and K by every warp that reads them:
 * a pre-split copy would double shared memory or add a pass and a barrier per tile).
 * Score variants are not taken (the plan runs the generic kernel for them).
 */
#include "flash_f32.h"
#include "flash_split.cuh"
#include "tc_common.cuh"
#include "tf32x3.cuh"

namespace
{

using namespace pa_tc;

/* One tile configuration per head dim: 4 warps of kMTiles m16 row tiles each; key tiles of
 * kBlockN keys in two stages.  64: two m-tiles (each K fragment feeds 6 mma) and 64-key
 * tiles, 106.5 KiB (two blocks an SM on the H100).  128: one m-tile and 32-key tiles,
 * 102 KiB (two blocks an SM); two m-tiles would hold 128 O registers a thread. */
template <int HEAD_DIM>
struct F32TileTraits {
    static constexpr int kWarps = 4;
    static constexpr int kMTiles = HEAD_DIM <= 64 ? 2 : 1;
    static constexpr int kBlockM = 16 * kMTiles * kWarps;
    static constexpr int kBlockN = HEAD_DIM <= 64 ? 64 : 32;
    static constexpr int kThreads = 32 * kWarps;
    /* Q and K rows: 16-byte aligned, 8 consecutive rows on distinct bank quads (ldmatrix). */
    static constexpr int kQStride = HEAD_DIM + 4;
    /* V rows: the 128-bit reads of lanes (g, t4) start at bank 8 t4 + 4 g (mod 32). */
    static constexpr int kVStride = HEAD_DIM + 8;
    static constexpr int kStages = 2;
    static constexpr size_t kSmem =
        ((size_t)kBlockM * kQStride + (size_t)kStages * kBlockN * (kQStride + kVStride)) * 4;
    static constexpr int kMinBlocks = 2;
    static_assert(HEAD_DIM % 32 == 0, "V is read in 32-column groups");
    static_assert(kBlockN % 8 == 0, "whole mma tiles");
    static_assert((kQStride / 4) % 2 == 1 && kVStride % 32 == 8, "bank-conflict-free strides");
};

/* Row of key fragment lane g (0..7): perm(g), so that S comes out in P V's A layout. */
__device__ __forceinline__ int key_perm(int g) { return (g >> 1) + 4 * (g & 1); }

template <int HEAD_DIM>
__global__ void __launch_bounds__(F32TileTraits<HEAD_DIM>::kThreads,
                                  F32TileTraits<HEAD_DIM>::kMinBlocks)
    flash_fwd_tf32x3_tile_kernel(pa_gpu_args a)
{
    using Tr = F32TileTraits<HEAD_DIM>;
    constexpr int D = HEAD_DIM, BM = Tr::kBlockM, BN = Tr::kBlockN, MT = Tr::kMTiles;
    constexpr int QS = Tr::kQStride, VS = Tr::kVStride;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    float *sq = reinterpret_cast<float *>(smem_raw);
    float *sk = sq + BM * QS;     /* [stage][BN][QS] */
    float *sv = sk + 2 * BN * QS; /* [stage][BN][VS] */

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = lane / 4, t4 = lane % 4;
    /* Causal: the last query tiles see the most keys; start them first. */
    const int m_block = a.mask ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
    const int head = blockIdx.y, batch = blockIdx.z;
    const int head_kv = head / (a.heads_q / a.heads_kv);
    const float *q = static_cast<const float *>(a.q) + batch * a.q_stride[0] + head * a.q_stride[1];
    const float *k =
        static_cast<const float *>(a.k) + batch * a.k_stride[0] + head_kv * a.k_stride[1];
    const float *v =
        static_cast<const float *>(a.v) + batch * a.v_stride[0] + head_kv * a.v_stride[1];
    float *o = static_cast<float *>(a.o) + batch * a.o_stride[0] + head * a.o_stride[1];

    const int row0 = m_block * BM;
    const int last_row = min(row0 + BM, a.seq_q) - 1;
    const int key_end = pa_flash_visible(a, last_row);
    const int mask_hi = pa_flash_visible(a, row0); /* key tiles below it need no mask */
    const int n_tiles = (key_end + BN - 1) / BN;

    auto load_kv = [&](int stage, int first) {
        load_rows<BN, D / 4, QS, Tr::kThreads>(sk + stage * BN * QS, k, a.k_stride[2], first,
                                               a.seq_kv);
        load_rows<BN, D / 4, VS, Tr::kThreads>(sv + stage * BN * VS, v, a.v_stride[2], first,
                                               a.seq_kv);
    };
    load_rows<BM, D / 4, QS, Tr::kThreads>(sq, q, a.q_stride[2], row0, a.seq_q);
    if (n_tiles > 0) load_kv(0, 0);
    cp_async_commit();

    const int wrow = warp * 16 * MT; /* this warp's first row in the tile */
    int vis[MT][2];                  /* keys [0, vis) of rows g and g + 8 of each m-tile */
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r)
            vis[mt][r] = pa_flash_visible(a, row0 + wrow + mt * 16 + g + 8 * r);
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
        cp_async_wait<0>();
        __syncthreads(); /* tile nt landed; every warp is done with the other stage */
        if (nt + 1 < n_tiles) load_kv((nt + 1) & 1, (nt + 1) * BN);
        cp_async_commit();
        const float *ks = sk + (nt & 1) * BN * QS;
        const float *vs = sv + (nt & 1) * BN * VS;
        const int key0 = nt * BN;

        /* S = Q K^T, 16 head-dim columns (two k8 steps) at a time */
        float acc_s[MT][BN / 8][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
#pragma unroll
            for (int j = 0; j < BN / 8; ++j)
                acc_s[mt][j][0] = acc_s[mt][j][1] = acc_s[mt][j][2] = acc_s[mt][j][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < D / 16; ++kk) {
            uint32_t qh[MT][2][4], ql[MT][2][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    uint32_t raw[4];
                    ldmatrix_x4(raw, sq + (wrow + mt * 16 + (lane % 16)) * QS + kk * 16 + h * 8 +
                                         (lane / 16) * 4);
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        split_tf32(raw[e], qh[mt][h][e], ql[mt][h][e]);
                }
#pragma unroll
            for (int p = 0; p < BN / 8; ++p) {
                /* matrices: columns kk*16 + {0, 4, 8, 12}: b0, b1 of step 0, b0, b1 of step 1 */
                uint32_t raw[4], bh[4], bl[4];
                ldmatrix_x4(raw, ks + (p * 8 + key_perm(lane % 8)) * QS + kk * 16 + (lane / 8) * 4);
#pragma unroll
                for (int e = 0; e < 4; ++e)
                    split_tf32(raw[e], bh[e], bl[e]);
#pragma unroll
                for (int h = 0; h < 2; ++h)
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt)
                        mma3(acc_s[mt][p], qh[mt][h], ql[mt][h], bh[2 * h], bh[2 * h + 1],
                             bl[2 * h], bl[2 * h + 1]);
            }
        }

        /* mask (keys of lane (g, t4) in n-tile j: j*8 + t4 and + 4), online softmax */
        const bool need_mask = key0 + BN > mask_hi;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            if (need_mask) {
#pragma unroll
                for (int j = 0; j < BN / 8; ++j)
#pragma unroll
                    for (int e = 0; e < 4; ++e)
                        if (key0 + j * 8 + t4 + 4 * (e & 1) >= vis[mt][e >> 1])
                            acc_s[mt][j][e] = -INFINITY;
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

        /* O += P V, 8 keys (one k8 step) at a time; P's A fragment is S's accumulator */
#pragma unroll
        for (int j = 0; j < BN / 8; ++j) {
            uint32_t ph[MT][4], pl[MT][4];
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                split_tf32(__float_as_uint(acc_s[mt][j][0]), ph[mt][0], pl[mt][0]);
                split_tf32(__float_as_uint(acc_s[mt][j][2]), ph[mt][1], pl[mt][1]);
                split_tf32(__float_as_uint(acc_s[mt][j][1]), ph[mt][2], pl[mt][2]);
                split_tf32(__float_as_uint(acc_s[mt][j][3]), ph[mt][3], pl[mt][3]);
            }
            const float *v0 = vs + (j * 8 + t4) * VS + 4 * g;
            const float *v1 = v0 + 4 * VS;
#pragma unroll
            for (int c = 0; c < D / 32; ++c) {
                const float4 x0 = *reinterpret_cast<const float4 *>(v0 + c * 32);
                const float4 x1 = *reinterpret_cast<const float4 *>(v1 + c * 32);
                const float b0[4] = {x0.x, x0.y, x0.z, x0.w}, b1[4] = {x1.x, x1.y, x1.z, x1.w};
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    uint32_t bh0, bl0, bh1, bl1;
                    split_tf32(__float_as_uint(b0[i]), bh0, bl0);
                    split_tf32(__float_as_uint(b1[i]), bh1, bl1);
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt)
                        mma3(acc_o[mt][4 * c + i], ph[mt], pl[mt], bh0, bh1, bl0, bl1);
                }
            }
        }
    }
    cp_async_wait<0>();

#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float l = row_sum[mt][r];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const int row = row0 + wrow + mt * 16 + g + 8 * r;
            if (row >= a.seq_q) continue;
            const bool seen = vis[mt][r] > 0;
            const float inv = pa_gpu_row_inv(l, seen);
            float *orow = o + (int64_t)row * a.o_stride[2] + 8 * t4;
#pragma unroll
            for (int c = 0; c < D / 32; ++c) {
                const float(&n0)[4] = acc_o[mt][4 * c], (&n1)[4] = acc_o[mt][4 * c + 1];
                const float(&n2)[4] = acc_o[mt][4 * c + 2], (&n3)[4] = acc_o[mt][4 * c + 3];
                *reinterpret_cast<float4 *>(orow + c * 32) =
                    make_float4(n0[2 * r] * inv, n1[2 * r] * inv, n2[2 * r] * inv, n3[2 * r] * inv);
                *reinterpret_cast<float4 *>(orow + c * 32 + 4) =
                    make_float4(n0[2 * r + 1] * inv, n1[2 * r + 1] * inv, n2[2 * r + 1] * inv,
                                n3[2 * r + 1] * inv);
            }
            if (a.lse && t4 == 0)
                a.lse[((int64_t)batch * a.heads_q + head) * a.seq_q + row] =
                    pa_gpu_row_lse((row_max[mt][r] + log2f(l)) * kLn2, l, seen);
        }
}

template <int HEAD_DIM>
cudaError_t launch(const pa_gpu_args &a, cudaStream_t stream)
{
    using Tr = F32TileTraits<HEAD_DIM>;
    auto kernel = flash_fwd_tf32x3_tile_kernel<HEAD_DIM>;
    static unsigned long long attr_done = 0;
    cudaError_t e = smem_attr_once(kernel, Tr::kSmem, attr_done);
    if (e != cudaSuccess) return e;
    const dim3 grid((a.seq_q + Tr::kBlockM - 1) / Tr::kBlockM, a.heads_q, a.batch);
    kernel<<<grid, Tr::kThreads, Tr::kSmem, stream>>>(a);
    return cudaGetLastError();
}

/* The kernel's head dims, the one list that generates dispatch, "supported?" and the
 * shared-memory sizes; only these are instantiated (96, 192 and 256 compile too: add them
 * here when their build time is worth it). */
#define PA_FLASH_F32_TILE_HEAD_DIMS(X) X(64) X(128)

} // namespace

extern "C" int pa_cuda_flash_f32_tile_has_head_dim(int head_dim)
{
#define PA_CASE(d) case d:
    switch (head_dim) {
        PA_FLASH_F32_TILE_HEAD_DIMS(PA_CASE) return 1;
    default: return 0;
    }
#undef PA_CASE
}

extern "C" const char *pa_cuda_flash_f32_tile_head_dims(void)
{
#define PA_NAME(d) " " #d
    return PA_FLASH_F32_TILE_HEAD_DIMS(PA_NAME);
#undef PA_NAME
}

extern "C" size_t pa_cuda_flash_f32_tile_smem(int head_dim)
{
#define PA_CASE(d)                                                                                 \
    case d: return F32TileTraits<d>::kSmem;
    switch (head_dim) {
        PA_FLASH_F32_TILE_HEAD_DIMS(PA_CASE)
    default: return 0;
    }
#undef PA_CASE
}

extern "C" int pa_cuda_flash_f32_tile_rows(int head_dim)
{
#define PA_CASE(d)                                                                                 \
    case d: return F32TileTraits<d>::kBlockM;
    switch (head_dim) {
        PA_FLASH_F32_TILE_HEAD_DIMS(PA_CASE)
    default: return 0;
    }
#undef PA_CASE
}

extern "C" int pa_cuda_flash_f32_tile(const pa_gpu_args *a, void *stream)
{
    cudaStream_t s = static_cast<cudaStream_t>(stream);
#define PA_CASE(d)                                                                                 \
    case d: return (int)launch<d>(*a, s);
    switch (a->head_dim) {
        PA_FLASH_F32_TILE_HEAD_DIMS(PA_CASE)
    default: return (int)cudaErrorInvalidValue;
    }
#undef PA_CASE
}
