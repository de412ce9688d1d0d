/*
 * The flash backward on Hopper's warpgroup MMA (sm_90a; f16/bf16, head dims 64 and 128,
 * dense layouts, no mask or a causal one in either alignment, GQA).  Opt-in until it has run
 * on a GPU (cuda.flash_bwd=wgmma); the tensor-core FA2 kernels (flash_tc_bwd.cu) stay the
 * default.
 *
 * Three kernels, no atomics (so it is deterministic too):
 *   1. prep (flash_tc_bwd.cu's, pa_cuda_flash_bwd_prep): delta = rowsum(dO * O) and lse2 =
 *      LSE * log2(e) into the workspace, rows padded to whole 64-query tiles (padding and
 *      fully masked rows: lse2 = +inf, so P = 0 there without a branch).
 *   2. dK/dV: a block owns 128 keys of a KV head; a TMA producer warpgroup streams the query
 *      tiles (64 queries: Q, dO, lse2 and delta) of every query head of the GQA group
 *      through a two-stage ring; two consumer warpgroups own 64 keys each and per tile form,
 *      with keys as the rows,
 *        S^T = K Q^T, dP^T = V dO^T                 (wgmma, both operands in shared memory)
 *        P^T = exp2(S^T scale log2(e) - lse2), dS^T = P^T (dP^T - delta)
 *        dV += P^T dO, dK += dS^T Q                  (wgmma, P^T and dS^T from registers)
 *      and store dK (times the scale) and dV at the end.
 *   3. dQ: a block owns 128 queries (64 a consumer) and walks the 64-key tiles they see,
 *      recomputing S, dP, P and dS as in 2, and dQ += dS K; dQ times the scale at the end.
 * Recomputing S and dP for dQ costs 7 products where FlashAttention-3 has 5 (its dQ goes
 * through f32 atomics); in exchange each kernel keeps its accumulators in registers:
 * dK/dV 2 x 64 + S^T, dP^T 2 x 32 a thread at head dim 128, dQ 64 + 2 x 32.
 *
 * Layouts: every tile is 64 rows in the 128-byte-swizzled blocks of wgmma_sm90.cuh (one
 * block per 64 columns).  K-major operands (the rows of K, V, Q and dO against the head
 * dim) as in the forward's Q K^T; dO and Q as the B operand of dV and dK, and K of dQ, are
 * read N-major (transposed) as the forward reads V in P V.
 */
#include "flash_hopper_bwd.h"
#include "flash_tc_bwd.h"

#include "gpu_variants.h"
#include "tma_map.cuh"
#include "wgmma_sm90.cuh"

namespace
{

using namespace pa_tc;
using pa_tma::TileMaps;

constexpr int kRows = 64; /* rows of every tile: a consumer's keys or queries, a query tile */
constexpr int kConsumers = 2;
constexpr int kThreads = 128 * (kConsumers + 1);
constexpr int kStages = 2;
constexpr int kProducerRegs = 24, kConsumerRegs = 240;

uint64_t round_up(uint64_t x, uint64_t to) { return (x + to - 1) / to * to; }

/* dK/dV's shared memory: the consumers' K rows and V rows, kStages (Q, dO) query tiles, then
 * kStages (lse2, delta) rows of 64 floats, then the mbarriers (kv_full, q_full[kStages],
 * empty[kStages]). */
template <int D>
struct KvLayout {
    static constexpr uint32_t kTile = kRows * D * 2;
    static constexpr uint32_t kK = 0, kV = kConsumers * kTile, kQ = 2 * kConsumers * kTile;
    static constexpr uint32_t kStats = kQ + kStages * 2 * kTile;
    static constexpr uint32_t kBars = kStats + kStages * 2 * kRows * 4;
    static constexpr size_t kSmem = 1024 + kBars + 8 * (1 + 2 * kStages);
    static_assert(kTile % 1024 == 0, "swizzled tiles stay aligned");
};

/* dQ's shared memory: the consumers' Q rows and dO rows, kStages (K, V) key tiles, then the
 * mbarriers (q_full, kv_full[kStages], empty[kStages]). */
template <int D>
struct QLayout {
    static constexpr uint32_t kTile = kRows * D * 2;
    static constexpr uint32_t kQ = 0, kDO = kConsumers * kTile, kK = 2 * kConsumers * kTile;
    static constexpr uint32_t kBars = kK + kStages * 2 * kTile;
    static constexpr size_t kSmem = 1024 + kBars + 8 * (1 + 2 * kStages);
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* acc (+)= A (64 x 16 per step, registers: the 64 x 64 products' fragments) * B (64 rows of a
 * tile at b_addr read N-major, D columns): dV += P^T dO, dK += dS^T Q, dQ += dS K. */
template <typename T, int D>
__device__ __forceinline__ void rs_tile(float (&acc)[D / 2], const uint32_t (&f)[4][4],
                                        uint32_t b_addr)
{
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
        pa_wg::rs_m64nk16<T, D>(
            acc, f[kk],
            pa_wg::desc(b_addr + kk * 2 * pa_wg::kGroupBytes, kRows * 128, pa_wg::kGroupBytes), 1);
}
/* s = A (64 rows at a_addr) * B (64 rows at b_addr)^T over the head dim, both K-major, issued
 * (the first step overwrites s: no plain instruction defines it before the products). */
template <typename T, int D>
__device__ __forceinline__ void ss_tile(float (&s)[32], uint32_t a_addr, uint32_t b_addr)
{
#pragma unroll
    for (int ch = 0; ch < D / 64; ++ch)
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
            pa_wg::ss_m64nk16<T, 64>(
                s, pa_wg::desc(a_addr + ch * kRows * 128 + kk * 32, 16, pa_wg::kGroupBytes),
                pa_wg::desc(b_addr + ch * kRows * 128 + kk * 32, 16, pa_wg::kGroupBytes),
                ch + kk > 0);
}
/* The accumulator layout of a 64 x 64 product as A fragments of the next (as P in the
 * forward's P V). */
template <typename T>
__device__ __forceinline__ void to_fragments(const float (&x)[32], uint32_t (&f)[4][4])
{
#pragma unroll
    for (int kk = 0; kk < 4; ++kk)
#pragma unroll
        for (int q = 0; q < 4; ++q)
            f[kk][q] = Dt<T>::pack(x[8 * kk + 2 * q], x[8 * kk + 2 * q + 1]);
}
/* Both kernels' shared memory: its 1024-byte aligned start (the swizzled tiles') and, at
 * `bars` bytes from it, the mbarriers: one for the block's fixed tiles (`once`), kStages
 * `full` (one TMA arrival each) and kStages `empty` (every consumer warp), initialised
 * before the block goes on. */
struct Barriers {
    unsigned char *base;
    uint64_t *once, *full, *empty;
};
__device__ __forceinline__ Barriers init_barriers(unsigned char *smem, uint32_t bars)
{
    Barriers b;
    b.base = smem + ((1024u - (smem_addr(smem) & 1023u)) & 1023u);
    b.once = reinterpret_cast<uint64_t *>(b.base + bars);
    b.full = b.once + 1, b.empty = b.full + kStages;
    if (threadIdx.x == 0) {
        pa_wg::bar_init_count(b.once, 1);
        for (int s = 0; s < kStages; ++s) {
            pa_wg::bar_init_count(&b.full[s], 1);
            pa_wg::bar_init_count(&b.empty[s], kConsumers * 4);
        }
    }
    __syncthreads();
    return b;
}

/* 64-row tile loads: `chunks` 64-column boxes of rows [row0, row0 + 64) at dst. */
__device__ __forceinline__ void load_rows64(unsigned char *dst, const CUtensorMap *map, int chunks,
                                            int row0, int head, int batch, uint64_t *bar)
{
    for (int ch = 0; ch < chunks; ++ch)
        pa_wg::tma_load_4d(dst + ch * kRows * 128, map, 64 * ch, row0, head, batch, bar);
}
/* Row r's two values at columns 8q + 2 t4 of a D-column accumulator, times f, stored in T. */
template <typename T, int D>
__device__ __forceinline__ void store_row(T *row, const float (&acc)[D / 2], int r, int t4, float f)
{
#pragma unroll
    for (int q = 0; q < D / 8; ++q)
        *reinterpret_cast<uint32_t *>(row + 8 * q + 2 * t4) =
            Dt<T>::pack(acc[4 * q + 2 * r] * f, acc[4 * q + 2 * r + 1] * f);
}
#endif

/* dK/dV: block (key tile of 2 x 64 keys, KV head, batch). */
template <int D, typename T>
__global__ void __launch_bounds__(kThreads, 1)
    hopper_bwd_dkdv_kernel(pa_gpu_bwd_args ba, const float *delta, const float *lse2, int seq_pad,
                           const __grid_constant__ TileMaps maps)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using L = KvLayout<D>;
    const pa_gpu_args &a = ba.fwd;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const Barriers bars = init_barriers(smem_raw, L::kBars);
    unsigned char *base = bars.base;
    uint64_t *kv_full = bars.once, *q_full = bars.full, *empty = bars.empty;
    const int key0 = blockIdx.x * kConsumers * kRows, head_kv = blockIdx.y, batch = blockIdx.z;
    const int group = a.heads_q / a.heads_kv;
    /* the query tiles that see a key of this block: causal, queries whose diagonal reaches
     * key0 (the diagonal of query q is q, or q + seq_kv - seq_q bottom-right) */
    const int shift = a.mask == 1 ? 0 : a.seq_kv - a.seq_q;
    const int q_first = a.mask ? max(0, key0 - shift) : 0;
    const int q_tiles = (a.seq_q + kRows - 1) / kRows;
    const int per_head = q_first < a.seq_q ? q_tiles - q_first / kRows : 0;
    const int n_iters = per_head * group;
    const int tid = threadIdx.x, wg = tid / 128;
    /* iteration i: query head head_kv * group + i / per_head, query tile i % per_head */
    auto head_of = [&](int i) { return head_kv * group + i / per_head; };
    auto q0_of = [&](int i) { return (q_first / kRows + i % per_head) * kRows; };

    if (wg == 0) { /* producer */
        pa_wg::regs_dec<kProducerRegs>();
        if (tid != 0) return;
        pa_wg::tma_prefetch(&maps.q);
        pa_wg::tma_prefetch(&maps.o);
        mbar_expect(kv_full, 2 * kConsumers * L::kTile);
        for (int c = 0; c < kConsumers; ++c) {
            load_rows64(base + L::kK + c * L::kTile, &maps.k, D / 64, key0 + kRows * c, head_kv,
                        batch, kv_full);
            load_rows64(base + L::kV + c * L::kTile, &maps.v, D / 64, key0 + kRows * c, head_kv,
                        batch, kv_full);
        }
        for (int i = 0; i < n_iters; ++i) {
            const int st = i % kStages, h = head_of(i), q0 = q0_of(i);
            if (i >= kStages) mbar_wait(&empty[st], ((i / kStages) & 1) ^ 1); /* released */
            unsigned char *dq = base + L::kQ + st * 2 * L::kTile;
            float *stats = reinterpret_cast<float *>(base + L::kStats) + st * 2 * kRows;
            const int64_t row = ((int64_t)batch * a.heads_q + h) * seq_pad + q0;
            mbar_expect(&q_full[st], 2 * L::kTile + 2 * kRows * 4);
            load_rows64(dq, &maps.q, D / 64, q0, h, batch, &q_full[st]);
            load_rows64(dq + L::kTile, &maps.o, D / 64, q0, h, batch, &q_full[st]); /* dO */
            pa_wg::bulk_load(stats, lse2 + row, kRows * 4, &q_full[st]);
            pa_wg::bulk_load(stats + kRows, delta + row, kRows * 4, &q_full[st]);
        }
        return;
    }

    /* consumer c: keys [kc0, kc0 + 64); this thread's rows (keys) 16 warp + g and + 8, its
     * columns (queries) 8q + 2 t4 (+ 1) of each tile */
    pa_wg::regs_inc<kConsumerRegs>();
    const int c = wg - 1, t = tid % 128, warp = t / 32, lane = t % 32, g = lane / 4, t4 = lane % 4;
    const int kc0 = key0 + kRows * c;
    const uint32_t k_addr = smem_addr(base + L::kK + c * L::kTile);
    const uint32_t v_addr = smem_addr(base + L::kV + c * L::kTile);
    const float sl2 = a.scale * kLog2e;
    float dv[D / 2], dk[D / 2];
#pragma unroll
    for (int e = 0; e < D / 2; ++e)
        dv[e] = dk[e] = 0.f;
    mbar_wait(kv_full, 0);
    for (int i = 0; i < n_iters; ++i) {
        const int st = i % kStages, q0 = q0_of(i);
        mbar_wait(&q_full[st], (uint32_t)((i / kStages) & 1));
        const uint32_t q_addr = smem_addr(base + L::kQ + st * 2 * L::kTile);
        const uint32_t do_addr = q_addr + L::kTile;
        const float *s_lse2 = reinterpret_cast<const float *>(base + L::kStats) + st * 2 * kRows;
        const float *s_delta = s_lse2 + kRows;
        float s[32], dp[32];
        pa_wg::fence();
        ss_tile<T, D>(s, k_addr, q_addr);   /* S^T = K Q^T */
        ss_tile<T, D>(dp, v_addr, do_addr); /* dP^T = V dO^T */
        pa_wg::commit();
        pa_wg::wait<0>();
        /* causal: keys past a query's diagonal see P = 0 (only where the tile crosses it) */
        const bool crosses = a.mask != 0 && kc0 + kRows - 1 > q0 + shift;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int key = kc0 + 16 * warp + g + 8 * r;
#pragma unroll
            for (int q = 0; q < 8; ++q)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int col = 8 * q + 2 * t4 + e, x = 4 * q + 2 * r + e;
                    float p = pa_wg::exp2_approx(s[x] * sl2 - s_lse2[col]);
                    if (crosses && key > q0 + col + shift) p = 0.f;
                    dp[x] = p * (dp[x] - s_delta[col]); /* dS^T */
                    s[x] = p;                           /* P^T */
                }
        }
        uint32_t pf[4][4], dsf[4][4];
        to_fragments<T>(s, pf);
        to_fragments<T>(dp, dsf);
        pa_wg::fence();
        rs_tile<T, D>(dv, pf, do_addr); /* dV += P^T dO */
        rs_tile<T, D>(dk, dsf, q_addr); /* dK += dS^T Q */
        pa_wg::commit();
        pa_wg::wait<0>();
        __syncwarp();
        if (lane == 0) pa_wg::mbar_arrive(&empty[st]); /* this warp is done with the tile */
    }
    /* dK (times the scale) and dV of this thread's keys, in the inputs' dtype */
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int key = kc0 + 16 * warp + g + 8 * r;
        if (key >= a.seq_kv) continue;
        T *dk_row = static_cast<T *>(ba.dk) + batch * a.k_stride[0] + head_kv * a.k_stride[1] +
                    (int64_t)key * a.k_stride[2];
        T *dv_row = static_cast<T *>(ba.dv) + batch * a.v_stride[0] + head_kv * a.v_stride[1] +
                    (int64_t)key * a.v_stride[2];
        store_row<T, D>(dk_row, dk, r, t4, a.scale);
        store_row<T, D>(dv_row, dv, r, t4, 1.f);
    }
#else
    (void)ba, (void)delta, (void)lse2, (void)seq_pad, (void)maps;
    __trap(); /* launched on sm_90 only, where the sm_90a image runs */
#endif
}

/* dQ: block (query tile of 2 x 64 queries, query head, batch). */
template <int D, typename T>
__global__ void __launch_bounds__(kThreads, 1)
    hopper_bwd_dq_kernel(pa_gpu_bwd_args ba, const float *delta, const float *lse2, int seq_pad,
                         const __grid_constant__ TileMaps maps)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using L = QLayout<D>;
    const pa_gpu_args &a = ba.fwd;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const Barriers bars = init_barriers(smem_raw, L::kBars);
    unsigned char *base = bars.base;
    uint64_t *q_full = bars.once, *kv_full = bars.full, *empty = bars.empty;
    const int row0 = blockIdx.x * kConsumers * kRows, head = blockIdx.y, batch = blockIdx.z;
    const int head_kv = head / (a.heads_q / a.heads_kv);
    /* keys [0, key_end) meet a query of the block (causal: up to its last query's diagonal) */
    int key_end = a.seq_kv;
    if (a.mask) {
        int lo, hi;
        pa_gpu_visible_range(a, min(row0 + kConsumers * kRows, a.seq_q) - 1, lo, hi);
        key_end = hi;
    }
    const int n_tiles = (key_end + kRows - 1) / kRows;
    const int tid = threadIdx.x, wg = tid / 128;

    if (wg == 0) { /* producer */
        pa_wg::regs_dec<kProducerRegs>();
        if (tid != 0) return;
        pa_wg::tma_prefetch(&maps.k);
        pa_wg::tma_prefetch(&maps.v);
        mbar_expect(q_full, 2 * kConsumers * L::kTile);
        for (int c = 0; c < kConsumers; ++c) {
            load_rows64(base + L::kQ + c * L::kTile, &maps.q, D / 64, row0 + kRows * c, head, batch,
                        q_full);
            load_rows64(base + L::kDO + c * L::kTile, &maps.o, D / 64, row0 + kRows * c, head,
                        batch, q_full);
        }
        for (int j = 0; j < n_tiles; ++j) {
            const int st = j % kStages;
            if (j >= kStages) mbar_wait(&empty[st], ((j / kStages) & 1) ^ 1);
            unsigned char *dk = base + L::kK + st * 2 * L::kTile;
            mbar_expect(&kv_full[st], 2 * L::kTile);
            load_rows64(dk, &maps.k, D / 64, j * kRows, head_kv, batch, &kv_full[st]);
            load_rows64(dk + L::kTile, &maps.v, D / 64, j * kRows, head_kv, batch, &kv_full[st]);
        }
        return;
    }

    /* consumer c: queries [qc0, qc0 + 64); this thread's rows 16 warp + g and + 8, which see
     * keys below vhi, with their lse2 and delta */
    pa_wg::regs_inc<kConsumerRegs>();
    const int c = wg - 1, t = tid % 128, warp = t / 32, lane = t % 32, g = lane / 4, t4 = lane % 4;
    const int qc0 = row0 + kRows * c;
    const uint32_t q_addr = smem_addr(base + L::kQ + c * L::kTile);
    const uint32_t do_addr = smem_addr(base + L::kDO + c * L::kTile);
    const float sl2 = a.scale * kLog2e;
    int vhi[2];
    float row_lse2[2], row_delta[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = qc0 + 16 * warp + g + 8 * r;
        int lo;
        pa_gpu_visible_range(a, min(row, a.seq_q - 1), lo, vhi[r]);
        const int64_t idx = ((int64_t)batch * a.heads_q + head) * seq_pad + row;
        row_lse2[r] = row < a.seq_q ? lse2[idx] : INFINITY;
        row_delta[r] = row < a.seq_q ? delta[idx] : 0.f;
    }
    float dq[D / 2];
#pragma unroll
    for (int e = 0; e < D / 2; ++e)
        dq[e] = 0.f;
    mbar_wait(q_full, 0);
    for (int j = 0; j < n_tiles; ++j) {
        const int st = j % kStages, k0 = j * kRows;
        mbar_wait(&kv_full[st], (uint32_t)((j / kStages) & 1));
        const uint32_t k_addr = smem_addr(base + L::kK + st * 2 * L::kTile);
        const uint32_t v_addr = k_addr + L::kTile;
        float s[32], dp[32];
        pa_wg::fence();
        ss_tile<T, D>(s, q_addr, k_addr);   /* S = Q K^T */
        ss_tile<T, D>(dp, do_addr, v_addr); /* dP = dO V^T */
        pa_wg::commit();
        pa_wg::wait<0>();
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
            for (int q = 0; q < 8; ++q)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int key = k0 + 8 * q + 2 * t4 + e, x = 4 * q + 2 * r + e;
                    /* keys past the row's visible ones (causal, or past seq_kv: TMA's zero
                     * rows) see P = 0 */
                    const float p =
                        key < vhi[r] ? pa_wg::exp2_approx(s[x] * sl2 - row_lse2[r]) : 0.f;
                    dp[x] = p * (dp[x] - row_delta[r]); /* dS */
                }
        uint32_t dsf[4][4];
        to_fragments<T>(dp, dsf);
        pa_wg::fence();
        rs_tile<T, D>(dq, dsf, k_addr); /* dQ += dS K */
        pa_wg::commit();
        pa_wg::wait<0>();
        __syncwarp();
        if (lane == 0) pa_wg::mbar_arrive(&empty[st]);
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = qc0 + 16 * warp + g + 8 * r;
        if (row >= a.seq_q) continue;
        T *dq_row = static_cast<T *>(ba.dq) + batch * a.q_stride[0] + head * a.q_stride[1] +
                    (int64_t)row * a.q_stride[2];
        store_row<T, D>(dq_row, dq, r, t4, a.scale);
    }
#else
    (void)ba, (void)delta, (void)lse2, (void)seq_pad, (void)maps;
    __trap();
#endif
}

/* The workspace: delta, then lse2, each [batch, heads_q, seq_q rounded up to 64] f32. */
int padded_seq(const pa_gpu_args &a) { return (int)round_up((uint64_t)a.seq_q, kRows); }
uint64_t stats_bytes(const pa_gpu_args &a)
{
    return round_up((uint64_t)a.batch * a.heads_q * padded_seq(a) * 4, 256);
}

template <int D, typename T>
cudaError_t launch(const pa_gpu_bwd_args &ba, void *workspace, cudaStream_t stream)
{
    const pa_gpu_args &a = ba.fwd;
    const int seq_pad = padded_seq(a);
    float *delta = static_cast<float *>(workspace);
    float *lse2 = reinterpret_cast<float *>(static_cast<char *>(workspace) + stats_bytes(a));
    const uint64_t rows = (uint64_t)a.batch * a.heads_q * seq_pad;
    if (rows == 0 || a.seq_kv == 0) return cudaErrorInvalidValue; /* (the core never asks) */
    cudaError_t e = (cudaError_t)pa_cuda_flash_bwd_prep(&ba, seq_pad, delta, lse2, stream);
    if (e != cudaSuccess) return e;
    TileMaps maps; /* o: dO (o's strides) */
    if ((e = pa_tma::make_map(&maps.q, a.q, a.dtype, D, a.seq_q, a.heads_q, a.batch, a.q_stride,
                              kRows)) != cudaSuccess ||
        (e = pa_tma::make_map(&maps.k, a.k, a.dtype, D, a.seq_kv, a.heads_kv, a.batch, a.k_stride,
                              kRows)) != cudaSuccess ||
        (e = pa_tma::make_map(&maps.v, a.v, a.dtype, D, a.seq_kv, a.heads_kv, a.batch, a.v_stride,
                              kRows)) != cudaSuccess ||
        (e = pa_tma::make_map(&maps.o, ba.d_o, a.dtype, D, a.seq_q, a.heads_q, a.batch, a.o_stride,
                              kRows)) != cudaSuccess)
        return e;
    static unsigned long long kv_attr = 0, q_attr = 0;
    auto kv_kernel = hopper_bwd_dkdv_kernel<D, T>;
    auto q_kernel = hopper_bwd_dq_kernel<D, T>;
    if ((e = smem_attr_once(kv_kernel, KvLayout<D>::kSmem, kv_attr)) != cudaSuccess ||
        (e = smem_attr_once(q_kernel, QLayout<D>::kSmem, q_attr)) != cudaSuccess)
        return e;
    const int pair = kConsumers * kRows;
    kv_kernel<<<dim3((a.seq_kv + pair - 1) / pair, a.heads_kv, a.batch), kThreads,
                KvLayout<D>::kSmem, stream>>>(ba, delta, lse2, seq_pad, maps);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    q_kernel<<<dim3((a.seq_q + pair - 1) / pair, a.heads_q, a.batch), kThreads, QLayout<D>::kSmem,
               stream>>>(ba, delta, lse2, seq_pad, maps);
    return cudaGetLastError();
}

template <typename T>
cudaError_t dispatch(const pa_gpu_bwd_args &ba, void *workspace, cudaStream_t stream)
{
    switch (ba.fwd.head_dim) {
    case 64: return launch<64, T>(ba, workspace, stream);
    case 128: return launch<128, T>(ba, workspace, stream);
    default: return cudaErrorInvalidValue;
    }
}

} // namespace

extern "C" int pa_cuda_flash_hopper_bwd_has_head_dim(int head_dim)
{
    return head_dim == 64 || head_dim == 128;
}

extern "C" size_t pa_cuda_flash_hopper_bwd_smem(int head_dim)
{
    return head_dim == 64    ? (KvLayout<64>::kSmem > QLayout<64>::kSmem ? KvLayout<64>::kSmem
                                                                         : QLayout<64>::kSmem)
           : head_dim == 128 ? (KvLayout<128>::kSmem > QLayout<128>::kSmem ? KvLayout<128>::kSmem
                                                                           : QLayout<128>::kSmem)
                             : 0;
}

extern "C" uint64_t pa_cuda_flash_hopper_bwd_workspace(const pa_gpu_bwd_args *a)
{
    return 2 * stats_bytes(a->fwd);
}

extern "C" int pa_cuda_flash_hopper_bwd(const pa_gpu_bwd_args *a, void *workspace, void *stream)
{
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (a->fwd.dtype == 1) return (int)dispatch<__half>(*a, workspace, s);
    if (a->fwd.dtype == 2) return (int)dispatch<__nv_bfloat16>(*a, workspace, s);
    return (int)cudaErrorInvalidValue;
}
