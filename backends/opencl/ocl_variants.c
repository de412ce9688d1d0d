/* The score variants on OpenCL (kernels/variants.cl): build options and sources of a plan
 * that needs them, and their kernel arguments.  A plan without variants gets neither, so
 * its kernels and build options are exactly the plain ones. */
#include "ocl_algos.h"

#include <stdio.h>
#include <string.h>

/* Features the OpenCL kernels compile in (the bias gradient is a backward output; e4m3 is
 * the dtype options', PA_DTYPE and PA_ODTYPE). */
int ocl_var_on(const pa_problem *p)
{
    return (pa_problem_features(p) & ~(PA_FEATURE_BIAS_GRAD | PA_FEATURE_E4M3)) != 0;
}

/* on: the variants' build (always for the serving kernels, which take PA_VAR_PARAMS even
 * for a plain dense problem; then only -DPA_VAR). */
static void var_options(const pa_problem *p, int on, char *buf, size_t size)
{
    if (!on) return;
    size_t n = strlen(buf);
    snprintf(buf + n, size > n ? size - n : 0, " -DPA_VAR%s%s%s%s%s",
             p->has_window ? " -DPA_WINDOW" : "", p->softcap > 0.0f ? " -DPA_SOFTCAP" : "",
             p->alibi != POLYATTN_ALIBI_NONE ? " -DPA_ALIBI" : "",
             p->has_attn_mask ? " -DPA_AMASK" : "", p->has_sinks ? " -DPA_SINKS" : "");
    n = strlen(buf);
    if (p->has_bias)
        snprintf(buf + n, size > n ? size - n : 0, " -DPA_BIAS=%d%s", (int)p->bias_dtype,
                 p->want_backward && p->want_bias_grad ? " -DPA_BIAS_GRAD" : "");
}

void ocl_var_options(const pa_problem *p, char *buf, size_t size)
{
    var_options(p, ocl_var_on(p), buf, size);
}

static polyattn_status make_kernel(ocl_device *d, const pa_problem *p, int on,
                                   const char *const *srcs, int n, const char *opts,
                                   const char *name, cl_kernel *out)
{
    if (!on) return ocl_make_kernel(d, srcs, n, opts, name, out);
    const char *all[8];
    char vopts[1024];
    int m = 0;
    for (int i = 0; i < n && m < 7; i++) {
        all[m++] = srcs[i];
        if (!strcmp(srcs[i], "common")) all[m++] = "variants";
    }
    snprintf(vopts, sizeof vopts, "%s", opts);
    var_options(p, 1, vopts, sizeof vopts);
    return ocl_make_kernel(d, all, m, vopts, name, out);
}

polyattn_status ocl_make_kernel_p(ocl_device *d, const pa_problem *p, const char *const *srcs,
                                  int n, const char *opts, const char *name, cl_kernel *out)
{
    return make_kernel(d, p, ocl_var_on(p), srcs, n, opts, name, out);
}

polyattn_status ocl_make_kernel_var(ocl_device *d, const pa_problem *p, const char *const *srcs,
                                    int n, const char *opts, const char *name, cl_kernel *out)
{
    return make_kernel(d, p, 1, srcs, n, opts, name, out);
}

/* PA_VAR_PARAMS from argument index `first`; unused tensors get `dummy`.  mat0: the first
 * (batch, head) matrix the launch covers. */
static polyattn_status var_args(ocl_device *d, cl_kernel k, cl_uint first, const pa_problem *p,
                                const pa_variant_io *var, cl_mem dummy, cl_long mat0)
{
    const pa_tensor_ref none = {dummy, 0};
    const pa_tensor_ref *sl = var->alibi_slopes.mem ? &var->alibi_slopes : &none;
    const pa_tensor_ref *bi = var->bias.mem ? &var->bias : &none;
    const pa_tensor_ref *ma = var->attn_mask.mem ? &var->attn_mask : &none;
    const pa_tensor_ref *si = var->sinks.mem ? &var->sinks : &none;
    const size_t bes = p->has_bias ? ocl_esize(p->bias_dtype) : 1;
    if (sl->offset % 4 || si->offset % 4 || bi->offset % bes)
        return pa_fail(&d->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl: a variant tensor's byte offset is not a multiple of its element "
                       "size");
    cl_mem slm = (cl_mem)sl->mem, bim = (cl_mem)bi->mem, mam = (cl_mem)ma->mem,
           sim = (cl_mem)si->mem;
    cl_long sl_off = (cl_long)(sl->offset / 4), bi_off = (cl_long)(bi->offset / bes),
            ma_off = (cl_long)ma->offset, si_off = (cl_long)(si->offset / 4);
    cl_int per_batch = p->alibi == POLYATTN_ALIBI_PER_BATCH_HEAD;
    const int64_t zero[4] = {0, 0, 0, 0};
    cl_long4 bst = ocl_strides4(p->has_bias ? p->bias_stride : zero);
    cl_long4 mst = ocl_strides4(p->has_attn_mask ? p->attn_mask_stride : zero);
    cl_long wl = p->has_window ? (cl_long)p->window_left : -1;
    cl_long wr = p->has_window ? (cl_long)p->window_right : -1;
    cl_float softcap = p->softcap;
    cl_long diag = (cl_long)pa_diagonal(p, 0);
    cl_int heads_q = (cl_int)p->heads_q;
    cl_uint i = first;
    SET_ARG(k, i++, slm);
    SET_ARG(k, i++, sl_off);
    SET_ARG(k, i++, per_batch);
    SET_ARG(k, i++, bim);
    SET_ARG(k, i++, bi_off);
    SET_ARG(k, i++, bst);
    SET_ARG(k, i++, mam);
    SET_ARG(k, i++, ma_off);
    SET_ARG(k, i++, mst);
    SET_ARG(k, i++, sim);
    SET_ARG(k, i++, si_off);
    SET_ARG(k, i++, wl);
    SET_ARG(k, i++, wr);
    SET_ARG(k, i++, softcap);
    SET_ARG(k, i++, diag);
    SET_ARG(k, i++, heads_q);
    SET_ARG(k, i++, mat0);
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status ocl_var_set_args(ocl_device *d, cl_kernel k, cl_uint first, const pa_problem *p,
                                 const pa_variant_io *var, cl_mem dummy, cl_long mat0)
{
    if (!ocl_var_on(p)) return POLYATTN_STATUS_SUCCESS;
    return var_args(d, k, first, p, var, dummy, mat0);
}

polyattn_status ocl_var_set_args_all(ocl_device *d, cl_kernel k, cl_uint first, const pa_problem *p,
                                     const pa_variant_io *var, cl_mem dummy, cl_long mat0)
{
    return var_args(d, k, first, p, var, dummy, mat0);
}

polyattn_status ocl_var_sinks_grad(ocl_device *d, cl_kernel k, const pa_problem *p,
                                   const pa_backward_io *io, cl_long lse_off, cl_mem ws,
                                   cl_long delta_off)
{
    if (!p->has_sinks) return POLYATTN_STATUS_SUCCESS;
    if (io->var.sinks.offset % 4 || io->var.d_sinks.offset % 4)
        return pa_fail(&d->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl backward: a sinks tensor's byte offset is not a multiple of 4");
    cl_mem sm = (cl_mem)io->var.sinks.mem, lm = (cl_mem)io->lse.mem,
           dm = (cl_mem)io->var.d_sinks.mem;
    cl_long s_off = (cl_long)(io->var.sinks.offset / 4),
            d_off = (cl_long)(io->var.d_sinks.offset / 4);
    cl_int batch = (cl_int)p->batch, heads_q = (cl_int)p->heads_q, seq_q = (cl_int)p->seq_q;
    SET_ARG(k, 0, sm);
    SET_ARG(k, 1, s_off);
    SET_ARG(k, 2, lm);
    SET_ARG(k, 3, lse_off);
    SET_ARG(k, 4, ws);
    SET_ARG(k, 5, delta_off);
    SET_ARG(k, 6, dm);
    SET_ARG(k, 7, d_off);
    SET_ARG(k, 8, batch);
    SET_ARG(k, 9, heads_q);
    SET_ARG(k, 10, seq_q);
    return ocl_enqueue_1d(d, k, (uint64_t)p->heads_q, "clEnqueueNDRangeKernel(bwd_sinks_kernel)");
}
