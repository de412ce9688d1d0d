/* Serving layouts on the OpenCL flash path (kernels/serving.cl): varlen q and k/v, dense and
 * paged KV caches, KV append, and key splits for decode.  One forward is up to three
 * launches: the append (has_kv_append), the attention over each (sequence, KV head, split),
 * and the merge of the splits (more than one split).  The lengths stay on the device: the
 * kernels read and clamp them; nothing is read back.  Plain dense decode problems run here
 * too, as a dense KV layout (ocl_dense_decode); their backward stays the dense one. */
#include "ocl_algos.h"

#include <stdio.h>
#include <string.h>

/* Decode (at most this many queries a sequence) is where a grid of one work-group per
 * (sequence, KV head) leaves compute units idle, and splitting the keys pays. */
#define SPLIT_MAX_SEQ_Q 16
/* Keys a split walks at least when the plan chooses the count. */
#define SPLIT_MIN_KEYS 256
/* The cooperative decode kernel (kernels/serving_coop.cl): work-items a group, packed rows
 * (max_seqlen_q x GQA group) at most, O accumulators a work-item (rows x V columns), key lanes
 * of its P x V step at most. */
#define COOP_WG 128
#define COOP_MAX_ROWS 64
#define COOP_ACC 64
#define COOP_MAX_LANES 16
/* Work-groups per compute unit the coop kernel's splits aim for: the serial shape, at
 * least this many (latency hiding from more groups); the batched shape with at most
 * COOP_WAVE_ROWS packed rows (memory-bound: few FMAs a byte), at most COOP_BATCHED_PER_CU,
 * so the grid is one wave (two groups of 128 fit a compute unit at any register count; the
 * bytes in flight come from each group's batched loads).  More rows (16 queries) do 8x the
 * arithmetic a byte and keep the serial shape's count. */
#define COOP_GROUPS_PER_CU 4
#define COOP_BATCHED_PER_CU 2
#define COOP_WAVE_ROWS 8
/* The batched shape: bytes of K or V a work-item loads before it uses them (registers). */
#define COOP_BATCH_BYTES 256
/* Dense decode: keys at least this many (fewer: the tiled kernel's single pass is short). */
#define DENSE_MIN_KEYS 1024

/* The split count: p->num_splits (1 none, N: N where the keys allow), else from the grid's
 * work-groups (groups per (sequence, KV head)) and the device's compute units: at least
 * per_cu groups a compute unit, or with one_wave at most that many. */
static int choose_splits(const ocl_device *d, const pa_problem *p, uint64_t per_head,
                         uint64_t per_cu, int one_wave)
{
    const int64_t kb = ocl_tune.flash_rows_kb;
    const int64_t by_keys = (p->seq_kv + kb - 1) / kb;
    int64_t n;
    if (p->num_splits >= 1) {
        n = p->num_splits;
    } else {
        if (p->seq_q > SPLIT_MAX_SEQ_Q) return 1;
        const uint64_t groups = (uint64_t)p->batch * (uint64_t)p->heads_kv * per_head;
        const uint64_t target =
            per_cu * (uint64_t)(d->caps.compute_units > 0 ? d->caps.compute_units : 1);
        if (groups >= target) return 1;
        n = (int64_t)(one_wave ? target / groups : (target + groups - 1) / groups);
        const int64_t by_min = (p->seq_kv + SPLIT_MIN_KEYS - 1) / SPLIT_MIN_KEYS;
        if (n > by_min) n = by_min;
    }
    if (n > by_keys) n = by_keys;
    if (n > PA_MAX_SPLITS) n = PA_MAX_SPLITS;
    return n < 1 ? 1 : (int)n;
}

/* The batched shape's loads (the default: 2.2-3.7x the serial shape's GB/s in decode on an
 * H200 through NVIDIA's OpenCL, bench/results/2026-12-07-h200-opencl-decode-batched-vs-
 * serial.txt; opencl.coop=serial keeps one load a work-item in flight): K chunks of 8 and V
 * rows a work-item issues at once, within COOP_BATCH_BYTES each.
 * The K chunks of a batch divide the row's; the V rows cover the key lane's share of a tile
 * (keys past it are masked). */
static void batch_shape(const pa_problem *p, const ocl_force *f, ocl_srv_choice *c)
{
    c->co_batch = f->coop != OCL_COOP_SERIAL;
    c->coop_forced = f->coop != OCL_COOP_AUTO;
    c->merge_cols = c->co_batch;
    if (!c->co_batch) return;
    const int64_t es = (int64_t)ocl_esize(p->dtype), chunks = p->head_dim % 8 ? 1 : p->head_dim / 8;
    c->co_kch = 1;
    for (int64_t n = 1; n <= chunks && n * 8 * es <= COOP_BATCH_BYTES; n++)
        if (chunks % n == 0) c->co_kch = (int)n;
    const int64_t tk = COOP_WG / c->co_rg, nc = (p->head_dim_v + c->co_vw - 1) / c->co_vw,
                  lanes = COOP_WG / nc, per_lane = (tk + lanes - 1) / lanes,
                  fit = COOP_BATCH_BYTES / (c->co_vw * es);
    c->co_vb = (int)(per_lane < fit ? per_lane : fit > 1 ? fit : 1);
    if (c->co_vb > 32) c->co_vb = 32; /* the kernel's mask of loaded rows */
}

/* The coop kernel's shape for `packed` rows: NULL, or why it cannot take the problem. */
static const char *coop_shape(const ocl_device *d, const pa_problem *p, const ocl_force *f,
                              uint64_t packed, ocl_srv_choice *c)
{
    if (packed > COOP_MAX_ROWS)
        return "the cooperative decode kernel takes at most 64 packed rows (max_seqlen_q x "
               "GQA group)";
    int r = 1;
    while ((uint64_t)r < packed)
        r *= 2;
    const int64_t dv = p->head_dim_v;
    int vw = COOP_ACC / r > 8 ? 8 : COOP_ACC / r;
    /* Wide enough that the V columns fit the group, narrow enough for few key lanes. */
    while (vw < 8 && (dv + vw - 1) / vw > COOP_WG)
        vw *= 2;
    while (vw > 1 && COOP_WG / ((dv + vw - 1) / vw) > COOP_MAX_LANES &&
           (dv + vw / 2 - 1) / (vw / 2) <= COOP_WG)
        vw /= 2;
    if ((dv + vw - 1) / vw > COOP_WG || r * vw > 2 * COOP_ACC)
        return "head_dim_v is too large for the cooperative decode kernel at this many rows";
    c->coop = 1;
    c->co_r = r;
    c->co_rg = r > 8 ? r / 8 : 1;
    c->co_vw = vw;
    c->group = COOP_WG;
    batch_shape(p, f, c);
    const uint64_t tk = COOP_WG / c->co_rg, sp = tk + COOP_WG / r,
                   nc = (uint64_t)((dv + vw - 1) / vw);
    uint64_t big = (uint64_t)r * (uint64_t)p->head_dim + (uint64_t)r * sp;
    if (big < (uint64_t)r * nc * (uint64_t)vw) big = (uint64_t)r * nc * (uint64_t)vw;
    c->local_bytes =
        4 * (big + COOP_WG + 2 * (uint64_t)r) + 8 * (2 * (uint64_t)r + tk) + 4 * (uint64_t)r;
    if (c->co_batch) c->local_bytes += 32; /* Q's 32-byte alignment */
    if (COOP_WG > d->caps.max_wg)
        return "the cooperative decode kernel needs 128 work-items per group";
    if (c->local_bytes > ocl_local_budget(&d->caps))
        return "the cooperative decode kernel needs more local memory than the device has "
               "(head dim and rows)";
    return NULL;
}

int ocl_dense_decode(const ocl_device *d, const pa_problem *p, const ocl_force *f)
{
    if (pa_problem_serving(p) || p->want_probs || p->batch < 1 || p->seq_q < 1 ||
        p->seq_q > SPLIT_MAX_SEQ_Q || p->seq_kv < DENSE_MIN_KEYS)
        return 0;
    /* On GPUs, unless a flash kernel or tile is forced, and where the tiled kernel's grid
     * (one query tile a (head, batch) at decode) leaves compute units idle: the row kernel
     * read K and V at 44 GB/s in dense decode on the H100, the cooperative kernel at
     * 400-650 GB/s from a cache (bench/results/2026-12-07-h100-serving.md). */
    if (f->serving == OCL_FORCE_ROWS) return 0;
    if (f->serving != OCL_FORCE_COOP) {
        const uint64_t cus = d->caps.compute_units > 0 ? (uint64_t)d->caps.compute_units : 1;
        if (d->caps.is_cpu || f->flash || f->has_tiles ||
            (uint64_t)p->batch * (uint64_t)p->heads_q >= COOP_GROUPS_PER_CU * cus)
            return 0;
    }
    ocl_srv_choice c;
    return !ocl_serving_decide(d, p, f, &c) && c.coop;
}

int ocl_on_serving(const ocl_device *d, const pa_problem *p, const ocl_force *f)
{
    return pa_problem_serving(p) || ocl_dense_decode(d, p, f);
}

const char *ocl_serving_decide(const ocl_device *d, const pa_problem *p, const ocl_force *f,
                               ocl_srv_choice *c)
{
    memset(c, 0, sizeof *c);
    if (!ocl_band_of(p->head_dim, p->head_dim_v))
        return "head dims above 1024 are not supported by the OpenCL kernels";
    if (p->seq_q > INT_MAX / 2 || p->seq_kv > INT_MAX / 2)
        return "sequence lengths must be below 2^30 (the kernels' 32-bit index arithmetic)";
    const int64_t group = p->heads_q / p->heads_kv;
    const uint64_t packed = (uint64_t)p->seq_q * (uint64_t)group;
    /* GPUs: decode-like problems (few packed rows) on the cooperative kernel. */
    /* GPUs (or opencl.serving=coop on any device): decode-like problems, those with few packed
     * rows, on the cooperative kernel; the others on the row kernel. */
    if (f->serving == OCL_FORCE_COOP || (!f->serving && !d->caps.is_cpu)) {
        const char *why = coop_shape(d, p, f, packed, c);
        if (!why) {
            c->dense = !pa_problem_serving(p);
            c->forced = f->serving != OCL_FORCE_NONE;
            c->splits = c->co_batch && c->co_r <= COOP_WAVE_ROWS
                            ? choose_splits(d, p, 1, COOP_BATCHED_PER_CU, 1)
                            : choose_splits(d, p, 1, COOP_GROUPS_PER_CU, 0);
            goto workspace;
        }
        memset(c, 0, sizeof *c);
        if (f->serving == OCL_FORCE_COOP) c->unfit = why;
    }
    c->forced = f->serving == OCL_FORCE_ROWS;
    c->rows = ocl_rows_per_item(p->head_dim, p->head_dim_v);
    while (c->rows > 1 && (uint64_t)c->rows / 2 >= packed)
        c->rows /= 2;
    c->items = (packed + (uint64_t)c->rows - 1) / (uint64_t)c->rows;
    /* The row kernel's private arrays of a whole group at once (CPU drivers). */
    const size_t row_bytes = (size_t)c->rows * (size_t)(p->head_dim + p->head_dim_v) * 4;
    c->group = ocl_tune.rows_group;
    while (c->group > 1 && (c->group * row_bytes > ocl_tune.rows_group_private ||
                            (int)c->group > d->caps.max_wg || c->group / 2 >= c->items))
        c->group /= 2;
    c->splits = choose_splits(d, p, (c->items + c->group - 1) / c->group, 2, 0);
    c->merge_cols = 1;
workspace:
    if (c->splits > 1) {
        c->part_o = pa_size_mul(pa_size_mul4(c->splits, p->batch, p->heads_q, p->seq_q),
                                (uint64_t)p->head_dim_v);
        const uint64_t lse = pa_size_mul4(c->splits, p->batch, p->heads_q, p->seq_q);
        c->workspace = pa_size_mul(pa_size_add(c->part_o, lse), 4);
        if (c->workspace == PA_SIZE_OVERFLOW || c->part_o > (uint64_t)INT64_MAX / 2)
            return "the key splits' partial results cannot be addressed";
    }
    return NULL;
}

/* The decision of a plan whose forward runs here (with the device's forced keys); 0 for the
 * others, or when the keys cannot be read or the plan cannot run. */
static int serving_choice(pa_device *dev, const pa_problem *p, ocl_srv_choice *c)
{
    ocl_force f;
    const ocl_device *d = (const ocl_device *)dev;
    if (ocl_force_read((ocl_device *)dev, &f) || !ocl_on_serving(d, p, &f)) return 0;
    return ocl_serving_decide(d, p, &f, c) == NULL;
}

/* How the forward runs, for the plan's note and the dispatch log. */
static void describe(const ocl_srv_choice *c, char *buf, size_t size)
{
    char loads[64];
    if (c->co_batch)
        snprintf(loads, sizeof loads, "batched loads (%d K chunks, %d V rows)", c->co_kch,
                 c->co_vb);
    else snprintf(loads, sizeof loads, "serial loads");
    if (c->coop)
        snprintf(buf, size,
                 "%sserving cooperative decode kernel, %d work-items per (sequence, KV head, "
                 "split), %d packed rows, %d-key tiles, %s, %llu B local memory%s%s",
                 c->dense ? "dense decode: " : "", (int)c->group, c->co_r, COOP_WG / c->co_rg,
                 loads, (unsigned long long)c->local_bytes,
                 c->forced ? " (POLYATTN_FORCE opencl.serving=coop)" : "",
                 !c->coop_forced ? ""
                 : c->co_batch   ? " (POLYATTN_FORCE opencl.coop=batched)"
                                 : " (POLYATTN_FORCE opencl.coop=serial)");
    else
        snprintf(buf, size, "serving row kernel, %d (query, head) rows per work-item%s%s%s",
                 c->rows, c->forced ? " (POLYATTN_FORCE opencl.serving=rows)" : "",
                 c->unfit ? " (POLYATTN_FORCE opencl.serving=coop does not apply: " : "",
                 c->unfit ? c->unfit : "");
    if (!c->coop && c->unfit) {
        const size_t n = strlen(buf);
        snprintf(buf + n, size > n ? size - n : 0, ")");
    }
}

polyattn_status ocl_serving_check(ocl_device *d, const pa_problem *p, const char **why_not)
{
    ocl_force f;
    const char *why = ocl_force_read(d, &f);
    if (why) {
        *why_not = why;
        return POLYATTN_STATUS_INVALID_ARGUMENT;
    }
    ocl_srv_choice c;
    ocl_bwd_choice b;
    if ((why = ocl_serving_decide(d, p, &f, &c)) ||
        (p->want_backward &&
         (why = c.dense ? ocl_bwd_decide(d, p, &f, &b) : ocl_serving_bwd_decide(d, p, &f, &b)))) {
        *why_not = why;
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    char *note = d->note[POLYATTN_ALGO_FLASH], how[400];
    describe(&c, how, sizeof how);
    snprintf(note, sizeof d->note[POLYATTN_ALGO_FLASH], "%.280s, %d key split%s%s%s", how, c.splits,
             c.splits > 1 ? "s merged by log-sum-exp" : "",
             p->has_kv_append ? ", KV append first" : "",
             f.flash || f.has_tiles ? " (opencl.flash and opencl.tiles do not apply)" : "");
    if (p->want_backward) ocl_bwd_note(p, &b, note, sizeof d->note[POLYATTN_ALGO_FLASH]);
    *why_not = note;
    return POLYATTN_STATUS_SUCCESS;
}

int ocl_flash_launches(pa_device *dev, const pa_problem *p)
{
    ocl_srv_choice c;
    if (!serving_choice(dev, p, &c)) return 1;
    return 1 + (p->has_kv_append != 0) + (c.splits > 1);
}

int ocl_flash_splits(pa_device *dev, const pa_problem *p)
{
    ocl_srv_choice c;
    return serving_choice(dev, p, &c) ? c.splits : 1;
}

uint64_t ocl_serving_workspace(pa_device *dev, const pa_problem *p)
{
    ocl_srv_choice c; /* the key splits' partial results */
    return serving_choice(dev, p, &c) ? c.workspace : 0;
}

polyattn_status ocl_serving_prepare(ocl_device *d, const pa_problem *p, ocl_plan_state *s)
{
    ocl_force f;
    const char *why = ocl_force_read(d, &f);
    if (why) return pa_fail(&d->base, POLYATTN_STATUS_INVALID_ARGUMENT, "opencl flash: %s", why);
    if ((why = ocl_serving_decide(d, p, &f, &s->srv)))
        return pa_fail(&d->base, POLYATTN_STATUS_UNSUPPORTED, "opencl flash: %s", why);
    const ocl_srv_choice *c = &s->srv;
    char opts[512];
    ocl_rows_options(p, c->coop ? 1 : c->rows, opts, sizeof opts);
    polyattn_status st;
    static const char *const srcs[] = {"common", "merge", "serving", "serving_coop"};
    if (c->coop) {
        const size_t n = strlen(opts);
        snprintf(opts + n, sizeof opts - n,
                 " -DCO_WG=%d -DCO_R=%d -DCO_RG=%d -DCO_VW=%d -DCO_BATCH=%d -DCO_KCH=%d -DCO_VB=%d",
                 (int)c->group, c->co_r, c->co_rg, c->co_vw, c->co_batch, c->co_kch, c->co_vb);
        st = ocl_make_kernel_var(d, p, srcs, 4, opts, "flash_serving_coop_kernel", &s->kernel);
    } else {
        st = ocl_make_kernel_var(d, p, srcs, 3, opts, "flash_serving_fwd_kernel", &s->kernel);
    }
    const int n_src = c->coop ? 4 : 3;
    if (!st && p->has_kv_append)
        st = ocl_make_kernel_var(d, p, srcs, n_src, opts, "serving_append_kernel", &s->srv_append);
    if (!st && c->splits > 1)
        st = ocl_make_kernel_var(d, p, srcs, n_src, opts,
                                 c->merge_cols ? "flash_serving_merge_cols_kernel"
                                               : "flash_serving_merge_kernel",
                                 &s->srv_merge);
    s->on_serving = 1;
    char how[400];
    describe(c, how, sizeof how);
    pa_log(POLYATTN_LOG_DISPATCH, "opencl flash: %s, %d split%s", how, c->splits,
           c->splits > 1 ? "s" : "");
    if (st || !p->want_backward) return st;
    if (c->dense) { /* the dense backward's own kernels and options */
        if ((why = ocl_bwd_decide(d, p, &f, &s->bwd)))
            return pa_fail(&d->base, POLYATTN_STATUS_UNSUPPORTED, "opencl flash: %s", why);
        return ocl_flash_bwd_prepare(d, p, s);
    }
    if ((why = ocl_serving_bwd_decide(d, p, &f, &s->bwd)))
        return pa_fail(&d->base, POLYATTN_STATUS_UNSUPPORTED, "opencl flash: %s", why);
    return ocl_serving_bwd_prepare(d, p, s);
}

/* PA_SRV_PARAMS (17 arguments) from index i. */
static polyattn_status set_srv_args(ocl_device *d, cl_kernel k, cl_uint i, const pa_problem *p,
                                    const pa_serving_io *srv, cl_mem dummy)
{
    const pa_tensor_ref none = {dummy, 0};
    const pa_tensor_ref *r[4] = {srv->cu_seqlens_q.mem ? &srv->cu_seqlens_q : &none,
                                 srv->cu_seqlens_kv.mem ? &srv->cu_seqlens_kv : &none,
                                 srv->seqused_kv.mem ? &srv->seqused_kv : &none,
                                 srv->block_table.mem ? &srv->block_table : &none};
    for (int t = 0; t < 4; t++) {
        if (r[t]->offset % 4)
            return pa_fail(&d->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                           "opencl: a serving tensor's byte offset is not a multiple of 4");
        cl_mem m = (cl_mem)r[t]->mem;
        cl_long off = (cl_long)(r[t]->offset / 4);
        SET_ARG(k, i++, m);
        SET_ARG(k, i++, off);
    }
    cl_int varlen_q = p->varlen_q, layout = (cl_int)p->kv_layout;
    cl_long total_q = p->total_q, kv_count = p->kv_count, kv_rows = p->kv_rows,
            max_blocks = p->max_blocks_per_seq, seq_new = p->has_kv_append ? p->seq_new : 0,
            max_q = p->seq_q, max_kv = p->seq_kv;
    SET_ARG(k, i++, varlen_q);
    SET_ARG(k, i++, layout);
    SET_ARG(k, i++, total_q);
    SET_ARG(k, i++, kv_count);
    SET_ARG(k, i++, kv_rows);
    SET_ARG(k, i++, max_blocks);
    SET_ARG(k, i++, seq_new);
    SET_ARG(k, i++, max_q);
    SET_ARG(k, i++, max_kv);
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status append(ocl_device *d, const pa_problem *p, cl_kernel k, const pa_io *io)
{
    const size_t es = ocl_esize(p->dtype);
    const pa_tensor_ref *r[4] = {&io->k, &io->v, &io->srv.k_new, &io->srv.v_new};
    const int64_t *st[4] = {p->k_stride, p->v_stride, p->k_new_stride, p->v_new_stride};
    for (int i = 0; i < 4; i++) {
        cl_long off;
        if (!ocl_elem_offset(r[i], es, &off))
            return pa_fail(&d->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                           "opencl: a tensor's byte offset is not a multiple of its element size");
        cl_mem m = (cl_mem)r[i]->mem;
        cl_long4 s4 = ocl_strides4(st[i]);
        SET_ARG(k, 3 * i, m);
        SET_ARG(k, 3 * i + 1, off);
        SET_ARG(k, 3 * i + 2, s4);
    }
    const int64_t dmax = p->head_dim > p->head_dim_v ? p->head_dim : p->head_dim_v;
    cl_long heads_kv = p->heads_kv,
            n = (cl_long)pa_size_mul4(p->batch, p->heads_kv, p->seq_new, dmax);
    SET_ARG(k, 12, heads_kv);
    SET_ARG(k, 13, n);
    polyattn_status st2 = set_srv_args(d, k, 14, p, &io->srv, (cl_mem)io->q.mem);
    if (st2) return st2;
    return ocl_enqueue_1d(d, k, (uint64_t)n, "clEnqueueNDRangeKernel(serving_append_kernel)");
}

static polyattn_status merge(ocl_device *d, const pa_problem *p, const ocl_plan_state *s,
                             const pa_io *io, cl_mem ws, cl_long ws_off, cl_mem lse,
                             cl_long lse_off, cl_int want_lse)
{
    cl_kernel k = s->srv_merge;
    const size_t es = ocl_esize(ocl_o_dtype(p));
    cl_long o_off;
    if (!ocl_elem_offset(&io->o, es, &o_off) || io->var.sinks.offset % 4)
        return pa_fail(&d->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl: a tensor's byte offset is not a multiple of its element size");
    cl_mem om = (cl_mem)io->o.mem;
    cl_long4 ost = ocl_strides4(p->o_stride);
    cl_int n_splits = s->srv.splits, has_sinks = p->has_sinks && io->var.sinks.mem;
    cl_long heads_q = p->heads_q, batch = p->batch,
            sinks_off = has_sinks ? (cl_long)(io->var.sinks.offset / 4) : 0;
    cl_mem sinks = has_sinks ? (cl_mem)io->var.sinks.mem : ws;
    SET_ARG(k, 0, ws);
    SET_ARG(k, 1, ws_off);
    SET_ARG(k, 2, n_splits);
    SET_ARG(k, 3, om);
    SET_ARG(k, 4, o_off);
    SET_ARG(k, 5, ost);
    SET_ARG(k, 6, lse);
    SET_ARG(k, 7, lse_off);
    SET_ARG(k, 8, want_lse);
    SET_ARG(k, 9, heads_q);
    SET_ARG(k, 10, batch);
    SET_ARG(k, 11, sinks);
    SET_ARG(k, 12, sinks_off);
    SET_ARG(k, 13, has_sinks);
    polyattn_status st = set_srv_args(d, k, 14, p, &io->srv, ws);
    if (st) return st;
    if (s->srv.merge_cols)
        return ocl_enqueue_1d(d, k, pa_size_mul4(p->batch, p->heads_q, p->seq_q, p->head_dim_v),
                              "clEnqueueNDRangeKernel(flash_serving_merge_cols_kernel)");
    return ocl_enqueue_1d(d, k, pa_size_mul4(p->batch, p->heads_q, p->seq_q, 1),
                          "clEnqueueNDRangeKernel(flash_serving_merge_kernel)");
}

/* Whether every row of a K or V tensor starts 8-element aligned with unit column stride (the
 * coop kernel's wide loads; cl_mem bases are aligned far beyond 32 bytes). */
static cl_int rows_aligned(const int64_t st[4], const pa_tensor_ref *r, polyattn_dtype dt)
{
    const size_t es = ocl_esize(dt);
    return st[3] == 1 && st[0] % 8 == 0 && st[1] % 8 == 0 && st[2] % 8 == 0 &&
           r->offset % (8 * es) == 0;
}

polyattn_status ocl_serving_forward(ocl_device *d, const pa_problem *p, const ocl_plan_state *s,
                                    const pa_io *io)
{
    const ocl_srv_choice *c = &s->srv;
    polyattn_status st;
    if (p->has_kv_append && (st = append(d, p, s->srv_append, io))) return st;
    if (p->batch == 0 || p->seq_q == 0) return POLYATTN_STATUS_SUCCESS;
    cl_kernel k = s->kernel;
    if ((st = ocl_set_qkvo_args(d, k, p, io))) return st;
    cl_mem lse = io->lse.mem ? (cl_mem)io->lse.mem : (cl_mem)io->o.mem;
    cl_long lse_off = io->lse.mem ? (cl_long)(io->lse.offset / 4) : 0;
    cl_int want_lse = p->want_lse && io->lse.mem, group = (cl_int)(p->heads_q / p->heads_kv);
    cl_int causal = p->mask != POLYATTN_MASK_NONE,
           top_left = p->mask == POLYATTN_MASK_CAUSAL_TOP_LEFT, n_splits = c->splits;
    cl_float scale_log2 = ocl_scale_log2(p), o_scale = ocl_o_scale(p);
    cl_mem ws = c->splits > 1 ? (cl_mem)io->workspace.mem : (cl_mem)io->o.mem;
    if (c->splits > 1 && (!ws || io->workspace.offset % 4 || io->workspace_bytes < c->workspace))
        return pa_fail(&d->base, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl flash: the key splits need a workspace of %llu bytes, 4-aligned",
                       (unsigned long long)c->workspace);
    cl_long ws_off = c->splits > 1 ? (cl_long)(io->workspace.offset / 4) : 0;
    SET_ARG(k, 12, lse);
    SET_ARG(k, 13, lse_off);
    SET_ARG(k, 14, want_lse);
    SET_ARG(k, 15, group);
    SET_ARG(k, 16, scale_log2);
    SET_ARG(k, 17, o_scale);
    SET_ARG(k, 18, causal);
    SET_ARG(k, 19, top_left);
    SET_ARG(k, 20, n_splits);
    SET_ARG(k, 21, ws);
    SET_ARG(k, 22, ws_off);
    cl_uint a = 23;
    if (c->coop) {
        cl_int k_al = rows_aligned(p->k_stride, &io->k, p->dtype),
               v_al = rows_aligned(p->v_stride, &io->v, p->dtype);
        SET_ARG(k, 23, k_al);
        SET_ARG(k, 24, v_al);
        a = 25;
    }
    if ((st = set_srv_args(d, k, a, p, &io->srv, (cl_mem)io->o.mem))) return st;
    if ((st = ocl_var_set_args_all(d, k, a + 17, p, &io->var, (cl_mem)io->o.mem, 0))) return st;
    size_t global[3] = {c->coop ? c->group
                                : (size_t)ocl_round_up((int64_t)c->items, (int64_t)c->group),
                        (size_t)p->heads_kv, (size_t)(p->batch * c->splits)};
    size_t local[3] = {c->group, 1, 1};
    st = ocl_enqueue(d, k, global, local,
                     c->coop ? "clEnqueueNDRangeKernel(flash_serving_coop_kernel)"
                             : "clEnqueueNDRangeKernel(flash_serving_fwd_kernel)");
    if (st || c->splits == 1) return st;
    return merge(d, p, s, io, ws, ws_off, lse, lse_off, want_lse);
}
