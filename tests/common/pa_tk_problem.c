/* Test problems: random inputs of a case, the variants' tensors, the host context of the
 * references. */
#include "pa_tk_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- problems ---- */

size_t pa_tk_span_elems(const polyattn_tensor_desc *t)
{
    return (size_t)(polyattn_tensor_desc_bytes(t) / polyattn_dtype_size(t->dtype));
}

int64_t pa_tk_elem_index(const polyattn_tensor_desc *t, int64_t b, int64_t h, int64_t s, int64_t d)
{
    return b * t->strides[0] + h * t->strides[1] + s * t->strides[2] + d * t->strides[3];
}

/* Fills the logical elements of a tensor with rounded random values; gaps stay NaN. */
double pa_tk_fill_tensor(float *dst, size_t n, const polyattn_tensor_desc *t, pa_tk_rng *rng,
                         float magnitude, polyattn_dtype dtype)
{
    int64_t b, h, s, d;
    double max_abs = 0.0;
    size_t i;
    for (i = 0; i < n; i++)
        dst[i] = NAN;
    for (b = 0; b < t->shape[0]; b++)
        for (h = 0; h < t->shape[1]; h++)
            for (s = 0; s < t->shape[2]; s++)
                for (d = 0; d < t->shape[3]; d++) {
                    float x = pa_tk_round((float)(pa_tk_rng_uniform(rng) * magnitude), dtype);
                    dst[pa_tk_elem_index(t, b, h, s, d)] = x;
                    if (fabs(x) > max_abs) max_abs = fabs(x);
                }
    return max_abs;
}

void pa_tk_problem_free(pa_tk_problem *p)
{
    free(p->q);
    free(p->k);
    free(p->v);
    free(p->q_data);
    free(p->k_data);
    free(p->v_data);
    free(p->o_gap);
    free(p->ref_o);
    free(p->ref_lse);
    free(p->ref_probs);
    free(p->slopes);
    free(p->sinks);
    free(p->bias_data);
    free(p->attn_mask);
    memset(p, 0, sizeof *p);
}

/* Elements a score tensor spans at its strides. */
static size_t score_span(const polyattn_tensor_desc *t)
{
    int64_t span = 1;
    for (int d = 0; d < 4; d++)
        span += (t->shape[d] - 1) * t->strides[d];
    return (size_t)span;
}

/* Draws the variants' tensors of a case: slopes, bias (a few -inf; NaN in gaps), mask,
 * sinks.  Returns 0 when out of memory. */
static int draw_variants(pa_tk_problem *p, pa_tk_rng *rng)
{
    const pa_tk_case *c = p->c;
    const pa_tk_variants *v = pa_tk_case_variants(c);
    const polyattn_attention_desc *d = &p->desc;
    double max_slope = 0.0, max_bias = 0.0;
    if (!v) return 1;
    if (v->alibi != POLYATTN_ALIBI_NONE) {
        p->slopes_elems = (size_t)(v->alibi == POLYATTN_ALIBI_PER_BATCH_HEAD ? c->batch * c->heads_q
                                                                             : c->heads_q);
        if (!(p->slopes = (float *)malloc(p->slopes_elems * sizeof(float)))) return 0;
        for (size_t i = 0; i < p->slopes_elems; i++) {
            p->slopes[i] = (float)(0.275 + 0.225 * pa_tk_rng_uniform(rng));
            max_slope = p->slopes[i] > max_slope ? p->slopes[i] : max_slope;
        }
    }
    if (v->sinks) {
        if (!(p->sinks = (float *)malloc((size_t)c->heads_q * sizeof(float)))) return 0;
        for (int64_t h = 0; h < c->heads_q; h++)
            p->sinks[h] = (float)(1.0 + 2.0 * pa_tk_rng_uniform(rng));
    }
    if (v->bias) {
        const polyattn_tensor_desc *t = &d->bias;
        const size_t n = score_span(t);
        float *f = (float *)malloc(n * sizeof(float));
        p->bias_bytes = n * polyattn_dtype_size(t->dtype);
        p->bias_data = malloc(p->bias_bytes);
        if (!f || !p->bias_data) {
            free(f);
            return 0;
        }
        for (size_t i = 0; i < n; i++)
            f[i] = NAN;
        for (int64_t b = 0; b < t->shape[0]; b++)
            for (int64_t h = 0; h < t->shape[1]; h++)
                for (int64_t i = 0; i < t->shape[2]; i++)
                    for (int64_t j = 0; j < t->shape[3]; j++) {
                        float x = pa_tk_round((float)(2.0 * pa_tk_rng_uniform(rng)), t->dtype);
                        if (pa_tk_rng_next(rng) % 13 == 0) x = -INFINITY;
                        else max_bias = fabs(x) > max_bias ? fabs(x) : max_bias;
                        f[pa_tk_elem_index(t, b, h, i, j)] = x;
                    }
        pa_tk_encode(p->bias_data, f, n, t->dtype);
        free(f);
        p->bias_grad_elems = (size_t)(t->shape[0] * t->shape[1] * t->shape[2] * t->shape[3]);
    }
    if (v->attn_mask) {
        const polyattn_tensor_desc *t = &d->attn_mask;
        p->attn_mask_bytes = score_span(t);
        if (!(p->attn_mask = (unsigned char *)malloc(p->attn_mask_bytes))) return 0;
        memset(p->attn_mask, 0, p->attn_mask_bytes); /* gaps */
        for (int64_t b = 0; b < t->shape[0]; b++)
            for (int64_t h = 0; h < t->shape[1]; h++)
                for (int64_t i = 0; i < t->shape[2]; i++)
                    for (int64_t j = 0; j < t->shape[3]; j++)
                        p->attn_mask[pa_tk_elem_index(t, b, h, i, j)] =
                            pa_tk_rng_next(rng) % 5 == 0
                                ? 0
                                : (unsigned char)(1 + pa_tk_rng_next(rng) % 255);
    }
    p->score_extra = max_bias + max_slope * (double)(c->seq_q > c->seq_kv ? c->seq_q : c->seq_kv);
    return 1;
}

polyattn_status pa_tk_problem_init(pa_tk_problem *p, const pa_tk_case *c, polyattn_dtype dtype,
                                   uint64_t seed)
{
    pa_tk_rng rng;
    const size_t es = polyattn_dtype_size(dtype);
    int64_t b, h, s, d;
    memset(p, 0, sizeof *p);
    p->c = c;
    p->dtype = dtype;
    pa_tk_case_desc(c, dtype, &p->desc);
    if (polyattn_attention_desc_validate(&p->desc, NULL) != POLYATTN_STATUS_SUCCESS || es == 0)
        return POLYATTN_STATUS_INVALID_ARGUMENT;
    p->q_elems = pa_tk_span_elems(&p->desc.q);
    p->k_elems = pa_tk_span_elems(&p->desc.k);
    p->v_elems = pa_tk_span_elems(&p->desc.v);
    p->o_elems = pa_tk_span_elems(&p->desc.o);
    p->lse_elems = (size_t)(c->batch * c->heads_q * c->seq_q);
    p->probs_elems = p->lse_elems * (size_t)c->seq_kv;
    p->q = (float *)malloc(p->q_elems * sizeof(float));
    p->k = (float *)malloc(p->k_elems * sizeof(float));
    p->v = (float *)malloc(p->v_elems * sizeof(float));
    p->q_data = malloc(p->q_elems * es);
    p->k_data = malloc(p->k_elems * es);
    p->v_data = malloc(p->v_elems * es);
    p->o_gap = (unsigned char *)malloc(p->o_elems);
    if (!p->q || !p->k || !p->v || !p->q_data || !p->k_data || !p->v_data || !p->o_gap) {
        pa_tk_problem_free(p);
        return POLYATTN_STATUS_OUT_OF_MEMORY;
    }
    pa_tk_rng_seed(&rng, pa_tk_hash(c->name, seed * 4 + (uint64_t)dtype));
    p->max_q = pa_tk_fill_tensor(p->q, p->q_elems, &p->desc.q, &rng, c->magnitude, dtype);
    p->max_k = pa_tk_fill_tensor(p->k, p->k_elems, &p->desc.k, &rng, c->magnitude, dtype);
    p->max_v = pa_tk_fill_tensor(p->v, p->v_elems, &p->desc.v, &rng, c->magnitude, dtype);
    pa_tk_encode(p->q_data, p->q, p->q_elems, dtype);
    pa_tk_encode(p->k_data, p->k, p->k_elems, dtype);
    pa_tk_encode(p->v_data, p->v, p->v_elems, dtype);
    if (!draw_variants(p, &rng)) {
        pa_tk_problem_free(p);
        return POLYATTN_STATUS_OUT_OF_MEMORY;
    }
    memset(p->o_gap, 1, p->o_elems);
    for (b = 0; b < c->batch; b++)
        for (h = 0; h < c->heads_q; h++)
            for (s = 0; s < c->seq_q; s++)
                for (d = 0; d < c->head_dim_v; d++)
                    p->o_gap[pa_tk_elem_index(&p->desc.o, b, h, s, d)] = 0;
    return POLYATTN_STATUS_SUCCESS;
}

/* ---- the host context of the references ---- */

static polyattn_context *host_ctx;

polyattn_context *pa_tk_host_context(void)
{
    if (!host_ctx &&
        polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &host_ctx) != POLYATTN_STATUS_SUCCESS)
        host_ctx = NULL;
    return host_ctx;
}

void pa_tk_shutdown(void)
{
    polyattn_context_destroy(host_ctx);
    host_ctx = NULL;
}
