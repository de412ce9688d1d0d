/*
 * Host glue shared by the CUDA and HIP backends (C, never compiled for the device): the fused
 * algorithm's check and forward and the SIMT flash backward, over the shared kernels of
 * gpu_attn.h and flash_bwd.h.  Each backend passes its launchers (direct calls on CUDA; the
 * kernels library's symbols on HIP), its shared-memory limit and its stream; limits of its
 * own (grid sizes, int dimensions) it checks before calling these.
 */
#ifndef POLYATTN_GPU_GLUE_H
#define POLYATTN_GPU_GLUE_H

#include "flash_bwd.h"
#include "gpu_args_host.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The shared launchers the glue calls. */
typedef struct pa_gpu_glue_fns {
    size_t (*fused_smem)(const pa_gpu_args *a, int scores_in_smem);
    uint64_t (*fused_workspace)(const pa_gpu_args *a);
    int (*fused)(const pa_gpu_args *a, int scores_in_smem, void *stream);
    /* NULL when the build has no SIMT flash backward */
    uint64_t (*flash_bwd_workspace)(const pa_gpu_bwd_args *a);
    size_t (*flash_bwd_smem)(const pa_gpu_bwd_args *a);
    int (*flash_bwd)(const pa_gpu_bwd_args *a, void *workspace, void *stream);
} pa_gpu_glue_fns;

/* One backend device as the glue sees it. */
typedef struct pa_gpu_glue {
    pa_device *dev;
    const pa_gpu_glue_fns *fns;
    uint64_t smem_limit;   /* shared memory (LDS) a block may use */
    const char *smem_name; /* "shared memory" or "LDS" */
    char *why;             /* device-owned buffer for reasons that carry numbers */
    size_t why_size;
    /* Maps a launcher's error code (0: ok) to a status, recording it in the context. */
    polyattn_status (*launch_status)(pa_device *dev, int err, const char *what);
} pa_gpu_glue;

/* The backward's arguments; io NULL: sizes only. */
static inline void pa_gpu_bwd_args_fill(const pa_problem *p, const pa_backward_io *io,
                                        pa_gpu_bwd_args *ba)
{
    memset(ba, 0, sizeof *ba);
    pa_io fio;
    memset(&fio, 0, sizeof fio);
    if (io)
        fio.q = io->q, fio.k = io->k, fio.v = io->v, fio.o = io->o, fio.srv = io->srv,
        fio.var = io->var;
    pa_problem np = *p;
    np.want_lse = 0, np.want_probs = 0;
    pa_gpu_args_fill(&np, io ? &fio : NULL, &ba->fwd);
    if (io) {
        ba->fwd.lse = (float *)pa_gpu_ptr(&io->lse);
        ba->d_o = pa_gpu_ptr(&io->d_o);
        ba->dq = pa_gpu_ptr(&io->dq);
        ba->dk = pa_gpu_ptr(&io->dk);
        ba->dv = pa_gpu_ptr(&io->dv);
        if (p->has_bias && p->want_bias_grad) ba->d_bias = (float *)pa_gpu_ptr(&io->var.d_bias);
        if (p->has_sinks) ba->d_sinks = (float *)pa_gpu_ptr(&io->var.d_sinks);
    }
    ba->deterministic = p->deterministic;
    ba->d_bias_batch = (int)p->bias_shape[0];
    ba->d_bias_heads = (int)p->bias_shape[1];
}

/* Fused: whether p's scores stay in shared memory (*in_smem) or go to the workspace; rejects
 * a problem whose tile does not fit even with the scores in the workspace. */
polyattn_status pa_gpu_fused_plan(const pa_gpu_glue *g, const pa_problem *p, int *in_smem,
                                  const char **why_not);
/* Workspace bytes of the fused forward with the planned placement. */
uint64_t pa_gpu_fused_plan_workspace(const pa_gpu_glue *g, const pa_problem *p, int in_smem);
/* Enqueues the fused kernel with the planned placement. */
polyattn_status pa_gpu_fused_run(const pa_gpu_glue *g, const pa_problem *p, int in_smem,
                                 const pa_io *io, void *stream);

/* SIMT flash backward (flash and fused on both backends, and CUDA's fallback from the
 * tensor-core backward): NULL when it can run p, else the reason (g->why or static). */
const char *pa_gpu_simt_bwd_refusal(const pa_gpu_glue *g, const pa_problem *p);
uint64_t pa_gpu_simt_bwd_workspace(const pa_gpu_glue *g, const pa_problem *p);
polyattn_status pa_gpu_simt_bwd_run(const pa_gpu_glue *g, const pa_problem *p,
                                    const pa_backward_io *io, void *stream);

#ifdef __cplusplus
}
#endif
#endif
