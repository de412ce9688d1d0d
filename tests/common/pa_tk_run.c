/* Running a problem through the public API and comparing with the host reference. */
#include "pa_tk_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

polyattn_status pa_tk_alloc_write(polyattn_context *ctx, uint64_t bytes, const void *src,
                                  polyattn_buffer **buf)
{
    polyattn_status st = polyattn_buffer_alloc(ctx, bytes, buf);
    if (st == POLYATTN_STATUS_SUCCESS && src) st = polyattn_buffer_write(*buf, 0, src, bytes);
    return st;
}

void pa_tk_extra_free(pa_tk_extra_buffers *e)
{
    polyattn_buffer_free(e->slopes);
    polyattn_buffer_free(e->bias);
    polyattn_buffer_free(e->attn_mask);
    polyattn_buffer_free(e->sinks);
    polyattn_buffer_free(e->d_bias);
    polyattn_buffer_free(e->d_sinks);
    memset(e, 0, sizeof *e);
}

polyattn_status pa_tk_extra_upload(polyattn_context *ctx, const pa_tk_problem *p, int backward,
                                   pa_tk_extra_buffers *e)
{
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    memset(e, 0, sizeof *e);
    e->ex.struct_size = sizeof e->ex;
    if (p->slopes && (st = pa_tk_alloc_write(ctx, p->slopes_elems * 4, p->slopes, &e->slopes)))
        return st;
    if (p->bias_data && (st = pa_tk_alloc_write(ctx, p->bias_bytes, p->bias_data, &e->bias)))
        return st;
    if (p->attn_mask &&
        (st = pa_tk_alloc_write(ctx, p->attn_mask_bytes, p->attn_mask, &e->attn_mask)))
        return st;
    if (p->sinks && (st = pa_tk_alloc_write(ctx, (size_t)p->c->heads_q * 4, p->sinks, &e->sinks)))
        return st;
    if (backward) {
        const size_t n =
            p->bias_grad_elems > (size_t)p->c->heads_q ? p->bias_grad_elems : (size_t)p->c->heads_q;
        float *poison = (float *)malloc(n * 4);
        if (!poison) return POLYATTN_STATUS_OUT_OF_MEMORY;
        pa_tk_poison(poison, n, POLYATTN_DTYPE_F32);
        if (p->bias_data) st = pa_tk_alloc_write(ctx, p->bias_grad_elems * 4, poison, &e->d_bias);
        if (!st && p->sinks)
            st = pa_tk_alloc_write(ctx, (size_t)p->c->heads_q * 4, poison, &e->d_sinks);
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
    pa_tk_extra_buffers e;
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
    if ((st = polyattn_plan_get_info(plan, &info)) != POLYATTN_STATUS_SUCCESS) goto fail;
    r->algo = info.algo;
    r->workspace_bytes = info.workspace_bytes;
    stage = "buffers";
    if ((st = pa_tk_alloc_write(ctx, q_bytes, q, &b.q)) ||
        (st = pa_tk_alloc_write(ctx, k_bytes, k, &b.k)) ||
        (st = pa_tk_alloc_write(ctx, v_bytes, v, &b.v)) ||
        (st = pa_tk_extra_upload(ctx, vp, 0, &e)))
        goto fail;
    /* Poison every output (and the workspace) so unwritten elements show up as NaN. */
    {
        size_t poison_bytes = o_bytes;
        size_t n = 0;
        if (want_probs && probs_elems * 4 > poison_bytes) poison_bytes = probs_elems * 4;
        if (want_lse && lse_elems * 4 > poison_bytes) poison_bytes = lse_elems * 4;
        if (info.workspace_bytes > poison_bytes) poison_bytes = (size_t)info.workspace_bytes;
        poison = malloc(poison_bytes ? poison_bytes : 1);
        if (!poison) {
            st = POLYATTN_STATUS_OUT_OF_MEMORY;
            goto fail;
        }
        n = o_bytes / polyattn_dtype_size(desc->o.dtype);
        pa_tk_poison(poison, n, desc->o.dtype);
        if ((st = pa_tk_alloc_write(ctx, o_bytes, poison, &b.o))) goto fail;
        pa_tk_poison(poison, poison_bytes / 4, POLYATTN_DTYPE_F32);
        if (want_lse && (st = pa_tk_alloc_write(ctx, lse_elems * 4, poison, &b.lse))) goto fail;
        if (want_probs && (st = pa_tk_alloc_write(ctx, probs_elems * 4, poison, &b.probs)))
            goto fail;
        if (info.workspace_bytes) {
            memset(poison, 0xFF, (size_t)info.workspace_bytes); /* NaN in every dtype */
            if ((st = pa_tk_alloc_write(ctx, info.workspace_bytes, poison, &b.ws))) goto fail;
        }
    }
    stage = "forward";
    if ((st = polyattn_forward_ex(plan, b.q, b.k, b.v, b.o, b.lse, b.probs, b.ws, &e.ex)))
        goto fail;
    stage = "synchronize";
    if ((st = polyattn_context_synchronize(ctx))) goto fail;
    stage = "read back";
    if ((st = polyattn_buffer_read(b.o, 0, o_raw, o_bytes))) goto fail;
    if (want_lse && (st = polyattn_buffer_read(b.lse, 0, lse, lse_elems * 4))) goto fail;
    if (want_probs && (st = polyattn_buffer_read(b.probs, 0, probs, probs_elems * 4))) goto fail;
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
            if (st) goto fail;
            if (!same) {
                snprintf(r->message, sizeof r->message, "input %s was modified by the forward",
                         names[i]);
                r->bad_elements++;
            }
        }
    }
    free(poison);
    free_buffers(&b);
    pa_tk_extra_free(&e);
    polyattn_plan_destroy(plan);
    return POLYATTN_STATUS_SUCCESS;
fail:
    snprintf(r->message, sizeof r->message, "%s failed: %s: %s", stage, polyattn_status_name(st),
             polyattn_context_last_error(ctx));
    free(poison);
    free_buffers(&b);
    pa_tk_extra_free(&e);
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
    if (p->ref_o) return POLYATTN_STATUS_SUCCESS;
    if (!ctx) {
        if (err) snprintf(err, err_len, "no host context: %s", polyattn_last_error());
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
        st = run_once(ctx, &desc, p->q, p->k, p->v, p->q_elems * 4, p->k_elems * 4, p->v_elems * 4,
                      p->o_elems * 4, p->lse_elems, p->probs_elems, POLYATTN_ALGO_UNFUSED, 1, 1,
                      p->ref_o, p->ref_lse, p->ref_probs, 0, p, &r, &planned);
    }
    if (st != POLYATTN_STATUS_SUCCESS) {
        if (err) snprintf(err, err_len, "host reference: %s", r.message);
        free(p->ref_o);
        free(p->ref_lse);
        free(p->ref_probs);
        p->ref_o = p->ref_lse = p->ref_probs = NULL;
    }
    return st;
}

/* The larger of two errors; a NaN error sticks (an unwritten element must show). */
double pa_tk_worse(double worst, double d) { return (isnan(worst) || d <= worst) ? worst : d; }

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
        if (!(d <= abs_tol)) bad++;
        worst = pa_tk_worse(worst, d);
    }
    if (max_abs) *max_abs = worst;
    return bad;
}

static void add_message(pa_tk_result *r, const char *text)
{
    size_t len = strlen(r->message);
    if (len + 3 < sizeof r->message)
        snprintf(r->message + len, sizeof r->message - len, "%s%s", len ? "; " : "", text);
}

polyattn_status pa_tk_run(polyattn_context *ctx, pa_tk_problem *p, polyattn_algo algo, int want_lse,
                          int want_probs, pa_tk_result *r)
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
    st = run_once(ctx, &p->desc, p->q_data, p->k_data, p->v_data, p->q_elems * es, p->k_elems * es,
                  p->v_elems * es, p->o_elems * es, p->lse_elems, p->probs_elems, algo, want_lse,
                  want_probs, o_raw, lse, probs, 1, p, r, &planned);
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
                    double x = fabs(p->ref_o[pa_tk_elem_index(&p->desc.o, b, h, s, d)]);
                    if (x > max_ref) max_ref = x;
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
                        const size_t at = (size_t)pa_tk_elem_index(&p->desc.o, b, h, s, d);
                        double diff = fabs((double)o[at] - (double)p->ref_o[at]);
                        if (!(diff <= o_tol)) bad++;
                        if (masked && o[at] != 0.0f) masked_bad++;
                        worst = pa_tk_worse(worst, diff);
                    }
                }
        {
            unsigned char pat[4];
            pa_tk_poison(pat, 1, p->dtype);
            for (i = 0; i < p->o_elems; i++)
                if (p->o_gap[i] && memcmp((unsigned char *)o_raw + i * es, pat, es) != 0) gap_bad++;
        }
        r->o_max_abs = worst;
        r->o_max_rel = max_ref > 0.0 ? worst / max_ref : worst;
        r->bad_elements += bad + masked_bad + gap_bad;
        if (bad) {
            snprintf(text, sizeof text, "O: %lld of %lld elements off by more than %.3g (max %.3g)",
                     bad, (long long)(c->batch * c->heads_q * c->seq_q * c->head_dim_v), o_tol,
                     worst);
            add_message(r, text);
        }
        if (masked_bad) {
            snprintf(text, sizeof text, "O: %lld elements of fully masked rows are not 0",
                     masked_bad);
            add_message(r, text);
        }
        if (gap_bad) {
            snprintf(text, sizeof text, "O: %lld gap elements between rows were overwritten",
                     gap_bad);
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
            if (!(diff <= lim)) bad++;
            worst = pa_tk_worse(worst, diff);
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
            snprintf(text, sizeof text, "probs: %lld of %zu out of tolerance (max error %.3g)", bad,
                     p->probs_elems, r->probs_max_abs);
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
