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

/* Backward of the unfused (exact oracle) and flash (FlashAttention-2 recomputation from
 * the LSE) algorithms, pa_host_backward.c. */
uint64_t pa_host_backward_workspace_size(pa_device *dev, const pa_problem *p);
polyattn_status pa_host_backward_unfused(pa_device *dev, const pa_problem *p, void *state,
                                         const pa_backward_io *io);
polyattn_status pa_host_backward_flash(pa_device *dev, const pa_problem *p, void *state,
                                       const pa_backward_io *io);

/* The dense forward of pa_host.c (flash: the online-softmax path, else the reference). */
polyattn_status pa_host_run(pa_device *dev, const pa_problem *p, const pa_io *io, int flash);

/* Serving layouts (pa_host_serving.c): checks the device-resident offsets, lengths and
 * block indices, appends, then runs each sequence as a dense problem through pa_host_run
 * or the dense backward given. */
typedef polyattn_status (*pa_host_backward_fn)(pa_device *dev, const pa_problem *p, void *state,
                                               const pa_backward_io *io);
/* The offset, length and block-index checks alone, on a pa_serving_io whose tensors are in
 * host memory (the host's own, or a GPU's copied back for check_device_inputs). */
polyattn_status pa_serving_check_values(pa_device *dev, const pa_problem *p,
                                        const pa_serving_io *srv, int forward);
polyattn_status pa_host_serving_forward(pa_device *dev, const pa_problem *p, const pa_io *io,
                                        int flash);
polyattn_status pa_host_serving_backward(pa_device *dev, const pa_problem *p, void *state,
                                         const pa_backward_io *io, pa_host_backward_fn dense);

/* polyattn_merge_states in double (pa_host_merge.c). */
polyattn_status pa_host_merge_states(pa_device *dev, const pa_merge_problem *m,
                                     const pa_merge_io *io);

#ifdef __cplusplus
}
#endif
#endif /* PA_HOST_H */
