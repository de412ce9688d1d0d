/* Tensor and attention descriptors: constructors and validation into a pa_problem. */
#include "pa_core.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

static const char *const dim_names[4] = {"batch", "heads", "seq", "head_dim"};

void polyattn_tensor_desc_bhsd(polyattn_tensor_desc *desc, polyattn_dtype dtype, int64_t batch,
                               int64_t heads, int64_t seq, int64_t head_dim)
{
    if (!desc) return;
    desc->dtype = dtype;
    desc->shape[0] = batch, desc->shape[1] = heads, desc->shape[2] = seq, desc->shape[3] = head_dim;
    desc->strides[3] = 1;
    desc->strides[2] = head_dim;
    desc->strides[1] = seq * head_dim;
    desc->strides[0] = heads * seq * head_dim;
}

void polyattn_tensor_desc_bshd(polyattn_tensor_desc *desc, polyattn_dtype dtype, int64_t batch,
                               int64_t heads, int64_t seq, int64_t head_dim)
{
    if (!desc) return;
    desc->dtype = dtype;
    desc->shape[0] = batch, desc->shape[1] = heads, desc->shape[2] = seq, desc->shape[3] = head_dim;
    desc->strides[3] = 1;
    desc->strides[1] = head_dim;
    desc->strides[2] = heads * head_dim;
    desc->strides[0] = seq * heads * head_dim;
}

void polyattn_attention_desc_init(polyattn_attention_desc *desc, polyattn_dtype dtype,
                                  int64_t batch, int64_t heads_q, int64_t heads_kv, int64_t seq_q,
                                  int64_t seq_kv, int64_t head_dim, int64_t head_dim_v)
{
    if (!desc) return;
    memset(desc, 0, sizeof *desc);
    desc->struct_size = sizeof *desc;
    polyattn_tensor_desc_bhsd(&desc->q, dtype, batch, heads_q, seq_q, head_dim);
    polyattn_tensor_desc_bhsd(&desc->k, dtype, batch, heads_kv, seq_kv, head_dim);
    polyattn_tensor_desc_bhsd(&desc->v, dtype, batch, heads_kv, seq_kv, head_dim_v);
    polyattn_tensor_desc_bhsd(&desc->o, dtype, batch, heads_q, seq_q, head_dim_v);
    desc->scale = 0.0f;
    desc->mask = POLYATTN_MASK_NONE;
}

/* Elements spanned by the tensor, or -1 on overflow; requires valid shape and strides. */
static int64_t span_elements(const polyattn_tensor_desc *t)
{
    int64_t span = 1;
    for (int d = 0; d < 4; d++) {
        int64_t extent;
        if (__builtin_mul_overflow(t->shape[d] - 1, t->strides[d], &extent)) return -1;
        if (__builtin_add_overflow(span, extent, &span)) return -1;
    }
    return span;
}

static int dtype_valid(polyattn_dtype dt)
{
    return dt == POLYATTN_DTYPE_F32 || dt == POLYATTN_DTYPE_F16 || dt == POLYATTN_DTYPE_BF16;
}

static _Thread_local char message_buf[512];

static polyattn_status reject(const char **message, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static polyattn_status reject(const char **message, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message_buf, sizeof message_buf, fmt, ap);
    va_end(ap);
    if (message) *message = message_buf;
    return POLYATTN_STATUS_INVALID_ARGUMENT;
}

/* Shape, strides and byte size of one tensor. */
static polyattn_status check_tensor(const polyattn_tensor_desc *t, const char *name,
                                    const char **message)
{
    if (!dtype_valid(t->dtype))
        return reject(message, "%s.dtype: %d is not a polyattn_dtype", name, (int)t->dtype);
    for (int d = 0; d < 4; d++) {
        if (t->shape[d] <= 0)
            return reject(message, "%s.shape[%d] (%s) is %lld; dimensions must be positive", name,
                          d, dim_names[d], (long long)t->shape[d]);
        if (t->strides[d] < 0)
            return reject(message, "%s.strides[%d] (%s) is %lld; strides must not be negative",
                          name, d, dim_names[d], (long long)t->strides[d]);
    }
    int64_t span = span_elements(t), bytes;
    if (span < 0 || __builtin_mul_overflow(span, (int64_t)polyattn_dtype_size(t->dtype), &bytes))
        return reject(message, "%s: its byte count overflows int64 (shape x strides too large)",
                      name);
    return POLYATTN_STATUS_SUCCESS;
}

uint64_t pa_tensor_bytes(const polyattn_tensor_desc *t)
{
    if (!t || check_tensor(t, "t", NULL) != POLYATTN_STATUS_SUCCESS) return 0;
    return (uint64_t)span_elements(t) * polyattn_dtype_size(t->dtype);
}

uint64_t polyattn_tensor_desc_bytes(const polyattn_tensor_desc *desc) { return pa_tensor_bytes(desc); }

/* Distinct indices must map to distinct elements.  Sufficient test: ordered by stride,
 * each dimension's stride exceeds the span of all smaller ones. */
static polyattn_status check_no_overlap(const polyattn_tensor_desc *t, const char *name,
                                        const char **message)
{
    int order[4], n = 0;
    for (int d = 0; d < 4; d++)
        if (t->shape[d] > 1) order[n++] = d;
    for (int i = 1; i < n; i++) /* insertion sort by stride */
        for (int j = i; j > 0 && t->strides[order[j]] < t->strides[order[j - 1]]; j--) {
            int tmp = order[j];
            order[j] = order[j - 1], order[j - 1] = tmp;
        }
    int64_t span = 1; /* elements covered by the dimensions so far */
    for (int i = 0; i < n; i++) {
        int d = order[i];
        if (t->strides[d] < span)
            return reject(message,
                          "%s.strides[%d] (%s) is %lld: output elements would overlap (needs at "
                          "least %lld)",
                          name, d, dim_names[d], (long long)t->strides[d], (long long)span);
        span = t->strides[d] * (t->shape[d] - 1) + span;
    }
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status check_equal(int64_t a, int64_t b, const char *field, const char *other,
                                   const char **message)
{
    if (a == b) return POLYATTN_STATUS_SUCCESS;
    return reject(message, "%s is %lld but %s is %lld", field, (long long)a, other, (long long)b);
}

polyattn_status pa_desc_normalize(const polyattn_attention_desc *desc, pa_problem *p,
                                  const char **message)
{
    if (!desc) return reject(message, "desc: NULL");
    if (desc->struct_size < sizeof(polyattn_attention_desc))
        return reject(message, "desc.struct_size: %zu is smaller than sizeof(polyattn_attention_desc) = %zu",
                      desc->struct_size, sizeof(polyattn_attention_desc));
    const polyattn_tensor_desc *q = &desc->q, *k = &desc->k, *v = &desc->v, *o = &desc->o;
    polyattn_status st;
    if ((st = check_tensor(q, "q", message)) || (st = check_tensor(k, "k", message)) ||
        (st = check_tensor(v, "v", message)) || (st = check_tensor(o, "o", message)))
        return st;
    if (k->dtype != q->dtype || v->dtype != q->dtype || o->dtype != q->dtype) {
        const char *bad = k->dtype != q->dtype ? "k" : v->dtype != q->dtype ? "v" : "o";
        const polyattn_tensor_desc *t = k->dtype != q->dtype ? k : v->dtype != q->dtype ? v : o;
        return reject(message, "%s.dtype is %s but q.dtype is %s; all tensors share one dtype",
                      bad, polyattn_dtype_name(t->dtype), polyattn_dtype_name(q->dtype));
    }
    if ((st = check_equal(k->shape[0], q->shape[0], "k.shape[0] (batch)", "q.shape[0]", message)) ||
        (st = check_equal(v->shape[0], q->shape[0], "v.shape[0] (batch)", "q.shape[0]", message)) ||
        (st = check_equal(o->shape[0], q->shape[0], "o.shape[0] (batch)", "q.shape[0]", message)) ||
        (st = check_equal(v->shape[1], k->shape[1], "v.shape[1] (heads_kv)", "k.shape[1]", message)) ||
        (st = check_equal(o->shape[1], q->shape[1], "o.shape[1] (heads_q)", "q.shape[1]", message)) ||
        (st = check_equal(v->shape[2], k->shape[2], "v.shape[2] (seq_kv)", "k.shape[2]", message)) ||
        (st = check_equal(o->shape[2], q->shape[2], "o.shape[2] (seq_q)", "q.shape[2]", message)) ||
        (st = check_equal(k->shape[3], q->shape[3], "k.shape[3] (head_dim)", "q.shape[3]", message)) ||
        (st = check_equal(o->shape[3], v->shape[3], "o.shape[3] (head_dim_v)", "v.shape[3]", message)))
        return st;
    if (q->shape[1] % k->shape[1] != 0)
        return reject(message, "q.shape[1] (heads_q) is %lld, not a multiple of k.shape[1] (heads_kv) = %lld",
                      (long long)q->shape[1], (long long)k->shape[1]);
    if ((st = check_no_overlap(o, "o", message))) return st;
    if (isnan(desc->scale) || isinf(desc->scale) || desc->scale < 0.0f)
        return reject(message, "scale: %g is not a finite non-negative number (0 means 1/sqrt(head_dim))",
                      (double)desc->scale);
    if (desc->mask != POLYATTN_MASK_NONE && desc->mask != POLYATTN_MASK_CAUSAL_TOP_LEFT &&
        desc->mask != POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT)
        return reject(message, "mask: %d is not a polyattn_mask", (int)desc->mask);

    if (p) {
        memset(p, 0, sizeof *p);
        p->dtype = q->dtype;
        p->batch = q->shape[0];
        p->heads_q = q->shape[1];
        p->heads_kv = k->shape[1];
        p->seq_q = q->shape[2];
        p->seq_kv = k->shape[2];
        p->head_dim = q->shape[3];
        p->head_dim_v = v->shape[3];
        memcpy(p->q_stride, q->strides, sizeof p->q_stride);
        memcpy(p->k_stride, k->strides, sizeof p->k_stride);
        memcpy(p->v_stride, v->strides, sizeof p->v_stride);
        memcpy(p->o_stride, o->strides, sizeof p->o_stride);
        p->scale = desc->scale > 0.0f ? desc->scale : (float)(1.0 / sqrt((double)p->head_dim));
        p->mask = desc->mask;
    }
    if (message) *message = NULL;
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status polyattn_attention_desc_validate(const polyattn_attention_desc *desc,
                                                 const char **message)
{
    return pa_desc_normalize(desc, NULL, message);
}
