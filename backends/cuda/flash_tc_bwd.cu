/*
 * FlashAttention-2-style backward on NVIDIA tensor cores (sm_80+, f16/bf16 storage, f32
 * accumulation), head dims 64 and 128.  Conventions (fragment layouts, ldmatrix
 * addressing, padded shared rows, exp2 domain) follow the forward in flash_tc.cu.
 *
 * Kernels, in launch order:
 *   1. flash_bwd_prep_kernel: delta[row] = rowsum(dO * O) and lse2 = lse * log2(e) (+inf
 *      on fully masked rows), into the workspace.
 *   2. flash_bwd_dkdv_tc_kernel: one block per (key tile, kv head, batch).  Each warp owns
 *      16*MT keys; dK and dV of those keys stay in registers while the block walks the
 *      query heads of the GQA group (in order) and their query tiles, each tile (and its
 *      lse2/delta rows) double-buffered with cp.async.  Per query tile (BM queries) a warp
 *      forms, transposed so keys are the mma rows:  S^T = K Q^T,  dP^T = V dO^T  (A from
 *      K/V rows, B from Q/dO rows),  P^T = exp2(S^T * scale*log2e - lse2),
 *      dS^T = P^T (dP^T - delta),  dV += P^T dO,  dK += dS^T Q  (the accumulators are the
 *      A operands, as P in the forward; B via ldmatrix.trans of Q/dO rows).  Unless
 *      deterministic, dS^T goes to shared memory and the block forms dQ_partial = dS K for
 *      the tile (warps split rows and head-dim columns), added to an f32 workspace with
 *      (vector) atomics.
 *   3. flash_bwd_dq_convert_kernel: dq = scale * accumulator, in dq's dtype and strides.
 *   Deterministic: instead of 2's atomics, flash_bwd_dq_tc_kernel, one block per (query
 *      tile, query head, batch), walks the key tiles in order and recomputes S, P, dP, dS
 *      to form dQ = scale dS K in registers (no atomics: bitwise reproducible).
 * Masking: lse2 = +inf on fully masked rows gives P = exp2(x - inf) = 0 without a branch;
 * keys outside a row's visible range (causal, window) are zeroed in the tiles that straddle
 * a boundary; query tiles that see none of the key tile are skipped (causal, window).
 * Score variants: window, softcap and ALiBi in the kVar instances (each score recomputed as
 * the forward does it, dS carrying softcap's 1 - tanh^2); sinks through the forward's LSE,
 * and d_sinks from delta by the shared kernel (backends/gpu/gpu_backward.cu).  A bias tensor
 * or attn_mask stays with the SIMT backward.
 *
 * Cost (FA2 sweep, per (batch, head), N = seq, D = head_dim): 5 GEMM-shaped products of
 * 2 N^2 D FLOPs = 10 N^2 D = 2.5x the forward's 4 N^2 D (halved when causal).  Memory:
 * Q, K, V, O, dO read and dQ, dK, dV written once from HBM (~8 N D 2-byte values, a few
 * MB a head: negligible beside the arithmetic) plus the dQ accumulator: N/BN key tiles
 * each add N x D f32 with L2 atomics (N = 4096, D = 128, BN = 128: 32 x 2 MB a head).
 * The limit is shared-memory bandwidth: with one m16 key tile per warp (configuration
 * A), a warp issues ~0.58 ldmatrix.x4 (512 B) per m16n8k16 mma; at 128 B/clk/SM that is
 * ~2.3 clk of shared memory per mma against ~1-1.5 clk of tensor-core time, so this
 * design caps near 40% of the mma.sync peak: ~200-250 TFLOP/s expected at long
 * sequences.  Measured (H100, bf16, first version, configuration A): 170-214 TFLOP/s,
 * 0.62-0.75x PyTorch's FA2 backward.  Configuration B (head dim 64: two m16 key tiles a
 * warp, 32-query steps) reuses each Q/dO fragment twice, and F (head dim 128, FA2's 2-D
 * warp grids) every fragment: ~0.45 ldmatrix per mma.  With the prep pass feeding lse2 and
 * delta by cp.async: 222-268 TFLOP/s at N = 16384, 0.81-0.88x PyTorch's FA2 backward at
 * every N >= 2048 (bench/results/cuda-flash-backward-h100-2026-11-24.md).
 *
 * Files: this one (the prep and dQ conversion kernels, the workspace, the launch sequence
 * and the C interface), flash_tc_bwd_dkdv.cu (dK/dV, configurations A and B),
 * flash_tc_bwd_dkdv_f.cu (configuration F), flash_tc_bwd_dq.cu (the deterministic dQ
 * kernel) and flash_tc_bwd.cuh (what they share: traits, head-dim table, tile walks).
 */
#include "flash_tc_bwd.h"
#include "flash_tc_bwd.cuh"
#include "gpu_backward.h" /* pa_gpu_bwd_dsinks */

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

namespace
{

using namespace pa_tc;
using namespace pa_tc_bwd;

/* Pre-pass: delta[row] = rowsum(dO * O) and lse2[row] = lse * log2(e) (+inf where the
 * row is fully masked, so P = exp2(s - lse2) = 0 there).  8 lanes a row, 16-byte loads.
 * Rows are seq_pad a (batch, head) pair (seq_q here; the Hopper backward's whole 64-query
 * tiles, whose padding rows get delta 0 and lse2 +inf). */
template <int HEAD_DIM, typename T>
__global__ void flash_bwd_prep_kernel(pa_gpu_args a, const void *d_o, int seq_pad, float *delta,
                                      float *lse2)
{
    const int64_t rows = (int64_t)a.batch * a.heads_q * seq_pad;
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 8) + threadIdx.x / 8;
    const int sub = threadIdx.x % 8;
    const int64_t i = row % seq_pad, pair = row / seq_pad;
    const bool real = row < rows && i < a.seq_q;
    float acc = 0.f;
    if (real) {
        const int64_t h = pair % a.heads_q, b = pair / a.heads_q;
        const int64_t base = b * a.o_stride[0] + h * a.o_stride[1] + i * a.o_stride[2];
        const T *o = static_cast<const T *>(a.o) + base;
        const T *g = static_cast<const T *>(d_o) + base;
#pragma unroll
        for (int c = sub * 8; c < HEAD_DIM; c += 64) {
            const uint4 x = *reinterpret_cast<const uint4 *>(o + c);
            const uint4 y = *reinterpret_cast<const uint4 *>(g + c);
            const uint32_t xs[4] = {x.x, x.y, x.z, x.w}, ys[4] = {y.x, y.y, y.z, y.w};
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const float2 fx = Dt<T>::unpack(xs[e]), fy = Dt<T>::unpack(ys[e]);
                acc = fmaf(fx.x, fy.x, fmaf(fx.y, fy.y, acc));
            }
        }
    }
    acc += __shfl_xor_sync(0xffffffffu, acc, 1);
    acc += __shfl_xor_sync(0xffffffffu, acc, 2);
    acc += __shfl_xor_sync(0xffffffffu, acc, 4);
    if (row < rows && sub == 0) {
        const float l = real ? a.lse[pair * a.seq_q + i] : -INFINITY;
        delta[row] = real ? acc : 0.f;
        lse2[row] = l == -INFINITY ? INFINITY : l * kLog2e;
    }
}

/* dq (dtype, q strides) = scale * accumulator (f32 contiguous); two elements a thread. */
template <typename T>
__global__ void flash_bwd_dq_convert_kernel(pa_gpu_args a, const float *acc, void *dq_out)
{
    const int d2 = a.head_dim / 2;
    const int64_t n = (int64_t)a.batch * a.heads_q * a.seq_q * d2;
    const int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        const int c = (int)(i % d2) * 2;
        const int64_t row = i / d2;
        const int64_t s = row % a.seq_q, h = (row / a.seq_q) % a.heads_q,
                      b = row / ((int64_t)a.seq_q * a.heads_q);
        const float2 x = *reinterpret_cast<const float2 *>(acc + row * a.head_dim + c);
        T *dst = static_cast<T *>(dq_out) + b * a.q_stride[0] + h * a.q_stride[1] +
                 s * a.q_stride[2] + c;
        *reinterpret_cast<uint32_t *>(dst) = Dt<T>::pack(x.x * a.scale, x.y * a.scale);
    }
}

uint64_t round_up(uint64_t x) { return (x + 255) & ~(uint64_t)255; }

/* Workspace: delta and lse2 rows, then (unless deterministic) the f32 dQ accumulator. */
struct WsLayout {
    float *delta, *lse2, *dq_acc;
};
WsLayout ws_layout(const pa_gpu_bwd_args &ba, void *workspace)
{
    const uint64_t rows = (uint64_t)ba.fwd.batch * ba.fwd.heads_q * ba.fwd.seq_q;
    char *w = static_cast<char *>(workspace);
    WsLayout l;
    l.delta = reinterpret_cast<float *>(w);
    l.lse2 = reinterpret_cast<float *>(w + round_up(rows * 4));
    l.dq_acc = ba.deterministic ? nullptr : reinterpret_cast<float *>(w + 2 * round_up(rows * 4));
    return l;
}
template <int HEAD_DIM, typename T, bool kVar>
cudaError_t launch(const pa_gpu_bwd_args &ba, char tile, void *workspace, cudaStream_t stream)
{
    const pa_gpu_args &a = ba.fwd;
    const uint64_t rows = (uint64_t)a.batch * a.heads_q * a.seq_q;
    const WsLayout w = ws_layout(ba, workspace);
    flash_bwd_prep_kernel<HEAD_DIM, T>
        <<<(unsigned)((rows + 31) / 32), 256, 0, stream>>>(a, ba.d_o, a.seq_q, w.delta, w.lse2);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    if (ba.d_sinks) { /* the shared kernel: one block a head, rows in a fixed order */
        e = (cudaError_t)pa_gpu_bwd_dsinks(&ba, w.delta, stream);
        if (e != cudaSuccess) return e;
    }
    if (w.dq_acc) {
        e = cudaMemsetAsync(w.dq_acc, 0, rows * HEAD_DIM * sizeof(float), stream);
        if (e != cudaSuccess) return e;
    }
    BwdParams bp;
    bp.f = a;
    bp.d_o = ba.d_o;
    bp.dk = ba.dk;
    bp.dv = ba.dv;
    bp.delta = w.delta;
    bp.lse2 = w.lse2;
    bp.dq_acc = w.dq_acc;

    switch (tile) {
    case 'a': e = launch_dkdv<BwdA<HEAD_DIM>, T, kVar>(bp, stream); break;
    case 'b': e = launch_dkdv<BwdB<64>, T, kVar>(bp, stream); break;
    case 'f': e = launch_dkdv_f<HEAD_DIM, T, kVar>(bp, stream); break;
    default: return cudaErrorInvalidValue;
    }
    if (e != cudaSuccess) return e;

    if (w.dq_acc) {
        const int64_t n = (int64_t)rows * HEAD_DIM / 2;
        int64_t blocks = (n + 255) / 256;
        if (blocks > 65535) blocks = 65535;
        flash_bwd_dq_convert_kernel<T><<<(unsigned)blocks, 256, 0, stream>>>(a, w.dq_acc, ba.dq);
        return cudaGetLastError();
    }
    return launch_dq<HEAD_DIM, T, kVar>(bp, ba.dq, stream);
}

template <typename T>
cudaError_t dispatch(const pa_gpu_bwd_args &ba, char tile, void *workspace, cudaStream_t stream)
{
    /* window, softcap, ALiBi: the kVar instances; sinks act through the LSE and d_sinks */
    const pa_gpu_args &a = ba.fwd;
    const bool var = a.has_window || a.softcap > 0.f || a.alibi_slopes;
#define PA_CASE(d, def, tiles)                                                                     \
    case d:                                                                                        \
        return var ? launch<d, T, true>(ba, tile, workspace, stream)                               \
                   : launch<d, T, false>(ba, tile, workspace, stream);
    switch (ba.fwd.head_dim) {
        PA_FLASH_TC_BWD_HEAD_DIMS(PA_CASE)
    default: return cudaErrorInvalidValue;
    }
#undef PA_CASE
}

constexpr size_t smax(size_t x, size_t y) { return x > y ? x : y; }

/* The largest shared memory of the kernels a head dim's tiles launch (B exists at 64 only). */
template <int HEAD_DIM>
constexpr size_t smem_of()
{
    return smax(smax(BwdA<HEAD_DIM>::kSmem, HEAD_DIM == 64 ? BwdB<64>::kSmem : 0),
                smax(BwdFTraits<HEAD_DIM>::kSmem, BwdDqTraits<HEAD_DIM>::kSmem));
}

} // namespace

extern "C" int pa_cuda_flash_tc_bwd_has_head_dim(int head_dim)
{
#define PA_CASE(d, def, tiles)                                                                     \
    case d: return 1;
    switch (head_dim) {
        PA_FLASH_TC_BWD_HEAD_DIMS(PA_CASE)
    default: return 0;
    }
#undef PA_CASE
}

extern "C" char pa_cuda_flash_tc_bwd_default_tile(int head_dim)
{
#define PA_CASE(d, def, tiles)                                                                     \
    case d: return def;
    switch (head_dim) {
        PA_FLASH_TC_BWD_HEAD_DIMS(PA_CASE)
    default: return 0;
    }
#undef PA_CASE
}

extern "C" int pa_cuda_flash_tc_bwd_has_tile(int head_dim, char tile)
{
#define PA_CASE(d, def, tiles)                                                                     \
    case d: return tile && strchr(tiles, tile) != nullptr;
    switch (head_dim) {
        PA_FLASH_TC_BWD_HEAD_DIMS(PA_CASE)
    default: return 0;
    }
#undef PA_CASE
}

extern "C" size_t pa_cuda_flash_tc_bwd_smem(int head_dim)
{
#define PA_CASE(d, def, tiles)                                                                     \
    case d: return smem_of<d>();
    switch (head_dim) {
        PA_FLASH_TC_BWD_HEAD_DIMS(PA_CASE)
    default: return 0;
    }
#undef PA_CASE
}

extern "C" const char *pa_cuda_flash_tc_bwd_kernel(char tile)
{
    switch (tile) {
    case 'a': return "flash_bwd_dkdv_tc_kernel (configuration A: 8 warps x 16 keys)";
    case 'b': return "flash_bwd_dkdv_tc_kernel (configuration B: 4 warps x 32 keys)";
    default: return "flash_bwd_dkdv_f_tc_kernel (8 warps, 2-D warp grids)";
    }
}

extern "C" uint64_t pa_cuda_flash_tc_bwd_workspace(const pa_gpu_bwd_args *a)
{
    const uint64_t rows = (uint64_t)a->fwd.batch * a->fwd.heads_q * a->fwd.seq_q;
    uint64_t bytes = 2 * round_up(rows * 4);
    if (!a->deterministic) bytes += round_up(rows * (uint64_t)a->fwd.head_dim * 4);
    return bytes;
}

extern "C" int pa_cuda_flash_tc_bwd(const pa_gpu_bwd_args *a, char tile, void *workspace,
                                    void *stream)
{
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (!pa_cuda_flash_tc_bwd_has_tile(a->fwd.head_dim, tile)) return (int)cudaErrorInvalidValue;
    if (a->fwd.dtype == 1) return (int)dispatch<__half>(*a, tile, workspace, s);
    if (a->fwd.dtype == 2) return (int)dispatch<__nv_bfloat16>(*a, tile, workspace, s);
    return (int)cudaErrorInvalidValue;
}

namespace
{
template <typename T>
cudaError_t launch_prep(const pa_gpu_bwd_args &ba, int seq_pad, float *delta, float *lse2,
                        cudaStream_t stream)
{
    const pa_gpu_args &a = ba.fwd;
    const uint64_t rows = (uint64_t)a.batch * a.heads_q * seq_pad;
#define PA_CASE(d, def, tiles)                                                                     \
    case d:                                                                                        \
        flash_bwd_prep_kernel<d, T>                                                                \
            <<<(unsigned)((rows + 31) / 32), 256, 0, stream>>>(a, ba.d_o, seq_pad, delta, lse2);   \
        return cudaGetLastError();
    switch (a.head_dim) {
        PA_FLASH_TC_BWD_HEAD_DIMS(PA_CASE)
    default: return cudaErrorInvalidValue;
    }
#undef PA_CASE
}
} // namespace

extern "C" int pa_cuda_flash_bwd_prep(const pa_gpu_bwd_args *a, int seq_pad, float *delta,
                                      float *lse2, void *stream)
{
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (seq_pad < a->fwd.seq_q) return (int)cudaErrorInvalidValue;
    if (a->fwd.dtype == 1) return (int)launch_prep<__half>(*a, seq_pad, delta, lse2, s);
    if (a->fwd.dtype == 2) return (int)launch_prep<__nv_bfloat16>(*a, seq_pad, delta, lse2, s);
    return (int)cudaErrorInvalidValue;
}
