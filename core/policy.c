/*
 * AUTO's default order: the backend's own measured policy (its auto_order hook, e.g.
 * backends/cuda/cuda_policy.c), or, for a backend with no measurements (HIP: no AMD GPU
 * has run it), the article's guide.  Autotune (a plan option) measures instead of
 * trusting either; debug mode and requests for the probabilities put unfused first
 * (plan.c).
 */
#include "pa_core.h"

void pa_policy_order(const pa_backend_ops *ops, const char *arch, const pa_problem *p,
                     polyattn_algo order[3], const char **why)
{
    if (ops->auto_order) {
        ops->auto_order(arch ? arch : "", p, order, why);
        return;
    }
    const int64_t longest = p->seq_q > p->seq_kv ? p->seq_q : p->seq_kv;
    if (longest <= 2048) {
        order[0] = POLYATTN_ALGO_FUSED, order[1] = POLYATTN_ALGO_FLASH;
        order[2] = POLYATTN_ALGO_UNFUSED;
        *why = "sequence length <= 2048 prefers fused (the article's guide; not measured on "
               "this backend)";
    } else {
        order[0] = POLYATTN_ALGO_FLASH, order[1] = POLYATTN_ALGO_FUSED;
        order[2] = POLYATTN_ALGO_UNFUSED;
        *why = "sequence length > 2048 prefers flash (the article's guide; not measured on "
               "this backend)";
    }
}
