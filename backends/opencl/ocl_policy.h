/* AUTO's measured order on this backend (ocl_policy.c); the backend's auto_order hook. */
#ifndef PA_OCL_POLICY_H
#define PA_OCL_POLICY_H

#include "pa_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

void pa_ocl_auto_order(const char *arch, const pa_problem *p, polyattn_algo order[3],
                       const char **why);

#ifdef __cplusplus
}
#endif
#endif
