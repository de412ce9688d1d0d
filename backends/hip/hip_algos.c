/*
 * hip backend algorithms: thin host glue over the device code shared with the cuda backend
 * (backends/gpu/gpu_attn.h, backends/gpu/gemm_tiled.h) and the MFMA flash kernel, reached
 * through the kernels library's table (pa_hip_device.k).  check() gates planning and dispatch
 * alike: a problem the AMD limits (64 KiB of LDS per work-group, 2^32 work-items per grid
 * dimension) would make fail at launch is rejected here with the reason.
 */
#include "pa_hip.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The shared launchers take int dimensions. */
static int dims_fit_int(const pa_problem *p)
{
    return p->batch <= INT_MAX && p->heads_q <= INT_MAX && p->heads_kv <= INT_MAX &&
           p->seq_q <= INT_MAX && p->seq_kv <= INT_MAX && p->head_dim <= INT_MAX &&
           p->head_dim_v <= INT_MAX;
}

/* Checks every algorithm shares; *why_not points into the device record when it needs
 * numbers. */
static polyattn_status common_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
    (void)dev;
    if (!dims_fit_int(p)) {
        *why_not = "a dimension exceeds INT_MAX, the limit of the shared GPU kernels";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    if (p->head_dim > PA_GPU_MAX_HEAD_DIM || p->head_dim_v > PA_GPU_MAX_HEAD_DIM) {
        *why_not = "head_dim above 1024 is not supported by the shared GPU kernels";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status lds_check(pa_device *dev, const char *what, size_t need,
                                 const char **why_not)
{
    pa_hip_device *d = pa_hip(dev);
    if (need <= d->lds_bytes) return POLYATTN_STATUS_SUCCESS;
    snprintf(d->why_not, sizeof d->why_not,
             "%s needs %zu bytes of LDS per work-group but %s has %llu (grows with head_dim)",
             what, need, d->arch, (unsigned long long)d->lds_bytes);
    *why_not = d->why_not;
    return POLYATTN_STATUS_UNSUPPORTED;
}

static polyattn_status launch_status(pa_device *dev, int err, const char *what)
{
    if (err == 0) return POLYATTN_STATUS_SUCCESS;
    return pa_hip_fail(dev, (hipError_t)err, what, __FILE__, __LINE__);
}

/* ---- flash: MFMA kernel (gfx908/gfx90a) or the shared generic (SIMT) one -- */

/* The MFMA path has run only in the CPU emulation (tests/hip/test_hip_emulated), never on an
 * AMD GPU: it stays opt-in (POLYATTN_HIP_MFMA=1) until conformance passes on an MI100/MI200. */
static int mfma_enabled(void)
{
    const char *s = getenv("POLYATTN_HIP_MFMA");
    return s && *s && strcmp(s, "0") != 0;
}

/* Why the MFMA kernel cannot take p (NULL: it can). */
static const char *mfma_refusal(pa_device *dev, const pa_problem *p)
{
    const pa_hip_device *d = pa_hip(dev);
    const int gfx90a = strcmp(d->arch, "gfx90a") == 0;
    if (!gfx90a && strcmp(d->arch, "gfx908") != 0) return "no MFMA 32x32x8 kernel for this target";
    if (p->dtype == POLYATTN_DTYPE_F32) return "f32 storage";
    if (p->dtype == POLYATTN_DTYPE_BF16 && !gfx90a) return "bf16 MFMA (bf16_1k) needs gfx90a";
    if (p->head_dim % 8 != 0 || p->head_dim > 128 || p->head_dim_v > 128)
        return "head_dim must be a multiple of 8 and head dims at most 128";
    if (!mfma_enabled()) return "POLYATTN_HIP_MFMA is not set (not yet validated on AMD hardware)";
    return NULL;
}

static polyattn_status flash_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
    polyattn_status st = common_check(dev, p, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    if (p->want_probs) {
        *why_not = "flash never forms the probability matrix (O(seq) memory); use unfused or fused";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    if (!mfma_refusal(dev, p)) return POLYATTN_STATUS_SUCCESS; /* its LDS tile is 8.5 KiB */
    pa_gpu_args a;
    pa_gpu_args_fill(p, NULL, &a);
    return lds_check(dev, "flash (generic kernel)", pa_hip(dev)->k->flash_generic_smem(&a),
                     why_not);
}

static polyattn_status flash_prepare(pa_device *dev, const pa_problem *p, void **state)
{
    const char *why = mfma_refusal(dev, p);
    if (why)
        pa_log(POLYATTN_LOG_DISPATCH, "hip flash: shared generic kernel (MFMA kernel not used: %s)",
               why);
    else
        pa_log(POLYATTN_LOG_DISPATCH, "hip flash: MFMA 32x32x8 kernel on %s, %s",
               pa_hip(dev)->arch, polyattn_dtype_name(p->dtype));
    *state = NULL;
    return POLYATTN_STATUS_SUCCESS;
}

static uint64_t flash_workspace(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    (void)p;
    return 0;
}

static int one_launch(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    (void)p;
    return 1;
}

static polyattn_status flash_forward(pa_device *dev, const pa_problem *p, void *state,
                                     const pa_io *io)
{
    (void)state;
    pa_gpu_args a;
    pa_gpu_args_fill(p, io, &a);
    polyattn_status st = pa_hip_use(dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    if (!mfma_refusal(dev, p))
        return launch_status(dev, pa_hip(dev)->k->flash_mfma(&a, pa_hip(dev)->stream),
                             "pa_hip_flash_mfma (flash_fwd_mfma_kernel)");
    return launch_status(dev, pa_hip(dev)->k->flash_generic(&a, pa_hip(dev)->stream),
                         "pa_gpu_flash_generic (flash_fwd_simt_kernel)");
}

/* ---- fused: the shared kernel, scores in LDS or in the workspace -------- */

static int fused_scores_in_lds(pa_device *dev, const pa_gpu_args *a)
{
    return pa_hip(dev)->k->fused_smem(a, 1) <= pa_hip(dev)->lds_bytes;
}

static polyattn_status fused_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
    polyattn_status st = common_check(dev, p, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    pa_gpu_args a;
    pa_gpu_args_fill(p, NULL, &a);
    if (fused_scores_in_lds(dev, &a)) return POLYATTN_STATUS_SUCCESS;
    return lds_check(dev, "fused (scores in the workspace)", pa_hip(dev)->k->fused_smem(&a, 0),
                     why_not);
}

static uint64_t fused_workspace(pa_device *dev, const pa_problem *p)
{
    pa_gpu_args a;
    pa_gpu_args_fill(p, NULL, &a);
    return fused_scores_in_lds(dev, &a) ? 0 : pa_hip(dev)->k->fused_workspace(&a);
}

static polyattn_status fused_forward(pa_device *dev, const pa_problem *p, void *state,
                                     const pa_io *io)
{
    (void)state;
    pa_gpu_args a;
    pa_gpu_args_fill(p, io, &a);
    const int in_lds = fused_scores_in_lds(dev, &a);
    if (!in_lds && io->workspace_bytes < pa_hip(dev)->k->fused_workspace(&a))
        return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "fused: workspace of %llu bytes, %llu needed",
                       (unsigned long long)io->workspace_bytes,
                       (unsigned long long)pa_hip(dev)->k->fused_workspace(&a));
    polyattn_status st = pa_hip_use(dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    return launch_status(dev, pa_hip(dev)->k->fused(&a, in_lds, pa_hip(dev)->stream),
                         "pa_gpu_fused (fused_attn_kernel)");
}

/* ---- unfused: tiled GEMM, mask+softmax, tiled GEMM ----------------------- */

static uint64_t score_bytes(const pa_problem *p)
{
    return (uint64_t)p->batch * (uint64_t)p->heads_q * (uint64_t)p->seq_q * (uint64_t)p->seq_kv *
           sizeof(float);
}

static polyattn_status unfused_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
    polyattn_status st = common_check(dev, p, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    /* mask_softmax launches one work-group of 256 per score row in grid x: HIP caps a
     * grid dimension at 2^32 work-items. */
    const uint64_t rows = (uint64_t)p->batch * (uint64_t)p->heads_q * (uint64_t)p->seq_q;
    if (rows * 256u >= (1ull << 32)) {
        *why_not = "unfused: batch*heads_q*seq_q rows exceed the 2^32 work-item grid limit of "
                   "HIP for the softmax step";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    /* The tiled GEMM puts every 64x64 output tile of one (batch, head) in grid x. */
    const uint64_t tiles = (uint64_t)((p->seq_q + 63) / 64) * (uint64_t)((p->seq_kv + 63) / 64);
    if (tiles * 256u >= (1ull << 32)) {
        *why_not = "unfused: seq_q x seq_kv too large for the tiled GEMM's grid (2^32 work-items)";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    /* Success: the note says which GEMM runs (the core may show it). */
    *why_not = "unfused GEMMs by the shared tiled GEMM kernel (hipBLAS is not used by this "
               "build)";
    return POLYATTN_STATUS_SUCCESS;
}

static uint64_t unfused_workspace(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    return score_bytes(p);
}

static int unfused_launches(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    (void)p;
    return 3;
}

static polyattn_status unfused_forward(pa_device *dev, const pa_problem *p, void *state,
                                       const pa_io *io)
{
    (void)state;
    pa_gpu_args a;
    pa_gpu_args_fill(p, io, &a);
    if (!io->workspace.mem || io->workspace_bytes < score_bytes(p))
        return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "unfused: workspace of %llu bytes, %llu needed for the scores",
                       (unsigned long long)io->workspace_bytes,
                       (unsigned long long)score_bytes(p));
    polyattn_status st = pa_hip_use(dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    hipStream_t stream = pa_hip(dev)->stream;
    float *scores = (float *)a.workspace;
    st = launch_status(dev, pa_hip(dev)->k->gemm_qk(&a, scores, stream),
                       "pa_gpu_gemm_qk (gemm_tiled_kernel)");
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    st = launch_status(dev, pa_hip(dev)->k->mask_softmax(&a, scores, stream),
                       "pa_gpu_mask_softmax (mask_softmax_kernel)");
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    /* The softmax left P in the storage dtype in place: row r at byte r * seq_kv * 4. */
    const int64_t p_row_stride =
        p->seq_kv * (int64_t)(sizeof(float) / polyattn_dtype_size(p->dtype));
    return launch_status(dev, pa_hip(dev)->k->gemm_pv(&a, scores, p_row_stride, stream),
                         "pa_gpu_gemm_pv (gemm_tiled_kernel)");
}

const pa_algo_ops pa_hip_algos[PA_HIP_N_ALGOS] = {
    {.algo = POLYATTN_ALGO_UNFUSED, .check = unfused_check, .workspace_size = unfused_workspace,
     .kernel_launches = unfused_launches, .forward = unfused_forward},
    {.algo = POLYATTN_ALGO_FUSED, .check = fused_check, .workspace_size = fused_workspace,
     .kernel_launches = one_launch, .forward = fused_forward},
    {.algo = POLYATTN_ALGO_FLASH, .check = flash_check, .workspace_size = flash_workspace,
     .kernel_launches = one_launch, .prepare = flash_prepare, .forward = flash_forward},
};
