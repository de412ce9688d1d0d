/*
 * The wgmma flash kernel's plan (flash_wgmma.h): which of wide blocks, narrow blocks or the
 * key split a problem runs with, from a model of its time fitted to the H100.  Host code
 * only, apart from the kernel so that the CPU test of the schedules (tests/cuda) checks it.
 */
#include "flash_wgmma.h"
#include "flash_split.cuh" /* pa_flash_visible */

#include <math.h>
#include <string.h>

#include <algorithm>

namespace
{

const char *const kPlanNames[PA_WGMMA_PLANS] = {"wide", "narrow", "key-split"};

/* Time of a plan in units of one wide block's key tile, for a grid of one block an SM: the
 * longer of its longest chain of key tiles and its total work spread over the SMs. */
double plan_time(int plan, double longest, double work, double blocks, int sms)
{
    /* a narrow block's key tile takes ~0.9 of a wide one's (P V and V's load halve, Q K^T
     * does not); the key split halves the chain and adds a merge of ~1.5 key tiles (4800
     * cycles against ~3300: phase counters at commits 8bf1bd3 and 01f76f6) */
    if (plan == PA_WGMMA_NARROW) longest *= 0.9, work *= 2 * 0.9;
    if (plan == PA_WGMMA_KEY_SPLIT) longest = ceil(longest / 2) + 1.5, work += 2 * blocks * 1.5;
    return fmax(longest, work / sms);
}

} // namespace

extern "C" const char *pa_cuda_flash_wgmma_plan_name(int plan)
{
    return plan >= 0 && plan < PA_WGMMA_PLANS ? kPlanNames[plan] : "?";
}

extern "C" int pa_cuda_flash_wgmma_plan(const pa_gpu_args *a, int sms, const char *force)
{
    const int tile = PA_WGMMA_TILE;
    const long long q_tiles = (a->seq_q + tile - 1) / tile;
    const long long blocks =
        (long long)(a->head_dim / PA_WGMMA_WIDE_COLS) * q_tiles * a->heads_q * a->batch;
    if (a->seq_q < 1 || a->seq_kv < 1 || blocks > (1LL << 29))
        return PA_WGMMA_WIDE; /* the others double the grid */
    for (int p = 0; force && p < PA_WGMMA_PLANS; ++p)
        if (!strcmp(force, kPlanNames[p])) return p;
    /* the wide grid's chains of key tiles: query tile qt's ends at its last row's keys */
    double work = 0;
    for (long long qt = 0; qt < q_tiles; ++qt) {
        const int last_row = (int)std::min<long long>(qt * tile + tile, a->seq_q) - 1;
        work += (pa_flash_visible(*a, last_row) + tile - 1) / tile;
    }
    work *= (double)blocks / (double)q_tiles;
    const double longest = (pa_flash_visible(*a, a->seq_q - 1) + tile - 1) / tile;
    /* The model picks what was fastest at all 11 shapes of bench/results/2026-11-25-h100-cuda-wgmma-plans.md (GPU time):
     * narrow 1.07-1.12x where its grid fits the GPU (16x128, 8x128 D 512, 4x256 D 768),
     * 0.56-0.77x where it does not (32x128, 4x4x1024 D 512, 8x512 D 768); the key split
     * 1.13-1.72x on chains of 4-64 key tiles in one wave (4x256 D 768, 1x512, 2x1024,
     * 1x4096 D 512 causal), 0.52-0.83x elsewhere.  Another plan must beat wide by 3%. */
    int best = PA_WGMMA_WIDE;
    double best_t = plan_time(best, longest, work, (double)blocks, sms) / 1.03;
    for (int p = PA_WGMMA_NARROW; p < PA_WGMMA_PLANS; ++p) {
        const double t = plan_time(p, longest, work, (double)blocks, sms);
        if (t < best_t) best = p, best_t = t;
    }
    return best;
}
