/* The fused forward on OpenCL (kernels/fused.cl): one launch, exact softmax, scores in local
 * memory when a tile's rows x all keys fit beside the staging, else in the workspace.  Its
 * backward is the flash backward (ocl_flash_bwd.c). */
#include "ocl_algos.h"

#include <stdio.h>
#include <string.h>

const char *ocl_fused_decide(const ocl_device *d, const pa_problem *p, const ocl_force *f,
                             ocl_fwd_choice *c)
{
    memset(c, 0, sizeof *c);
    const ocl_band *band = ocl_band_of(p->head_dim, p->head_dim_v);
    c->tiles = band ? ocl_band_tiles(band, p->head_dim) : (ocl_tiles){1, 1, 1, 1, 1, 1};
    if (f->has_tiles) {
        c->tiles = f->tiles;
        snprintf(c->forced, sizeof c->forced, "opencl.tiles=%dx%d:%dx%d:%d:%d", c->tiles.bm,
                 c->tiles.bn, c->tiles.rg, c->tiles.cg, c->tiles.dk, c->tiles.vn);
    }
    const uint64_t fixed = ocl_fused_fixed_local_bytes(&c->tiles, p->head_dim_v);
    const char *why = ocl_dtype_refusal(p, 0);
    if (!why) why = ocl_check_common(d, p, &c->tiles, fixed);
    if (why) return why;
    c->scores_bytes = 4 * (uint64_t)c->tiles.bm * (uint64_t)ocl_round_up(p->seq_kv, c->tiles.bn);
    c->scores_local = fixed + c->scores_bytes <= ocl_local_budget(&d->caps);
    c->local_bytes = fixed + (c->scores_local ? c->scores_bytes : 0);
    if (!c->scores_local) {
        uint64_t n_tiles = (uint64_t)ocl_round_up(p->seq_q, c->tiles.bm) / (uint64_t)c->tiles.bm;
        c->workspace = (uint64_t)p->batch * (uint64_t)p->heads_q * n_tiles * c->scores_bytes;
    }
    return NULL;
}

polyattn_status ocl_fused_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_fwd_choice c;
    ocl_bwd_choice b;
    /* No separate O(N^2) backward: the flash backward kernels recompute P from the LSE the
     * fused forward wrote, which is the same function's gradient. */
    const polyattn_status st = ocl_check_decisions(d, p, ocl_fused_decide, &c, &b, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    char *note = d->note[POLYATTN_ALGO_FUSED];
    const size_t size = sizeof d->note[POLYATTN_ALGO_FUSED];
    snprintf(note, size, "one launch, %dx%d tiles, scores in %s", c.tiles.bm, c.tiles.bn,
             c.scores_local ? "local memory" : "the workspace");
    if (p->want_backward) {
        ocl_bwd_note(p, &b, note, size);
        size_t n = strlen(note);
        snprintf(note + n, size - n, " (the flash backward)");
    }
    *why_not = note;
    return POLYATTN_STATUS_SUCCESS;
}

uint64_t ocl_fused_workspace(pa_device *dev, const pa_problem *p)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_force f;
    ocl_fwd_choice c;
    if (ocl_force_read(d, &f) || ocl_fused_decide(d, p, &f, &c)) return 0; /* check refused */
    return c.workspace;
}

polyattn_status ocl_fused_prepare(pa_device *dev, const pa_problem *p, void **state)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_force f;
    const char *why = ocl_force_read(d, &f);
    if (why) return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT, "opencl fused: %s", why);
    ocl_plan_state *s = ocl_state_new();
    if (!s) return POLYATTN_STATUS_OUT_OF_MEMORY;
    why = ocl_fused_decide(d, p, &f, &s->fwd);
    if (why) {
        ocl_release_state(dev, s);
        return pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED, "opencl fused: %s", why);
    }
    char opts[600];
    ocl_tile_options(p, &s->fwd.tiles, opts, sizeof opts);
    size_t n = strlen(opts);
    snprintf(opts + n, sizeof opts - n, " -DFUSED_SCORES_LOCAL=%d", s->fwd.scores_local);
    static const char *const srcs[] = {"common", "tile", "fused"};
    polyattn_status st =
        ocl_make_kernel_p(d, p, srcs, 3, opts, "fused_fwd_tiled_kernel", &s->kernel);
    if (st == POLYATTN_STATUS_SUCCESS && p->want_backward) {
        why = ocl_bwd_decide(d, p, &f, &s->bwd);
        st = why ? pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED, "opencl fused: %s", why)
                 : ocl_flash_bwd_prepare(d, p, s);
    }
    if (st != POLYATTN_STATUS_SUCCESS) {
        ocl_release_state(dev, s);
        return st;
    }
    pa_log(POLYATTN_LOG_DISPATCH, "opencl fused: scores in %s memory (%llu bytes per group)%s%s%s",
           s->fwd.scores_local ? "local" : "global workspace",
           (unsigned long long)s->fwd.scores_bytes, s->fwd.forced[0] ? " (POLYATTN_FORCE " : "",
           s->fwd.forced, s->fwd.forced[0] ? ")" : "");
    *state = s;
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status ocl_fused_forward(pa_device *dev, const pa_problem *p, void *state, const pa_io *io)
{
    ocl_device *d = (ocl_device *)dev;
    const ocl_plan_state *s = state;
    const ocl_fwd_choice *c = &s->fwd;
    cl_kernel k = s->kernel;
    polyattn_status st = ocl_set_qkvo_args(d, k, p, io);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    if (!c->scores_local && !io->workspace.mem)
        return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl fused: the plan needs a workspace and none was given");
    cl_mem dummy = (cl_mem)io->o.mem;
    cl_mem lse = io->lse.mem ? (cl_mem)io->lse.mem : dummy;
    cl_mem probs = io->probs.mem ? (cl_mem)io->probs.mem : dummy;
    cl_mem ws = io->workspace.mem ? (cl_mem)io->workspace.mem : dummy;
    cl_long lse_off = io->lse.mem ? (cl_long)(io->lse.offset / 4) : 0;
    cl_long probs_off = io->probs.mem ? (cl_long)(io->probs.offset / 4) : 0;
    cl_long ws_off = io->workspace.mem ? (cl_long)(io->workspace.offset / 4) : 0;
    cl_int want_lse = p->want_lse && io->lse.mem, want_probs = p->want_probs && io->probs.mem;
    cl_int seq_q = (cl_int)p->seq_q, seq_kv = (cl_int)p->seq_kv,
           group = (cl_int)(p->heads_q / p->heads_kv), off = 0;
    cl_int causal = ocl_causal_of(p, &off);
    cl_float scale_log2 = (cl_float)(p->scale * LOG2E);
    cl_int n_tiles = (cl_int)((p->seq_q + c->tiles.bm - 1) / c->tiles.bm);
    SET_ARG(k, 12, lse);
    SET_ARG(k, 13, lse_off);
    SET_ARG(k, 14, want_lse);
    SET_ARG(k, 15, probs);
    SET_ARG(k, 16, probs_off);
    SET_ARG(k, 17, want_probs);
    cl_int err = clSetKernelArg(k, 18, c->scores_local ? (size_t)c->scores_bytes : 4, NULL);
    if (err != CL_SUCCESS) return ocl_fail(d, err, "clSetKernelArg(scores local)");
    SET_ARG(k, 19, ws);
    SET_ARG(k, 20, ws_off);
    SET_ARG(k, 21, seq_q);
    SET_ARG(k, 22, seq_kv);
    SET_ARG(k, 23, group);
    SET_ARG(k, 24, scale_log2);
    SET_ARG(k, 25, causal);
    SET_ARG(k, 26, off);
    SET_ARG(k, 27, n_tiles);
    st = ocl_var_set_args(d, k, 28, p, &io->var, dummy, 0);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    size_t nt = (size_t)(c->tiles.rg * c->tiles.cg);
    size_t global[3] = {(size_t)n_tiles * nt, (size_t)p->heads_q, (size_t)p->batch};
    size_t local[3] = {nt, 1, 1};
    return ocl_enqueue(d, k, global, local, "clEnqueueNDRangeKernel(fused_fwd_tiled_kernel)");
}
