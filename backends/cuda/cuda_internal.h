/* CUDA backend internals shared by its C files. */
#ifndef POLYATTN_CUDA_INTERNAL_H
#define POLYATTN_CUDA_INTERNAL_H

#include "pa_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

typedef struct pa_cuda_device {
    pa_device base; /* first member: the core reaches last_error through it */
    int ordinal;
    cudaStream_t stream;
    int own_stream;
    cublasHandle_t blas; /* created on the first unfused plan */
    int cc_major, cc_minor, sm_count;
    size_t smem_optin, l2_bytes, total_mem;
    char why[256];     /* device-owned rejection reasons of check() */
    char why_bwd[256]; /* the backward's, when the forward's reason is kept too */
    char why_mma[128]; /* why the mma.sync flash kernels do not take a problem */
    char note[3][256]; /* check()'s note on how an eligible algorithm runs, per algo */
} pa_cuda_device;

static inline pa_cuda_device *pa_cuda_dev(pa_device *d) { return (pa_cuda_device *)d; }

/* Whether a dimension longer than 1 of q, o, k or v has a zero stride (a broadcast), which
 * the TMA tensor maps of the sm_90 kernels cannot express. */
static inline int pa_cuda_has_broadcast_stride(const pa_problem *p)
{
    const int64_t qo_ext[3] = {p->batch, p->heads_q, p->seq_q};
    const int64_t kv_ext[3] = {p->batch, p->heads_kv, p->seq_kv};
    for (int i = 0; i < 3; i++)
        if ((qo_ext[i] > 1 && (!p->q_stride[i] || !p->o_stride[i])) ||
            (kv_ext[i] > 1 && (!p->k_stride[i] || !p->v_stride[i])))
            return 1;
    return 0;
}

polyattn_status pa_cuda_status(cudaError_t e);
polyattn_status pa_cuda_fail(pa_device *dev, cudaError_t e, const char *expr, const char *file,
                             int line);
polyattn_status pa_cublas_fail(pa_device *dev, cublasStatus_t e, const char *expr, const char *file,
                               int line);

/* Evaluates a CUDA runtime call once; on failure records the runtime's message, the
 * expression and its place in the context's last error and returns the mapped status. */
#define PA_CU(dev, expr)                                                                           \
    do {                                                                                           \
        cudaError_t pa_cu_e_ = (expr);                                                             \
        if (pa_cu_e_ != cudaSuccess)                                                               \
            return pa_cuda_fail((dev), pa_cu_e_, #expr, __FILE__, __LINE__);                       \
    } while (0)
#define PA_CUBLAS(dev, expr)                                                                       \
    do {                                                                                           \
        cublasStatus_t pa_cb_e_ = (expr);                                                          \
        if (pa_cb_e_ != CUBLAS_STATUS_SUCCESS)                                                     \
            return pa_cublas_fail((dev), pa_cb_e_, #expr, __FILE__, __LINE__);                     \
    } while (0)

/* ---- POLYATTN_FORCE keys of this backend (cuda_force.c; README, "Forcing a path") ---- */

typedef enum pa_cuda_fwd_kernel {
    PA_CUDA_FWD_AUTO = 0,
    PA_CUDA_FWD_SIMT,   /* the shared generic kernel (backends/gpu) */
    PA_CUDA_FWD_MMA,    /* mma.sync tensor cores: flash_tc (f16/bf16), flash_f32 (3xTF32) */
    PA_CUDA_FWD_WGMMA,  /* warpgroup MMA, sm_90 (flash_wgmma) */
    PA_CUDA_FWD_HOPPER, /* warp-specialized warpgroup MMA, sm_90, head dims 64-256
                         * (flash_hopper; a plan's kernel, forced as cuda.flash=wgmma) */
} pa_cuda_fwd_kernel;

typedef enum pa_cuda_schedule {
    PA_CUDA_SCHED_AUTO = 0,
    PA_CUDA_SCHED_GRID,       /* one block per query tile */
    PA_CUDA_SCHED_SPLIT,      /* balanced key-tile schedule (flash_split.h) */
    PA_CUDA_SCHED_KEY_HALVES, /* 2-block clusters, key tiles halved */
    PA_CUDA_SCHED_COL_HALVES, /* 2-block clusters, head dim halved */
} pa_cuda_schedule;

typedef enum pa_cuda_bwd_kernel {
    PA_CUDA_BWD_AUTO = 0,
    PA_CUDA_BWD_SIMT,   /* the shared SIMT flash backward (backends/gpu/flash_bwd.cu) */
    PA_CUDA_BWD_MMA,    /* the tensor-core FA2 kernels (flash_tc_bwd) */
    PA_CUDA_BWD_HOPPER, /* the warpgroup-MMA kernels on sm_90 (flash_hopper_bwd; opt-in) */
} pa_cuda_bwd_kernel;

typedef struct pa_cuda_force {
    pa_cuda_fwd_kernel flash;  /* cuda.flash */
    pa_cuda_schedule schedule; /* cuda.schedule */
    int split_chunk;           /* cuda.schedule=split:N: N key tiles a block (0: planned) */
    const char *wgmma_plan;    /* cuda.wgmma_plan: a pa_wgmma_plan name, NULL: measured */
    pa_cuda_bwd_kernel bwd;    /* cuda.flash_bwd */
    char bwd_tile;             /* cuda.bwd_tile: 'a', 'b', 'f'; 0: per head dim */
    int hopper_sched;          /* cuda.hopper_sched: 0 auto, 1 serial, 2 pingpong, 3 overlap */
    int hopper_bias;           /* cuda.hopper_bias: 0 auto, 1 regs, 2 smem */
    int hopper_exp2;           /* cuda.hopper_exp2: 0 auto, 1 mufu, 2 poly */
    int serving_stages;        /* cuda.serving_stages: the serving kernel's K/V ring, 0 auto */
} pa_cuda_force;

/* Reads this backend's keys of the context's POLYATTN_FORCE.  An unknown value fails with
 * INVALID_ARGUMENT and a reason naming POLYATTN_FORCE and the key (in dev->why). */
polyattn_status pa_cuda_force_get(pa_cuda_device *dev, pa_cuda_force *f, const char **why_not);
/* One dispatch-log line naming the keys that are set ("" when none). */
void pa_cuda_force_describe(const pa_cuda_force *f, char *buf, size_t n);

/* Dtypes of every kernel (f32/f16/bf16, o alike) and sizes the kernels index with int
 * (grid dims, rows): NULL, or why not. */
const char *pa_cuda_int_sizes_refusal(const pa_problem *p);
/* The sizes alone (flash checks its dtypes itself: e4m3 on the generic kernel). */
const char *pa_cuda_sizes_refusal(const pa_problem *p);

/* The shared host glue of backends/gpu over this device (gpu_glue.h). */
struct pa_gpu_glue;
void pa_cuda_glue(pa_cuda_device *dev, struct pa_gpu_glue *g);

/* Evaluates a launcher returning a cudaError_t as int; on failure returns from the caller. */
#define PA_CU_LAUNCH(dev, expr)                                                                    \
    do {                                                                                           \
        int pa_l_e_ = (expr);                                                                      \
        if (pa_l_e_ != 0)                                                                          \
            return pa_cuda_fail((dev), (cudaError_t)pa_l_e_, #expr, __FILE__, __LINE__);           \
    } while (0)

/* The algorithms' entry points (cuda_unfused.c, cuda_fused.c, cuda_flash.c; the backward
 * of fused and flash in cuda_backward.c), gathered in pa_cuda_algos (cuda_device.c). */
#define PA_CUDA_ALGO_FNS(name)                                                                     \
    polyattn_status pa_cuda_##name##_check(pa_device *d, const pa_problem *p,                      \
                                           const char **why_not);                                  \
    uint64_t pa_cuda_##name##_workspace(pa_device *d, const pa_problem *p);                        \
    int pa_cuda_##name##_launches(pa_device *d, const pa_problem *p);                              \
    polyattn_status pa_cuda_##name##_prepare(pa_device *d, const pa_problem *p, void **state);     \
    polyattn_status pa_cuda_##name##_forward(pa_device *d, const pa_problem *p, void *state,       \
                                             const pa_io *io);                                     \
    uint64_t pa_cuda_##name##_backward_workspace(pa_device *d, const pa_problem *p);               \
    polyattn_status pa_cuda_##name##_backward(pa_device *d, const pa_problem *p, void *state,      \
                                              const pa_backward_io *io);
PA_CUDA_ALGO_FNS(unfused)
PA_CUDA_ALGO_FNS(fused)
PA_CUDA_ALGO_FNS(flash)
#undef PA_CUDA_ALGO_FNS
int pa_cuda_flash_splits(pa_device *d, const pa_problem *p); /* key splits of the plan */
void pa_cuda_plan_release(pa_device *d, void *state);
extern const pa_algo_ops pa_cuda_algos[3];

/* ---- the backward of fused and flash (cuda_backward.c) ---- */

/* How a plan runs the backward, fixed at plan time. */
typedef struct pa_cuda_bwd_plan {
    pa_cuda_bwd_kernel kernel; /* SIMT, MMA or HOPPER; AUTO: the plan has no backward */
    char tile;                 /* MMA: the dK/dV configuration ('a', 'b', 'f') */
    uint64_t workspace;
} pa_cuda_bwd_plan;

/* Plans the backward of p (p->want_backward); on rejection *why_not says why. */
polyattn_status pa_cuda_bwd_plan_make(pa_cuda_device *dev, const pa_problem *p,
                                      const pa_cuda_force *f, pa_cuda_bwd_plan *b,
                                      const char **why_not);
/* Appends how the backward runs to a check's note. */
void pa_cuda_bwd_note(const pa_cuda_bwd_plan *b, const pa_problem *p, char *note, size_t n);
void pa_cuda_bwd_log(const char *algo, const pa_cuda_bwd_plan *b, const pa_problem *p);
polyattn_status pa_cuda_bwd_run(pa_cuda_device *dev, const pa_problem *p, const pa_cuda_bwd_plan *b,
                                const pa_backward_io *io);

polyattn_status pa_cuda_open(int index, cudaStream_t stream, int own_stream, pa_device **out);
extern const pa_backend_ops pa_cuda_ops;

#endif
