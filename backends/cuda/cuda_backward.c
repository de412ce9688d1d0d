/*
 * The backward of fused and flash on CUDA: one FlashAttention-2 backward (P recomputed tile
 * by tile from Q, K and the LSE; no seq_q x seq_kv array), so fused has no separate O(N^2)
 * backward.  Tensor cores (flash_tc_bwd.cu) for f16/bf16 at its head dims on sm_80+, with
 * window, softcap, ALiBi and sinks, else the shared SIMT kernels (backends/gpu/flash_bwd.cu,
 * through backends/gpu/gpu_glue.c), which alone have a bias tensor and attn_mask.  On sm_90
 * the warpgroup-MMA kernels (flash_hopper_bwd.cu) where they take the problem (head dims 64
 * and 128, dense, no score variants).
 * Planned once (pa_cuda_bwd_plan_make); pa_cuda_bwd_run executes that plan.
 */
#include "cuda_internal.h"

#include "../gpu/gpu_glue.h"
#include "flash_hopper_bwd.h"
#include "flash_tc_bwd.h"

#include <stdio.h>
#include <string.h>

/* Why the tensor-core backward cannot take p (NULL: it can). */
static const char *mma_bwd_refusal(const pa_cuda_device *dev, const pa_problem *p)
{
    if (p->dtype == POLYATTN_DTYPE_F32) return "f32 storage";
    if (dev->cc_major < 8) return "the device is older than sm_80";
    if (pa_problem_serving(p)) return "varlen layouts (the SIMT backward has them)";
    if (p->has_bias || p->has_attn_mask || p->want_bias_grad)
        return "a bias tensor or attn_mask (the SIMT backward has them)";
    if (p->head_dim != p->head_dim_v || !pa_cuda_flash_tc_bwd_has_head_dim((int)p->head_dim))
        return "head_dim is not 64 or 128 (or differs from head_dim_v)";
    const int64_t *s[4] = {p->q_stride, p->k_stride, p->v_stride, p->o_stride};
    for (int t = 0; t < 4; t++) {
        if (s[t][3] != 1) return "a head_dim stride is not 1";
        for (int i = 0; i < 3; i++)
            if (s[t][i] % 8) return "a stride is not a multiple of 8 elements (16-byte rows)";
    }
    if (pa_cuda_flash_tc_bwd_smem((int)p->head_dim) > dev->smem_optin)
        return "the tiles do not fit the device's shared memory";
    return NULL;
}

/* Why the warpgroup-MMA backward cannot take p, which the tensor-core FA2 kernels can (NULL:
 * it can): sm_90 exactly, no zero stride on a dimension longer than 1 (its TMA maps), no
 * empty sequence, its smem. */
static const char *hopper_bwd_refusal(const pa_cuda_device *dev, const pa_problem *p)
{
#ifdef POLYATTN_CUDA_HAVE_WGMMA
    if (dev->cc_major != 9 || dev->cc_minor != 0) return "the device is not sm_90";
    if (pa_gpu_has_variants(p))
        return "score variants (the tensor-core FA2 backward has window, softcap, ALiBi, sinks)";
    if (!pa_cuda_flash_hopper_bwd_has_head_dim((int)p->head_dim))
        return "head_dim is not 64 or 128";
    if (p->seq_q == 0 || p->seq_kv == 0) return "an empty sequence";
    if (pa_cuda_has_broadcast_stride(p))
        return "a broadcast (zero) stride, which TMA tensor maps cannot express";
    if (pa_cuda_flash_hopper_bwd_smem((int)p->head_dim) > dev->smem_optin)
        return "the tiles do not fit the device's shared memory";
    return NULL;
#else
    (void)dev, (void)p;
    return "this build has no sm_90a image (CUDA architectures without 90)";
#endif
}

static polyattn_status refuse(pa_cuda_device *dev, const char *fmt, const char *a, const char *b,
                              const char **why_not)
{
    snprintf(dev->why_bwd, sizeof dev->why_bwd, fmt, a, b);
    *why_not = dev->why_bwd;
    return POLYATTN_STATUS_UNSUPPORTED;
}

polyattn_status pa_cuda_bwd_plan_make(pa_cuda_device *dev, const pa_problem *p,
                                      const pa_cuda_force *f, pa_cuda_bwd_plan *b,
                                      const char **why_not)
{
    memset(b, 0, sizeof *b);
    const char *mma_why = mma_bwd_refusal(dev, p);
    /* the warpgroup-MMA kernels by default where they take the problem: 1.56-1.80x the
     * tensor-core FA2 kernels (H100, bf16, head dims 64 and 128, N 4k-16k, plain and causal;
     * docs/performance.md) */
    const int hopper_auto =
        f->bwd == PA_CUDA_BWD_AUTO && !f->bwd_tile && !mma_why && !hopper_bwd_refusal(dev, p);
    if (f->bwd == PA_CUDA_BWD_HOPPER || hopper_auto) {
        const char *why = mma_why ? mma_why : hopper_bwd_refusal(dev, p);
        if (why) return refuse(dev, "POLYATTN_FORCE cuda.flash_bwd=wgmma: %s%s", why, "", why_not);
        if (f->bwd_tile)
            return refuse(dev, "POLYATTN_FORCE cuda.bwd_tile: %s%s",
                          "the warpgroup-MMA backward has no dK/dV configurations", "", why_not);
        pa_gpu_bwd_args ba;
        pa_gpu_bwd_args_fill(p, NULL, &ba);
        b->kernel = PA_CUDA_BWD_HOPPER;
        b->workspace = pa_cuda_flash_hopper_bwd_workspace(&ba);
        return POLYATTN_STATUS_SUCCESS;
    }
    if (f->bwd == PA_CUDA_BWD_MMA && mma_why)
        return refuse(dev, "POLYATTN_FORCE cuda.flash_bwd=mma: %s%s", mma_why, "", why_not);
    if (f->bwd == PA_CUDA_BWD_SIMT) mma_why = "forced by POLYATTN_FORCE cuda.flash_bwd=simt";
    pa_gpu_bwd_args ba;
    pa_gpu_bwd_args_fill(p, NULL, &ba);
    if (!mma_why) {
        b->kernel = PA_CUDA_BWD_MMA;
        b->tile = f->bwd_tile ? f->bwd_tile : pa_cuda_flash_tc_bwd_default_tile((int)p->head_dim);
        if (!pa_cuda_flash_tc_bwd_has_tile((int)p->head_dim, b->tile))
            return refuse(dev,
                          "POLYATTN_FORCE cuda.bwd_tile=%s: no such dK/dV configuration at "
                          "this head dim%s (b: head_dim 64 only)",
                          b->tile == 'a'   ? "a"
                          : b->tile == 'b' ? "b"
                                           : "f",
                          "", why_not);
        b->workspace = pa_cuda_flash_tc_bwd_workspace(&ba);
        return POLYATTN_STATUS_SUCCESS;
    }
    if (f->bwd_tile)
        return refuse(dev,
                      "POLYATTN_FORCE cuda.bwd_tile: the backward runs the SIMT kernels "
                      "(tensor-core kernels not used: %s)%s",
                      mma_why, "", why_not);
    pa_gpu_glue g;
    pa_cuda_glue(dev, &g);
    const char *simt_why = pa_gpu_simt_bwd_refusal(&g, p);
    if (simt_why)
        return refuse(dev, "backward: the tensor-core kernels cannot take it (%s) and %s", mma_why,
                      simt_why, why_not);
    b->kernel = PA_CUDA_BWD_SIMT;
    b->workspace = pa_gpu_simt_bwd_workspace(&g, p);
    return POLYATTN_STATUS_SUCCESS;
}

void pa_cuda_bwd_note(const pa_cuda_bwd_plan *b, const pa_problem *p, char *note, size_t n)
{
    const size_t used = strlen(note);
    if (used < n)
        snprintf(note + used, n - used, "; backward: %s",
                 b->kernel == PA_CUDA_BWD_SIMT     ? "SIMT flash kernels"
                 : b->kernel == PA_CUDA_BWD_HOPPER ? "warpgroup-MMA kernels, dK/dV and dQ passes"
                 : p->deterministic                ? "tensor-core FA2 kernels, dQ pass"
                                                   : "tensor-core FA2 kernels, dQ atomics");
}

void pa_cuda_bwd_log(const char *algo, const pa_cuda_bwd_plan *b, const pa_problem *p)
{
    const char *fused = strcmp(algo, "fused") == 0 ? "; fused runs the flash backward" : "";
    if (b->kernel == PA_CUDA_BWD_SIMT)
        pa_log(POLYATTN_LOG_DISPATCH,
               "cuda %s backward: shared SIMT flash backward, dQ %s; workspace %llu bytes%s", algo,
               p->deterministic ? "by a second pass" : "by f32 atomics",
               (unsigned long long)b->workspace, fused);
    else if (b->kernel == PA_CUDA_BWD_HOPPER)
        pa_log(POLYATTN_LOG_DISPATCH,
               "cuda %s backward: warpgroup-MMA kernels (dK/dV, then dQ; no atomics), head_dim "
               "%lld, %s; workspace %llu bytes%s",
               algo, (long long)p->head_dim, polyattn_dtype_name(p->dtype),
               (unsigned long long)b->workspace, fused);
    else
        pa_log(POLYATTN_LOG_DISPATCH,
               "cuda %s backward: tensor-core FA2 kernels (%s + %s), head_dim %lld, %s; "
               "workspace %llu bytes%s",
               algo, pa_cuda_flash_tc_bwd_kernel(b->tile),
               p->deterministic ? "flash_bwd_dq_tc_kernel" : "dQ f32 atomics",
               (long long)p->head_dim, polyattn_dtype_name(p->dtype),
               (unsigned long long)b->workspace, fused);
}

static int aligned(const void *ptr, uintptr_t bytes) { return ((uintptr_t)ptr & (bytes - 1)) == 0; }

polyattn_status pa_cuda_bwd_run(pa_cuda_device *dev, const pa_problem *p, const pa_cuda_bwd_plan *b,
                                const pa_backward_io *io)
{
    pa_device *d = &dev->base;
    if (b->kernel == PA_CUDA_BWD_AUTO)
        return pa_fail(d, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "backward: the plan was made without want_backward");
    if (b->workspace && (!io->workspace.mem || io->workspace_bytes < b->workspace))
        return pa_fail(d, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "flash backward: the workspace must hold %llu bytes",
                       (unsigned long long)b->workspace);
    PA_CU(d, cudaSetDevice(dev->ordinal));
    if (b->kernel == PA_CUDA_BWD_SIMT) {
        pa_gpu_glue g;
        pa_cuda_glue(dev, &g);
        return pa_gpu_simt_bwd_run(&g, p, io, dev->stream);
    }
    pa_gpu_bwd_args ba;
    pa_gpu_bwd_args_fill(p, io, &ba);
    if (!aligned(ba.fwd.q, 16) || !aligned(ba.fwd.k, 16) || !aligned(ba.fwd.v, 16) ||
        !aligned(ba.fwd.o, 16) || !aligned(ba.d_o, 16) || !aligned(ba.dq, 4) ||
        !aligned(ba.dk, 4) || !aligned(ba.dv, 4))
        return pa_fail(d, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "backward: the plan runs the tensor-core kernels, which need q, k, v, o, "
                       "d_o 16-byte aligned and dq, dk, dv 4-byte aligned (buffer views at such "
                       "offsets; POLYATTN_FORCE=cuda.flash_bwd=simt plans the SIMT kernels)");
#ifdef POLYATTN_CUDA_HAVE_WGMMA
    if (b->kernel == PA_CUDA_BWD_HOPPER) {
        PA_CU_LAUNCH(d, pa_cuda_flash_hopper_bwd(&ba, pa_gpu_ptr(&io->workspace), dev->stream));
        return POLYATTN_STATUS_SUCCESS;
    }
#endif
    PA_CU_LAUNCH(d, pa_cuda_flash_tc_bwd(&ba, b->tile, pa_gpu_ptr(&io->workspace), dev->stream));
    return POLYATTN_STATUS_SUCCESS;
}
