/* The flash forward on OpenCL: tiled kernels on GPUs (kernels/flash.cl, 4-wide where the
 * tile allows), a row-streaming kernel on CPU devices (kernels/flash_rows.cl). */
#include "ocl_algos.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

const char *ocl_check_common(const ocl_device *d, const pa_problem *p, const ocl_tiles *t,
                             uint64_t local_bytes)
{
    if (!ocl_band_of(p->head_dim, p->head_dim_v))
        return "head dims above 1024 are not supported by the OpenCL kernels";
    if (p->seq_q > INT_MAX / 2 || p->seq_kv > INT_MAX / 2)
        return "sequence lengths must be below 2^30 (the kernels' 32-bit index arithmetic)";
    if (t->rg * t->cg > d->caps.max_wg)
        return "the tile needs more work-items per group than the device allows";
    if (local_bytes > ocl_local_budget(&d->caps))
        return "the tile needs more local memory than the device has";
    return NULL;
}

/* CPUs run the work-items of a group one after another: barriers and local-memory staging
 * only cost there, so they get the row-streaming kernel; GPUs the tiled one. */
const char *ocl_flash_decide(const ocl_device *d, const pa_problem *p, const ocl_force *f,
                             ocl_fwd_choice *c)
{
    memset(c, 0, sizeof *c);
    const char *dtype_why = ocl_dtype_refusal(p, 1);
    if (dtype_why) return dtype_why;
    if (p->want_probs) return "flash never materializes the probabilities (use unfused or fused)";
    const ocl_band *band = ocl_band_of(p->head_dim, p->head_dim_v);
    c->tiles = band ? ocl_band_tiles(band, p->head_dim) : (ocl_tiles){1, 1, 1, 1, 1, 1};
    if (f->has_tiles) c->tiles = f->tiles;
    int rows = d->caps.is_cpu;
    if (f->flash) {
        rows = f->flash == OCL_FORCE_ROWS;
        snprintf(c->forced, sizeof c->forced, "opencl.flash=%s", rows ? "rows" : "tiled");
    }
    if (rows) {
        c->rows = ocl_rows_per_item(p->head_dim, p->head_dim_v);
        /* An explicit group size: the private arrays of all its work-items at once. */
        size_t row_bytes = (size_t)c->rows * (size_t)(p->head_dim + p->head_dim_v) * 4;
        c->rows_group = ocl_tune.rows_group;
        while (c->rows_group > 1 && (c->rows_group * row_bytes > ocl_tune.rows_group_private ||
                                     (int)c->rows_group > d->caps.max_wg))
            c->rows_group /= 2;
        c->tiles = (ocl_tiles){1, 1, 1, 1, 1, 1}; /* no local memory, any group size */
        return ocl_check_common(d, p, &c->tiles, 0);
    }
    if (f->has_tiles) {
        size_t n = strlen(c->forced);
        snprintf(c->forced + n, sizeof c->forced - n, "%sopencl.tiles=%dx%d:%dx%d:%d:%d",
                 n ? "," : "", c->tiles.bm, c->tiles.bn, c->tiles.rg, c->tiles.cg, c->tiles.dk,
                 c->tiles.vn);
    }
    c->v4 = ocl_flash_v4(&c->tiles);
    c->local_bytes = ocl_flash_local_bytes(&c->tiles, p->head_dim_v);
    return ocl_check_common(d, p, &c->tiles, c->local_bytes);
}

polyattn_status ocl_flash_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_force f;
    const char *dtype_why = ocl_dtype_refusal(p, 1); /* before the serving kernels too */
    if (dtype_why) {
        *why_not = dtype_why;
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    if (pa_problem_serving(p) || (!ocl_force_read(d, &f) && ocl_dense_decode(d, p, &f)))
        return ocl_serving_check(d, p, why_not);
    ocl_fwd_choice c;
    ocl_bwd_choice b;
    const polyattn_status st = ocl_check_decisions(d, p, ocl_flash_decide, &c, &b, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    char *note = d->note[POLYATTN_ALGO_FLASH];
    const size_t size = sizeof d->note[POLYATTN_ALGO_FLASH];
    if (c.rows)
        snprintf(note, size, "row-streaming CPU kernel, %d rows per work-item, no local memory",
                 c.rows);
    else
        snprintf(note, size,
                 "tiled%s kernel %dx%d (rows x keys), %d work-items, %llu B local memory",
                 c.v4 ? " 4-wide" : "", c.tiles.bm, c.tiles.bn, c.tiles.rg * c.tiles.cg,
                 (unsigned long long)c.local_bytes);
    if (p->want_backward) ocl_bwd_note(p, &b, note, size);
    *why_not = note;
    return POLYATTN_STATUS_SUCCESS;
}

/* Serving layouts and dense decode: the key splits' partials; the other kernels need none. */
uint64_t ocl_flash_workspace(pa_device *dev, const pa_problem *p)
{
    return ocl_serving_workspace(dev, p);
}

polyattn_status ocl_flash_prepare(pa_device *dev, const pa_problem *p, void **state)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_force f;
    const char *why = ocl_force_read(d, &f);
    if (why) return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT, "opencl flash: %s", why);
    ocl_plan_state *s = ocl_state_new();
    if (!s) return POLYATTN_STATUS_OUT_OF_MEMORY;
    if (ocl_on_serving(d, p, &f)) {
        polyattn_status sst = ocl_serving_prepare(d, p, s);
        if (sst != POLYATTN_STATUS_SUCCESS) {
            ocl_release_state(dev, s);
            return sst;
        }
        *state = s;
        return POLYATTN_STATUS_SUCCESS;
    }
    why = ocl_flash_decide(d, p, &f, &s->fwd);
    if (why) {
        ocl_release_state(dev, s);
        return pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED, "opencl flash: %s", why);
    }
    char opts[512];
    polyattn_status st;
    if (s->fwd.rows) {
        ocl_rows_options(p, s->fwd.rows, opts, sizeof opts);
        static const char *const rsrcs[] = {"common", "flash_rows"};
        st = ocl_make_kernel_p(d, p, rsrcs, 2, opts, "flash_fwd_rows_kernel", &s->kernel);
    } else {
        ocl_tile_options(p, &s->fwd.tiles, opts, sizeof opts);
        static const char *const srcs[] = {"common", "tile", "flash"};
        st = ocl_make_kernel_p(d, p, srcs, 3, opts,
                               s->fwd.v4 ? "flash_fwd_tiled_v4_kernel" : "flash_fwd_tiled_kernel",
                               &s->kernel);
    }
    pa_log(POLYATTN_LOG_DISPATCH, "opencl flash: %s kernel%s%s%s",
           s->fwd.rows ? "row-streaming (CPU)"
           : s->fwd.v4 ? "tiled, 4-wide"
                       : "tiled",
           s->fwd.forced[0] ? " (POLYATTN_FORCE " : "", s->fwd.forced, s->fwd.forced[0] ? ")" : "");
    if (st == POLYATTN_STATUS_SUCCESS && p->want_backward) {
        why = ocl_bwd_decide(d, p, &f, &s->bwd);
        st = why ? pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED, "opencl flash: %s", why)
                 : ocl_flash_bwd_prepare(d, p, s);
    }
    if (st != POLYATTN_STATUS_SUCCESS) {
        ocl_release_state(dev, s);
        return st;
    }
    *state = s;
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status ocl_flash_forward(pa_device *dev, const pa_problem *p, void *state, const pa_io *io)
{
    ocl_device *d = (ocl_device *)dev;
    const ocl_plan_state *s = state;
    if (s->on_serving) return ocl_serving_forward(d, p, s, io);
    const ocl_fwd_choice *c = &s->fwd;
    cl_kernel k = s->kernel;
    polyattn_status st = ocl_set_qkvo_args(d, k, p, io);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    cl_mem lse = io->lse.mem ? (cl_mem)io->lse.mem : (cl_mem)io->o.mem;
    cl_long lse_off = io->lse.mem ? (cl_long)(io->lse.offset / 4) : 0;
    cl_int want_lse = p->want_lse && io->lse.mem, seq_q = (cl_int)p->seq_q,
           seq_kv = (cl_int)p->seq_kv, group = (cl_int)(p->heads_q / p->heads_kv), off = 0;
    cl_int causal = ocl_causal_of(p, &off);
    cl_float scale_log2 = ocl_scale_log2(p), o_scale = ocl_o_scale(p);
    cl_int n_tiles = (cl_int)((p->seq_q + c->tiles.bm - 1) / c->tiles.bm);
    SET_ARG(k, 12, lse);
    SET_ARG(k, 13, lse_off);
    SET_ARG(k, 14, want_lse);
    SET_ARG(k, 15, seq_q);
    SET_ARG(k, 16, seq_kv);
    SET_ARG(k, 17, group);
    SET_ARG(k, 18, scale_log2);
    SET_ARG(k, 19, o_scale);
    SET_ARG(k, 20, causal);
    SET_ARG(k, 21, off);
    SET_ARG(k, 22, n_tiles);
    st = ocl_var_set_args(d, k, c->v4 ? 24 : 23, p, &io->var, (cl_mem)io->o.mem, 0);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    if (c->rows) {
        /* The kernel returns early for the rows that pad the last group. */
        size_t items = (size_t)((p->seq_q + c->rows - 1) / c->rows);
        size_t global[3] = {(items + c->rows_group - 1) / c->rows_group * c->rows_group,
                            (size_t)p->heads_q, (size_t)p->batch};
        size_t local[3] = {c->rows_group, 1, 1};
        return ocl_enqueue(d, k, global, local, "clEnqueueNDRangeKernel(flash_fwd_rows_kernel)");
    }
    if (c->v4) {
        /* 16-byte global reads where a tensor has unit element stride and every other
         * stride and the offset are multiples of 4 floats (cl_mem bases are 16-aligned). */
        const int64_t *sts[3] = {p->q_stride, p->k_stride, p->v_stride};
        const uint64_t offs[3] = {io->q.offset / 4, io->k.offset / 4, io->v.offset / 4};
        const int64_t cols[3] = {p->head_dim, p->head_dim, p->head_dim_v};
        cl_int vec = 0;
        for (int i = 0; i < 3; i++) {
            const int64_t *t = sts[i];
            if (p->dtype == POLYATTN_DTYPE_F32 && t[3] == 1 && t[0] % 4 == 0 && t[1] % 4 == 0 &&
                t[2] % 4 == 0 && offs[i] % 4 == 0 && cols[i] % 4 == 0)
                vec |= 1 << i;
        }
        SET_ARG(k, 23, vec);
    }
    size_t nt = (size_t)(c->tiles.rg * c->tiles.cg);
    size_t global[3] = {(size_t)n_tiles * nt, (size_t)p->heads_q, (size_t)p->batch};
    size_t local[3] = {nt, 1, 1};
    return ocl_enqueue(d, k, global, local, "clEnqueueNDRangeKernel(flash_fwd_tiled_kernel)");
}

polyattn_status ocl_flash_backward_any(pa_device *dev, const pa_problem *p, void *state,
                                       const pa_backward_io *io)
{
    if (pa_problem_serving(p))
        return ocl_serving_backward((ocl_device *)dev, p, (const ocl_plan_state *)state, io);
    return ocl_flash_backward(dev, p, state, io);
}
