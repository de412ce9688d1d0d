/* The unfused forward on OpenCL: CLBlast batched SGEMMs around a mask + softmax kernel
 * (kernels/unfused.cl), f32 copies in the workspace for what CLBlast cannot read in place,
 * passes that keep CLBlast's 32-bit offsets.  The backward is ocl_unfused_bwd.c. */
#include "ocl_algos.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* CLBlast's GEMMs read row-major matrices with unit element stride; anything else, and
 * every f16/bf16 tensor, goes through a contiguous f32 copy in the workspace (CLBlast's
 * half GEMM would accumulate in half precision, and NVIDIA has no cl_khr_fp16). */
int ocl_needs_pack(const pa_problem *p, const int64_t st[4], int64_t cols)
{
    return p->dtype != POLYATTN_DTYPE_F32 || st[3] != 1 || st[2] < cols || st[0] < 0 || st[1] < 0 ||
           st[2] < 0;
}

uint64_t ocl_align256(uint64_t x) { return (x + 255) & ~(uint64_t)255; }

/* The scores are computed `chunk` matrices at a time in a workspace region placed after
 * the packed copies (CLBlast's 32-bit offsets); with want_probs they go straight into the
 * caller's probabilities buffer (which must then be small enough). */
uint64_t ocl_unfused_layout(const pa_problem *p, const ocl_force *f, ocl_plan_state *s)
{
    uint64_t b = (uint64_t)p->batch, hq = (uint64_t)p->heads_q, hk = (uint64_t)p->heads_kv;
    uint64_t sq = (uint64_t)p->seq_q, skv = (uint64_t)p->seq_kv, nb = b * hq;
    uint64_t dd = (uint64_t)p->head_dim, dv = (uint64_t)p->head_dim_v, at = 0;
    s->pack_q = ocl_needs_pack(p, p->q_stride, p->head_dim);
    s->pack_k = ocl_needs_pack(p, p->k_stride, p->head_dim);
    s->pack_v = ocl_needs_pack(p, p->v_stride, p->head_dim_v);
    s->unpack_o = ocl_needs_pack(p, p->o_stride, p->head_dim_v);
    s->ws_q = at;
    if (s->pack_q) at = ocl_align256(at + 4 * b * hq * sq * dd);
    s->ws_k = at;
    if (s->pack_k) at = ocl_align256(at + 4 * b * hk * skv * dd);
    s->ws_v = at;
    if (s->pack_v) at = ocl_align256(at + 4 * b * hk * skv * dv);
    s->ws_o = at;
    if (s->unpack_o) at = ocl_align256(at + 4 * b * hq * sq * dv);
    s->ws_s = at;
    s->forced_chunk = f->unfused_chunk;
    uint64_t per = sq * skv;
    uint64_t room = OCL_CLBLAST_MAX_ELEMS > at / 4 ? OCL_CLBLAST_MAX_ELEMS - at / 4 : 0;
    if (p->want_probs) {
        s->chunk = nb * per <= OCL_CLBLAST_MAX_ELEMS ? nb : 0;
    } else {
        s->chunk = per ? room / per : 0;
        if (s->chunk > nb) s->chunk = nb;
        if (f->unfused_chunk && f->unfused_chunk < s->chunk) s->chunk = f->unfused_chunk;
        at = ocl_align256(at + 4 * s->chunk * per);
    }
    s->ws_total = at;
    return at;
}

/* Reads the forced keys and fills the forward layout (and the backward's with
 * want_backward); NULL or why the plan cannot run. */
static const char *decide(ocl_device *d, const pa_problem *p, ocl_plan_state *s,
                          polyattn_status *st)
{
    ocl_force f;
    const char *why = ocl_force_read(d, &f);
    *st = POLYATTN_STATUS_INVALID_ARGUMENT;
    if (why) return why;
    *st = POLYATTN_STATUS_UNSUPPORTED;
    if ((why = ocl_dtype_refusal(p, 0))) return why;
    if (p->seq_q > INT_MAX / 2 || p->seq_kv > INT_MAX / 2)
        return "sequence lengths must be below 2^30 (the kernels' 32-bit index arithmetic)";
    uint64_t ws = ocl_unfused_layout(p, &f, s);
    if (s->chunk == 0)
        return p->want_probs ? "CLBlast indexes with 32-bit ints: the probabilities have 2^31 "
                               "elements or more"
                             : "CLBlast indexes with 32-bit ints: one N x N score matrix has "
                               "2^31 elements or more";
    int64_t dmax = p->head_dim > p->head_dim_v ? p->head_dim : p->head_dim_v;
    if ((uint64_t)(p->batch * p->heads_q * p->seq_q * dmax) > OCL_CLBLAST_MAX_ELEMS ||
        (uint64_t)(p->batch * p->heads_kv * p->seq_kv * dmax) > OCL_CLBLAST_MAX_ELEMS)
        return "CLBlast indexes with 32-bit ints: a tensor has 2^31 elements or more";
    if (d->caps.max_alloc && ws > d->caps.max_alloc)
        return "the workspace exceeds the device's largest allocation";
    if (ocl_tune.softmax_wg > d->caps.max_wg)
        return "the softmax kernel needs 128 work-items per group";
    if (p->want_backward) {
        uint64_t bws = ocl_unfused_bwd_layout(p, &f, s);
        if (s->bchunk == 0)
            return "backward: CLBlast indexes with 32-bit ints: one kv head's score matrices "
                   "(group x seq_q x seq_kv, twice) have 2^31 elements or more";
        if (d->caps.max_alloc && bws > d->caps.max_alloc)
            return "the backward workspace exceeds the device's largest allocation";
    }
    *st = POLYATTN_STATUS_SUCCESS;
    return NULL;
}

polyattn_status ocl_unfused_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
#ifndef POLYATTN_HAVE_CLBLAST
    (void)dev;
    (void)p;
    *why_not = "unfused needs CLBlast, which this build was compiled without";
    return POLYATTN_STATUS_UNSUPPORTED;
#else
    ocl_device *d = (ocl_device *)dev;
    ocl_plan_state s;
    memset(&s, 0, sizeof s);
    polyattn_status st;
    const char *why = decide(d, p, &s, &st);
    if (why) {
        *why_not = why;
        return st;
    }
    char *note = d->note[POLYATTN_ALGO_UNFUSED];
    const size_t size = sizeof d->note[POLYATTN_ALGO_UNFUSED];
    uint64_t nb = (uint64_t)(p->batch * p->heads_q);
    snprintf(note, size, "CLBlast SGEMM batched on %s, scores in %s%s",
             s.pack_q || s.pack_k || s.pack_v || s.unpack_o
                 ? "f32 copies in the workspace (f16/bf16 storage or strides CLBlast cannot take)"
                 : "the caller's f32 tensors",
             p->want_probs ? "the probabilities buffer" : "the workspace",
             !p->want_probs && s.chunk < nb ? " (several passes: CLBlast's 32-bit indexing)" : "");
    if (p->want_backward) {
        size_t n = strlen(note);
        snprintf(note + n, size - n,
                 "; backward: 5 batched GEMMs per pass, GQA summed inside the dK/dV GEMMs");
    }
    *why_not = note;
    return POLYATTN_STATUS_SUCCESS;
#endif
}

uint64_t ocl_unfused_workspace(pa_device *dev, const pa_problem *p)
{
    ocl_plan_state s;
    memset(&s, 0, sizeof s);
    polyattn_status st;
    decide((ocl_device *)dev, p, &s, &st);
    return s.ws_total;
}

int ocl_unfused_launches(pa_device *dev, const pa_problem *p)
{
    ocl_plan_state s;
    memset(&s, 0, sizeof s);
    polyattn_status st;
    decide((ocl_device *)dev, p, &s, &st);
    return 3 + s.pack_q + s.pack_k + s.pack_v + s.unpack_o;
}

#ifdef POLYATTN_HAVE_CLBLAST
polyattn_status ocl_unfused_prepare(pa_device *dev, const pa_problem *p, void **state)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_plan_state *s = ocl_state_new();
    if (!s) return POLYATTN_STATUS_OUT_OF_MEMORY;
    polyattn_status st;
    const char *why = decide(d, p, s, &st);
    if (why) {
        ocl_release_state(dev, s);
        return pa_fail(dev, st, "opencl unfused: %s", why);
    }
    size_t nb = (size_t)(p->batch * p->heads_q);
    s->offs = calloc(6 * nb, sizeof *s->offs);
    s->alphas = malloc(nb * sizeof *s->alphas);
    s->betas = calloc(nb, sizeof *s->betas);
    if (!s->offs || !s->alphas || !s->betas) {
        ocl_release_state(dev, s);
        return POLYATTN_STATUS_OUT_OF_MEMORY;
    }
    char opts[256];
    ocl_unfused_options(p, opts, sizeof opts);
    static const char *const srcs[] = {"common", "unfused"};
    st = ocl_make_kernel_p(d, p, srcs, 2, opts, "softmax_rows_kernel", &s->kernel);
    if (st == POLYATTN_STATUS_SUCCESS && (s->pack_q || s->pack_k || s->pack_v))
        st = ocl_make_kernel_p(d, p, srcs, 2, opts, "pack_f32_kernel", &s->pack);
    if (st == POLYATTN_STATUS_SUCCESS && s->unpack_o)
        st = ocl_make_kernel_p(d, p, srcs, 2, opts, "unpack_f32_kernel", &s->unpack);
    if (st == POLYATTN_STATUS_SUCCESS && p->want_backward)
        st = ocl_unfused_bwd_prepare(d, p, opts, s);
    if (st != POLYATTN_STATUS_SUCCESS) {
        ocl_release_state(dev, s);
        return st;
    }
    const uint64_t passes = (nb + s->chunk - 1) / s->chunk;
    char forced[80] = "";
    if (s->forced_chunk)
        snprintf(forced, sizeof forced, " (POLYATTN_FORCE opencl.unfused_chunk=%llu)",
                 (unsigned long long)s->forced_chunk);
    pa_log(POLYATTN_LOG_DISPATCH,
           "opencl unfused: CLBlast SGEMM (batched, %zu matrices) on %s; scores in %s, "
           "%llu pass%s%s",
           nb,
           s->pack_q || s->pack_k || s->pack_v || s->unpack_o
               ? "f32 copies packed in the workspace (f16/bf16 storage or non-unit strides)"
               : "the caller's f32 tensors",
           p->want_probs ? "the probabilities buffer" : "the workspace", (unsigned long long)passes,
           passes == 1 ? "" : "es", forced);
    *state = s;
    return POLYATTN_STATUS_SUCCESS;
}

const char *ocl_clblast_name(CLBlastStatusCode c)
{
    if ((int)c > -1000) return ocl_error_name((cl_int)c);
    switch (c) {
    case CLBlastNotImplemented: return "CLBlastNotImplemented";
    case CLBlastInvalidLocalMemUsage: return "CLBlastInvalidLocalMemUsage";
    case CLBlastNoHalfPrecision: return "CLBlastNoHalfPrecision";
    case CLBlastInvalidLocalThreadsTotal: return "CLBlastInvalidLocalThreadsTotal";
    case CLBlastInsufficientMemoryA: return "CLBlastInsufficientMemoryA";
    case CLBlastInsufficientMemoryB: return "CLBlastInsufficientMemoryB";
    case CLBlastInsufficientMemoryC: return "CLBlastInsufficientMemoryC";
    case CLBlastDatabaseError: return "CLBlastDatabaseError";
    case CLBlastUnknownError: return "CLBlastUnknownError";
    case CLBlastUnexpectedError: return "CLBlastUnexpectedError";
    default: return "CLBlast error";
    }
}

polyattn_status ocl_pack(ocl_device *d, cl_kernel k, int unpack, cl_mem user, cl_long user_off,
                         const int64_t st[4], const int64_t dims[4], cl_mem ws, cl_long ws_off)
{
    cl_long4 s4 = ocl_strides4(st), d4 = ocl_strides4(dims);
    if (!unpack) {
        SET_ARG(k, 0, user);
        SET_ARG(k, 1, user_off);
        SET_ARG(k, 2, s4);
        SET_ARG(k, 3, d4);
        SET_ARG(k, 4, ws);
        SET_ARG(k, 5, ws_off);
    } else {
        SET_ARG(k, 0, ws);
        SET_ARG(k, 1, ws_off);
        SET_ARG(k, 2, user);
        SET_ARG(k, 3, user_off);
        SET_ARG(k, 4, s4);
        SET_ARG(k, 5, d4);
    }
    uint64_t n = (uint64_t)(dims[0] * dims[1] * dims[2] * dims[3]);
    const size_t wg = ocl_tune.grid_wg;
    size_t groups = (size_t)((n + wg - 1) / wg);
    if (groups > ocl_tune.grid_max_groups) groups = ocl_tune.grid_max_groups;
    size_t global[3] = {groups * wg, 1, 1}, local[3] = {wg, 1, 1};
    if ((int)local[0] > d->caps.max_wg) {
        local[0] = (size_t)d->caps.max_wg;
        global[0] = groups * local[0];
    }
    return ocl_enqueue(d, k, global, local, unpack ? "unpack_f32_kernel" : "pack_f32_kernel");
}

void ocl_contiguous(int64_t st[4], const int64_t dims[4])
{
    st[3] = 1;
    st[2] = dims[3];
    st[1] = dims[2] * dims[3];
    st[0] = dims[1] * dims[2] * dims[3];
}

polyattn_status ocl_unfused_forward(pa_device *dev, const pa_problem *p, void *state,
                                    const pa_io *io)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_plan_state *s = state;
    size_t es = ocl_esize(p->dtype);
    cl_long q_off, k_off, v_off, o_off;
    if (!ocl_elem_offset(&io->q, es, &q_off) || !ocl_elem_offset(&io->k, es, &k_off) ||
        !ocl_elem_offset(&io->v, es, &v_off) || !ocl_elem_offset(&io->o, es, &o_off))
        return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl: a tensor's byte offset is not a multiple of its element size");
    if (s->ws_total && !io->workspace.mem)
        return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl unfused: the plan needs a workspace and none was given");
    cl_mem ws = (cl_mem)io->workspace.mem;
    cl_long ws0 = io->workspace.mem ? (cl_long)(io->workspace.offset / 4) : 0;
    polyattn_status st = POLYATTN_STATUS_SUCCESS;

    /* Matrices the GEMMs read: the caller's tensors or packed f32 copies. */
    cl_mem qm = (cl_mem)io->q.mem, km = (cl_mem)io->k.mem, vm = (cl_mem)io->v.mem;
    cl_mem om = (cl_mem)io->o.mem;
    int64_t q_st[4], k_st[4], v_st[4], o_st[4];
    memcpy(q_st, p->q_stride, sizeof q_st);
    memcpy(k_st, p->k_stride, sizeof k_st);
    memcpy(v_st, p->v_stride, sizeof v_st);
    memcpy(o_st, p->o_stride, sizeof o_st);
    int64_t qd[4] = {p->batch, p->heads_q, p->seq_q, p->head_dim};
    int64_t kd[4] = {p->batch, p->heads_kv, p->seq_kv, p->head_dim};
    int64_t vd[4] = {p->batch, p->heads_kv, p->seq_kv, p->head_dim_v};
    int64_t od[4] = {p->batch, p->heads_q, p->seq_q, p->head_dim_v};
    if (s->pack_q) {
        st = ocl_pack(d, s->pack, 0, qm, q_off, p->q_stride, qd, ws, ws0 + (cl_long)(s->ws_q / 4));
        if (st) return st;
        qm = ws;
        q_off = ws0 + (cl_long)(s->ws_q / 4);
        ocl_contiguous(q_st, qd);
    }
    if (s->pack_k) {
        st = ocl_pack(d, s->pack, 0, km, k_off, p->k_stride, kd, ws, ws0 + (cl_long)(s->ws_k / 4));
        if (st) return st;
        km = ws;
        k_off = ws0 + (cl_long)(s->ws_k / 4);
        ocl_contiguous(k_st, kd);
    }
    if (s->pack_v) {
        st = ocl_pack(d, s->pack, 0, vm, v_off, p->v_stride, vd, ws, ws0 + (cl_long)(s->ws_v / 4));
        if (st) return st;
        vm = ws;
        v_off = ws0 + (cl_long)(s->ws_v / 4);
        ocl_contiguous(v_st, vd);
    }
    cl_mem gemm_o = om;
    cl_long gemm_o_off = o_off;
    if (s->unpack_o) {
        gemm_o = ws;
        gemm_o_off = ws0 + (cl_long)(s->ws_o / 4);
        ocl_contiguous(o_st, od);
    }
    cl_mem sm = p->want_probs ? (cl_mem)io->probs.mem : ws;
    cl_long s_off = p->want_probs ? (cl_long)(io->probs.offset / 4) : ws0 + (cl_long)(s->ws_s / 4);

    size_t nb = (size_t)(p->batch * p->heads_q), group = (size_t)(p->heads_q / p->heads_kv);
    size_t *a1 = s->offs, *b1 = a1 + nb, *c1 = b1 + nb, *a2 = c1 + nb, *b2 = a2 + nb, *c2 = b2 + nb;
    size_t sq = (size_t)p->seq_q, skv = (size_t)p->seq_kv;
    for (size_t b = 0; b < (size_t)p->batch; b++)
        for (size_t h = 0; h < (size_t)p->heads_q; h++) {
            size_t i = b * (size_t)p->heads_q + h, hk = h / group;
            a1[i] = (size_t)q_off + b * (size_t)q_st[0] + h * (size_t)q_st[1];
            b1[i] = (size_t)k_off + b * (size_t)k_st[0] + hk * (size_t)k_st[1];
            b2[i] = (size_t)v_off + b * (size_t)v_st[0] + hk * (size_t)v_st[1];
            c2[i] = (size_t)gemm_o_off + b * (size_t)o_st[0] + h * (size_t)o_st[1];
        }
    cl_command_queue q = d->queue;
    cl_kernel k = s->kernel;
    cl_mem lse = io->lse.mem ? (cl_mem)io->lse.mem : sm;
    cl_long lse_off = io->lse.mem ? (cl_long)(io->lse.offset / 4) : 0;
    cl_int want_lse = p->want_lse && io->lse.mem, seq_q = (cl_int)p->seq_q,
           seq_kv = (cl_int)p->seq_kv, off = 0;
    cl_int causal = ocl_causal_of(p, &off);
    size_t chunk = p->want_probs ? nb : (size_t)s->chunk;
    if ((uint64_t)s_off + (uint64_t)chunk * sq * skv > OCL_CLBLAST_MAX_ELEMS)
        return pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED,
                       "opencl unfused: the scores start too far into their buffer for CLBlast's "
                       "32-bit offsets");
    for (size_t c0 = 0; c0 < nb; c0 += chunk) {
        size_t cnt = nb - c0 < chunk ? nb - c0 : chunk;
        /* Scores of this chunk from s_off on (the probabilities: at their own place). */
        for (size_t i = c0; i < c0 + cnt; i++) {
            c1[i] = (size_t)s_off + (p->want_probs ? i : i - c0) * sq * skv;
            a2[i] = c1[i];
            s->alphas[i] = p->scale;
        }
        CLBlastStatusCode cs = CLBlastSgemmBatched(
            CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, sq, skv,
            (size_t)p->head_dim, s->alphas + c0, qm, a1 + c0, (size_t)q_st[2], km, b1 + c0,
            (size_t)k_st[2], s->betas + c0, sm, c1 + c0, skv, cnt, &q, NULL);
        if (cs != CLBlastSuccess)
            return pa_fail(dev, POLYATTN_STATUS_DEVICE_ERROR,
                           "opencl unfused: CLBlastSgemmBatched "
                           "(S = scale Q K^T) failed: %s (%d)",
                           ocl_clblast_name(cs), (int)cs);
        cl_long chunk_s_off = (cl_long)c1[c0], chunk_lse_off = lse_off + (cl_long)(c0 * sq);
        SET_ARG(k, 0, sm);
        SET_ARG(k, 1, chunk_s_off);
        SET_ARG(k, 2, seq_q);
        SET_ARG(k, 3, seq_kv);
        SET_ARG(k, 4, causal);
        SET_ARG(k, 5, off);
        SET_ARG(k, 6, lse);
        SET_ARG(k, 7, chunk_lse_off);
        SET_ARG(k, 8, want_lse);
        st = ocl_var_set_args(d, k, 9, p, &io->var, sm, (cl_long)c0);
        if (st) return st;
        const size_t wg = (size_t)ocl_tune.softmax_wg;
        size_t global[3] = {cnt * sq * wg, 1, 1}, local[3] = {wg, 1, 1};
        st = ocl_enqueue(d, k, global, local, "clEnqueueNDRangeKernel(softmax_rows_kernel)");
        if (st) return st;
        for (size_t i = c0; i < c0 + cnt; i++)
            s->alphas[i] = 1.0f;
        cs = CLBlastSgemmBatched(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, sq,
                                 (size_t)p->head_dim_v, skv, s->alphas + c0, sm, a2 + c0, skv, vm,
                                 b2 + c0, (size_t)v_st[2], s->betas + c0, gemm_o, c2 + c0,
                                 (size_t)o_st[2], cnt, &q, NULL);
        if (cs != CLBlastSuccess)
            return pa_fail(dev, POLYATTN_STATUS_DEVICE_ERROR,
                           "opencl unfused: CLBlastSgemmBatched "
                           "(O = P V) failed: %s (%d)",
                           ocl_clblast_name(cs), (int)cs);
    }
    if (s->unpack_o) {
        st = ocl_pack(d, s->unpack, 1, om, o_off, p->o_stride, od, ws, gemm_o_off);
        if (st) return st;
    }
    return POLYATTN_STATUS_SUCCESS;
}

#else
polyattn_status ocl_unfused_prepare(pa_device *dev, const pa_problem *p, void **state)
{
    (void)p;
    (void)state;
    return pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED, "opencl unfused: built without CLBlast");
}

polyattn_status ocl_unfused_forward(pa_device *dev, const pa_problem *p, void *state,
                                    const pa_io *io)
{
    (void)p;
    (void)state;
    (void)io;
    return pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED, "opencl unfused: built without CLBlast");
}

#endif
