/* Helpers the OpenCL algorithms share: kernels from programs, plan state, kernel arguments
 * and launches, the backward's offsets and its D = rowsum(dO * O) step. */
#include "ocl_algos.h"

#include <stdlib.h>

size_t ocl_esize(polyattn_dtype t)
{
    return t == POLYATTN_DTYPE_F32 ? 4 : t == POLYATTN_DTYPE_E4M3 ? 1 : 2;
}

const char *ocl_dtype_refusal(const pa_problem *p, int e4m3_ok)
{
    if (p->dtype != POLYATTN_DTYPE_E4M3) return pa_problem_dtype_refusal(p);
    if (!e4m3_ok)
        return "e4m3 inputs: only the flash kernels read them on OpenCL (CLBlast has no FP8 "
               "GEMM)";
    if (p->o_dtype != POLYATTN_DTYPE_F32 && p->o_dtype != POLYATTN_DTYPE_F16 &&
        p->o_dtype != POLYATTN_DTYPE_BF16)
        return "e4m3 inputs: o must be f32, f16 or bf16";
    return NULL;
}

float ocl_scale_log2(const pa_problem *p)
{
    if (p->dtype != POLYATTN_DTYPE_E4M3) return (float)(p->scale * LOG2E);
    return (float)((double)p->scale * (double)p->q_descale * (double)p->k_descale * LOG2E);
}

float ocl_o_scale(const pa_problem *p)
{
    return p->dtype == POLYATTN_DTYPE_E4M3 ? p->v_descale : 1.0f;
}

polyattn_dtype ocl_o_dtype(const pa_problem *p)
{
    return p->dtype == POLYATTN_DTYPE_E4M3 ? p->o_dtype : p->dtype;
}

int64_t ocl_round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

cl_long4 ocl_strides4(const int64_t s[4])
{
    cl_long4 r;
    for (int i = 0; i < 4; i++)
        r.s[i] = s[i];
    return r;
}

int ocl_elem_offset(const pa_tensor_ref *r, size_t es, cl_long *out)
{
    if (r->offset % es != 0) return 0;
    *out = (cl_long)(r->offset / es);
    return 1;
}

int ocl_causal_of(const pa_problem *p, int *offset)
{
    *offset = p->mask == POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT ? (int)(p->seq_kv - p->seq_q) : 0;
    return p->mask != POLYATTN_MASK_NONE;
}

int ocl_one_launch(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    (void)p;
    return 1;
}

polyattn_status ocl_make_kernel(ocl_device *d, const char *const *srcs, int n, const char *opts,
                                const char *name, cl_kernel *out)
{
    cl_program prog = NULL;
    polyattn_status st = ocl_get_program(d, srcs, n, opts, &prog);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    cl_int err = CL_SUCCESS;
    *out = clCreateKernel(prog, name, &err);
    if (err != CL_SUCCESS) return ocl_fail(d, err, name);
    return POLYATTN_STATUS_SUCCESS;
}

ocl_plan_state *ocl_state_new(void) { return calloc(1, sizeof(ocl_plan_state)); }

void ocl_release_state(pa_device *dev, void *state)
{
    (void)dev;
    ocl_plan_state *s = state;
    if (!s) return;
    cl_kernel k[14] = {s->srv_zero,  s->kernel,   s->pack,       s->unpack,   s->bwd_delta,
                       s->bwd_grad,  s->bwd_pack, s->bwd_unpack, s->bwd_dkdv, s->bwd_dq,
                       s->bwd_sinks, s->bwd_bias, s->srv_append, s->srv_merge};
    for (int i = 0; i < 14; i++)
        if (k[i]) clReleaseKernel(k[i]);
    free(s->boffs);
    free(s->bscale);
    free(s->bone);
    free(s->offs);
    free(s->alphas);
    free(s->betas);
    free(s);
}

polyattn_status ocl_enqueue(ocl_device *d, cl_kernel k, const size_t *global, const size_t *local,
                            const char *what)
{
    cl_int err = clEnqueueNDRangeKernel(d->queue, k, 3, NULL, global, local, 0, NULL, NULL);
    return err == CL_SUCCESS ? POLYATTN_STATUS_SUCCESS : ocl_fail(d, err, what);
}

polyattn_status ocl_enqueue_1d(ocl_device *d, cl_kernel k, uint64_t n, const char *what)
{
    size_t wg =
        (size_t)d->caps.max_wg < ocl_tune.grid_wg ? (size_t)d->caps.max_wg : ocl_tune.grid_wg;
    size_t groups = (size_t)((n + wg - 1) / wg);
    if (groups > ocl_tune.grid_max_groups) groups = ocl_tune.grid_max_groups;
    if (groups == 0) groups = 1;
    size_t global[3] = {groups * wg, 1, 1}, local[3] = {wg, 1, 1};
    return ocl_enqueue(d, k, global, local, what);
}

polyattn_status ocl_set_qkvo_args(ocl_device *d, cl_kernel k, const pa_problem *p, const pa_io *io)
{
    cl_long off[4];
    const pa_tensor_ref *r[4] = {&io->q, &io->k, &io->v, &io->o};
    const int64_t *st[4] = {p->q_stride, p->k_stride, p->v_stride, p->o_stride};
    for (int i = 0; i < 4; i++) {
        const size_t es = ocl_esize(i == 3 ? ocl_o_dtype(p) : p->dtype); /* e4m3: o differs */
        if (!ocl_elem_offset(r[i], es, &off[i]))
            return pa_fail(&d->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                           "opencl: a tensor's byte offset %llu is not a multiple of its "
                           "element size",
                           (unsigned long long)r[i]->offset);
        cl_mem m = (cl_mem)r[i]->mem;
        cl_long4 s4 = ocl_strides4(st[i]);
        SET_ARG(k, 3 * i, m);
        SET_ARG(k, 3 * i + 1, off[i]);
        SET_ARG(k, 3 * i + 2, s4);
    }
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status ocl_bwd_offsets(ocl_device *d, const pa_problem *p, const pa_backward_io *io,
                                cl_long off[9])
{
    size_t es = ocl_esize(p->dtype);
    const pa_tensor_ref *r[9] = {&io->q,  &io->k,  &io->v,  &io->o,  &io->d_o,
                                 &io->dq, &io->dk, &io->dv, &io->lse};
    for (int i = 0; i < 9; i++)
        if (!ocl_elem_offset(r[i], i == 8 ? 4 : es, &off[i]))
            return pa_fail(&d->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                           "opencl backward: a tensor's byte offset %llu is not a multiple of "
                           "its element size",
                           (unsigned long long)r[i]->offset);
    if (io->workspace.mem && io->workspace.offset % 4 != 0)
        return pa_fail(&d->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl backward: the workspace offset is not a multiple of 4 bytes");
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status ocl_bwd_delta(ocl_device *d, cl_kernel k, const pa_problem *p,
                              const pa_backward_io *io, const cl_long off[9], cl_mem ws,
                              cl_long delta_off)
{
    cl_mem om = (cl_mem)io->o.mem, dom = (cl_mem)io->d_o.mem;
    cl_long4 st = ocl_strides4(p->o_stride);
    cl_int heads_q = (cl_int)p->heads_q, seq_q = (cl_int)p->seq_q, dv = (cl_int)p->head_dim_v;
    cl_long rows = (cl_long)(p->batch * p->heads_q * p->seq_q);
    SET_ARG(k, 0, om);
    SET_ARG(k, 1, off[3]);
    SET_ARG(k, 2, dom);
    SET_ARG(k, 3, off[4]);
    SET_ARG(k, 4, st);
    SET_ARG(k, 5, heads_q);
    SET_ARG(k, 6, seq_q);
    SET_ARG(k, 7, dv);
    SET_ARG(k, 8, ws);
    SET_ARG(k, 9, delta_off);
    SET_ARG(k, 10, rows);
    return ocl_enqueue_1d(d, k, (uint64_t)rows, "clEnqueueNDRangeKernel(bwd_delta_kernel)");
}
