/*
 * polyattn bench's serving rows: a dense KV cache, a paged one (shuffled block table) or
 * packed variable-length sequences.  Inputs are a function of their physical index (random,
 * never zero), so that the validation regenerates the rows it checks without a host copy of
 * a cache of gigabytes; each checked sequence is run on the host reference as its own dense
 * problem.
 */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { T_Q = 1, T_K = 2, T_V = 3 };
enum { CHUNK = 1 << 20, CHECK_ROWS = 16 };

/* Input value of element index of tensor t: uniform in [-1, 1), never 0. */
static float input_value(int t, uint64_t index)
{
    uint64_t z = index * 0x9e3779b97f4a7c15ull + (uint64_t)t * 0xd1b54a32d192ed03ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    float v = (float)(2.0 * ((double)(z >> 11) * (1.0 / 9007199254740992.0)) - 1.0);
    return v == 0.0f ? 0.5f : v;
}

/* What one measurement builds: lengths, offsets, the block table and the device tensors. */
typedef struct serving_case {
    const pa_bench_shape *sh;
    polyattn_dtype dtype;
    int64_t n, lq[PA_BENCH_MAX_SEQS], lk[PA_BENCH_MAX_SEQS];
    int32_t cu[PA_BENCH_MAX_SEQS + 1], used[PA_BENCH_MAX_SEQS];
    int32_t *table;
    int64_t max_blocks, num_blocks;
    polyattn_attention_desc desc;
    polyattn_buffer *q, *k, *v, *o, *ws, *cu_buf, *used_buf, *table_buf;
    polyattn_extra_tensors extra;
} serving_case;

static void case_free(serving_case *c)
{
    polyattn_buffer *bufs[] = {c->q, c->k, c->v, c->o, c->ws, c->cu_buf, c->used_buf, c->table_buf};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        polyattn_buffer_free(bufs[i]);
    free(c->table);
}

/* Lengths, offsets, block table and descriptor of the shape. */
static int case_build(serving_case *c, const pa_bench_shape *sh, polyattn_dtype dtype)
{
    memset(c, 0, sizeof *c);
    c->sh = sh;
    c->dtype = dtype;
    c->n = sh->batch;
    if (c->n > PA_BENCH_MAX_SEQS) return -1;
    if (sh->layout == PA_BENCH_VARLEN) {
        pa_bench_varlen_lengths(sh, c->lq);
        memcpy(c->lk, c->lq, sizeof c->lq);
    } else {
        for (int64_t b = 0; b < c->n; b++)
            c->lq[b] = sh->seq_q, c->lk[b] = sh->seq_kv, c->used[b] = (int32_t)sh->seq_kv;
    }
    c->cu[0] = 0;
    for (int64_t b = 0; b < c->n; b++)
        c->cu[b + 1] = c->cu[b] + (int32_t)c->lq[b];
    polyattn_attention_desc *d = &c->desc;
    polyattn_attention_desc_init(d, dtype, sh->batch, sh->heads_q, sh->heads_kv, sh->seq_q,
                                 sh->seq_kv, sh->head_dim, sh->head_dim_v);
    d->mask = sh->mask;
    d->num_seqs = c->n;
    if (sh->layout == PA_BENCH_VARLEN) {
        int64_t total = c->cu[c->n];
        d->varlen_q = 1;
        d->kv_layout = POLYATTN_KV_VARLEN;
        d->max_seqlen_q = d->max_seqlen_kv = sh->seq_q;
        polyattn_tensor_desc_bhsd(&d->q, dtype, 1, sh->heads_q, total, sh->head_dim);
        polyattn_tensor_desc_bhsd(&d->o, dtype, 1, sh->heads_q, total, sh->head_dim_v);
        polyattn_tensor_desc_bhsd(&d->k, dtype, 1, sh->heads_kv, total, sh->head_dim);
        polyattn_tensor_desc_bhsd(&d->v, dtype, 1, sh->heads_kv, total, sh->head_dim_v);
    } else if (sh->layout == PA_BENCH_CACHE) {
        d->kv_layout = POLYATTN_KV_CACHE;
        d->max_seqlen_kv = sh->seq_kv;
    } else {
        const int64_t bs = sh->block_size;
        d->kv_layout = POLYATTN_KV_PAGED;
        d->max_seqlen_kv = sh->seq_kv;
        c->max_blocks = (sh->seq_kv + bs - 1) / bs;
        c->num_blocks = c->n * c->max_blocks;
        d->max_blocks_per_seq = c->max_blocks;
        polyattn_tensor_desc_bhsd(&d->k, dtype, c->num_blocks, sh->heads_kv, bs, sh->head_dim);
        polyattn_tensor_desc_bhsd(&d->v, dtype, c->num_blocks, sh->heads_kv, bs, sh->head_dim_v);
        /* The blocks in a shuffled order (seeded), as an engine's allocator leaves them. */
        c->table = malloc((size_t)c->num_blocks * sizeof *c->table);
        if (!c->table) return -1;
        for (int64_t i = 0; i < c->num_blocks; i++)
            c->table[i] = (int32_t)i;
        uint64_t state = 0x7ab1e000ull + (uint64_t)bs;
        for (int64_t i = c->num_blocks - 1; i > 0; i--) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            int64_t j = (int64_t)((state >> 33) % (uint64_t)(i + 1));
            int32_t t = c->table[i];
            c->table[i] = c->table[j], c->table[j] = t;
        }
    }
    return 0;
}

/* Physical row (tensor index a, row) of key j of sequence b. */
static void key_pos(const serving_case *c, int64_t b, int64_t j, int64_t *a, int64_t *row)
{
    switch (c->sh->layout) {
    case PA_BENCH_VARLEN: *a = 0, *row = c->cu[b] + j; break;
    case PA_BENCH_PAGED:
        *a = c->table[b * c->max_blocks + j / c->sh->block_size], *row = j % c->sh->block_size;
        break;
    default: *a = b, *row = j; break;
    }
}

static int64_t elem(const polyattn_tensor_desc *t, int64_t a, int64_t h, int64_t row, int64_t x)
{
    return a * t->strides[0] + h * t->strides[1] + row * t->strides[2] + x * t->strides[3];
}

static polyattn_status upload_ints(polyattn_context *ctx, const int32_t *v, int64_t n,
                                   polyattn_buffer **buf)
{
    polyattn_status st = polyattn_buffer_alloc(ctx, (uint64_t)n * 4, buf);
    if (st != POLYATTN_STATUS_SUCCESS) {
        *buf = NULL;
        return st;
    }
    return polyattn_buffer_write(*buf, 0, v, (uint64_t)n * 4);
}

/* A tensor of input_value(t, i), in chunks through the staging memory. */
static polyattn_status upload_tensor(polyattn_context *ctx, int t, const polyattn_tensor_desc *d,
                                     polyattn_dtype dtype, float *f, void *bytes,
                                     polyattn_buffer **buf)
{
    uint64_t count = polyattn_tensor_desc_bytes(d) / polyattn_dtype_size(dtype);
    size_t esize = polyattn_dtype_size(dtype);
    polyattn_status st = polyattn_buffer_alloc(ctx, count * esize, buf);
    if (st != POLYATTN_STATUS_SUCCESS) {
        *buf = NULL;
        return st;
    }
    for (uint64_t i0 = 0; i0 < count && st == POLYATTN_STATUS_SUCCESS; i0 += CHUNK) {
        uint64_t n = count - i0 < CHUNK ? count - i0 : CHUNK;
        for (uint64_t i = 0; i < n; i++)
            f[i] = input_value(t, i0 + i);
        pa_cli_from_f32(dtype, f, bytes, n);
        st = polyattn_buffer_write(*buf, i0 * esize, bytes, n * esize);
    }
    return st;
}

/* Values as the device sees them (rounded to the dtype), in place. */
static void round_to(polyattn_dtype dtype, float *x, uint64_t n, void *tmp)
{
    pa_cli_from_f32(dtype, x, tmp, n);
    pa_cli_to_f32(dtype, tmp, x, n);
}

/* Rows [r0, r0 + m) of sequence b, checked against the host reference of the dense problem
 * they form with keys [0, keys).  Returns 0, 1 (wrong, reason filled) or -1. */
static int check_rows(pa_bench_run *b, serving_case *c, int64_t seq, int64_t r0, int64_t m,
                      int64_t keys, double *worst_err, pa_bench_result *r)
{
    const pa_bench_shape *sh = c->sh;
    const int64_t hq = sh->heads_q, hkv = sh->heads_kv, d = sh->head_dim, dv = sh->head_dim_v;
    const uint64_t nq = (uint64_t)(hq * m * d), nk = (uint64_t)(hkv * keys * d),
                   nv = (uint64_t)(hkv * keys * dv), no = (uint64_t)(hq * m * dv);
    const size_t esize = polyattn_dtype_size(c->dtype);
    float *q = malloc(nq * 4), *k = malloc((nk ? nk : 1) * 4), *v = malloc((nv ? nv : 1) * 4);
    float *ref = malloc(no * 4), *got = malloc(no * 4);
    void *tmp = malloc((nk > nq ? (nk > nv ? nk : nv) : (nq > nv ? nq : nv)) * 4 + no * 4 + 4);
    polyattn_buffer *hb[4] = {NULL, NULL, NULL, NULL};
    polyattn_plan *plan = NULL;
    polyattn_status st = POLYATTN_STATUS_OUT_OF_MEMORY;
    int rc = -1;
    if (!q || !k || !v || !ref || !got || !tmp) goto lib_failed;
    const polyattn_attention_desc *dd = &c->desc;
    const int64_t qa = sh->layout == PA_BENCH_VARLEN ? 0 : seq;
    const int64_t q0 = sh->layout == PA_BENCH_VARLEN ? c->cu[seq] : 0;
    for (int64_t h = 0; h < hq; h++)
        for (int64_t i = 0; i < m; i++)
            for (int64_t x = 0; x < d; x++)
                q[(h * m + i) * d + x] =
                    input_value(T_Q, (uint64_t)elem(&dd->q, qa, h, q0 + r0 + i, x));
    for (int64_t h = 0; h < hkv; h++)
        for (int64_t j = 0; j < keys; j++) {
            int64_t a, row;
            key_pos(c, seq, j, &a, &row);
            for (int64_t x = 0; x < d; x++)
                k[(h * keys + j) * d + x] = input_value(T_K, (uint64_t)elem(&dd->k, a, h, row, x));
            for (int64_t x = 0; x < dv; x++)
                v[(h * keys + j) * dv + x] = input_value(T_V, (uint64_t)elem(&dd->v, a, h, row, x));
        }
    round_to(c->dtype, q, nq, tmp);
    round_to(c->dtype, k, nk, tmp);
    round_to(c->dtype, v, nv, tmp);
    /* The device's rows of O. */
    for (int64_t h = 0; h < hq; h++) {
        uint64_t off = (uint64_t)elem(&dd->o, qa, h, q0 + r0, 0) * esize;
        if ((st = polyattn_buffer_read(c->o, off, tmp, (uint64_t)(m * dv) * esize)))
            goto lib_failed;
        pa_cli_to_f32(c->dtype, tmp, got + h * m * dv, (uint64_t)(m * dv));
    }
    /* The host reference: the dense problem of these rows and keys (bottom-right aligned,
     * so each row keeps its diagonal). */
    polyattn_attention_desc hd;
    polyattn_attention_desc_init(&hd, POLYATTN_DTYPE_F32, 1, hq, hkv, m, keys, d, dv);
    hd.mask = sh->mask;
    const float *src[3] = {q, k, v};
    const uint64_t cnt[4] = {nq, nk, nv, no};
    for (int t = 0; t < 4; t++)
        if ((st = polyattn_buffer_alloc(b->host, (cnt[t] ? cnt[t] : 1) * 4, &hb[t])) ||
            (t < 3 && cnt[t] && (st = polyattn_buffer_write(hb[t], 0, src[t], cnt[t] * 4))))
            goto lib_failed;
    polyattn_plan_options opts;
    polyattn_plan_options_init(&opts);
    if ((st = polyattn_plan_create(b->host, &hd, &opts, &plan)) ||
        (st = polyattn_forward(plan, hb[0], hb[1], hb[2], hb[3], NULL, NULL, NULL)) ||
        (st = polyattn_buffer_read(hb[3], 0, ref, no * 4)))
        goto lib_failed;
    double max_ref = 0, max_diff = 0;
    uint64_t worst = 0;
    for (uint64_t i = 0; i < no; i++) {
        double diff = fabs((double)got[i] - (double)ref[i]);
        if (fabs((double)ref[i]) > max_ref) max_ref = fabs((double)ref[i]);
        if (!(diff <= max_diff)) max_diff = diff, worst = i; /* NaN: the worst */
    }
    double err = max_diff / (max_ref > 0 ? max_ref : 1);
    if (!(err <= *worst_err)) *worst_err = err;
    r->rows_checked += (int)(hq * m);
    rc = 0;
    if (!(err <= pa_bench_tolerance(c->dtype))) {
        int64_t row = (int64_t)worst / dv;
        snprintf(r->reason, sizeof r->reason,
                 "wrong result: sequence %lld head %lld row %lld col %lld: got %g, host "
                 "reference %g (error %.3g of max |O|, tolerance %.1g)",
                 (long long)seq, (long long)(row / m), (long long)(r0 + row % m),
                 (long long)((int64_t)worst % dv), (double)got[worst], (double)ref[worst], err,
                 pa_bench_tolerance(c->dtype));
        rc = 1;
    }
    goto out;
lib_failed:
    pa_bench_lib_reason(r, b->host, st, "host reference");
out:
    polyattn_plan_destroy(plan);
    for (int t = 0; t < 4; t++)
        polyattn_buffer_free(hb[t]);
    free(q), free(k), free(v), free(ref), free(got), free(tmp);
    return rc;
}

/* The first and last CHECK_ROWS rows of the first and last sequences. */
static int validate(pa_bench_run *b, serving_case *c, pa_bench_result *r)
{
    const int64_t seqs[2] = {0, c->n - 1};
    for (int s = 0; s < (c->n > 1 ? 2 : 1); s++) {
        const int64_t b_ = seqs[s], lq = c->lq[b_], lk = c->lk[b_];
        const int64_t m = lq < CHECK_ROWS ? lq : CHECK_ROWS;
        if (m == 0) continue;
        /* The last rows see every key; the first ones the keys up to their diagonal. */
        int rc = check_rows(b, c, b_, lq - m, m, lk, &r->max_err, r);
        if (rc == 0 && lq > m) {
            int64_t keys = c->sh->mask == POLYATTN_MASK_NONE ? lk : m + lk - lq;
            rc = check_rows(b, c, b_, 0, m, keys, &r->max_err, r);
        }
        if (rc) return rc;
    }
    return 0;
}

typedef struct serving_call {
    polyattn_plan *plan;
    serving_case *c;
} serving_call;

static polyattn_status serving_call_fn(void *arg, int i)
{
    (void)i;
    serving_call *s = arg;
    serving_case *c = s->c;
    return polyattn_forward_ex(s->plan, c->q, c->k, c->v, c->o, NULL, NULL, c->ws, &c->extra);
}

/* Visible (query, key) pairs of one sequence under the shape's mask. */
static double visible_pairs(polyattn_mask mask, int64_t lq, int64_t lk)
{
    if (mask == POLYATTN_MASK_NONE) return (double)lq * (double)lk;
    double pairs = 0;
    for (int64_t i = 0; i < lq; i++) {
        int64_t last = mask == POLYATTN_MASK_CAUSAL_TOP_LEFT ? i : i + lk - lq;
        int64_t seen = last + 1 < lk ? last + 1 : lk;
        pairs += seen > 0 ? (double)seen : 0;
    }
    return pairs;
}

void pa_bench_measure_serving(pa_bench_run *b, const pa_bench_shape *sh, polyattn_dtype dtype,
                              polyattn_algo algo, pa_bench_result *r)
{
    memset(r, 0, sizeof *r);
    r->shape = *sh;
    r->dtype = dtype;
    r->algo_asked = r->algo = algo;
    serving_case c;
    polyattn_plan *plan = NULL;
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    float *f = NULL;
    void *bytes = NULL;
    if (b->backward) {
        r->status = PA_BENCH_SKIPPED;
        snprintf(r->reason, sizeof r->reason, "the serving rows time the forward only");
        return;
    }
    if (dtype == POLYATTN_DTYPE_E4M3) {
        r->status = PA_BENCH_SKIPPED;
        snprintf(r->reason, sizeof r->reason, "the serving rows take f32, f16 and bf16");
        return;
    }
    if (case_build(&c, sh, dtype)) {
        r->status = PA_BENCH_ERROR;
        snprintf(r->reason, sizeof r->reason, "out of host memory (or over %d sequences)",
                 PA_BENCH_MAX_SEQS);
        goto done;
    }
    polyattn_plan_options opts;
    polyattn_plan_options_init(&opts);
    opts.algo = algo;
    opts.memory_budget_bytes = b->budget;
    if ((st = polyattn_plan_create(b->ctx, &c.desc, &opts, &plan)) != POLYATTN_STATUS_SUCCESS) {
        plan = NULL;
        r->status = (st == POLYATTN_STATUS_UNSUPPORTED || st == POLYATTN_STATUS_OVER_BUDGET)
                        ? PA_BENCH_SKIPPED
                        : PA_BENCH_ERROR;
        pa_bench_lib_reason(r, b->ctx, st, "plan");
        goto done;
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if ((st = polyattn_plan_get_info(plan, &info)) != POLYATTN_STATUS_SUCCESS) {
        r->status = PA_BENCH_ERROR;
        pa_bench_lib_reason(r, b->ctx, st, "plan info");
        goto done;
    }
    r->algo = info.algo;
    r->mem_estimate = info.device_bytes;
    r->workspace_bytes = info.workspace_bytes;
    r->num_splits = info.num_splits;

    polyattn_memory_stats before, after;
    const size_t esize = polyattn_dtype_size(dtype);
    const uint64_t o_count = polyattn_tensor_desc_bytes(&c.desc.o) / esize;
    f = malloc((size_t)CHUNK * 4);
    bytes = malloc((size_t)CHUNK * 4);
    if (!f || !bytes) {
        st = POLYATTN_STATUS_OUT_OF_MEMORY;
        goto alloc_failed;
    }
    if ((st = polyattn_context_memory_stats(b->ctx, 1, &before)) ||
        (st = upload_tensor(b->ctx, T_Q, &c.desc.q, dtype, f, bytes, &c.q)) ||
        (st = upload_tensor(b->ctx, T_K, &c.desc.k, dtype, f, bytes, &c.k)) ||
        (st = upload_tensor(b->ctx, T_V, &c.desc.v, dtype, f, bytes, &c.v)) ||
        (st = polyattn_buffer_alloc(b->ctx, o_count * esize, &c.o)) ||
        (info.workspace_bytes && (st = polyattn_buffer_alloc(b->ctx, info.workspace_bytes, &c.ws))))
        goto alloc_failed;
    memset(&c.extra, 0, sizeof c.extra);
    c.extra.struct_size = sizeof c.extra;
    if (sh->layout == PA_BENCH_VARLEN) {
        if ((st = upload_ints(b->ctx, c.cu, c.n + 1, &c.cu_buf))) goto alloc_failed;
        c.extra.cu_seqlens_q = c.extra.cu_seqlens_kv = c.cu_buf;
    } else {
        if ((st = upload_ints(b->ctx, c.used, c.n, &c.used_buf))) goto alloc_failed;
        c.extra.seqused_kv = c.used_buf;
        if (sh->layout == PA_BENCH_PAGED) {
            if ((st = upload_ints(b->ctx, c.table, c.num_blocks, &c.table_buf))) goto alloc_failed;
            c.extra.block_table = c.table_buf;
        }
    }
    /* O poisoned (NaN) in chunks: a row the algorithm forgets cannot pass. */
    for (uint64_t i = 0; i < (o_count < CHUNK ? o_count : CHUNK); i++)
        f[i] = NAN;
    pa_cli_from_f32(dtype, f, bytes, o_count < CHUNK ? o_count : CHUNK);
    for (uint64_t i0 = 0; i0 < o_count && !st; i0 += CHUNK)
        st = polyattn_buffer_write(c.o, i0 * esize, bytes,
                                   (o_count - i0 < CHUNK ? o_count - i0 : CHUNK) * esize);
    serving_call call = {plan, &c};
    double t0 = pa_bench_now_seconds();
    if (st || (st = serving_call_fn(&call, 0)) ||
        (st = polyattn_context_synchronize(b->ctx)) != POLYATTN_STATUS_SUCCESS) {
        r->status = PA_BENCH_ERROR;
        pa_bench_lib_reason(r, b->ctx, st, "forward");
        goto done;
    }
    double first_call_s = pa_bench_now_seconds() - t0;
    int v = validate(b, &c, r);
    if (v != 0) {
        r->status = v > 0 ? PA_BENCH_INVALID : PA_BENCH_ERROR;
        goto done;
    }
    int reps, warmup;
    pa_bench_cap_reps(b, first_call_s, &reps, &warmup);
    if (pa_bench_time_calls(b, serving_call_fn, &call, warmup, reps, r) != 0) {
        r->status = PA_BENCH_ERROR;
        goto done;
    }
    if ((st = polyattn_context_memory_stats(b->ctx, 0, &after)) != POLYATTN_STATUS_SUCCESS) {
        r->status = PA_BENCH_ERROR;
        pa_bench_lib_reason(r, b->ctx, st, "memory stats");
        goto done;
    }
    /* Q and O once, and the keys and values each sequence uses, once. */
    double moved = 0, flops = 0;
    for (int64_t s = 0; s < c.n; s++) {
        moved += (double)(c.lq[s] * sh->heads_q * (sh->head_dim + sh->head_dim_v) +
                          c.lk[s] * sh->heads_kv * (sh->head_dim + sh->head_dim_v)) *
                 (double)esize;
        flops += 2.0 * (double)(sh->head_dim + sh->head_dim_v) * (double)sh->heads_q *
                 visible_pairs(sh->mask, c.lq[s], c.lk[s]);
    }
    if (r->ms > 0) {
        r->tflops = flops / (r->ms * 1e-3) / 1e12;
        r->gbps = moved / (r->ms * 1e-3) / 1e9;
    }
    r->mem_bytes = after.peak_bytes - before.current_bytes;
    r->status = PA_BENCH_OK;
    goto done;
alloc_failed:
    r->status = st == POLYATTN_STATUS_OUT_OF_MEMORY ? PA_BENCH_SKIPPED : PA_BENCH_ERROR;
    pa_bench_lib_reason(r, b->ctx, st, "inputs");
done:
    free(f);
    free(bytes);
    polyattn_plan_destroy(plan);
    case_free(&c);
}
