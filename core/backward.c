/*
 * The backward pass: validation of the call, then the plan's algorithm's backward.
 *
 * Like polyattn_forward, every check happens before any work is queued, so a rejected
 * call leaves dq, dk and dv untouched.  dq, dk and dv share the strides of q, k and v and
 * d_o those of o, so the sizes a caller already computed for the forward serve again.
 */
#include "pa_core.h"

#include <string.h>

enum { BWD_Q, BWD_K, BWD_V, BWD_O, BWD_DO, BWD_LSE, BWD_DQ, BWD_DK, BWD_DV, BWD_WS, BWD_N };

polyattn_status polyattn_backward(polyattn_plan *plan, const polyattn_buffer *q,
                                  const polyattn_buffer *k, const polyattn_buffer *v,
                                  const polyattn_buffer *o, const polyattn_buffer *d_o,
                                  const polyattn_buffer *lse, polyattn_buffer *dq,
                                  polyattn_buffer *dk, polyattn_buffer *dv,
                                  polyattn_buffer *workspace)
{
    return polyattn_backward_ex(plan, q, k, v, o, d_o, lse, dq, dk, dv, workspace, NULL);
}

polyattn_status polyattn_backward_ex(polyattn_plan *plan, const polyattn_buffer *q,
                                     const polyattn_buffer *k, const polyattn_buffer *v,
                                     const polyattn_buffer *o, const polyattn_buffer *d_o,
                                     const polyattn_buffer *lse, polyattn_buffer *dq,
                                     polyattn_buffer *dk, polyattn_buffer *dv,
                                     polyattn_buffer *workspace,
                                     const polyattn_extra_tensors *extra)
{
    if (!plan) return POLYATTN_STATUS_INVALID_ARGUMENT;
    polyattn_context *ctx = plan->ctx;
    const pa_problem *p = &plan->problem;
    pa_context_clear_error(ctx);
    if (!p->want_backward)
        return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "plan: made without want_backward (set it in the plan options)");
    if (!plan->algo->backward) /* planning rejects such algorithms; keep the guard anyway */
        return pa_context_fail(ctx, POLYATTN_STATUS_UNSUPPORTED,
                               "the %s backend has no %s backward yet", ctx->ops->name,
                               polyattn_algo_name(plan->info.algo));

    polyattn_tensor_desc tq, tk, tv, to;
    pa_problem_tensors(p, &tq, &tk, &tv, &to);
    const uint64_t rows = pa_problem_lse_elements(p);
    const uint64_t qb = pa_tensor_bytes(&tq), kb = pa_tensor_bytes(&tk), vb = pa_tensor_bytes(&tv),
                   ob = pa_tensor_bytes(&to);

    pa_buffer_binding b[BWD_N] = {
        [BWD_Q] = {"q", q, qb, 0, 0},
        [BWD_K] = {"k", k, kb, 0, 0},
        [BWD_V] = {"v", v, vb, 0, 0},
        [BWD_O] = {"o", o, ob, 0, 0},
        [BWD_DO] = {"d_o", d_o, ob, 0, 0},
        [BWD_LSE] = {"lse", lse, pa_size_mul(rows, 4), 0, 0},
        [BWD_DQ] = {"dq", dq, qb, 1, 0},
        [BWD_DK] = {"dk", dk, kb, 1, 0},
        [BWD_DV] = {"dv", dv, vb, 1, 0},
        [BWD_WS] = {"workspace", workspace, plan->info.backward_workspace_bytes, 1, 0},
    };
    polyattn_status bst = pa_check_buffers(ctx, b, BWD_N, "backward");
    if (bst != POLYATTN_STATUS_SUCCESS) return bst;

    pa_backward_io io;
    memset(&io, 0, sizeof io);
    pa_tensor_ref *refs[BWD_N] = {&io.q,   &io.k,  &io.v,  &io.o,  &io.d_o,
                                  &io.lse, &io.dq, &io.dk, &io.dv, &io.workspace};
    for (int i = 0; i < BWD_N; i++)
        if (b[i].buf) refs[i]->mem = b[i].buf->mem, refs[i]->offset = b[i].buf->offset;
    io.workspace_bytes = b[BWD_WS].buf ? b[BWD_WS].buf->bytes : 0;
    polyattn_status st = pa_bind_variants(ctx, p, extra, 1, &io.var);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    if ((st = pa_bind_serving(ctx, p, extra, 1, &io.srv)) != POLYATTN_STATUS_SUCCESS) return st;
    if (pa_problem_serving(p)) { /* the offsets are inputs: no gradient may overlap them */
        polyattn_extra_tensors ex;
        pa_extra_read(ctx, extra, &ex);
        const polyattn_buffer *sb[2] = {ex.cu_seqlens_q, ex.cu_seqlens_kv};
        for (int i = BWD_DQ; i <= BWD_WS; i++)
            for (int j = 0; j < 2; j++)
                if (b[i].buf && sb[j] && pa_buffers_overlap(b[i].buf, sb[j]))
                    return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                                           "%s: overlaps %s in memory; gradients must not alias",
                                           j ? "extra.cu_seqlens_kv" : "extra.cu_seqlens_q",
                                           b[i].name);
    }
    if ((st = pa_serving_check_device(ctx, p, &io.srv, 1)) != POLYATTN_STATUS_SUCCESS) return st;
    return plan->algo->backward(ctx->dev, p, plan->state, &io);
}
