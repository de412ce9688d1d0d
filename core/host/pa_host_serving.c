/*
 * Serving layouts on the host backend (include/polyattn.h): varlen q and k/v, dense and
 * paged KV caches with per-sequence lengths, KV append.  Three steps per call:
 *   1. check every device-resident offset, length and block index (the host can read them),
 *      failing with INVALID_ARGUMENT naming the field and the sequence before writing;
 *   2. append k_new/v_new into the caches (every sequence, in order);
 *   3. run each sequence as a dense problem of batch 1 through the host's own forward or
 *      backward (pa_host_run, pa_host_backward_*): its q, o, k and v reached by byte offsets,
 *      a paged sequence's keys gathered into a contiguous copy, a varlen LSE through a
 *      per-sequence copy.  The per-sequence masks, windows and ALiBi distances then follow
 *      from the dense code with the sequence's own lengths.
 */
#include "pa_host.h"
#include "pa_host_elem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct host_seq {
    int64_t q0, len_q;   /* rows of the packed q (varlen_q), else 0 and seq_q */
    int64_t kv0, len_kv; /* rows of the packed k (varlen kv); keys attended */
    int64_t used;        /* caches: seqused_kv[b] (appends land from here) */
} host_seq;

static unsigned char *ref_ptr(const pa_tensor_ref *r)
{
    return r->mem ? (unsigned char *)r->mem + r->offset : NULL;
}

static int32_t load_i32(const unsigned char *base, int64_t index)
{
    int32_t x;
    memcpy(&x, base + index * 4, 4);
    return x;
}

/* Offsets [batch + 1] into a packed tensor of `rows` rows; lengths at most `bound`. */
static polyattn_status check_offsets(pa_device *dev, const unsigned char *cu, int64_t batch,
                                     int64_t rows, int64_t bound, const char *name,
                                     const char *bound_name, int is_q, host_seq *seqs)
{
    for (int64_t b = 0; b <= batch; b++) {
        const int64_t at = load_i32(cu, b);
        if (at < 0)
            return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                           "%s[%lld] is %lld; offsets are non-negative", name, (long long)b,
                           (long long)at);
        if (at > rows)
            return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                           "%s[%lld] is %lld, past the %lld rows of its tensor", name, (long long)b,
                           (long long)at, (long long)rows);
        if (b == 0) continue;
        const int64_t prev = load_i32(cu, b - 1);
        if (at < prev)
            return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                           "%s[%lld] is %lld, below %s[%lld] = %lld; offsets must be "
                           "non-decreasing",
                           name, (long long)b, (long long)at, name, (long long)(b - 1),
                           (long long)prev);
        if (at - prev > bound)
            return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                           "%s: sequence %lld has %lld rows, more than %s = %lld", name,
                           (long long)(b - 1), (long long)(at - prev), bound_name,
                           (long long)bound);
        if (is_q) seqs[b - 1].q0 = prev, seqs[b - 1].len_q = at - prev;
        else seqs[b - 1].kv0 = prev, seqs[b - 1].len_kv = at - prev;
    }
    return POLYATTN_STATUS_SUCCESS;
}

/* Step 1: every sequence's rows and keys, or the first bad value. */
static polyattn_status check_lengths(pa_device *dev, const pa_problem *p, const pa_serving_io *srv,
                                     int forward, host_seq *seqs)
{
    polyattn_status st;
    const int64_t batch = p->batch;
    for (int64_t b = 0; b < batch; b++) {
        seqs[b].q0 = 0, seqs[b].len_q = p->total_q;
        seqs[b].kv0 = 0, seqs[b].len_kv = p->kv_rows, seqs[b].used = 0;
    }
    if (p->varlen_q &&
        (st = check_offsets(dev, ref_ptr(&srv->cu_seqlens_q), batch, p->total_q, p->seq_q,
                            "extra.cu_seqlens_q", "max_seqlen_q", 1, seqs)))
        return st;
    if (p->kv_layout == POLYATTN_KV_VARLEN &&
        (st = check_offsets(dev, ref_ptr(&srv->cu_seqlens_kv), batch, p->kv_rows, p->seq_kv,
                            "extra.cu_seqlens_kv", "max_seqlen_kv", 0, seqs)))
        return st;
    if (!forward || (p->kv_layout != POLYATTN_KV_CACHE && p->kv_layout != POLYATTN_KV_PAGED))
        return POLYATTN_STATUS_SUCCESS;
    const unsigned char *used = ref_ptr(&srv->seqused_kv), *table = ref_ptr(&srv->block_table);
    const int paged = p->kv_layout == POLYATTN_KV_PAGED;
    const int64_t capacity = paged ? p->max_blocks_per_seq * p->kv_rows : p->kv_rows;
    for (int64_t b = 0; b < batch; b++) {
        const int64_t u = load_i32(used, b), len = u + p->seq_new;
        if (u < 0)
            return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                           "extra.seqused_kv[%lld] is %lld; lengths are non-negative", (long long)b,
                           (long long)u);
        if (len > capacity) {
            if (p->has_kv_append)
                return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "extra.seqused_kv[%lld] is %lld: appending %lld rows runs past the "
                               "cache's end (%lld keys a sequence%s)",
                               (long long)b, (long long)u, (long long)p->seq_new,
                               (long long)capacity,
                               paged ? ", max_blocks_per_seq x block_size" : "");
            return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                           "extra.seqused_kv[%lld] is %lld, beyond the cache's capacity of %lld "
                           "keys a sequence%s",
                           (long long)b, (long long)u, (long long)capacity,
                           paged ? " (max_blocks_per_seq x block_size)" : "");
        }
        if (len > p->seq_kv)
            return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                           "extra.seqused_kv[%lld] is %lld: sequence %lld attends to %lld keys, "
                           "more than max_seqlen_kv = %lld",
                           (long long)b, (long long)u, (long long)b, (long long)len,
                           (long long)p->seq_kv);
        seqs[b].used = u, seqs[b].len_kv = len;
        if (!paged) continue;
        const int64_t blocks = (len + p->kv_rows - 1) / p->kv_rows;
        for (int64_t n = 0; n < blocks; n++) {
            const int64_t idx = load_i32(table, b * p->max_blocks_per_seq + n);
            if (idx < 0 || idx >= p->kv_count)
                return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "extra.block_table[%lld][%lld] is %lld, not a block of the cache "
                               "(num_blocks %lld); sequence %lld %s it",
                               (long long)b, (long long)n, (long long)idx, (long long)p->kv_count,
                               (long long)b,
                               n * p->kv_rows + p->kv_rows > u ? "appends to or reads" : "reads");
        }
    }
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status pa_serving_check_values(pa_device *dev, const pa_problem *p,
                                        const pa_serving_io *srv, int forward)
{
    host_seq *seqs = malloc(sizeof *seqs * (size_t)p->batch);
    if (!seqs) return pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY, "out of host memory");
    const polyattn_status st = check_lengths(dev, p, srv, forward, seqs);
    free(seqs);
    return st;
}

/* Element index of key j of sequence b, head h, in a cache (dense or paged) at stride s. */
static int64_t cache_row(const pa_problem *p, const unsigned char *table, const int64_t s[4],
                         int64_t b, int64_t h, int64_t j)
{
    if (p->kv_layout == POLYATTN_KV_PAGED) {
        const int64_t blk = load_i32(table, b * p->max_blocks_per_seq + j / p->kv_rows);
        return blk * s[0] + h * s[1] + (j % p->kv_rows) * s[2];
    }
    return b * s[0] + h * s[1] + j * s[2];
}

static void copy_elems(unsigned char *dst, int64_t di, int64_t ds, const unsigned char *src,
                       int64_t si, int64_t ss, int64_t n, size_t es)
{
    for (int64_t d = 0; d < n; d++)
        memcpy(dst + (size_t)(di + d * ds) * es, src + (size_t)(si + d * ss) * es, es);
}

/* Step 2: rows j of k_new / v_new land at key used + j of each sequence. */
static void append_rows(const pa_problem *p, const pa_io *io, const host_seq *seqs)
{
    const size_t es = polyattn_dtype_size(p->dtype);
    unsigned char *k = ref_ptr(&io->k), *v = ref_ptr(&io->v);
    const unsigned char *kn = ref_ptr(&io->srv.k_new), *vn = ref_ptr(&io->srv.v_new);
    const unsigned char *table = ref_ptr(&io->srv.block_table);
    for (int64_t b = 0; b < p->batch; b++)
        for (int64_t h = 0; h < p->heads_kv; h++)
            for (int64_t j = 0; j < p->seq_new; j++) {
                const int64_t key = seqs[b].used + j;
                const int64_t *ks = p->k_new_stride, *vs = p->v_new_stride;
                copy_elems(k, cache_row(p, table, p->k_stride, b, h, key), p->k_stride[3], kn,
                           b * ks[0] + h * ks[1] + j * ks[2], ks[3], p->head_dim, es);
                copy_elems(v, cache_row(p, table, p->v_stride, b, h, key), p->v_stride[3], vn,
                           b * vs[0] + h * vs[1] + j * vs[2], vs[3], p->head_dim_v, es);
            }
}

/* The dense problem of one sequence: batch 1, its own lengths, the variants kept. */
static void sequence_problem(const pa_problem *p, const host_seq *s, pa_problem *sub)
{
    *sub = *p;
    sub->batch = 1;
    sub->seq_q = sub->total_q = s->len_q;
    sub->seq_kv = sub->kv_rows = s->len_kv;
    sub->kv_count = 1;
    sub->varlen_q = 0;
    sub->kv_layout = POLYATTN_KV_DENSE;
    sub->max_blocks_per_seq = 0;
    sub->has_kv_append = 0, sub->seq_new = 0;
    sub->check_device_inputs = 0;
    sub->want_probs = 0;
    if (p->alibi == POLYATTN_ALIBI_PER_BATCH_HEAD) sub->alibi = POLYATTN_ALIBI_PER_HEAD;
}

static void shift(pa_tensor_ref *r, int64_t elements, size_t es)
{
    if (r->mem) r->offset += (uint64_t)elements * es;
}

/* Byte offsets of sequence b's q/o rows and k/v rows; the ALiBi slopes of its batch entry. */
static void shift_sequence(const pa_problem *p, const host_seq *s, int64_t b, pa_tensor_ref *q,
                           pa_tensor_ref *o, pa_tensor_ref *k, pa_tensor_ref *v,
                           pa_tensor_ref *slopes)
{
    const size_t es = polyattn_dtype_size(p->dtype), o_es = polyattn_dtype_size(p->o_dtype);
    if (p->varlen_q) {
        shift(q, s->q0 * p->q_stride[2], es), shift(o, s->q0 * p->o_stride[2], o_es);
    } else {
        shift(q, b * p->q_stride[0], es), shift(o, b * p->o_stride[0], o_es);
    }
    if (p->kv_layout == POLYATTN_KV_VARLEN) {
        shift(k, s->kv0 * p->k_stride[2], es), shift(v, s->kv0 * p->v_stride[2], es);
    } else if (p->kv_layout != POLYATTN_KV_PAGED) {
        shift(k, b * p->k_stride[0], es), shift(v, b * p->v_stride[0], es);
    }
    if (slopes && p->alibi == POLYATTN_ALIBI_PER_BATCH_HEAD) shift(slopes, b * p->heads_q, 4);
}

/* A paged sequence's keys and values, gathered contiguous [1, heads_kv, len_kv, d]. */
static int gather_paged(const pa_problem *p, const pa_io *io, int64_t b, const host_seq *s,
                        unsigned char **kbuf, unsigned char **vbuf, pa_problem *sub)
{
    const size_t es = polyattn_dtype_size(p->dtype);
    const int64_t n = s->len_kv, hk = p->heads_kv, dk = p->head_dim, dv = p->head_dim_v;
    const unsigned char *table = ref_ptr(&io->srv.block_table);
    const unsigned char *k = ref_ptr(&io->k), *v = ref_ptr(&io->v);
    *kbuf = malloc((size_t)(hk * n * dk) * es + 1);
    *vbuf = malloc((size_t)(hk * n * dv) * es + 1);
    if (!*kbuf || !*vbuf) return 0;
    const int64_t ks[4] = {hk * n * dk, n * dk, dk, 1}, vs[4] = {hk * n * dv, n * dv, dv, 1};
    for (int64_t h = 0; h < hk; h++)
        for (int64_t j = 0; j < n; j++) {
            copy_elems(*kbuf, h * ks[1] + j * ks[2], 1, k,
                       cache_row(p, table, p->k_stride, b, h, j), p->k_stride[3], dk, es);
            copy_elems(*vbuf, h * vs[1] + j * vs[2], 1, v,
                       cache_row(p, table, p->v_stride, b, h, j), p->v_stride[3], dv, es);
        }
    memcpy(sub->k_stride, ks, sizeof ks);
    memcpy(sub->v_stride, vs, sizeof vs);
    return 1;
}

/* LSE rows of sequence b: [batch, heads_q, seq_q] (dense q) or [heads_q, total_q] (varlen). */
static int64_t lse_index(const pa_problem *p, const host_seq *s, int64_t b, int64_t h, int64_t i)
{
    return p->varlen_q ? h * p->total_q + s->q0 + i : (b * p->heads_q + h) * p->seq_q + i;
}

polyattn_status pa_host_serving_forward(pa_device *dev, const pa_problem *p, const pa_io *io,
                                        int flash)
{
    host_seq *seqs = malloc(sizeof *seqs * (size_t)p->batch);
    if (!seqs)
        return pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY, "host: cannot allocate sequences");
    polyattn_status st = check_lengths(dev, p, &io->srv, 1, seqs);
    if (st != POLYATTN_STATUS_SUCCESS) {
        free(seqs);
        return st;
    }
    if (p->has_kv_append) append_rows(p, io, seqs);
    unsigned char *lse = p->want_lse ? ref_ptr(&io->lse) : NULL;
    float *seq_lse = NULL;
    for (int64_t b = 0; b < p->batch && st == POLYATTN_STATUS_SUCCESS; b++) {
        const host_seq *s = &seqs[b];
        if (s->len_q == 0) continue;
        pa_problem sub;
        pa_io sio = *io;
        unsigned char *kbuf = NULL, *vbuf = NULL;
        sequence_problem(p, s, &sub);
        shift_sequence(p, s, b, &sio.q, &sio.o, &sio.k, &sio.v, &sio.var.alibi_slopes);
        if (p->kv_layout == POLYATTN_KV_PAGED) {
            if (!gather_paged(p, io, b, s, &kbuf, &vbuf, &sub)) {
                free(kbuf), free(vbuf);
                st = pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY,
                             "host: cannot gather a paged sequence");
                break;
            }
            sio.k.mem = kbuf, sio.k.offset = 0, sio.v.mem = vbuf, sio.v.offset = 0;
        }
        if (lse) { /* the sequence's LSE, [heads_q, len_q], scattered back below */
            free(seq_lse);
            seq_lse = malloc((size_t)(p->heads_q * s->len_q) * sizeof *seq_lse);
            if (!seq_lse) {
                free(kbuf), free(vbuf);
                st =
                    pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY, "host: cannot allocate an LSE row");
                break;
            }
            sio.lse.mem = seq_lse, sio.lse.offset = 0;
        }
        memset(&sio.srv, 0, sizeof sio.srv);
        st = pa_host_run(dev, &sub, &sio, flash);
        if (lse && st == POLYATTN_STATUS_SUCCESS)
            for (int64_t h = 0; h < p->heads_q; h++)
                for (int64_t i = 0; i < s->len_q; i++)
                    memcpy(lse + lse_index(p, s, b, h, i) * 4, &seq_lse[h * s->len_q + i], 4);
        free(kbuf), free(vbuf);
    }
    free(seq_lse);
    free(seqs);
    return st;
}

/* Zeros every element of a tensor [n0, n1, n2, n3] at its strides. */
static void zero_tensor(unsigned char *base, polyattn_dtype dt, int64_t n0, int64_t n1, int64_t n2,
                        int64_t n3, const int64_t s[4])
{
    for (int64_t a = 0; a < n0; a++)
        for (int64_t b = 0; b < n1; b++)
            for (int64_t c = 0; c < n2; c++)
                for (int64_t d = 0; d < n3; d++)
                    pa_host_store(base, dt, a * s[0] + b * s[1] + c * s[2] + d * s[3], 0.0);
}

polyattn_status pa_host_serving_backward(pa_device *dev, const pa_problem *p, void *state,
                                         const pa_backward_io *io, pa_host_backward_fn dense)
{
    if (p->kv_layout == POLYATTN_KV_CACHE || p->kv_layout == POLYATTN_KV_PAGED || p->has_kv_append)
        return pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED,
                       "host: a KV cache and KV append are inference-only (no backward)");
    host_seq *seqs = malloc(sizeof *seqs * (size_t)p->batch);
    float *seq_lse = NULL, *seq_dsinks = NULL;
    double *dsinks = NULL;
    if (!seqs)
        return pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY, "host: cannot allocate sequences");
    polyattn_status st = check_lengths(dev, p, &io->srv, 0, seqs);
    if (st != POLYATTN_STATUS_SUCCESS) {
        free(seqs);
        return st;
    }
    if (p->has_sinks) {
        seq_dsinks = malloc((size_t)p->heads_q * sizeof *seq_dsinks);
        dsinks = calloc((size_t)p->heads_q, sizeof *dsinks);
        if (!seq_dsinks || !dsinks) {
            free(seqs), free(seq_dsinks), free(dsinks);
            return pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY, "host: cannot allocate d_sinks");
        }
    }
    /* Rows outside every sequence, and sequences without queries or keys, get zeros. */
    const int64_t q_count = p->varlen_q ? 1 : p->batch;
    zero_tensor(ref_ptr(&io->dq), p->dtype, q_count, p->heads_q, p->total_q, p->head_dim,
                p->q_stride);
    zero_tensor(ref_ptr(&io->dk), p->dtype, p->kv_count, p->heads_kv, p->kv_rows, p->head_dim,
                p->k_stride);
    zero_tensor(ref_ptr(&io->dv), p->dtype, p->kv_count, p->heads_kv, p->kv_rows, p->head_dim_v,
                p->v_stride);
    const unsigned char *lse = ref_ptr(&io->lse);
    for (int64_t b = 0; b < p->batch && st == POLYATTN_STATUS_SUCCESS; b++) {
        const host_seq *s = &seqs[b];
        if (s->len_q == 0) continue;
        pa_problem sub;
        pa_backward_io sio = *io;
        sequence_problem(p, s, &sub);
        shift_sequence(p, s, b, &sio.q, &sio.o, &sio.k, &sio.v, &sio.var.alibi_slopes);
        shift_sequence(p, s, b, &sio.dq, &sio.d_o, &sio.dk, &sio.dv, NULL);
        free(seq_lse);
        seq_lse = malloc((size_t)(p->heads_q * s->len_q) * sizeof *seq_lse);
        if (!seq_lse) {
            st = pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY, "host: cannot allocate an LSE row");
            break;
        }
        for (int64_t h = 0; h < p->heads_q; h++)
            for (int64_t i = 0; i < s->len_q; i++)
                memcpy(&seq_lse[h * s->len_q + i], lse + lse_index(p, s, b, h, i) * 4, 4);
        sio.lse.mem = seq_lse, sio.lse.offset = 0;
        if (seq_dsinks) sio.var.d_sinks.mem = seq_dsinks, sio.var.d_sinks.offset = 0;
        memset(&sio.srv, 0, sizeof sio.srv);
        st = dense(dev, &sub, state, &sio);
        if (seq_dsinks && st == POLYATTN_STATUS_SUCCESS)
            for (int64_t h = 0; h < p->heads_q; h++)
                dsinks[h] += seq_dsinks[h];
    }
    if (dsinks && st == POLYATTN_STATUS_SUCCESS)
        pa_host_store_row(ref_ptr(&io->var.d_sinks), POLYATTN_DTYPE_F32, 0, 1, dsinks, p->heads_q);
    free(seq_lse), free(seq_dsinks), free(dsinks), free(seqs);
    return st;
}
