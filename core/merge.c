/*
 * polyattn_merge_states: validation of the call, then the backend's merge (include/polyattn.h
 * says what a merge computes).  Like a forward, every check happens before work is queued.
 */
#include "pa_core.h"

#include <stddef.h>
#include <string.h>

void polyattn_merge_desc_init(polyattn_merge_desc *desc, polyattn_dtype part_dtype,
                              polyattn_dtype out_dtype, int64_t num_parts, int64_t batch,
                              int64_t heads, int64_t seq, int64_t head_dim_v)
{
    if (!desc) return;
    memset(desc, 0, sizeof *desc);
    desc->struct_size = sizeof *desc;
    desc->num_parts = num_parts;
    polyattn_tensor_desc_bhsd(&desc->part, part_dtype, batch, heads, seq, head_dim_v);
    polyattn_tensor_desc_bhsd(&desc->out, out_dtype, batch, heads, seq, head_dim_v);
    int64_t stride;
    desc->part_stride =
        __builtin_mul_overflow(desc->part.strides[0], batch, &stride) ? INT64_MAX : stride;
}

polyattn_status polyattn_merge_states(polyattn_context *ctx, const polyattn_merge_desc *desc,
                                      const polyattn_buffer *parts,
                                      const polyattn_buffer *parts_lse, polyattn_buffer *out,
                                      polyattn_buffer *out_lse)
{
    if (!ctx) return POLYATTN_STATUS_INVALID_ARGUMENT;
    pa_context_clear_error(ctx);
    if (!desc) return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT, "desc: NULL");
    if (desc->struct_size < sizeof *desc)
        return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "desc.struct_size: %zu is smaller than sizeof(polyattn_merge_desc) "
                               "= %zu",
                               desc->struct_size, sizeof *desc);
    const char *message = NULL;
    polyattn_status st;
    if ((st = pa_tensor_validate(&desc->part, "part", 0, &message)) ||
        (st = pa_tensor_validate(&desc->out, "out", 1, &message)))
        return pa_context_fail(ctx, st, "%s", message);
    if (desc->part.dtype == POLYATTN_DTYPE_E4M3 || desc->out.dtype == POLYATTN_DTYPE_E4M3)
        return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "%s.dtype: e4m3 is an input dtype only; merged states are f32, "
                               "f16 or bf16",
                               desc->part.dtype == POLYATTN_DTYPE_E4M3 ? "part" : "out");
    if (desc->num_parts < 1)
        return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "num_parts: %lld; at least one part is merged",
                               (long long)desc->num_parts);
    if (desc->part_stride < 0)
        return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "part_stride: %lld; strides must not be negative",
                               (long long)desc->part_stride);
    for (int d = 0; d < 4; d++)
        if (desc->out.shape[d] != desc->part.shape[d])
            return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                                   "out.shape[%d] is %lld but part.shape[%d] is %lld", d,
                                   (long long)desc->out.shape[d], d,
                                   (long long)desc->part.shape[d]);
    const int64_t *shape = desc->part.shape;
    /* Bytes of the stacked parts: the last part's span past (P - 1) part strides. */
    const size_t part_es = polyattn_dtype_size(desc->part.dtype);
    const uint64_t part_bytes = pa_size_add(
        pa_size_mul(pa_size_mul((uint64_t)(desc->num_parts - 1), (uint64_t)desc->part_stride),
                    part_es),
        pa_tensor_bytes(&desc->part));
    const uint64_t rows = pa_size_mul4(shape[0], shape[1], shape[2], 1);
    const uint64_t lse_bytes = pa_size_mul(pa_size_mul(rows, (uint64_t)desc->num_parts), 4);
    if (part_bytes > (uint64_t)INT64_MAX || lse_bytes > (uint64_t)INT64_MAX)
        return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "num_parts x part: %lld parts cannot be represented (their byte "
                               "count overflows int64)",
                               (long long)desc->num_parts);
    pa_buffer_binding b[] = {
        {"parts", parts, part_bytes, 0, 0},
        {"parts_lse", parts_lse, lse_bytes, 0, 0},
        {"out", out, pa_tensor_bytes(&desc->out), 1, 0},
        {"out_lse", out_lse, out_lse ? pa_size_mul(rows, 4) : 0, 1, 0},
    };
    /* out_lse is optional: its need is 0 when it is absent. */
    const int n = (int)(sizeof b / sizeof b[0]);
    polyattn_status bst = pa_check_buffers(ctx, b, n, "merge");
    if (bst != POLYATTN_STATUS_SUCCESS) return bst;
    if (!ctx->ops->merge_states)
        return pa_context_fail(ctx, POLYATTN_STATUS_UNSUPPORTED,
                               "the %s backend has no merge_states yet", ctx->ops->name);

    pa_merge_problem m;
    memset(&m, 0, sizeof m);
    m.num_parts = desc->num_parts;
    m.batch = shape[0], m.heads = shape[1], m.seq = shape[2], m.head_dim_v = shape[3];
    m.part_dtype = desc->part.dtype, m.out_dtype = desc->out.dtype;
    m.part_stride[0] = desc->part_stride;
    memcpy(m.part_stride + 1, desc->part.strides, sizeof desc->part.strides);
    memcpy(m.out_stride, desc->out.strides, sizeof m.out_stride);
    m.want_lse = out_lse != NULL;
    pa_merge_io io;
    memset(&io, 0, sizeof io);
    pa_tensor_ref *refs[] = {&io.parts, &io.parts_lse, &io.out, &io.out_lse};
    for (int i = 0; i < n; i++)
        if (b[i].buf) refs[i]->mem = b[i].buf->mem, refs[i]->offset = b[i].buf->offset;
    return ctx->ops->merge_states(ctx->dev, &m, &io);
}
