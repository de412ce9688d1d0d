/*
 * CUDA fused: the shared one-launch kernel (backends/gpu, through gpu_glue.c), scores of
 * each 32-query tile in shared memory or the workspace, decided at plan time; its backward
 * is flash's (cuda_backward.c).
 */
#include "cuda_internal.h"

#include "../gpu/gpu_glue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct fused_plan {
    int in_smem;
    uint64_t workspace;
    pa_cuda_bwd_plan bwd;
} fused_plan;

static polyattn_status plan_make(pa_cuda_device *dev, const pa_problem *p, fused_plan *fp,
                                 const char **why_not)
{
    memset(fp, 0, sizeof *fp);
    const char *why = pa_cuda_int_sizes_refusal(p);
    if (why) return *why_not = why, POLYATTN_STATUS_UNSUPPORTED;
    if (p->head_dim > PA_GPU_MAX_HEAD_DIM || p->head_dim_v > PA_GPU_MAX_HEAD_DIM) {
        *why_not = "head_dim and head_dim_v must be <= 1024 for the fused kernel";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    pa_cuda_force f;
    polyattn_status st = pa_cuda_force_get(dev, &f, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    pa_gpu_glue g;
    pa_cuda_glue(dev, &g);
    st = pa_gpu_fused_plan(&g, p, &fp->in_smem, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    fp->workspace = pa_gpu_fused_plan_workspace(&g, p, fp->in_smem);
    snprintf(dev->note[1], sizeof dev->note[1], "one launch; scores of each 32-query tile in %s",
             fp->in_smem ? "shared memory" : "the workspace");
    if (p->want_backward) {
        st = pa_cuda_bwd_plan_make(dev, p, &f, &fp->bwd, why_not);
        if (st != POLYATTN_STATUS_SUCCESS) {
            char tmp[sizeof dev->why];
            snprintf(tmp, sizeof tmp, "%s", *why_not);
            snprintf(dev->why, sizeof dev->why,
                     "fused backward runs the flash backward kernels (no O(N^2) backward): %.170s",
                     tmp);
            *why_not = dev->why;
            return st;
        }
        pa_cuda_bwd_note(&fp->bwd, p, dev->note[1], sizeof dev->note[1]);
        const size_t used = strlen(dev->note[1]);
        if (used < sizeof dev->note[1])
            snprintf(dev->note[1] + used, sizeof dev->note[1] - used, " (flash's, O(seq) memory)");
    }
    *why_not = dev->note[1];
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status pa_cuda_fused_check(pa_device *d, const pa_problem *p, const char **why_not)
{
    fused_plan fp;
    return plan_make(pa_cuda_dev(d), p, &fp, why_not);
}

uint64_t pa_cuda_fused_workspace(pa_device *d, const pa_problem *p)
{
    fused_plan fp;
    const char *why;
    return plan_make(pa_cuda_dev(d), p, &fp, &why) == POLYATTN_STATUS_SUCCESS ? fp.workspace : 0;
}

int pa_cuda_fused_launches(pa_device *d, const pa_problem *p)
{
    (void)d, (void)p;
    return 1;
}

uint64_t pa_cuda_fused_backward_workspace(pa_device *d, const pa_problem *p)
{
    fused_plan fp;
    const char *why;
    return plan_make(pa_cuda_dev(d), p, &fp, &why) == POLYATTN_STATUS_SUCCESS ? fp.bwd.workspace
                                                                              : 0;
}

polyattn_status pa_cuda_fused_prepare(pa_device *d, const pa_problem *p, void **state)
{
    *state = NULL;
    fused_plan *fp = (fused_plan *)malloc(sizeof *fp);
    if (!fp) return pa_fail(d, POLYATTN_STATUS_OUT_OF_MEMORY, "fused: host memory");
    const char *why = NULL;
    polyattn_status st = plan_make(pa_cuda_dev(d), p, fp, &why);
    if (st != POLYATTN_STATUS_SUCCESS) {
        free(fp);
        return pa_fail(d, st, "fused: %s", why ? why : polyattn_status_string(st));
    }
    pa_log(POLYATTN_LOG_DISPATCH, "cuda fused: scores of each 32-query tile in %s",
           fp->in_smem ? "shared memory" : "the workspace");
    if (p->want_backward) pa_cuda_bwd_log("fused", &fp->bwd, p);
    *state = fp;
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status pa_cuda_fused_forward(pa_device *d, const pa_problem *p, void *state,
                                      const pa_io *io)
{
    pa_cuda_device *dev = pa_cuda_dev(d);
    const fused_plan *fp = (const fused_plan *)state;
    if (!fp) return pa_fail(d, POLYATTN_STATUS_INTERNAL_ERROR, "fused: the plan has no state");
    PA_CU(d, cudaSetDevice(dev->ordinal));
    pa_gpu_glue g;
    pa_cuda_glue(dev, &g);
    return pa_gpu_fused_run(&g, p, fp->in_smem, io, dev->stream);
}

polyattn_status pa_cuda_fused_backward(pa_device *d, const pa_problem *p, void *state,
                                       const pa_backward_io *io)
{
    const fused_plan *fp = (const fused_plan *)state;
    if (!fp) return pa_fail(d, POLYATTN_STATUS_INTERNAL_ERROR, "fused: the plan has no state");
    return pa_cuda_bwd_run(pa_cuda_dev(d), p, &fp->bwd, io);
}
