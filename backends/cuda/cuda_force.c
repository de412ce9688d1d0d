/*
 * The CUDA backend's POLYATTN_FORCE keys (README, "Forcing a path"), read at plan time from
 * the value the core kept when the context was made.  Tests and benchmarks use them to reach
 * every kernel; a value this backend does not know fails planning with its name.
 */
#include "cuda_internal.h"
#include "flash_tc.h" /* PA_CUDA_SERVING_MAX_STAGES */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kFlash[] = {"auto", "simt", "mma", "wgmma"};
static const char *const kSchedule[] = {"auto", "grid", "split", "key-halves", "col-halves"};
static const char *const kBwd[] = {"auto", "simt", "mma", "wgmma"}; /* pa_cuda_bwd_kernel */
static const char *const kHopperSched[] = {"auto", "serial", "pingpong", "overlap"};
static const char *const kHopperBias[] = {"auto", "regs", "smem"};
static const char *const kHopperExp2[] = {"auto", "mufu", "poly"};
static const char *const kWgmmaPlans[] = {"wide", "narrow", "key-split"}; /* flash_wgmma.h */

static int index_of(const char *v, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) return i;
    return -1;
}

static polyattn_status bad(pa_cuda_device *dev, const char *key, const char *value,
                           const char *allowed, const char **why_not)
{
    snprintf(dev->why, sizeof dev->why, "POLYATTN_FORCE: %s=%s is not one of %s", key, value,
             allowed);
    *why_not = dev->why;
    return POLYATTN_STATUS_INVALID_ARGUMENT;
}

polyattn_status pa_cuda_force_get(pa_cuda_device *dev, pa_cuda_force *f, const char **why_not)
{
    memset(f, 0, sizeof *f);
    const pa_device *d = &dev->base;
    char v[32];
    if (pa_force_get(d, "cuda.flash", v, sizeof v)) {
        const int i = index_of(v, kFlash, 4);
        if (i < 0) return bad(dev, "cuda.flash", v, "auto, simt, mma, wgmma", why_not);
        f->flash = (pa_cuda_fwd_kernel)i;
    }
    if (pa_force_get(d, "cuda.schedule", v, sizeof v)) {
        int i = index_of(v, kSchedule, 5);
        if (i < 0 && !strncmp(v, "split:", 6)) {
            char *end;
            const long n = strtol(v + 6, &end, 10);
            if (!*end && n > 0 && n < (1 << 20)) i = PA_CUDA_SCHED_SPLIT, f->split_chunk = (int)n;
        } else if (i == PA_CUDA_SCHED_SPLIT) {
            i = -1; /* the balanced schedule is forced with its chunk: split:N */
        }
        if (i < 0)
            return bad(dev, "cuda.schedule", v, "auto, grid, split:N, key-halves, col-halves",
                       why_not);
        f->schedule = (pa_cuda_schedule)i;
    }
    if (pa_force_get(d, "cuda.wgmma_plan", v, sizeof v)) {
        const int i = index_of(v, kWgmmaPlans, 3);
        if (i < 0 && strcmp(v, "auto"))
            return bad(dev, "cuda.wgmma_plan", v, "auto, wide, narrow, key-split", why_not);
        f->wgmma_plan = i < 0 ? NULL : kWgmmaPlans[i];
    }
    if (pa_force_get(d, "cuda.flash_bwd", v, sizeof v)) {
        const int i = index_of(v, kBwd, 4);
        if (i < 0) return bad(dev, "cuda.flash_bwd", v, "auto, simt, mma, wgmma", why_not);
        f->bwd = (pa_cuda_bwd_kernel)i;
    }
    if (pa_force_get(d, "cuda.bwd_tile", v, sizeof v)) {
        if (strcmp(v, "a") && strcmp(v, "b") && strcmp(v, "f") && strcmp(v, "auto"))
            return bad(dev, "cuda.bwd_tile", v, "auto, a, b, f", why_not);
        f->bwd_tile = strcmp(v, "auto") ? v[0] : 0;
    }
    if (pa_force_get(d, "cuda.serving_stages", v, sizeof v) && strcmp(v, "auto")) {
        const int n = atoi(v);
        if (n < 2 || n > PA_CUDA_SERVING_MAX_STAGES || strspn(v, "0123456789") != strlen(v))
            return bad(dev, "cuda.serving_stages", v, "auto, 2 .. 6", why_not);
        f->serving_stages = n;
    }
    if (pa_force_get(d, "cuda.hopper_sched", v, sizeof v)) {
        const int i = index_of(v, kHopperSched, 4);
        if (i < 0)
            return bad(dev, "cuda.hopper_sched", v, "auto, serial, pingpong, overlap", why_not);
        f->hopper_sched = i;
    }
    if (pa_force_get(d, "cuda.hopper_exp2", v, sizeof v)) {
        const int i = index_of(v, kHopperExp2, 3);
        if (i < 0) return bad(dev, "cuda.hopper_exp2", v, "auto, mufu, poly", why_not);
        f->hopper_exp2 = i;
    }
    if (pa_force_get(d, "cuda.hopper_bias", v, sizeof v)) {
        const int i = index_of(v, kHopperBias, 3);
        if (i < 0) return bad(dev, "cuda.hopper_bias", v, "auto, regs, smem", why_not);
        f->hopper_bias = i;
    }
    return POLYATTN_STATUS_SUCCESS;
}

static void add(char *buf, size_t n, const char *key, const char *value)
{
    const size_t used = strlen(buf);
    if (used < n) snprintf(buf + used, n - used, " %s=%s", key, value);
}

void pa_cuda_force_describe(const pa_cuda_force *f, char *buf, size_t n)
{
    buf[0] = '\0';
    if (f->flash) add(buf, n, "cuda.flash", kFlash[f->flash]);
    if (f->schedule) {
        char v[32];
        snprintf(v, sizeof v, "%s", kSchedule[f->schedule]);
        if (f->split_chunk) snprintf(v, sizeof v, "split:%d", f->split_chunk);
        add(buf, n, "cuda.schedule", v);
    }
    if (f->wgmma_plan) add(buf, n, "cuda.wgmma_plan", f->wgmma_plan);
    if (f->bwd) add(buf, n, "cuda.flash_bwd", kBwd[f->bwd]);
    if (f->bwd_tile)
        add(buf, n, "cuda.bwd_tile", f->bwd_tile == 'a' ? "a" : f->bwd_tile == 'b' ? "b" : "f");
    if (f->hopper_sched) add(buf, n, "cuda.hopper_sched", kHopperSched[f->hopper_sched]);
    if (f->hopper_bias) add(buf, n, "cuda.hopper_bias", kHopperBias[f->hopper_bias]);
    if (f->hopper_exp2) add(buf, n, "cuda.hopper_exp2", kHopperExp2[f->hopper_exp2]);
    if (f->serving_stages) {
        char v[8];
        snprintf(v, sizeof v, "%d", f->serving_stages);
        add(buf, n, "cuda.serving_stages", v);
    }
}
