/*
 * The host reference backend: plain C, double accumulation.  Its unfused path is the
 * oracle every test compares against; its flash path is an independent online-softmax
 * implementation checked against the unfused one.
 */
#ifndef PA_HOST_H
#define PA_HOST_H

#include "pa_backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The static ops table of the built-in host backend (one device, "host"). */
const pa_backend_ops *pa_host_backend_ops(void);

#ifdef __cplusplus
}
#endif
#endif /* PA_HOST_H */
