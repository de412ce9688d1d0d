/*
 * CUDA algorithms: unfused (cuBLAS + the shared mask/softmax kernel), fused (shared
 * kernel) and flash (tensor-core kernel for f16/bf16 at head dims 32..256 on sm_80+,
 * else the shared generic kernel).
 */
#include "cuda_internal.h"

#include "../gpu/gpu_attn.h"
#include "../gpu/gpu_args_host.h"
#include "../gpu/gpu_backward.h"
#include "flash_tc.h"
#include "flash_f32.h"
#include "flash_tc_bwd.h"
#include "flash_wgmma.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t dtype_size(polyattn_dtype t)
{
    return t == POLYATTN_DTYPE_F32 ? 4 : 2;
}

/* Sizes the kernels index with int (grid dims, rows). */
static const char *check_int_sizes(const pa_problem *p)
{
    const int64_t lim = 0x7fffffff;
    if (p->seq_q > lim || p->seq_kv > lim || p->batch > 65535 || p->heads_q > 65535)
        return "sizes beyond the CUDA kernels' limits (seq <= 2^31-1, batch and heads_q <= 65535)";
    return NULL;
}

#define LAUNCH(dev, expr)                                                                          \
    do {                                                                                           \
        int pa_l_e_ = (expr);                                                                      \
        if (pa_l_e_ != 0)                                                                          \
            return pa_cuda_fail((dev), (cudaError_t)pa_l_e_, #expr, __FILE__, __LINE__);           \
    } while (0)

/* ------------------------------------------------------------------ flash */

static int tc_disabled(void)
{
    const char *s = getenv("POLYATTN_CUDA_NO_TC");
    return s && *s && strcmp(s, "0") != 0;
}

/* Why the 3xTF32 kernel (f32 storage, head dims 512..1024) cannot take p (NULL: it can). */
static const char *tf32x3_refusal(pa_cuda_device *dev, const pa_problem *p)
{
    if (p->dtype != POLYATTN_DTYPE_F32) return "not f32 storage";
    if (dev->cc_major < 8) return "the device is older than sm_80 (no mma.sync tf32)";
    if (p->head_dim != p->head_dim_v || !pa_cuda_flash_f32_has_head_dim((int)p->head_dim))
        return "f32 with head_dim other than 512, 768, 1024 (or differing from head_dim_v)";
    const int64_t *s[4] = {p->q_stride, p->k_stride, p->v_stride, p->o_stride};
    for (int t = 0; t < 4; t++) {
        if (s[t][3] != 1) return "a head_dim stride is not 1";
        for (int i = 0; i < 3; i++)
            if (s[t][i] % 4) return "a stride is not a multiple of 4 elements (16-byte rows)";
    }
    if (pa_cuda_flash_f32_smem((int)p->head_dim, 0) > dev->smem_optin)
        return "the tile does not fit the device's shared memory";
    if (tc_disabled()) return "POLYATTN_CUDA_NO_TC is set";
    return NULL;
}

/* Why the tensor-core kernel cannot take p (NULL: it can). */
static const char *tc_refusal(pa_cuda_device *dev, const pa_problem *p)
{
    if (p->dtype == POLYATTN_DTYPE_F32) return tf32x3_refusal(dev, p);
    if (dev->cc_major < 8) return "the device is older than sm_80 (no mma.sync m16n8k16 bf16)";
    if (p->head_dim != p->head_dim_v || !pa_cuda_flash_tc_has_head_dim((int)p->head_dim))
        return "head_dim is not one of 32, 64, 96, 128, 256 (or differs from head_dim_v)";
    const int64_t *s[4] = {p->q_stride, p->k_stride, p->v_stride, p->o_stride};
    for (int t = 0; t < 4; t++) {
        if (s[t][3] != 1) return "a head_dim stride is not 1";
        for (int i = 0; i < 3; i++)
            if (s[t][i] % 8) return "a stride is not a multiple of 8 elements (16-byte rows)";
    }
    if (pa_cuda_flash_tc_smem((int)p->head_dim, 0) > dev->smem_optin)
        return "the tile does not fit the device's shared memory";
    if (tc_disabled()) return "POLYATTN_CUDA_NO_TC is set";
    return NULL;
}

/* Whether the warpgroup-MMA kernel (flash_wgmma.h) can take p, which the tensor-core
 * kernels can: also no zero stride on a dimension longer than 1 (a broadcast), which its
 * TMA tensor maps cannot express. */
static int wgmma_fits(const pa_cuda_device *dev, const pa_problem *p)
{
#ifdef POLYATTN_CUDA_HAVE_WGMMA
    const int64_t qo_ext[3] = {p->batch, p->heads_q, p->seq_q};
    const int64_t kv_ext[3] = {p->batch, p->heads_kv, p->seq_kv};
    for (int i = 0; i < 3; i++)
        if ((qo_ext[i] > 1 && (!p->q_stride[i] || !p->o_stride[i])) ||
            (kv_ext[i] > 1 && (!p->k_stride[i] || !p->v_stride[i])))
            return 0;
    return dev->cc_major == 9 && dev->cc_minor == 0 && p->dtype != POLYATTN_DTYPE_F32 &&
           pa_cuda_flash_wgmma_has_head_dim((int)p->head_dim) &&
           pa_cuda_flash_wgmma_smem((int)p->head_dim) <= dev->smem_optin;
#else
    (void)dev, (void)p;
    return 0;
#endif
}

/* The wgmma kernel's plan for p (flash_wgmma.h).  POLYATTN_CUDA_WGMMA_PLAN=<name> forces
 * one. */
static int wgmma_plan_of(const pa_cuda_device *dev, const pa_problem *p)
{
    pa_gpu_args a;
    pa_gpu_args_fill(p, NULL, &a);
    return pa_cuda_flash_wgmma_plan(&a, dev->sm_count > 0 ? dev->sm_count : 1,
                                    getenv("POLYATTN_CUDA_WGMMA_PLAN"));
}

static int launch_wgmma(const pa_gpu_args *a, int plan, void *stream)
{
#ifdef POLYATTN_CUDA_HAVE_WGMMA
    return pa_cuda_flash_wgmma(a, plan, stream);
#else
    (void)a, (void)plan, (void)stream;
    return (int)cudaErrorNotSupported; /* wgmma_fits says no without it */
#endif
}

/* Balanced schedule of the wide kernels (flash_split.h); chunk 0 when none applies.
 * POLYATTN_CUDA_FLASH_SPLIT=0 turns it off, =N forces blocks of N key tiles. */
static pa_flash_split flash_split_of(pa_cuda_device *dev, const pa_problem *p)
{
    pa_flash_split s;
    memset(&s, 0, sizeof s);
    if (tc_refusal(dev, p)) return s;
    const int f32 = p->dtype == POLYATTN_DTYPE_F32;
    const int bn = f32 ? pa_cuda_flash_f32_key_tile((int)p->head_dim, 0)
                       : pa_cuda_flash_tc_key_tile((int)p->head_dim, 0);
    if (!bn) return s;
    const char *env = getenv("POLYATTN_CUDA_FLASH_SPLIT");
    const int force = env && *env ? atoi(env) : -1;
    pa_gpu_args a;
    pa_gpu_args_fill(p, NULL, &a);
    pa_flash_split_plan(&a, PA_FLASH_TILE_M, bn, dev->sm_count > 0 ? dev->sm_count : 1, force, &s);
    s.dependent_combine = dev->cc_major >= 9; /* programmatic dependent launch: sm_90+ */
    /* Key halves (clusters: sm_90+) instead of the plan where they pay.
     * POLYATTN_CUDA_KEY_HALVES=0 turns them off, =1 forces them (over a forced split too). */
    const char *halves = getenv("POLYATTN_CUDA_KEY_HALVES");
    const int halves_force = halves && !strcmp(halves, "1");
    const int halves_off = halves && !strcmp(halves, "0");
    if (dev->cc_major >= 9 && !halves_off && (halves_force || force <= 0) &&
        pa_flash_halves_fit(&a, &s, dev->sm_count, halves_force)) {
        s.chunk = s.units = s.blocks = s.slots = 0;
        s.key_halves = 1;
    }
    /* Column halves (clusters: sm_90+) instead of all that where they pay.
     * POLYATTN_CUDA_COL_HALVES=0 turns them off, =1 forces them (over the others). */
    const char *cols = getenv("POLYATTN_CUDA_COL_HALVES");
    const int cols_force = cols && !strcmp(cols, "1");
    const int cols_off = cols && !strcmp(cols, "0");
    const int bn2 = f32 ? pa_cuda_flash_f32_key_tile((int)p->head_dim, 1)
                        : pa_cuda_flash_tc_key_tile((int)p->head_dim, 1);
    const size_t smem2 = f32 ? pa_cuda_flash_f32_smem((int)p->head_dim, 1)
                             : pa_cuda_flash_tc_smem((int)p->head_dim, 1);
    if (dev->cc_major >= 9 && !cols_off && smem2 <= dev->smem_optin &&
        (cols_force || (force <= 0 && !halves_force)) &&
        pa_flash_col_halves_fit(&a, bn2, dev->sm_count, cols_force)) {
        s.chunk = s.units = s.blocks = s.slots = 0;
        s.key_halves = 0;
        s.col_halves = 1;
        s.key_tile = bn2;
    }
    /* The warpgroup-MMA kernel (sm_90 exactly: its image is sm_90a) for the 16-bit wide head
     * dims it has, instead of all the above: 1.03-1.99x faster at all 16 shapes of session 9
     * call 5 (GPU time).  POLYATTN_CUDA_WGMMA=0 turns it off; forcing one of the schedules
     * above does too (they are tested that way). */
    const char *wg = getenv("POLYATTN_CUDA_WGMMA");
    const int wg_off = (wg && !strcmp(wg, "0")) || force > 0 || halves_force || cols_force;
    if (wgmma_fits(dev, p) && !wg_off) {
        s.chunk = s.units = s.blocks = s.slots = 0;
        s.col_halves = 0;
        s.key_halves = 0;
        s.wgmma = 1;
        s.wgmma_plan = wgmma_plan_of(dev, p);
    }
    return s;
}

static polyattn_status flash_check(pa_device *d, const pa_problem *p, const char **why_not)
{
    pa_cuda_device *dev = pa_cuda_dev(d);
    const char *why = check_int_sizes(p);
    if (why) return *why_not = why, POLYATTN_STATUS_UNSUPPORTED;
    if (p->want_probs) {
        *why_not = "flash never forms the probability matrix (O(seq) memory); use unfused or fused";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    if (p->head_dim > PA_GPU_MAX_HEAD_DIM || p->head_dim_v > PA_GPU_MAX_HEAD_DIM) {
        *why_not = "head_dim and head_dim_v must be <= 1024 for the CUDA flash kernels";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    if (tc_refusal(dev, p)) {
        pa_gpu_args a;
        pa_gpu_args_fill(p, NULL, &a);
        size_t smem = pa_gpu_flash_generic_smem(&a);
        if (smem > dev->smem_optin) {
            snprintf(dev->why, sizeof dev->why,
                     "the generic flash kernel needs %zu bytes of shared memory, the device "
                     "offers %zu per block",
                     smem, dev->smem_optin);
            *why_not = dev->why;
            return POLYATTN_STATUS_UNSUPPORTED;
        }
        snprintf(dev->note[2], sizeof dev->note[2],
                 "generic SIMT kernel (tensor cores not used: %s)", tc_refusal(dev, p));
    } else {
        const pa_flash_split s = flash_split_of(dev, p);
        if (s.wgmma) {
            snprintf(dev->note[2], sizeof dev->note[2],
                     "tensor-core kernel (wgmma %s, head_dim %d: 64 x 64 tiles, plan %s)",
                     polyattn_dtype_name(p->dtype), (int)p->head_dim,
                     pa_cuda_flash_wgmma_plan_name(s.wgmma_plan));
            *why_not = dev->note[2];
            return POLYATTN_STATUS_SUCCESS;
        }
        char split[64] = "";
        if (s.chunk)
            snprintf(split, sizeof split, ", %d blocks of %d key tiles each", s.blocks, s.chunk);
        else if (s.key_halves)
            snprintf(split, sizeof split, ", key tiles halved across 2-block clusters");
        else if (s.col_halves)
            snprintf(split, sizeof split, ", head dim halved across 2-block clusters");
        snprintf(dev->note[2], sizeof dev->note[2], "tensor-core kernel (mma.sync %s, head_dim %d%s%s)",
                 p->dtype == POLYATTN_DTYPE_F32 ? "3xTF32 f32" : polyattn_dtype_name(p->dtype),
                 (int)p->head_dim, p->head_dim > 256 ? ", split-K across 8 warps" : "", split);
    }
    *why_not = dev->note[2];
    return POLYATTN_STATUS_SUCCESS;
}

static int one_launch(pa_device *d, const pa_problem *p)
{
    (void)d, (void)p;
    return 1;
}

/* The wide kernels' partial slots (O and LSE, two per block) and query-tile records. */
static uint64_t flash_workspace(pa_device *d, const pa_problem *p)
{
    const pa_flash_split s = flash_split_of(pa_cuda_dev(d), p);
    pa_gpu_args a;
    pa_gpu_args_fill(p, NULL, &a);
    return pa_flash_split_bytes(&a, &s);
}

static int flash_launches(pa_device *d, const pa_problem *p)
{
    return flash_split_of(pa_cuda_dev(d), p).chunk ? 2 : 1; /* + the combine */
}

static void flash_release(pa_device *d, void *state)
{
    (void)d;
    free(state);
}

static polyattn_status flash_prepare(pa_device *d, const pa_problem *p, void **state)
{
    const char *why = tc_refusal(pa_cuda_dev(d), p);
    *state = NULL;
    if (why) {
        pa_log(POLYATTN_LOG_DISPATCH,
               "cuda flash: generic SIMT kernel (tensor-core kernel not used: %s)", why);
        return POLYATTN_STATUS_SUCCESS;
    }
    pa_flash_split *s = (pa_flash_split *)malloc(sizeof *s);
    if (!s) return pa_fail(d, POLYATTN_STATUS_OUT_OF_MEMORY, "flash: host memory");
    *s = flash_split_of(pa_cuda_dev(d), p);
    *state = s;
    if (s->wgmma) {
        pa_log(POLYATTN_LOG_DISPATCH, "cuda flash: tensor-core kernel (wgmma), head_dim %lld, %s; plan %s",
               (long long)p->head_dim, polyattn_dtype_name(p->dtype),
               pa_cuda_flash_wgmma_plan_name(s->wgmma_plan));
        return POLYATTN_STATUS_SUCCESS;
    }
    pa_log(POLYATTN_LOG_DISPATCH,
           "cuda flash: tensor-core kernel (%s), head_dim %lld, %s; balanced schedule: %d "
           "blocks of %d key tiles of %d keys (0: one block per query tile), %d partial slots; "
           "key halves %d, column halves %d",
           p->dtype == POLYATTN_DTYPE_F32 ? "3xTF32" : "mma.sync", (long long)p->head_dim,
           polyattn_dtype_name(p->dtype), s->blocks, s->chunk, s->key_tile, s->slots, s->key_halves,
           s->col_halves);
    return POLYATTN_STATUS_SUCCESS;
}

static int aligned16(const void *ptr)
{
    return ((uintptr_t)ptr & 15u) == 0;
}

static polyattn_status flash_forward(pa_device *d, const pa_problem *p, void *state,
                                     const pa_io *io)
{
    pa_cuda_device *dev = pa_cuda_dev(d);
    pa_gpu_args a;
    pa_gpu_args_fill(p, io, &a);
    PA_CU(d, cudaSetDevice(dev->ordinal));
    if (!tc_refusal(dev, p) && aligned16(a.q) && aligned16(a.k) && aligned16(a.v) &&
        aligned16(a.o)) {
        pa_flash_split s;
        memset(&s, 0, sizeof s);
        if (state) s = *(const pa_flash_split *)state;
        if (s.chunk && (!a.workspace || io->workspace_bytes < pa_flash_split_bytes(&a, &s)))
            s.chunk = 0; /* no room for the partials: one block per query tile */
        s.part = a.workspace;
        if (s.wgmma)
            LAUNCH(d, launch_wgmma(&a, s.wgmma_plan, dev->stream));
        else if (p->dtype == POLYATTN_DTYPE_F32)
            LAUNCH(d, pa_cuda_flash_f32(&a, &s, dev->stream));
        else
            LAUNCH(d, pa_cuda_flash_tc(&a, &s, dev->stream));
    } else {
        LAUNCH(d, pa_gpu_flash_generic(&a, dev->stream));
    }
    return POLYATTN_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------ fused */

static int fused_scores_fit(pa_cuda_device *dev, const pa_gpu_args *a)
{
    return pa_gpu_fused_smem(a, 1) <= dev->smem_optin;
}

static polyattn_status fused_check(pa_device *d, const pa_problem *p, const char **why_not)
{
    pa_cuda_device *dev = pa_cuda_dev(d);
    const char *why = check_int_sizes(p);
    if (why) return *why_not = why, POLYATTN_STATUS_UNSUPPORTED;
    if (p->head_dim > PA_GPU_MAX_HEAD_DIM || p->head_dim_v > PA_GPU_MAX_HEAD_DIM) {
        *why_not = "head_dim and head_dim_v must be <= 1024 for the fused kernel";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    pa_gpu_args a;
    pa_gpu_args_fill(p, NULL, &a);
    size_t smem = pa_gpu_fused_smem(&a, 0);
    if (smem > dev->smem_optin) {
        snprintf(dev->why, sizeof dev->why,
                 "the fused kernel needs %zu bytes of shared memory, the device offers %zu", smem,
                 dev->smem_optin);
        *why_not = dev->why;
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    snprintf(dev->note[1], sizeof dev->note[1], "one launch; scores of each 32-query tile in %s",
             fused_scores_fit(dev, &a) ? "shared memory" : "the workspace");
    *why_not = dev->note[1];
    return POLYATTN_STATUS_SUCCESS;
}

static uint64_t fused_workspace(pa_device *d, const pa_problem *p)
{
    pa_gpu_args a;
    pa_gpu_args_fill(p, NULL, &a);
    return fused_scores_fit(pa_cuda_dev(d), &a) ? 0 : pa_gpu_fused_workspace(&a);
}

static polyattn_status fused_prepare(pa_device *d, const pa_problem *p, void **state)
{
    pa_gpu_args a;
    pa_gpu_args_fill(p, NULL, &a);
    pa_log(POLYATTN_LOG_DISPATCH, "cuda fused: scores of each 32-query tile in %s",
           fused_scores_fit(pa_cuda_dev(d), &a) ? "shared memory" : "the workspace");
    *state = NULL;
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status fused_forward(pa_device *d, const pa_problem *p, void *state,
                                     const pa_io *io)
{
    (void)state;
    pa_cuda_device *dev = pa_cuda_dev(d);
    pa_gpu_args a;
    pa_gpu_args_fill(p, io, &a);
    const int in_smem = fused_scores_fit(dev, &a);
    if (!in_smem && !a.workspace)
        return pa_fail(d, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "fused: the scores need a workspace of %llu bytes",
                       (unsigned long long)pa_gpu_fused_workspace(&a));
    PA_CU(d, cudaSetDevice(dev->ordinal));
    LAUNCH(d, pa_gpu_fused(&a, in_smem, dev->stream));
    return POLYATTN_STATUS_SUCCESS;
}

/* ---------------------------------------------------------------- unfused */

/* cuBLAS sees one (batch, head) pair per strided-batch entry.  Heads of a GQA group that
 * share a kv head are different calls (offset j within the group); batches fold into the
 * strided batch when every tensor's batch stride is heads * head stride (BHSD and BSHD
 * both), else each batch is its own call. */
typedef struct unfused_plan {
    int group; /* heads_q / heads_kv */
    int flat;  /* batches folded into the strided batch */
    int calls; /* GEMM calls per product */
} unfused_plan;

static unfused_plan unfused_layout(const pa_problem *p)
{
    unfused_plan u;
    u.group = (int)(p->heads_q / p->heads_kv);
    u.flat = p->q_stride[0] == p->heads_q * p->q_stride[1] &&
             p->k_stride[0] == p->heads_kv * p->k_stride[1] &&
             p->v_stride[0] == p->heads_kv * p->v_stride[1] &&
             p->o_stride[0] == p->heads_q * p->o_stride[1];
    if (p->batch == 1) u.flat = 1;
    u.calls = u.group * (u.flat ? 1 : (int)p->batch);
    return u;
}

static polyattn_status unfused_check(pa_device *d, const pa_problem *p, const char **why_not)
{
    const char *why = check_int_sizes(p);
    if (why) return *why_not = why, POLYATTN_STATUS_UNSUPPORTED;
    if (p->q_stride[3] != 1 || p->k_stride[3] != 1 || p->v_stride[3] != 1 || p->o_stride[3] != 1) {
        *why_not = "cuBLAS needs a head_dim stride of 1 in q, k, v and o";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    if ((p->seq_q > 1 && (p->q_stride[2] < p->head_dim || p->o_stride[2] < p->head_dim_v)) ||
        (p->seq_kv > 1 && (p->k_stride[2] < p->head_dim || p->v_stride[2] < p->head_dim_v))) {
        *why_not = "cuBLAS needs sequence strides of at least the head dim (no overlapping rows)";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    if (p->seq_kv * 4 / (int64_t)dtype_size(p->dtype) > 0x7fffffff) {
        *why_not = "seq_kv too long for a cuBLAS leading dimension";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    const unfused_plan u = unfused_layout(p);
    snprintf(pa_cuda_dev(d)->note[0], sizeof pa_cuda_dev(d)->note[0],
             "cublasGemmStridedBatchedEx x %d per product (%d GQA offset%s, %s), f32 accumulate; "
             "mask+softmax kernel",
             u.calls, u.group, u.group > 1 ? "s" : "",
             u.flat ? "batches folded into the strided batch" : "one call per batch");
    *why_not = pa_cuda_dev(d)->note[0];
    return POLYATTN_STATUS_SUCCESS;
}

static uint64_t unfused_workspace(pa_device *d, const pa_problem *p)
{
    (void)d;
    /* f32 scores; the probabilities overwrite them in place in the storage dtype. */
    return (uint64_t)p->batch * p->heads_q * p->seq_q * p->seq_kv * sizeof(float);
}

static int unfused_launches(pa_device *d, const pa_problem *p)
{
    (void)d;
    return 2 * unfused_layout(p).calls + 1;
}

static polyattn_status unfused_prepare(pa_device *d, const pa_problem *p, void **state)
{
    pa_cuda_device *dev = pa_cuda_dev(d);
    PA_CU(d, cudaSetDevice(dev->ordinal));
    if (!dev->blas) {
        PA_CUBLAS(d, cublasCreate(&dev->blas));
        PA_CUBLAS(d, cublasSetStream(dev->blas, dev->stream));
    }
    unfused_plan u = unfused_layout(p);
    pa_log(POLYATTN_LOG_DISPATCH,
           "cuda unfused: cublasGemmStridedBatchedEx x %d per product (%d GQA offset%s x %s), "
           "batch count %lld, f32 accumulate; shared mask+softmax kernel",
           u.calls, u.group, u.group > 1 ? "s" : "",
           u.flat ? "batches folded" : "one call per batch",
           (long long)(u.flat ? p->batch * p->heads_kv : p->heads_kv));
    *state = NULL;
    return POLYATTN_STATUS_SUCCESS;
}

static cudaDataType_t cuda_type(polyattn_dtype t)
{
    return t == POLYATTN_DTYPE_F32   ? CUDA_R_32F
           : t == POLYATTN_DTYPE_F16 ? CUDA_R_16F
                                     : CUDA_R_16BF;
}

static polyattn_status unfused_forward(pa_device *d, const pa_problem *p, void *state,
                                       const pa_io *io)
{
    (void)state;
    pa_cuda_device *dev = pa_cuda_dev(d);
    if (!dev->blas) return pa_fail(d, POLYATTN_STATUS_INTERNAL_ERROR, "unfused: no cuBLAS handle");
    if (!io->workspace.mem || io->workspace_bytes < unfused_workspace(d, p))
        return pa_fail(d, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "unfused: the workspace must hold %llu bytes of scores",
                       (unsigned long long)unfused_workspace(d, p));
    PA_CU(d, cudaSetDevice(dev->ordinal));
    PA_CUBLAS(d, cublasSetStream(dev->blas, dev->stream));
    pa_gpu_args a;
    pa_gpu_args_fill(p, io, &a);
    const unfused_plan u = unfused_layout(p);
    const size_t es = dtype_size(p->dtype);
    const cudaDataType_t t = cuda_type(p->dtype);
    const int sq = (int)p->seq_q, skv = (int)p->seq_kv, dk = (int)p->head_dim,
              dv = (int)p->head_dim_v;
    const long long ldq = p->seq_q > 1 ? p->q_stride[2] : dk;
    const long long ldk = p->seq_kv > 1 ? p->k_stride[2] : dk;
    const long long ldv = p->seq_kv > 1 ? p->v_stride[2] : dv;
    const long long ldo = p->seq_q > 1 ? p->o_stride[2] : dv;
    const long long ldp = (long long)skv * 4 / (long long)es; /* probabilities in place */
    const long long pairs = (long long)sq * skv;
    const int batches = u.flat ? 1 : (int)p->batch;
    const int count = (int)((u.flat ? p->batch : 1) * p->heads_kv);
    float *scores = (float *)a.workspace;
    const float alpha_qk = p->scale, one = 1.f, zero = 0.f;

    /* S^T (column-major skv x sq) = K Q^T, i.e. row-major S = Q K^T * scale. */
    for (int j = 0; j < u.group; j++)
        for (int b = 0; b < batches; b++) {
            const char *qp = (const char *)a.q + (b * p->q_stride[0] + j * p->q_stride[1]) * es;
            const char *kp = (const char *)a.k + b * p->k_stride[0] * es;
            float *sp = scores + ((long long)b * p->heads_q + j) * pairs;
            PA_CUBLAS(d, cublasGemmStridedBatchedEx(dev->blas, CUBLAS_OP_T, CUBLAS_OP_N, skv, sq,
                                                    dk, &alpha_qk, kp, t, ldk, p->k_stride[1], qp,
                                                    t, ldq, u.group * p->q_stride[1], &zero, sp,
                                                    CUDA_R_32F, skv, u.group * pairs, count,
                                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        }
    LAUNCH(d, pa_gpu_mask_softmax(&a, scores, dev->stream));
    /* O^T (column-major dv x sq) = V^T P^T, i.e. row-major O = P V. */
    for (int j = 0; j < u.group; j++)
        for (int b = 0; b < batches; b++) {
            const char *vp = (const char *)a.v + b * p->v_stride[0] * es;
            const char *pp = (const char *)scores + ((long long)b * p->heads_q + j) * pairs * 4;
            char *op = (char *)a.o + (b * p->o_stride[0] + j * p->o_stride[1]) * es;
            PA_CUBLAS(d, cublasGemmStridedBatchedEx(dev->blas, CUBLAS_OP_N, CUBLAS_OP_N, dv, sq,
                                                    skv, &one, vp, t, ldv, p->v_stride[1], pp, t,
                                                    ldp, u.group * pairs * 4 / (long long)es, &zero,
                                                    op, t, ldo, u.group * p->o_stride[1], count,
                                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        }
    return POLYATTN_STATUS_SUCCESS;
}


/* ------------------------------------------------------- unfused backward */

/* The backward works on contiguous f32 copies (every GEMM is a plain SGEMM without TF32,
 * batches always fold, any input stride works) laid out in the workspace as below, in
 * floats.  dK and dV of a GQA group are summed by GEMMs with beta = 1 over the group's
 * query heads in sequence, so the result is bitwise reproducible (no atomics anywhere):
 * the deterministic option changes nothing here. */
typedef struct bwd_layout {
    uint64_t q, d_o, k, v, delta, s, dp, dq, dk, dv, total; /* float offsets */
} bwd_layout;

static bwd_layout bwd_layout_of(const pa_problem *p)
{
    const uint64_t rows_q = (uint64_t)p->batch * p->heads_q * p->seq_q;
    const uint64_t rows_kv = (uint64_t)p->batch * p->heads_kv * p->seq_kv;
    const uint64_t dk = (uint64_t)p->head_dim, dv = (uint64_t)p->head_dim_v;
    bwd_layout l;
    uint64_t at = 0;
#define PA_BWD_TAKE(member, floats) (l.member = at, at += ((floats) + 63) & ~(uint64_t)63)
    PA_BWD_TAKE(q, rows_q * dk);
    PA_BWD_TAKE(d_o, rows_q * dv);
    PA_BWD_TAKE(k, rows_kv * dk);
    PA_BWD_TAKE(v, rows_kv * dv);
    PA_BWD_TAKE(delta, rows_q);
    PA_BWD_TAKE(s, rows_q * (uint64_t)p->seq_kv);
    PA_BWD_TAKE(dp, rows_q * (uint64_t)p->seq_kv);
    PA_BWD_TAKE(dq, rows_q * dk);
    PA_BWD_TAKE(dk, rows_kv * dk);
    PA_BWD_TAKE(dv, rows_kv * dv);
#undef PA_BWD_TAKE
    l.total = at;
    return l;
}

static uint64_t unfused_backward_workspace(pa_device *d, const pa_problem *p)
{
    (void)d;
    return bwd_layout_of(p).total * sizeof(float);
}

static polyattn_status unfused_backward(pa_device *d, const pa_problem *p, void *state,
                                        const pa_backward_io *io)
{
    (void)state;
    pa_cuda_device *dev = pa_cuda_dev(d);
    if (!dev->blas) return pa_fail(d, POLYATTN_STATUS_INTERNAL_ERROR, "unfused: no cuBLAS handle");
    const bwd_layout l = bwd_layout_of(p);
    if (!io->workspace.mem || io->workspace_bytes < l.total * sizeof(float))
        return pa_fail(d, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "unfused backward: the workspace must hold %llu bytes",
                       (unsigned long long)(l.total * sizeof(float)));
    PA_CU(d, cudaSetDevice(dev->ordinal));
    PA_CUBLAS(d, cublasSetStream(dev->blas, dev->stream));
    pa_gpu_args a;
    memset(&a, 0, sizeof a);
    {
        pa_io fio;
        memset(&fio, 0, sizeof fio);
        fio.q = io->q, fio.k = io->k, fio.v = io->v, fio.o = io->o;
        pa_problem np = *p;
        np.want_lse = 0, np.want_probs = 0;
        pa_gpu_args_fill(&np, &fio, &a);
    }
    float *ws = (float *)pa_gpu_ptr(&io->workspace);
    float *qf = ws + l.q, *dof = ws + l.d_o, *kf = ws + l.k, *vf = ws + l.v;
    float *delta = ws + l.delta, *sc = ws + l.s, *dp = ws + l.dp;
    float *dqf = ws + l.dq, *dkf = ws + l.dk, *dvf = ws + l.dv;
    const float *lse = (const float *)pa_gpu_ptr(&io->lse);
    void *st = dev->stream;
    const int64_t dims_q[4] = {p->batch, p->heads_q, p->seq_q, p->head_dim};
    const int64_t dims_o[4] = {p->batch, p->heads_q, p->seq_q, p->head_dim_v};
    const int64_t dims_k[4] = {p->batch, p->heads_kv, p->seq_kv, p->head_dim};
    const int64_t dims_v[4] = {p->batch, p->heads_kv, p->seq_kv, p->head_dim_v};

    LAUNCH(d, pa_gpu_bwd_pack(qf, a.q, a.dtype, dims_q, p->q_stride, st));
    LAUNCH(d, pa_gpu_bwd_pack(dof, pa_gpu_ptr(&io->d_o), a.dtype, dims_o, p->o_stride, st));
    LAUNCH(d, pa_gpu_bwd_pack(kf, a.k, a.dtype, dims_k, p->k_stride, st));
    LAUNCH(d, pa_gpu_bwd_pack(vf, a.v, a.dtype, dims_v, p->v_stride, st));
    LAUNCH(d, pa_gpu_bwd_rowdot(&a, pa_gpu_ptr(&io->d_o), delta, st));

    /* Row-major X [m, n] is column-major X^T with leading dimension n.  One strided batch
     * runs over (batch, kv head); query head j of each group is call j. */
    const int g = (int)(p->heads_q / p->heads_kv);
    const int count = (int)(p->batch * p->heads_kv);
    const int sq = (int)p->seq_q, skv = (int)p->seq_kv, hd = (int)p->head_dim,
              hdv = (int)p->head_dim_v;
    const long long pairs = (long long)sq * skv;
    const long long qs = (long long)sq * hd, os = (long long)sq * hdv;
    const long long ks = (long long)skv * hd, vs = (long long)skv * hdv;
    const float scale = p->scale, one = 1.f, zero = 0.f;
    for (int j = 0; j < g; j++) {
        float *sj = sc + j * pairs, *dpj = dp + j * pairs;
        const float *qj = qf + j * qs, *doj = dof + j * os;
        /* S^T (skv x sq) = K Q^T * scale */
        PA_CUBLAS(d, cublasSgemmStridedBatched(dev->blas, CUBLAS_OP_T, CUBLAS_OP_N, skv, sq, hd,
                                               &scale, kf, hd, ks, qj, hd, g * qs, &zero, sj, skv,
                                               g * pairs, count));
        /* dP^T (skv x sq) = V dO^T */
        PA_CUBLAS(d, cublasSgemmStridedBatched(dev->blas, CUBLAS_OP_T, CUBLAS_OP_N, skv, sq, hdv,
                                               &one, vf, hdv, vs, doj, hdv, g * os, &zero, dpj,
                                               skv, g * pairs, count));
    }
    LAUNCH(d, pa_gpu_bwd_probs(&a, sc, lse, st));
    LAUNCH(d, pa_gpu_bwd_dscores(&a, sc, dp, delta, st));
    for (int j = 0; j < g; j++) {
        const float *pj = sc + j * pairs, *dsj = dp + j * pairs;
        const float *qj = qf + j * qs, *doj = dof + j * os;
        float *dqj = dqf + j * qs;
        const float *beta = j ? &one : &zero;
        /* dV^T (hdv x skv) += dO^T P, summed over the group in order j = 0, 1, ... */
        PA_CUBLAS(d, cublasSgemmStridedBatched(dev->blas, CUBLAS_OP_N, CUBLAS_OP_T, hdv, skv, sq,
                                               &one, doj, hdv, g * os, pj, skv, g * pairs, beta,
                                               dvf, hdv, vs, count));
        /* dK^T (hd x skv) += scale Q^T dS */
        PA_CUBLAS(d, cublasSgemmStridedBatched(dev->blas, CUBLAS_OP_N, CUBLAS_OP_T, hd, skv, sq,
                                               &scale, qj, hd, g * qs, dsj, skv, g * pairs, beta,
                                               dkf, hd, ks, count));
        /* dQ^T (hd x sq) = scale K^T dS^T */
        PA_CUBLAS(d, cublasSgemmStridedBatched(dev->blas, CUBLAS_OP_N, CUBLAS_OP_N, hd, sq, skv,
                                               &scale, kf, hd, ks, dsj, skv, g * pairs, &zero, dqj,
                                               hd, g * qs, count));
    }
    LAUNCH(d, pa_gpu_bwd_unpack(pa_gpu_ptr(&io->dq), dqf, a.dtype, dims_q, p->q_stride, st));
    LAUNCH(d, pa_gpu_bwd_unpack(pa_gpu_ptr(&io->dk), dkf, a.dtype, dims_k, p->k_stride, st));
    LAUNCH(d, pa_gpu_bwd_unpack(pa_gpu_ptr(&io->dv), dvf, a.dtype, dims_v, p->v_stride, st));
    return POLYATTN_STATUS_SUCCESS;
}

/* ------------------------------------------------- flash and fused backward */

/* Fused and flash share one backward: the FlashAttention-2 kernels (P recomputed tile by
 * tile from Q, K and the LSE; no seq_q x seq_kv array), so fused has no separate O(N^2)
 * backward.  Tensor cores (flash_tc_bwd.cu) for f16/bf16 at head dims 64 and 128 on
 * sm_80+, else the shared SIMT kernels of backends/gpu/flash_bwd.cu. */

static void bwd_args_fill(const pa_problem *p, const pa_backward_io *io, pa_gpu_bwd_args *ba)
{
    memset(ba, 0, sizeof *ba);
    pa_problem np = *p;
    np.want_lse = 0, np.want_probs = 0;
    if (io) {
        pa_io fio;
        memset(&fio, 0, sizeof fio);
        fio.q = io->q, fio.k = io->k, fio.v = io->v, fio.o = io->o;
        pa_gpu_args_fill(&np, &fio, &ba->fwd);
        ba->fwd.lse = (float *)pa_gpu_ptr(&io->lse);
        ba->d_o = pa_gpu_ptr(&io->d_o);
        ba->dq = pa_gpu_ptr(&io->dq);
        ba->dk = pa_gpu_ptr(&io->dk);
        ba->dv = pa_gpu_ptr(&io->dv);
    } else {
        pa_gpu_args_fill(&np, NULL, &ba->fwd);
    }
    ba->deterministic = p->deterministic;
}

/* Why the tensor-core backward cannot take p (NULL: it can). */
static const char *tc_bwd_refusal(pa_cuda_device *dev, const pa_problem *p)
{
    if (p->dtype == POLYATTN_DTYPE_F32) return "f32 storage";
    if (dev->cc_major < 8) return "the device is older than sm_80";
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
    if (tc_disabled()) return "POLYATTN_CUDA_NO_TC is set";
    return NULL;
}

static int tc_bwd_pointers_ok(const pa_gpu_bwd_args *ba)
{
    return aligned16(ba->fwd.q) && aligned16(ba->fwd.k) && aligned16(ba->fwd.v) &&
           aligned16(ba->fwd.o) && aligned16(ba->d_o) && ((uintptr_t)ba->dq & 3u) == 0 &&
           ((uintptr_t)ba->dk & 3u) == 0 && ((uintptr_t)ba->dv & 3u) == 0;
}

/* NULL when some backward kernel can run p, else the reason (device-owned or static). */
static const char *bwd_refusal(pa_cuda_device *dev, const pa_problem *p)
{
    const char *tc = tc_bwd_refusal(dev, p);
    if (!tc) return NULL;
#ifdef POLYATTN_CUDA_HAVE_SIMT_BWD
    pa_gpu_bwd_args ba;
    bwd_args_fill(p, NULL, &ba);
    const size_t smem = pa_gpu_flash_bwd_smem(&ba);
    if (smem && smem <= dev->smem_optin) return NULL;
    snprintf(dev->why, sizeof dev->why,
             "backward: the tensor-core kernels cannot take it (%s) and the SIMT flash backward "
             "needs %zu bytes of shared memory (0: beyond its limits), the device offers %zu",
             tc, smem, dev->smem_optin);
#else
    snprintf(dev->why, sizeof dev->why,
             "backward: the tensor-core kernels cannot take it (%s) and this build has no SIMT "
             "flash backward",
             tc);
#endif
    return dev->why;
}

/* Appends how the backward runs to the forward check's note. */
static polyattn_status bwd_check_note(pa_cuda_device *dev, const pa_problem *p, char *note,
                                      size_t note_size, const char **why_not)
{
    if (!p->want_backward) return POLYATTN_STATUS_SUCCESS;
    const char *why = bwd_refusal(dev, p);
    if (why) return *why_not = why, POLYATTN_STATUS_UNSUPPORTED;
    const size_t used = strlen(note);
    if (used < note_size)
        snprintf(note + used, note_size - used, "; backward: %s",
                 tc_bwd_refusal(dev, p) ? "SIMT flash kernels"
                 : p->deterministic     ? "tensor-core FA2 kernels, dQ pass"
                                        : "tensor-core FA2 kernels, dQ atomics");
    *why_not = note;
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status flash_check_bwd(pa_device *d, const pa_problem *p, const char **why_not)
{
    polyattn_status st = flash_check(d, p, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    pa_cuda_device *dev = pa_cuda_dev(d);
    return bwd_check_note(dev, p, dev->note[2], sizeof dev->note[2], why_not);
}

static polyattn_status fused_check_bwd(pa_device *d, const pa_problem *p, const char **why_not)
{
    polyattn_status st = fused_check(d, p, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    pa_cuda_device *dev = pa_cuda_dev(d);
    st = bwd_check_note(dev, p, dev->note[1], sizeof dev->note[1], why_not);
    if (st == POLYATTN_STATUS_SUCCESS && p->want_backward) {
        /* fused has no backward kernel of its own */
        const size_t used = strlen(dev->note[1]);
        if (used < sizeof dev->note[1])
            snprintf(dev->note[1] + used, sizeof dev->note[1] - used, " (flash's, O(seq) memory)");
    } else if (st != POLYATTN_STATUS_SUCCESS) {
        char tmp[sizeof dev->why];
        snprintf(tmp, sizeof tmp, "%s", *why_not);
        snprintf(dev->why, sizeof dev->why,
                 "fused backward runs the flash backward kernels (no O(N^2) backward): %.170s",
                 tmp);
        *why_not = dev->why;
    }
    return st;
}

static void bwd_log(const char *algo, pa_cuda_device *dev, const pa_problem *p)
{
    if (!p->want_backward) return;
    const char *why = tc_bwd_refusal(dev, p);
    if (why)
        pa_log(POLYATTN_LOG_DISPATCH,
               "cuda %s backward: shared SIMT flash backward (tensor-core kernels not used: %s)%s",
               algo, why, strcmp(algo, "fused") == 0 ? "; fused runs the flash backward" : "");
    else
        pa_log(POLYATTN_LOG_DISPATCH,
               "cuda %s backward: tensor-core FA2 kernels (%s + %s), head_dim %lld, %s%s",
               algo, pa_cuda_flash_tc_bwd_kernel((int)p->head_dim),
               p->deterministic ? "flash_bwd_dq_tc_kernel" : "dQ f32 atomics",
               (long long)p->head_dim, polyattn_dtype_name(p->dtype),
               strcmp(algo, "fused") == 0 ? "; fused runs the flash backward" : "");
}

static polyattn_status flash_prepare_bwd(pa_device *d, const pa_problem *p, void **state)
{
    polyattn_status st = flash_prepare(d, p, state);
    if (st == POLYATTN_STATUS_SUCCESS) bwd_log("flash", pa_cuda_dev(d), p);
    return st;
}

static polyattn_status fused_prepare_bwd(pa_device *d, const pa_problem *p, void **state)
{
    polyattn_status st = fused_prepare(d, p, state);
    if (st == POLYATTN_STATUS_SUCCESS) bwd_log("fused", pa_cuda_dev(d), p);
    return st;
}

static uint64_t flash_backward_workspace(pa_device *d, const pa_problem *p)
{
    pa_gpu_bwd_args ba;
    bwd_args_fill(p, NULL, &ba);
    uint64_t tc = tc_bwd_refusal(pa_cuda_dev(d), p) ? 0 : pa_cuda_flash_tc_bwd_workspace(&ba);
#ifdef POLYATTN_CUDA_HAVE_SIMT_BWD
    /* the SIMT kernels take over on misaligned pointers, so size for both */
    const uint64_t simt = pa_gpu_flash_bwd_workspace(&ba);
    if (simt > tc) tc = simt;
#endif
    return tc;
}

static polyattn_status flash_backward(pa_device *d, const pa_problem *p, void *state,
                                      const pa_backward_io *io)
{
    (void)state;
    pa_cuda_device *dev = pa_cuda_dev(d);
    const uint64_t need = flash_backward_workspace(d, p);
    if (need && (!io->workspace.mem || io->workspace_bytes < need))
        return pa_fail(d, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "flash backward: the workspace must hold %llu bytes",
                       (unsigned long long)need);
    pa_gpu_bwd_args ba;
    bwd_args_fill(p, io, &ba);
    void *ws = pa_gpu_ptr(&io->workspace);
    PA_CU(d, cudaSetDevice(dev->ordinal));
    if (!tc_bwd_refusal(dev, p) && tc_bwd_pointers_ok(&ba)) {
        LAUNCH(d, pa_cuda_flash_tc_bwd(&ba, ws, dev->stream));
        return POLYATTN_STATUS_SUCCESS;
    }
#ifdef POLYATTN_CUDA_HAVE_SIMT_BWD
    LAUNCH(d, pa_gpu_flash_bwd(&ba, ws, dev->stream));
    return POLYATTN_STATUS_SUCCESS;
#else
    return pa_fail(d, POLYATTN_STATUS_UNSUPPORTED,
                   "flash backward: the tensor-core kernels need q, k, v, o, d_o 16-byte aligned "
                   "and dq, dk, dv 4-byte aligned, and this build has no SIMT flash backward");
#endif
}

const pa_algo_ops pa_cuda_algos[3] = {
    {.algo = POLYATTN_ALGO_UNFUSED,
     .check = unfused_check,
     .workspace_size = unfused_workspace,
     .kernel_launches = unfused_launches,
     .prepare = unfused_prepare,
     .forward = unfused_forward,
     .backward_workspace_size = unfused_backward_workspace,
     .backward = unfused_backward},
    {.algo = POLYATTN_ALGO_FUSED,
     .check = fused_check_bwd,
     .workspace_size = fused_workspace,
     .kernel_launches = one_launch,
     .prepare = fused_prepare_bwd,
     .forward = fused_forward,
     .backward_workspace_size = flash_backward_workspace,
     .backward = flash_backward},
    {.algo = POLYATTN_ALGO_FLASH,
     .check = flash_check_bwd,
     .workspace_size = flash_workspace,
     .kernel_launches = flash_launches,
     .prepare = flash_prepare_bwd,
     .release = flash_release,
     .forward = flash_forward,
     .backward_workspace_size = flash_backward_workspace,
     .backward = flash_backward},
};
