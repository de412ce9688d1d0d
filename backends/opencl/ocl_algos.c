/* The three algorithms on OpenCL: flash (ocl_flash.c) and fused (ocl_fused.c) with their
 * shared backward (ocl_flash_bwd.c), unfused on CLBlast (ocl_unfused.c, ocl_unfused_bwd.c). */
#include "ocl_algos.h"

/* Score variants every forward implements (kernels/variants.cl).  The bias gradient is a
 * backward output, but the core also looks for it in .features of a backward plan. */
#define OCL_FWD_VARIANTS                                                                           \
    (PA_FEATURE_WINDOW | PA_FEATURE_SOFTCAP | PA_FEATURE_ALIBI | PA_FEATURE_BIAS |                 \
     PA_FEATURE_ATTN_MASK | PA_FEATURE_SINKS)

const pa_algo_ops ocl_algos[OCL_N_ALGOS] = {
    {
        .algo = POLYATTN_ALGO_UNFUSED,
        .check = ocl_unfused_check,
        .workspace_size = ocl_unfused_workspace,
        .kernel_launches = ocl_unfused_launches,
        .prepare = ocl_unfused_prepare,
        .release = ocl_release_state,
        .forward = ocl_unfused_forward,
        .backward_workspace_size = ocl_unfused_bwd_workspace,
        .backward = ocl_unfused_backward,
        .features = OCL_FWD_VARIANTS | PA_FEATURE_BIAS_GRAD,
        .backward_features = OCL_FWD_VARIANTS | PA_FEATURE_BIAS_GRAD,
    },
    {
        .algo = POLYATTN_ALGO_FUSED,
        .check = ocl_fused_check,
        .workspace_size = ocl_fused_workspace,
        .kernel_launches = ocl_one_launch,
        .prepare = ocl_fused_prepare,
        .release = ocl_release_state,
        .forward = ocl_fused_forward,
        /* the flash backward kernels: no N x N memory, deterministic (no atomics) */
        .backward_workspace_size = ocl_flash_bwd_workspace,
        .backward = ocl_flash_backward,
        .features = OCL_FWD_VARIANTS | PA_FEATURE_BIAS_GRAD,
        .backward_features = OCL_FWD_VARIANTS | PA_FEATURE_BIAS_GRAD,
    },
    {
        .algo = POLYATTN_ALGO_FLASH,
        .check = ocl_flash_check,
        .workspace_size = ocl_flash_workspace,
        .kernel_launches = ocl_flash_launches,
        .prepare = ocl_flash_prepare,
        .release = ocl_release_state,
        .forward = ocl_flash_forward,
        .backward_workspace_size = ocl_flash_bwd_workspace,
        .backward = ocl_flash_backward_any,
        /* serving layouts: ocl_serving.c (kernels/serving.cl); e4m3 inputs: every flash
         * forward kernel decodes them (common.cl) */
        .features =
            OCL_FWD_VARIANTS | PA_FEATURE_BIAS_GRAD | PA_FEATURE_ALL_SERVING | PA_FEATURE_E4M3,
        .backward_features =
            OCL_FWD_VARIANTS | PA_FEATURE_BIAS_GRAD | PA_FEATURE_VARLEN_Q | PA_FEATURE_VARLEN_KV,
        .splits = ocl_flash_splits,
    },
};
