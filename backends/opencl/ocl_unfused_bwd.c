/* The unfused backward on OpenCL: five CLBlast batched SGEMMs per pass around one
 * elementwise kernel (kernels/backward.cl), GQA sums inside the dK/dV GEMMs. */
#include "ocl_algos.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Backward layout: f32 copies of what CLBlast cannot read in place, f32 staging of the
 * gradients it cannot write in place, D (one float per query row), then the score pair
 * P and dS of `bchunk` (batch, kv head) groups.  dK and dV of a kv head are one GEMM over
 * its whole group (Q and dO of the group's heads stacked as group * seq_q rows), so GQA
 * sums need no atomics and no second pass: Q and dO are packed when their heads are not
 * stacked that way.  Returns the total bytes (bchunk 0: unsupported). */
uint64_t ocl_unfused_bwd_layout(const pa_problem *p, const ocl_force *f, ocl_plan_state *s)
{
    uint64_t b = (uint64_t)p->batch, hq = (uint64_t)p->heads_q, hk = (uint64_t)p->heads_kv;
    uint64_t sq = (uint64_t)p->seq_q, skv = (uint64_t)p->seq_kv, group = hq / hk;
    uint64_t dd = (uint64_t)p->head_dim, dv = (uint64_t)p->head_dim_v, at = 0;
    int stack = group > 1;
    s->bp_q = ocl_needs_pack(p, p->q_stride, p->head_dim) ||
              (stack && p->q_stride[1] != p->seq_q * p->q_stride[2]);
    s->bp_k = ocl_needs_pack(p, p->k_stride, p->head_dim);
    s->bp_v = ocl_needs_pack(p, p->v_stride, p->head_dim_v);
    s->bp_do = ocl_needs_pack(p, p->o_stride, p->head_dim_v) ||
               (stack && p->o_stride[1] != p->seq_q * p->o_stride[2]);
    s->bu_dq = ocl_needs_pack(p, p->q_stride, p->head_dim);
    s->bu_dk = ocl_needs_pack(p, p->k_stride, p->head_dim);
    s->bu_dv = ocl_needs_pack(p, p->v_stride, p->head_dim_v);
    s->bws_q = at;
    if (s->bp_q) at = ocl_align256(at + 4 * b * hq * sq * dd);
    s->bws_k = at;
    if (s->bp_k) at = ocl_align256(at + 4 * b * hk * skv * dd);
    s->bws_v = at;
    if (s->bp_v) at = ocl_align256(at + 4 * b * hk * skv * dv);
    s->bws_do = at;
    if (s->bp_do) at = ocl_align256(at + 4 * b * hq * sq * dv);
    s->bws_dq = at;
    if (s->bu_dq) at = ocl_align256(at + 4 * b * hq * sq * dd);
    s->bws_dk = at;
    if (s->bu_dk) at = ocl_align256(at + 4 * b * hk * skv * dd);
    s->bws_dv = at;
    if (s->bu_dv) at = ocl_align256(at + 4 * b * hk * skv * dv);
    s->bws_delta = at;
    at = ocl_align256(at + 4 * b * hq * sq);
    uint64_t per = group * sq * skv; /* floats of one group's P (and of its dS) */
    uint64_t room = OCL_CLBLAST_MAX_ELEMS > at / 4 + 128 ? OCL_CLBLAST_MAX_ELEMS - at / 4 - 128 : 0;
    s->bchunk = per ? room / (2 * per) : 0;
    if (s->bchunk > b * hk) s->bchunk = b * hk;
    if (f->unfused_chunk && f->unfused_chunk < s->bchunk) s->bchunk = f->unfused_chunk;
    s->bws_p = at;
    at = ocl_align256(at + 4 * s->bchunk * per);
    s->bws_ds = at;
    at = ocl_align256(at + 4 * s->bchunk * per);
    s->bws_total = at;
    return at;
}

uint64_t ocl_unfused_bwd_workspace(pa_device *dev, const pa_problem *p)
{
    ocl_force f;
    ocl_plan_state s;
    memset(&s, 0, sizeof s);
    if (ocl_force_read((ocl_device *)dev, &f)) return 0; /* check refused the plan */
    return ocl_unfused_bwd_layout(p, &f, &s);
}

#ifdef POLYATTN_HAVE_CLBLAST
polyattn_status ocl_unfused_bwd_prepare(ocl_device *d, const pa_problem *p, const char *opts,
                                        ocl_plan_state *s)
{
    size_t nb = (size_t)(p->batch * p->heads_q), nbg = (size_t)(p->batch * p->heads_kv);
    s->boffs = calloc(7 * nb + 6 * nbg, sizeof *s->boffs);
    s->bscale = malloc(nb * sizeof *s->bscale);
    s->bone = malloc(nb * sizeof *s->bone);
    if (!s->boffs || !s->bscale || !s->bone) return POLYATTN_STATUS_OUT_OF_MEMORY;
    for (size_t i = 0; i < nb; i++) {
        s->bscale[i] = p->scale;
        s->bone[i] = 1.0f;
    }
    static const char *const srcs[] = {"common", "unfused"}, *const bsrcs[] = {"common",
                                                                               "backward"};
    polyattn_status st = ocl_make_kernel_p(d, p, bsrcs, 2, opts, "bwd_delta_kernel", &s->bwd_delta);
    if (st == POLYATTN_STATUS_SUCCESS)
        st = ocl_make_kernel_p(d, p, bsrcs, 2, opts, "bwd_softmax_grad_kernel", &s->bwd_grad);
    if (st == POLYATTN_STATUS_SUCCESS && (s->bp_q || s->bp_k || s->bp_v || s->bp_do))
        st = ocl_make_kernel_p(d, p, srcs, 2, opts, "pack_f32_kernel", &s->bwd_pack);
    if (st == POLYATTN_STATUS_SUCCESS && (s->bu_dq || s->bu_dk || s->bu_dv))
        st = ocl_make_kernel_p(d, p, srcs, 2, opts, "unpack_f32_kernel", &s->bwd_unpack);
    if (st == POLYATTN_STATUS_SUCCESS && p->has_sinks)
        st = ocl_make_kernel_p(d, p, bsrcs, 2, opts, "bwd_sinks_kernel", &s->bwd_sinks);
    if (st == POLYATTN_STATUS_SUCCESS && p->has_bias && p->want_bias_grad) {
        if (p->softcap > 0.0f) {
            /* The dS region holds dS times the softcap's derivative: d_bias recomputes dS
             * with the flash backward's kernel (a program with the head dims). */
            char ropts[320];
            ocl_bwd_rows_options(p, 1, ropts, sizeof ropts);
            st = ocl_make_kernel_p(d, p, bsrcs, 2, ropts, "flash_bwd_dbias_kernel", &s->bwd_bias);
        } else {
            st = ocl_make_kernel_p(d, p, bsrcs, 2, opts, "bwd_bias_grad_kernel", &s->bwd_bias);
        }
    }
    const uint64_t passes = (nbg + s->bchunk - 1) / s->bchunk;
    pa_log(POLYATTN_LOG_DISPATCH,
           "opencl unfused backward: %llu pass%s of up to %llu GQA "
           "groups%s",
           (unsigned long long)passes, passes == 1 ? "" : "es", (unsigned long long)s->bchunk,
           s->forced_chunk ? " (POLYATTN_FORCE opencl.unfused_chunk)" : "");
    return st;
}

#define BWD_GEMM(what, ...)                                                                        \
    do {                                                                                           \
        CLBlastStatusCode cs_ = CLBlastSgemmBatched(__VA_ARGS__);                                  \
        if (cs_ != CLBlastSuccess)                                                                 \
            return pa_fail(dev, POLYATTN_STATUS_DEVICE_ERROR,                                      \
                           "opencl unfused backward: CLBlastSgemmBatched (" what                   \
                           ") failed: %s (%d)",                                                    \
                           ocl_clblast_name(cs_), (int)cs_);                                       \
    } while (0)

/* The unfused backward: D, then per pass of whole GQA groups S = scale Q K^T and
 * dP = dO V^T (GEMMs), P and dS (one elementwise kernel), dV = P^T dO and
 * dK = scale dS^T Q (one GEMM per kv head over its group's stacked rows), dQ = scale dS K.
 * Deterministic: no atomics, fixed summation order. */
polyattn_status ocl_unfused_backward(pa_device *dev, const pa_problem *p, void *state,
                                     const pa_backward_io *io)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_plan_state *s = state;
    cl_long off[9];
    polyattn_status st = ocl_bwd_offsets(d, p, io, off);
    if (st) return st;
    if (!io->workspace.mem || io->workspace_bytes < s->bws_total)
        return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl unfused backward: needs a workspace of %llu bytes",
                       (unsigned long long)s->bws_total);
    cl_mem ws = (cl_mem)io->workspace.mem;
    cl_long ws0 = (cl_long)(io->workspace.offset / 4);
    cl_long delta0 = ws0 + (cl_long)(s->bws_delta / 4);
    st = ocl_bwd_delta(d, s->bwd_delta, p, io, off, ws, delta0);
    if (st) return st;

    int64_t qd[4] = {p->batch, p->heads_q, p->seq_q, p->head_dim};
    int64_t kd[4] = {p->batch, p->heads_kv, p->seq_kv, p->head_dim};
    int64_t vd[4] = {p->batch, p->heads_kv, p->seq_kv, p->head_dim_v};
    int64_t od[4] = {p->batch, p->heads_q, p->seq_q, p->head_dim_v};
    /* GEMM operands: the caller's tensors or f32 copies; outputs likewise. */
    cl_mem qm = (cl_mem)io->q.mem, km = (cl_mem)io->k.mem, vm = (cl_mem)io->v.mem,
           dom = (cl_mem)io->d_o.mem, dqm = (cl_mem)io->dq.mem, dkm = (cl_mem)io->dk.mem,
           dvm = (cl_mem)io->dv.mem;
    cl_long q_off = off[0], k_off = off[1], v_off = off[2], do_off = off[4], dq_off = off[5],
            dk_off = off[6], dv_off = off[7];
    int64_t q_st[4], k_st[4], v_st[4], do_st[4], dq_st[4], dk_st[4], dv_st[4];
    memcpy(q_st, p->q_stride, sizeof q_st);
    memcpy(k_st, p->k_stride, sizeof k_st);
    memcpy(v_st, p->v_stride, sizeof v_st);
    memcpy(do_st, p->o_stride, sizeof do_st);
    memcpy(dq_st, p->q_stride, sizeof dq_st);
    memcpy(dk_st, p->k_stride, sizeof dk_st);
    memcpy(dv_st, p->v_stride, sizeof dv_st);
#define BWD_PACK(flag, m, o, stv, dims, region)                                                    \
    if (flag) {                                                                                    \
        cl_long to_ = ws0 + (cl_long)((region) / 4);                                               \
        st = ocl_pack(d, s->bwd_pack, 0, m, o, stv, dims, ws, to_);                                \
        if (st) return st;                                                                         \
        m = ws;                                                                                    \
        o = to_;                                                                                   \
        ocl_contiguous(stv, dims);                                                                 \
    }
    BWD_PACK(s->bp_q, qm, q_off, q_st, qd, s->bws_q)
    BWD_PACK(s->bp_k, km, k_off, k_st, kd, s->bws_k)
    BWD_PACK(s->bp_v, vm, v_off, v_st, vd, s->bws_v)
    BWD_PACK(s->bp_do, dom, do_off, do_st, od, s->bws_do)
#undef BWD_PACK
    if (s->bu_dq) {
        dqm = ws;
        dq_off = ws0 + (cl_long)(s->bws_dq / 4);
        ocl_contiguous(dq_st, qd);
    }
    if (s->bu_dk) {
        dkm = ws;
        dk_off = ws0 + (cl_long)(s->bws_dk / 4);
        ocl_contiguous(dk_st, kd);
    }
    if (s->bu_dv) {
        dvm = ws;
        dv_off = ws0 + (cl_long)(s->bws_dv / 4);
        ocl_contiguous(dv_st, vd);
    }

    size_t nb = (size_t)(p->batch * p->heads_q), nbg = (size_t)(p->batch * p->heads_kv);
    size_t group = (size_t)(p->heads_q / p->heads_kv), hq = (size_t)p->heads_q,
           hkv = (size_t)p->heads_kv;
    size_t sq = (size_t)p->seq_q, skv = (size_t)p->seq_kv, dd = (size_t)p->head_dim,
           dv = (size_t)p->head_dim_v;
    size_t *aq = s->boffs, *bk = aq + nb, *cp = bk + nb, *cds = cp + nb, *ado = cds + nb,
           *bv = ado + nb, *cdq = bv + nb;
    size_t *gp = cdq + nb, *gds = gp + nbg, *gdo = gds + nbg, *gq = gdo + nbg, *cdk = gq + nbg,
           *cdv = cdk + nbg;
    cl_long p0 = ws0 + (cl_long)(s->bws_p / 4), ds0 = ws0 + (cl_long)(s->bws_ds / 4);
    cl_mem lse = (cl_mem)io->lse.mem;
    cl_int seq_q = (cl_int)p->seq_q, seq_kv = (cl_int)p->seq_kv, coff = 0;
    cl_int causal = ocl_causal_of(p, &coff);
    cl_command_queue queue = d->queue;
    cl_kernel k = s->bwd_grad;
    for (size_t g0 = 0; g0 < nbg; g0 += (size_t)s->bchunk) {
        size_t cnt = nbg - g0 < (size_t)s->bchunk ? nbg - g0 : (size_t)s->bchunk;
        size_t m0 = g0 * group, mcnt = cnt * group; /* (b, hk) groups are consecutive heads */
        for (size_t i = m0; i < m0 + mcnt; i++) {
            size_t b = i / hq, h = i % hq, hk = h / group;
            aq[i] = (size_t)q_off + b * (size_t)q_st[0] + h * (size_t)q_st[1];
            bk[i] = (size_t)k_off + b * (size_t)k_st[0] + hk * (size_t)k_st[1];
            bv[i] = (size_t)v_off + b * (size_t)v_st[0] + hk * (size_t)v_st[1];
            ado[i] = (size_t)do_off + b * (size_t)do_st[0] + h * (size_t)do_st[1];
            cdq[i] = (size_t)dq_off + b * (size_t)dq_st[0] + h * (size_t)dq_st[1];
            cp[i] = (size_t)p0 + (i - m0) * sq * skv;
            cds[i] = (size_t)ds0 + (i - m0) * sq * skv;
        }
        for (size_t j = g0; j < g0 + cnt; j++) {
            size_t b = j / hkv, hk = j % hkv, mi = j * group;
            gp[j] = cp[mi];
            gds[j] = cds[mi];
            gdo[j] = ado[mi];
            gq[j] = aq[mi];
            cdk[j] = (size_t)dk_off + b * (size_t)dk_st[0] + hk * (size_t)dk_st[1];
            cdv[j] = (size_t)dv_off + b * (size_t)dv_st[0] + hk * (size_t)dv_st[1];
        }
        BWD_GEMM("S = scale Q K^T", CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes,
                 sq, skv, dd, s->bscale + m0, qm, aq + m0, (size_t)q_st[2], km, bk + m0,
                 (size_t)k_st[2], s->betas + m0, ws, cp + m0, skv, mcnt, &queue, NULL);
        BWD_GEMM("dP = dO V^T", CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, sq,
                 skv, dv, s->bone + m0, dom, ado + m0, (size_t)do_st[2], vm, bv + m0,
                 (size_t)v_st[2], s->betas + m0, ws, cds + m0, skv, mcnt, &queue, NULL);
        cl_long pa = (cl_long)cp[m0], dsa = (cl_long)cds[m0], n = (cl_long)(mcnt * sq * skv);
        cl_long lse_off = off[8] + (cl_long)(m0 * sq), delta_off = delta0 + (cl_long)(m0 * sq);
        SET_ARG(k, 0, ws);
        SET_ARG(k, 1, pa);
        SET_ARG(k, 2, dsa);
        SET_ARG(k, 3, n);
        SET_ARG(k, 4, seq_q);
        SET_ARG(k, 5, seq_kv);
        SET_ARG(k, 6, causal);
        SET_ARG(k, 7, coff);
        SET_ARG(k, 8, lse);
        SET_ARG(k, 9, lse_off);
        SET_ARG(k, 10, delta_off);
        st = ocl_var_set_args(d, k, 11, p, &io->var, ws, (cl_long)m0);
        if (st) return st;
        st = ocl_enqueue_1d(d, k, (uint64_t)n, "clEnqueueNDRangeKernel(bwd_softmax_grad_kernel)");
        if (st) return st;
        if (s->bwd_bias && p->softcap <= 0.0f) {
            /* d_bias: this pass's dS summed onto the bias shape (written by the first pass). */
            cl_kernel kb = s->bwd_bias;
            cl_mem dbm = (cl_mem)io->var.d_bias.mem;
            cl_long mat0 = (cl_long)m0, count = (cl_long)mcnt,
                    db_off = (cl_long)(io->var.d_bias.offset / 4), plane = (cl_long)(sq * skv);
            cl_long4 bshape = ocl_strides4(p->bias_shape);
            cl_int hq_arg = (cl_int)p->heads_q, accumulate = g0 > 0;
            SET_ARG(kb, 0, ws);
            SET_ARG(kb, 1, dsa);
            SET_ARG(kb, 2, mat0);
            SET_ARG(kb, 3, count);
            SET_ARG(kb, 4, dbm);
            SET_ARG(kb, 5, db_off);
            SET_ARG(kb, 6, bshape);
            SET_ARG(kb, 7, hq_arg);
            SET_ARG(kb, 8, plane);
            SET_ARG(kb, 9, accumulate);
            st = ocl_enqueue_1d(d, kb, (uint64_t)(p->bias_shape[0] * p->bias_shape[1]) * sq * skv,
                                "clEnqueueNDRangeKernel(bwd_bias_grad_kernel)");
            if (st) return st;
        }
        /* One GEMM per kv head over its group: K = group * seq_q stacked rows. */
        BWD_GEMM("dV = P^T dO", CLBlastLayoutRowMajor, CLBlastTransposeYes, CLBlastTransposeNo, skv,
                 dv, group * sq, s->bone + g0, ws, gp + g0, skv, dom, gdo + g0, (size_t)do_st[2],
                 s->betas + g0, dvm, cdv + g0, (size_t)dv_st[2], cnt, &queue, NULL);
        BWD_GEMM("dK = scale dS^T Q", CLBlastLayoutRowMajor, CLBlastTransposeYes,
                 CLBlastTransposeNo, skv, dd, group * sq, s->bscale + g0, ws, gds + g0, skv, qm,
                 gq + g0, (size_t)q_st[2], s->betas + g0, dkm, cdk + g0, (size_t)dk_st[2], cnt,
                 &queue, NULL);
        BWD_GEMM("dQ = scale dS K", CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo,
                 sq, dd, skv, s->bscale + m0, ws, cds + m0, skv, km, bk + m0, (size_t)k_st[2],
                 s->betas + m0, dqm, cdq + m0, (size_t)dq_st[2], mcnt, &queue, NULL);
    }
    if (s->bwd_bias && p->softcap > 0.0f) {
        st = ocl_flash_bwd_dbias(d, s->bwd_bias, p, io, off, ws, delta0);
        if (st) return st;
    }
    st = ocl_var_sinks_grad(d, s->bwd_sinks, p, io, off[8], ws, delta0);
    if (st) return st;
    if (s->bu_dq) {
        st = ocl_pack(d, s->bwd_unpack, 1, (cl_mem)io->dq.mem, off[5], p->q_stride, qd, ws, dq_off);
        if (st) return st;
    }
    if (s->bu_dk) {
        st = ocl_pack(d, s->bwd_unpack, 1, (cl_mem)io->dk.mem, off[6], p->k_stride, kd, ws, dk_off);
        if (st) return st;
    }
    if (s->bu_dv) {
        st = ocl_pack(d, s->bwd_unpack, 1, (cl_mem)io->dv.mem, off[7], p->v_stride, vd, ws, dv_off);
        if (st) return st;
    }
    return POLYATTN_STATUS_SUCCESS;
}
#undef BWD_GEMM
#else
polyattn_status ocl_unfused_bwd_prepare(ocl_device *d, const pa_problem *p, const char *opts,
                                        ocl_plan_state *s)
{
    (void)p;
    (void)opts;
    (void)s;
    return pa_fail(&d->base, POLYATTN_STATUS_UNSUPPORTED, "opencl unfused: built without CLBlast");
}

polyattn_status ocl_unfused_backward(pa_device *dev, const pa_problem *p, void *state,
                                     const pa_backward_io *io)
{
    (void)p;
    (void)state;
    (void)io;
    return pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED, "opencl unfused: built without CLBlast");
}
#endif
