/* The varlen backward on the OpenCL flash path (varlen_q and/or kv_layout varlen; the
 * caches are inference-only).  The gradients are zeroed (rows outside every sequence keep
 * dQ = 0, unused K rows dK = dV = 0), the offsets are read back, and each sequence runs
 * through the dense flash backward (ocl_flash_bwd.c) as a problem of batch 1 at its rows'
 * offsets.  A varlen LSE ([heads_q, total_q]) is staged per sequence into the workspace in
 * the dense layout the kernels read.  Every offset is clamped to its tensor, as on the
 * forward. */
#include "ocl_algos.h"

#include <stdlib.h>
#include <string.h>

const char *ocl_serving_bwd_decide(const ocl_device *d, const pa_problem *p, const ocl_force *f,
                                   ocl_bwd_choice *c)
{
    if (p->kv_layout == POLYATTN_KV_CACHE || p->kv_layout == POLYATTN_KV_PAGED || p->has_kv_append)
        return "a KV cache and KV append are inference-only (no backward)";
    if (p->has_sinks)
        return "the OpenCL varlen backward has no d_sinks yet (sinks with a dense layout have)";
    return ocl_bwd_decide(d, p, f, c);
}

/* D of one sequence, then its LSE staged in the dense layout: [heads_q, max_q] each. */
uint64_t ocl_serving_bwd_workspace(const pa_problem *p)
{
    return pa_size_mul4(2, p->heads_q, p->seq_q, 4);
}

polyattn_status ocl_serving_bwd_prepare(ocl_device *d, const pa_problem *p, ocl_plan_state *s)
{
    polyattn_status st = ocl_flash_bwd_prepare(d, p, s);
    if (st) return st;
    char opts[512];
    ocl_rows_options(p, 1, opts, sizeof opts);
    static const char *const srcs[] = {"common", "merge", "serving"};
    return ocl_make_kernel_p(d, p, srcs, 3, opts, "serving_zero_kernel", &s->srv_zero);
}

static polyattn_status zero(ocl_device *d, cl_kernel k, const pa_tensor_ref *r, size_t es,
                            const int64_t st[4], int64_t n0, int64_t n1, int64_t n2, int64_t n3)
{
    cl_long off;
    if (!ocl_elem_offset(r, es, &off))
        return pa_fail(&d->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl backward: a gradient's byte offset is not a multiple of its "
                       "element size");
    const uint64_t n = pa_size_mul4(n0, n1, n2, n3);
    if (n == 0) return POLYATTN_STATUS_SUCCESS;
    cl_mem m = (cl_mem)r->mem;
    cl_long4 s4 = ocl_strides4(st);
    cl_long l1 = n1, l2 = n2, l3 = n3, ln = (cl_long)n;
    SET_ARG(k, 0, m);
    SET_ARG(k, 1, off);
    SET_ARG(k, 2, s4);
    SET_ARG(k, 3, l1);
    SET_ARG(k, 4, l2);
    SET_ARG(k, 5, l3);
    SET_ARG(k, 6, ln);
    return ocl_enqueue_1d(d, k, n, "clEnqueueNDRangeKernel(serving_zero_kernel)");
}

/* Reads offsets [batch + 1] into starts and lengths, clamped to rows and to bound. */
static polyattn_status read_offsets(ocl_device *d, const pa_tensor_ref *r, int64_t batch,
                                    int64_t rows, int64_t bound, int64_t *start, int64_t *len)
{
    int32_t *cu = malloc((size_t)(batch + 1) * 4);
    if (!cu) return pa_fail(&d->base, POLYATTN_STATUS_OUT_OF_MEMORY, "out of host memory");
    cl_int e = clEnqueueReadBuffer(d->queue, (cl_mem)r->mem, CL_TRUE, (size_t)r->offset,
                                   (size_t)(batch + 1) * 4, cu, 0, NULL, NULL);
    if (e != CL_SUCCESS) {
        free(cu);
        return ocl_fail(d, e, "clEnqueueReadBuffer(cu_seqlens)");
    }
    for (int64_t b = 0; b < batch; b++) {
        int64_t a = cu[b] < 0 ? 0 : (cu[b] > rows ? rows : cu[b]);
        int64_t z = cu[b + 1] < a ? a : (cu[b + 1] > rows ? rows : cu[b + 1]);
        start[b] = a, len[b] = z - a < bound ? z - a : bound;
    }
    free(cu);
    return POLYATTN_STATUS_SUCCESS;
}

static void shift(pa_tensor_ref *r, int64_t elements, size_t es)
{
    r->offset += (uint64_t)elements * es;
}

polyattn_status ocl_serving_backward(ocl_device *d, const pa_problem *p, const ocl_plan_state *s,
                                     const pa_backward_io *io)
{
    const size_t es = ocl_esize(p->dtype);
    const int64_t q_count = p->varlen_q ? 1 : p->batch;
    polyattn_status st;
    if ((st = zero(d, s->srv_zero, &io->dq, es, p->q_stride, q_count, p->heads_q, p->total_q,
                   p->head_dim)) ||
        (st = zero(d, s->srv_zero, &io->dk, es, p->k_stride, p->kv_count, p->heads_kv, p->kv_rows,
                   p->head_dim)) ||
        (st = zero(d, s->srv_zero, &io->dv, es, p->v_stride, p->kv_count, p->heads_kv, p->kv_rows,
                   p->head_dim_v)))
        return st;
    const uint64_t need = ocl_serving_bwd_workspace(p);
    if (!io->workspace.mem || io->workspace_bytes < need || io->workspace.offset % 4 ||
        io->lse.offset % 4)
        return pa_fail(&d->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl flash backward: needs a 4-aligned workspace of %llu bytes",
                       (unsigned long long)need);
    int64_t *seq = malloc((size_t)p->batch * 4 * sizeof *seq);
    if (!seq) return pa_fail(&d->base, POLYATTN_STATUS_OUT_OF_MEMORY, "out of host memory");
    int64_t *q0 = seq, *lq = seq + p->batch, *kv0 = seq + 2 * p->batch, *lk = seq + 3 * p->batch;
    for (int64_t b = 0; b < p->batch; b++)
        q0[b] = kv0[b] = 0, lq[b] = p->seq_q, lk[b] = p->seq_kv;
    st = POLYATTN_STATUS_SUCCESS;
    if (p->varlen_q)
        st = read_offsets(d, &io->srv.cu_seqlens_q, p->batch, p->total_q, p->seq_q, q0, lq);
    if (!st && p->kv_layout == POLYATTN_KV_VARLEN)
        st = read_offsets(d, &io->srv.cu_seqlens_kv, p->batch, p->kv_rows, p->seq_kv, kv0, lk);
    const uint64_t half = pa_size_mul4(p->heads_q, p->seq_q, 4, 1);
    for (int64_t b = 0; b < p->batch && !st; b++) {
        if (lq[b] == 0 || lk[b] == 0) continue; /* zeros already */
        pa_problem sub = *p;
        sub.batch = 1, sub.seq_q = sub.total_q = lq[b], sub.seq_kv = sub.kv_rows = lk[b];
        sub.kv_count = 1, sub.kv_layout = POLYATTN_KV_DENSE;
        /* varlen_q stays set: it keeps the plan's kernel arguments (PA_VAR) of its build. */
        sub.varlen_q = 1;
        if (p->alibi == POLYATTN_ALIBI_PER_BATCH_HEAD) sub.alibi = POLYATTN_ALIBI_PER_HEAD;
        pa_backward_io sio = *io;
        memset(&sio.srv, 0, sizeof sio.srv);
        if (p->varlen_q) {
            shift(&sio.q, q0[b] * p->q_stride[2], es), shift(&sio.dq, q0[b] * p->q_stride[2], es);
            shift(&sio.o, q0[b] * p->o_stride[2], es), shift(&sio.d_o, q0[b] * p->o_stride[2], es);
            /* LSE [heads_q, total_q] -> [heads_q, len_q] in the workspace's second half. */
            const size_t src[3] = {(size_t)(io->lse.offset + (uint64_t)q0[b] * 4), 0, 0};
            const size_t dst[3] = {(size_t)(io->workspace.offset + half), 0, 0};
            const size_t region[3] = {(size_t)lq[b] * 4, (size_t)p->heads_q, 1};
            cl_int e = clEnqueueCopyBufferRect(
                d->queue, (cl_mem)io->lse.mem, (cl_mem)io->workspace.mem, src, dst, region,
                (size_t)p->total_q * 4, 0, (size_t)lq[b] * 4, 0, 0, NULL, NULL);
            if (e != CL_SUCCESS) {
                st = ocl_fail(d, e, "clEnqueueCopyBufferRect(lse)");
                break;
            }
            sio.lse.mem = io->workspace.mem, sio.lse.offset = io->workspace.offset + half;
        } else {
            shift(&sio.q, b * p->q_stride[0], es), shift(&sio.dq, b * p->q_stride[0], es);
            shift(&sio.o, b * p->o_stride[0], es), shift(&sio.d_o, b * p->o_stride[0], es);
            shift(&sio.lse, b * p->heads_q * p->seq_q, 4);
        }
        if (p->kv_layout == POLYATTN_KV_VARLEN) {
            shift(&sio.k, kv0[b] * p->k_stride[2], es), shift(&sio.dk, kv0[b] * p->k_stride[2], es);
            shift(&sio.v, kv0[b] * p->v_stride[2], es), shift(&sio.dv, kv0[b] * p->v_stride[2], es);
        } else {
            shift(&sio.k, b * p->k_stride[0], es), shift(&sio.dk, b * p->k_stride[0], es);
            shift(&sio.v, b * p->v_stride[0], es), shift(&sio.dv, b * p->v_stride[0], es);
        }
        if (sio.var.alibi_slopes.mem && p->alibi == POLYATTN_ALIBI_PER_BATCH_HEAD)
            shift(&sio.var.alibi_slopes, b * p->heads_q, 4);
        /* D takes the first half; the dense path's size check sees the marked sub-problem. */
        st = ocl_flash_backward(&d->base, &sub, (void *)s, &sio);
    }
    free(seq);
    return st;
}
