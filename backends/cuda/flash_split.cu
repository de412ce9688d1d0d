/*
 * Split-key schedule of the wide flash forward: the host planner and
 * flash_fwd_split_combine_kernel (see flash_split.h).
 */
#include "flash_split.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace
{

constexpr float kLn2 = 0.6931471805599453f;

/* Estimated time of a schedule (microseconds).  step: one key tile of one block with every
 * SM busy; item: fixed cost of a block (Q load, pipeline fill, epilogue); part: writing a
 * partial slot.  Greedy in-order dispatch of longest-first blocks ends within about half
 * the longest block of the mean load; the mean pays 1.3x for the shared L2 bandwidth when
 * every SM streams K and V (measured: 8-way splits gained far less than the idle SMs
 * suggested).  The combine reads every partial once (~2 TB/s) after a launch. */
double estimate(const pa_gpu_args &a, const pa_flash_split &s, int sms, double step, double item,
                double part)
{
    double total = 0, longest = 0, slots = 0;
    for (int qt = 0; qt < s.q_tiles; ++qt) {
        const int n = pa_flash_tiles(a, s, qt);
        const int k = pa_flash_splits(s, n);
        total += n * step + k * item + (k > 1 ? k * part : 0);
        const double len = (double)(n + k - 1) / k * step + item + (k > 1 ? part : 0);
        longest = len > longest ? len : longest;
        slots += k > 1 ? k : 0;
    }
    const double bh = (double)a.batch * a.heads_q;
    const double mean = 1.3 * total * bh / sms;
    const double t = mean + 0.5 * longest;
    const double combine_bytes =
        slots * bh * s.tile_m * (a.head_dim_v * (a.dtype == 0 ? 4.0 : 2.0) + 4.0);
    return (t > longest ? t : longest) + (slots > 0 ? 4.0 + combine_bytes / 2.0e6 : 0);
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

/* One block per (query row, batch*head): rows of tiles that were not split are done.
 * Rows in parallel (not looped in a block): the loads of a row depend on its LSEs. */
template <typename T>
__global__ void __launch_bounds__(128) flash_fwd_split_combine_kernel(pa_gpu_args a,
                                                                      pa_flash_split s)
{
    const int row = blockIdx.x, bh = blockIdx.y;
    const int qt = row / s.tile_m, lr = row % s.tile_m;
    const int k = pa_flash_splits(s, pa_flash_tiles(a, s, qt));
    if (k < 2) return;
    const int slot0 = bh * s.slots + pa_flash_slot_base(a, s, qt);
    const int head = bh % a.heads_q, batch = bh / a.heads_q;
    const int dv = a.head_dim_v; /* 512, 768 or 1024: a multiple of 4 */
    const int64_t total_slots = (int64_t)a.batch * a.heads_q * s.slots;
    const T *part_o = static_cast<const T *>(s.part);
    const float *part_lse =
        reinterpret_cast<const float *>(part_o + total_slots * s.tile_m * dv);
    float lse[PA_FLASH_MAX_SPLITS], m = -INFINITY;
#pragma unroll
    for (int r = 0; r < PA_FLASH_MAX_SPLITS; ++r) {
        lse[r] = r < k ? part_lse[(int64_t)(slot0 + r) * s.tile_m + lr] : -INFINITY;
        m = fmaxf(m, lse[r]);
    }
    float w[PA_FLASH_MAX_SPLITS], wsum = 0.f;
#pragma unroll
    for (int r = 0; r < PA_FLASH_MAX_SPLITS; ++r) {
        w[r] = m != -INFINITY && r < k ? exp2f(lse[r] - m) : 0.f;
        wsum += w[r];
    }
    const float inv = wsum > 0.f ? 1.f / wsum : 0.f;
    T *orow = static_cast<T *>(a.o) + batch * a.o_stride[0] + head * a.o_stride[1] +
              (int64_t)row * a.o_stride[2];
    for (int c = 4 * threadIdx.x; c < dv; c += 4 * blockDim.x) {
        float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
        for (int r = 0; r < PA_FLASH_MAX_SPLITS; ++r)
            if (r < k) {
                const float4 x =
                    load4(part_o + ((int64_t)(slot0 + r) * s.tile_m + lr) * dv + c);
                acc.x += w[r] * x.x, acc.y += w[r] * x.y, acc.z += w[r] * x.z, acc.w += w[r] * x.w;
            }
        const int64_t cs = a.o_stride[3];
        store<T>(orow + c * cs, acc.x * inv);
        store<T>(orow + (c + 1) * cs, acc.y * inv);
        store<T>(orow + (c + 2) * cs, acc.z * inv);
        store<T>(orow + (c + 3) * cs, acc.w * inv);
    }
    if (a.lse && threadIdx.x == 0)
        a.lse[((int64_t)batch * a.heads_q + head) * a.seq_q + row] =
            wsum > 0.f ? (m + log2f(wsum)) * kLn2 : -INFINITY;
}

} // namespace

extern "C" void pa_flash_split_plan(const pa_gpu_args *a, int tile_m, int key_tile, int sms,
                                    int force, pa_flash_split *s)
{
    s->tile_m = tile_m;
    s->chunk = 0;
    s->key_tile = key_tile;
    s->q_tiles = (a->seq_q + tile_m - 1) / tile_m;
    s->max_splits = 1;
    s->slots = 0;
    s->part = NULL;
    const long long bh = (long long)a->batch * a->heads_q;
    int longest = 0;
    for (int qt = 0; qt < s->q_tiles; ++qt) {
        const int n = pa_flash_tiles(*a, *s, qt);
        longest = n > longest ? n : longest;
    }
    /* Only small grids (under 4 waves) gain; the limits keep the slot walk short and the
     * combine's grid (rows x batch*heads) in range. */
    if (force == 0 || longest < 2 || s->q_tiles > 1024 || bh * s->q_tiles >= 4LL * sms ||
        bh > 65535)
        return;
    /* The split-chunk sweep of bench/results/cuda-seed-h100-2026-11-24 (every chunk the
     * planner could pick, at the five seed shapes): f32 (3xTF32, 4.3 us per 8-key tile) was
     * fastest with up to 8 splits, f16/bf16 (4.4 us per 32-key tile) with 2 at most (4 and
     * 8 lost their balance gain to the Q reloads, partial writes and the combine) and not
     * at all when the estimate gained under 10%.  These limits reproduce the measured best
     * chunk at 9 of the 10 shapes (the tenth within 5%). */
    const int cap = a->dtype == 0 ? PA_FLASH_MAX_SPLITS : 2;
    const double gain = a->dtype == 0 ? 0.95 : 0.9;
    const int min_chunk = (longest + (force > 0 ? PA_FLASH_MAX_SPLITS : cap) - 1) /
                          (force > 0 ? PA_FLASH_MAX_SPLITS : cap);
    if (force > 0) {
        s->chunk = force < min_chunk ? min_chunk : force;
    } else {
        /* Costs measured on the H100 without a split (bench/results/cuda-seed-h100-*):
         * a key tile of 32 x 1024 f16 takes ~4.4 us, of 8 x 1024 f32 (3xTF32) ~4.3 us. */
        const double per_key_dim = a->dtype == 0 ? 4.3 / (8.0 * 1024) : 4.4 / (32.0 * 1024);
        const double step = per_key_dim * key_tile * a->head_dim;
        const double ratio = (double)tile_m / (2.0 * key_tile); /* Q vs K+V bytes */
        const double item = (0.25 + 0.5 * ratio) * step;
        const double part = (a->dtype == 0 ? 1.3 : 0.65) * a->head_dim_v / 1024.0;
        pa_flash_split best = *s;
        best.chunk = 0;
        double best_t = estimate(*a, best, sms, step, item, part);
        for (int c = min_chunk < 1 ? 1 : min_chunk; c < longest; c *= 2) {
            pa_flash_split t = *s;
            t.chunk = c;
            const double e = estimate(*a, t, sms, step, item, part);
            if (e < gain * best_t) best_t = e, best = t;
        }
        s->chunk = best.chunk;
    }
    if (s->chunk >= longest) s->chunk = 0;
    if (!s->chunk) return;
    s->max_splits = pa_flash_splits(*s, longest);
    s->slots = pa_flash_slot_base(*a, *s, s->q_tiles);
}

extern "C" uint64_t pa_flash_split_bytes(const pa_gpu_args *a, const pa_flash_split *s)
{
    if (!s->chunk) return 0;
    const uint64_t slots = (uint64_t)a->batch * a->heads_q * s->slots;
    const uint64_t es = a->dtype == 0 ? 4 : 2;
    return slots * s->tile_m * ((uint64_t)a->head_dim_v * es + sizeof(float));
}

extern "C" int pa_flash_split_blocks(const pa_gpu_args *a, const pa_flash_split *s)
{
    return a->batch * a->heads_q * s->q_tiles * s->max_splits;
}

extern "C" int pa_cuda_flash_combine(const pa_gpu_args *a, const pa_flash_split *s, void *stream)
{
    if (!s->chunk) return 0;
    cudaStream_t st = static_cast<cudaStream_t>(stream);
    const dim3 grid(a->seq_q, a->batch * a->heads_q);
    if (a->dtype == 1)
        flash_fwd_split_combine_kernel<__half><<<grid, 128, 0, st>>>(*a, *s);
    else if (a->dtype == 2)
        flash_fwd_split_combine_kernel<__nv_bfloat16><<<grid, 128, 0, st>>>(*a, *s);
    else
        flash_fwd_split_combine_kernel<float><<<grid, 128, 0, st>>>(*a, *s);
    return (int)cudaGetLastError();
}
