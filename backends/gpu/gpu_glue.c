/* Host glue shared by the CUDA and HIP backends: see gpu_glue.h. */
#include "gpu_glue.h"

#include <stdio.h>

polyattn_status pa_gpu_fused_plan(const pa_gpu_glue *g, const pa_problem *p, int *in_smem,
                                  const char **why_not)
{
    pa_gpu_args a;
    pa_gpu_args_fill(p, NULL, &a);
    *in_smem = g->fns->fused_smem(&a, 1) <= g->smem_limit;
    if (*in_smem) return POLYATTN_STATUS_SUCCESS;
    const size_t need = g->fns->fused_smem(&a, 0);
    if (need <= g->smem_limit) return POLYATTN_STATUS_SUCCESS;
    snprintf(g->why, g->why_size,
             "the fused kernel needs %zu bytes of %s per block (scores in the workspace; grows "
             "with head_dim), the device offers %llu",
             need, g->smem_name, (unsigned long long)g->smem_limit);
    *why_not = g->why;
    return POLYATTN_STATUS_UNSUPPORTED;
}

uint64_t pa_gpu_fused_plan_workspace(const pa_gpu_glue *g, const pa_problem *p, int in_smem)
{
    if (in_smem) return 0;
    pa_gpu_args a;
    pa_gpu_args_fill(p, NULL, &a);
    return g->fns->fused_workspace(&a);
}

polyattn_status pa_gpu_fused_run(const pa_gpu_glue *g, const pa_problem *p, int in_smem,
                                 const pa_io *io, void *stream)
{
    pa_gpu_args a;
    pa_gpu_args_fill(p, io, &a);
    if (!in_smem) {
        const uint64_t need = g->fns->fused_workspace(&a);
        if (!a.workspace || io->workspace_bytes < need)
            return pa_fail(g->dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                           "fused: the scores need a workspace of %llu bytes (got %llu)",
                           (unsigned long long)need, (unsigned long long)io->workspace_bytes);
    }
    return g->launch_status(g->dev, g->fns->fused(&a, in_smem, stream),
                            "pa_gpu_fused (fused_attn_kernel)");
}

const char *pa_gpu_simt_bwd_refusal(const pa_gpu_glue *g, const pa_problem *p)
{
    if (!g->fns->flash_bwd) return "this build has no SIMT flash backward";
    pa_gpu_bwd_args ba;
    pa_gpu_bwd_args_fill(p, NULL, &ba);
    const size_t need = g->fns->flash_bwd_smem(&ba);
    if (need == 0) return "the SIMT flash backward has no tile for these head dims";
    if (need <= g->smem_limit) return NULL;
    snprintf(g->why, g->why_size,
             "the SIMT flash backward needs %zu bytes of %s per block (grows with head_dim), the "
             "device offers %llu",
             need, g->smem_name, (unsigned long long)g->smem_limit);
    return g->why;
}

uint64_t pa_gpu_simt_bwd_workspace(const pa_gpu_glue *g, const pa_problem *p)
{
    pa_gpu_bwd_args ba;
    pa_gpu_bwd_args_fill(p, NULL, &ba);
    return g->fns->flash_bwd_workspace(&ba);
}

/* dK/dV per key tile; dQ by f32 atomics into the workspace or, deterministic, by a second
 * pass per query tile. */
polyattn_status pa_gpu_simt_bwd_run(const pa_gpu_glue *g, const pa_problem *p,
                                    const pa_backward_io *io, void *stream)
{
    pa_gpu_bwd_args ba;
    pa_gpu_bwd_args_fill(p, io, &ba);
    const uint64_t need = g->fns->flash_bwd_workspace(&ba);
    if (need && (!io->workspace.mem || io->workspace_bytes < need))
        return pa_fail(g->dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "flash backward: the workspace must hold %llu bytes (got %llu)",
                       (unsigned long long)need, (unsigned long long)io->workspace_bytes);
    return g->launch_status(g->dev, g->fns->flash_bwd(&ba, pa_gpu_ptr(&io->workspace), stream),
                            p->deterministic
                                ? "pa_gpu_flash_bwd (flash_bwd_dkdv_kernel, flash_bwd_dq_kernel)"
                                : "pa_gpu_flash_bwd (flash_bwd_dkdv_kernel with dQ atomics)");
}
