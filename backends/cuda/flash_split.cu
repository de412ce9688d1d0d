/*
 * Split-key schedule of the wide flash forward: the host planner and
 * flash_fwd_split_combine_kernel (see flash_split.h).
 */
#include "flash_split.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

namespace
{

constexpr float kLn2 = 0.6931471805599453f;

/* Estimated time (in key-tile steps) without a split: one block per query tile, dispatched
 * in order (longest first under a causal mask) to the SM that frees first. */
double estimate_unsplit(const pa_gpu_args &a, const pa_flash_split &s, int sms, double item)
{
    std::vector<double> free_at((size_t)sms, 0.0);
    const long long bh = (long long)a.batch * a.heads_q;
    for (long long b = 0; b < bh; ++b)
        for (int i = 0; i < s.q_tiles; ++i) {
            const int qt = a.mask ? s.q_tiles - 1 - i : i;
            auto it = std::min_element(free_at.begin(), free_at.end());
            *it += pa_flash_tiles(a, s, qt) + item;
        }
    return *std::max_element(free_at.begin(), free_at.end());
}

/* Four consecutive partial O values (16-byte aligned for f32, 8-byte for 16-bit). */
__device__ __forceinline__ float4 load4(const float *p)
{
    return *reinterpret_cast<const float4 *>(p);
}
__device__ __forceinline__ float4 load4(const __half *p)
{
    const uint2 u = *reinterpret_cast<const uint2 *>(p);
    const float2 a = __half22float2(*reinterpret_cast<const __half2 *>(&u.x));
    const float2 b = __half22float2(*reinterpret_cast<const __half2 *>(&u.y));
    return make_float4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ float4 load4(const __nv_bfloat16 *p)
{
    const uint2 u = *reinterpret_cast<const uint2 *>(p);
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162 *>(&u.y));
    return make_float4(a.x, a.y, b.x, b.y);
}

template <typename T>
__device__ __forceinline__ void store(T *p, float x);
template <>
__device__ __forceinline__ void store<float>(float *p, float x)
{
    *p = x;
}
template <>
__device__ __forceinline__ void store<__half>(__half *p, float x)
{
    *p = __float2half_rn(x);
}
template <>
__device__ __forceinline__ void store<__nv_bfloat16>(__nv_bfloat16 *p, float x)
{
    *p = __float2bfloat16_rn(x);
}

/* Block (b, r): row r of the cut query tile recorded by schedule block b, if there is one;
 * a thread takes four columns (blockDim.x = head_dim_v / 4).  Up to kFastPieces pieces
 * (the planner's one-wave chunks cut a tile at most once or twice) load every piece's LSE
 * and values at once: one round trip to L2, where the partials still are. */
constexpr int kFastPieces = 4;
template <typename T>
__global__ void __launch_bounds__(256)
    flash_fwd_split_combine_kernel(pa_gpu_args a, pa_flash_split s)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    /* launched as a programmatic dependent of the main kernel: wait for its writes */
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
    const pa_flash_record rec = pa_flash_records(a, s)[blockIdx.x];
    const int lr = blockIdx.y, row = rec.qt * s.tile_m + lr;
    if (rec.bh < 0 || row >= a.seq_q) return;
    const int head = rec.bh % a.heads_q, batch = rec.bh / a.heads_q;
    const int dv = a.head_dim_v, c = 4 * threadIdx.x;
    const int b0 = blockIdx.x, pieces = (rec.first + rec.units - 1) / s.chunk - b0 + 1;
    const T *part_o = static_cast<const T *>(s.part);
    const float *part_lse =
        reinterpret_cast<const float *>(part_o + (int64_t)s.slots * s.tile_m * dv);
    auto lse_of = [&](int i) {
        return part_lse[(int64_t)pa_flash_piece_slot(s, rec.first, b0 + i) * s.tile_m + lr];
    };
    auto o_of = [&](int i) {
        return load4(part_o +
                     ((int64_t)pa_flash_piece_slot(s, rec.first, b0 + i) * s.tile_m + lr) * dv + c);
    };
    float m = -INFINITY, wsum = 0.f;
    float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
    auto add = [&](float l, float4 x) {
        /* m = -inf: every piece is -inf (weight 0) or NaN (NaN, which must reach O) */
        const float w = exp2f(l - (m != -INFINITY ? m : 0.f));
        wsum += w;
        acc.x += w * x.x, acc.y += w * x.y, acc.z += w * x.z, acc.w += w * x.w;
    };
    if (pieces <= kFastPieces) {
        float l[kFastPieces];
        float4 x[kFastPieces];
#pragma unroll
        for (int i = 0; i < kFastPieces; ++i)
            if (i < pieces) l[i] = lse_of(i), x[i] = o_of(i);
#pragma unroll
        for (int i = 0; i < kFastPieces; ++i)
            if (i < pieces) m = fmaxf(m, l[i]);
#pragma unroll
        for (int i = 0; i < kFastPieces; ++i)
            if (i < pieces) add(l[i], x[i]);
    } else {
        for (int i = 0; i < pieces; ++i)
            m = fmaxf(m, lse_of(i));
        for (int i = 0; i < pieces; ++i)
            add(lse_of(i), o_of(i));
    }
    const bool seen = pa_flash_visible(a, row) > 0;
    const float inv = pa_gpu_row_inv(wsum, seen);
    T *orow = static_cast<T *>(a.o) + batch * a.o_stride[0] + head * a.o_stride[1] +
              (int64_t)row * a.o_stride[2];
    const int64_t cs = a.o_stride[3];
    store<T>(orow + c * cs, acc.x * inv);
    store<T>(orow + (c + 1) * cs, acc.y * inv);
    store<T>(orow + (c + 2) * cs, acc.z * inv);
    store<T>(orow + (c + 3) * cs, acc.w * inv);
    if (a.lse && threadIdx.x == 0)
        a.lse[((int64_t)batch * a.heads_q + head) * a.seq_q + row] =
            pa_gpu_row_lse((m + log2f(wsum)) * kLn2, wsum, seen);
}

} // namespace

extern "C" void pa_flash_split_plan(const pa_gpu_args *a, int tile_m, int key_tile, int sms,
                                    int force, pa_flash_split *s)
{
    s->tile_m = tile_m;
    s->chunk = 0;
    s->key_tile = key_tile;
    s->q_tiles = (a->seq_q + tile_m - 1) / tile_m;
    s->units = 0;
    s->blocks = 0;
    s->slots = 0;
    s->dependent_combine = 0;
    s->key_halves = 0;
    s->col_halves = 0;
    s->wgmma = 0;
    s->part = NULL;
    const long long bh = (long long)a->batch * a->heads_q;
    int longest = 0;
    long long units = 0;
    for (int qt = 0; qt < s->q_tiles; ++qt) {
        const int n = pa_flash_tiles(*a, *s, qt);
        longest = n > longest ? n : longest;
        units += pa_flash_units(*a, *s, qt);
    }
    /* Only small grids (under 4 waves) gain; the limits keep each block's walk to its first
     * query tile short and the line's unit numbers in int range. */
    if (force == 0 || longest < 2 || s->q_tiles > 1024 || bh * s->q_tiles >= 4LL * sms ||
        bh * units > (1LL << 30))
        return;
    s->units = (int)units;
    const long long total = bh * units;
    if (force > 0) {
        s->chunk = force;
    } else {
        /* One wave of equal blocks against the unsplit dispatch, in key-tile steps.
         * Fitted to the schedule sweep bench/results/2026-11-24-h100-cuda-balanced-schedule-sweep.jsonl
         * (no split against the automatic chunk at the article's shapes; chunks that need a second wave
         * are always slower): 16-bit tiles (32 keys) stream K and V at the L2's limit once
         * every SM is busy (a step then costs ~1.3x the one of the unsplit tail), a
         * segment's Q load, pipeline fill and epilogue ~1 step, and writing and merging
         * the cut tiles ~3; f32 tiles (3xTF32, 8-32 keys) are compute-bound and their fixed
         * costs small.  This picks the measured best of {no split, automatic} at all ten
         * article shapes (16-bit: 1x4096, 2x2048, 4x1024 split; f32: all but 16x128). */
        const bool wide16 = a->dtype != 0;
        const double contention = wide16 ? 1.3 : 1.0, item = wide16 ? 1.0 : 0.5;
        const double part = 0.5, combine = 2.0;
        const long long chunk = (total + sms - 1) / sms;
        const double balanced = contention * chunk + 2 * item + 2 * part + combine;
        if (balanced < 0.9 * estimate_unsplit(*a, *s, sms, item) && chunk < longest)
            s->chunk = (int)chunk;
    }
    if (!s->chunk) return;
    s->blocks = (int)((total + s->chunk - 1) / s->chunk);
    s->slots = 2 * s->blocks;
}

extern "C" int pa_flash_halves_fit(const pa_gpu_args *a, const pa_flash_split *s, int sms,
                                   int force)
{
    const long long blocks = 2LL * a->batch * a->heads_q * s->q_tiles; /* grid.x */
    int longest = 0;
    for (int qt = 0; qt < s->q_tiles; ++qt) {
        const int n = pa_flash_tiles(*a, *s, qt);
        longest = n > longest ? n : longest;
    }
    if (longest < 2 || blocks > (1LL << 30)) return 0;
    if (force) return 1;
    /* Fitted to GPU time (CUDA-graph replays,
     * bench/results/2026-11-24-h100-cuda-wide-schedules.md): within two waves of clusters, halving pays
     * where the chains are long (16 key tiles or more: 16-bit 4x512 D 768 1.15x, 8x512
     * 1.10x, the balanced schedule's shapes 1.04-1.10x, f32 likewise), or, for f32, in one
     * wave (16x128 D 512 1.30x).  It loses with short chains in two waves (f32 32x128
     * 0.85x, 16-bit 32x128 0.64x) and for 16-bit short chains in one (16x128 0.94x, 16x256
     * 0.85x): a 16-bit key tile is cheap beside the merge. */
    if (blocks > 2LL * sms) return 0;
    return longest >= 16 || (a->dtype == 0 && blocks <= sms);
}

extern "C" int pa_flash_col_halves_fit(const pa_gpu_args *a, int key_tile, int sms, int force)
{
    const long long q_tiles = (a->seq_q + PA_FLASH_TILE_M - 1) / PA_FLASH_TILE_M;
    const long long blocks = 2LL * a->batch * a->heads_q * q_tiles; /* grid.x */
    if (blocks > (1LL << 30) || a->seq_kv < 1) return 0;
    if (force) return 1;
    /* Measured as GPU time (bench/results/2026-11-24-h100-cuda-column-halves-*.md).
     * 16-bit: with the fence-free exchange it gains in one wave of clusters
     * with chains under 16 key tiles (16x128 D 512 1.04x, 16x128 D 1024 1.26x, 8x256 D 768
     * 1.14x, 4x128 1.07x) and loses in two waves (16x256 0.92x, 32x128 0.84x) and to key
     * halves on long chains (1x512 D 768 0.72x).  f32 gains at D 1024 everywhere (1.05-1.74x:
     * the halved Q tile leaves room for 32-key tiles instead of 8) and at D 512 and 768 within
     * two waves of clusters (1.03-1.09x); with more waves it loses there (D 512: 0.77x at
     * 8x1024, 0.84x at 64x512; D 768: 0.91x at 16x512 non-causal). */
    if (a->dtype != 0) { /* the last query tile has the longest chain */
        const int longest = (pa_flash_visible(*a, a->seq_q - 1) + key_tile - 1) / key_tile;
        return blocks <= sms && longest < 16;
    }
    return a->head_dim >= 1024 || blocks <= 2LL * sms;
}

extern "C" uint64_t pa_flash_split_bytes(const pa_gpu_args *a, const pa_flash_split *s)
{
    if (!s->chunk) return 0;
    const uint64_t es = a->dtype == 0 ? 4 : 2;
    return (uint64_t)s->slots * s->tile_m * ((uint64_t)a->head_dim_v * es + sizeof(float)) +
           (uint64_t)s->blocks * sizeof(pa_flash_record);
}

namespace
{

/* Launches the combine kernel, as a programmatic dependent launch where the plan says the
 * device has them (sm_90 and newer, decided when planning): its launch overlaps the main
 * kernel's tail, and griddepcontrol.wait at its start waits for the main kernel's writes. */
template <typename T>
cudaError_t launch_combine(const pa_gpu_args &a, const pa_flash_split &s, cudaStream_t st)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(s.blocks, s.tile_m);
    cfg.blockDim = dim3(a.head_dim_v / 4); /* head_dim_v: 512, 768 or 1024 */
    cfg.stream = st;
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = &attr;
    cfg.numAttrs = s.dependent_combine ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, flash_fwd_split_combine_kernel<T>, a, s);
}

} // namespace

extern "C" int pa_cuda_flash_combine(const pa_gpu_args *a, const pa_flash_split *s, void *stream)
{
    if (!s->chunk) return 0;
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (a->dtype == 1) return (int)launch_combine<__half>(*a, *s, st);
    if (a->dtype == 2) return (int)launch_combine<__nv_bfloat16>(*a, *s, st);
    return (int)launch_combine<float>(*a, *s, st);
}
