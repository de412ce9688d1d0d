/* The flash backward on OpenCL (flash and fused plans): D = rowsum(dO * O), then dK/dV and
 * dQ, tiled on GPUs (kernels/flash_bwd.cl) or row-streaming on CPU devices
 * (kernels/backward.cl).  Every gradient element has one owner: no atomics. */
#include "ocl_algos.h"

#include <stdio.h>
#include <string.h>

/* Tiled on GPUs, rows on CPU devices (barriers and local staging only cost there).  A GPU
 * whose local memory or group size is too small for the tile gets the rows, unless the
 * tiled kernels or their tile were forced: then the plan cannot run. */
const char *ocl_bwd_decide(const ocl_device *d, const pa_problem *p, const ocl_force *f,
                           ocl_bwd_choice *c)
{
    memset(c, 0, sizeof *c);
    const ocl_band *band = ocl_band_of(p->head_dim, p->head_dim_v);
    if (!band) return "head dims above 1024 are not supported by the OpenCL kernels";
    c->t = f->has_bwd_tiles ? f->bwd_tiles : band->bwd;
    int tiled = f->bwd ? f->bwd == OCL_FORCE_TILED : !d->caps.is_cpu;
    if (f->bwd) snprintf(c->forced, sizeof c->forced, "opencl.bwd=%s", tiled ? "tiled" : "rows");
    if (tiled) {
        if (f->has_bwd_tiles) {
            size_t n = strlen(c->forced);
            snprintf(c->forced + n, sizeof c->forced - n, "%sopencl.bwd_tiles=%dx%d:%dx%d:%d:%d",
                     n ? "," : "", c->t.r, c->t.c, c->t.rg, c->t.cg, c->t.dk, c->t.vn);
        }
        const char *why = NULL;
        c->local_bytes = ocl_bwd_tiled_local_bytes(&c->t, p->head_dim, p->head_dim_v);
        if (c->t.rg * c->t.cg > d->caps.max_wg)
            why = "the tiled flash backward needs more work-items per group than the device "
                  "allows";
        else if (c->local_bytes > ocl_local_budget(&d->caps))
            why = "the tiled flash backward needs more local memory than the device has";
        if (!why) {
            c->tiled = 1;
            return NULL;
        }
        if (f->bwd == OCL_FORCE_TILED || f->has_bwd_tiles) return why;
        c->fell_back = 1;
        c->local_bytes = 0;
    }
    c->rows = ocl_rows_per_item(p->head_dim, p->head_dim_v);
    /* The private arrays of all the group's work-items live at once on CPU drivers. */
    size_t row_bytes = (size_t)((2 * c->rows + 1) * (p->head_dim + p->head_dim_v)) * 4;
    c->rows_group = ocl_tune.rows_group;
    while (c->rows_group > 1 && (c->rows_group * row_bytes > ocl_tune.rows_group_private ||
                                 (int)c->rows_group > d->caps.max_wg))
        c->rows_group /= 2;
    return NULL;
}

void ocl_bwd_note(const pa_problem *p, const ocl_bwd_choice *c, char *note, size_t size)
{
    (void)p;
    size_t n = strlen(note);
    if (c->tiled)
        snprintf(note + n, size - n,
                 "; backward: tiled dK/dV (%d keys) and dQ (%d queries) kernels, %d work-items, "
                 "%llu B local memory, no atomics",
                 c->t.r, c->t.r, c->t.rg * c->t.cg, (unsigned long long)c->local_bytes);
    else
        snprintf(note + n, size - n,
                 "; backward: row-streaming dK/dV and dQ kernels%s, %d rows per work-item, "
                 "no atomics",
                 c->fell_back ? " (the tiled tile does not fit)" : "", c->rows);
}

polyattn_status ocl_flash_bwd_prepare(ocl_device *d, const pa_problem *p, ocl_plan_state *s)
{
    const ocl_bwd_choice *c = &s->bwd;
    char opts[320];
    polyattn_status st;
    if (c->tiled) {
        ocl_bwd_tiled_options(p, &c->t, opts, sizeof opts);
        static const char *const tsrcs[] = {"common", "backward", "flash_bwd"};
        st = ocl_make_kernel_p(d, p, tsrcs, 3, opts, "bwd_delta_kernel", &s->bwd_delta);
        if (st == POLYATTN_STATUS_SUCCESS)
            st = ocl_make_kernel_p(d, p, tsrcs, 3, opts, "flash_bwd_dkdv_tiled_kernel",
                                   &s->bwd_dkdv);
        if (st == POLYATTN_STATUS_SUCCESS)
            st = ocl_make_kernel_p(d, p, tsrcs, 3, opts, "flash_bwd_dq_tiled_kernel", &s->bwd_dq);
        if (st == POLYATTN_STATUS_SUCCESS && p->has_sinks)
            st = ocl_make_kernel_p(d, p, tsrcs, 3, opts, "bwd_sinks_kernel", &s->bwd_sinks);
        if (st == POLYATTN_STATUS_SUCCESS && p->has_bias && p->want_bias_grad)
            st = ocl_make_kernel_p(d, p, tsrcs, 3, opts, "flash_bwd_dbias_kernel", &s->bwd_bias);
    } else {
        ocl_bwd_rows_options(p, c->rows, opts, sizeof opts);
        static const char *const bsrcs[] = {"common", "backward"};
        st = ocl_make_kernel_p(d, p, bsrcs, 2, opts, "bwd_delta_kernel", &s->bwd_delta);
        if (st == POLYATTN_STATUS_SUCCESS)
            st = ocl_make_kernel_p(d, p, bsrcs, 2, opts, "flash_bwd_dkdv_kernel", &s->bwd_dkdv);
        if (st == POLYATTN_STATUS_SUCCESS)
            st = ocl_make_kernel_p(d, p, bsrcs, 2, opts, "flash_bwd_dq_kernel", &s->bwd_dq);
        if (st == POLYATTN_STATUS_SUCCESS && p->has_sinks)
            st = ocl_make_kernel_p(d, p, bsrcs, 2, opts, "bwd_sinks_kernel", &s->bwd_sinks);
        if (st == POLYATTN_STATUS_SUCCESS && p->has_bias && p->want_bias_grad)
            st = ocl_make_kernel_p(d, p, bsrcs, 2, opts, "flash_bwd_dbias_kernel", &s->bwd_bias);
    }
    pa_log(POLYATTN_LOG_DISPATCH, "opencl flash backward: %s kernels%s%s%s",
           c->tiled       ? "tiled (GPU)"
           : c->fell_back ? "row-streaming (the tiled tile does not fit)"
                          : "row-streaming (CPU)",
           c->forced[0] ? " (POLYATTN_FORCE " : "", c->forced, c->forced[0] ? ")" : "");
    return st;
}

/* Workspace: D_i = rowsum(dO * O), one float per query row. */
uint64_t ocl_flash_bwd_workspace(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    if (pa_problem_serving(p)) return ocl_serving_bwd_workspace(p);
    return 4 * (uint64_t)p->batch * (uint64_t)p->heads_q * (uint64_t)p->seq_q;
}

/* Arguments 0..15 shared by the two kernels: q, k, v, dO (with strides), the LSE and D. */
static polyattn_status flash_bwd_args(ocl_device *d, cl_kernel k, const pa_problem *p,
                                      const pa_backward_io *io, const cl_long off[9], cl_mem ws,
                                      cl_long delta_off)
{
    const pa_tensor_ref *r[4] = {&io->q, &io->k, &io->v, &io->d_o};
    const int64_t *stv[4] = {p->q_stride, p->k_stride, p->v_stride, p->o_stride};
    const int oi[4] = {0, 1, 2, 4};
    for (int i = 0; i < 4; i++) {
        cl_mem m = (cl_mem)r[i]->mem;
        cl_long4 s4 = ocl_strides4(stv[i]);
        SET_ARG(k, 3 * i, m);
        SET_ARG(k, 3 * i + 1, off[oi[i]]);
        SET_ARG(k, 3 * i + 2, s4);
    }
    cl_mem lse = (cl_mem)io->lse.mem;
    SET_ARG(k, 12, lse);
    SET_ARG(k, 13, off[8]);
    SET_ARG(k, 14, ws);
    SET_ARG(k, 15, delta_off);
    return POLYATTN_STATUS_SUCCESS;
}

/* D, then dK/dV (per key block and kv head, summing over the GQA group's queries) and dQ
 * (per query block): deterministic without atomics (the deterministic option changes
 * nothing here). */
polyattn_status ocl_flash_backward(pa_device *dev, const pa_problem *p, void *state,
                                   const pa_backward_io *io)
{
    ocl_device *d = (ocl_device *)dev;
    const ocl_plan_state *s = state;
    const ocl_bwd_choice *c = &s->bwd;
    cl_long off[9];
    polyattn_status st = ocl_bwd_offsets(d, p, io, off);
    if (st) return st;
    uint64_t need = ocl_flash_bwd_workspace(dev, p);
    if (!io->workspace.mem || io->workspace_bytes < need)
        return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl flash backward: needs a workspace of %llu bytes",
                       (unsigned long long)need);
    cl_mem ws = (cl_mem)io->workspace.mem;
    cl_long delta0 = (cl_long)(io->workspace.offset / 4);
    st = ocl_bwd_delta(d, s->bwd_delta, p, io, off, ws, delta0);
    if (st) return st;
    cl_int heads_q = (cl_int)p->heads_q, seq_q = (cl_int)p->seq_q, seq_kv = (cl_int)p->seq_kv,
           group = (cl_int)(p->heads_q / p->heads_kv), coff = 0;
    cl_int causal = ocl_causal_of(p, &coff);
    cl_float scale = p->scale;

    /* Tiled: one work-group per t.r keys (dK/dV) or queries (dQ); rows: one work-item per
     * BR of them. */
    size_t wg = c->tiled ? (size_t)(c->t.rg * c->t.cg) : c->rows_group;
    int64_t per = c->tiled ? c->t.r : c->rows;
    size_t g1[3] = {(size_t)((p->seq_kv + per - 1) / per), (size_t)p->heads_kv, (size_t)p->batch};
    size_t g2[3] = {(size_t)((p->seq_q + per - 1) / per), (size_t)p->heads_q, (size_t)p->batch};
    size_t l1[3] = {wg, 1, 1};
    if (c->tiled) {
        g1[0] *= wg;
        g2[0] *= wg;
    } else {
        g1[0] = (size_t)ocl_round_up((int64_t)g1[0], (int64_t)wg);
        g2[0] = (size_t)ocl_round_up((int64_t)g2[0], (int64_t)wg);
    }

    cl_kernel k = s->bwd_dkdv;
    st = flash_bwd_args(d, k, p, io, off, ws, delta0);
    if (st) return st;
    cl_mem dkm = (cl_mem)io->dk.mem, dvm = (cl_mem)io->dv.mem, dqm = (cl_mem)io->dq.mem;
    SET_ARG(k, 16, dkm);
    SET_ARG(k, 17, off[6]);
    SET_ARG(k, 18, dvm);
    SET_ARG(k, 19, off[7]);
    SET_ARG(k, 20, heads_q);
    SET_ARG(k, 21, seq_q);
    SET_ARG(k, 22, seq_kv);
    SET_ARG(k, 23, group);
    SET_ARG(k, 24, scale);
    SET_ARG(k, 25, causal);
    SET_ARG(k, 26, coff);
    st = ocl_var_set_args(d, k, 27, p, &io->var, ws, 0);
    if (st) return st;
    st = ocl_enqueue(d, k, g1, l1, "clEnqueueNDRangeKernel(flash_bwd_dkdv_kernel)");
    if (st) return st;

    k = s->bwd_dq;
    st = flash_bwd_args(d, k, p, io, off, ws, delta0);
    if (st) return st;
    SET_ARG(k, 16, dqm);
    SET_ARG(k, 17, off[5]);
    SET_ARG(k, 18, heads_q);
    SET_ARG(k, 19, seq_q);
    SET_ARG(k, 20, seq_kv);
    SET_ARG(k, 21, group);
    SET_ARG(k, 22, scale);
    SET_ARG(k, 23, causal);
    SET_ARG(k, 24, coff);
    st = ocl_var_set_args(d, k, 25, p, &io->var, ws, 0);
    if (st) return st;
    st = ocl_enqueue(d, k, g2, l1, "clEnqueueNDRangeKernel(flash_bwd_dq_kernel)");
    if (st) return st;
    if (s->bwd_bias) {
        st = ocl_flash_bwd_dbias(d, s->bwd_bias, p, io, off, ws, delta0);
        if (st) return st;
    }
    return ocl_var_sinks_grad(d, s->bwd_sinks, p, io, off[8], ws, delta0);
}

/* d_bias: one work-item per bias row, summing the (batch, head)s it broadcasts over. */
polyattn_status ocl_flash_bwd_dbias(ocl_device *d, cl_kernel k, const pa_problem *p,
                                    const pa_backward_io *io, const cl_long off[9], cl_mem ws,
                                    cl_long delta0)
{
    polyattn_status st = flash_bwd_args(d, k, p, io, off, ws, delta0);
    if (st) return st;
    cl_int heads_q = (cl_int)p->heads_q, seq_q = (cl_int)p->seq_q, seq_kv = (cl_int)p->seq_kv,
           group = (cl_int)(p->heads_q / p->heads_kv), coff = 0;
    cl_int causal = ocl_causal_of(p, &coff);
    cl_float scale = p->scale;
    cl_mem dbm = (cl_mem)io->var.d_bias.mem;
    cl_long db_off = (cl_long)(io->var.d_bias.offset / 4);
    cl_long4 bshape = ocl_strides4(p->bias_shape);
    cl_int batch = (cl_int)p->batch;
    SET_ARG(k, 16, dbm);
    SET_ARG(k, 17, db_off);
    SET_ARG(k, 18, bshape);
    SET_ARG(k, 19, batch);
    SET_ARG(k, 20, heads_q);
    SET_ARG(k, 21, seq_q);
    SET_ARG(k, 22, seq_kv);
    SET_ARG(k, 23, group);
    SET_ARG(k, 24, scale);
    SET_ARG(k, 25, causal);
    st = ocl_var_set_args(d, k, 26, p, &io->var, ws, 0);
    if (st) return st;
    return ocl_enqueue_1d(d, k, (uint64_t)(p->bias_shape[0] * p->bias_shape[1] * p->seq_q),
                          "clEnqueueNDRangeKernel(flash_bwd_dbias_kernel)");
}

polyattn_status ocl_check_decisions(ocl_device *d, const pa_problem *p, ocl_fwd_decide_fn decide,
                                    ocl_fwd_choice *c, ocl_bwd_choice *b, const char **why_not)
{
    ocl_force f;
    const char *why = ocl_force_read(d, &f);
    if (why) {
        *why_not = why;
        return POLYATTN_STATUS_INVALID_ARGUMENT;
    }
    why = decide(d, p, &f, c);
    if (!why && p->want_backward) why = ocl_bwd_decide(d, p, &f, b);
    if (why) {
        *why_not = why;
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    return POLYATTN_STATUS_SUCCESS;
}
