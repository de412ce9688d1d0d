/*
 * Test data, conversions, the reference and the comparison shared by tests and bench.
 *
 * Tolerances (pa_tk_tolerance_for), relative to max|ref O| because O is a convex
 * combination of V rows, so its scale is that of V; an element-wise relative error would
 * blow up on outputs that average to ~0:
 *   f32   1e-4: devices accumulate in f32 (unit roundoff 6e-8); an exp / division /
 *         reduction-order difference stays ~1e-6, so 1e-4 passes honest kernels yet
 *         catches TF32 GEMMs (10-bit mantissa, ~1e-3) and lost terms.
 *   f16   5e-3: inputs are the same rounded values on both sides; O is rounded to f16
 *         (2^-11 = 4.9e-4 relative) and kernels may round P to f16 before P V (another
 *         ~4.9e-4); 10x margin.
 *   bf16  3e-2: the same with an 8-bit significand (2^-8 = 3.9e-3 per rounding).
 * Plus a conditioning term: the f32 scores themselves carry an error of about
 * eps_s = 2^-24 * scale * head_dim * max|q| * max|k| (a ~4x over-estimate of the random
 * walk of a length-head_dim dot product), and softmax turns a score error eps_s into at
 * most 2 * eps_s * max|V| in O.  Negligible at magnitude 1, it matters for the x30
 * cases, where scores are in the hundreds and exp() amplifies every ulp.
 */
#include "pa_testkit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- random numbers ---- */

void pa_tk_rng_seed(pa_tk_rng *rng, uint64_t seed)
{
    rng->state = seed;
}

uint64_t pa_tk_rng_next(pa_tk_rng *rng)
{
    uint64_t z = (rng->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double pa_tk_rng_uniform(pa_tk_rng *rng)
{
    /* 53 random bits -> [0, 1) -> [-1, 1) */
    return (double)(pa_tk_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
}

uint64_t pa_tk_hash(const char *text, uint64_t salt)
{
    uint64_t h = 1469598103934665603ull ^ (salt * 0x9E3779B97F4A7C15ull); /* FNV-1a */
    for (; text && *text; text++) {
        h ^= (unsigned char)*text;
        h *= 1099511628211ull;
    }
    return h;
}

/* ---- conversions: written with frexp/nearbyint, deliberately not with the bit tricks
 * the core uses, so that a test can compare the two ---- */

uint16_t pa_tk_f32_to_f16(float x)
{
    const uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x), mant;
    int e;
    if (isnan(x))
        return sign | 0x7E00;
    if (a >= 65520.0) /* halfway between 65504 and 2^16 ties to even: infinity */
        return sign | 0x7C00;
    if (a < ldexp(1.0, -14)) /* subnormal: multiples of 2^-24; 1024 carries to 2^-14 */
        return (uint16_t)(sign | (uint16_t)nearbyint(ldexp(a, 24)));
    (void)frexp(a, &e); /* a = f * 2^e, f in [0.5, 1) */
    e -= 1;             /* a = s * 2^e, s in [1, 2) */
    mant = nearbyint((ldexp(a, -e) - 1.0) * 1024.0);
    if (mant >= 1024.0) {
        mant = 0.0;
        e += 1;
    }
    if (e + 15 >= 31)
        return sign | 0x7C00;
    return (uint16_t)(sign | (uint16_t)((e + 15) << 10) | (uint16_t)mant);
}

float pa_tk_f16_to_f32(uint16_t h)
{
    const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double v;
    if (e == 0)
        v = ldexp((double)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexp(1.0 + m / 1024.0, e - 15);
    return (float)((h & 0x8000) ? -v : v);
}

uint16_t pa_tk_f32_to_bf16(float x)
{
    const uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x), mant;
    int e;
    if (isnan(x))
        return sign | 0x7FC0;
    if (isinf(x))
        return sign | 0x7F80;
    if (a < ldexp(1.0, -126)) /* f32 subnormal: multiples of 2^-133 */
        return (uint16_t)(sign | (uint16_t)nearbyint(ldexp(a, 133)));
    (void)frexp(a, &e);
    e -= 1;
    mant = nearbyint((ldexp(a, -e) - 1.0) * 128.0);
    if (mant >= 128.0) {
        mant = 0.0;
        e += 1;
    }
    if (e + 127 >= 255)
        return sign | 0x7F80;
    return (uint16_t)(sign | (uint16_t)((e + 127) << 7) | (uint16_t)mant);
}

float pa_tk_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float pa_tk_round(float x, polyattn_dtype dtype)
{
    switch (dtype) {
    case POLYATTN_DTYPE_F16: return pa_tk_f16_to_f32(pa_tk_f32_to_f16(x));
    case POLYATTN_DTYPE_BF16: return pa_tk_bf16_to_f32(pa_tk_f32_to_bf16(x));
    default: return x;
    }
}

void pa_tk_encode(void *dst, const float *src, size_t n, polyattn_dtype dtype)
{
    size_t i;
    if (dtype == POLYATTN_DTYPE_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (i = 0; i < n; i++) {
        uint16_t h = dtype == POLYATTN_DTYPE_F16 ? pa_tk_f32_to_f16(src[i]) : pa_tk_f32_to_bf16(src[i]);
        memcpy((unsigned char *)dst + 2 * i, &h, 2);
    }
}

void pa_tk_decode(float *dst, const void *src, size_t n, polyattn_dtype dtype)
{
    size_t i;
    if (dtype == POLYATTN_DTYPE_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    for (i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, (const unsigned char *)src + 2 * i, 2);
        dst[i] = dtype == POLYATTN_DTYPE_F16 ? pa_tk_f16_to_f32(h) : pa_tk_bf16_to_f32(h);
    }
}

/* Quiet NaNs with a recognizable payload: an untouched gap still holds exactly these. */
void pa_tk_poison(void *dst, size_t n, polyattn_dtype dtype)
{
    size_t i;
    if (dtype == POLYATTN_DTYPE_F32) {
        const uint32_t pat = 0x7FC5A5A5u;
        for (i = 0; i < n; i++)
            memcpy((unsigned char *)dst + 4 * i, &pat, 4);
    } else {
        const uint16_t pat = dtype == POLYATTN_DTYPE_F16 ? 0x7E5A : 0x7FC5;
        for (i = 0; i < n; i++)
            memcpy((unsigned char *)dst + 2 * i, &pat, 2);
    }
}

pa_tk_tolerance pa_tk_tolerance_for(polyattn_dtype dtype)
{
    pa_tk_tolerance t;
    switch (dtype) {
    case POLYATTN_DTYPE_F16:
        t.o_rel = 5e-3, t.lse_rel = 1e-3, t.probs_abs = 1e-3;
        break;
    case POLYATTN_DTYPE_BF16:
        t.o_rel = 3e-2, t.lse_rel = 8e-3, t.probs_abs = 8e-3;
        break;
    default:
        /* LSE and P see only the f32 scores: no output rounding on top. */
        t.o_rel = 1e-4, t.lse_rel = 2e-5, t.probs_abs = 1e-5;
        break;
    }
    return t;
}

/* ---- problems ---- */

static size_t span_elems(const polyattn_tensor_desc *t)
{
    return (size_t)(polyattn_tensor_desc_bytes(t) / polyattn_dtype_size(t->dtype));
}

static int64_t elem_index(const polyattn_tensor_desc *t, int64_t b, int64_t h, int64_t s, int64_t d)
{
    return b * t->strides[0] + h * t->strides[1] + s * t->strides[2] + d * t->strides[3];
}

/* Fills the logical elements of a tensor with rounded random values; gaps stay NaN. */
static double fill_tensor(float *dst, size_t n, const polyattn_tensor_desc *t, pa_tk_rng *rng,
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
                    dst[elem_index(t, b, h, s, d)] = x;
                    if (fabs(x) > max_abs)
                        max_abs = fabs(x);
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
    for (int d = 0; d < 4; d++) span += (t->shape[d] - 1) * t->strides[d];
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
        for (int64_t h = 0; h < c->heads_q; h++) p->sinks[h] = (float)(1.0 + 2.0 * pa_tk_rng_uniform(rng));
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
        for (size_t i = 0; i < n; i++) f[i] = NAN;
        for (int64_t b = 0; b < t->shape[0]; b++)
            for (int64_t h = 0; h < t->shape[1]; h++)
                for (int64_t i = 0; i < t->shape[2]; i++)
                    for (int64_t j = 0; j < t->shape[3]; j++) {
                        float x = pa_tk_round((float)(2.0 * pa_tk_rng_uniform(rng)), t->dtype);
                        if (pa_tk_rng_next(rng) % 13 == 0) x = -INFINITY;
                        else max_bias = fabs(x) > max_bias ? fabs(x) : max_bias;
                        f[elem_index(t, b, h, i, j)] = x;
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
                        p->attn_mask[elem_index(t, b, h, i, j)] =
                            pa_tk_rng_next(rng) % 5 == 0 ? 0 : (unsigned char)(1 + pa_tk_rng_next(rng) % 255);
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
    p->q_elems = span_elems(&p->desc.q);
    p->k_elems = span_elems(&p->desc.k);
    p->v_elems = span_elems(&p->desc.v);
    p->o_elems = span_elems(&p->desc.o);
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
    p->max_q = fill_tensor(p->q, p->q_elems, &p->desc.q, &rng, c->magnitude, dtype);
    p->max_k = fill_tensor(p->k, p->k_elems, &p->desc.k, &rng, c->magnitude, dtype);
    p->max_v = fill_tensor(p->v, p->v_elems, &p->desc.v, &rng, c->magnitude, dtype);
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
                    p->o_gap[elem_index(&p->desc.o, b, h, s, d)] = 0;
    return POLYATTN_STATUS_SUCCESS;
}

/* ---- the host context of the references ---- */

static polyattn_context *host_ctx;

polyattn_context *pa_tk_host_context(void)
{
    if (!host_ctx && polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &host_ctx) != POLYATTN_STATUS_SUCCESS)
        host_ctx = NULL;
    return host_ctx;
}

void pa_tk_shutdown(void)
{
    polyattn_context_destroy(host_ctx);
    host_ctx = NULL;
}

/* ---- running through the public API ---- */

typedef struct run_buffers {
    polyattn_buffer *q, *k, *v, *o, *lse, *probs, *ws;
} run_buffers;

static void free_buffers(run_buffers *b)
{
    polyattn_buffer_free(b->q);
    polyattn_buffer_free(b->k);
    polyattn_buffer_free(b->v);
    polyattn_buffer_free(b->o);
    polyattn_buffer_free(b->lse);
    polyattn_buffer_free(b->probs);
    polyattn_buffer_free(b->ws);
    memset(b, 0, sizeof *b);
}

static polyattn_status alloc_write(polyattn_context *ctx, uint64_t bytes, const void *src,
                                   polyattn_buffer **buf)
{
    polyattn_status st = polyattn_buffer_alloc(ctx, bytes, buf);
    if (st == POLYATTN_STATUS_SUCCESS && src)
        st = polyattn_buffer_write(*buf, 0, src, bytes);
    return st;
}

/* The variants' tensors of a problem on ctx (and, for a backward, poisoned d_bias and
 * d_sinks); e->ex is what polyattn_forward_ex/backward_ex take. */
typedef struct extra_buffers {
    polyattn_buffer *slopes, *bias, *attn_mask, *sinks, *d_bias, *d_sinks;
    polyattn_extra_tensors ex;
} extra_buffers;

static void extra_free(extra_buffers *e)
{
    polyattn_buffer_free(e->slopes);
    polyattn_buffer_free(e->bias);
    polyattn_buffer_free(e->attn_mask);
    polyattn_buffer_free(e->sinks);
    polyattn_buffer_free(e->d_bias);
    polyattn_buffer_free(e->d_sinks);
    memset(e, 0, sizeof *e);
}

static polyattn_status extra_upload(polyattn_context *ctx, const pa_tk_problem *p, int backward,
                                    extra_buffers *e)
{
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    memset(e, 0, sizeof *e);
    e->ex.struct_size = sizeof e->ex;
    if (p->slopes && (st = alloc_write(ctx, p->slopes_elems * 4, p->slopes, &e->slopes))) return st;
    if (p->bias_data && (st = alloc_write(ctx, p->bias_bytes, p->bias_data, &e->bias))) return st;
    if (p->attn_mask && (st = alloc_write(ctx, p->attn_mask_bytes, p->attn_mask, &e->attn_mask)))
        return st;
    if (p->sinks && (st = alloc_write(ctx, (size_t)p->c->heads_q * 4, p->sinks, &e->sinks)))
        return st;
    if (backward) {
        const size_t n = p->bias_grad_elems > (size_t)p->c->heads_q ? p->bias_grad_elems
                                                                    : (size_t)p->c->heads_q;
        float *poison = (float *)malloc(n * 4);
        if (!poison) return POLYATTN_STATUS_OUT_OF_MEMORY;
        pa_tk_poison(poison, n, POLYATTN_DTYPE_F32);
        if (p->bias_data) st = alloc_write(ctx, p->bias_grad_elems * 4, poison, &e->d_bias);
        if (!st && p->sinks) st = alloc_write(ctx, (size_t)p->c->heads_q * 4, poison, &e->d_sinks);
        free(poison);
        if (st) return st;
    }
    e->ex.alibi_slopes = e->slopes, e->ex.bias = e->bias, e->ex.attn_mask = e->attn_mask;
    e->ex.sinks = e->sinks, e->ex.d_bias = e->d_bias, e->ex.d_sinks = e->d_sinks;
    return st;
}

/* Plans and runs one forward of the problem's inputs (in `dtype` storage given by desc),
 * leaving raw results in o_raw / lse / probs.  *plan_status distinguishes a rejected
 * plan from a failed run. */
static polyattn_status run_once(polyattn_context *ctx, const polyattn_attention_desc *desc,
                                const void *q, const void *k, const void *v, size_t q_bytes,
                                size_t k_bytes, size_t v_bytes, size_t o_bytes, size_t lse_elems,
                                size_t probs_elems, polyattn_algo algo, int want_lse,
                                int want_probs, void *o_raw, float *lse, float *probs,
                                int check_inputs, const pa_tk_problem *vp, pa_tk_result *r,
                                int *planned)
{
    polyattn_plan_options opt;
    polyattn_plan_info info;
    polyattn_plan *plan = NULL;
    run_buffers b;
    extra_buffers e;
    polyattn_status st;
    void *poison = NULL;
    const char *stage = "plan";
    memset(&b, 0, sizeof b);
    memset(&e, 0, sizeof e);
    *planned = 0;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_lse = want_lse;
    opt.want_probs = want_probs;
    st = polyattn_plan_create(ctx, desc, &opt, &plan);
    if (st != POLYATTN_STATUS_SUCCESS) {
        snprintf(r->message, sizeof r->message, "%s", polyattn_context_last_error(ctx));
        return st;
    }
    *planned = 1;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if ((st = polyattn_plan_get_info(plan, &info)) != POLYATTN_STATUS_SUCCESS)
        goto fail;
    r->algo = info.algo;
    r->workspace_bytes = info.workspace_bytes;
    stage = "buffers";
    if ((st = alloc_write(ctx, q_bytes, q, &b.q)) || (st = alloc_write(ctx, k_bytes, k, &b.k)) ||
        (st = alloc_write(ctx, v_bytes, v, &b.v)) || (st = extra_upload(ctx, vp, 0, &e)))
        goto fail;
    /* Poison every output (and the workspace) so unwritten elements show up as NaN. */
    {
        size_t poison_bytes = o_bytes;
        size_t n = 0;
        if (want_probs && probs_elems * 4 > poison_bytes)
            poison_bytes = probs_elems * 4;
        if (want_lse && lse_elems * 4 > poison_bytes)
            poison_bytes = lse_elems * 4;
        if (info.workspace_bytes > poison_bytes)
            poison_bytes = (size_t)info.workspace_bytes;
        poison = malloc(poison_bytes ? poison_bytes : 1);
        if (!poison) {
            st = POLYATTN_STATUS_OUT_OF_MEMORY;
            goto fail;
        }
        n = o_bytes / polyattn_dtype_size(desc->o.dtype);
        pa_tk_poison(poison, n, desc->o.dtype);
        if ((st = alloc_write(ctx, o_bytes, poison, &b.o)))
            goto fail;
        pa_tk_poison(poison, poison_bytes / 4, POLYATTN_DTYPE_F32);
        if (want_lse && (st = alloc_write(ctx, lse_elems * 4, poison, &b.lse)))
            goto fail;
        if (want_probs && (st = alloc_write(ctx, probs_elems * 4, poison, &b.probs)))
            goto fail;
        if (info.workspace_bytes) {
            memset(poison, 0xFF, (size_t)info.workspace_bytes); /* NaN in every dtype */
            if ((st = alloc_write(ctx, info.workspace_bytes, poison, &b.ws)))
                goto fail;
        }
    }
    stage = "forward";
    if ((st = polyattn_forward_ex(plan, b.q, b.k, b.v, b.o, b.lse, b.probs, b.ws, &e.ex)))
        goto fail;
    stage = "synchronize";
    if ((st = polyattn_context_synchronize(ctx)))
        goto fail;
    stage = "read back";
    if ((st = polyattn_buffer_read(b.o, 0, o_raw, o_bytes)))
        goto fail;
    if (want_lse && (st = polyattn_buffer_read(b.lse, 0, lse, lse_elems * 4)))
        goto fail;
    if (want_probs && (st = polyattn_buffer_read(b.probs, 0, probs, probs_elems * 4)))
        goto fail;
    if (check_inputs) {
        /* The inputs must come back unchanged: a kernel writing into Q, K or V is a bug. */
        const void *in[3] = {q, k, v};
        const size_t bytes[3] = {q_bytes, k_bytes, v_bytes};
        const polyattn_buffer *bufs[3] = {b.q, b.k, b.v};
        const char *names[3] = {"q", "k", "v"};
        int i;
        for (i = 0; i < 3; i++) {
            void *back = malloc(bytes[i]);
            int same;
            if (!back) {
                st = POLYATTN_STATUS_OUT_OF_MEMORY;
                goto fail;
            }
            st = polyattn_buffer_read(bufs[i], 0, back, bytes[i]);
            same = st == POLYATTN_STATUS_SUCCESS && memcmp(back, in[i], bytes[i]) == 0;
            free(back);
            if (st)
                goto fail;
            if (!same) {
                snprintf(r->message, sizeof r->message, "input %s was modified by the forward",
                         names[i]);
                r->bad_elements++;
            }
        }
    }
    free(poison);
    free_buffers(&b);
    extra_free(&e);
    polyattn_plan_destroy(plan);
    return POLYATTN_STATUS_SUCCESS;
fail:
    snprintf(r->message, sizeof r->message, "%s failed: %s: %s", stage, polyattn_status_name(st),
             polyattn_context_last_error(ctx));
    free(poison);
    free_buffers(&b);
    extra_free(&e);
    polyattn_plan_destroy(plan);
    return st;
}

polyattn_status pa_tk_problem_reference(pa_tk_problem *p, char *err, size_t err_len)
{
    polyattn_context *ctx = pa_tk_host_context();
    polyattn_attention_desc desc;
    pa_tk_result r;
    polyattn_status st;
    int planned;
    if (p->ref_o)
        return POLYATTN_STATUS_SUCCESS;
    if (!ctx) {
        if (err)
            snprintf(err, err_len, "no host context: %s", polyattn_last_error());
        return POLYATTN_STATUS_NOT_FOUND;
    }
    memset(&r, 0, sizeof r);
    pa_tk_case_desc(p->c, POLYATTN_DTYPE_F32, &desc);
    p->ref_o = (float *)malloc(p->o_elems * sizeof(float));
    p->ref_lse = (float *)malloc(p->lse_elems * sizeof(float));
    p->ref_probs = (float *)malloc(p->probs_elems * sizeof(float));
    if (!p->ref_o || !p->ref_lse || !p->ref_probs) {
        st = POLYATTN_STATUS_OUT_OF_MEMORY;
        snprintf(r.message, sizeof r.message, "out of host memory");
    } else {
        st = run_once(ctx, &desc, p->q, p->k, p->v, p->q_elems * 4, p->k_elems * 4,
                      p->v_elems * 4, p->o_elems * 4, p->lse_elems, p->probs_elems,
                      POLYATTN_ALGO_UNFUSED, 1, 1, p->ref_o, p->ref_lse, p->ref_probs, 0, p, &r,
                      &planned);
    }
    if (st != POLYATTN_STATUS_SUCCESS) {
        if (err)
            snprintf(err, err_len, "host reference: %s", r.message);
        free(p->ref_o);
        free(p->ref_lse);
        free(p->ref_probs);
        p->ref_o = p->ref_lse = p->ref_probs = NULL;
    }
    return st;
}

/* The larger of two errors; a NaN error sticks (an unwritten element must show). */
static double worse(double worst, double d)
{
    return (isnan(worst) || d <= worst) ? worst : d;
}

long long pa_tk_compare(const float *out, const float *ref, size_t n, double abs_tol,
                        double *max_abs)
{
    long long bad = 0;
    size_t i;
    double worst = 0.0;
    for (i = 0; i < n; i++) {
        double d = fabs((double)out[i] - (double)ref[i]);
        if (isinf(ref[i]) && out[i] == ref[i])
            d = 0.0; /* -inf LSE of a masked row matches exactly */
        if (!(d <= abs_tol))
            bad++;
        worst = worse(worst, d);
    }
    if (max_abs)
        *max_abs = worst;
    return bad;
}

static void add_message(pa_tk_result *r, const char *text)
{
    size_t len = strlen(r->message);
    if (len + 3 < sizeof r->message)
        snprintf(r->message + len, sizeof r->message - len, "%s%s", len ? "; " : "", text);
}

polyattn_status pa_tk_run(polyattn_context *ctx, pa_tk_problem *p, polyattn_algo algo,
                          int want_lse, int want_probs, pa_tk_result *r)
{
    const pa_tk_case *c = p->c;
    const size_t es = polyattn_dtype_size(p->dtype);
    const pa_tk_tolerance tol = pa_tk_tolerance_for(p->dtype);
    void *o_raw = NULL;
    float *o = NULL, *lse = NULL, *probs = NULL;
    polyattn_status st;
    int planned = 0;
    double scale, eps_s, max_ref = 0.0, o_tol;
    int64_t b, h, s, d;
    char text[320];
    memset(r, 0, sizeof *r);
    o_raw = malloc(p->o_elems * es);
    o = (float *)malloc(p->o_elems * sizeof(float));
    lse = (float *)malloc((want_lse ? p->lse_elems : 1) * sizeof(float));
    probs = (float *)malloc((want_probs ? p->probs_elems : 1) * sizeof(float));
    if (!o_raw || !o || !lse || !probs) {
        st = POLYATTN_STATUS_OUT_OF_MEMORY;
        snprintf(r->message, sizeof r->message, "out of host memory");
        goto done;
    }
    st = run_once(ctx, &p->desc, p->q_data, p->k_data, p->v_data, p->q_elems * es,
                  p->k_elems * es, p->v_elems * es, p->o_elems * es, p->lse_elems,
                  p->probs_elems, algo, want_lse, want_probs, o_raw, lse, probs, 1, p, r, &planned);
    if (st != POLYATTN_STATUS_SUCCESS)
        goto done; /* r->message says why; UNSUPPORTED before planning is not a failure */
    st = pa_tk_problem_reference(p, text, sizeof text);
    if (st != POLYATTN_STATUS_SUCCESS) {
        add_message(r, text);
        goto done;
    }
    pa_tk_decode(o, o_raw, p->o_elems, p->dtype);

    scale = c->scale > 0.0f ? c->scale : 1.0 / sqrt((double)c->head_dim);
    eps_s = ldexp(1.0, -24) * (scale * (double)c->head_dim * p->max_q * p->max_k + p->score_extra);
    for (b = 0; b < c->batch; b++)
        for (h = 0; h < c->heads_q; h++)
            for (s = 0; s < c->seq_q; s++)
                for (d = 0; d < c->head_dim_v; d++) {
                    double x = fabs(p->ref_o[elem_index(&p->desc.o, b, h, s, d)]);
                    if (x > max_ref)
                        max_ref = x;
                }
    o_tol = tol.o_rel * max_ref + 2.0 * eps_s * p->max_v;

    /* O: every logical element; masked rows must be exactly 0; gaps untouched. */
    {
        long long bad = 0, masked_bad = 0, gap_bad = 0;
        double worst = 0.0;
        size_t i;
        for (b = 0; b < c->batch; b++)
            for (h = 0; h < c->heads_q; h++)
                for (s = 0; s < c->seq_q; s++) {
                    const size_t row = (size_t)((b * c->heads_q + h) * c->seq_q + s);
                    const int masked = isinf(p->ref_lse[row]);
                    for (d = 0; d < c->head_dim_v; d++) {
                        const size_t at = (size_t)elem_index(&p->desc.o, b, h, s, d);
                        double diff = fabs((double)o[at] - (double)p->ref_o[at]);
                        if (!(diff <= o_tol))
                            bad++;
                        if (masked && o[at] != 0.0f)
                            masked_bad++;
                        worst = worse(worst, diff);
                    }
                }
        {
            unsigned char pat[4];
            pa_tk_poison(pat, 1, p->dtype);
            for (i = 0; i < p->o_elems; i++)
                if (p->o_gap[i] && memcmp((unsigned char *)o_raw + i * es, pat, es) != 0)
                    gap_bad++;
        }
        r->o_max_abs = worst;
        r->o_max_rel = max_ref > 0.0 ? worst / max_ref : worst;
        r->bad_elements += bad + masked_bad + gap_bad;
        if (bad) {
            snprintf(text, sizeof text, "O: %lld of %lld elements off by more than %.3g (max %.3g)",
                     bad, (long long)(c->batch * c->heads_q * c->seq_q * c->head_dim_v), o_tol, worst);
            add_message(r, text);
        }
        if (masked_bad) {
            snprintf(text, sizeof text, "O: %lld elements of fully masked rows are not 0", masked_bad);
            add_message(r, text);
        }
        if (gap_bad) {
            snprintf(text, sizeof text, "O: %lld gap elements between rows were overwritten", gap_bad);
            add_message(r, text);
        }
    }
    if (want_lse) {
        long long bad = 0;
        size_t i;
        double worst = 0.0;
        r->checked_lse = 1;
        for (i = 0; i < p->lse_elems; i++) {
            const double ref = p->ref_lse[i];
            double diff = isinf(ref) ? (lse[i] == ref ? 0.0 : INFINITY) : fabs(lse[i] - ref);
            double lim = tol.lse_rel * (fabs(ref) > 1.0 ? fabs(ref) : 1.0) + eps_s;
            if (!(diff <= lim))
                bad++;
            worst = worse(worst, diff);
        }
        r->lse_max_abs = worst;
        r->bad_elements += bad;
        if (bad) {
            snprintf(text, sizeof text, "LSE: %lld of %zu rows out of tolerance (max error %.3g)",
                     bad, p->lse_elems, worst);
            add_message(r, text);
        }
    }
    if (want_probs) {
        long long bad;
        r->checked_probs = 1;
        bad = pa_tk_compare(probs, p->ref_probs, p->probs_elems, tol.probs_abs + 2.0 * eps_s,
                            &r->probs_max_abs);
        r->bad_elements += bad;
        if (bad) {
            snprintf(text, sizeof text, "probs: %lld of %zu out of tolerance (max error %.3g)",
                     bad, p->probs_elems, r->probs_max_abs);
            add_message(r, text);
        }
    }
    r->pass = r->bad_elements == 0;
done:
    r->planned = planned;
    r->status = st;
    free(o_raw);
    free(o);
    free(lse);
    free(probs);
    return st;
}

/* ---- backward ---- */

double pa_tk_backward_tolerance(polyattn_dtype dtype)
{
    /* f32: accumulation order and the f32 LSE/O a recomputing kernel reads; f16/bf16: the
     * rounded O and LSE feed D and P, and the gradients are stored rounded. */
    switch (dtype) {
    case POLYATTN_DTYPE_F16: return 1e-2;
    case POLYATTN_DTYPE_BF16: return 5e-2;
    default: return 2e-4;
    }
}

static void bwd_add_message(pa_tk_backward_result *r, const char *text)
{
    size_t len = strlen(r->message);
    if (len + 3 < sizeof r->message)
        snprintf(r->message + len, sizeof r->message - len, "%s%s", len ? "; " : "", text);
}

typedef struct bwd_buffers {
    polyattn_buffer *q, *k, *v, *o, *d_o, *lse, *dq, *dk, *dv, *ws, *bws;
} bwd_buffers;

static void bwd_free(bwd_buffers *b)
{
    polyattn_buffer *all[11] = {b->q, b->k, b->v, b->o, b->d_o, b->lse,
                                b->dq, b->dk, b->dv, b->ws, b->bws};
    for (int i = 0; i < 11; i++)
        polyattn_buffer_free(all[i]);
    memset(b, 0, sizeof *b);
}

/* Forward then backward of raw tensors in desc's dtype; grads come back raw.  lse_out
 * (f32) may be NULL. */
static polyattn_status bwd_once(polyattn_context *ctx, const polyattn_attention_desc *desc,
                                const void *const in[4], const size_t in_bytes[4],
                                polyattn_algo algo, int deterministic, void *const grads[3],
                                float *lse_out, size_t lse_elems, int check_inputs,
                                const pa_tk_problem *vp, float *d_bias_out, float *d_sinks_out,
                                pa_tk_backward_result *r, int *planned)
{
    extra_buffers e;
    polyattn_plan_options opt;
    polyattn_plan_info info;
    polyattn_plan *plan = NULL;
    bwd_buffers b;
    polyattn_status st;
    unsigned char *poison = NULL;
    const char *stage = "plan";
    const size_t es = polyattn_dtype_size(desc->q.dtype);
    const size_t o_bytes = in_bytes[3]; /* dO spans exactly O's layout */
    size_t big = o_bytes;
    memset(&b, 0, sizeof b);
    memset(&e, 0, sizeof e);
    *planned = 0;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_backward = 1;
    opt.deterministic = deterministic;
    opt.want_bias_grad = vp->bias_data != NULL;
    st = polyattn_plan_create(ctx, desc, &opt, &plan);
    if (st != POLYATTN_STATUS_SUCCESS) {
        snprintf(r->message, sizeof r->message, "%s", polyattn_context_last_error(ctx));
        return st;
    }
    *planned = 1;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if ((st = polyattn_plan_get_info(plan, &info)) != POLYATTN_STATUS_SUCCESS)
        goto fail;
    r->algo = info.algo;
    r->workspace_bytes = info.workspace_bytes;
    r->backward_workspace_bytes = info.backward_workspace_bytes;
    stage = "buffers";
    for (int i = 0; i < 3; i++)
        big = in_bytes[i] > big ? in_bytes[i] : big;
    big = lse_elems * 4 > big ? lse_elems * 4 : big;
    big = info.workspace_bytes > big ? (size_t)info.workspace_bytes : big;
    big = info.backward_workspace_bytes > big ? (size_t)info.backward_workspace_bytes : big;
    poison = (unsigned char *)malloc(big ? big : 1);
    if (!poison) {
        st = POLYATTN_STATUS_OUT_OF_MEMORY;
        goto fail;
    }
    if ((st = alloc_write(ctx, in_bytes[0], in[0], &b.q)) ||
        (st = alloc_write(ctx, in_bytes[1], in[1], &b.k)) ||
        (st = alloc_write(ctx, in_bytes[2], in[2], &b.v)) ||
        (st = alloc_write(ctx, in_bytes[3], in[3], &b.d_o)) ||
        (st = extra_upload(ctx, vp, 1, &e)))
        goto fail;
    pa_tk_poison(poison, big / es, desc->q.dtype);
    if ((st = alloc_write(ctx, o_bytes, poison, &b.o)) ||
        (st = alloc_write(ctx, in_bytes[0], poison, &b.dq)) ||
        (st = alloc_write(ctx, in_bytes[1], poison, &b.dk)) ||
        (st = alloc_write(ctx, in_bytes[2], poison, &b.dv)))
        goto fail;
    pa_tk_poison(poison, big / 4, POLYATTN_DTYPE_F32);
    if ((st = alloc_write(ctx, lse_elems * 4, poison, &b.lse)))
        goto fail;
    memset(poison, 0xFF, big); /* NaN in every dtype */
    if (info.workspace_bytes && (st = alloc_write(ctx, info.workspace_bytes, poison, &b.ws)))
        goto fail;
    if (info.backward_workspace_bytes &&
        (st = alloc_write(ctx, info.backward_workspace_bytes, poison, &b.bws)))
        goto fail;
    stage = "forward";
    {
        polyattn_extra_tensors fwd = e.ex; /* the forward takes no gradient outputs */
        fwd.d_bias = fwd.d_sinks = NULL;
        if ((st = polyattn_forward_ex(plan, b.q, b.k, b.v, b.o, b.lse, NULL, b.ws, &fwd)))
            goto fail;
    }
    stage = "backward";
    if ((st = polyattn_backward_ex(plan, b.q, b.k, b.v, b.o, b.d_o, b.lse, b.dq, b.dk, b.dv, b.bws,
                                   &e.ex)))
        goto fail;
    stage = "synchronize";
    if ((st = polyattn_context_synchronize(ctx)))
        goto fail;
    stage = "read back";
    if ((st = polyattn_buffer_read(b.dq, 0, grads[0], in_bytes[0])) ||
        (st = polyattn_buffer_read(b.dk, 0, grads[1], in_bytes[1])) ||
        (st = polyattn_buffer_read(b.dv, 0, grads[2], in_bytes[2])))
        goto fail;
    if (lse_out && (st = polyattn_buffer_read(b.lse, 0, lse_out, lse_elems * 4)))
        goto fail;
    if (e.d_bias && (st = polyattn_buffer_read(e.d_bias, 0, d_bias_out, vp->bias_grad_elems * 4)))
        goto fail;
    if (e.d_sinks &&
        (st = polyattn_buffer_read(e.d_sinks, 0, d_sinks_out, (size_t)vp->c->heads_q * 4)))
        goto fail;
    if (check_inputs) {
        const polyattn_buffer *bufs[4] = {b.q, b.k, b.v, b.d_o};
        const char *names[4] = {"q", "k", "v", "d_o"};
        for (int i = 0; i < 4; i++) {
            void *back = malloc(in_bytes[i]);
            int same;
            if (!back) {
                st = POLYATTN_STATUS_OUT_OF_MEMORY;
                goto fail;
            }
            st = polyattn_buffer_read(bufs[i], 0, back, in_bytes[i]);
            same = st == POLYATTN_STATUS_SUCCESS && memcmp(back, in[i], in_bytes[i]) == 0;
            free(back);
            if (st)
                goto fail;
            if (!same) {
                char text[96];
                snprintf(text, sizeof text, "input %s was modified by the forward or backward",
                         names[i]);
                bwd_add_message(r, text);
                r->bad_elements++;
            }
        }
    }
    free(poison);
    bwd_free(&b);
    extra_free(&e);
    polyattn_plan_destroy(plan);
    return POLYATTN_STATUS_SUCCESS;
fail:
    snprintf(r->message, sizeof r->message, "%s failed: %s: %s", stage, polyattn_status_name(st),
             polyattn_context_last_error(ctx));
    free(poison);
    bwd_free(&b);
    extra_free(&e);
    polyattn_plan_destroy(plan);
    return st;
}

/* Compares the logical elements of one gradient tensor (decoded) with the reference and
 * checks that its gaps still hold the poison.  Returns the bad count; *max_rel the error. */
static long long bwd_compare(const char *name, const polyattn_tensor_desc *t, const float *got,
                             const unsigned char *got_raw, const float *ref, double rel_tol,
                             double abs_extra, double *max_rel, pa_tk_backward_result *r)
{
    const size_t n = span_elems(t), es = polyattn_dtype_size(t->dtype);
    unsigned char *gap = (unsigned char *)malloc(n ? n : 1);
    unsigned char pat[4];
    double max_ref = 0.0, worst = 0.0, lim;
    long long bad = 0, gap_bad = 0;
    char text[256];
    if (!gap) {
        bwd_add_message(r, "out of host memory");
        return 1;
    }
    memset(gap, 1, n);
    for (int64_t b = 0; b < t->shape[0]; b++)
        for (int64_t h = 0; h < t->shape[1]; h++)
            for (int64_t s = 0; s < t->shape[2]; s++)
                for (int64_t d = 0; d < t->shape[3]; d++) {
                    const size_t at = (size_t)elem_index(t, b, h, s, d);
                    gap[at] = 0;
                    max_ref = fabs(ref[at]) > max_ref ? fabs(ref[at]) : max_ref;
                }
    lim = rel_tol * max_ref + abs_extra;
    pa_tk_poison(pat, 1, t->dtype);
    for (size_t i = 0; i < n; i++) {
        if (gap[i]) {
            gap_bad += memcmp(got_raw + i * es, pat, es) != 0;
            continue;
        }
        const double diff = fabs((double)got[i] - (double)ref[i]);
        if (!(diff <= lim))
            bad++;
        worst = worse(worst, diff);
    }
    *max_rel = max_ref > 0.0 ? worst / max_ref : worst;
    if (bad) {
        snprintf(text, sizeof text, "%s: %lld elements off by more than %.3g (max %.3g)", name, bad,
                 lim, worst);
        bwd_add_message(r, text);
    }
    if (gap_bad) {
        snprintf(text, sizeof text, "%s: %lld gap elements were overwritten", name, gap_bad);
        bwd_add_message(r, text);
    }
    free(gap);
    return bad + gap_bad;
}

/* How far a correct kernel may stray for reasons of the problem, not of the kernel: with
 * dS = P * (dP - D), a relative error e of P (f32 scores and LSE, as eps_s in pa_tk_run)
 * and an error dD of D = rowsum(dO * O) (O stored rounded to the dtype, unit roundoff u)
 * move dS_ij by P_ij (e |dP_ij - D_i| + dD_i).  Summed as dQ (over keys), dK (over the
 * queries of a GQA group) and dV (P_ij e |dO_i|) pass it through, twice for safety.  It
 * matters for near one-hot rows (large magnitudes), where the true gradient is tiny but
 * FlashAttention-2's D from a rounded O is not.  Needs the forward reference (probs). */
static polyattn_status bwd_condition(const pa_tk_problem *p, const float *d_o, double cond[3])
{
    const pa_tk_case *c = p->c;
    const polyattn_attention_desc *t = &p->desc;
    const double scale = c->scale > 0.0f ? c->scale : 1.0 / sqrt((double)c->head_dim);
    const double u = p->dtype == POLYATTN_DTYPE_F32 ? ldexp(1.0, -24)
                     : p->dtype == POLYATTN_DTYPE_F16 ? ldexp(1.0, -11) : ldexp(1.0, -8);
    const int64_t group = c->heads_q / c->heads_kv;
    const size_t cols = (size_t)(c->batch * c->heads_kv * c->seq_kv);
    double max_lse = 0.0, eps_p, row_max = 0.0, col_max = 0.0, colv_max = 0.0;
    double *col = (double *)calloc(cols ? cols : 1, sizeof(double));
    double *colv = (double *)calloc(cols ? cols : 1, sizeof(double));
    if (!col || !colv) {
        free(col), free(colv);
        return POLYATTN_STATUS_OUT_OF_MEMORY;
    }
    for (size_t i = 0; i < p->lse_elems; i++)
        if (!isinf(p->ref_lse[i]) && fabs(p->ref_lse[i]) > max_lse)
            max_lse = fabs(p->ref_lse[i]);
    eps_p = ldexp(1.0, -24) * (scale * (double)c->head_dim * p->max_q * p->max_k + max_lse + 1.0);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->heads_q; h++) {
            const int64_t hk = h / group;
            for (int64_t i = 0; i < c->seq_q; i++) {
                const size_t row = (size_t)((b * c->heads_q + h) * c->seq_q + i);
                double dd = 0.0, delta = 0.0, do_max = 0.0, rowsum = 0.0;
                for (int64_t d = 0; d < c->head_dim_v; d++) {
                    const int64_t at = elem_index(&t->o, b, h, i, d);
                    dd += fabs(d_o[at]) * fabs(p->ref_o[at]);
                    delta += (double)d_o[at] * p->ref_o[at];
                    do_max = fabs(d_o[at]) > do_max ? fabs(d_o[at]) : do_max;
                }
                dd *= u;
                for (int64_t j = 0; j < c->seq_kv; j++) {
                    const double pij = p->ref_probs[row * (size_t)c->seq_kv + (size_t)j];
                    const size_t cj = (size_t)((b * c->heads_kv + hk) * c->seq_kv + j);
                    double dp = 0.0, w;
                    if (pij == 0.0)
                        continue;
                    for (int64_t d = 0; d < c->head_dim_v; d++)
                        dp += (double)d_o[elem_index(&t->o, b, h, i, d)] *
                              p->v[elem_index(&t->v, b, hk, j, d)];
                    w = pij * (eps_p * fabs(dp - delta) + dd);
                    rowsum += w;
                    col[cj] += w;
                    colv[cj] += pij * eps_p * do_max;
                }
                row_max = rowsum > row_max ? rowsum : row_max;
            }
        }
    for (size_t j = 0; j < cols; j++) {
        col_max = col[j] > col_max ? col[j] : col_max;
        colv_max = colv[j] > colv_max ? colv[j] : colv_max;
    }
    cond[0] = 2.0 * scale * p->max_k * row_max;
    cond[1] = 2.0 * scale * p->max_q * col_max;
    cond[2] = 2.0 * colv_max;
    free(col), free(colv);
    return POLYATTN_STATUS_SUCCESS;
}

polyattn_status pa_tk_run_backward(polyattn_context *ctx, pa_tk_problem *p, polyattn_algo algo,
                                   int deterministic, pa_tk_backward_result *r)
{
    const pa_tk_case *c = p->c;
    const size_t es = polyattn_dtype_size(p->dtype);
    const size_t n[4] = {p->q_elems, p->k_elems, p->v_elems, p->o_elems};
    const size_t dev_bytes[4] = {n[0] * es, n[1] * es, n[2] * es, n[3] * es};
    const size_t ref_bytes[4] = {n[0] * 4, n[1] * 4, n[2] * 4, n[3] * 4};
    const polyattn_tensor_desc *tens[3] = {&p->desc.q, &p->desc.k, &p->desc.v};
    const char *names[3] = {"dQ", "dK", "dV"};
    double *max_rel[3] = {&r->dq_max_rel, &r->dk_max_rel, &r->dv_max_rel};
    polyattn_context *host = pa_tk_host_context();
    polyattn_attention_desc ref_desc;
    float *d_o = NULL, *ref_lse = NULL, *ref[3] = {NULL, NULL, NULL}, *got[3] = {NULL, NULL, NULL};
    /* Variants' gradients: [0] d_bias, [1] d_sinks, device then reference. */
    const size_t var_n[2] = {p->bias_grad_elems, p->sinks ? (size_t)c->heads_q : 0};
    float *var_got[2] = {NULL, NULL}, *var_ref[2] = {NULL, NULL};
    void *d_o_data = NULL, *raw[3] = {NULL, NULL, NULL};
    pa_tk_rng rng;
    polyattn_status st = POLYATTN_STATUS_OUT_OF_MEMORY;
    int planned = 0, ok = 1;
    memset(r, 0, sizeof *r);
    r->tolerance = pa_tk_backward_tolerance(p->dtype);
    if (!host) {
        snprintf(r->message, sizeof r->message, "no host context: %s", polyattn_last_error());
        r->status = POLYATTN_STATUS_NOT_FOUND;
        return r->status;
    }
    d_o = (float *)malloc(ref_bytes[3]);
    d_o_data = malloc(dev_bytes[3]);
    ref_lse = (float *)malloc(p->lse_elems * 4);
    for (int i = 0; i < 3; i++) {
        ref[i] = (float *)malloc(ref_bytes[i]);
        got[i] = (float *)malloc(ref_bytes[i]);
        raw[i] = malloc(dev_bytes[i]);
        ok = ok && ref[i] && got[i] && raw[i];
    }
    for (int i = 0; i < 2; i++) {
        var_got[i] = (float *)malloc((var_n[i] ? var_n[i] : 1) * 4);
        var_ref[i] = (float *)malloc((var_n[i] ? var_n[i] : 1) * 4);
        ok = ok && var_got[i] && var_ref[i];
    }
    if (!ok || !d_o || !d_o_data || !ref_lse) {
        snprintf(r->message, sizeof r->message, "out of host memory");
        goto done;
    }
    pa_tk_rng_seed(&rng, pa_tk_hash(c->name, 0xD0D0u + (uint64_t)p->dtype));
    fill_tensor(d_o, n[3], &p->desc.o, &rng, 1.0f, p->dtype);
    pa_tk_encode(d_o_data, d_o, n[3], p->dtype);

    /* The device first: a rejected plan needs no reference. */
    {
        const void *in[4] = {p->q_data, p->k_data, p->v_data, d_o_data};
        st = bwd_once(ctx, &p->desc, in, dev_bytes, algo, deterministic, raw, NULL, p->lse_elems,
                      1, p, var_got[0], var_got[1], r, &planned);
        if (st != POLYATTN_STATUS_SUCCESS)
            goto done;
    }
    /* The reference: host unfused (exact) on the same rounded values in f32 storage. */
    {
        const void *in[4] = {p->q, p->k, p->v, d_o};
        void *out[3] = {ref[0], ref[1], ref[2]};
        pa_tk_backward_result rr;
        int ref_planned;
        memset(&rr, 0, sizeof rr);
        pa_tk_case_desc(c, POLYATTN_DTYPE_F32, &ref_desc);
        st = bwd_once(host, &ref_desc, in, ref_bytes, POLYATTN_ALGO_UNFUSED, 0, out, ref_lse,
                      p->lse_elems, 0, p, var_ref[0], var_ref[1], &rr, &ref_planned);
        if (st != POLYATTN_STATUS_SUCCESS) {
            snprintf(r->message, sizeof r->message, "host reference: %.900s", rr.message);
            goto done;
        }
    }
    {
        char text[320];
        double cond[3];
        long long masked_bad = 0;
        if ((st = pa_tk_problem_reference(p, text, sizeof text)) != POLYATTN_STATUS_SUCCESS ||
            (st = bwd_condition(p, d_o, cond)) != POLYATTN_STATUS_SUCCESS) {
            bwd_add_message(r, st == POLYATTN_STATUS_OUT_OF_MEMORY ? "out of host memory" : text);
            goto done;
        }
        for (int i = 0; i < 3; i++) {
            pa_tk_decode(got[i], raw[i], n[i], p->dtype);
            r->bad_elements += bwd_compare(names[i], tens[i], got[i], (unsigned char *)raw[i],
                                           ref[i], r->tolerance, cond[i], max_rel[i], r);
        }
        /* d_bias is dS summed over the bias's broadcast dimensions: its error is that of a
         * row's dS (cond[0] without K and the scale) times the rows summed into one. */
        {
            const char *vnames[2] = {"d_bias", "d_sinks"};
            double *vmax[2] = {&r->d_bias_max_rel, &r->d_sinks_max_rel};
            const double scale = c->scale > 0.0f ? c->scale : 1.0 / sqrt((double)c->head_dim);
            const double summed = p->bias_data ? (double)(c->batch * c->heads_q * c->seq_q * c->seq_kv) /
                                                     (double)(p->bias_grad_elems ? p->bias_grad_elems : 1)
                                               : 1.0;
            const double row_err = p->max_k > 0 ? cond[0] / (scale * p->max_k) : 0.0;
            for (int i = 0; i < 2; i++) {
                double max_ref = 0.0, worst = 0.0;
                long long bad = 0;
                if (!var_n[i]) continue;
                for (size_t e = 0; e < var_n[i]; e++)
                    max_ref = fabs(var_ref[i][e]) > max_ref ? fabs(var_ref[i][e]) : max_ref;
                const double lim = r->tolerance * (max_ref > 1e-3 ? max_ref : 1e-3) +
                                   (i == 0 ? row_err * summed : row_err * (double)c->batch * (double)c->seq_q);
                for (size_t e = 0; e < var_n[i]; e++) {
                    const double diff = fabs((double)var_got[i][e] - (double)var_ref[i][e]);
                    if (!(diff <= lim)) bad++;
                    worst = worse(worst, diff);
                }
                *vmax[i] = max_ref > 0.0 ? worst / max_ref : worst;
                if (bad) {
                    char vtext[160];
                    snprintf(vtext, sizeof vtext, "%s: %lld elements off by more than %.3g (max %.3g)",
                             vnames[i], bad, lim, worst);
                    bwd_add_message(r, vtext);
                    r->bad_elements += bad;
                }
            }
        }
        /* Fully masked rows: dQ exactly 0. */
        for (int64_t b = 0; b < c->batch; b++)
            for (int64_t h = 0; h < c->heads_q; h++)
                for (int64_t s = 0; s < c->seq_q; s++) {
                    if (!isinf(ref_lse[(b * c->heads_q + h) * c->seq_q + s]))
                        continue;
                    for (int64_t d = 0; d < c->head_dim; d++)
                        masked_bad += got[0][elem_index(&p->desc.q, b, h, s, d)] != 0.0f;
                }
        if (masked_bad) {
            char mtext[128];
            snprintf(mtext, sizeof mtext, "dQ: %lld elements of fully masked rows are not 0",
                     masked_bad);
            bwd_add_message(r, mtext);
            r->bad_elements += masked_bad;
        }
    }
    r->pass = r->bad_elements == 0;
done:
    r->planned = planned;
    r->status = st;
    free(d_o);
    free(d_o_data);
    free(ref_lse);
    for (int i = 0; i < 3; i++)
        free(ref[i]), free(got[i]), free(raw[i]);
    for (int i = 0; i < 2; i++)
        free(var_got[i]), free(var_ref[i]);
    return st;
}
