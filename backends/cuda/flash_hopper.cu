/*
 * flash_fwd_hopper_kernel: the flash forward for the head dims models use (64, 128, 192,
 * 256; f16/bf16) on Hopper's warpgroup MMA, warp-specialized as FlashAttention-3 is.
 *
 * A block owns a 128-row query tile and has three warpgroups:
 *   producer   one thread issues every TMA load (Q once, then K and V of each key tile into
 *              a ring of kStages buffers) and waits only for a buffer to come free; the
 *              warpgroup gives most of its registers back (setmaxnreg) to
 *   consumers  two warpgroups of 64 query rows each.  Per key tile:
 *                S = Q K^T      wgmma m64nNk16, both operands from shared memory;
 *                softmax        online, in registers (exp2 domain, 4 threads a row);
 *                O += P V       wgmma m64nDk16, P from registers, V from shared memory;
 *              then they release the buffer (an mbarrier the producer waits on).
 * While one consumer runs its softmax the other's products keep the tensor cores busy, and
 * the loads of the next tiles run under both: the mma.sync kernel (flash_tc.cu) issues its
 * own loads and splits every product across warps.
 *
 * Tiles (Q, K and V alike) sit in the 128-byte-swizzled layout of wgmma_sm90.cuh: blocks
 * of 64 columns, each `rows` x 128 bytes.  Key tiles are 128 keys at head dims up to 128
 * and 64 above (O's accumulator, D / 2 registers a thread, leaves no room for a wider S).
 * Masks: none and causal (both alignments) through pa_flash_visible; key tiles past a
 * causal band are never loaded.  O(N) memory: nothing but O and the LSE is written.
 *
 * Measured (docs/performance.md): 566 TFLOP/s at head dim 128, N = 16k on the H100 (75% of
 * its bf16 GEMM ceiling), 0.58-0.81x cuDNN.  FlashAttention-3's intra-warpgroup overlap
 * (tile j + 1's Q K^T issued before tile j's P V) ran at 0.66-0.91x of this loop: ptxas
 * serialised the wgmmas (C7514) because the softmax reads an accumulator between a wgmma
 * and its wait.
 */
#include "flash_hopper.h"
#include "flash_split.cuh" /* pa_flash_visible */
#include "tma_map.cuh"
#include "wgmma_sm90.cuh"

namespace
{

using namespace pa_tc;
using pa_tma::TileMaps;

/* The head dims and their tile shapes: the one table that generates the instances,
 * "supported?" and the shared-memory size.  X(head_dim, keys of a key tile, stages) */
#define PA_FLASH_HOPPER_TABLE(X) X(64, 128, 2) X(128, 128, 2) X(192, 64, 2) X(256, 64, 2)

template <int D>
struct Traits;
#define PA_TRAITS(d, n, st)                                                                        \
    template <>                                                                                    \
    struct Traits<d> {                                                                             \
        static constexpr int kN = n, kStages = st;                                                 \
    };
PA_FLASH_HOPPER_TABLE(PA_TRAITS)
#undef PA_TRAITS

constexpr int kRowsWg = 64; /* query rows of a consumer warpgroup (the wgmma M) */
constexpr int kConsumers = 2;
constexpr int kM = kRowsWg * kConsumers;
constexpr int kThreads = 128 * (kConsumers + 1);
constexpr int kSectionBlocks = 264; /* ~2 waves of an H100's 132 SMs (one block an SM) */
constexpr int kProducerRegs = 24, kConsumerRegs = 240; /* 128 x 24 + 256 x 240 <= 64K */
static_assert(kM == PA_HOPPER_TILE_M, "the header's tile");

/* Shared memory: the consumers' Q tiles, kStages K tiles, kStages V tiles, then the
 * mbarriers (q_full, k_full[kStages], v_full[kStages], empty[kStages]). */
template <int D>
struct Layout {
    static constexpr int kN = Traits<D>::kN, kStages = Traits<D>::kStages;
    static constexpr uint32_t kQBytes = kRowsWg * D * 2, kKVBytes = kN * D * 2;
    static constexpr uint32_t kK = kConsumers * kQBytes, kV = kK + kStages * kKVBytes;
    static constexpr uint32_t kBars = kV + kStages * kKVBytes;
    static constexpr size_t kSmem = 1024 + kBars + 8 * (1 + 3 * kStages); /* + alignment */
    static_assert(kQBytes % 1024 == 0 && kKVBytes % 1024 == 0, "swizzled tiles stay aligned");
};

/* Max and sum of N values (a power of two) as balanced trees, folded at compile time. */
template <int W, int N, typename Op>
__device__ __forceinline__ float fold(float (&m)[N], Op op)
{
    if constexpr (W == 0) {
        return m[0];
    } else {
#pragma unroll
        for (int q = 0; q < W; ++q)
            m[q] = op(m[q], m[q + W]);
        return fold<W / 2>(m, op);
    }
}
template <int N>
__device__ __forceinline__ float tree_max(const float (&x)[N])
{
    float m[N];
#pragma unroll
    for (int q = 0; q < N; ++q)
        m[q] = x[q];
    return fold<N / 2>(m, [](float u, float v) { return fmaxf(u, v); });
}
template <int N>
__device__ __forceinline__ float tree_sum(const float (&x)[N])
{
    float m[N];
#pragma unroll
    for (int q = 0; q < N; ++q)
        m[q] = x[q];
    return fold<N / 2>(m, [](float u, float v) { return u + v; });
}

template <int N>
__device__ __forceinline__ float (&part(float *p))[N]
{
    return *reinterpret_cast<float(*)[N]>(p);
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* O += P V for one 16-key step: P's A fragment, V's 16 rows at v_addr (lbo: bytes between
 * V's 64-column blocks).  192 columns go as 128 + 64. */
template <typename T, int D>
__device__ __forceinline__ void pv_step(float (&acc)[D / 2], const uint32_t (&pf)[4],
                                        uint32_t v_addr, uint32_t lbo)
{
    if constexpr (D == 192) {
        pa_wg::rs_m64nk16<T, 128>(part<64>(acc), pf, pa_wg::desc(v_addr, lbo, pa_wg::kGroupBytes),
                                  1);
        pa_wg::rs_m64nk16<T, 64>(part<32>(acc + 64), pf,
                                 pa_wg::desc(v_addr + 2 * lbo, lbo, pa_wg::kGroupBytes), 1);
    } else {
        pa_wg::rs_m64nk16<T, D>(acc, pf, pa_wg::desc(v_addr, lbo, pa_wg::kGroupBytes), 1);
    }
}
#endif

template <int D, typename T>
__global__ void __launch_bounds__(kThreads, 1)
    flash_fwd_hopper_kernel(pa_gpu_args a, const __grid_constant__ TileMaps maps)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using L = Layout<D>;
    constexpr int kN = L::kN, kStages = L::kStages, kChunks = D / 64;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    unsigned char *base = smem_raw + ((1024u - (smem_addr(smem_raw) & 1023u)) & 1023u);
    uint64_t *q_full = reinterpret_cast<uint64_t *>(base + L::kBars);
    uint64_t *k_full = q_full + 1, *v_full = k_full + kStages, *empty = v_full + kStages;

    /* this block's query tile: blocks run in sections of a few (batch, head) pairs whose
     * K and V stay in L2 while all their query tiles stream them, longest tiles first in a
     * section (pair-interleaved over all pairs, the blocks in flight at N = 2k read 128 MB
     * of distinct K/V: 358 TFLOP/s at N = 2k against 484 at 4k, H100, head_dim 128) */
    const int q_tiles = (a.seq_q + kM - 1) / kM, bh = a.batch * a.heads_q;
    const int sec_pairs = max(1, kSectionBlocks / q_tiles), sec_blocks = sec_pairs * q_tiles;
    const int sec = (int)blockIdx.x / sec_blocks, local = (int)blockIdx.x % sec_blocks;
    const int in_sec = min(sec_pairs, bh - sec * sec_pairs); /* the last section's pairs */
    const int order = local / in_sec, pair = sec * sec_pairs + local % in_sec;
    const int qt = a.mask ? q_tiles - 1 - order : order;
    const int batch = pair / a.heads_q, head = pair % a.heads_q;
    const int head_kv = head / (a.heads_q / a.heads_kv);
    const int row0 = qt * kM;
    const int n_tiles = (pa_flash_visible(a, min(row0 + kM, a.seq_q) - 1) + kN - 1) / kN;
    const int tid = threadIdx.x, wg = tid / 128;

    if (tid == 0) {
        pa_wg::bar_init_count(q_full, 1);
        for (int s = 0; s < kStages; ++s) {
            pa_wg::bar_init_count(&k_full[s], 1);
            pa_wg::bar_init_count(&v_full[s], 1);
            pa_wg::bar_init_count(&empty[s], kConsumers * 4); /* every consumer warp */
        }
    }
    __syncthreads(); /* the barriers are initialised */

    if (wg == 0) { /* producer */
        pa_wg::regs_dec<kProducerRegs>();
        if (tid != 0) return;
        pa_wg::tma_prefetch(&maps.k);
        pa_wg::tma_prefetch(&maps.v);
        mbar_expect(q_full, kConsumers * L::kQBytes);
        for (int c = 0; c < kConsumers; ++c)
            for (int b = 0; b < kChunks; ++b)
                pa_wg::tma_load_4d(base + c * L::kQBytes + b * kRowsWg * 128, &maps.q, 64 * b,
                                   row0 + kRowsWg * c, head, batch, q_full);
        for (int j = 0; j < n_tiles; ++j) {
            const int st = j % kStages;
            if (j >= kStages) mbar_wait(&empty[st], ((j / kStages) & 1) ^ 1); /* released */
            mbar_expect(&k_full[st], L::kKVBytes);
            for (int b = 0; b < kChunks; ++b)
                pa_wg::tma_load_4d(base + L::kK + st * L::kKVBytes + b * kN * 128, &maps.k, 64 * b,
                                   j * kN, head_kv, batch, &k_full[st]);
            mbar_expect(&v_full[st], L::kKVBytes);
            for (int b = 0; b < kChunks; ++b)
                pa_wg::tma_load_4d(base + L::kV + st * L::kKVBytes + b * kN * 128, &maps.v, 64 * b,
                                   j * kN, head_kv, batch, &v_full[st]);
        }
        return;
    }

    /* consumer c: rows [crow0, crow0 + 64); this thread's rows (the wgmma accumulator
     * layout) 16 * warp + g and + 8 */
    pa_wg::regs_inc<kConsumerRegs>();
    const int c = wg - 1, t = tid % 128, warp = t / 32, lane = t % 32, g = lane / 4, t4 = lane % 4;
    const int crow0 = row0 + kRowsWg * c;
    const int vis[2] = {pa_flash_visible(a, crow0 + 16 * warp + g),
                        pa_flash_visible(a, crow0 + 16 * warp + g + 8)};
    const int first_vis = pa_flash_visible(a, crow0); /* key tiles below need no mask */
    const float sl2 = a.scale * kLog2e;
    float run_m[2] = {-INFINITY, -INFINITY}, run_l[2] = {0.f, 0.f};
    float acc_o[D / 2];
#pragma unroll
    for (int e = 0; e < D / 2; ++e)
        acc_o[e] = 0.f;
    unsigned char *sq = base + c * L::kQBytes;
    const uint32_t q_addr = smem_addr(sq);
    mbar_wait(q_full, 0);

    auto k_addr = [&](int j) { return smem_addr(base + L::kK + (j % kStages) * L::kKVBytes); };
    auto v_addr = [&](int j) { return smem_addr(base + L::kV + (j % kStages) * L::kKVBytes); };
    auto phase = [&](int j) { return (uint32_t)((j / kStages) & 1); };
    /* S = Q K^T of key tile j over the head dim (D / 16 steps), issued, not waited for */
    auto issue_s = [&](float(&s)[kN / 2], int j) {
#pragma unroll
        for (int e = 0; e < kN / 2; ++e)
            s[e] = 0.f;
        mbar_wait(&k_full[j % kStages], phase(j));
        pa_wg::fence();
#pragma unroll
        for (int ch = 0; ch < kChunks; ++ch)
#pragma unroll
            for (int kk = 0; kk < 4; ++kk)
                pa_wg::ss_m64nk16<T, kN>(
                    s, pa_wg::desc(q_addr + ch * kRowsWg * 128 + kk * 32, 16, pa_wg::kGroupBytes),
                    pa_wg::desc(k_addr(j) + ch * kN * 128 + kk * 32, 16, pa_wg::kGroupBytes), 1);
        pa_wg::commit();
    };
    /* online softmax of key tile j's scores, rows g (r = 0) and g + 8 (r = 1), lazily
     * rescaled: s turns into P, then P's A fragments pf; alpha: the factor O must take */
    auto softmax = [&](float(&s)[kN / 2], int j, uint32_t(&pf)[kN / 16][4], float(&alpha)[2]) {
        const int key0 = j * kN;
        const bool need_mask = key0 + kN > first_vis;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float x[kN / 4];
#pragma unroll
            for (int q = 0; q < kN / 8; ++q)
#pragma unroll
                for (int e = 0; e < 2; ++e)
                    x[2 * q + e] = (!need_mask || key0 + 8 * q + 2 * t4 + e < vis[r])
                                       ? s[4 * q + 2 * r + e] * sl2
                                       : -INFINITY;
            float mx = tree_max(x);
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = mx > run_m[r] + kRescaleSlack ? mx : run_m[r];
            const float m_use = m_new == -INFINITY ? 0.f : m_new;
            alpha[r] = pa_wg::exp2_approx(run_m[r] - m_use);
#pragma unroll
            for (int e = 0; e < kN / 4; ++e)
                x[e] = pa_wg::exp2_approx(x[e] - m_use);
#pragma unroll
            for (int q = 0; q < kN / 8; ++q)
#pragma unroll
                for (int e = 0; e < 2; ++e)
                    s[4 * q + 2 * r + e] = x[2 * q + e];
            run_l[r] = run_l[r] * alpha[r] + tree_sum(x); /* this lane's part of the row */
            run_m[r] = m_new;
        }
        /* the scores' accumulator layout is the A-fragment layout of P V */
#pragma unroll
        for (int kk = 0; kk < kN / 16; ++kk)
#pragma unroll
            for (int q = 0; q < 4; ++q)
                pf[kk][q] = Dt<T>::pack(s[8 * kk + 2 * q], s[8 * kk + 2 * q + 1]);
    };
    auto rescale = [&](const float(&alpha)[2]) {
#pragma unroll
        for (int r = 0; r < 2; ++r)
            if (!__all_sync(0xffffffffu, alpha[r] == 1.f)) {
#pragma unroll
                for (int q = 0; q < D / 8; ++q) {
                    acc_o[4 * q + 2 * r] *= alpha[r];
                    acc_o[4 * q + 2 * r + 1] *= alpha[r];
                }
            }
    };
    /* O += P V of key tile j, issued (the caller fenced since O last changed) */
    auto issue_pv = [&](const uint32_t(&pf)[kN / 16][4], int j) {
        mbar_wait(&v_full[j % kStages], phase(j));
#pragma unroll
        for (int kk = 0; kk < kN / 16; ++kk)
            pv_step<T, D>(acc_o, pf[kk], v_addr(j) + (uint32_t)(kk * 2 * pa_wg::kGroupBytes),
                          (uint32_t)kN * 128);
        pa_wg::commit();
    };
    auto release = [&](int j) { /* this warp is done with key tile j's buffers */
                                __syncwarp();
                                if (lane == 0) pa_wg::mbar_arrive(&empty[j % kStages]);
    };

    for (int j = 0; j < n_tiles; ++j) {
        float s[kN / 2], alpha[2];
        uint32_t pf[kN / 16][4];
        issue_s(s, j);
        pa_wg::wait<0>();
        softmax(s, j, pf, alpha);
        if (j > 0) rescale(alpha);
        pa_wg::fence();
        issue_pv(pf, j);
        pa_wg::wait<0>();
        release(j);
    }

    float row_l[2], inv[2]; /* the rows' sums (over their 4 threads) */
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        row_l[r] = run_l[r];
        row_l[r] += __shfl_xor_sync(0xffffffffu, row_l[r], 1);
        row_l[r] += __shfl_xor_sync(0xffffffffu, row_l[r], 2);
        inv[r] = pa_gpu_row_inv(row_l[r], vis[r] > 0);
        const int row = crow0 + 16 * warp + g + 8 * r;
        if (t4 == 0 && a.lse && row < a.seq_q)
            a.lse[((int64_t)batch * a.heads_q + head) * a.seq_q + row] =
                pa_gpu_row_lse((run_m[r] + log2f(row_l[r])) * kLn2, row_l[r], vis[r] > 0);
    }
    /* O / l, staged in this consumer's Q tile (its products are done) one 64-column block
     * at a time, each stored by TMA (a warp's 16 rows) as soon as it is staged */
#pragma unroll
    for (int cb = 0; cb < kChunks; ++cb) {
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
            for (int q = 8 * cb; q < 8 * cb + 8; ++q) /* columns 8q + 2 t4, + 1 */
                *reinterpret_cast<uint32_t *>(
                    sq + pa_wg::chunk_offset(kRowsWg, 16 * warp + g + 8 * r, q) + 4 * t4) =
                    Dt<T>::pack(acc_o[4 * q + 2 * r] * inv[r], acc_o[4 * q + 2 * r + 1] * inv[r]);
        pa_wg::fence_async_shared(); /* the staged block is visible to the TMA store */
        __syncwarp();
        if (lane == 0)
            pa_wg::tma_store_4d(&maps.o, sq + cb * kRowsWg * 128 + 16 * warp * 128, 64 * cb,
                                crow0 + 16 * warp, head, batch);
    }
    if (lane == 0) pa_wg::tma_store_wait(); /* the staging smem is read before the block exits */
#else
    (void)a;
    __trap(); /* launched on sm_90 only, where the sm_90a image runs */
#endif
}

template <int D, typename T>
cudaError_t launch(const pa_gpu_args &a, cudaStream_t stream)
{
    auto kernel = flash_fwd_hopper_kernel<D, T>;
    constexpr size_t smem = Layout<D>::kSmem;
    static unsigned long long attr_done = 0;
    cudaError_t e = smem_attr_once(kernel, smem, attr_done);
    if (e != cudaSuccess) return e;
    TileMaps maps;
    const int kn = Traits<D>::kN;
    if ((e = pa_tma::make_map(&maps.q, a.q, a.dtype, D, a.seq_q, a.heads_q, a.batch, a.q_stride,
                              kRowsWg)) != cudaSuccess ||
        (e = pa_tma::make_map(&maps.k, a.k, a.dtype, D, a.seq_kv, a.heads_kv, a.batch, a.k_stride,
                              kn)) != cudaSuccess ||
        (e = pa_tma::make_map(&maps.v, a.v, a.dtype, D, a.seq_kv, a.heads_kv, a.batch, a.v_stride,
                              kn)) != cudaSuccess ||
        (e = pa_tma::make_map(&maps.o, a.o, a.dtype, D, a.seq_q, a.heads_q, a.batch, a.o_stride,
                              16)) != cudaSuccess)
        return e;
    const long long blocks = (long long)((a.seq_q + kM - 1) / kM) * a.heads_q * a.batch;
    if (blocks == 0) return cudaSuccess;
    kernel<<<(unsigned)blocks, kThreads, smem, stream>>>(a, maps);
    return cudaGetLastError();
}

template <typename T>
cudaError_t dispatch(const pa_gpu_args &a, cudaStream_t stream)
{
#define PA_CASE(d, n, st)                                                                          \
    case d: return launch<d, T>(a, stream);
    switch (a.head_dim) {
        PA_FLASH_HOPPER_TABLE(PA_CASE)
    default: return cudaErrorInvalidValue;
    }
#undef PA_CASE
}

} // namespace

extern "C" int pa_cuda_flash_hopper_has_head_dim(int head_dim)
{
#define PA_CASE(d, n, st) case d:
    switch (head_dim) {
        PA_FLASH_HOPPER_TABLE(PA_CASE) return 1;
    default: return 0;
    }
#undef PA_CASE
}

extern "C" size_t pa_cuda_flash_hopper_smem(int head_dim)
{
#define PA_CASE(d, n, st)                                                                          \
    case d: return Layout<d>::kSmem;
    switch (head_dim) {
        PA_FLASH_HOPPER_TABLE(PA_CASE)
    default: return 0;
    }
#undef PA_CASE
}

extern "C" int pa_cuda_flash_hopper(const pa_gpu_args *a, void *stream)
{
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (a->dtype == 1) return (int)dispatch<__half>(*a, s);
    if (a->dtype == 2) return (int)dispatch<__nv_bfloat16>(*a, s);
    return (int)cudaErrorInvalidValue;
}
