/*
 * flash_fwd_hopper_kernel: the flash forward for the head dims models use (64, 96, 128,
 * 192, 256; f16/bf16) on Hopper's warpgroup MMA, warp-specialized as FlashAttention-3 is.
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
 * Masks: none and causal (both alignments), a sliding window (key tiles outside the query
 * tile's band are never loaded), softcap, ALiBi, sinks and an additive bias tensor (gpu_variants.h; each VAR
 * class its own instance, so plain problems pay for none).  Varlen Q/K/V and dense KV caches: a block
 * reads its sequence's rows at per-sequence TMA coordinates (rows past the sequence are
 * masked keys or unstored queries) and stores packed O rows with row-guarded plain stores;
 * paged KV caches load 16 rows at a time from the block the table names.
 * O(N) memory: nothing but O and the LSE is written.
 *
 * Measured (docs/performance.md): 566 TFLOP/s at head dim 128, N = 16k on the H100 (75% of
 * its bf16 GEMM ceiling), 0.58-0.81x cuDNN.  FlashAttention-3's intra-warpgroup overlap
 * (tile j + 1's Q K^T issued before tile j's P V) first ran at 0.66-0.91x of this loop:
 * ptxas serialised the wgmmas (C7514, C7513) where plain instructions touched a product's
 * registers inside its pipeline stage.  The overlapped loop here (cuda.hopper_sched=
 * overlap, opt-in until it has run) compiles without that: S issued without zeroing, P in
 * two register sets, register fences around O's rescale.  On an H200: the score variants
 * 1.5-2.3x the mma.sync kernel, varlen prefill at 94% of the dense forward; the consumers
 * taking turns (ping-pong) 1-6% slower at head dim 128 and 2-4% faster at 64, so they run
 * independently by default.
 */
#include "flash_hopper.h"
#include "gpu_port.h" /* pa_gpu_load_any (gpu_variants.h) loads the bias */
#include "gpu_serving.h"
#include "gpu_variants.h"
#include "tma_map.cuh"
#include "wgmma_sm90.cuh"

namespace
{

using namespace pa_tc;
using pa_tma::TileMaps;

/* The head dims and their tile shapes: the one table that generates the instances,
 * "supported?" and the shared-memory size.  X(head_dim, keys of a key tile, stages).  Head
 * dim 96 runs as 128 columns in shared memory and in P V (TMA fills columns 96-127 with
 * zeros; wgmma's 128-byte-swizzled V operand takes widths in 64-column blocks), its Q K^T
 * over 96 only. */
#define PA_FLASH_HOPPER_TABLE(X)                                                                   \
    X(64, 128, 2) X(96, 128, 2) X(128, 128, 2) X(192, 64, 2) X(256, 64, 2)

template <int D>
struct Traits;
#define PA_TRAITS(d, n, st)                                                                        \
    template <>                                                                                    \
    struct Traits<d> {                                                                             \
        static constexpr int kN = n, kStages = st;                                                 \
    };
PA_FLASH_HOPPER_TABLE(PA_TRAITS)
#undef PA_TRAITS

constexpr int kRowsWg = 64;   /* query rows of a consumer warpgroup (the wgmma M) */
constexpr int kPageRows = 16; /* rows of a paged K/V load (block sizes are multiples of 16) */
constexpr int kConsumers = 2;
constexpr int kM = kRowsWg * kConsumers;
constexpr int kThreads = 128 * (kConsumers + 1);
constexpr int kSectionBlocks = 264; /* ~2 waves of an H100's 132 SMs (one block an SM) */
constexpr int kProducerRegs = 24, kConsumerRegs = 240; /* 128 x 24 + 256 x 240 <= 64K */
static_assert(kM == PA_HOPPER_TILE_M, "the header's tile");

/* The inputs' element: 16-bit (f16, bf16), or FP8 e4m3 (E4M3In, one byte; O is then f16
 * or bf16). */
struct E4M3In {};
template <typename T>
struct Elem {
    static constexpr int kBytes = 2;
};
template <>
struct Elem<E4M3In> {
    static constexpr int kBytes = 1;
};

/* Shared memory: the consumers' Q tiles, kStages K tiles, kStages V tiles, with a bias
 * (BIAS) two 16-bit bias tiles a consumer, then the mbarriers (q_full, k_full[kStages],
 * v_full[kStages], empty[kStages]).  EB: bytes of an input element; kCols: the columns of a
 * 128-byte swizzle block; kDp: the head dim as stored (whole blocks).  With e4m3 inputs a V
 * tile is V^T (kDp rows of kN keys). */
template <int D, bool BIAS = false, int EB = 2>
struct Layout {
    static constexpr int kN = Traits<D>::kN, kStages = Traits<D>::kStages, kCols = 128 / EB;
    static constexpr int kDp = (D + kCols - 1) / kCols * kCols;
    static constexpr uint32_t kQBytes = kRowsWg * kDp * EB, kKVBytes = kN * kDp * EB;
    static constexpr uint32_t kK = kConsumers * kQBytes, kV = kK + kStages * kKVBytes;
    static constexpr uint32_t kBiasTile = kRowsWg * kN * 2, kBias = kV + kStages * kKVBytes;
    static constexpr uint32_t kBars = kBias + (BIAS ? kConsumers * 2 * kBiasTile : 0);
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

/* VAR, as in flash_tc_tile.cuh: kVarNone plain; kVarMask window and sinks (masks and the
 * softmax's start); kVarScore softcap and ALiBi too (every score transformed first);
 * kVarScorePoly the same with half the softmax's exponentials on the FMA pipe (exp2_poly,
 * PA_HOPPER_EXP2_POLY: opt-in, 10% slower on the H100);
 * kVarBias an additive bias tensor too, 16-bit with 16-byte aligned rows, streamed through
 * shared memory (PA_HOPPER_BIAS_SMEM, the default: 2.5-3.2x kVarBiasRegs); kVarBiasRegs any
 * bias, its values loaded into registers (a -inf bias hides the pair). */
enum {
    kVarNone = 0,
    kVarMask = 1,
    kVarScore = 2,
    kVarBias = 3,
    kVarBiasRegs = 4,
    kVarScorePoly = 5
};
/* How the two consumer warpgroups run their key-tile loops (cuda.hopper_sched) */
enum { kSchedSerial = 0, kSchedPingpong = 1, kSchedOverlap = 2 };

/* T: the inputs' element type (E4M3In: FP8, dense layouts only, V read as V^T from the
 * workspace); TO: O's. */
template <int D, typename T, int VAR, int SCHED, typename TO = T>
__global__ void __launch_bounds__(kThreads, 1)
    flash_fwd_hopper_kernel(pa_gpu_args a, const __grid_constant__ TileMaps maps)
{
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int EB = Elem<T>::kBytes;
    constexpr bool kFp8 = EB == 1;
    using L = Layout<D, VAR == kVarBias, EB>;
    constexpr bool kBias = VAR == kVarBias || VAR == kVarBiasRegs, kBiasSmem = VAR == kVarBias;
    constexpr bool kScore = VAR == kVarScore || VAR == kVarScorePoly || kBias;
    constexpr bool kPolyExp = VAR == kVarScorePoly;
    /* DP: the head dim as stored and multiplied by V (D rounded up to whole 128-byte blocks
     * of kCols columns); a product's K step is 32 bytes, kKCols columns; P's A fragments
     * take kPSteps of them a key tile */
    constexpr int kN = L::kN, kStages = L::kStages, DP = L::kDp, kCols = L::kCols;
    constexpr int kChunks = DP / kCols, kKCols = 32 / EB, kPSteps = kN / kKCols;
    static_assert(!kFp8 || (kN == 128 && DP == 128 && !kBias), "e4m3: head dim 128, no bias");
    /* e4m3 P: exp2 shifted by kPShift (P in [0, 256], e4m3's normal range, not its
     * subnormals), and the max kept exact (a lazy rescale's slack would let P pass e4m3's
     * 448) */
    constexpr float kPShift = kFp8 ? 8.f : 0.f, kSlack = kFp8 ? 0.f : kRescaleSlack;
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
    /* the sequence (dense: the batch entry; varlen: its packed rows) and a with its lengths */
    const pa_gpu_seq seq = pa_gpu_seq_of(a, batch);
    if (row0 >= seq.len_q) return; /* a varlen sequence shorter than the longest */
    const pa_gpu_args sa = pa_gpu_args_for_seq(a, seq);
    /* keys [key_begin, key_end) meet some row of the tile (a window moves both ends) */
    int key_begin, key_end, unused;
    pa_gpu_visible_range(sa, row0, key_begin, unused);
    pa_gpu_visible_range(sa, min(row0 + kM, seq.len_q) - 1, unused, key_end);
    const int t_begin = key_begin / kN;
    const int n_tiles = key_end > key_begin ? (key_end + kN - 1) / kN - t_begin : 0;
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

    if (wg == 0) { /* producer: packed (varlen) tensors are one batch entry of all rows */
        pa_wg::regs_dec<kProducerRegs>();
        if (tid != 0) return;
        const int q_batch = a.varlen_q ? 0 : batch;
        const int kv_batch = a.kv_layout == PA_GPU_KV_VARLEN ? 0 : batch;
        pa_wg::tma_prefetch(&maps.k);
        pa_wg::tma_prefetch(&maps.v);
        mbar_expect(q_full, kConsumers * L::kQBytes);
        for (int c = 0; c < kConsumers; ++c)
            for (int b = 0; b < kChunks; ++b)
                pa_wg::tma_load_4d(base + c * L::kQBytes + b * kRowsWg * 128, &maps.q, kCols * b,
                                   seq.q0 + row0 + kRowsWg * c, head, q_batch, q_full);
        const bool paged = a.kv_layout == PA_GPU_KV_PAGED;
        for (int j = 0; j < n_tiles; ++j) {
            const int st = j % kStages, key0 = seq.kv0 + (t_begin + j) * kN;
            if (j >= kStages) mbar_wait(&empty[st], ((j / kStages) & 1) ^ 1); /* released */
            unsigned char *dk = base + L::kK + st * L::kKVBytes;
            unsigned char *dv = base + L::kV + st * L::kKVBytes;
            mbar_expect(&k_full[st], L::kKVBytes);
            mbar_expect(&v_full[st], L::kKVBytes);
            if constexpr (kFp8) { /* dense; V^T: keys innermost, kDp rows of the head dim */
                pa_wg::tma_load_4d(dk, &maps.k, 0, key0, head_kv, kv_batch, &k_full[st]);
                pa_wg::tma_load_4d(dv, &maps.v, key0, 0, head_kv, kv_batch, &v_full[st]);
                continue;
            }
            if (!paged) {
                for (int b = 0; b < kChunks; ++b) {
                    pa_wg::tma_load_4d(dk + b * kN * 128, &maps.k, 64 * b, key0, head_kv, kv_batch,
                                       &k_full[st]);
                    pa_wg::tma_load_4d(dv + b * kN * 128, &maps.v, 64 * b, key0, head_kv, kv_batch,
                                       &v_full[st]);
                }
                continue;
            }
            /* paged: 16 rows at a time from the block the table names (block sizes are
             * multiples of 16, so 16 rows from a multiple of 16 lie in one block; pages
             * past the table and bad entries are clamped, their keys masked); the tile's
             * lookups are all made before its first copy, so their latencies overlap */
            int blk[kN / kPageRows];
#pragma unroll
            for (int p = 0; p < kN / kPageRows; ++p) {
                const int page = min((key0 + p * kPageRows) / a.kv_rows, a.max_blocks_per_seq - 1);
                blk[p] = a.block_table[(int64_t)batch * a.max_blocks_per_seq + page];
            }
#pragma unroll
            for (int r = 0; r < kN; r += kPageRows) {
                const int key = key0 + r, page = min(key / a.kv_rows, a.max_blocks_per_seq - 1);
                const int row = key - page * a.kv_rows;
                const int blk_r = pa_gpu_clampi(blk[r / kPageRows], 0, a.kv_count - 1);
                for (int b = 0; b < kChunks; ++b) {
                    pa_wg::tma_load_4d(dk + b * kN * 128 + r * 128, &maps.k, 64 * b, row, head_kv,
                                       blk_r, &k_full[st]);
                    pa_wg::tma_load_4d(dv + b * kN * 128 + r * 128, &maps.v, 64 * b, row, head_kv,
                                       blk_r, &v_full[st]);
                }
            }
        }
        return;
    }

    /* consumer c: rows [crow0, crow0 + 64); this thread's rows (the wgmma accumulator
     * layout) 16 * warp + g and + 8, which see keys [vlo, vhi) */
    pa_wg::regs_inc<kConsumerRegs>();
    const int c = wg - 1, t = tid % 128, warp = t / 32, lane = t % 32, g = lane / 4, t4 = lane % 4;
    const int crow0 = row0 + kRowsWg * c;
    int vlo[2], vhi[2];
    float dist0[2]; /* ALiBi: d(i) - (the lane's first key column), as a float */
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int row = crow0 + 16 * warp + g + 8 * r;
        pa_gpu_visible_range(sa, row, vlo[r], vhi[r]);
        dist0[r] = (float)(pa_gpu_diagonal(sa, row) - 2 * t4);
    }
    /* key tiles inside [mask_lo, mask_hi) are visible to every row of the consumer */
    int mask_lo, mask_hi, unused2;
    pa_gpu_visible_range(sa, crow0, unused2, mask_hi);
    pa_gpu_visible_range(sa, max(crow0, min(crow0 + kRowsWg, seq.len_q) - 1), mask_lo, unused2);
    /* plain scores go into the exp2 domain with one multiply (sl2); kVarScore: s ->
     * cap tanh(s scale / cap) - slope |d(i) - j|, times log2(e) (cap2, slope2) */
    const float sl2 = a.scale * kLog2e;
    const float cap2 = a.softcap * kLog2e, in_cap = a.softcap > 0.f ? a.scale / a.softcap : 0.f;
    const float slope2 = kScore ? pa_gpu_alibi_slope(a, batch, head) * kLog2e : 0.f;
    /* a bias: this thread's rows of the bias (rows past the sequence read its last), and
     * whether a row saw a key the bias leaves visible (all -inf: O = 0, LSE = -inf) */
    int64_t bias_row[2] = {0, 0};
    bool bias_vis[2] = {false, false};
    float bv[2][kN / 4];
    if constexpr (kBias)
#pragma unroll
        for (int r = 0; r < 2; ++r)
            bias_row[r] =
                batch * a.bias_stride[0] + head * a.bias_stride[1] +
                (int64_t)min(crow0 + 16 * warp + g + 8 * r, seq.len_q - 1) * a.bias_stride[2];
    /* kVarBiasRegs: keys in a row of the bias are contiguous and every row starts aligned:
     * a thread's two neighbouring keys in one load */
    const bool bias_pairs = VAR == kVarBiasRegs && a.bias_stride[3] == 1 &&
                            ((a.bias_stride[0] | a.bias_stride[1] | a.bias_stride[2]) & 1) == 0 &&
                            (reinterpret_cast<uintptr_t>(a.bias) & 7) == 0;
    /* kVarBias streams through shared memory: each consumer loads its 64 rows of key tile
     * j + 1 with cp.async while it works on tile j, into two buffers (pieces of 8 keys
     * XOR-swizzled by row, so a warp's reads hit 32 banks).  Loading the tile in use into
     * registers left each tile waiting on the memory's latency (90-99 TFLOP/s at head dim
     * 128, H200). */
    unsigned char *const bias_buf = base + L::kBias + c * 2 * L::kBiasTile;
    /* tile j's rows into buffer j & 1, one commit group (empty past the last tile) */
    auto bias_issue = [&](int j) {
        if constexpr (kBiasSmem) {
            if (j < n_tiles) {
                const int key0 = (t_begin + j) * kN;
                unsigned char *dst = bias_buf + (j & 1) * L::kBiasTile;
                const uint16_t *bias = static_cast<const uint16_t *>(a.bias);
                for (int i = t; i < kRowsWg * kN / 8; i += 128) {
                    const int rr = i / (kN / 8), piece = i % (kN / 8), key = key0 + 8 * piece;
                    const int64_t row = batch * a.bias_stride[0] + head * a.bias_stride[1] +
                                        (int64_t)min(crow0 + rr, seq.len_q - 1) * a.bias_stride[2];
                    const int n = max(0, min(8, seq.len_kv - key)); /* keys of the piece */
                    cp_async16_n(dst + rr * kN * 2 + 16 * (piece ^ (rr & 7)),
                                 bias + row + (n ? key : 0), 2 * n);
                }
            }
            cp_async_commit();
        }
    };
    /* this thread's pieces landed, then every thread's of this consumer */
    auto bias_ready = [&] {
        cp_async_wait<0>();
        pa_wg::named_sync(4 + c, 128);
    };
    /* the bias of key tile j into bv (before its scores are waited for: the loads run under
     * the product) */
    auto load_tile_bias = [&](int j) {
        if constexpr (VAR == kVarBiasRegs) {
            const int key0 = (t_begin + j) * kN;
#pragma unroll
            for (int r = 0; r < 2; ++r)
#pragma unroll
                for (int q = 0; q < kN / 8; ++q) {
                    const int key = key0 + 8 * q + 2 * t4;
                    if (bias_pairs && key + 1 < seq.len_kv) {
                        pa_gpu_load_pair(a.bias, bias_row[r] + key, a.bias_dtype, bv[r][2 * q],
                                         bv[r][2 * q + 1]);
                        continue;
                    }
#pragma unroll
                    for (int e = 0; e < 2; ++e)
                        bv[r][2 * q + e] =
                            key + e < seq.len_kv
                                ? pa_gpu_load_any(a.bias,
                                                  bias_row[r] + (key + e) * a.bias_stride[3],
                                                  a.bias_dtype)
                                : 0.f;
                }
        }
    };
    /* a sink starts each row's max and sum (exp2(sink - sink) = 1, held by the row's
     * first lane) */
    const float sink2 = VAR != kVarNone ? pa_gpu_sink(a, head) * kLog2e : -INFINITY;
    float run_m[2] = {sink2, sink2};
    const float l0 = (t4 == 0 && sink2 != -INFINITY) ? exp2f(kPShift) : 0.f;
    float run_l[2] = {l0, l0};
    float acc_o[DP / 2];
#pragma unroll
    for (int e = 0; e < DP / 2; ++e)
        acc_o[e] = 0.f;
    unsigned char *sq = base + c * L::kQBytes;
    const uint32_t q_addr = smem_addr(sq);
    mbar_wait(q_full, 0);

    auto k_addr = [&](int j) { return smem_addr(base + L::kK + (j % kStages) * L::kKVBytes); };
    auto v_addr = [&](int j) { return smem_addr(base + L::kV + (j % kStages) * L::kKVBytes); };
    auto phase = [&](int j) { return (uint32_t)((j / kStages) & 1); };
    /* S = Q K^T of key tile j over the head dim, issued, not waited for.  zero: S is zeroed
     * first, else the first step overwrites it (scale-d 0): in the overlapped loop no plain
     * instruction may define a product's registers while another is in flight, or ptxas
     * serialises the products (C7513) */
    auto issue_s = [&](float(&s)[kN / 2], int j, bool zero) {
        if (zero)
#pragma unroll
            for (int e = 0; e < kN / 2; ++e)
                s[e] = 0.f;
        mbar_wait(&k_full[j % kStages], phase(j)); /* at once when waited before */
        pa_wg::fence();
#pragma unroll
        for (int ch = 0; ch < kChunks; ++ch)
#pragma unroll
            for (int kk = 0; kk < 4 && kCols * ch + kKCols * kk < D; ++kk) { /* D's K steps */
                const uint64_t dq =
                    pa_wg::desc(q_addr + ch * kRowsWg * 128 + kk * 32, 16, pa_wg::kGroupBytes);
                const uint64_t dk =
                    pa_wg::desc(k_addr(j) + ch * kN * 128 + kk * 32, 16, pa_wg::kGroupBytes);
                if constexpr (kFp8) pa_wg::MmaE4M3::ss_m64n128k32(s, dq, dk, zero || ch + kk > 0);
                else pa_wg::ss_m64nk16<T, kN>(s, dq, dk, zero || ch + kk > 0);
            }
        pa_wg::commit();
    };
    /* row r's scores of the key tile at key0, exp2-domain, masked: x[2q + e] is key
     * key0 + 8q + 2 t4 + e */
    auto scores = [&](const float(&s)[kN / 2], int r, int key0, float(&x)[kN / 4]) {
        if constexpr (kScore) {
            if (in_cap > 0.f) {
#pragma unroll
                for (int q = 0; q < kN / 8; ++q)
#pragma unroll
                    for (int e = 0; e < 2; ++e)
                        x[2 * q + e] = cap2 * tanh_fast(s[4 * q + 2 * r + e] * in_cap);
            } else {
#pragma unroll
                for (int q = 0; q < kN / 8; ++q)
#pragma unroll
                    for (int e = 0; e < 2; ++e)
                        x[2 * q + e] = s[4 * q + 2 * r + e] * sl2;
            }
            if (slope2 != 0.f) {
                const float d = dist0[r] - (float)key0;
#pragma unroll
                for (int q = 0; q < kN / 8; ++q)
#pragma unroll
                    for (int e = 0; e < 2; ++e)
                        x[2 * q + e] = fmaf(-slope2, fabsf(d - (float)(8 * q + e)), x[2 * q + e]);
            }
        } else {
#pragma unroll
            for (int q = 0; q < kN / 8; ++q)
#pragma unroll
                for (int e = 0; e < 2; ++e)
                    x[2 * q + e] = s[4 * q + 2 * r + e] * sl2;
        }
        if constexpr (kBias) {
            const int lr = 16 * warp + g + 8 * r; /* the row in this consumer's tile */
            const unsigned char *row_s =
                bias_buf + ((key0 / kN - t_begin) & 1) * L::kBiasTile + lr * kN * 2 + 4 * t4;
#pragma unroll
            for (int q = 0; q < kN / 8; ++q) {
                float b[2];
                if constexpr (!kBiasSmem) {
                    b[0] = bv[r][2 * q], b[1] = bv[r][2 * q + 1];
                } else {
                    const uint32_t w =
                        *reinterpret_cast<const uint32_t *>(row_s + 16 * (q ^ (lr & 7)));
                    if (a.bias_dtype == 2)
                        b[0] = __uint_as_float(w << 16), b[1] = __uint_as_float(w & 0xffff0000u);
                    else
                        b[0] = __half2float(__ushort_as_half((unsigned short)(w & 0xffffu))),
                        b[1] = __half2float(__ushort_as_half((unsigned short)(w >> 16)));
                }
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int i = 2 * q + e, key = key0 + 8 * q + 2 * t4 + e;
                    x[i] += b[e] * kLog2e;
                    bias_vis[r] |= key >= vlo[r] && key < vhi[r] && b[e] != -INFINITY;
                }
            }
        }
        if (key0 + kN > mask_hi || (VAR != kVarNone && key0 < mask_lo)) {
#pragma unroll
            for (int q = 0; q < kN / 8; ++q)
#pragma unroll
                for (int e = 0; e < 2; ++e) {
                    const int key = key0 + 8 * q + 2 * t4 + e;
                    if (key >= vhi[r] || (VAR != kVarNone && key < vlo[r]))
                        x[2 * q + e] = -INFINITY;
                }
        }
    };
    /* online softmax of key tile j's scores, rows g (r = 0) and g + 8 (r = 1), lazily
     * rescaled: s turns into P, then P's A fragments pf; alpha: the factor O must take */
    auto softmax = [&](float(&s)[kN / 2], int j, uint32_t(&pf)[kPSteps][4], float(&alpha)[2]) {
        const int key0 = (t_begin + j) * kN;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float x[kN / 4];
            scores(s, r, key0, x);
            float mx = tree_max(x);
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = mx > run_m[r] + kSlack ? mx : run_m[r];
            const float m_use = m_new == -INFINITY ? 0.f : m_new;
            alpha[r] = pa_wg::exp2_approx(run_m[r] - m_use);
#pragma unroll
            for (int e = 0; e < kN / 4; ++e) /* kPolyExp: keys 8q + 2 t4 + (0, 1), q odd */
                x[e] = kPolyExp && e % 4 >= 2 ? pa_wg::exp2_poly(x[e] - (m_use - kPShift))
                                              : pa_wg::exp2_approx(x[e] - (m_use - kPShift));
#pragma unroll
            for (int q = 0; q < kN / 8; ++q)
#pragma unroll
                for (int e = 0; e < 2; ++e)
                    s[4 * q + 2 * r + e] = x[2 * q + e];
            run_l[r] = run_l[r] * alpha[r] + tree_sum(x); /* this lane's part of the row */
            run_m[r] = m_new;
        }
        if constexpr (kFp8) {
            /* e4m3 A fragments (32 keys a step): register 2h + r holds row r's logical keys
             * 16h + 4 t4 .. + 3, which are accumulator keys 16h + 2 t4, + 1, + 8, + 9 of the
             * step; V^T's keys are stored in that order (e4m3_vt.cu), so the lanes keep
             * their own values */
#pragma unroll
            for (int kk = 0; kk < kN / 32; ++kk)
#pragma unroll
                for (int h = 0; h < 2; ++h)
#pragma unroll
                    for (int r = 0; r < 2; ++r) {
                        const int q0 = 4 * kk + 2 * h;
                        pf[kk][2 * h + r] =
                            pa_wg::e4m3x4(s[4 * q0 + 2 * r], s[4 * q0 + 2 * r + 1],
                                          s[4 * q0 + 4 + 2 * r], s[4 * q0 + 4 + 2 * r + 1]);
                    }
        } else {
            /* the scores' accumulator layout is the A-fragment layout of P V */
#pragma unroll
            for (int kk = 0; kk < kN / 16; ++kk)
#pragma unroll
                for (int q = 0; q < 4; ++q)
                    pf[kk][q] = Dt<T>::pack(s[8 * kk + 2 * q], s[8 * kk + 2 * q + 1]);
        }
    };
    auto rescale = [&](const float(&alpha)[2]) {
#pragma unroll
        for (int r = 0; r < 2; ++r)
            if (!__all_sync(0xffffffffu, alpha[r] == 1.f)) {
#pragma unroll
                for (int q = 0; q < DP / 8; ++q) {
                    acc_o[4 * q + 2 * r] *= alpha[r];
                    acc_o[4 * q + 2 * r + 1] *= alpha[r];
                }
            }
    };
    /* O += P V of key tile j, issued (the caller fenced since O last changed) */
    auto issue_pv = [&](const uint32_t(&pf)[kPSteps][4], int j) {
        mbar_wait(&v_full[j % kStages], phase(j));
#pragma unroll
        for (int kk = 0; kk < kPSteps; ++kk) {
            if constexpr (kFp8) /* V^T: kDp rows of 128 keys, K-major as K is in Q K^T */
                pa_wg::MmaE4M3::rs_m64n128k32(
                    acc_o, pf[kk], pa_wg::desc(v_addr(j) + kk * 32, 16, pa_wg::kGroupBytes), 1);
            else
                pv_step<T, DP>(acc_o, pf[kk], v_addr(j) + (uint32_t)(kk * 2 * pa_wg::kGroupBytes),
                               (uint32_t)kN * 128);
        }
        pa_wg::commit();
    };
    /* V rows past the sequence's keys in its last key tile: packed neighbours, cache slots
     * past the length and pool blocks hold anything, NaN included, and P's zeros there would
     * still give 0 * NaN (dense tensors end at seq_kv, where TMA fills zeros).  Both
     * consumers clear half each after the tile landed, then meet at named barrier 3. */
    auto clear_v_tail = [&](int j) {
        const int first = seq.len_kv - (t_begin + j) * kN;
        if (kFp8 || a.kv_layout == PA_GPU_KV_DENSE || first >= kN) return;
        mbar_wait(&v_full[j % kStages], phase(j));
        unsigned char *dv = base + L::kV + (j % kStages) * L::kKVBytes + max(first, 0) * 128;
        const int pieces = (kN - max(first, 0)) * 8; /* 16-byte pieces of a 64-column block */
#pragma unroll
        for (int ch = 0; ch < kChunks; ++ch)
            for (int i = tid - 128; i < pieces; i += 2 * 128)
                reinterpret_cast<uint4 *>(dv + ch * kN * 128)[i] = make_uint4(0, 0, 0, 0);
        pa_wg::fence_async_shared(); /* the zeros are visible to the P V products */
        pa_wg::named_sync(3, 2 * 128);
    };
    auto release = [&](int j) { /* this warp is done with key tile j's buffers */
                                __syncwarp();
                                if (lane == 0) pa_wg::mbar_arrive(&empty[j % kStages]);
    };

    /* a bias through shared memory: tile j's rows are ready before its softmax, and tile
     * j + 1's are issued then (every thread has read tile j - 1's buffer by that point) */
    auto next_bias = [&](int j) {
        if constexpr (kBiasSmem) {
            bias_ready();
            bias_issue(j + 1);
        } else {
            load_tile_bias(j);
        }
    };
    bias_issue(0);
    if constexpr (SCHED == kSchedOverlap) {
        /* Overlap within each consumer: tile j + 1's Q K^T and tile j's P V in flight
         * together, tile j + 1's softmax under tile j's P V (FlashAttention-3's
         * intra-warpgroup overlap).  P alternates between two register sets (unrolled by
         * two: no copies); the register fences keep O's rescale and P's writes before the
         * next products' issue. */
        uint32_t pf_a[kPSteps][4], pf_b[kPSteps][4];
        auto step = [&](int j, uint32_t(&pf)[kPSteps][4], uint32_t(&pf_next)[kPSteps][4]) {
            float s2[kN / 2], alpha2[2];
            clear_v_tail(j);
            issue_s(s2, j + 1, false);
            next_bias(j + 1);
            pa_wg::fence();
            issue_pv(pf, j);
            pa_wg::wait<1>();
            pa_wg::fence_regs(s2);
            softmax(s2, j + 1, pf_next, alpha2);
            pa_wg::wait<0>();
            pa_wg::fence_regs(acc_o);
            release(j);
            rescale(alpha2);
            pa_wg::fence_regs(acc_o);
            pa_wg::fence_regs(pf_next);
        };
        auto finish = [&](int j, uint32_t(&pf)[kPSteps][4]) {
            clear_v_tail(j);
            pa_wg::fence();
            issue_pv(pf, j);
            pa_wg::wait<0>();
            release(j);
        };
        if (n_tiles > 0) {
            float s[kN / 2], alpha[2];
            issue_s(s, 0, true);
            next_bias(0);
            pa_wg::wait<0>();
            softmax(s, 0, pf_a, alpha);
            pa_wg::fence_regs(pf_a);
            int j = 0;
            for (; j + 2 < n_tiles; j += 2) {
                step(j, pf_a, pf_b);
                step(j + 1, pf_b, pf_a);
            }
            if (j + 1 < n_tiles) {
                step(j, pf_a, pf_b);
                finish(j + 1, pf_b);
            } else {
                finish(j, pf_a);
            }
        }
    } else if constexpr (SCHED == kSchedSerial) {
        for (int j = 0; j < n_tiles; ++j) {
            float s[kN / 2], alpha[2];
            uint32_t pf[kPSteps][4];
            issue_s(s, j, true);
            next_bias(j);
            pa_wg::wait<0>();
            softmax(s, j, pf, alpha);
            if (j > 0) rescale(alpha);
            clear_v_tail(j);
            pa_wg::fence();
            issue_pv(pf, j);
            pa_wg::wait<0>();
            release(j);
        }
    } else if (n_tiles > 0) { /* kSchedPingpong */
        /* Ping-pong: the consumers take turns issuing their products (named barrier 1 + c:
         * consumer c's turn), so one's softmax runs while the other's products keep the
         * tensor cores busy.  A turn issues tile j's P V and tile j + 1's Q K^T together
         * and waits for both only after passing the turn on.  Consumer 0 goes first;
         * consumer 1 skips its last pass, which no turn would wait for. */
        auto turn = [&] { pa_wg::named_sync(1 + c, 2 * 128); };
        auto pass = [&] { pa_wg::named_arrive(2 - c, 2 * 128); };
        float s[kN / 2];
        if (c == 1) pass();
        mbar_wait(&k_full[0], phase(0));
        turn();
        issue_s(s, 0, true);
        pass();
        next_bias(0);
        pa_wg::wait<0>();
        for (int j = 0; j < n_tiles; ++j) {
            float alpha[2];
            uint32_t pf[kPSteps][4];
            softmax(s, j, pf, alpha);
            if (j > 0) rescale(alpha);
            const bool more = j + 1 < n_tiles;
            mbar_wait(&v_full[j % kStages], phase(j));
            clear_v_tail(j); /* before the turn: both consumers reach it without one */
            if (more) mbar_wait(&k_full[(j + 1) % kStages], phase(j + 1));
            turn();
            pa_wg::fence();
            issue_pv(pf, j);
            if (more) issue_s(s, j + 1, true);
            if (more || c == 0) pass();
            pa_wg::wait<0>();
            if (more) next_bias(j + 1); /* P V's fragments are free now */
            release(j);
        }
    }

    float row_l[2], inv[2]; /* the rows' sums (over their 4 threads) */
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        row_l[r] = run_l[r];
        row_l[r] += __shfl_xor_sync(0xffffffffu, row_l[r], 1);
        row_l[r] += __shfl_xor_sync(0xffffffffu, row_l[r], 2);
        bool seen = vhi[r] > vlo[r];
        if constexpr (kBias) {
            int any = bias_vis[r];
            any |= __shfl_xor_sync(0xffffffffu, any, 1);
            any |= __shfl_xor_sync(0xffffffffu, any, 2);
            seen = any != 0;
        }
        inv[r] = pa_gpu_row_inv(row_l[r], seen);
        if constexpr (kFp8) inv[r] *= a.v_descale; /* V's scale (q's and k's are in a.scale) */
        const int row = crow0 + 16 * warp + g + 8 * r;
        if (t4 == 0 && a.lse && row < seq.len_q)
            a.lse[pa_gpu_lse_index(a, batch, seq, head, row)] =
                pa_gpu_row_lse((run_m[r] + log2f(row_l[r]) - kPShift) * kLn2, row_l[r], seen);
    }
    /* O / l, staged in this consumer's Q tile (its products are done) one 64-column block
     * at a time, each stored as soon as it is staged: by TMA (a warp's 16 rows) for batched
     * tensors; packed (varlen) rows by plain 16-byte stores that stop at the sequence's end,
     * since the next sequence's rows follow.  An e4m3 Q tile holds one 16-bit block
     * (kStaged): the next is staged once the previous store has read it. */
    constexpr int kStaged = L::kQBytes / (kRowsWg * 128);
#pragma unroll
    for (int cb = 0; cb < DP / 64; ++cb) {
        const int slot0 = 8 * (cb - cb % kStaged); /* 16-byte column pieces before the slot */
        if (cb >= kStaged) {
            if (lane == 0) pa_wg::tma_store_wait();
            __syncwarp();
        }
#pragma unroll
        for (int r = 0; r < 2; ++r)
#pragma unroll
            for (int q = 8 * cb; q < 8 * cb + 8; ++q) /* columns 8q + 2 t4, + 1 */
                *reinterpret_cast<uint32_t *>(
                    sq + pa_wg::chunk_offset(kRowsWg, 16 * warp + g + 8 * r, q - slot0) + 4 * t4) =
                    Dt<TO>::pack(acc_o[4 * q + 2 * r] * inv[r], acc_o[4 * q + 2 * r + 1] * inv[r]);
        if (a.varlen_q) {
            __syncwarp();
#pragma unroll
            for (int it = 0; it < 4; ++it) { /* 16 rows of 8 16-byte pieces */
                const int rr = (32 * it + lane) / 8, piece = (32 * it + lane) % 8;
                const int row = crow0 + 16 * warp + rr;
                if (row < seq.len_q && 64 * cb + 8 * piece < D) /* D's columns only */
                    *reinterpret_cast<uint4 *>(
                        static_cast<TO *>(a.o) +
                        pa_gpu_q_offset(a, batch, seq, head, row, a.o_stride) + 64 * cb +
                        8 * piece) =
                        *reinterpret_cast<const uint4 *>(
                            sq +
                            pa_wg::chunk_offset(kRowsWg, 16 * warp + rr, 8 * cb + piece - slot0));
            }
            continue;
        }
        pa_wg::fence_async_shared(); /* the staged block is visible to the TMA store */
        __syncwarp();
        if (lane == 0)
            pa_wg::tma_store_4d(&maps.o, sq + (cb % kStaged) * kRowsWg * 128 + 16 * warp * 128,
                                64 * cb, crow0 + 16 * warp, head, batch);
    }
    if (lane == 0 && !a.varlen_q) pa_wg::tma_store_wait(); /* the staging smem is read */
#else
    (void)a;
    __trap(); /* launched on sm_90 only, where the sm_90a image runs */
#endif
}

template <int D, typename T, int VAR, int SCHED, typename TO = T>
cudaError_t launch(const pa_gpu_args &a, cudaStream_t stream)
{
    auto kernel = flash_fwd_hopper_kernel<D, T, VAR, SCHED, TO>;
    constexpr size_t smem = Layout<D, VAR == kVarBias, Elem<T>::kBytes>::kSmem;
    static unsigned long long attr_done = 0;
    cudaError_t e = smem_attr_once(kernel, smem, attr_done);
    if (e != cudaSuccess) return e;
    const long long blocks = (long long)((a.seq_q + kM - 1) / kM) * a.heads_q * a.batch;
    if constexpr (Elem<T>::kBytes == 1) { /* e4m3: dense; V^T from the workspace */
        if (blocks == 0) return cudaSuccess;
        if ((e = (cudaError_t)pa_cuda_e4m3_vt(&a, a.workspace, stream)) != cudaSuccess) return e;
        const int s_pad = pa_cuda_e4m3_vt_keys(a.seq_kv);
        const int64_t vt_stride[4] = {(int64_t)a.heads_kv * D * s_pad, (int64_t)D * s_pad, s_pad,
                                      1};
        TileMaps maps;
        if ((e = pa_tma::make_map(&maps.q, a.q, 4, D, a.seq_q, a.heads_q, a.batch, a.q_stride,
                                  kRowsWg)) != cudaSuccess ||
            (e = pa_tma::make_map(&maps.k, a.k, 4, D, a.seq_kv, a.heads_kv, a.batch, a.k_stride,
                                  Traits<D>::kN)) != cudaSuccess ||
            (e = pa_tma::make_map(&maps.v, a.workspace, 4, s_pad, D, a.heads_kv, a.batch, vt_stride,
                                  D)) != cudaSuccess ||
            (e = pa_tma::make_map(&maps.o, a.o, a.o_dtype, D, a.seq_q, a.heads_q, a.batch,
                                  a.o_stride, 16)) != cudaSuccess)
            return e;
        kernel<<<(unsigned)blocks, kThreads, smem, stream>>>(a, maps);
        return cudaGetLastError();
    }
    /* packed (varlen) Q/O and K/V: one batch entry of all their rows; a KV cache: its
     * capacity of rows a sequence; a paged cache: blocks of kv_rows rows, loaded 16 at a
     * time */
    const int q_rows = a.varlen_q ? a.total_q : a.seq_q, q_batch = a.varlen_q ? 1 : a.batch;
    const bool paged = a.kv_layout == PA_GPU_KV_PAGED;
    const int kv_rows = a.kv_layout == PA_GPU_KV_DENSE ? a.seq_kv : a.kv_rows;
    const int kv_batch = a.kv_layout == PA_GPU_KV_VARLEN ? 1 : paged ? a.kv_count : a.batch;
    TileMaps maps;
    const int kn = Traits<D>::kN;
    if ((e = pa_tma::make_map(&maps.q, a.q, a.dtype, D, q_rows, a.heads_q, q_batch, a.q_stride,
                              kRowsWg)) != cudaSuccess ||
        (e = pa_tma::make_map(&maps.k, a.k, a.dtype, D, kv_rows, a.heads_kv, kv_batch, a.k_stride,
                              paged ? kPageRows : kn)) != cudaSuccess ||
        (e = pa_tma::make_map(&maps.v, a.v, a.dtype, D, kv_rows, a.heads_kv, kv_batch, a.v_stride,
                              paged ? kPageRows : kn)) != cudaSuccess ||
        (e = pa_tma::make_map(&maps.o, a.o, a.dtype, D, q_rows, a.heads_q, q_batch, a.o_stride,
                              16)) != cudaSuccess)
        return e;
    if (blocks == 0) return cudaSuccess;
    kernel<<<(unsigned)blocks, kThreads, smem, stream>>>(a, maps);
    return cudaGetLastError();
}

template <int D, typename T, int SCHED>
cudaError_t launch_var(const pa_gpu_args &a, unsigned flags, cudaStream_t stream)
{
    const bool bias_smem = flags & PA_HOPPER_BIAS_SMEM;
    /* a bias (its registers, or its shared-memory reads), or head dim 256's accumulator,
     * does not fit beside the overlapped loop's second S and P without spills: those run
     * the serial loop */
    constexpr int kSched = SCHED == kSchedOverlap && D > 192 ? kSchedSerial : SCHED;
    constexpr int kBiasSched = SCHED == kSchedOverlap ? kSchedSerial : SCHED;
    if (a.bias) /* 16-bit with 16-byte aligned rows: through shared memory where asked */
        return bias_smem && a.bias_dtype != 0 && a.bias_stride[3] == 1 &&
                       ((a.bias_stride[0] | a.bias_stride[1] | a.bias_stride[2]) & 7) == 0 &&
                       (reinterpret_cast<uintptr_t>(a.bias) & 15) == 0
                   ? launch<D, T, kVarBias, kBiasSched>(a, stream)
                   : launch<D, T, kVarBiasRegs, kBiasSched>(a, stream);
    /* softcap's exponentials half on the FMA pipe where asked (not with ping-pong, which
     * has no such instances) */
    if constexpr (kSched != kSchedPingpong)
        if (a.softcap > 0.f && (flags & PA_HOPPER_EXP2_POLY))
            return launch<D, T, kVarScorePoly, kSched>(a, stream);
    if (a.softcap > 0.f || a.alibi_slopes) return launch<D, T, kVarScore, kSched>(a, stream);
    if (a.has_window || a.sinks) return launch<D, T, kVarMask, kSched>(a, stream);
    return launch<D, T, kVarNone, kSched>(a, stream);
}

template <typename T>
cudaError_t dispatch(const pa_gpu_args &a, unsigned flags, cudaStream_t stream)
{
#define PA_CASE(d, n, st)                                                                          \
    case d:                                                                                        \
        return flags & PA_HOPPER_PINGPONG  ? launch_var<d, T, kSchedPingpong>(a, flags, stream)    \
               : flags & PA_HOPPER_OVERLAP ? launch_var<d, T, kSchedOverlap>(a, flags, stream)     \
                                           : launch_var<d, T, kSchedSerial>(a, flags, stream);
    switch (a.head_dim) {
        PA_FLASH_HOPPER_TABLE(PA_CASE)
    default: return cudaErrorInvalidValue;
    }
#undef PA_CASE
}

/* e4m3 inputs: head dim 128, the serial loop, O f16 or bf16 (TO) */
template <typename TO>
cudaError_t dispatch_e4m3(const pa_gpu_args &a, cudaStream_t stream)
{
    if (a.softcap > 0.f || a.alibi_slopes)
        return launch<128, E4M3In, kVarScore, kSchedSerial, TO>(a, stream);
    if (a.has_window || a.sinks) return launch<128, E4M3In, kVarMask, kSchedSerial, TO>(a, stream);
    return launch<128, E4M3In, kVarNone, kSchedSerial, TO>(a, stream);
}

} // namespace

extern "C" int pa_cuda_flash_hopper_e4m3_takes(const pa_gpu_args *a)
{
    return a->dtype == 4 && a->head_dim == 128 && a->head_dim_v == 128 &&
           (a->o_dtype == 1 || a->o_dtype == 2) && !a->bias && !a->varlen_q &&
           a->kv_layout == PA_GPU_KV_DENSE;
}

extern "C" int pa_cuda_flash_hopper_has_head_dim(int head_dim)
{
#define PA_CASE(d, n, st) case d:
    switch (head_dim) {
        PA_FLASH_HOPPER_TABLE(PA_CASE) return 1;
    default: return 0;
    }
#undef PA_CASE
}

extern "C" size_t pa_cuda_flash_hopper_smem(int head_dim, int bias)
{
#define PA_CASE(d, n, st)                                                                          \
    case d: return bias ? Layout<d, true>::kSmem : Layout<d>::kSmem;
    switch (head_dim) {
        PA_FLASH_HOPPER_TABLE(PA_CASE)
    default: return 0;
    }
#undef PA_CASE
}

extern "C" int pa_cuda_flash_hopper(const pa_gpu_args *a, unsigned flags, void *stream)
{
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (a->dtype == 1) return (int)dispatch<__half>(*a, flags, s);
    if (a->dtype == 2) return (int)dispatch<__nv_bfloat16>(*a, flags, s);
    if (!pa_cuda_flash_hopper_e4m3_takes(a)) return (int)cudaErrorInvalidValue;
    return (int)(a->o_dtype == 1 ? dispatch_e4m3<__half>(*a, s)
                                 : dispatch_e4m3<__nv_bfloat16>(*a, s));
}
