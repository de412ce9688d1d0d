/*
 * Scores of the host backend with every variant (include/polyattn.h, pa_problem), shared
 * by its forward and backward so that both see exactly the same score of a pair:
 *   raw = scale * q.k (beyond the devices' f32 range: +-inf), softcap: cap * tanh(raw / cap),
 *   then - slope * |d(i) - j| (ALiBi) + bias[b, h, i, j], then the masks: causal and window
 *   (the key range [lo, hi) of pa_visible_range), attn_mask 0 and a -inf bias mask a pair.
 * Sinks join the softmax denominator of each row (pa_host_row.sink, -inf when absent).
 */
#ifndef PA_HOST_SCORE_H
#define PA_HOST_SCORE_H

#include "pa_host_elem.h"

#include <float.h>
#include <math.h>

/* The variants' tensors of one call (NULL when the problem has no such variant). */
typedef struct pa_host_variants {
    const pa_problem *p;
    const unsigned char *slopes, *bias, *attn_mask, *sinks;
} pa_host_variants;

/* What a query row (b, h, i) needs for its scores. */
typedef struct pa_host_row {
    int64_t lo, hi;               /* keys the causal mask and the window leave visible */
    int64_t diag;                 /* d(i) */
    double slope;                 /* ALiBi slope, 0 when off */
    int64_t bias_base, mask_base; /* element index of (b, h, i, 0) */
    int has_sink;
    double sink; /* the sink logit (unscaled), -inf without sinks */
} pa_host_row;

static inline const unsigned char *pa_host_ref_ptr(const pa_tensor_ref *r)
{
    return r->mem ? (const unsigned char *)r->mem + r->offset : NULL;
}

static inline void pa_host_variants_init(pa_host_variants *v, const pa_problem *p,
                                         const pa_variant_io *io)
{
    v->p = p;
    v->slopes = p->alibi != POLYATTN_ALIBI_NONE ? pa_host_ref_ptr(&io->alibi_slopes) : NULL;
    v->bias = p->has_bias ? pa_host_ref_ptr(&io->bias) : NULL;
    v->attn_mask = p->has_attn_mask ? pa_host_ref_ptr(&io->attn_mask) : NULL;
    v->sinks = p->has_sinks ? pa_host_ref_ptr(&io->sinks) : NULL;
}

/* 1 when every tensor the problem's variants need is present. */
static inline int pa_host_variants_complete(const pa_host_variants *v)
{
    const pa_problem *p = v->p;
    return (p->alibi == POLYATTN_ALIBI_NONE || v->slopes) && (!p->has_bias || v->bias) &&
           (!p->has_attn_mask || v->attn_mask) && (!p->has_sinks || v->sinks);
}

static inline double pa_host_load_f32(const unsigned char *base, int64_t index)
{
    float f;
    memcpy(&f, base + index * 4, 4);
    return f;
}

/* The sink logit of query head h, -inf without sinks. */
static inline double pa_host_sink(const pa_host_variants *v, int64_t h)
{
    return v->sinks ? pa_host_load_f32(v->sinks, h) : -INFINITY;
}

static inline void pa_host_row_init(const pa_host_variants *v, int64_t b, int64_t h, int64_t i,
                                    pa_host_row *r)
{
    const pa_problem *p = v->p;
    pa_visible_range(p, i, &r->lo, &r->hi);
    r->diag = pa_diagonal(p, i);
    r->slope = 0.0;
    if (v->slopes)
        r->slope = pa_host_load_f32(
            v->slopes, p->alibi == POLYATTN_ALIBI_PER_BATCH_HEAD ? b * p->heads_q + h : h);
    r->bias_base = b * p->bias_stride[0] + h * p->bias_stride[1] + i * p->bias_stride[2];
    r->mask_base =
        b * p->attn_mask_stride[0] + h * p->attn_mask_stride[1] + i * p->attn_mask_stride[2];
    r->has_sink = v->sinks != NULL;
    r->sink = pa_host_sink(v, h);
}

/* Whether key j (inside [lo, hi)) is visible to the row past attn_mask and the bias;
 * *bias receives the pair's bias (0 without one). */
static inline int pa_host_pair_visible(const pa_host_variants *v, const pa_host_row *r, int64_t j,
                                       double *bias)
{
    const pa_problem *p = v->p;
    *bias = 0.0;
    if (v->attn_mask && v->attn_mask[r->mask_base + j * p->attn_mask_stride[3]] == 0) return 0;
    if (v->bias) {
        *bias = pa_host_load(v->bias, p->bias_dtype, r->bias_base + j * p->bias_stride[3]);
        if (*bias == -INFINITY) return 0;
    }
    return 1;
}

/* A value in the devices' float32 range: beyond FLT_MAX, or beyond it once multiplied by
 * log2(e) (the kernels' exp2 domain), it is +-inf (polyattn.h, "Non-finite values"). */
static inline double pa_host_f32_range(double s)
{
    if (fabs(s) * 1.4426950408889634 > FLT_MAX) return s > 0 ? INFINITY : -INFINITY;
    return s; /* NaN stays NaN */
}

/* The final score of a visible pair from q.k and its bias; *dcap (may be NULL) receives
 * d score / d (scale q.k): 1 - tanh^2 under softcap, else 1. */
static inline double pa_host_pair_score(const pa_host_variants *v, const pa_host_row *r, int64_t j,
                                        double dot_qk, double bias, double *dcap)
{
    const pa_problem *p = v->p;
    double s = (double)p->scale * dot_qk;
    if (fabs(dot_qk) > FLT_MAX) s = dot_qk > 0 ? INFINITY : -INFINITY;
    s = pa_host_f32_range(s);
    if (dcap) *dcap = 1.0;
    if (p->softcap > 0.0f) {
        const double cap = (double)p->softcap, t = tanh(s / cap);
        s = cap * t;
        if (dcap) *dcap = 1.0 - t * t;
    }
    if (v->slopes) {
        const int64_t dist = r->diag > j ? r->diag - j : j - r->diag;
        s -= r->slope * (double)dist;
    }
    return pa_host_f32_range(s + bias);
}

/* Element index of d_bias (f32 contiguous [bias_shape]) for (b, h, i, j). */
static inline int64_t pa_host_bias_grad_index(const pa_problem *p, int64_t b, int64_t h, int64_t i,
                                              int64_t j)
{
    const int64_t bb = p->bias_shape[0] == 1 ? 0 : b, hh = p->bias_shape[1] == 1 ? 0 : h;
    return ((bb * p->bias_shape[1] + hh) * p->seq_q + i) * p->seq_kv + j;
}

#endif
