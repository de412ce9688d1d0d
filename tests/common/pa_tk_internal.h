/* What the test kit's files share beyond pa_testkit.h (not for tests). */
#ifndef PA_TK_INTERNAL_H
#define PA_TK_INTERNAL_H

#include "pa_testkit.h"

/* The variants' tensors of a problem on ctx (and, for a backward, poisoned d_bias and
 * d_sinks); e->ex is what polyattn_forward_ex/backward_ex take. */
typedef struct pa_tk_extra_buffers {
    polyattn_buffer *slopes, *bias, *attn_mask, *sinks, *d_bias, *d_sinks;
    polyattn_extra_tensors ex;
} pa_tk_extra_buffers;

size_t pa_tk_span_elems(const polyattn_tensor_desc *t);
int64_t pa_tk_elem_index(const polyattn_tensor_desc *t, int64_t b, int64_t h, int64_t s, int64_t d);
double pa_tk_fill_tensor(float *dst, size_t n, const polyattn_tensor_desc *t, pa_tk_rng *rng,
                         float magnitude, polyattn_dtype dtype);
polyattn_status pa_tk_alloc_write(polyattn_context *ctx, uint64_t bytes, const void *src,
                                  polyattn_buffer **buf);
void pa_tk_extra_free(pa_tk_extra_buffers *e);
polyattn_status pa_tk_extra_upload(polyattn_context *ctx, const pa_tk_problem *p, int backward,
                                   pa_tk_extra_buffers *e);
double pa_tk_worse(double worst, double d);

#endif
