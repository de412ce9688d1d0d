/*
 * One rank's steps of context-parallel attention on a polyattn context (see cp_engine.h).
 *
 * Forward: each step's calls write a partial (O, LSE) of their query chunk into the next
 * free slot of that chunk; the finish merges each chunk's slots with polyattn_merge_states
 * into the caller's O and LSE.  Partials stay in the input dtype (the plans' o shares it)
 * and are merged once, so each is rounded once.
 * Backward: the local backward of a call, given the final O and the merged LSE, yields the
 * exact part of dQ, dK and dV of its (query rows, key rows) pair; dQ parts sum into a local
 * f32 accumulator, dK/dV parts into the f32 accumulators that travel with the block.
 */
#include "cp_engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct plan_entry {
    int64_t q_len, kv_len, kv_rows;
    polyattn_mask mask;
    int backward;
    polyattn_plan *plan;
    polyattn_attention_desc desc;
} plan_entry;

typedef struct step_calls {
    int n;
    pa_cp_call call[PA_CP_MAX_CALLS];
    int plan[PA_CP_MAX_CALLS];     /* forward plan: index into plans */
    int bwd_plan[PA_CP_MAX_CALLS]; /* backward plan (flash) */
    int slot[PA_CP_MAX_CALLS];     /* partial slot of the call's query chunk */
} step_calls;

struct pa_cp_engine {
    polyattn_context *ctx;
    polyattn_cp_desc desc;
    pa_cp_layout layout;
    const pa_cp_device_ops *ops;
    void *user;
    int want_backward;
    int world, rank, n_chunks;
    int64_t rows; /* local rows */
    int64_t chunk_len[PA_CP_MAX_LOCAL_CHUNKS];
    int n_slots[PA_CP_MAX_LOCAL_CHUNKS];
    step_calls *steps;
    plan_entry *plans;
    int n_plans;
    size_t esize;
    uint64_t device_bytes;
    pa_cp_mem partial_o;                           /* [max slots][local O] */
    pa_cp_mem partial_lse[PA_CP_MAX_LOCAL_CHUNKS]; /* [slots][b, hq, chunk rows] */
    pa_cp_mem workspace;
    pa_cp_mem dq_scratch, dq_acc;
    pa_cp_mem dk_scratch[PA_CP_MAX_CALLS], dv_scratch[PA_CP_MAX_CALLS];
    char err[512];
};

static polyattn_status fail(pa_cp_engine *e, polyattn_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err, sizeof e->err, fmt, ap);
    va_end(ap);
    return st;
}

/* A failed polyattn call: its status and the context's message. */
static polyattn_status fail_ctx(pa_cp_engine *e, polyattn_status st, const char *what)
{
    return fail(e, st, "%s: %s (%s)", what, polyattn_status_name(st),
                polyattn_context_last_error(e->ctx));
}

const char *pa_cp_engine_error(const pa_cp_engine *e) { return e ? e->err : ""; }
const pa_cp_layout *pa_cp_engine_layout(const pa_cp_engine *e) { return &e->layout; }

int64_t pa_cp_engine_block_rows(const pa_cp_engine *e, int owner)
{
    return pa_cp_rank_rows(&e->layout, owner);
}

uint64_t pa_cp_engine_kv_bytes(const pa_cp_engine *e, int owner, int v, int f32)
{
    const polyattn_cp_desc *d = &e->desc;
    return (uint64_t)(d->batch * d->heads_kv * pa_cp_engine_block_rows(e, owner) *
                      (v ? d->head_dim_v : d->head_dim)) *
           (f32 ? 4u : (uint64_t)e->esize);
}

uint64_t pa_cp_engine_device_bytes(const pa_cp_engine *e) { return e->device_bytes; }

static polyattn_status alloc(pa_cp_engine *e, uint64_t bytes, pa_cp_mem *m, const char *what)
{
    polyattn_status st = e->ops->alloc(e->user, bytes ? bytes : 16, m);
    if (st != POLYATTN_STATUS_SUCCESS)
        return fail(e, st, "allocating %s (%llu bytes) failed", what, (unsigned long long)bytes);
    e->device_bytes += bytes;
    return st;
}

static void release(pa_cp_engine *e, pa_cp_mem *m)
{
    if (m->buf || m->ptr) e->ops->free(e->user, m);
    m->buf = NULL;
    m->ptr = NULL;
}

/* Contiguous [batch, heads, rows, width] addressed as a [batch, heads, len, width] window. */
static void window_desc(polyattn_tensor_desc *t, polyattn_dtype dt, int64_t batch, int64_t heads,
                        int64_t len, int64_t rows, int64_t width)
{
    polyattn_tensor_desc_bhsd(t, dt, batch, heads, len, width);
    t->strides[0] = heads * rows * width;
    t->strides[1] = rows * width;
}

/* Forward plans run the caller's algorithm.  Backward plans are flash: a step's gradients
 * are exact parts only where the backward recomputes the probabilities from the LSE it is
 * given (the merged one), as FlashAttention-2's backward does; the unfused and fused
 * backwards renormalise over the step's keys alone. */
static polyattn_status get_plan(pa_cp_engine *e, const pa_cp_call *c, int64_t kv_rows,
                                const polyattn_cp_options *opt, int backward, int *index)
{
    for (int i = 0; i < e->n_plans; i++) {
        plan_entry *p = &e->plans[i];
        if (p->q_len == c->q_len && p->kv_len == c->kv_len && p->kv_rows == kv_rows &&
            p->mask == c->mask && p->backward == backward) {
            *index = i;
            return POLYATTN_STATUS_SUCCESS;
        }
    }
    const polyattn_cp_desc *d = &e->desc;
    plan_entry *p = &e->plans[e->n_plans];
    memset(p, 0, sizeof *p);
    p->q_len = c->q_len;
    p->kv_len = c->kv_len;
    p->kv_rows = kv_rows;
    p->mask = c->mask;
    p->backward = backward;
    polyattn_attention_desc *a = &p->desc;
    polyattn_attention_desc_init(a, d->dtype, d->batch, d->heads_q, d->heads_kv, c->q_len,
                                 c->kv_len, d->head_dim, d->head_dim_v);
    window_desc(&a->q, d->dtype, d->batch, d->heads_q, c->q_len, e->rows, d->head_dim);
    window_desc(&a->o, d->dtype, d->batch, d->heads_q, c->q_len, e->rows, d->head_dim_v);
    window_desc(&a->k, d->dtype, d->batch, d->heads_kv, c->kv_len, kv_rows, d->head_dim);
    window_desc(&a->v, d->dtype, d->batch, d->heads_kv, c->kv_len, kv_rows, d->head_dim_v);
    a->scale = d->scale;
    a->mask = c->mask;
    polyattn_plan_options po;
    polyattn_plan_options_init(&po);
    po.algo = backward ? POLYATTN_ALGO_FLASH : opt ? opt->algo : POLYATTN_ALGO_AUTO;
    po.want_lse = 1;
    po.want_backward = backward;
    po.deterministic = backward && opt ? opt->deterministic : 0;
    polyattn_status st = polyattn_plan_create(e->ctx, a, &po, &p->plan);
    if (st != POLYATTN_STATUS_SUCCESS) {
        p->plan = NULL;
        return fail(e, st, "local %s plan %lld x %lld keys (%s): %s (%s)",
                    backward ? "backward (flash)" : "forward", (long long)c->q_len,
                    (long long)c->kv_len, polyattn_mask_name(c->mask), polyattn_status_name(st),
                    polyattn_context_last_error(e->ctx));
    }
    *index = e->n_plans++;
    return st;
}

static uint64_t plan_workspace(const plan_entry *p, int backward)
{
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if (polyattn_plan_get_info(p->plan, &info) != POLYATTN_STATUS_SUCCESS) return 0;
    uint64_t ws = info.workspace_bytes;
    if (backward && info.backward_workspace_bytes > ws) ws = info.backward_workspace_bytes;
    return ws;
}

static polyattn_status alloc_buffers(pa_cp_engine *e)
{
    const polyattn_cp_desc *d = &e->desc;
    polyattn_status st;
    int max_slots = 0;
    for (int k = 0; k < e->n_chunks; k++)
        if (e->n_slots[k] > max_slots) max_slots = e->n_slots[k];
    uint64_t o_bytes = (uint64_t)(d->batch * d->heads_q * e->rows * d->head_dim_v) * e->esize;
    if ((st = alloc(e, o_bytes * (uint64_t)max_slots, &e->partial_o, "partial outputs"))) return st;
    for (int k = 0; k < e->n_chunks; k++) {
        uint64_t b = (uint64_t)(d->batch * d->heads_q * e->chunk_len[k]) * 4u * e->n_slots[k];
        if ((st = alloc(e, b, &e->partial_lse[k], "partial log-sum-exps"))) return st;
    }
    uint64_t ws = 0;
    for (int i = 0; i < e->n_plans; i++) {
        uint64_t w = plan_workspace(&e->plans[i], e->want_backward);
        if (w > ws) ws = w;
    }
    if (ws && (st = alloc(e, ws, &e->workspace, "workspace"))) return st;
    if (!e->want_backward) return POLYATTN_STATUS_SUCCESS;
    uint64_t q_elems = (uint64_t)(d->batch * d->heads_q * e->rows * d->head_dim);
    if ((st = alloc(e, q_elems * e->esize, &e->dq_scratch, "dq scratch"))) return st;
    if ((st = alloc(e, q_elems * 4u, &e->dq_acc, "dq accumulator"))) return st;
    uint64_t k_max = 0, v_max = 0;
    for (int r = 0; r < e->world; r++) {
        if (pa_cp_engine_kv_bytes(e, r, 0, 0) > k_max) k_max = pa_cp_engine_kv_bytes(e, r, 0, 0);
        if (pa_cp_engine_kv_bytes(e, r, 1, 0) > v_max) v_max = pa_cp_engine_kv_bytes(e, r, 1, 0);
    }
    for (int c = 0; c < PA_CP_MAX_CALLS; c++) {
        if ((st = alloc(e, k_max, &e->dk_scratch[c], "dk scratch"))) return st;
        if ((st = alloc(e, v_max, &e->dv_scratch[c], "dv scratch"))) return st;
    }
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status pa_cp_engine_create(polyattn_context *ctx, const polyattn_cp_desc *desc,
                                    const polyattn_cp_options *options, const pa_cp_device_ops *ops,
                                    void *user, pa_cp_engine **engine, char *err, size_t err_len)
{
    const char *why = NULL;
    if (err && err_len) err[0] = '\0';
    if (!engine) return POLYATTN_STATUS_INVALID_ARGUMENT;
    *engine = NULL;
    polyattn_status st = pa_cp_desc_check(desc, &why);
    if (st == POLYATTN_STATUS_SUCCESS && options && options->struct_size < sizeof *options) {
        why = "options: struct_size smaller than polyattn_cp_options";
        st = POLYATTN_STATUS_INVALID_ARGUMENT;
    }
    if (st != POLYATTN_STATUS_SUCCESS) {
        if (err && err_len) snprintf(err, err_len, "%s", why);
        return st;
    }
    pa_cp_engine *e = calloc(1, sizeof *e);
    if (!e) return POLYATTN_STATUS_OUT_OF_MEMORY;
    e->ctx = ctx;
    e->desc = *desc;
    e->ops = ops;
    e->user = user;
    e->want_backward = options ? options->want_backward : 0;
    e->world = desc->world_size;
    e->rank = desc->rank;
    e->esize = polyattn_dtype_size(desc->dtype);
    pa_cp_layout_from_desc(desc, &e->layout);
    int chunks[PA_CP_MAX_LOCAL_CHUNKS];
    e->n_chunks = pa_cp_rank_chunks(&e->layout, e->rank, chunks);
    for (int k = 0; k < e->n_chunks; k++)
        e->chunk_len[k] = pa_cp_chunk_len(&e->layout, chunks[k]);
    e->rows = pa_cp_rank_rows(&e->layout, e->rank);
    e->steps = calloc((size_t)e->world, sizeof *e->steps);
    e->plans = calloc((size_t)e->world * PA_CP_MAX_CALLS * 2, sizeof *e->plans);
    if (!e->steps || !e->plans) {
        st = POLYATTN_STATUS_OUT_OF_MEMORY;
        fail(e, st, "out of host memory");
        goto done;
    }
    for (int s = 0; s < e->world && st == POLYATTN_STATUS_SUCCESS; s++) {
        step_calls *sc = &e->steps[s];
        sc->n = pa_cp_step_calls(&e->layout, e->rank, s, sc->call);
        if (sc->n < 0) {
            st = fail(e, POLYATTN_STATUS_INTERNAL_ERROR, "step %d: no one-call schedule", s);
            break;
        }
        int64_t kv_rows = pa_cp_engine_block_rows(e, pa_cp_block_owner(&e->layout, e->rank, s));
        for (int c = 0; c < sc->n && st == POLYATTN_STATUS_SUCCESS; c++) {
            st = get_plan(e, &sc->call[c], kv_rows, options, 0, &sc->plan[c]);
            if (st == POLYATTN_STATUS_SUCCESS && e->want_backward)
                st = get_plan(e, &sc->call[c], kv_rows, options, 1, &sc->bwd_plan[c]);
            sc->slot[c] = e->n_slots[sc->call[c].q_chunk]++;
        }
    }
    if (st == POLYATTN_STATUS_SUCCESS) st = alloc_buffers(e);
done:
    if (st != POLYATTN_STATUS_SUCCESS) {
        if (err && err_len) snprintf(err, err_len, "%s", e->err);
        pa_cp_engine_destroy(e);
        return st;
    }
    *engine = e;
    return st;
}

void pa_cp_engine_destroy(pa_cp_engine *e)
{
    if (!e) return;
    if (e->plans)
        for (int i = 0; i < e->n_plans; i++)
            polyattn_plan_destroy(e->plans[i].plan);
    release(e, &e->partial_o);
    for (int k = 0; k < PA_CP_MAX_LOCAL_CHUNKS; k++)
        release(e, &e->partial_lse[k]);
    release(e, &e->workspace);
    release(e, &e->dq_scratch);
    release(e, &e->dq_acc);
    for (int c = 0; c < PA_CP_MAX_CALLS; c++) {
        release(e, &e->dk_scratch[c]);
        release(e, &e->dv_scratch[c]);
    }
    free(e->steps);
    free(e->plans);
    free(e);
}

void pa_cp_engine_info(const pa_cp_engine *e, polyattn_cp_plan_info *info)
{
    const polyattn_cp_desc *d = &e->desc;
    polyattn_algo algo = POLYATTN_ALGO_AUTO;
    int first = 1;
    for (int i = 0; i < e->n_plans; i++) {
        polyattn_plan_info pi;
        memset(&pi, 0, sizeof pi);
        pi.struct_size = sizeof pi;
        if (e->plans[i].backward ||
            polyattn_plan_get_info(e->plans[i].plan, &pi) != POLYATTN_STATUS_SUCCESS)
            continue;
        algo = first || algo == pi.algo ? pi.algo : POLYATTN_ALGO_AUTO; /* AUTO: mixed */
        if (!first && algo == POLYATTN_ALGO_AUTO) break;
        first = 0;
    }
    info->algo = algo;
    info->steps = e->world;
    info->local_calls = 0;
    info->flops = 0;
    for (int s = 0; s < e->world; s++) {
        const step_calls *sc = &e->steps[s];
        info->local_calls += sc->n;
        for (int c = 0; c < sc->n; c++) {
            const pa_cp_call *call = &sc->call[c];
            double pairs = (double)call->q_len * (double)call->kv_len;
            if (call->mask != POLYATTN_MASK_NONE) /* the diagonal block loses its upper half */
                pairs -= (double)call->q_len * (double)(call->q_len - 1) / 2.0;
            info->flops += 2.0 * (double)(d->head_dim + d->head_dim_v) * pairs *
                           (double)(d->batch * d->heads_q);
        }
    }
    double fwd = 0, acc = 0;
    for (int s = 0; s + 1 < e->world; s++) {
        int owner = pa_cp_block_owner(&e->layout, e->rank, s);
        fwd +=
            (double)(pa_cp_engine_kv_bytes(e, owner, 0, 0) + pa_cp_engine_kv_bytes(e, owner, 1, 0));
    }
    if (e->world > 1)
        for (int s = 0; s < e->world; s++) {
            int owner = pa_cp_block_owner(&e->layout, e->rank, s);
            acc += (double)(pa_cp_engine_kv_bytes(e, owner, 0, 1) +
                            pa_cp_engine_kv_bytes(e, owner, 1, 1));
        }
    info->comm_bytes = fwd;
    info->comm_bytes_bwd = fwd + acc;
    info->device_bytes = e->device_bytes;
}

/* A view of `m` from byte `offset` covering tensor t. */
static polyattn_status view(pa_cp_engine *e, const pa_cp_mem *m, uint64_t offset,
                            const polyattn_tensor_desc *t, polyattn_buffer **out)
{
    polyattn_status st = polyattn_buffer_view(m->buf, offset, polyattn_tensor_desc_bytes(t), out);
    return st ? fail_ctx(e, st, "view") : st;
}

static polyattn_status view_bytes(pa_cp_engine *e, const pa_cp_mem *m, uint64_t offset,
                                  uint64_t bytes, polyattn_buffer **out)
{
    polyattn_status st = polyattn_buffer_view(m->buf, offset, bytes, out);
    return st ? fail_ctx(e, st, "view") : st;
}

static void free_views(polyattn_buffer **v, int n)
{
    for (int i = n - 1; i >= 0; i--)
        polyattn_buffer_free(v[i]);
}

static uint64_t lse_chunk_offset(const pa_cp_engine *e, int chunk)
{
    uint64_t off = 0;
    for (int k = 0; k < chunk; k++)
        off += (uint64_t)(e->desc.batch * e->desc.heads_q * e->chunk_len[k]) * 4u;
    return off;
}

static polyattn_status check_step(pa_cp_engine *e, int step)
{
    if (step < 0 || step >= e->world)
        return fail(e, POLYATTN_STATUS_INVALID_ARGUMENT, "step %d out of range", step);
    return POLYATTN_STATUS_SUCCESS;
}

/* Views of the q rows, the block's k and v rows and the call's O window at `o_offset`. */
enum { V_Q, V_K, V_V, V_O, V_COUNT };
static polyattn_status call_views(pa_cp_engine *e, const plan_entry *p, const pa_cp_call *c,
                                  const pa_cp_mem *q, const pa_cp_mem *k, const pa_cp_mem *v,
                                  const pa_cp_mem *o, uint64_t o_offset, polyattn_buffer **vw,
                                  int *n)
{
    const polyattn_cp_desc *d = &e->desc;
    polyattn_status st;
    *n = 0;
    if ((st = view(e, q, (uint64_t)(c->q_row0 * d->head_dim) * e->esize, &p->desc.q, &vw[0])))
        return st;
    *n = 1;
    if ((st = view(e, k, (uint64_t)(c->kv_row0 * d->head_dim) * e->esize, &p->desc.k, &vw[1])))
        return st;
    *n = 2;
    if ((st = view(e, v, (uint64_t)(c->kv_row0 * d->head_dim_v) * e->esize, &p->desc.v, &vw[2])))
        return st;
    *n = 3;
    if ((st = view(e, o, o_offset + (uint64_t)(c->q_row0 * d->head_dim_v) * e->esize, &p->desc.o,
                   &vw[3])))
        return st;
    *n = 4;
    return st;
}

polyattn_status pa_cp_fwd_step(pa_cp_engine *e, int step, const pa_cp_mem *q,
                               const pa_cp_mem *k_block, const pa_cp_mem *v_block)
{
    polyattn_status st = check_step(e, step);
    const step_calls *sc = &e->steps[step];
    const polyattn_cp_desc *d = &e->desc;
    uint64_t slot_bytes = (uint64_t)(d->batch * d->heads_q * e->rows * d->head_dim_v) * e->esize;
    for (int c = 0; st == POLYATTN_STATUS_SUCCESS && c < sc->n; c++) {
        const pa_cp_call *call = &sc->call[c];
        plan_entry *p = &e->plans[sc->plan[c]];
        polyattn_buffer *vw[V_COUNT + 1];
        int n = 0;
        st = call_views(e, p, call, q, k_block, v_block, &e->partial_o,
                        slot_bytes * (uint64_t)sc->slot[c], vw, &n);
        uint64_t lse_bytes = (uint64_t)(d->batch * d->heads_q * call->q_len) * 4u;
        if (st == POLYATTN_STATUS_SUCCESS &&
            (st = view_bytes(e, &e->partial_lse[call->q_chunk], lse_bytes * (uint64_t)sc->slot[c],
                             lse_bytes, &vw[n])) == POLYATTN_STATUS_SUCCESS)
            n++;
        if (st == POLYATTN_STATUS_SUCCESS) {
            st = polyattn_forward(p->plan, vw[V_Q], vw[V_K], vw[V_V], vw[V_O], vw[V_COUNT], NULL,
                                  e->workspace.buf);
            if (st) fail_ctx(e, st, "local forward");
        }
        free_views(vw, n);
    }
    return st;
}

polyattn_status pa_cp_fwd_finish(pa_cp_engine *e, const pa_cp_mem *o, const pa_cp_mem *lse)
{
    const polyattn_cp_desc *d = &e->desc;
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    uint64_t slot_elems = (uint64_t)(d->batch * d->heads_q * e->rows * d->head_dim_v);
    for (int k = 0; st == POLYATTN_STATUS_SUCCESS && k < e->n_chunks; k++) {
        int64_t row0 = pa_cp_local_row0(&e->layout, e->rank, k);
        polyattn_merge_desc md;
        polyattn_merge_desc_init(&md, d->dtype, d->dtype, e->n_slots[k], d->batch, d->heads_q,
                                 e->chunk_len[k], d->head_dim_v);
        window_desc(&md.part, d->dtype, d->batch, d->heads_q, e->chunk_len[k], e->rows,
                    d->head_dim_v);
        md.out = md.part;
        md.part_stride = (int64_t)slot_elems;
        uint64_t off = (uint64_t)(row0 * d->head_dim_v) * e->esize;
        uint64_t parts_bytes = slot_elems * e->esize * (uint64_t)(e->n_slots[k] - 1) +
                               polyattn_tensor_desc_bytes(&md.part);
        uint64_t lse_bytes = (uint64_t)(d->batch * d->heads_q * e->chunk_len[k]) * 4u;
        polyattn_buffer *vw[3];
        int n = 0;
        if ((st = view_bytes(e, &e->partial_o, off, parts_bytes, &vw[n])) == 0) n++;
        if (!st && (st = view(e, o, off, &md.out, &vw[n])) == 0) n++;
        if (!st && lse && lse->buf &&
            (st = view_bytes(e, lse, lse_chunk_offset(e, k), lse_bytes, &vw[n])) == 0)
            n++;
        if (!st) {
            st = polyattn_merge_states(e->ctx, &md, vw[0], e->partial_lse[k].buf, vw[1],
                                       n > 2 ? vw[2] : NULL);
            if (st) fail_ctx(e, st, "merge");
        }
        free_views(vw, n);
    }
    return st;
}

polyattn_status pa_cp_bwd_begin(pa_cp_engine *e)
{
    if (!e->want_backward)
        return fail(e, POLYATTN_STATUS_INVALID_ARGUMENT, "the plan was made without want_backward");
    const polyattn_cp_desc *d = &e->desc;
    polyattn_status st = e->ops->zero(
        e->user, e->dq_acc.ptr, (uint64_t)(d->batch * d->heads_q * e->rows * d->head_dim) * 4u);
    return st ? fail(e, st, "zeroing dq") : st;
}

polyattn_status pa_cp_bwd_step(pa_cp_engine *e, int step, const pa_cp_mem *q,
                               const pa_cp_mem *k_block, const pa_cp_mem *v_block,
                               const pa_cp_mem *o, const pa_cp_mem *d_o, const pa_cp_mem *lse)
{
    polyattn_status st = check_step(e, step);
    const step_calls *sc = &e->steps[step];
    const polyattn_cp_desc *d = &e->desc;
    for (int c = 0; st == POLYATTN_STATUS_SUCCESS && c < sc->n; c++) {
        const pa_cp_call *call = &sc->call[c];
        plan_entry *p = &e->plans[sc->bwd_plan[c]];
        polyattn_buffer *vw[V_COUNT + 5];
        int n = 0;
        st = call_views(e, p, call, q, k_block, v_block, o, 0, vw, &n);
        uint64_t lse_bytes = (uint64_t)(d->batch * d->heads_q * call->q_len) * 4u;
        uint64_t q_off = (uint64_t)(call->q_row0 * d->head_dim) * e->esize;
        uint64_t o_off = (uint64_t)(call->q_row0 * d->head_dim_v) * e->esize;
        uint64_t k_off = (uint64_t)(call->kv_row0 * d->head_dim) * e->esize;
        uint64_t v_off = (uint64_t)(call->kv_row0 * d->head_dim_v) * e->esize;
        if (!st && (st = view(e, d_o, o_off, &p->desc.o, &vw[n])) == 0) n++; /* 4: d_o */
        if (!st &&
            (st = view_bytes(e, lse, lse_chunk_offset(e, call->q_chunk), lse_bytes, &vw[n])) == 0)
            n++;                                                                        /* 5: lse */
        if (!st && (st = view(e, &e->dq_scratch, q_off, &p->desc.q, &vw[n])) == 0) n++; /* 6 */
        if (!st && (st = view(e, &e->dk_scratch[c], k_off, &p->desc.k, &vw[n])) == 0) n++;
        if (!st && (st = view(e, &e->dv_scratch[c], v_off, &p->desc.v, &vw[n])) == 0) n++;
        if (!st) {
            st = polyattn_backward(p->plan, vw[V_Q], vw[V_K], vw[V_V], vw[V_O], vw[4], vw[5], vw[6],
                                   vw[7], vw[8], e->workspace.buf);
            if (st) fail_ctx(e, st, "local backward");
        }
        free_views(vw, n);
    }
    return st;
}

polyattn_status pa_cp_bwd_accumulate(pa_cp_engine *e, int step, const pa_cp_mem *dk_acc,
                                     const pa_cp_mem *dv_acc)
{
    polyattn_status st = check_step(e, step);
    const step_calls *sc = &e->steps[step];
    const polyattn_cp_desc *d = &e->desc;
    int64_t kv_rows = pa_cp_engine_block_rows(e, pa_cp_block_owner(&e->layout, e->rank, step));
    for (int c = 0; st == POLYATTN_STATUS_SUCCESS && c < sc->n; c++) {
        const pa_cp_call *call = &sc->call[c];
        st = e->ops->accumulate(e->user, e->dq_acc.ptr, e->rows, call->q_row0, e->dq_scratch.ptr,
                                d->dtype, e->rows, call->q_row0, d->batch * d->heads_q, call->q_len,
                                d->head_dim);
        if (!st)
            st = e->ops->accumulate(e->user, dk_acc->ptr, kv_rows, call->kv_row0,
                                    e->dk_scratch[c].ptr, d->dtype, kv_rows, call->kv_row0,
                                    d->batch * d->heads_kv, call->kv_len, d->head_dim);
        if (!st)
            st = e->ops->accumulate(e->user, dv_acc->ptr, kv_rows, call->kv_row0,
                                    e->dv_scratch[c].ptr, d->dtype, kv_rows, call->kv_row0,
                                    d->batch * d->heads_kv, call->kv_len, d->head_dim_v);
        if (st) fail(e, st, "accumulating gradients");
    }
    return st;
}

polyattn_status pa_cp_bwd_finish(pa_cp_engine *e, const pa_cp_mem *dq)
{
    const polyattn_cp_desc *d = &e->desc;
    polyattn_status st = e->ops->store(e->user, dq->ptr, d->dtype, e->dq_acc.ptr,
                                       d->batch * d->heads_q * e->rows * d->head_dim);
    return st ? fail(e, st, "storing dq") : st;
}
