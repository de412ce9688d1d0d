/*
 * AUTO's default order on OpenCL devices, from NVIDIA's OpenCL on the H100 and PoCL
 * measurements committed under bench/results/.
 */
#include "ocl_policy.h"

#define U POLYATTN_ALGO_UNFUSED
#define F POLYATTN_ALGO_FUSED
#define L POLYATTN_ALGO_FLASH

static void set(polyattn_algo order[3], polyattn_algo a, polyattn_algo b, polyattn_algo c)
{
    order[0] = a, order[1] = b, order[2] = c;
}

void pa_ocl_auto_order(const char *arch, const pa_problem *p, polyattn_algo order[3],
                       const char **why)
{
    (void)arch;
    const int64_t longest = p->seq_q > p->seq_kv ? p->seq_q : p->seq_kv;
    /* bench/results/2026-11-24-h100-opencl-forward.md: flash fastest on 35 of 37 shapes
     * (within 6% of unfused on the other two); 2026-11-24-pocl-opencl-forward.md: flash
     * 2.2-3.7x faster
     * than unfused at N = 2048; fused between the two at N >= 4096. */
    /* bench/results/2026-11-24-h100-auto-vs-autotune.csv (autotune on the H100): unfused
     * won every decode shape with seq_q * seq_kv >= 4096, fused or unfused won f16
     * head_dim 128 up to N = 2048 (flash loads half data element by element there). */
    if (p->dtype == POLYATTN_DTYPE_E4M3) {
        set(order, L, F, U);
        *why = "opencl, e4m3 inputs: flash, the only OpenCL kernels that read them (CLBlast "
               "has no FP8 GEMM)";
    } else if (p->seq_q <= 16 && (double)p->seq_q * (double)p->seq_kv >= 4096) {
        set(order, U, L, F);
        *why = "opencl, decode (seq_q <= 16): unfused first, measured fastest by autotune "
               "on NVIDIA's OpenCL";
    } else if (p->dtype != POLYATTN_DTYPE_F32 && p->head_dim > 64 && p->seq_q > 16 &&
               longest <= 2048) {
        set(order, F, L, U);
        *why = "opencl, f16/bf16, head_dim > 64, N <= 2048: fused first, measured faster "
               "than flash on NVIDIA's OpenCL";
    } else {
        set(order, L, F, U);
        *why = "opencl: flash first, measured fastest on NVIDIA's OpenCL and on PoCL";
    }
}
