/*
 * CUDA flash: the algorithm's entry points over the plan of cuda_flash_plan.c.  prepare keeps
 * the plan in the plan state; forward and backward launch exactly that plan (no choice, no
 * allocation, no synchronisation, no host read-back: capturable in a CUDA graph).
 */
#include "cuda_flash.h"

#include "../gpu/gpu_args_host.h"
#include "flash_f32.h"
#include "flash_tc.h"
#include "flash_hopper.h"
#include "flash_wgmma.h"

#include <stdlib.h>
#include <string.h>

polyattn_status pa_cuda_flash_check(pa_device *d, const pa_problem *p, const char **why_not)
{
    pa_cuda_flash_plan fp;
    return pa_cuda_flash_plan_make(pa_cuda_dev(d), p, &fp, why_not);
}

uint64_t pa_cuda_flash_workspace(pa_device *d, const pa_problem *p)
{
    pa_cuda_flash_plan fp;
    const char *why;
    return pa_cuda_flash_plan_make(pa_cuda_dev(d), p, &fp, &why) == POLYATTN_STATUS_SUCCESS
               ? fp.workspace
               : 0;
}

int pa_cuda_flash_launches(pa_device *d, const pa_problem *p)
{
    pa_cuda_flash_plan fp;
    const char *why;
    return pa_cuda_flash_plan_make(pa_cuda_dev(d), p, &fp, &why) == POLYATTN_STATUS_SUCCESS
               ? fp.launches
               : 1;
}

uint64_t pa_cuda_flash_backward_workspace(pa_device *d, const pa_problem *p)
{
    pa_cuda_flash_plan fp;
    const char *why;
    return pa_cuda_flash_plan_make(pa_cuda_dev(d), p, &fp, &why) == POLYATTN_STATUS_SUCCESS
               ? fp.bwd.workspace
               : 0;
}

void pa_cuda_plan_release(pa_device *d, void *state)
{
    (void)d;
    free(state);
}

polyattn_status pa_cuda_flash_prepare(pa_device *d, const pa_problem *p, void **state)
{
    pa_cuda_device *dev = pa_cuda_dev(d);
    *state = NULL;
    pa_cuda_flash_plan *fp = (pa_cuda_flash_plan *)malloc(sizeof *fp);
    if (!fp) return pa_fail(d, POLYATTN_STATUS_OUT_OF_MEMORY, "flash: host memory");
    const char *why = NULL;
    polyattn_status st = pa_cuda_flash_plan_make(dev, p, fp, &why);
    if (st != POLYATTN_STATUS_SUCCESS) {
        free(fp);
        return pa_fail(d, st, "flash: %s", why ? why : polyattn_status_string(st));
    }
    pa_cuda_force f;
    if (pa_cuda_force_get(dev, &f, &why) == POLYATTN_STATUS_SUCCESS) {
        char forced[160];
        pa_cuda_force_describe(&f, forced, sizeof forced);
        if (forced[0]) pa_log(POLYATTN_LOG_DISPATCH, "cuda flash: POLYATTN_FORCE%s", forced);
    }
    pa_cuda_flash_plan_log(fp, p);
    *state = fp;
    return POLYATTN_STATUS_SUCCESS;
}

static int aligned16(const void *ptr) { return ((uintptr_t)ptr & 15u) == 0; }

polyattn_status pa_cuda_flash_forward(pa_device *d, const pa_problem *p, void *state,
                                      const pa_io *io)
{
    pa_cuda_device *dev = pa_cuda_dev(d);
    const pa_cuda_flash_plan *fp = (const pa_cuda_flash_plan *)state;
    if (!fp) return pa_fail(d, POLYATTN_STATUS_INTERNAL_ERROR, "flash: the plan has no state");
    pa_gpu_args a;
    pa_gpu_args_fill(p, io, &a);
    if (fp->kernel != PA_CUDA_FWD_SIMT &&
        !(aligned16(a.q) && aligned16(a.k) && aligned16(a.v) && aligned16(a.o)))
        return pa_fail(d, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "flash: the plan runs a tensor-core kernel, which needs q, k, v and o "
                       "16-byte aligned (buffer views at such offsets; "
                       "POLYATTN_FORCE=cuda.flash=simt plans the generic kernel)");
    if (fp->workspace && (!a.workspace || io->workspace_bytes < fp->workspace))
        return pa_fail(d, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "flash: the workspace must hold %llu bytes",
                       (unsigned long long)fp->workspace);
    PA_CU(d, cudaSetDevice(dev->ordinal));
    if (p->has_kv_append) PA_CU_LAUNCH(d, pa_gpu_kv_append(&a, dev->stream));
    if (fp->serving) {
        pa_gpu_split_bind(p, &a, fp->splits, 0);
        if (fp->kernel == PA_CUDA_FWD_SIMT) PA_CU_LAUNCH(d, pa_gpu_flash_generic(&a, dev->stream));
        else PA_CU_LAUNCH(d, pa_cuda_flash_serving(&a, fp->pack, fp->stages, dev->stream));
        if (fp->splits > 1) {
            pa_gpu_merge_args m;
            pa_gpu_split_merge_args(p, &a, &m);
            PA_CU_LAUNCH(d, pa_gpu_merge(&m, dev->stream));
        }
        return POLYATTN_STATUS_SUCCESS;
    }
    pa_flash_split s = fp->split;
    s.part = a.workspace;
    switch (fp->kernel) {
    case PA_CUDA_FWD_WGMMA:
#ifdef POLYATTN_CUDA_HAVE_WGMMA
        PA_CU_LAUNCH(d, pa_cuda_flash_wgmma(&a, s.wgmma_plan, dev->stream));
        break;
#else
        return pa_fail(d, POLYATTN_STATUS_INTERNAL_ERROR, "flash: no wgmma kernel in this build");
#endif
    case PA_CUDA_FWD_HOPPER:
#ifdef POLYATTN_CUDA_HAVE_WGMMA
        PA_CU_LAUNCH(d, pa_cuda_flash_hopper(&a,
                                             (fp->pingpong ? PA_HOPPER_PINGPONG : 0) |
                                                 (fp->overlap ? PA_HOPPER_OVERLAP : 0) |
                                                 (fp->bias_smem ? PA_HOPPER_BIAS_SMEM : 0) |
                                                 (fp->exp2_poly ? PA_HOPPER_EXP2_POLY : 0),
                                             dev->stream));
        break;
#else
        return pa_fail(d, POLYATTN_STATUS_INTERNAL_ERROR, "flash: no Hopper kernel in this build");
#endif
    case PA_CUDA_FWD_MMA:
        if (p->dtype == POLYATTN_DTYPE_F32 && pa_cuda_flash_f32_tile_has_head_dim(a.head_dim))
            PA_CU_LAUNCH(d, pa_cuda_flash_f32_tile(&a, dev->stream));
        else if (p->dtype == POLYATTN_DTYPE_F32)
            PA_CU_LAUNCH(d, pa_cuda_flash_f32(&a, &s, dev->stream));
        else PA_CU_LAUNCH(d, pa_cuda_flash_tc(&a, &s, dev->stream));
        break;
    default: PA_CU_LAUNCH(d, pa_gpu_flash_generic(&a, dev->stream)); break;
    }
    return POLYATTN_STATUS_SUCCESS;
}

int pa_cuda_flash_splits(pa_device *d, const pa_problem *p)
{
    pa_cuda_flash_plan fp;
    const char *why;
    return pa_cuda_flash_plan_make(pa_cuda_dev(d), p, &fp, &why) == POLYATTN_STATUS_SUCCESS &&
                   fp.splits > 1
               ? fp.splits
               : 1;
}

polyattn_status pa_cuda_flash_backward(pa_device *d, const pa_problem *p, void *state,
                                       const pa_backward_io *io)
{
    const pa_cuda_flash_plan *fp = (const pa_cuda_flash_plan *)state;
    if (!fp) return pa_fail(d, POLYATTN_STATUS_INTERNAL_ERROR, "flash: the plan has no state");
    return pa_cuda_bwd_run(pa_cuda_dev(d), p, &fp->bwd, io);
}
