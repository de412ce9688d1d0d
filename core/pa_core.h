/* Internal structures of the core: contexts, buffers, plans.  Not visible to backends. */
#ifndef PA_CORE_H
#define PA_CORE_H

#include "pa_backend.h"

#include <stdio.h>

struct polyattn_context {
    const pa_backend_ops *ops;
    pa_device *dev;
    int owns_device;        /* 0 for contexts wrapped around caller handles */
    uint64_t current_bytes; /* memory held by buffers this context allocated */
    uint64_t peak_bytes;
};

struct polyattn_buffer {
    polyattn_context *ctx;
    void *mem;       /* backend handle shared by views */
    uint64_t offset; /* bytes from the start of mem */
    uint64_t bytes;
    polyattn_buffer *parent; /* NULL for an allocation or a wrapped handle */
    int owns_mem;
    int n_views; /* live views of this buffer */
};

struct polyattn_plan {
    polyattn_context *ctx;
    const pa_algo_ops *algo;
    pa_problem problem;
    void *state;
    polyattn_plan_info info;
};

struct polyattn_event {
    polyattn_context *ctx;
    void *handle;
};

/* Registry (registry.c). */
const pa_backend_ops *pa_registry_backend(polyattn_backend backend, const char **why_not);

/* Descriptor validation (desc.c): fills *problem on success; *message names the field. */
polyattn_status pa_desc_normalize(const polyattn_attention_desc *desc, pa_problem *problem,
                                  const char **message);
/* Writes a message naming the field into a thread-local buffer (*message, may be NULL) and
 * returns INVALID_ARGUMENT (desc.c). */
polyattn_status pa_desc_reject(const char **message, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Serving layouts (serving.c).  pa_serving_check validates the descriptor's serving members
 * and the shapes they imply (run by pa_desc_normalize after each tensor's own checks) and
 * sets *batch to the number of sequences; pa_serving_fill copies them into the problem. */
polyattn_status pa_serving_check(const polyattn_attention_desc *desc, int64_t *batch,
                                 const char **message);
void pa_serving_fill(const polyattn_attention_desc *desc, pa_problem *p);
/* The q, k, v and o tensors a problem was made from (shape[0] and shape[2] as given). */
void pa_problem_tensors(const pa_problem *p, polyattn_tensor_desc *q, polyattn_tensor_desc *k,
                        polyattn_tensor_desc *v, polyattn_tensor_desc *o);
/* With the plan option check_device_inputs on a GPU backend: reads the serving tensors
 * back and checks them like the host does (one synchronization); SUCCESS otherwise. */
polyattn_status pa_serving_check_device(polyattn_context *ctx, const pa_problem *p,
                                        const pa_serving_io *srv, int backward);
/* Elements of the LSE: batch x heads_q x seq_q, or heads_q x total_q with varlen_q. */
uint64_t pa_problem_lse_elements(const pa_problem *p);
/* The serving tensors of a forward (backward = 0) or backward call, checked against the
 * problem like the variants' (serving.c). */
polyattn_status pa_bind_serving(polyattn_context *ctx, const pa_problem *p,
                                const polyattn_extra_tensors *extra, int backward,
                                pa_serving_io *out);
/* The caller's extra tensors with members past its struct_size NULL; INVALID_ARGUMENT when
 * struct_size is below the first published size (variants.c). */
polyattn_status pa_extra_read(polyattn_context *ctx, const polyattn_extra_tensors *caller,
                              polyattn_extra_tensors *extra);
/* Sizes a plan derives from a normalized problem (with its want_* flags set) are all
 * representable; otherwise INVALID_ARGUMENT and *message names the field (desc.c). */
polyattn_status pa_problem_check_sizes(const pa_problem *problem, const char **message);
/* Checks the variants' tensors of a forward (backward = 0) or backward call against the
 * problem and fills *out (variants.c); on failure the context's error names the field. */
polyattn_status pa_bind_variants(polyattn_context *ctx, const pa_problem *p,
                                 const polyattn_extra_tensors *extra, int backward,
                                 pa_variant_io *out);
/* One tensor's dtype (f32, f16, bf16), shape, strides and byte count; an output's distinct
 * indices must also map to distinct elements.  *message names the field (desc.c). */
polyattn_status pa_tensor_validate(const polyattn_tensor_desc *t, const char *name, int output,
                                   const char **message);
/* One tensor of polyattn_extra_tensors against what the plan needs (need 0: it must be
 * absent); pa_bind_extra checks each (given iff needed, of this context, large enough),
 * fills its ref, or fails naming the field (variants.c). */
typedef struct pa_extra_binding {
    const char *name;
    const polyattn_buffer *buf;
    uint64_t need; /* bytes; 0: the problem has no use for it */
    const char *why_needed;
    pa_tensor_ref *ref;
} pa_extra_binding;
polyattn_status pa_bind_extra(polyattn_context *ctx, pa_extra_binding *b, size_t n);

/* A call's buffers (forward, backward, merge): each with need > 0 must be given, belong to
 * ctx and hold need bytes; one with need 0 is ignored (set to NULL); then no output may share
 * a byte with another bound buffer.  `call` names the call in messages (context.c). */
typedef struct pa_buffer_binding {
    const char *name;
    const polyattn_buffer *buf;
    uint64_t need; /* bytes; 0: not used by this call */
    int is_output;
    int alias_group; /* non-zero: may overlap the bindings of the same group (KV caches) */
} pa_buffer_binding;
polyattn_status pa_check_buffers(polyattn_context *ctx, pa_buffer_binding *b, int n,
                                 const char *call);

/* Whether two buffers share any byte (views of one allocation may). */
static inline int pa_buffers_overlap(const polyattn_buffer *a, const polyattn_buffer *b)
{
    return a->mem == b->mem && a->offset < b->offset + b->bytes && b->offset < a->offset + a->bytes;
}

/* Bytes of a tensor, 0 if malformed (desc.c). */
uint64_t pa_tensor_bytes(const polyattn_tensor_desc *t);

/* Error slot for failures with no context (context creation), thread-local. */
void pa_set_global_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* Sets the context's last error and logs it; returns status. */
polyattn_status pa_context_fail(polyattn_context *ctx, polyattn_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void pa_context_clear_error(polyattn_context *ctx);

/* Autotune (autotune.c): times the candidates whose algos[i] is non-NULL (eligible) or
 * takes the cached winner of the shape bucket; *winner and why (a sentence) on success. */
polyattn_status pa_autotune(polyattn_context *ctx, const pa_problem *p,
                            const polyattn_candidate cands[3], const pa_algo_ops *algos[3],
                            const char *cache_file, polyattn_algo *winner, char *why, size_t n);

/* Default AUTO order of the algorithms (policy.c): the backend's auto_order hook, or the
 * core's unmeasured default; arch: polyattn_device_info.arch ("sm_90", ...; "" if unknown). */
void pa_policy_order(const pa_backend_ops *ops, const char *arch, const pa_problem *p,
                     polyattn_algo order[3], const char **why);

/* Reads POLYATTN_FORCE into dev->force once, when a context is made (force.c); a malformed
 * value fails context creation with INVALID_ARGUMENT. */
polyattn_status pa_force_read(pa_device *dev);

/* Host-side cost model (plan.c, shared with explain via plan info). */
double pa_visible_pairs(const pa_problem *p);

#endif
