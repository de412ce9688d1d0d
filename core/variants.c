/*
 * The variants' tensors of a forward or backward call (polyattn_extra_tensors): each one the
 * descriptor asks for must be given, large enough and of this context; one it does not ask
 * for must be absent (a tensor passed for nothing is a caller's mistake worth naming).
 */
#include "pa_core.h"

#include <stddef.h>
#include <string.h>

polyattn_status pa_bind_extra(polyattn_context *ctx, pa_extra_binding *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (b[i].need == 0) {
            if (b[i].buf)
                return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                                       "%s: given, but the plan has no use for it (it needs %s)",
                                       b[i].name, b[i].why_needed);
            continue;
        }
        if (!b[i].buf)
            return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                                   "%s: NULL but %s needs %llu bytes", b[i].name, b[i].why_needed,
                                   (unsigned long long)b[i].need);
        if (b[i].buf->ctx != ctx)
            return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                                   "%s: buffer belongs to another context", b[i].name);
        if (b[i].buf->bytes < b[i].need)
            return pa_context_fail(
                ctx, POLYATTN_STATUS_INVALID_ARGUMENT, "%s: buffer holds %llu bytes but needs %llu",
                b[i].name, (unsigned long long)b[i].buf->bytes, (unsigned long long)b[i].need);
        b[i].ref->mem = b[i].buf->mem;
        b[i].ref->offset = b[i].buf->offset;
    }
    return POLYATTN_STATUS_SUCCESS;
}

/* Bytes a broadcast score tensor (bias, attn_mask) spans at its strides.  Its broadcast
 * dimensions have stride 0 (pa_problem), so the problem's full extents give the span; the
 * attn_mask has no shape of its own in pa_problem (bias_shape is the bias's only). */
static uint64_t score_tensor_bytes(const pa_problem *p, const int64_t stride[4], size_t elem)
{
    const int64_t extent[4] = {p->batch, p->heads_q, p->seq_q, p->seq_kv};
    uint64_t span = 1;
    for (int d = 0; d < 4; d++)
        span = pa_size_add(span, pa_size_mul((uint64_t)(extent[d] - 1), (uint64_t)stride[d]));
    return pa_size_mul(span, elem);
}

/* The first published polyattn_extra_tensors ended with d_sinks. */
#define EXTRA_V1_SIZE (offsetof(polyattn_extra_tensors, d_sinks) + sizeof(polyattn_buffer *))

polyattn_status pa_extra_read(polyattn_context *ctx, const polyattn_extra_tensors *caller,
                              polyattn_extra_tensors *extra)
{
    memset(extra, 0, sizeof *extra);
    if (!caller) return POLYATTN_STATUS_SUCCESS;
    if (caller->struct_size < EXTRA_V1_SIZE)
        return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "extra.struct_size: %zu is smaller than any "
                               "polyattn_extra_tensors (%zu)",
                               caller->struct_size, (size_t)EXTRA_V1_SIZE);
    memcpy(extra, caller,
           caller->struct_size < sizeof *extra ? caller->struct_size : sizeof *extra);
    extra->struct_size = sizeof *extra;
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status pa_bind_variants(polyattn_context *ctx, const pa_problem *p,
                                 const polyattn_extra_tensors *caller_extra, int backward,
                                 pa_variant_io *out)
{
    memset(out, 0, sizeof *out);
    polyattn_extra_tensors extra;
    polyattn_status st = pa_extra_read(ctx, caller_extra, &extra);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    /* One struct serves a forward and its backward: the forward ignores the gradients. */
    if (!backward) extra.d_bias = NULL, extra.d_sinks = NULL;
    const uint64_t heads = (uint64_t)p->heads_q;
    const uint64_t alibi_bytes = p->alibi == POLYATTN_ALIBI_PER_HEAD ? pa_size_mul(heads, 4)
                                 : p->alibi == POLYATTN_ALIBI_PER_BATCH_HEAD
                                     ? pa_size_mul4(p->batch, p->heads_q, 4, 1)
                                     : 0;
    const uint64_t bias_grad_bytes =
        backward && p->want_bias_grad
            ? pa_size_mul(pa_size_mul4(p->bias_shape[0], p->bias_shape[1], p->bias_shape[2],
                                       p->bias_shape[3]),
                          4)
            : 0;
    pa_extra_binding b[] = {
        {"extra.alibi_slopes", extra.alibi_slopes, alibi_bytes, "the descriptor's alibi",
         &out->alibi_slopes},
        {"extra.bias", extra.bias,
         p->has_bias ? score_tensor_bytes(p, p->bias_stride, polyattn_dtype_size(p->bias_dtype))
                     : 0,
         "has_bias", &out->bias},
        {"extra.attn_mask", extra.attn_mask,
         p->has_attn_mask ? score_tensor_bytes(p, p->attn_mask_stride, 1) : 0, "has_attn_mask",
         &out->attn_mask},
        {"extra.sinks", extra.sinks, p->has_sinks ? pa_size_mul(heads, 4) : 0, "has_sinks",
         &out->sinks},
        {"extra.d_bias", extra.d_bias, bias_grad_bytes, "want_bias_grad", &out->d_bias},
        {"extra.d_sinks", extra.d_sinks, backward && p->has_sinks ? pa_size_mul(heads, 4) : 0,
         "has_sinks in a backward", &out->d_sinks},
    };
    return pa_bind_extra(ctx, b, sizeof b / sizeof b[0]);
}
