/* The CUDA flash plan: which forward kernel, schedule, workspace and backward a plan runs,
 * decided once at plan time (cuda_flash_plan.c) and executed by cuda_flash.c. */
#ifndef POLYATTN_CUDA_FLASH_H
#define POLYATTN_CUDA_FLASH_H

#include "cuda_internal.h"
#include "flash_split.h"

typedef struct pa_cuda_flash_plan {
    pa_cuda_fwd_kernel kernel; /* SIMT, MMA, WGMMA or HOPPER */
    pa_flash_split split;      /* MMA: the wide kernels' schedule; WGMMA: its plan */
    uint64_t workspace;        /* the balanced schedule's or the key splits' partials */
    /* The serving kernel (flash_tc_serving.cu) for serving layouts and small dense grids:
     * pack the query heads of a GQA group into one tile; key splits merged by pa_gpu_merge. */
    int serving, pack, splits;
    int stages; /* the serving kernel's K/V ring depth */
    /* HOPPER: the consumers take turns issuing their products (ping-pong), else each
     * runs its own loop */
    int pingpong;
    /* HOPPER: each consumer overlaps tile j + 1's Q K^T and softmax with tile j's P V
     * (cuda.hopper_sched=overlap, opt-in until it has run on a GPU; head dims up to 192,
     * no bias: others run the independent loop) */
    int overlap;
    /* HOPPER with a 16-bit bias: its tiles through shared memory (cuda.hopper_bias=smem,
     * opt-in until it has run on a GPU), else register loads */
    int bias_smem;
    /* HOPPER with softcap: half the softmax's exponentials on the FMA pipe (cuda.hopper_exp2=
     * poly, opt-in until it has run on a GPU; not with ping-pong or e4m3 inputs) */
    int exp2_poly;
    int launches;
    pa_cuda_bwd_plan bwd; /* kernel AUTO without want_backward */
} pa_cuda_flash_plan;

/* Decides how flash runs p on dev (pure: check, workspace, launches and prepare all call
 * it and get the same answer).  On rejection returns the status and *why_not; on success
 * *why_not is the note saying how it runs (dev->note[2]). */
polyattn_status pa_cuda_flash_plan_make(pa_cuda_device *dev, const pa_problem *p,
                                        pa_cuda_flash_plan *fp, const char **why_not);
/* Logs the plan under POLYATTN_LOG=dispatch. */
void pa_cuda_flash_plan_log(const pa_cuda_flash_plan *fp, const pa_problem *p);

#endif
