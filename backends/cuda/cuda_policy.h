/* AUTO's measured order on this backend (cuda_policy.c); the backend's auto_order hook. */
#ifndef PA_CUDA_POLICY_H
#define PA_CUDA_POLICY_H

#include "pa_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

void pa_cuda_auto_order(const char *arch, const pa_problem *p, polyattn_algo order[3],
                        const char **why);

#ifdef __cplusplus
}
#endif
#endif
