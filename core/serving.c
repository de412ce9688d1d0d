/*
 * Serving layouts in the core: descriptor checks (what the host can know at plan time),
 * the problem's serving members, and the binding of their device tensors at forward.  What
 * only the device holds (offsets, lengths, block indices) is checked by the backend at
 * forward (include/polyattn.h, "What is checked where").
 */
#include "pa_core.h"
#include "host/pa_host.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define reject pa_desc_reject

/* The most keys one sequence can address: total_kv, the capacity, or the block table's. */
static int64_t kv_addressable(const polyattn_attention_desc *d)
{
    switch (d->kv_layout) {
    case POLYATTN_KV_PAGED: {
        int64_t keys;
        return __builtin_mul_overflow(d->max_blocks_per_seq, d->k.shape[2], &keys) ? INT64_MAX
                                                                                   : keys;
    }
    default: return d->k.shape[2];
    }
}

static polyattn_status check_new_tensor(const polyattn_tensor_desc *t, const char *name,
                                        const polyattn_attention_desc *d, int64_t batch,
                                        int64_t dim, const char **message)
{
    polyattn_status st = pa_tensor_validate(t, name, 0, message);
    if (st) return st;
    if (t->dtype != d->q.dtype)
        return reject(message,
                      "%s.dtype is %s but q.dtype is %s; the appended rows share the "
                      "cache's dtype",
                      name, polyattn_dtype_name(t->dtype), polyattn_dtype_name(d->q.dtype));
    const int64_t want[4] = {batch, d->k.shape[1], d->k_new.shape[2], dim};
    static const char *const what[4] = {"the number of sequences", "heads_kv",
                                        "k_new.shape[2] (seq_new)", "the cache's head dim"};
    for (int i = 0; i < 4; i++)
        if (t->shape[i] != want[i])
            return reject(message, "%s.shape[%d] is %lld but %s is %lld", name, i,
                          (long long)t->shape[i], what[i], (long long)want[i]);
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status pa_serving_check(const polyattn_attention_desc *d, int64_t *batch,
                                 const char **message)
{
    const polyattn_tensor_desc *q = &d->q, *k = &d->k;
    polyattn_status st;
    if ((int)d->kv_layout < POLYATTN_KV_DENSE || (int)d->kv_layout > POLYATTN_KV_PAGED)
        return reject(message, "kv_layout: %d is not a polyattn_kv_layout", (int)d->kv_layout);
    const int serving = d->varlen_q || d->kv_layout != POLYATTN_KV_DENSE;
    *batch = q->shape[0];
    if (d->varlen_q) {
        if (q->shape[0] != 1)
            return reject(message,
                          "q.shape[0] is %lld; with varlen_q, q and o are packed "
                          "[1, heads_q, total_q, head_dim]",
                          (long long)q->shape[0]);
        if (d->num_seqs < 1 || d->num_seqs > INT32_MAX - 1)
            return reject(message, "num_seqs: %lld; varlen_q needs 1 to 2^31 - 2 sequences",
                          (long long)d->num_seqs);
        if (q->shape[2] > INT32_MAX)
            return reject(message,
                          "q.shape[2] (total_q) is %lld; int32 cu_seqlens_q address "
                          "at most 2^31 - 1 rows",
                          (long long)q->shape[2]);
        if (d->max_seqlen_q < 0 || d->max_seqlen_q > q->shape[2])
            return reject(message, "max_seqlen_q: %lld is not in [0, total_q = %lld] (0: total_q)",
                          (long long)d->max_seqlen_q, (long long)q->shape[2]);
        *batch = d->num_seqs;
    } else if (d->num_seqs != 0 && d->num_seqs != q->shape[0]) {
        return reject(message,
                      "num_seqs: %lld but q.shape[0] (batch) is %lld; without "
                      "varlen_q, num_seqs is 0 or the batch",
                      (long long)d->num_seqs, (long long)q->shape[0]);
    }
    if (d->max_blocks_per_seq != 0 && d->kv_layout != POLYATTN_KV_PAGED)
        return reject(message, "max_blocks_per_seq: %lld but kv_layout is not paged",
                      (long long)d->max_blocks_per_seq);
    if (d->has_kv_append && d->kv_layout != POLYATTN_KV_CACHE && d->kv_layout != POLYATTN_KV_PAGED)
        return reject(message, "has_kv_append: needs a KV cache (kv_layout cache or paged)");
    if (!serving) return POLYATTN_STATUS_SUCCESS;
    if (d->has_bias || d->has_attn_mask)
        return reject(message,
                      "%s: not available with varlen or a KV cache (its [seq_q, "
                      "seq_kv] shape has no per-sequence meaning)",
                      d->has_bias ? "has_bias" : "has_attn_mask");
    const int64_t seqs = *batch;
    switch (d->kv_layout) {
    case POLYATTN_KV_DENSE:
    case POLYATTN_KV_CACHE:
        if (k->shape[0] != seqs)
            return reject(message, "k.shape[0] is %lld but the number of sequences is %lld%s",
                          (long long)k->shape[0], (long long)seqs,
                          d->varlen_q ? " (num_seqs)" : " (q.shape[0])");
        break;
    case POLYATTN_KV_VARLEN:
        if (k->shape[0] != 1)
            return reject(message,
                          "k.shape[0] is %lld; kv_layout varlen packs k and v "
                          "[1, heads_kv, total_kv, head_dim]",
                          (long long)k->shape[0]);
        break;
    case POLYATTN_KV_PAGED:
        if (k->shape[0] > INT32_MAX)
            return reject(message,
                          "k.shape[0] (num_blocks) is %lld; int32 block indices "
                          "address at most 2^31 - 1 blocks",
                          (long long)k->shape[0]);
        if (k->shape[2] % 16 != 0)
            return reject(message,
                          "k.shape[2] (block_size) is %lld; a paged cache's block size "
                          "is a multiple of 16",
                          (long long)k->shape[2]);
        if (d->max_blocks_per_seq < 1)
            return reject(message,
                          "max_blocks_per_seq: %lld; a paged cache needs at least one "
                          "block per sequence",
                          (long long)d->max_blocks_per_seq);
        if (kv_addressable(d) > INT32_MAX ||
            pa_size_mul4(seqs, d->max_blocks_per_seq, 4, 1) > (uint64_t)INT64_MAX)
            return reject(message,
                          "max_blocks_per_seq: %lld blocks of %lld keys cannot be "
                          "addressed (at most 2^31 - 1 keys a sequence, and the block table's "
                          "bytes must fit int64)",
                          (long long)d->max_blocks_per_seq, (long long)k->shape[2]);
        break;
    }
    if (k->shape[2] > INT32_MAX)
        return reject(message,
                      "k.shape[2] is %lld; int32 offsets and lengths address at most "
                      "2^31 - 1 keys",
                      (long long)k->shape[2]);
    if (d->kv_layout != POLYATTN_KV_DENSE &&
        (d->max_seqlen_kv < 0 || d->max_seqlen_kv > kv_addressable(d)))
        return reject(message,
                      "max_seqlen_kv: %lld is not in [0, %lld], the keys a sequence "
                      "can address (0: all of them)",
                      (long long)d->max_seqlen_kv, (long long)kv_addressable(d));
    if (d->has_kv_append) {
        if ((st = check_new_tensor(&d->k_new, "k_new", d, seqs, k->shape[3], message)) ||
            (st = check_new_tensor(&d->v_new, "v_new", d, seqs, d->v.shape[3], message)))
            return st;
        if (d->k_new.shape[2] > kv_addressable(d))
            return reject(message,
                          "k_new.shape[2] (seq_new) is %lld but a sequence addresses "
                          "at most %lld keys",
                          (long long)d->k_new.shape[2], (long long)kv_addressable(d));
        /* The caches are written: distinct rows must be distinct elements. */
        if ((st = pa_tensor_validate(&d->k, "k", 1, message)) ||
            (st = pa_tensor_validate(&d->v, "v", 1, message)))
            return st;
    }
    return POLYATTN_STATUS_SUCCESS;
}

void pa_serving_fill(const polyattn_attention_desc *d, pa_problem *p)
{
    p->varlen_q = d->varlen_q != 0;
    p->kv_layout = d->kv_layout;
    if (p->varlen_q) p->seq_q = d->max_seqlen_q ? d->max_seqlen_q : d->q.shape[2];
    if (p->kv_layout != POLYATTN_KV_DENSE)
        p->seq_kv = d->max_seqlen_kv ? d->max_seqlen_kv : kv_addressable(d);
    p->max_blocks_per_seq = p->kv_layout == POLYATTN_KV_PAGED ? d->max_blocks_per_seq : 0;
    p->has_kv_append = d->has_kv_append != 0;
    if (p->has_kv_append) {
        p->seq_new = d->k_new.shape[2];
        memcpy(p->k_new_stride, d->k_new.strides, sizeof p->k_new_stride);
        memcpy(p->v_new_stride, d->v_new.strides, sizeof p->v_new_stride);
    }
}

static void set_tensor(polyattn_tensor_desc *t, polyattn_dtype dtype, int64_t n0, int64_t n1,
                       int64_t n2, int64_t n3, const int64_t stride[4])
{
    t->dtype = dtype;
    t->shape[0] = n0, t->shape[1] = n1, t->shape[2] = n2, t->shape[3] = n3;
    memcpy(t->strides, stride, sizeof t->strides);
}

void pa_problem_tensors(const pa_problem *p, polyattn_tensor_desc *q, polyattn_tensor_desc *k,
                        polyattn_tensor_desc *v, polyattn_tensor_desc *o)
{
    const int64_t q_count = p->varlen_q ? 1 : p->batch;
    if (q) set_tensor(q, p->dtype, q_count, p->heads_q, p->total_q, p->head_dim, p->q_stride);
    if (k) set_tensor(k, p->dtype, p->kv_count, p->heads_kv, p->kv_rows, p->head_dim, p->k_stride);
    if (v)
        set_tensor(v, p->dtype, p->kv_count, p->heads_kv, p->kv_rows, p->head_dim_v, p->v_stride);
    if (o) set_tensor(o, p->o_dtype, q_count, p->heads_q, p->total_q, p->head_dim_v, p->o_stride);
}

uint64_t pa_problem_lse_elements(const pa_problem *p)
{
    return pa_size_mul4(p->varlen_q ? 1 : p->batch, p->heads_q, p->total_q, 1);
}

polyattn_status pa_bind_serving(polyattn_context *ctx, const pa_problem *p,
                                const polyattn_extra_tensors *caller_extra, int backward,
                                pa_serving_io *out)
{
    memset(out, 0, sizeof *out);
    polyattn_extra_tensors extra;
    polyattn_status st = pa_extra_read(ctx, caller_extra, &extra);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    const uint64_t offsets = pa_size_mul4(p->batch + 1, 4, 1, 1);
    const int cache = p->kv_layout == POLYATTN_KV_CACHE || p->kv_layout == POLYATTN_KV_PAGED;
    polyattn_tensor_desc t;
    uint64_t k_new_bytes = 0, v_new_bytes = 0;
    if (p->has_kv_append && !backward) {
        set_tensor(&t, p->dtype, p->batch, p->heads_kv, p->seq_new, p->head_dim, p->k_new_stride);
        k_new_bytes = pa_tensor_bytes(&t);
        set_tensor(&t, p->dtype, p->batch, p->heads_kv, p->seq_new, p->head_dim_v, p->v_new_stride);
        v_new_bytes = pa_tensor_bytes(&t);
    }
    pa_extra_binding b[] = {
        {"extra.cu_seqlens_q", extra.cu_seqlens_q, p->varlen_q ? offsets : 0, "varlen_q",
         &out->cu_seqlens_q},
        {"extra.cu_seqlens_kv", extra.cu_seqlens_kv,
         p->kv_layout == POLYATTN_KV_VARLEN ? offsets : 0, "kv_layout varlen", &out->cu_seqlens_kv},
        {"extra.seqused_kv", extra.seqused_kv,
         cache && !backward ? pa_size_mul(4, (uint64_t)p->batch) : 0,
         "a KV cache (kv_layout cache or paged) in a forward", &out->seqused_kv},
        {"extra.block_table", extra.block_table,
         p->kv_layout == POLYATTN_KV_PAGED && !backward
             ? pa_size_mul4(p->batch, p->max_blocks_per_seq, 4, 1)
             : 0,
         "kv_layout paged in a forward", &out->block_table},
        {"extra.k_new", extra.k_new, k_new_bytes, "has_kv_append in a forward", &out->k_new},
        {"extra.v_new", extra.v_new, v_new_bytes, "has_kv_append in a forward", &out->v_new},
    };
    return pa_bind_extra(ctx, b, sizeof b / sizeof b[0]);
}

/* check_device_inputs on a GPU backend: copy the int32 tensors back (mem_read synchronizes)
 * and run the host's checks on them, before the backend launches anything. */
polyattn_status pa_serving_check_device(polyattn_context *ctx, const pa_problem *p,
                                        const pa_serving_io *srv, int backward)
{
    if (!p->check_device_inputs || !pa_problem_serving(p) ||
        ctx->ops->kind == POLYATTN_BACKEND_HOST)
        return POLYATTN_STATUS_SUCCESS;
    const pa_tensor_ref *src[4] = {&srv->cu_seqlens_q, &srv->cu_seqlens_kv, &srv->seqused_kv,
                                   &srv->block_table};
    const uint64_t count[4] = {(uint64_t)p->batch + 1, (uint64_t)p->batch + 1, (uint64_t)p->batch,
                               (uint64_t)p->batch * (uint64_t)p->max_blocks_per_seq};
    pa_serving_io host;
    memset(&host, 0, sizeof host);
    pa_tensor_ref *dst[4] = {&host.cu_seqlens_q, &host.cu_seqlens_kv, &host.seqused_kv,
                             &host.block_table};
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    for (int i = 0; i < 4 && st == POLYATTN_STATUS_SUCCESS; i++) {
        if (!src[i]->mem) continue;
        void *copy = malloc(count[i] * 4 + 4);
        if (!copy) {
            st = pa_context_fail(ctx, POLYATTN_STATUS_OUT_OF_MEMORY, "out of host memory");
            break;
        }
        dst[i]->mem = copy;
        st = ctx->ops->mem_read(ctx->dev, src[i]->mem, src[i]->offset, copy, count[i] * 4);
    }
    if (st == POLYATTN_STATUS_SUCCESS) st = pa_serving_check_values(ctx->dev, p, &host, !backward);
    for (int i = 0; i < 4; i++)
        free(dst[i]->mem);
    return st;
}
