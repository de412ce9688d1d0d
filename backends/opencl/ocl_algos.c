/* The three algorithms on OpenCL: flash and fused (own kernels), unfused (CLBlast GEMMs
 * around a mask + softmax kernel). */
#include "ocl_internal.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef POLYATTN_HAVE_CLBLAST
#include <clblast_c.h>
#endif

#define LOG2E 1.4426950408889634

/* ---- tiles --------------------------------------------------------------- */

typedef struct ocl_tiles {
    int bm, bn, rg, cg, dk, vn;
} ocl_tiles;

typedef struct ocl_bwd_tiles {
    int r, c, rg, cg, dk, vn;
} ocl_bwd_tiles;

/* Tiles per head dim: each work-item keeps TM x ceil(dv/CG) <= 64 output accumulators, so
 * the big head dims (512..1024) use fewer rows and more column groups. */
static void choose_tiles(const ocl_caps *c, int64_t d, int64_t dv, ocl_tiles *t)
{
    int64_t m = d > dv ? d : dv;
    if (m <= 64) *t = (ocl_tiles){64, 64, 16, 8, d >= 32 ? 32 : 16, 32};
    else if (m <= 128) *t = (ocl_tiles){64, 64, 16, 8, 32, 32};
    else if (m <= 256) *t = (ocl_tiles){32, 64, 8, 16, 32, 16};
    else if (m <= 512) *t = (ocl_tiles){16, 128, 4, 32, 32, 8};
    else *t = (ocl_tiles){16, 256, 4, 64, 16, 4};
    (void)c;
    /* Tuning hook: POLYATTN_OCL_TILES=bm,bn,rg,cg,dk,vn. */
    const char *env = getenv("POLYATTN_OCL_TILES");
    ocl_tiles e;
    if (env && sscanf(env, "%d,%d,%d,%d,%d,%d", &e.bm, &e.bn, &e.rg, &e.cg, &e.dk, &e.vn) == 6 &&
        e.rg > 0 && e.cg > 0 && e.bm % e.rg == 0 && e.bn % e.cg == 0 && e.bn % e.vn == 0 &&
        e.dk > 0)
        *t = e;
}

static uint64_t stage_floats(const ocl_tiles *t, int64_t dv)
{
    uint64_t qk = (uint64_t)t->dk * (uint64_t)(t->bm + 1) + (uint64_t)t->dk * (uint64_t)(t->bn + 1);
    uint64_t vv = (uint64_t)t->vn * (uint64_t)dv;
    return qk > vv ? qk : vv;
}

/* The 4-wide flash kernel needs four rows per work-item and score columns in fours. */
static int is_pow2(int x) { return x > 0 && (x & (x - 1)) == 0; }

static int flash_v4(const ocl_tiles *t)
{
    return t->bm / t->rg == 4 && t->bm % t->rg == 0 && (t->bn / t->cg) % 4 == 0 &&
           t->dk % 4 == 0 && t->vn > 0 && is_pow2(t->bm / 4) && is_pow2(t->bn / 4);
}

/* 16-byte global reads are safe when the tensor has unit element stride and every other
 * stride and the offset are multiples of 4 floats (cl_mem bases are at least 16-aligned). */
static int vec4_ok(const pa_problem *p, const int64_t st[4], cl_long off, int64_t cols)
{
    return p->dtype == POLYATTN_DTYPE_F32 && st[3] == 1 && st[0] % 4 == 0 && st[1] % 4 == 0 &&
           st[2] % 4 == 0 && off % 4 == 0 && cols % 4 == 0;
}

static uint64_t flash_local_bytes(const ocl_tiles *t, int64_t dv)
{
    if (flash_v4(t)) {
        uint64_t tdv4 = (uint64_t)((dv + 4 * t->cg - 1) / (4 * t->cg)), dvp = tdv4 * 4 * (uint64_t)t->cg;
        uint64_t qk = (uint64_t)t->dk * (uint64_t)(t->bm + t->bn), vv = (uint64_t)t->vn * dvp;
        return 4 * ((qk > vv ? qk : vv) + (uint64_t)t->bn * (uint64_t)(t->bm + 4) +
                    (uint64_t)t->bm * (uint64_t)t->cg);
    }
    return 4 * (stage_floats(t, dv) + (uint64_t)t->bm * (uint64_t)(t->bn + 1) +
                (uint64_t)t->bm * (uint64_t)t->cg);
}

static uint64_t fused_fixed_local_bytes(const ocl_tiles *t, int64_t dv)
{
    return 4 * (stage_floats(t, dv) + (uint64_t)t->bm * (uint64_t)t->cg);
}

/* Local memory a kernel may use: drivers keep some for themselves (NVIDIA reports 48 KiB
 * but refuses a launch using all of it: CL_OUT_OF_RESOURCES). */
static uint64_t local_budget(const ocl_caps *c)
{
    return c->local_mem > 8192 ? c->local_mem - 1024 : c->local_mem;
}

static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

static const char *check_common(ocl_device *d, const pa_problem *p, const ocl_tiles *t,
                                uint64_t local_bytes)
{
    if (p->head_dim > 1024 || p->head_dim_v > 1024)
        return "head dims above 1024 are not supported by the OpenCL kernels";
    if (p->seq_q > INT_MAX / 2 || p->seq_kv > INT_MAX / 2)
        return "sequence lengths must be below 2^30 (the kernels' 32-bit index arithmetic)";
    if (t->rg * t->cg > d->caps.max_wg)
        return "the tile needs more work-items per group than the device allows";
    if (local_bytes > local_budget(&d->caps))
        return "the tile needs more local memory than the device has";
    return NULL;
}

/* ---- tiled flash backward: tile choice (kernels/flash_bwd.cl) --------------------
 * A work-group of rg x cg work-items owns r output rows (keys for dK/dV, queries for dQ)
 * and streams the other side c rows at a time; operands staged dk columns (Q K^T) or vn
 * rows (P V-like products) at a time.  Each work-item keeps (r/rg) x ceil(dim/cg) gradient
 * accumulators per output (<= 32 each) and (r/rg) x (c/cg) scores. */
static void choose_bwd_tiles(int64_t d, int64_t dv, ocl_bwd_tiles *t)
{
    int64_t m = d > dv ? d : dv;
    if (m <= 128) *t = (ocl_bwd_tiles){64, 64, 16, 16, m <= 16 ? 16 : 32, 16};
    else if (m <= 256) *t = (ocl_bwd_tiles){32, 64, 8, 32, 32, 16};
    else if (m <= 512) *t = (ocl_bwd_tiles){16, 64, 4, 64, 32, 8};
    else *t = (ocl_bwd_tiles){8, 128, 2, 128, 16, 4};
    /* Tuning hook: POLYATTN_OCL_BWD_TILES=r,c,rg,cg,dk,vn. */
    const char *env = getenv("POLYATTN_OCL_BWD_TILES");
    ocl_bwd_tiles e;
    if (env && sscanf(env, "%d,%d,%d,%d,%d,%d", &e.r, &e.c, &e.rg, &e.cg, &e.dk, &e.vn) == 6 &&
        e.rg > 0 && e.cg > 0 && e.dk > 0 && e.vn > 0 && e.r % e.rg == 0 && e.c % e.cg == 0 &&
        e.c % e.vn == 0)
        *t = e;
}

static uint64_t bwd_tiled_local_bytes(const ocl_bwd_tiles *t, int64_t d, int64_t dv)
{
    uint64_t m = (uint64_t)(d > dv ? d : dv);
    uint64_t nt = (uint64_t)t->dk * (uint64_t)(t->r + 1 + t->c + 1), acc = (uint64_t)t->vn * m;
    return 4 * ((nt > acc ? nt : acc) + (uint64_t)t->r * (uint64_t)(t->c + 1));
}

/* Which flash backward runs: the tiled kernels on GPUs, the row-streaming ones on CPU
 * devices (barriers and local staging only cost there).  POLYATTN_OCL_BWD=tiled|rows
 * overrides (so PoCL can test the tiled kernels).  Returns 1 for tiled, 0 for rows, -1
 * when tiled was asked for and the device cannot take its tile (*why says why).  A GPU
 * whose local memory or group size is too small for the tile falls back to the rows. */
static int bwd_variant(const ocl_device *d, const pa_problem *p, ocl_bwd_tiles *t,
                       const char **why)
{
    const char *env = getenv("POLYATTN_OCL_BWD");
    int forced = env && strcmp(env, "tiled") == 0;
    int want = forced || (!d->caps.is_cpu && !(env && strcmp(env, "rows") == 0));
    choose_bwd_tiles(p->head_dim, p->head_dim_v, t);
    *why = NULL;
    if (!want) return 0;
    if (t->rg * t->cg > d->caps.max_wg)
        *why = "the tiled flash backward needs more work-items per group than the device allows";
    else if (bwd_tiled_local_bytes(t, p->head_dim, p->head_dim_v) > local_budget(&d->caps))
        *why = "the tiled flash backward needs more local memory than the device has";
    if (*why) return forced ? -1 : 0;
    return 1;
}

static int causal_of(const pa_problem *p, int *offset)
{
    *offset = p->mask == POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT ? (int)(p->seq_kv - p->seq_q) : 0;
    return p->mask != POLYATTN_MASK_NONE;
}

static size_t esize(polyattn_dtype t) { return t == POLYATTN_DTYPE_F32 ? 4 : 2; }

static void tile_options(const pa_problem *p, const ocl_tiles *t, char *buf, size_t size)
{
    snprintf(buf, size,
             "-DPA_DTYPE=%d -DHEAD_DIM=%lld -DHEAD_DIM_V=%lld -DBM=%d -DBN=%d -DRG=%d -DCG=%d "
             "-DDK=%d -DVN=%d",
             (int)p->dtype, (long long)p->head_dim, (long long)p->head_dim_v, t->bm, t->bn, t->rg,
             t->cg, t->dk, t->vn);
}

/* Kernel-argument helpers: each failure names the argument index. */
#define SET_ARG(k, i, v)                                                                      \
    do {                                                                                      \
        cl_int e_ = clSetKernelArg((k), (cl_uint)(i), sizeof(v), &(v));                       \
        if (e_ != CL_SUCCESS) return ocl_fail(d, e_, "clSetKernelArg " #v);                 \
    } while (0)

static cl_long4 strides4(const int64_t s[4])
{
    cl_long4 r;
    for (int i = 0; i < 4; i++) r.s[i] = s[i];
    return r;
}

/* Element offset of a tensor reference; byte offsets must be element-aligned. */
static int elem_offset(const pa_tensor_ref *r, size_t es, cl_long *out)
{
    if (r->offset % es != 0) return 0;
    *out = (cl_long)(r->offset / es);
    return 1;
}

typedef struct ocl_kernel_state {
    cl_kernel kernel, pack, unpack;
    ocl_tiles tiles;
    int rows; /* flash: rows per work-item of the CPU kernel, 0 for the tiled one */
    int scores_local;
    uint64_t local_scores_bytes;
    /* unfused */
    int pack_q, pack_k, pack_v, unpack_o;
    uint64_t ws_s, ws_q, ws_k, ws_v, ws_o, ws_total; /* workspace byte offsets */
    uint64_t chunk; /* (batch, head) matrices per pass of the unfused path */
    size_t *offs; /* 6 arrays of batch*heads_q element offsets: A1 B1 C1 A2 B2 C2 */
    float *alphas, *betas;
    /* backward (plans with want_backward) */
    cl_kernel bwd_delta, bwd_grad, bwd_pack, bwd_unpack, bwd_dkdv, bwd_dq;
    int bp_q, bp_k, bp_v, bp_do, bu_dq, bu_dk, bu_dv; /* unfused: packed inputs, staged outputs */
    uint64_t bws_q, bws_k, bws_v, bws_do, bws_dq, bws_dk, bws_dv, bws_delta, bws_p, bws_ds,
        bws_total;      /* backward workspace byte offsets */
    uint64_t bchunk;    /* unfused: (batch, kv head) groups per pass */
    int bwd_tiled;      /* flash/fused: the tiled GPU backward (else the row kernels) */
    ocl_bwd_tiles bt;
    size_t *boffs;      /* 7 arrays per (batch, head) matrix, 6 per (batch, kv head) group */
    float *bscale, *bone;
} ocl_kernel_state;

static polyattn_status make_kernel(ocl_device *d, const char *const *srcs, int n,
                                   const char *opts, const char *name, cl_kernel *out)
{
    cl_program prog = NULL;
    polyattn_status st = ocl_get_program(d, srcs, n, opts, &prog);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    cl_int err = CL_SUCCESS;
    *out = clCreateKernel(prog, name, &err);
    if (err != CL_SUCCESS) return ocl_fail(d, err, name);
    return POLYATTN_STATUS_SUCCESS;
}

static void release_state(pa_device *dev, void *state)
{
    (void)dev;
    ocl_kernel_state *s = state;
    if (!s) return;
    if (s->kernel) clReleaseKernel(s->kernel);
    if (s->pack) clReleaseKernel(s->pack);
    if (s->unpack) clReleaseKernel(s->unpack);
    cl_kernel bk[6] = {s->bwd_delta, s->bwd_grad, s->bwd_pack, s->bwd_unpack, s->bwd_dkdv,
                       s->bwd_dq};
    for (int i = 0; i < 6; i++)
        if (bk[i]) clReleaseKernel(bk[i]);
    free(s->boffs);
    free(s->bscale);
    free(s->bone);
    free(s->offs);
    free(s->alphas);
    free(s->betas);
    free(s);
}

static int one_launch(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    (void)p;
    return 1;
}

static polyattn_status enqueue(ocl_device *d, cl_kernel k, const size_t *global,
                               const size_t *local, const char *what)
{
    cl_int err = clEnqueueNDRangeKernel(d->queue, k, 3, NULL, global, local, 0, NULL, NULL);
    return err == CL_SUCCESS ? POLYATTN_STATUS_SUCCESS : ocl_fail(d, err, what);
}

/* Sets the q/k/v/o arguments (0..11) shared by the flash and fused kernels. */
static polyattn_status set_qkvo_args(ocl_device *d, cl_kernel k, const pa_problem *p,
                                     const pa_io *io)
{
    size_t es = esize(p->dtype);
    cl_long off[4];
    const pa_tensor_ref *r[4] = {&io->q, &io->k, &io->v, &io->o};
    const int64_t *st[4] = {p->q_stride, p->k_stride, p->v_stride, p->o_stride};
    for (int i = 0; i < 4; i++) {
        if (!elem_offset(r[i], es, &off[i]))
            return pa_fail(&d->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                           "opencl: a tensor's byte offset %llu is not a multiple of its "
                           "element size",
                           (unsigned long long)r[i]->offset);
        cl_mem m = (cl_mem)r[i]->mem;
        cl_long4 s4 = strides4(st[i]);
        SET_ARG(k, 3 * i, m);
        SET_ARG(k, 3 * i + 1, off[i]);
        SET_ARG(k, 3 * i + 2, s4);
    }
    return POLYATTN_STATUS_SUCCESS;
}

/* A grid-stride 1-D launch over n items: at most 65536 groups of up to 256. */
static polyattn_status enqueue_1d(ocl_device *d, cl_kernel k, uint64_t n, const char *what)
{
    size_t wg = d->caps.max_wg < 256 ? (size_t)d->caps.max_wg : 256;
    size_t groups = (size_t)((n + wg - 1) / wg);
    if (groups > 65536) groups = 65536;
    if (groups == 0) groups = 1;
    size_t global[3] = {groups * wg, 1, 1}, local[3] = {wg, 1, 1};
    return enqueue(d, k, global, local, what);
}

/* Byte offsets of a backward call's tensors as element offsets (f32 for the LSE). */
static polyattn_status bwd_offsets(ocl_device *d, const pa_problem *p, const pa_backward_io *io,
                                   cl_long off[9])
{
    size_t es = esize(p->dtype);
    const pa_tensor_ref *r[9] = {&io->q, &io->k, &io->v, &io->o, &io->d_o,
                                 &io->dq, &io->dk, &io->dv, &io->lse};
    for (int i = 0; i < 9; i++)
        if (!elem_offset(r[i], i == 8 ? 4 : es, &off[i]))
            return pa_fail(&d->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                           "opencl backward: a tensor's byte offset %llu is not a multiple of "
                           "its element size",
                           (unsigned long long)r[i]->offset);
    if (io->workspace.mem && io->workspace.offset % 4 != 0)
        return pa_fail(&d->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl backward: the workspace offset is not a multiple of 4 bytes");
    return POLYATTN_STATUS_SUCCESS;
}

/* D_i = rowsum(dO * O) into ws[delta_off ..] (one float per query row). */
static polyattn_status bwd_delta(ocl_device *d, cl_kernel k, const pa_problem *p,
                                 const pa_backward_io *io, const cl_long off[9], cl_mem ws,
                                 cl_long delta_off)
{
    cl_mem om = (cl_mem)io->o.mem, dom = (cl_mem)io->d_o.mem;
    cl_long4 st = strides4(p->o_stride);
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
    return enqueue_1d(d, k, (uint64_t)rows, "clEnqueueNDRangeKernel(bwd_delta_kernel)");
}

/* ---- flash --------------------------------------------------------------- */

static int bwd_rows(const pa_problem *p);


/* CPUs run work-items of a group one after another: barriers and local-memory staging
 * only cost there, so they get the row-streaming kernel (kernels/flash_rows.cl).
 * POLYATTN_OCL_FLASH=tiled|rows overrides (tests and tuning). */
static int flash_rows_variant(const ocl_caps *c, int64_t head_dim, int64_t head_dim_v, int *rows)
{
    const char *env = getenv("POLYATTN_OCL_FLASH");
    int use = c->is_cpu;
    if (env && strcmp(env, "tiled") == 0) use = 0;
    if (env && strcmp(env, "rows") == 0) use = 1;
    *rows = head_dim + head_dim_v <= 512 ? 4 : (head_dim + head_dim_v <= 1024 ? 2 : 1);
    return use;
}
#define FLASH_ROWS_KB 16

/* Appends how the flash backward (also the fused algorithm's) runs to an eligible note;
 * returns a reason when it cannot run. */
static const char *flash_bwd_note(const ocl_device *d, const pa_problem *p, char *note,
                                  size_t size)
{
    ocl_bwd_tiles t;
    const char *why = NULL;
    int tiled = bwd_variant(d, p, &t, &why);
    if (tiled < 0) return why;
    size_t n = strlen(note);
    if (tiled)
        snprintf(note + n, size - n,
                 "; backward: tiled dK/dV (%d keys) and dQ (%d queries) kernels, %d work-items, "
                 "%llu B local memory, no atomics",
                 t.r, t.r, t.rg * t.cg,
                 (unsigned long long)bwd_tiled_local_bytes(&t, p->head_dim, p->head_dim_v));
    else
        snprintf(note + n, size - n,
                 "; backward: row-streaming dK/dV and dQ kernels%s, %d rows per work-item, "
                 "no atomics", why ? " (the tiled tile does not fit)" : "", bwd_rows(p));
    return NULL;
}

static polyattn_status flash_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
    ocl_device *d = (ocl_device *)dev;
    if (p->want_probs) {
        *why_not = "flash never materializes the probabilities (use unfused or fused)";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    ocl_tiles t;
    int rows = 0;
    choose_tiles(&d->caps, p->head_dim, p->head_dim_v, &t);
    uint64_t local_bytes = flash_local_bytes(&t, p->head_dim_v);
    int use_rows = flash_rows_variant(&d->caps, p->head_dim, p->head_dim_v, &rows);
    int v4 = flash_v4(&t);
    if (use_rows) {
        t = (ocl_tiles){1, 1, 1, 1, 1, 1}; /* no local memory, any group size */
        local_bytes = 0;
    }
    const char *why = check_common(d, p, &t, local_bytes);
    if (why) {
        *why_not = why;
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    if (use_rows)
        snprintf(d->note[3], sizeof d->note[3],
                 "row-streaming CPU kernel, %d rows per work-item, no local memory", rows);
    else
        snprintf(d->note[3], sizeof d->note[3],
                 "tiled%s kernel %dx%d (rows x keys), %d work-items, %llu B local memory",
                 v4 ? " 4-wide" : "", t.bm, t.bn, t.rg * t.cg, (unsigned long long)local_bytes);
    if (p->want_backward) {
        why = flash_bwd_note(d, p, d->note[3], sizeof d->note[3]);
        if (why) {
            *why_not = why;
            return POLYATTN_STATUS_UNSUPPORTED;
        }
    }
    *why_not = d->note[3];
    return POLYATTN_STATUS_SUCCESS;
}

static uint64_t no_workspace(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    (void)p;
    return 0;
}

/* The flash backward kernels (flash and fused plans with want_backward): D, then dK/dV and
 * dQ, tiled (GPUs) or row-streaming (CPUs). */
static polyattn_status flash_bwd_prepare(ocl_device *d, const pa_problem *p, ocl_kernel_state *s)
{
    const char *why = NULL;
    int tiled = bwd_variant(d, p, &s->bt, &why);
    if (tiled < 0) return pa_fail(&d->base, POLYATTN_STATUS_UNSUPPORTED, "opencl: %s", why);
    s->bwd_tiled = tiled;
    char bopts[320];
    polyattn_status st;
    if (tiled) {
        const ocl_bwd_tiles *t = &s->bt;
        snprintf(bopts, sizeof bopts,
                 "-DPA_DTYPE=%d -DHEAD_DIM=%lld -DHEAD_DIM_V=%lld -DPA_BWD_TILED -DBT_R=%d "
                 "-DBT_C=%d -DBT_RG=%d -DBT_CG=%d -DBT_DK=%d -DBT_VN=%d",
                 (int)p->dtype, (long long)p->head_dim, (long long)p->head_dim_v, t->r, t->c,
                 t->rg, t->cg, t->dk, t->vn);
        static const char *const tsrcs[] = {"common", "backward", "flash_bwd"};
        st = make_kernel(d, tsrcs, 3, bopts, "bwd_delta_kernel", &s->bwd_delta);
        if (st == POLYATTN_STATUS_SUCCESS)
            st = make_kernel(d, tsrcs, 3, bopts, "flash_bwd_dkdv_tiled_kernel", &s->bwd_dkdv);
        if (st == POLYATTN_STATUS_SUCCESS)
            st = make_kernel(d, tsrcs, 3, bopts, "flash_bwd_dq_tiled_kernel", &s->bwd_dq);
    } else {
        snprintf(bopts, sizeof bopts, "-DPA_DTYPE=%d -DHEAD_DIM=%lld -DHEAD_DIM_V=%lld -DBR=%d",
                 (int)p->dtype, (long long)p->head_dim, (long long)p->head_dim_v, bwd_rows(p));
        static const char *const bsrcs[] = {"common", "backward"};
        st = make_kernel(d, bsrcs, 2, bopts, "bwd_delta_kernel", &s->bwd_delta);
        if (st == POLYATTN_STATUS_SUCCESS)
            st = make_kernel(d, bsrcs, 2, bopts, "flash_bwd_dkdv_kernel", &s->bwd_dkdv);
        if (st == POLYATTN_STATUS_SUCCESS)
            st = make_kernel(d, bsrcs, 2, bopts, "flash_bwd_dq_kernel", &s->bwd_dq);
    }
    pa_log(POLYATTN_LOG_DISPATCH, "opencl flash backward: %s kernels",
           tiled ? "tiled (GPU)" : "row-streaming (CPU)");
    return st;
}

static polyattn_status flash_prepare(pa_device *dev, const pa_problem *p, void **state)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_kernel_state *s = calloc(1, sizeof *s);
    if (!s) return POLYATTN_STATUS_OUT_OF_MEMORY;
    choose_tiles(&d->caps, p->head_dim, p->head_dim_v, &s->tiles);
    char opts[512];
    polyattn_status st;
    if (flash_rows_variant(&d->caps, p->head_dim, p->head_dim_v, &s->rows)) {
        snprintf(opts, sizeof opts, "-DPA_DTYPE=%d -DHEAD_DIM=%lld -DHEAD_DIM_V=%lld -DROWS=%d -DKB=%d",
                 (int)p->dtype, (long long)p->head_dim, (long long)p->head_dim_v, s->rows,
                 FLASH_ROWS_KB);
        static const char *const rsrcs[] = {"common", "flash_rows"};
        st = make_kernel(d, rsrcs, 2, opts, "flash_fwd_rows_kernel", &s->kernel);
    } else {
        s->rows = 0;
        tile_options(p, &s->tiles, opts, sizeof opts);
        static const char *const srcs[] = {"common", "tile", "flash"};
        st = make_kernel(d, srcs, 3, opts,
                         flash_v4(&s->tiles) ? "flash_fwd_tiled_v4_kernel" : "flash_fwd_tiled_kernel",
                         &s->kernel);
    }
    pa_log(POLYATTN_LOG_DISPATCH, "opencl flash: %s kernel",
           s->rows ? "row-streaming (CPU)" : flash_v4(&s->tiles) ? "tiled, 4-wide" : "tiled");
    if (st == POLYATTN_STATUS_SUCCESS && p->want_backward) st = flash_bwd_prepare(d, p, s);
    if (st != POLYATTN_STATUS_SUCCESS) {
        release_state(dev, s);
        return st;
    }
    *state = s;
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status flash_forward(pa_device *dev, const pa_problem *p, void *state,
                                     const pa_io *io)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_kernel_state *s = state;
    cl_kernel k = s->kernel;
    polyattn_status st = set_qkvo_args(d, k, p, io);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    cl_mem lse = io->lse.mem ? (cl_mem)io->lse.mem : (cl_mem)io->o.mem;
    cl_long lse_off = io->lse.mem ? (cl_long)(io->lse.offset / 4) : 0;
    cl_int want_lse = p->want_lse && io->lse.mem, seq_q = (cl_int)p->seq_q,
           seq_kv = (cl_int)p->seq_kv, group = (cl_int)(p->heads_q / p->heads_kv), off = 0;
    cl_int causal = causal_of(p, &off);
    cl_float scale_log2 = (cl_float)(p->scale * LOG2E);
    cl_int n_tiles = (cl_int)((p->seq_q + s->tiles.bm - 1) / s->tiles.bm);
    SET_ARG(k, 12, lse);
    SET_ARG(k, 13, lse_off);
    SET_ARG(k, 14, want_lse);
    SET_ARG(k, 15, seq_q);
    SET_ARG(k, 16, seq_kv);
    SET_ARG(k, 17, group);
    SET_ARG(k, 18, scale_log2);
    SET_ARG(k, 19, causal);
    SET_ARG(k, 20, off);
    SET_ARG(k, 21, n_tiles);
    if (!s->rows && flash_v4(&s->tiles)) {
        cl_long qo = (cl_long)(io->q.offset / 4), ko = (cl_long)(io->k.offset / 4),
                vo = (cl_long)(io->v.offset / 4);
        cl_int vec = (vec4_ok(p, p->q_stride, qo, p->head_dim) ? 1 : 0) |
                     (vec4_ok(p, p->k_stride, ko, p->head_dim) ? 2 : 0) |
                     (vec4_ok(p, p->v_stride, vo, p->head_dim_v) ? 4 : 0);
        SET_ARG(k, 22, vec);
    }
    if (s->rows) {
        /* An explicit work-group size: CPU drivers keep every work-item's private arrays
         * of a work-group at once (PoCL: on its thread's stack), so the size the driver
         * picks (256 on PoCL) overflowed at head_dim 1024.  Cap the group's private
         * footprint near 256 KiB; the kernel returns early for the padded rows. */
        size_t row_bytes = (size_t)s->rows * (size_t)(p->head_dim + p->head_dim_v) * 4;
        size_t items_per_group = 64;
        while (items_per_group > 1 && items_per_group * row_bytes > (size_t)256 * 1024)
            items_per_group /= 2;
        size_t items = (size_t)((p->seq_q + s->rows - 1) / s->rows);
        size_t global[3] = {(items + items_per_group - 1) / items_per_group * items_per_group,
                            (size_t)p->heads_q, (size_t)p->batch};
        size_t local[3] = {items_per_group, 1, 1};
        return enqueue(d, k, global, local, "clEnqueueNDRangeKernel(flash_fwd_rows_kernel)");
    }
    size_t nt = (size_t)(s->tiles.rg * s->tiles.cg);
    size_t global[3] = {(size_t)n_tiles * nt, (size_t)p->heads_q, (size_t)p->batch};
    size_t local[3] = {nt, 1, 1};
    return enqueue(d, k, global, local, "clEnqueueNDRangeKernel(flash_fwd_tiled_kernel)");
}

/* ---- flash backward ------------------------------------------------------- */

/* Keys (dK/dV kernel) or queries (dQ kernel) per work-item: each row loaded from global
 * memory then serves BR of them; fewer for big head dims (private arrays). */
static int bwd_rows(const pa_problem *p)
{
    /* Test hook: POLYATTN_OCL_BWD_ROWS=n (1..8). */
    const char *env = getenv("POLYATTN_OCL_BWD_ROWS");
    if (env && atoi(env) >= 1 && atoi(env) <= 8) return atoi(env);
    int64_t m = p->head_dim + p->head_dim_v;
    return m <= 512 ? 4 : (m <= 1024 ? 2 : 1);
}

/* Workspace: D_i = rowsum(dO * O), one float per query row. */
static uint64_t flash_bwd_workspace(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    return 4 * (uint64_t)p->batch * (uint64_t)p->heads_q * (uint64_t)p->seq_q;
}

/* Work-items per group of the per-row backward kernels: CPU drivers keep every work-item's
 * private arrays of a group at once (see flash_forward), so cap the group near 256 KiB. */
static size_t bwd_row_group(const ocl_device *d, const pa_problem *p)
{
    size_t row_bytes = (size_t)((2 * bwd_rows(p) + 1) * (p->head_dim + p->head_dim_v)) * 4, n = 64;
    while (n > 1 && (n * row_bytes > (size_t)256 * 1024 || (int)n > d->caps.max_wg)) n /= 2;
    return n;
}

/* Arguments 0..15 shared by the two flash backward kernels: q, k, v, dO (with strides),
 * the LSE and D. */
static polyattn_status flash_bwd_args(ocl_device *d, cl_kernel k, const pa_problem *p,
                                      const pa_backward_io *io, const cl_long off[9], cl_mem ws,
                                      cl_long delta_off)
{
    const pa_tensor_ref *r[4] = {&io->q, &io->k, &io->v, &io->d_o};
    const int64_t *stv[4] = {p->q_stride, p->k_stride, p->v_stride, p->o_stride};
    const int oi[4] = {0, 1, 2, 4};
    for (int i = 0; i < 4; i++) {
        cl_mem m = (cl_mem)r[i]->mem;
        cl_long4 s4 = strides4(stv[i]);
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

/* D, then dK/dV (one work-item per key and kv head, summing over the GQA group's queries)
 * and dQ (one work-item per query): every gradient element has one owner, so the result is
 * deterministic without atomics (the deterministic option changes nothing here). */
static polyattn_status flash_backward(pa_device *dev, const pa_problem *p, void *state,
                                      const pa_backward_io *io)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_kernel_state *s = state;
    cl_long off[9];
    polyattn_status st = bwd_offsets(d, p, io, off);
    if (st) return st;
    uint64_t need = flash_bwd_workspace(dev, p);
    if (!io->workspace.mem || io->workspace_bytes < need)
        return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl flash backward: needs a workspace of %llu bytes",
                       (unsigned long long)need);
    cl_mem ws = (cl_mem)io->workspace.mem;
    cl_long delta0 = (cl_long)(io->workspace.offset / 4);
    st = bwd_delta(d, s->bwd_delta, p, io, off, ws, delta0);
    if (st) return st;
    cl_int heads_q = (cl_int)p->heads_q, seq_q = (cl_int)p->seq_q, seq_kv = (cl_int)p->seq_kv,
           group = (cl_int)(p->heads_q / p->heads_kv), coff = 0;
    cl_int causal = causal_of(p, &coff);
    cl_float scale = p->scale;
    size_t wg = s->bwd_tiled ? 1 : bwd_row_group(d, p);

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
    int64_t br = bwd_rows(p);
    size_t g1[3] = {(size_t)round_up((p->seq_kv + br - 1) / br, (int64_t)wg), (size_t)p->heads_kv,
                    (size_t)p->batch};
    size_t l1[3] = {wg, 1, 1};
    if (s->bwd_tiled) {
        /* one work-group per bt.r keys (dK/dV) or queries (dQ) */
        wg = (size_t)(s->bt.rg * s->bt.cg);
        g1[0] = (size_t)((p->seq_kv + s->bt.r - 1) / s->bt.r) * wg;
        l1[0] = wg;
    }
    st = enqueue(d, k, g1, l1, "clEnqueueNDRangeKernel(flash_bwd_dkdv_kernel)");
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
    size_t g2[3] = {(size_t)round_up((p->seq_q + br - 1) / br, (int64_t)wg), (size_t)p->heads_q,
                    (size_t)p->batch};
    if (s->bwd_tiled) g2[0] = (size_t)((p->seq_q + s->bt.r - 1) / s->bt.r) * wg;
    return enqueue(d, k, g2, l1, "clEnqueueNDRangeKernel(flash_bwd_dq_kernel)");
}

/* ---- fused --------------------------------------------------------------- */

/* Scores stay in local memory when the tile's rows x all keys fit beside the staging. */
static int fused_scores_local(ocl_device *d, const pa_problem *p, const ocl_tiles *t,
                              uint64_t *bytes)
{
    uint64_t sc = 4 * (uint64_t)t->bm * (uint64_t)round_up(p->seq_kv, t->bn);
    *bytes = sc;
    return fused_fixed_local_bytes(t, p->head_dim_v) + sc <= local_budget(&d->caps);
}

static polyattn_status fused_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_tiles t;
    choose_tiles(&d->caps, p->head_dim, p->head_dim_v, &t);
    const char *why = check_common(d, p, &t, fused_fixed_local_bytes(&t, p->head_dim_v));
    if (why) {
        *why_not = why;
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    uint64_t sc = 0;
    int local = fused_scores_local(d, p, &t, &sc);
    snprintf(d->note[2], sizeof d->note[2], "one launch, %dx%d tiles, scores in %s", t.bm, t.bn,
             local ? "local memory" : "the workspace");
    if (p->want_backward) {
        /* No separate O(N^2) backward: the flash backward kernels recompute P from the LSE
         * the fused forward wrote, which is the same function's gradient. */
        why = flash_bwd_note(d, p, d->note[2], sizeof d->note[2]);
        if (why) {
            *why_not = why;
            return POLYATTN_STATUS_UNSUPPORTED;
        }
        size_t n = strlen(d->note[2]);
        snprintf(d->note[2] + n, sizeof d->note[2] - n, " (the flash backward)");
    }
    *why_not = d->note[2];
    return POLYATTN_STATUS_SUCCESS;
}

static uint64_t fused_workspace(pa_device *dev, const pa_problem *p)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_tiles t;
    uint64_t local_bytes;
    choose_tiles(&d->caps, p->head_dim, p->head_dim_v, &t);
    if (fused_scores_local(d, p, &t, &local_bytes)) return 0;
    uint64_t n_tiles = (uint64_t)round_up(p->seq_q, t.bm) / (uint64_t)t.bm;
    return (uint64_t)p->batch * (uint64_t)p->heads_q * n_tiles * local_bytes;
}

static polyattn_status fused_prepare(pa_device *dev, const pa_problem *p, void **state)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_kernel_state *s = calloc(1, sizeof *s);
    if (!s) return POLYATTN_STATUS_OUT_OF_MEMORY;
    choose_tiles(&d->caps, p->head_dim, p->head_dim_v, &s->tiles);
    s->scores_local = fused_scores_local(d, p, &s->tiles, &s->local_scores_bytes);
    char opts[600];
    tile_options(p, &s->tiles, opts, sizeof opts);
    size_t n = strlen(opts);
    snprintf(opts + n, sizeof opts - n, " -DFUSED_SCORES_LOCAL=%d", s->scores_local);
    static const char *const srcs[] = {"common", "tile", "fused"};
    polyattn_status st = make_kernel(d, srcs, 3, opts, "fused_fwd_tiled_kernel", &s->kernel);
    if (st == POLYATTN_STATUS_SUCCESS && p->want_backward) st = flash_bwd_prepare(d, p, s);
    if (st != POLYATTN_STATUS_SUCCESS) {
        release_state(dev, s);
        return st;
    }
    pa_log(POLYATTN_LOG_DISPATCH, "opencl fused: scores in %s memory (%llu bytes per group)",
           s->scores_local ? "local" : "global workspace",
           (unsigned long long)s->local_scores_bytes);
    *state = s;
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status fused_forward(pa_device *dev, const pa_problem *p, void *state,
                                     const pa_io *io)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_kernel_state *s = state;
    cl_kernel k = s->kernel;
    polyattn_status st = set_qkvo_args(d, k, p, io);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    if (!s->scores_local && !io->workspace.mem)
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
    cl_int causal = causal_of(p, &off);
    cl_float scale_log2 = (cl_float)(p->scale * LOG2E);
    cl_int n_tiles = (cl_int)((p->seq_q + s->tiles.bm - 1) / s->tiles.bm);
    SET_ARG(k, 12, lse);
    SET_ARG(k, 13, lse_off);
    SET_ARG(k, 14, want_lse);
    SET_ARG(k, 15, probs);
    SET_ARG(k, 16, probs_off);
    SET_ARG(k, 17, want_probs);
    cl_int err = clSetKernelArg(k, 18, s->scores_local ? (size_t)s->local_scores_bytes : 4, NULL);
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
    size_t nt = (size_t)(s->tiles.rg * s->tiles.cg);
    size_t global[3] = {(size_t)n_tiles * nt, (size_t)p->heads_q, (size_t)p->batch};
    size_t local[3] = {nt, 1, 1};
    return enqueue(d, k, global, local, "clEnqueueNDRangeKernel(fused_fwd_tiled_kernel)");
}

/* ---- unfused: CLBlast ---------------------------------------------------- */

#define SM_WG 128

/* CLBlast's GEMMs read row-major matrices with unit element stride; anything else, and
 * every f16/bf16 tensor, goes through a contiguous f32 copy in the workspace (CLBlast's
 * half GEMM would accumulate in half precision, and NVIDIA has no cl_khr_fp16). */
static int needs_pack(const pa_problem *p, const int64_t st[4], int64_t cols)
{
    return p->dtype != POLYATTN_DTYPE_F32 || st[3] != 1 || st[2] < cols || st[0] < 0 ||
           st[1] < 0 || st[2] < 0;
}

static uint64_t align256(uint64_t x) { return (x + 255) & ~(uint64_t)255; }

/* CLBlast's kernels index with 32-bit ints: every element offset a GEMM sees must stay
 * below 2^31.  The scores are therefore computed `chunk` matrices at a time in a
 * workspace region placed after the packed copies; with want_probs they go straight into
 * the caller's probabilities buffer (which must then be small enough). */
#define CLBLAST_MAX_ELEMS ((uint64_t)INT_MAX - 1024)

/* Fills the workspace layout; returns its total bytes (0 with chunk 0: unsupported). */
static uint64_t unfused_layout(const pa_problem *p, ocl_kernel_state *s)
{
    uint64_t b = (uint64_t)p->batch, hq = (uint64_t)p->heads_q, hk = (uint64_t)p->heads_kv;
    uint64_t sq = (uint64_t)p->seq_q, skv = (uint64_t)p->seq_kv, nb = b * hq;
    uint64_t dd = (uint64_t)p->head_dim, dv = (uint64_t)p->head_dim_v, at = 0;
    s->pack_q = needs_pack(p, p->q_stride, p->head_dim);
    s->pack_k = needs_pack(p, p->k_stride, p->head_dim);
    s->pack_v = needs_pack(p, p->v_stride, p->head_dim_v);
    s->unpack_o = needs_pack(p, p->o_stride, p->head_dim_v);
    s->ws_q = at;
    if (s->pack_q) at = align256(at + 4 * b * hq * sq * dd);
    s->ws_k = at;
    if (s->pack_k) at = align256(at + 4 * b * hk * skv * dd);
    s->ws_v = at;
    if (s->pack_v) at = align256(at + 4 * b * hk * skv * dv);
    s->ws_o = at;
    if (s->unpack_o) at = align256(at + 4 * b * hq * sq * dv);
    s->ws_s = at;
    uint64_t per = sq * skv, room = CLBLAST_MAX_ELEMS > at / 4 ? CLBLAST_MAX_ELEMS - at / 4 : 0;
    if (p->want_probs) {
        s->chunk = nb * per <= CLBLAST_MAX_ELEMS ? nb : 0;
    } else {
        s->chunk = per ? room / per : 0;
        if (s->chunk > nb) s->chunk = nb;
        /* Test hook: POLYATTN_OCL_UNFUSED_CHUNK=n forces passes of n matrices. */
        const char *env = getenv("POLYATTN_OCL_UNFUSED_CHUNK");
        if (env && atoi(env) > 0 && (uint64_t)atoi(env) < s->chunk) s->chunk = (uint64_t)atoi(env);
        at = align256(at + 4 * s->chunk * per);
    }
    s->ws_total = at;
    return at;
}

/* Backward layout: f32 copies of what CLBlast cannot read in place, f32 staging of the
 * gradients it cannot write in place, D (one float per query row), then the score pair
 * P and dS of `bchunk` (batch, kv head) groups.  dK and dV of a kv head are one GEMM over
 * its whole group (Q and dO of the group's heads stacked as group * seq_q rows), so GQA
 * sums need no atomics and no second pass: Q and dO are packed when their heads are not
 * stacked that way.  Returns the total bytes (bchunk 0: unsupported). */
static uint64_t unfused_bwd_layout(const pa_problem *p, ocl_kernel_state *s)
{
    uint64_t b = (uint64_t)p->batch, hq = (uint64_t)p->heads_q, hk = (uint64_t)p->heads_kv;
    uint64_t sq = (uint64_t)p->seq_q, skv = (uint64_t)p->seq_kv, group = hq / hk;
    uint64_t dd = (uint64_t)p->head_dim, dv = (uint64_t)p->head_dim_v, at = 0;
    int stack = group > 1;
    s->bp_q = needs_pack(p, p->q_stride, p->head_dim) ||
              (stack && p->q_stride[1] != p->seq_q * p->q_stride[2]);
    s->bp_k = needs_pack(p, p->k_stride, p->head_dim);
    s->bp_v = needs_pack(p, p->v_stride, p->head_dim_v);
    s->bp_do = needs_pack(p, p->o_stride, p->head_dim_v) ||
               (stack && p->o_stride[1] != p->seq_q * p->o_stride[2]);
    s->bu_dq = needs_pack(p, p->q_stride, p->head_dim);
    s->bu_dk = needs_pack(p, p->k_stride, p->head_dim);
    s->bu_dv = needs_pack(p, p->v_stride, p->head_dim_v);
    s->bws_q = at;
    if (s->bp_q) at = align256(at + 4 * b * hq * sq * dd);
    s->bws_k = at;
    if (s->bp_k) at = align256(at + 4 * b * hk * skv * dd);
    s->bws_v = at;
    if (s->bp_v) at = align256(at + 4 * b * hk * skv * dv);
    s->bws_do = at;
    if (s->bp_do) at = align256(at + 4 * b * hq * sq * dv);
    s->bws_dq = at;
    if (s->bu_dq) at = align256(at + 4 * b * hq * sq * dd);
    s->bws_dk = at;
    if (s->bu_dk) at = align256(at + 4 * b * hk * skv * dd);
    s->bws_dv = at;
    if (s->bu_dv) at = align256(at + 4 * b * hk * skv * dv);
    s->bws_delta = at;
    at = align256(at + 4 * b * hq * sq);
    uint64_t per = group * sq * skv; /* floats of one group's P (and of its dS) */
    uint64_t room = CLBLAST_MAX_ELEMS > at / 4 + 128 ? CLBLAST_MAX_ELEMS - at / 4 - 128 : 0;
    s->bchunk = per ? room / (2 * per) : 0;
    if (s->bchunk > b * hk) s->bchunk = b * hk;
    const char *env = getenv("POLYATTN_OCL_UNFUSED_CHUNK");
    if (env && atoi(env) > 0 && (uint64_t)atoi(env) < s->bchunk) s->bchunk = (uint64_t)atoi(env);
    s->bws_p = at;
    at = align256(at + 4 * s->bchunk * per);
    s->bws_ds = at;
    at = align256(at + 4 * s->bchunk * per);
    s->bws_total = at;
    return at;
}

static uint64_t unfused_bwd_workspace(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    ocl_kernel_state s;
    memset(&s, 0, sizeof s);
    return unfused_bwd_layout(p, &s);
}

static polyattn_status unfused_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
#ifndef POLYATTN_HAVE_CLBLAST
    (void)dev;
    (void)p;
    *why_not = "unfused needs CLBlast, which this build was compiled without";
    return POLYATTN_STATUS_UNSUPPORTED;
#else
    ocl_device *d = (ocl_device *)dev;
    ocl_kernel_state s;
    memset(&s, 0, sizeof s);
    uint64_t scores = 4 * (uint64_t)p->batch * (uint64_t)p->heads_q * (uint64_t)p->seq_q *
                      (uint64_t)p->seq_kv;
    if (p->seq_q > INT_MAX / 2 || p->seq_kv > INT_MAX / 2) {
        *why_not = "sequence lengths must be below 2^30 (the kernels' 32-bit index arithmetic)";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    (void)scores;
    uint64_t ws = unfused_layout(p, &s);
    if (s.chunk == 0) {
        *why_not = p->want_probs ? "CLBlast indexes with 32-bit ints: the probabilities have 2^31 "
                                   "elements or more"
                                 : "CLBlast indexes with 32-bit ints: one N x N score matrix has "
                                   "2^31 elements or more";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    int64_t dmax = p->head_dim > p->head_dim_v ? p->head_dim : p->head_dim_v;
    if ((uint64_t)(p->batch * p->heads_q * p->seq_q * dmax) > CLBLAST_MAX_ELEMS ||
        (uint64_t)(p->batch * p->heads_kv * p->seq_kv * dmax) > CLBLAST_MAX_ELEMS) {
        *why_not = "CLBlast indexes with 32-bit ints: a tensor has 2^31 elements or more";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    if (d->caps.max_alloc && ws > d->caps.max_alloc) {
        *why_not = "the workspace exceeds the device's largest allocation";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    if (SM_WG > d->caps.max_wg) {
        *why_not = "the softmax kernel needs 128 work-items per group";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    if (p->want_backward) {
        ocl_kernel_state b;
        memset(&b, 0, sizeof b);
        uint64_t bws = unfused_bwd_layout(p, &b);
        if (b.bchunk == 0) {
            *why_not = "backward: CLBlast indexes with 32-bit ints: one kv head's score "
                       "matrices (group x seq_q x seq_kv, twice) have 2^31 elements or more";
            return POLYATTN_STATUS_UNSUPPORTED;
        }
        if (d->caps.max_alloc && bws > d->caps.max_alloc) {
            *why_not = "the backward workspace exceeds the device's largest allocation";
            return POLYATTN_STATUS_UNSUPPORTED;
        }
    }
    uint64_t nb = (uint64_t)(p->batch * p->heads_q);
    snprintf(d->note[1], sizeof d->note[1], "CLBlast SGEMM batched on %s, scores in %s%s",
             s.pack_q || s.pack_k || s.pack_v || s.unpack_o
                 ? "f32 copies in the workspace (f16/bf16 storage or strides CLBlast cannot take)"
                 : "the caller's f32 tensors",
             p->want_probs ? "the probabilities buffer" : "the workspace",
             !p->want_probs && s.chunk < nb ? " (several passes: CLBlast's 32-bit indexing)" : "");
    if (p->want_backward) {
        size_t n = strlen(d->note[1]);
        snprintf(d->note[1] + n, sizeof d->note[1] - n,
                 "; backward: 5 batched GEMMs per pass, GQA summed inside the dK/dV GEMMs");
    }
    *why_not = d->note[1];
    return POLYATTN_STATUS_SUCCESS;
#endif
}

static uint64_t unfused_workspace(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    ocl_kernel_state s;
    memset(&s, 0, sizeof s);
    return unfused_layout(p, &s);
}

static int unfused_launches(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    ocl_kernel_state s;
    memset(&s, 0, sizeof s);
    unfused_layout(p, &s);
    return 3 + s.pack_q + s.pack_k + s.pack_v + s.unpack_o;
}

#ifdef POLYATTN_HAVE_CLBLAST
static polyattn_status unfused_prepare(pa_device *dev, const pa_problem *p, void **state)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_kernel_state *s = calloc(1, sizeof *s);
    if (!s) return POLYATTN_STATUS_OUT_OF_MEMORY;
    unfused_layout(p, s);
    size_t nb = (size_t)(p->batch * p->heads_q);
    s->offs = calloc(6 * nb, sizeof *s->offs);
    s->alphas = malloc(nb * sizeof *s->alphas);
    s->betas = malloc(nb * sizeof *s->betas);
    if (!s->offs || !s->alphas || !s->betas) {
        release_state(dev, s);
        return POLYATTN_STATUS_OUT_OF_MEMORY;
    }
    for (size_t i = 0; i < nb; i++) s->betas[i] = 0.0f;
    char opts[256];
    snprintf(opts, sizeof opts, "-DPA_DTYPE=%d -DSM_WG=%d", (int)p->dtype, SM_WG);
    static const char *const srcs[] = {"common", "unfused"};
    polyattn_status st = make_kernel(d, srcs, 2, opts, "softmax_rows_kernel", &s->kernel);
    if (st == POLYATTN_STATUS_SUCCESS && (s->pack_q || s->pack_k || s->pack_v))
        st = make_kernel(d, srcs, 2, opts, "pack_f32_kernel", &s->pack);
    if (st == POLYATTN_STATUS_SUCCESS && s->unpack_o)
        st = make_kernel(d, srcs, 2, opts, "unpack_f32_kernel", &s->unpack);
    if (st != POLYATTN_STATUS_SUCCESS) {
        release_state(dev, s);
        return st;
    }
    if (p->want_backward) {
        unfused_bwd_layout(p, s);
        size_t nbg = (size_t)(p->batch * p->heads_kv);
        s->boffs = calloc(7 * nb + 6 * nbg, sizeof *s->boffs);
        s->bscale = malloc(nb * sizeof *s->bscale);
        s->bone = malloc(nb * sizeof *s->bone);
        if (!s->boffs || !s->bscale || !s->bone) {
            release_state(dev, s);
            return POLYATTN_STATUS_OUT_OF_MEMORY;
        }
        for (size_t i = 0; i < nb; i++) {
            s->bscale[i] = p->scale;
            s->bone[i] = 1.0f;
        }
        static const char *const bsrcs[] = {"common", "backward"};
        st = make_kernel(d, bsrcs, 2, opts, "bwd_delta_kernel", &s->bwd_delta);
        if (st == POLYATTN_STATUS_SUCCESS)
            st = make_kernel(d, bsrcs, 2, opts, "bwd_softmax_grad_kernel", &s->bwd_grad);
        if (st == POLYATTN_STATUS_SUCCESS && (s->bp_q || s->bp_k || s->bp_v || s->bp_do))
            st = make_kernel(d, srcs, 2, opts, "pack_f32_kernel", &s->bwd_pack);
        if (st == POLYATTN_STATUS_SUCCESS && (s->bu_dq || s->bu_dk || s->bu_dv))
            st = make_kernel(d, srcs, 2, opts, "unpack_f32_kernel", &s->bwd_unpack);
        if (st != POLYATTN_STATUS_SUCCESS) {
            release_state(dev, s);
            return st;
        }
    }
    pa_log(POLYATTN_LOG_DISPATCH,
           "opencl unfused: CLBlast SGEMM (batched, %zu matrices) on %s; scores in %s",
           nb,
           s->pack_q || s->pack_k || s->pack_v || s->unpack_o
               ? "f32 copies packed in the workspace (f16/bf16 storage or non-unit strides)"
               : "the caller's f32 tensors",
           p->want_probs ? "the probabilities buffer" : "the workspace");
    *state = s;
    return POLYATTN_STATUS_SUCCESS;
}

static const char *clblast_name(CLBlastStatusCode c)
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

static polyattn_status pack(ocl_device *d, ocl_kernel_state *s, cl_kernel k, int unpack,
                            cl_mem user, cl_long user_off, const int64_t st[4],
                            const int64_t dims[4], cl_mem ws, cl_long ws_off)
{
    cl_long4 s4 = strides4(st), d4 = strides4(dims);
    (void)s;
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
    size_t groups = (size_t)((n + 255) / 256);
    if (groups > 65536) groups = 65536;
    size_t global[3] = {groups * 256, 1, 1}, local[3] = {256, 1, 1};
    if ((int)local[0] > d->caps.max_wg) {
        local[0] = (size_t)d->caps.max_wg;
        global[0] = groups * local[0];
    }
    return enqueue(d, k, global, local, unpack ? "unpack_f32_kernel" : "pack_f32_kernel");
}

static polyattn_status unfused_forward(pa_device *dev, const pa_problem *p, void *state,
                                       const pa_io *io)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_kernel_state *s = state;
    size_t es = esize(p->dtype);
    cl_long q_off, k_off, v_off, o_off;
    if (!elem_offset(&io->q, es, &q_off) || !elem_offset(&io->k, es, &k_off) ||
        !elem_offset(&io->v, es, &v_off) || !elem_offset(&io->o, es, &o_off))
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
#define CONTIG(st, dims)                                                                      \
    do {                                                                                      \
        st[3] = 1;                                                                            \
        st[2] = dims[3];                                                                      \
        st[1] = dims[2] * dims[3];                                                            \
        st[0] = dims[1] * dims[2] * dims[3];                                                  \
    } while (0)
    if (s->pack_q) {
        st = pack(d, s, s->pack, 0, qm, q_off, p->q_stride, qd, ws, ws0 + (cl_long)(s->ws_q / 4));
        if (st) return st;
        qm = ws;
        q_off = ws0 + (cl_long)(s->ws_q / 4);
        CONTIG(q_st, qd);
    }
    if (s->pack_k) {
        st = pack(d, s, s->pack, 0, km, k_off, p->k_stride, kd, ws, ws0 + (cl_long)(s->ws_k / 4));
        if (st) return st;
        km = ws;
        k_off = ws0 + (cl_long)(s->ws_k / 4);
        CONTIG(k_st, kd);
    }
    if (s->pack_v) {
        st = pack(d, s, s->pack, 0, vm, v_off, p->v_stride, vd, ws, ws0 + (cl_long)(s->ws_v / 4));
        if (st) return st;
        vm = ws;
        v_off = ws0 + (cl_long)(s->ws_v / 4);
        CONTIG(v_st, vd);
    }
    cl_mem gemm_o = om;
    cl_long gemm_o_off = o_off;
    if (s->unpack_o) {
        gemm_o = ws;
        gemm_o_off = ws0 + (cl_long)(s->ws_o / 4);
        CONTIG(o_st, od);
    }
    cl_mem sm = p->want_probs ? (cl_mem)io->probs.mem : ws;
    cl_long s_off = p->want_probs ? (cl_long)(io->probs.offset / 4) : ws0 + (cl_long)(s->ws_s / 4);

    size_t nb = (size_t)(p->batch * p->heads_q), group = (size_t)(p->heads_q / p->heads_kv);
    size_t *a1 = s->offs, *b1 = a1 + nb, *c1 = b1 + nb, *a2 = c1 + nb, *b2 = a2 + nb,
           *c2 = b2 + nb;
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
    cl_int causal = causal_of(p, &off);
    size_t chunk = p->want_probs ? nb : (size_t)s->chunk;
    if ((uint64_t)s_off + (uint64_t)chunk * sq * skv > CLBLAST_MAX_ELEMS)
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
            return pa_fail(dev, POLYATTN_STATUS_DEVICE_ERROR, "opencl unfused: CLBlastSgemmBatched "
                           "(S = scale Q K^T) failed: %s (%d)", clblast_name(cs), (int)cs);
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
        size_t global[3] = {cnt * sq * SM_WG, 1, 1}, local[3] = {SM_WG, 1, 1};
        st = enqueue(d, k, global, local, "clEnqueueNDRangeKernel(softmax_rows_kernel)");
        if (st) return st;
        for (size_t i = c0; i < c0 + cnt; i++) s->alphas[i] = 1.0f;
        cs = CLBlastSgemmBatched(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo,
                                 sq, (size_t)p->head_dim_v, skv, s->alphas + c0, sm, a2 + c0, skv,
                                 vm, b2 + c0, (size_t)v_st[2], s->betas + c0, gemm_o, c2 + c0,
                                 (size_t)o_st[2], cnt, &q, NULL);
        if (cs != CLBlastSuccess)
            return pa_fail(dev, POLYATTN_STATUS_DEVICE_ERROR, "opencl unfused: CLBlastSgemmBatched "
                           "(O = P V) failed: %s (%d)", clblast_name(cs), (int)cs);
    }
    if (s->unpack_o) {
        st = pack(d, s, s->unpack, 1, om, o_off, p->o_stride, od, ws, gemm_o_off);
        if (st) return st;
    }
    return POLYATTN_STATUS_SUCCESS;
}

#define BWD_GEMM(what, ...)                                                                   \
    do {                                                                                      \
        CLBlastStatusCode cs_ = CLBlastSgemmBatched(__VA_ARGS__);                             \
        if (cs_ != CLBlastSuccess)                                                            \
            return pa_fail(dev, POLYATTN_STATUS_DEVICE_ERROR,                                 \
                           "opencl unfused backward: CLBlastSgemmBatched (" what              \
                           ") failed: %s (%d)",                                               \
                           clblast_name(cs_), (int)cs_);                                      \
    } while (0)

/* The unfused backward: D, then per pass of whole GQA groups S = scale Q K^T and
 * dP = dO V^T (GEMMs), P and dS (one elementwise kernel), dV = P^T dO and
 * dK = scale dS^T Q (one GEMM per kv head over its group's stacked rows), dQ = scale dS K.
 * Deterministic: no atomics, fixed summation order. */
static polyattn_status unfused_backward(pa_device *dev, const pa_problem *p, void *state,
                                        const pa_backward_io *io)
{
    ocl_device *d = (ocl_device *)dev;
    ocl_kernel_state *s = state;
    cl_long off[9];
    polyattn_status st = bwd_offsets(d, p, io, off);
    if (st) return st;
    if (!io->workspace.mem || io->workspace_bytes < s->bws_total)
        return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl unfused backward: needs a workspace of %llu bytes",
                       (unsigned long long)s->bws_total);
    cl_mem ws = (cl_mem)io->workspace.mem;
    cl_long ws0 = (cl_long)(io->workspace.offset / 4);
    cl_long delta0 = ws0 + (cl_long)(s->bws_delta / 4);
    st = bwd_delta(d, s->bwd_delta, p, io, off, ws, delta0);
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
#define BWD_PACK(flag, m, o, stv, dims, region)                                               \
    if (flag) {                                                                               \
        cl_long to_ = ws0 + (cl_long)((region) / 4);                                          \
        st = pack(d, s, s->bwd_pack, 0, m, o, stv, dims, ws, to_);                            \
        if (st) return st;                                                                    \
        m = ws;                                                                               \
        o = to_;                                                                              \
        CONTIG(stv, dims);                                                                    \
    }
    BWD_PACK(s->bp_q, qm, q_off, q_st, qd, s->bws_q)
    BWD_PACK(s->bp_k, km, k_off, k_st, kd, s->bws_k)
    BWD_PACK(s->bp_v, vm, v_off, v_st, vd, s->bws_v)
    BWD_PACK(s->bp_do, dom, do_off, do_st, od, s->bws_do)
#undef BWD_PACK
    if (s->bu_dq) {
        dqm = ws;
        dq_off = ws0 + (cl_long)(s->bws_dq / 4);
        CONTIG(dq_st, qd);
    }
    if (s->bu_dk) {
        dkm = ws;
        dk_off = ws0 + (cl_long)(s->bws_dk / 4);
        CONTIG(dk_st, kd);
    }
    if (s->bu_dv) {
        dvm = ws;
        dv_off = ws0 + (cl_long)(s->bws_dv / 4);
        CONTIG(dv_st, vd);
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
    cl_int causal = causal_of(p, &coff);
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
        BWD_GEMM("S = scale Q K^T", CLBlastLayoutRowMajor, CLBlastTransposeNo,
                 CLBlastTransposeYes, sq, skv, dd, s->bscale + m0, qm, aq + m0, (size_t)q_st[2],
                 km, bk + m0, (size_t)k_st[2], s->betas + m0, ws, cp + m0, skv, mcnt, &queue,
                 NULL);
        BWD_GEMM("dP = dO V^T", CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes,
                 sq, skv, dv, s->bone + m0, dom, ado + m0, (size_t)do_st[2], vm, bv + m0,
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
        st = enqueue_1d(d, k, (uint64_t)n, "clEnqueueNDRangeKernel(bwd_softmax_grad_kernel)");
        if (st) return st;
        /* One GEMM per kv head over its group: K = group * seq_q stacked rows. */
        BWD_GEMM("dV = P^T dO", CLBlastLayoutRowMajor, CLBlastTransposeYes, CLBlastTransposeNo,
                 skv, dv, group * sq, s->bone + g0, ws, gp + g0, skv, dom, gdo + g0,
                 (size_t)do_st[2], s->betas + g0, dvm, cdv + g0, (size_t)dv_st[2], cnt, &queue,
                 NULL);
        BWD_GEMM("dK = scale dS^T Q", CLBlastLayoutRowMajor, CLBlastTransposeYes,
                 CLBlastTransposeNo, skv, dd, group * sq, s->bscale + g0, ws, gds + g0, skv, qm,
                 gq + g0, (size_t)q_st[2], s->betas + g0, dkm, cdk + g0, (size_t)dk_st[2], cnt,
                 &queue, NULL);
        BWD_GEMM("dQ = scale dS K", CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo,
                 sq, dd, skv, s->bscale + m0, ws, cds + m0, skv, km, bk + m0, (size_t)k_st[2],
                 s->betas + m0, dqm, cdq + m0, (size_t)dq_st[2], mcnt, &queue, NULL);
    }
    if (s->bu_dq) {
        st = pack(d, s, s->bwd_unpack, 1, (cl_mem)io->dq.mem, off[5], p->q_stride, qd, ws, dq_off);
        if (st) return st;
    }
    if (s->bu_dk) {
        st = pack(d, s, s->bwd_unpack, 1, (cl_mem)io->dk.mem, off[6], p->k_stride, kd, ws, dk_off);
        if (st) return st;
    }
    if (s->bu_dv) {
        st = pack(d, s, s->bwd_unpack, 1, (cl_mem)io->dv.mem, off[7], p->v_stride, vd, ws, dv_off);
        if (st) return st;
    }
    return POLYATTN_STATUS_SUCCESS;
}
#undef BWD_GEMM
#else
static polyattn_status unfused_prepare(pa_device *dev, const pa_problem *p, void **state)
{
    (void)p;
    (void)state;
    return pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED, "opencl unfused: built without CLBlast");
}

static polyattn_status unfused_forward(pa_device *dev, const pa_problem *p, void *state,
                                       const pa_io *io)
{
    (void)p;
    (void)state;
    (void)io;
    return pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED, "opencl unfused: built without CLBlast");
}

static polyattn_status unfused_backward(pa_device *dev, const pa_problem *p, void *state,
                                        const pa_backward_io *io)
{
    (void)p;
    (void)state;
    (void)io;
    return pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED, "opencl unfused: built without CLBlast");
}
#endif

const pa_algo_ops ocl_algos[OCL_N_ALGOS] = {
    {
        .algo = POLYATTN_ALGO_UNFUSED,
        .check = unfused_check,
        .workspace_size = unfused_workspace,
        .kernel_launches = unfused_launches,
        .prepare = unfused_prepare,
        .release = release_state,
        .forward = unfused_forward,
        .backward_workspace_size = unfused_bwd_workspace,
        .backward = unfused_backward,
    },
    {
        .algo = POLYATTN_ALGO_FUSED,
        .check = fused_check,
        .workspace_size = fused_workspace,
        .kernel_launches = one_launch,
        .prepare = fused_prepare,
        .release = release_state,
        .forward = fused_forward,
        /* the flash backward kernels: no N x N memory, deterministic (no atomics) */
        .backward_workspace_size = flash_bwd_workspace,
        .backward = flash_backward,
    },
    {
        .algo = POLYATTN_ALGO_FLASH,
        .check = flash_check,
        .workspace_size = no_workspace,
        .kernel_launches = one_launch,
        .prepare = flash_prepare,
        .release = release_state,
        .forward = flash_forward,
        .backward_workspace_size = flash_bwd_workspace,
        .backward = flash_backward,
    },
};
