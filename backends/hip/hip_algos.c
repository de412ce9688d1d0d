/*
 * hip backend algorithms: thin host glue over the device code shared with the cuda backend
 * (backends/gpu/gpu_attn.h, backends/gpu/gemm_tiled.h) and the MFMA flash kernel, reached
 * through the kernels library's table (pa_hip_device.k).  check() gates planning and dispatch
 * alike: a problem the AMD limits (64 KiB of LDS per work-group, 2^32 work-items per grid
 * dimension) would make fail at launch is rejected here with the reason.
 */
#include "pa_hip.h"

#include "gpu_glue.h"

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

/* The sizes every algorithm shares. */
static polyattn_status sizes_check(const pa_problem *p, const char **why_not)
{
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

/* Checks every algorithm shares; flash's generic kernel also reads e4m3 (flash_plan).
 * *why_not points into the device record when it needs numbers. */
static polyattn_status common_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
    (void)dev;
    const char *dtype_why = pa_problem_dtype_refusal(p);
    if (dtype_why) {
        *why_not = dtype_why;
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    return sizes_check(p, why_not);
}

static polyattn_status lds_check(pa_device *dev, const char *what, size_t need,
                                 const char **why_not)
{
    pa_hip_device *d = pa_hip(dev);
    if (need <= d->lds_bytes) return POLYATTN_STATUS_SUCCESS;
    snprintf(d->why_not, sizeof d->why_not,
             "%s needs %zu bytes of LDS per work-group but %s has %llu (grows with head_dim)", what,
             need, d->arch, (unsigned long long)d->lds_bytes);
    *why_not = d->why_not;
    return POLYATTN_STATUS_UNSUPPORTED;
}

static polyattn_status launch_status(pa_device *dev, int err, const char *what)
{
    if (err == 0) return POLYATTN_STATUS_SUCCESS;
    return pa_hip_fail(dev, (hipError_t)err, what, __FILE__, __LINE__);
}

/* ---- POLYATTN_FORCE keys of this backend (README, "Forcing a path") ------- */

/* hip.mfma=on|off (default off): the MFMA flash kernel has run only in the CPU emulation
 * (tests/hip/test_hip_emulated), never on an AMD GPU, so it stays opt-in until conformance
 * passes on an MI100/MI200.  An unknown value fails every algorithm's check, so planning
 * fails with the key's name. */
static polyattn_status force_mfma(pa_device *dev, int *on, const char **why_not)
{
    char v[16];
    *on = 0;
    if (!pa_force_get(dev, "hip.mfma", v, sizeof v)) return POLYATTN_STATUS_SUCCESS;
    if (!strcmp(v, "on") || !strcmp(v, "off")) {
        *on = !strcmp(v, "on");
        return POLYATTN_STATUS_SUCCESS;
    }
    pa_hip_device *d = pa_hip(dev);
    snprintf(d->why_not, sizeof d->why_not, "POLYATTN_FORCE: hip.mfma=%s is not one of on, off", v);
    *why_not = d->why_not;
    return POLYATTN_STATUS_INVALID_ARGUMENT;
}

/* ---- the host glue shared with the cuda backend (backends/gpu/gpu_glue.c) --- */

static polyattn_status glue_launch_status(pa_device *dev, int err, const char *what)
{
    return launch_status(dev, err, what);
}

typedef struct hip_glue {
    pa_gpu_glue g;
    pa_gpu_glue_fns fns;
} hip_glue;

static void glue_of(pa_device *dev, hip_glue *hg)
{
    const pa_hip_kernels *k = pa_hip(dev)->k;
    hg->fns.fused_smem = k->fused_smem;
    hg->fns.fused_workspace = k->fused_workspace;
    hg->fns.fused = k->fused;
    hg->fns.flash_bwd_workspace = k->flash_bwd_workspace;
    hg->fns.flash_bwd_smem = k->flash_bwd_smem;
    hg->fns.flash_bwd = k->flash_bwd;
    hg->g.dev = dev;
    hg->g.fns = &hg->fns;
    hg->g.smem_limit = pa_hip(dev)->lds_bytes;
    hg->g.smem_name = "LDS";
    hg->g.why = pa_hip(dev)->why_not;
    hg->g.why_size = sizeof pa_hip(dev)->why_not;
    hg->g.launch_status = glue_launch_status;
}

/* ---- backward shared by flash and fused: the SIMT flash backward ---------- */

static polyattn_status backward_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
    hip_glue hg;
    glue_of(dev, &hg);
    const char *why = pa_gpu_simt_bwd_refusal(&hg.g, p);
    if (why) return *why_not = why, POLYATTN_STATUS_UNSUPPORTED;
    return POLYATTN_STATUS_SUCCESS;
}

static uint64_t flash_backward_workspace(pa_device *dev, const pa_problem *p)
{
    hip_glue hg;
    glue_of(dev, &hg);
    return pa_gpu_simt_bwd_workspace(&hg.g, p);
}

static polyattn_status flash_backward(pa_device *dev, const pa_problem *p, void *state,
                                      const pa_backward_io *io)
{
    (void)state;
    polyattn_status st = pa_hip_use(dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    hip_glue hg;
    glue_of(dev, &hg);
    return pa_gpu_simt_bwd_run(&hg.g, p, io, pa_hip(dev)->stream);
}

/* ---- plan state of fused and flash: decided once, executed as planned ------ */

typedef struct hip_plan {
    int mfma;   /* flash: the MFMA kernel, else the shared generic one */
    int splits; /* flash: key splits of the generic kernel (1: none) */
    int in_lds; /* fused: the scores in LDS, else in the workspace */
} hip_plan;

static void plan_release(pa_device *dev, void *state)
{
    (void)dev;
    free(state);
}

/* ---- flash: MFMA kernel (gfx908/gfx90a) or the shared generic (SIMT) one -- */

/* Why the MFMA kernel cannot take p (NULL: it can); forced: hip.mfma=on. */
static const char *mfma_refusal(pa_device *dev, const pa_problem *p, int forced)
{
    const pa_hip_device *d = pa_hip(dev);
    const int gfx90a = strcmp(d->arch, "gfx90a") == 0;
    if (!gfx90a && strcmp(d->arch, "gfx908") != 0) return "no MFMA 32x32x8 kernel for this target";
    if (p->dtype == POLYATTN_DTYPE_E4M3) return "e4m3 inputs (the MFMA kernel reads f16 and bf16)";
    if (p->dtype == POLYATTN_DTYPE_F32) return "f32 storage";
    if (p->dtype == POLYATTN_DTYPE_BF16 && !gfx90a) return "bf16 MFMA (bf16_1k) needs gfx90a";
    if (p->head_dim % 8 != 0 || p->head_dim > 128 || p->head_dim_v > 128)
        return "head_dim must be a multiple of 8 and head dims at most 128";
    if (pa_gpu_has_variants(p)) return "score variants (the generic kernel has them)";
    if (pa_problem_serving(p)) return "serving layouts (the generic kernel has them)";
    if (!forced) return "POLYATTN_FORCE=hip.mfma=on is not set (not yet validated on AMD hardware)";
    return NULL;
}

static polyattn_status flash_plan(pa_device *dev, const pa_problem *p, hip_plan *plan,
                                  const char **why_not)
{
    memset(plan, 0, sizeof *plan);
    /* e4m3 inputs: the generic kernel (mfma_refusal keeps them off the MFMA kernel) */
    const char *dtype_why = pa_gpu_flash_generic_dtype_refusal(p);
    if (dtype_why) {
        *why_not = dtype_why;
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    polyattn_status st = sizes_check(p, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    int forced;
    st = force_mfma(dev, &forced, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    if (p->want_probs) {
        *why_not = "flash never forms the probability matrix (O(seq) memory); use unfused or fused";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    if (p->want_backward) {
        st = backward_check(dev, p, why_not);
        if (st != POLYATTN_STATUS_SUCCESS) return st;
    }
    plan->splits = 1;
    if (!mfma_refusal(dev, p, forced)) {
        plan->mfma = 1; /* its LDS tile is 8.5 KiB */
        return POLYATTN_STATUS_SUCCESS;
    }
    plan->splits = pa_gpu_flash_generic_splits(p, pa_hip(dev)->compute_units);
    pa_gpu_args a;
    pa_gpu_args_fill(p, NULL, &a);
    return lds_check(dev, "flash (generic kernel)", pa_hip(dev)->k->flash_generic_smem(&a),
                     why_not);
}

static polyattn_status flash_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
    hip_plan plan;
    return flash_plan(dev, p, &plan, why_not);
}

static polyattn_status flash_prepare(pa_device *dev, const pa_problem *p, void **state)
{
    *state = NULL;
    hip_plan *plan = (hip_plan *)malloc(sizeof *plan);
    if (!plan) return pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY, "flash: host memory");
    const char *why = NULL;
    polyattn_status st = flash_plan(dev, p, plan, &why);
    if (st != POLYATTN_STATUS_SUCCESS) {
        free(plan);
        return pa_fail(dev, st, "flash: %s", why ? why : polyattn_status_string(st));
    }
    int forced = 0;
    (void)force_mfma(dev, &forced, &why);
    if (plan->mfma)
        pa_log(POLYATTN_LOG_DISPATCH, "hip flash: MFMA 32x32x8 kernel on %s, %s%s",
               pa_hip(dev)->arch, polyattn_dtype_name(p->dtype), " (POLYATTN_FORCE hip.mfma=on)");
    else
        pa_log(POLYATTN_LOG_DISPATCH, "hip flash: shared generic kernel (MFMA kernel not used: %s)",
               mfma_refusal(dev, p, forced));
    if (plan->splits > 1)
        pa_log(POLYATTN_LOG_DISPATCH,
               "hip flash: %d key splits (%d compute units), merged by pa_gpu_merge", plan->splits,
               pa_hip(dev)->compute_units);
    if (p->want_backward)
        pa_log(POLYATTN_LOG_DISPATCH, "hip flash backward: shared SIMT kernels, dQ %s",
               p->deterministic ? "by a second pass (deterministic)" : "by f32 atomics");
    *state = plan;
    return POLYATTN_STATUS_SUCCESS;
}

/* The generic kernel's split-KV partials (pa_gpu_split_workspace at offset 0). */
static uint64_t flash_workspace(pa_device *dev, const pa_problem *p)
{
    hip_plan plan;
    const char *why;
    if (flash_plan(dev, p, &plan, &why) != POLYATTN_STATUS_SUCCESS) return 0;
    return pa_gpu_split_workspace(p, plan.splits);
}

static int flash_splits(pa_device *dev, const pa_problem *p)
{
    hip_plan plan;
    const char *why;
    return flash_plan(dev, p, &plan, &why) == POLYATTN_STATUS_SUCCESS ? plan.splits : 1;
}

static int flash_launches(pa_device *dev, const pa_problem *p)
{
    return 1 + (p->has_kv_append != 0) + (flash_splits(dev, p) > 1);
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
    const hip_plan *plan = (const hip_plan *)state;
    if (!plan) return pa_fail(dev, POLYATTN_STATUS_INTERNAL_ERROR, "flash: the plan has no state");
    pa_gpu_args a;
    pa_gpu_args_fill(p, io, &a);
    polyattn_status st = pa_hip_use(dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    const pa_hip_kernels *k = pa_hip(dev)->k;
    hipStream_t stream = pa_hip(dev)->stream;
    if (plan->mfma)
        return launch_status(dev, k->flash_mfma(&a, stream),
                             "pa_hip_flash_mfma (flash_fwd_mfma_kernel)");
    /* KV append first: the attention reads the appended rows from the caches. */
    if (p->has_kv_append) {
        st = launch_status(dev, k->kv_append(&a, stream), "pa_gpu_kv_append (kv_append_kernel)");
        if (st != POLYATTN_STATUS_SUCCESS) return st;
    }
    if (plan->splits > 1) {
        const uint64_t need = pa_gpu_split_workspace(p, plan->splits);
        if (!a.workspace || io->workspace_bytes < need)
            return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                           "flash: %d key splits need a workspace of %llu bytes (got %llu)",
                           plan->splits, (unsigned long long)need,
                           (unsigned long long)io->workspace_bytes);
        pa_gpu_split_bind(p, &a, plan->splits, 0);
    }
    st = launch_status(dev, k->flash_generic(&a, stream),
                       "pa_gpu_flash_generic (flash_fwd_simt_kernel)");
    if (st != POLYATTN_STATUS_SUCCESS || plan->splits <= 1) return st;
    pa_gpu_merge_args m;
    pa_gpu_split_merge_args(p, &a, &m);
    return launch_status(dev, k->merge(&m, stream), "pa_gpu_merge (merge_kernel)");
}

/* polyattn_merge_states (the core checked sizes and overlaps). */
polyattn_status pa_hip_merge_states(pa_device *dev, const pa_merge_problem *m,
                                    const pa_merge_io *io)
{
    const char *why = pa_gpu_merge_refusal(m);
    if (why) return pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED, "%s", why);
    polyattn_status st = pa_hip_use(dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    pa_gpu_merge_args g;
    pa_gpu_merge_args_fill(m, io, &g);
    return launch_status(dev, pa_hip(dev)->k->merge(&g, pa_hip(dev)->stream),
                         "pa_gpu_merge (merge_kernel)");
}

/* ---- fused: the shared kernel and glue, scores in LDS or in the workspace -- */

static polyattn_status fused_plan(pa_device *dev, const pa_problem *p, hip_plan *plan,
                                  const char **why_not)
{
    memset(plan, 0, sizeof *plan);
    polyattn_status st = common_check(dev, p, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    int forced;
    st = force_mfma(dev, &forced, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    hip_glue hg;
    glue_of(dev, &hg);
    st = pa_gpu_fused_plan(&hg.g, p, &plan->in_lds, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    if (p->want_backward) {
        st = backward_check(dev, p, why_not);
        if (st != POLYATTN_STATUS_SUCCESS) return st;
        /* Success: the note says what the backward runs. */
        *why_not = "fused backward: the flash backward kernels (recomputes P from the LSE; the "
                   "fused algorithm has no separate O(N^2) backward)";
    }
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status fused_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
    hip_plan plan;
    return fused_plan(dev, p, &plan, why_not);
}

static uint64_t fused_workspace(pa_device *dev, const pa_problem *p)
{
    hip_plan plan;
    const char *why;
    if (fused_plan(dev, p, &plan, &why) != POLYATTN_STATUS_SUCCESS) return 0;
    hip_glue hg;
    glue_of(dev, &hg);
    return pa_gpu_fused_plan_workspace(&hg.g, p, plan.in_lds);
}

static polyattn_status fused_prepare(pa_device *dev, const pa_problem *p, void **state)
{
    *state = NULL;
    hip_plan *plan = (hip_plan *)malloc(sizeof *plan);
    if (!plan) return pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY, "fused: host memory");
    const char *why = NULL;
    polyattn_status st = fused_plan(dev, p, plan, &why);
    if (st != POLYATTN_STATUS_SUCCESS) {
        free(plan);
        return pa_fail(dev, st, "fused: %s", why ? why : polyattn_status_string(st));
    }
    pa_log(POLYATTN_LOG_DISPATCH, "hip fused: scores of each 32-query tile in %s",
           plan->in_lds ? "LDS" : "the workspace");
    *state = plan;
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status fused_forward(pa_device *dev, const pa_problem *p, void *state,
                                     const pa_io *io)
{
    const hip_plan *plan = (const hip_plan *)state;
    if (!plan) return pa_fail(dev, POLYATTN_STATUS_INTERNAL_ERROR, "fused: the plan has no state");
    polyattn_status st = pa_hip_use(dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    hip_glue hg;
    glue_of(dev, &hg);
    return pa_gpu_fused_run(&hg.g, p, plan->in_lds, io, pa_hip(dev)->stream);
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
    int forced;
    st = force_mfma(dev, &forced, why_not);
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
    /* The backward folds a GQA group's queries into one GEMM dimension. */
    if (p->want_backward && (p->heads_q / p->heads_kv) * p->seq_q > INT_MAX) {
        *why_not = "unfused backward: (heads_q / heads_kv) * seq_q exceeds INT_MAX, the tiled "
                   "GEMM's limit";
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
                       (unsigned long long)io->workspace_bytes, (unsigned long long)score_bytes(p));
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

/* ---- unfused backward: tiled GEMMs + the shared elementwise kernels -------- */

/* Workspace in floats: f32 copies of Q and dO (contiguous, so the rows of a GQA group are
 * one GEMM dimension), delta, the scores/P and dP/dS matrices.  dK and dV sum their group
 * inside one GEMM each and dQ is one GEMM, all in a fixed order: bitwise reproducible
 * without atomics, so the deterministic option changes nothing here.  Score variants: the
 * shared softmax step (gpu_backward.h) recomputes the final scores, leaves dS times softcap's
 * derivative for the GEMMs, and d_bias and d_sinks come from their own fixed-order kernels. */
typedef struct hip_bwd_layout {
    uint64_t q, d_o, delta, s, dp, total;
} hip_bwd_layout;

static hip_bwd_layout hip_bwd_layout_of(const pa_problem *p)
{
    const uint64_t rows_q = (uint64_t)p->batch * p->heads_q * p->seq_q;
    hip_bwd_layout l;
    uint64_t at = 0;
#define PA_HIP_TAKE(member, floats) (l.member = at, at += ((floats) + 63) & ~(uint64_t)63)
    PA_HIP_TAKE(q, rows_q * (uint64_t)p->head_dim);
    PA_HIP_TAKE(d_o, rows_q * (uint64_t)p->head_dim_v);
    PA_HIP_TAKE(delta, rows_q);
    PA_HIP_TAKE(s, rows_q * (uint64_t)p->seq_kv);
    PA_HIP_TAKE(dp, rows_q * (uint64_t)p->seq_kv);
#undef PA_HIP_TAKE
    l.total = at;
    return l;
}

static uint64_t unfused_backward_workspace(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    return hip_bwd_layout_of(p).total * sizeof(float);
}

/* dK or dV of one kv head: C[key][col] = alpha * sum over the group's (head, query) rows of
 * X[row][key] * F[row][col], with X an f32 [.., seq_q, seq_kv] matrix and F a packed f32
 * [.., seq_q, cols] copy. */
static pa_gpu_gemm_desc group_sum_gemm(const pa_problem *p, const float *x, const float *f,
                                       int64_t cols, void *c, const int64_t c_stride[4],
                                       float alpha)
{
    const int64_t g = p->heads_q / p->heads_kv;
    pa_gpu_gemm_desc d;
    memset(&d, 0, sizeof d);
    d.a = x;
    d.a_batch = p->heads_q * p->seq_q * p->seq_kv;
    d.a_head = g * p->seq_q * p->seq_kv;
    d.a_row = 1;         /* m: key */
    d.a_col = p->seq_kv; /* k: (head, query) */
    d.b = f;
    d.b_batch = p->heads_q * p->seq_q * cols;
    d.b_head = g * p->seq_q * cols;
    d.b_row = cols;
    d.b_col = 1;
    d.c = c;
    d.c_batch = c_stride[0], d.c_head = c_stride[1], d.c_row = c_stride[2], d.c_col = c_stride[3];
    d.a_group = d.b_group = 1;
    d.m = (int)p->seq_kv;
    d.n = (int)cols;
    d.k = (int)(g * p->seq_q);
    d.a_dtype = d.b_dtype = 0;
    d.c_dtype = (int)p->dtype;
    d.batch = (int)p->batch;
    d.heads = (int)p->heads_kv;
    d.alpha = alpha;
    return d;
}

static polyattn_status unfused_backward(pa_device *dev, const pa_problem *p, void *state,
                                        const pa_backward_io *io)
{
    (void)state;
    const hip_bwd_layout l = hip_bwd_layout_of(p);
    if (!io->workspace.mem || io->workspace_bytes < l.total * sizeof(float))
        return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "unfused backward: the workspace must hold %llu bytes (got %llu)",
                       (unsigned long long)(l.total * sizeof(float)),
                       (unsigned long long)io->workspace_bytes);
    polyattn_status st = pa_hip_use(dev);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    const pa_hip_kernels *k = pa_hip(dev)->k;
    void *stream = pa_hip(dev)->stream;
    pa_gpu_bwd_args g;
    pa_gpu_bwd_args_fill(p, io, &g);
    const pa_gpu_args *a = &g.fwd;
    float *ws = (float *)pa_gpu_ptr(&io->workspace);
    float *qf = ws + l.q, *dof = ws + l.d_o, *delta = ws + l.delta, *sc = ws + l.s, *dp = ws + l.dp;
    const int64_t dims_q[4] = {p->batch, p->heads_q, p->seq_q, p->head_dim};
    const int64_t dims_o[4] = {p->batch, p->heads_q, p->seq_q, p->head_dim_v};

#define PA_HIP_STEP(call, what)                                                                    \
    do {                                                                                           \
        st = launch_status(dev, (call), what);                                                     \
        if (st != POLYATTN_STATUS_SUCCESS) return st;                                              \
    } while (0)
    PA_HIP_STEP(k->bwd_pack(qf, a->q, a->dtype, dims_q, p->q_stride, stream),
                "pa_gpu_bwd_pack (Q)");
    PA_HIP_STEP(k->bwd_pack(dof, g.d_o, a->dtype, dims_o, p->o_stride, stream),
                "pa_gpu_bwd_pack (dO)");
    PA_HIP_STEP(k->bwd_rowdot(a, g.d_o, delta, stream), "pa_gpu_bwd_rowdot (delta)");
    /* S = scale Q K^T, dP = dO V^T (the same GEMM with dO in Q's place, V in K's) */
    PA_HIP_STEP(k->gemm_qk(a, sc, stream), "pa_gpu_gemm_qk (S)");
    pa_gpu_args av = *a;
    av.q = g.d_o;
    av.k = a->v;
    memcpy(av.q_stride, a->o_stride, sizeof av.q_stride);
    memcpy(av.k_stride, a->v_stride, sizeof av.k_stride);
    av.head_dim = a->head_dim_v;
    av.scale = 1.f;
    PA_HIP_STEP(k->gemm_qk(&av, dp, stream), "pa_gpu_gemm_qk (dP)");
    /* d_bias from S and dP before they become P and dS; d_sinks from delta and the LSE */
    if (g.d_bias) PA_HIP_STEP(k->bwd_dbias(&g, sc, dp, delta, stream), "pa_gpu_bwd_dbias");
    PA_HIP_STEP(k->bwd_softmax_grad(&g, sc, dp, delta, stream), "pa_gpu_bwd_softmax_grad");
    if (g.d_sinks) PA_HIP_STEP(k->bwd_dsinks(&g, delta, stream), "pa_gpu_bwd_dsinks");
    /* dV = P^T dO and dK = scale dS^T Q, summed over the GQA group inside the GEMM */
    pa_gpu_gemm_desc d = group_sum_gemm(p, sc, dof, p->head_dim_v, g.dv, p->v_stride, 1.f);
    PA_HIP_STEP(k->gemm(&d, stream), "pa_gpu_gemm (dV)");
    d = group_sum_gemm(p, dp, qf, p->head_dim, g.dk, p->k_stride, p->scale);
    PA_HIP_STEP(k->gemm(&d, stream), "pa_gpu_gemm (dK)");
    /* dQ = scale dS K, K read in place (its kv head: h / group) */
    memset(&d, 0, sizeof d);
    d.a = dp;
    d.a_batch = p->heads_q * p->seq_q * p->seq_kv;
    d.a_head = p->seq_q * p->seq_kv;
    d.a_row = p->seq_kv;
    d.a_col = 1;
    d.b = a->k;
    d.b_batch = p->k_stride[0], d.b_head = p->k_stride[1];
    d.b_row = p->k_stride[2], d.b_col = p->k_stride[3];
    d.c = g.dq;
    d.c_batch = p->q_stride[0], d.c_head = p->q_stride[1];
    d.c_row = p->q_stride[2], d.c_col = p->q_stride[3];
    d.a_group = 1;
    d.b_group = (int)(p->heads_q / p->heads_kv);
    d.m = (int)p->seq_q;
    d.n = (int)p->head_dim;
    d.k = (int)p->seq_kv;
    d.a_dtype = 0;
    d.b_dtype = d.c_dtype = (int)p->dtype;
    d.batch = (int)p->batch;
    d.heads = (int)p->heads_q;
    d.alpha = p->scale;
    PA_HIP_STEP(k->gemm(&d, stream), "pa_gpu_gemm (dQ)");
#undef PA_HIP_STEP
    return POLYATTN_STATUS_SUCCESS;
}

#define PA_HIP_FORWARD_FEATURES                                                                    \
    (PA_FEATURE_WINDOW | PA_FEATURE_SOFTCAP | PA_FEATURE_ALIBI | PA_FEATURE_BIAS |                 \
     PA_FEATURE_ATTN_MASK | PA_FEATURE_SINKS)
const pa_algo_ops pa_hip_algos[PA_HIP_N_ALGOS] = {
    /* Score variants: every forward has them all (the unfused softmax in
     * mask_softmax_variants.cu, the shared fused and generic flash kernels; never the MFMA
     * kernel); every backward too, with d_bias and d_sinks (fused and flash: the shared SIMT
     * flash backward; unfused: the shared elementwise kernels of gpu_backward.h around the
     * tiled GEMMs).  Serving layouts: flash only
     * (the generic kernel, key splits, KV append), its backward varlen q/kv; unfused and
     * fused are dense. */
    {.algo = POLYATTN_ALGO_UNFUSED,
     .check = unfused_check,
     .workspace_size = unfused_workspace,
     .features = PA_HIP_FORWARD_FEATURES | PA_FEATURE_BIAS_GRAD,
     .backward_features = PA_HIP_FORWARD_FEATURES | PA_FEATURE_BIAS_GRAD,
     .kernel_launches = unfused_launches,
     .forward = unfused_forward,
     .backward_workspace_size = unfused_backward_workspace,
     .backward = unfused_backward},
    {.algo = POLYATTN_ALGO_FUSED,
     .check = fused_check,
     .workspace_size = fused_workspace,
     .features = PA_HIP_FORWARD_FEATURES | PA_FEATURE_BIAS_GRAD,
     .backward_features = PA_HIP_FORWARD_FEATURES | PA_FEATURE_BIAS_GRAD,
     .kernel_launches = one_launch,
     .prepare = fused_prepare,
     .release = plan_release,
     .forward = fused_forward,
     .backward_workspace_size = flash_backward_workspace,
     .backward = flash_backward},
    {.algo = POLYATTN_ALGO_FLASH,
     .check = flash_check,
     .workspace_size = flash_workspace,
     .features = PA_HIP_FORWARD_FEATURES | PA_FEATURE_BIAS_GRAD | PA_FEATURE_VARLEN_Q |
                 PA_FEATURE_VARLEN_KV | PA_FEATURE_KV_CACHE | PA_FEATURE_PAGED_KV |
                 PA_FEATURE_KV_APPEND | PA_FEATURE_E4M3, /* e4m3: the generic kernel */
     .backward_features = PA_HIP_FORWARD_FEATURES | PA_FEATURE_BIAS_GRAD | PA_FEATURE_VARLEN_Q |
                          PA_FEATURE_VARLEN_KV,
     .splits = flash_splits,
     .kernel_launches = flash_launches,
     .prepare = flash_prepare,
     .release = plan_release,
     .forward = flash_forward,
     .backward_workspace_size = flash_backward_workspace,
     .backward = flash_backward},
};
