/* Tensor and attention descriptors: constructors and validation into a pa_problem. */
#include "pa_core.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <string.h>

static const char *const dim_names[4] = {"batch", "heads", "seq", "head_dim"};

/* A packed stride: the product, or INT64_MAX when it overflows (no undefined behaviour;
 * validation then rejects the tensor because its span cannot be represented). */
static int64_t stride_product(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) return INT64_MAX;
    return r;
}

void polyattn_tensor_desc_bhsd(polyattn_tensor_desc *desc, polyattn_dtype dtype, int64_t batch,
                               int64_t heads, int64_t seq, int64_t head_dim)
{
    if (!desc) return;
    desc->dtype = dtype;
    desc->shape[0] = batch, desc->shape[1] = heads, desc->shape[2] = seq, desc->shape[3] = head_dim;
    desc->strides[3] = 1;
    desc->strides[2] = head_dim;
    desc->strides[1] = stride_product(seq, head_dim);
    desc->strides[0] = stride_product(heads, desc->strides[1]);
}

void polyattn_tensor_desc_bshd(polyattn_tensor_desc *desc, polyattn_dtype dtype, int64_t batch,
                               int64_t heads, int64_t seq, int64_t head_dim)
{
    if (!desc) return;
    desc->dtype = dtype;
    desc->shape[0] = batch, desc->shape[1] = heads, desc->shape[2] = seq, desc->shape[3] = head_dim;
    desc->strides[3] = 1;
    desc->strides[1] = head_dim;
    desc->strides[2] = stride_product(heads, head_dim);
    desc->strides[0] = stride_product(seq, desc->strides[2]);
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
    /* e4m3 is an input dtype: O defaults to bf16 (FlashAttention-3's FP8 output). */
    polyattn_tensor_desc_bhsd(&desc->o, dtype == POLYATTN_DTYPE_E4M3 ? POLYATTN_DTYPE_BF16 : dtype,
                              batch, heads_q, seq_q, head_dim_v);
    desc->scale = 0.0f;
    desc->mask = POLYATTN_MASK_NONE;
    desc->window_left = desc->window_right = -1; /* has_window = 0: no window anyway */
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
    return dt == POLYATTN_DTYPE_F32 || dt == POLYATTN_DTYPE_F16 || dt == POLYATTN_DTYPE_BF16 ||
           dt == POLYATTN_DTYPE_E4M3;
}

static _Thread_local char message_buf[512];

#define reject pa_desc_reject

polyattn_status pa_desc_reject(const char **message, const char *fmt, ...)
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

uint64_t polyattn_tensor_desc_bytes(const polyattn_tensor_desc *desc)
{
    return pa_tensor_bytes(desc);
}

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

polyattn_status pa_tensor_validate(const polyattn_tensor_desc *t, const char *name, int output,
                                   const char **message)
{
    polyattn_status st = check_tensor(t, name, message);
    if (st == POLYATTN_STATUS_SUCCESS && output) st = check_no_overlap(t, name, message);
    return st;
}

static polyattn_status check_equal(int64_t a, int64_t b, const char *field, const char *other,
                                   const char **message)
{
    if (a == b) return POLYATTN_STATUS_SUCCESS;
    return reject(message, "%s is %lld but %s is %lld", field, (long long)a, other, (long long)b);
}

/* Bytes per element that any backend may hold a tensor's elements in (double scratch). */
#define WIDEST_ELEMENT 8

/* Logical element counts (shape products, whatever the strides: a broadcast K still costs
 * seq_kv rows of work and of any packed copy) must be representable at WIDEST_ELEMENT bytes
 * each in int64, and so must the work; otherwise no size derived from them can be trusted. */
static polyattn_status check_counts(const polyattn_tensor_desc *t, const char *name,
                                    const char *heads, const char *seq, const char *dim,
                                    const char **message)
{
    uint64_t bytes = pa_size_mul(pa_size_mul4(t->shape[0], t->shape[1], t->shape[2], t->shape[3]),
                                 WIDEST_ELEMENT);
    if (bytes > (uint64_t)INT64_MAX)
        return reject(message,
                      "%s: batch x %s x %s x %s = %lld x %lld x %lld x %lld elements cannot be "
                      "represented (their byte count overflows int64)",
                      name, heads, seq, dim, (long long)t->shape[0], (long long)t->shape[1],
                      (long long)t->shape[2], (long long)t->shape[3]);
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status pa_problem_check_sizes(const pa_problem *p, const char **message)
{
    uint64_t rows = pa_size_mul(pa_size_mul4(p->batch, p->heads_q, p->seq_q, 1), WIDEST_ELEMENT);
    if (p->want_probs && pa_size_mul(rows, (uint64_t)p->seq_kv) > (uint64_t)INT64_MAX)
        return reject(message,
                      "probs: batch x heads_q x seq_q x seq_kv = %lld x %lld x %lld x %lld "
                      "elements cannot be represented",
                      (long long)p->batch, (long long)p->heads_q, (long long)p->seq_q,
                      (long long)p->seq_kv);
    /* Multiply-adds: visible pairs x (head_dim + head_dim_v), as a count that fits int64.
     * Serving layouts know only bounds of their work here (each sequence's lengths are on
     * the device): a loose bound must not refuse a problem, whose true work the tensors'
     * int32-addressable sizes already keep representable. */
    if (pa_problem_serving(p)) return POLYATTN_STATUS_SUCCESS;
    double work = pa_visible_pairs(p) * ((double)p->head_dim + (double)p->head_dim_v);
    if (!(work < 9.2e18))
        return reject(message,
                      "seq_q x seq_kv: the work (%.3g multiply-adds over batch %lld, heads_q %lld, "
                      "seq_q %lld, seq_kv %lld) cannot be represented in int64",
                      work, (long long)p->batch, (long long)p->heads_q, (long long)p->seq_q,
                      (long long)p->seq_kv);
    return POLYATTN_STATUS_SUCCESS;
}

/* A bias or attn_mask tensor: [batch or 1, heads_q or 1, seq_q, seq_kv]. */
static polyattn_status check_score_tensor(const polyattn_tensor_desc *t, const char *name,
                                          const polyattn_tensor_desc *q,
                                          const polyattn_tensor_desc *k, int is_mask,
                                          const char **message)
{
    if (is_mask ? t->dtype != POLYATTN_DTYPE_U8
                : !(t->dtype == POLYATTN_DTYPE_F32 || t->dtype == POLYATTN_DTYPE_F16 ||
                    t->dtype == POLYATTN_DTYPE_BF16))
        return reject(message, "%s.dtype: %s is not %s", name, polyattn_dtype_name(t->dtype),
                      is_mask ? "u8" : "f32, f16 or bf16");
    for (int d = 0; d < 4; d++) {
        if (t->shape[d] <= 0)
            return reject(message, "%s.shape[%d] is %lld; dimensions must be positive", name, d,
                          (long long)t->shape[d]);
        if (t->strides[d] < 0)
            return reject(message, "%s.strides[%d] is %lld; strides must not be negative", name, d,
                          (long long)t->strides[d]);
    }
    if (t->shape[0] != 1 && t->shape[0] != q->shape[0])
        return reject(message, "%s.shape[0] is %lld: it must be 1 or the batch, %lld", name,
                      (long long)t->shape[0], (long long)q->shape[0]);
    if (t->shape[1] != 1 && t->shape[1] != q->shape[1])
        return reject(message, "%s.shape[1] is %lld: it must be 1 or heads_q, %lld", name,
                      (long long)t->shape[1], (long long)q->shape[1]);
    if (t->shape[2] != q->shape[2])
        return reject(message, "%s.shape[2] is %lld but seq_q is %lld", name,
                      (long long)t->shape[2], (long long)q->shape[2]);
    if (t->shape[3] != k->shape[2])
        return reject(message, "%s.shape[3] is %lld but seq_kv is %lld", name,
                      (long long)t->shape[3], (long long)k->shape[2]);
    int64_t span = span_elements(t), bytes;
    if (span < 0 || __builtin_mul_overflow(span, (int64_t)polyattn_dtype_size(t->dtype), &bytes))
        return reject(message, "%s: its byte count overflows int64 (shape x strides too large)",
                      name);
    return check_counts(t, name, "heads", "seq_q", "seq_kv", message);
}

/* The variants' members (they follow `mask`): off unless the caller's struct has them. */
static polyattn_status check_variants(const polyattn_attention_desc *d, const char **message)
{
    polyattn_status st;
    if (d->has_window && (d->window_left < -1 || d->window_right < -1))
        return reject(message,
                      "window_left/window_right: (%lld, %lld); each is -1 (unbounded) or a key "
                      "count >= 0 around the diagonal",
                      (long long)d->window_left, (long long)d->window_right);
    if (!(d->softcap >= 0.0f) || isinf(d->softcap))
        return reject(message, "softcap: %g is not a finite number >= 0 (0: off)",
                      (double)d->softcap);
    if (d->alibi != POLYATTN_ALIBI_NONE && d->alibi != POLYATTN_ALIBI_PER_HEAD &&
        d->alibi != POLYATTN_ALIBI_PER_BATCH_HEAD)
        return reject(message, "alibi: %d is not a polyattn_alibi", (int)d->alibi);
    if (d->has_bias && (st = check_score_tensor(&d->bias, "bias", &d->q, &d->k, 0, message)))
        return st;
    if (d->has_attn_mask &&
        (st = check_score_tensor(&d->attn_mask, "attn_mask", &d->q, &d->k, 1, message)))
        return st;
    return POLYATTN_STATUS_SUCCESS;
}

/* Strides of a broadcast score tensor, 0 on its dimensions of extent 1. */
static void score_strides(const polyattn_tensor_desc *t, int64_t out[4])
{
    for (int d = 0; d < 4; d++)
        out[d] = t->shape[d] == 1 ? 0 : t->strides[d];
}

/* q, k and v share one dtype; o too, except that e4m3 inputs write f16, bf16 or f32.  The
 * descales are e4m3's: finite and > 0, or 0 (1); with other dtypes only 0 or 1. */
static polyattn_status check_dtypes(const polyattn_attention_desc *d, const char **message)
{
    const polyattn_tensor_desc *q = &d->q, *k = &d->k, *v = &d->v, *o = &d->o;
    const int fp8 = q->dtype == POLYATTN_DTYPE_E4M3;
    if (k->dtype != q->dtype || v->dtype != q->dtype) {
        const int kbad = k->dtype != q->dtype;
        return reject(message,
                      "%s.dtype is %s but q.dtype is %s; q, k and v share one dtype (e4m3: all "
                      "three or none)",
                      kbad ? "k" : "v", polyattn_dtype_name(kbad ? k->dtype : v->dtype),
                      polyattn_dtype_name(q->dtype));
    }
    if (fp8 && o->dtype != POLYATTN_DTYPE_F16 && o->dtype != POLYATTN_DTYPE_BF16 &&
        o->dtype != POLYATTN_DTYPE_F32)
        return reject(message, "o.dtype is %s; with e4m3 inputs o is f16, bf16 or f32",
                      polyattn_dtype_name(o->dtype));
    if (!fp8 && o->dtype != q->dtype)
        return reject(message,
                      "o.dtype is %s but q.dtype is %s; o shares the inputs' dtype (only e4m3 "
                      "inputs write another)",
                      polyattn_dtype_name(o->dtype), polyattn_dtype_name(q->dtype));
    const float descale[3] = {d->q_descale, d->k_descale, d->v_descale};
    static const char *const names[3] = {"q_descale", "k_descale", "v_descale"};
    for (int i = 0; i < 3; i++) {
        if (fp8 && (!(descale[i] >= 0.0f) || isinf(descale[i])))
            return reject(message, "%s: %g is not a finite number > 0 (0 means 1)", names[i],
                          (double)descale[i]);
        if (!fp8 && descale[i] != 0.0f && descale[i] != 1.0f)
            return reject(message,
                          "%s: %g but q.dtype is %s; descales apply to e4m3 inputs only (0 or 1 "
                          "otherwise)",
                          names[i], (double)descale[i], polyattn_dtype_name(q->dtype));
    }
    return POLYATTN_STATUS_SUCCESS;
}

/* Bytes of the descriptor up to and including `mask`: what callers built before the
 * variants were appended pass. */
#define DESC_V1_SIZE (offsetof(polyattn_attention_desc, mask) + sizeof(polyattn_mask))

polyattn_status pa_desc_normalize(const polyattn_attention_desc *caller_desc, pa_problem *p,
                                  const char **message)
{
    if (!caller_desc) return reject(message, "desc: NULL");
    if (caller_desc->struct_size < DESC_V1_SIZE)
        return reject(message,
                      "desc.struct_size: %zu is smaller than any polyattn_attention_desc (%zu)",
                      caller_desc->struct_size, (size_t)DESC_V1_SIZE);
    /* Members past the caller's struct_size are off. */
    polyattn_attention_desc full;
    memset(&full, 0, sizeof full);
    memcpy(&full, caller_desc,
           caller_desc->struct_size < sizeof full ? caller_desc->struct_size : sizeof full);
    const polyattn_attention_desc *desc = &full;
    const polyattn_tensor_desc *q = &desc->q, *k = &desc->k, *v = &desc->v, *o = &desc->o;
    polyattn_status st;
    if ((st = check_tensor(q, "q", message)) || (st = check_tensor(k, "k", message)) ||
        (st = check_tensor(v, "v", message)) || (st = check_tensor(o, "o", message)))
        return st;
    if ((st = check_dtypes(desc, message))) return st;
    /* Serving layouts check k's and v's shape[0] (blocks, 1 or the sequences) themselves. */
    int64_t batch = q->shape[0];
    const int serving = desc->varlen_q || desc->kv_layout != POLYATTN_KV_DENSE;
    if ((st = pa_serving_check(desc, &batch, message))) return st;
    if ((st = check_equal(k->shape[0], serving ? k->shape[0] : q->shape[0], "k.shape[0] (batch)",
                          "q.shape[0]", message)) ||
        (st = check_equal(v->shape[0], serving ? k->shape[0] : q->shape[0],
                          serving ? "v.shape[0]" : "v.shape[0] (batch)",
                          serving ? "k.shape[0]" : "q.shape[0]", message)) ||
        (st = check_equal(o->shape[0], q->shape[0], "o.shape[0] (batch)", "q.shape[0]", message)) ||
        (st = check_equal(v->shape[1], k->shape[1], "v.shape[1] (heads_kv)", "k.shape[1]",
                          message)) ||
        (st = check_equal(o->shape[1], q->shape[1], "o.shape[1] (heads_q)", "q.shape[1]",
                          message)) ||
        (st =
             check_equal(v->shape[2], k->shape[2], "v.shape[2] (seq_kv)", "k.shape[2]", message)) ||
        (st = check_equal(o->shape[2], q->shape[2], "o.shape[2] (seq_q)", "q.shape[2]", message)) ||
        (st = check_equal(k->shape[3], q->shape[3], "k.shape[3] (head_dim)", "q.shape[3]",
                          message)) ||
        (st = check_equal(o->shape[3], v->shape[3], "o.shape[3] (head_dim_v)", "v.shape[3]",
                          message)))
        return st;
    if (q->shape[1] % k->shape[1] != 0)
        return reject(
            message, "q.shape[1] (heads_q) is %lld, not a multiple of k.shape[1] (heads_kv) = %lld",
            (long long)q->shape[1], (long long)k->shape[1]);
    if ((st = check_no_overlap(o, "o", message))) return st;
    if ((st = check_counts(q, "q", "heads_q", "seq_q", "head_dim", message)) ||
        (st = check_counts(k, "k", "heads_kv", "seq_kv", "head_dim", message)) ||
        (st = check_counts(v, "v", "heads_kv", "seq_kv", "head_dim_v", message)) ||
        (st = check_counts(o, "o", "heads_q", "seq_q", "head_dim_v", message)))
        return st;
    if (isnan(desc->scale) || isinf(desc->scale) || desc->scale < 0.0f)
        return reject(message,
                      "scale: %g is not a finite non-negative number (0 means 1/sqrt(head_dim))",
                      (double)desc->scale);
    if ((double)desc->scale * 1.4426950408889634 > FLT_MAX)
        return reject(message,
                      "scale: %g is too large: scale x log2(e) must stay a finite float "
                      "(at most about 2.35e38)",
                      (double)desc->scale);
    if (desc->mask != POLYATTN_MASK_NONE && desc->mask != POLYATTN_MASK_CAUSAL_TOP_LEFT &&
        desc->mask != POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT)
        return reject(message, "mask: %d is not a polyattn_mask", (int)desc->mask);
    if ((st = check_variants(desc, message))) return st;

    if (p) {
        memset(p, 0, sizeof *p);
        p->dtype = q->dtype;
        p->batch = batch;
        p->heads_q = q->shape[1];
        p->heads_kv = k->shape[1];
        p->seq_q = q->shape[2];
        p->seq_kv = k->shape[2];
        p->total_q = q->shape[2];
        p->kv_count = k->shape[0];
        p->kv_rows = k->shape[2];
        p->head_dim = q->shape[3];
        p->head_dim_v = v->shape[3];
        memcpy(p->q_stride, q->strides, sizeof p->q_stride);
        memcpy(p->k_stride, k->strides, sizeof p->k_stride);
        memcpy(p->v_stride, v->strides, sizeof p->v_stride);
        memcpy(p->o_stride, o->strides, sizeof p->o_stride);
        p->scale = desc->scale > 0.0f ? desc->scale : (float)(1.0 / sqrt((double)p->head_dim));
        p->mask = desc->mask;
        p->has_window = desc->has_window != 0;
        p->window_left = p->has_window ? desc->window_left : -1;
        p->window_right = p->has_window ? desc->window_right : -1;
        p->softcap = desc->softcap;
        p->alibi = desc->alibi;
        p->has_bias = desc->has_bias != 0;
        if (p->has_bias) {
            p->bias_dtype = desc->bias.dtype;
            memcpy(p->bias_shape, desc->bias.shape, sizeof p->bias_shape);
            score_strides(&desc->bias, p->bias_stride);
        }
        p->has_attn_mask = desc->has_attn_mask != 0;
        if (p->has_attn_mask) score_strides(&desc->attn_mask, p->attn_mask_stride);
        p->has_sinks = desc->has_sinks != 0;
        p->o_dtype = o->dtype;
        p->q_descale = desc->q_descale > 0.0f ? desc->q_descale : 1.0f;
        p->k_descale = desc->k_descale > 0.0f ? desc->k_descale : 1.0f;
        p->v_descale = desc->v_descale > 0.0f ? desc->v_descale : 1.0f;
        pa_serving_fill(desc, p);
    }
    if (message) *message = NULL;
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status polyattn_attention_desc_validate(const polyattn_attention_desc *desc,
                                                 const char **message)
{
    return pa_desc_normalize(desc, NULL, message);
}
