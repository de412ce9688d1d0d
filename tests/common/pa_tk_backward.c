/* The backward through the public API, compared with the host unfused backward. */
#include "pa_tk_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    polyattn_buffer *all[11] = {b->q,  b->k,  b->v,  b->o,  b->d_o, b->lse,
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
    pa_tk_extra_buffers e;
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
    if ((st = polyattn_plan_get_info(plan, &info)) != POLYATTN_STATUS_SUCCESS) goto fail;
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
    if ((st = pa_tk_alloc_write(ctx, in_bytes[0], in[0], &b.q)) ||
        (st = pa_tk_alloc_write(ctx, in_bytes[1], in[1], &b.k)) ||
        (st = pa_tk_alloc_write(ctx, in_bytes[2], in[2], &b.v)) ||
        (st = pa_tk_alloc_write(ctx, in_bytes[3], in[3], &b.d_o)) ||
        (st = pa_tk_extra_upload(ctx, vp, 1, &e)))
        goto fail;
    pa_tk_poison(poison, big / es, desc->q.dtype);
    if ((st = pa_tk_alloc_write(ctx, o_bytes, poison, &b.o)) ||
        (st = pa_tk_alloc_write(ctx, in_bytes[0], poison, &b.dq)) ||
        (st = pa_tk_alloc_write(ctx, in_bytes[1], poison, &b.dk)) ||
        (st = pa_tk_alloc_write(ctx, in_bytes[2], poison, &b.dv)))
        goto fail;
    pa_tk_poison(poison, big / 4, POLYATTN_DTYPE_F32);
    if ((st = pa_tk_alloc_write(ctx, lse_elems * 4, poison, &b.lse))) goto fail;
    memset(poison, 0xFF, big); /* NaN in every dtype */
    if (info.workspace_bytes && (st = pa_tk_alloc_write(ctx, info.workspace_bytes, poison, &b.ws)))
        goto fail;
    if (info.backward_workspace_bytes &&
        (st = pa_tk_alloc_write(ctx, info.backward_workspace_bytes, poison, &b.bws)))
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
    if ((st = polyattn_context_synchronize(ctx))) goto fail;
    stage = "read back";
    if ((st = polyattn_buffer_read(b.dq, 0, grads[0], in_bytes[0])) ||
        (st = polyattn_buffer_read(b.dk, 0, grads[1], in_bytes[1])) ||
        (st = polyattn_buffer_read(b.dv, 0, grads[2], in_bytes[2])))
        goto fail;
    if (lse_out && (st = polyattn_buffer_read(b.lse, 0, lse_out, lse_elems * 4))) goto fail;
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
            if (st) goto fail;
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
    pa_tk_extra_free(&e);
    polyattn_plan_destroy(plan);
    return POLYATTN_STATUS_SUCCESS;
fail:
    snprintf(r->message, sizeof r->message, "%s failed: %s: %s", stage, polyattn_status_name(st),
             polyattn_context_last_error(ctx));
    free(poison);
    bwd_free(&b);
    pa_tk_extra_free(&e);
    polyattn_plan_destroy(plan);
    return st;
}

/* Compares the logical elements of one gradient tensor (decoded) with the reference and
 * checks that its gaps still hold the poison.  Returns the bad count; *max_rel the error. */
static long long bwd_compare(const char *name, const polyattn_tensor_desc *t, const float *got,
                             const unsigned char *got_raw, const float *ref, double rel_tol,
                             double abs_extra, double *max_rel, pa_tk_backward_result *r)
{
    const size_t n = pa_tk_span_elems(t), es = polyattn_dtype_size(t->dtype);
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
                    const size_t at = (size_t)pa_tk_elem_index(t, b, h, s, d);
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
        if (!(diff <= lim)) bad++;
        worst = pa_tk_worse(worst, diff);
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
    const double u = p->dtype == POLYATTN_DTYPE_F32   ? ldexp(1.0, -24)
                     : p->dtype == POLYATTN_DTYPE_F16 ? ldexp(1.0, -11)
                                                      : ldexp(1.0, -8);
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
        if (!isinf(p->ref_lse[i]) && fabs(p->ref_lse[i]) > max_lse) max_lse = fabs(p->ref_lse[i]);
    eps_p = ldexp(1.0, -24) * (scale * (double)c->head_dim * p->max_q * p->max_k + max_lse + 1.0);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->heads_q; h++) {
            const int64_t hk = h / group;
            for (int64_t i = 0; i < c->seq_q; i++) {
                const size_t row = (size_t)((b * c->heads_q + h) * c->seq_q + i);
                double dd = 0.0, delta = 0.0, do_max = 0.0, rowsum = 0.0;
                for (int64_t d = 0; d < c->head_dim_v; d++) {
                    const int64_t at = pa_tk_elem_index(&t->o, b, h, i, d);
                    dd += fabs(d_o[at]) * fabs(p->ref_o[at]);
                    delta += (double)d_o[at] * p->ref_o[at];
                    do_max = fabs(d_o[at]) > do_max ? fabs(d_o[at]) : do_max;
                }
                dd *= u;
                for (int64_t j = 0; j < c->seq_kv; j++) {
                    const double pij = p->ref_probs[row * (size_t)c->seq_kv + (size_t)j];
                    const size_t cj = (size_t)((b * c->heads_kv + hk) * c->seq_kv + j);
                    double dp = 0.0, w;
                    if (pij == 0.0) continue;
                    for (int64_t d = 0; d < c->head_dim_v; d++)
                        dp += (double)d_o[pa_tk_elem_index(&t->o, b, h, i, d)] *
                              p->v[pa_tk_elem_index(&t->v, b, hk, j, d)];
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
    pa_tk_fill_tensor(d_o, n[3], &p->desc.o, &rng, 1.0f, p->dtype);
    pa_tk_encode(d_o_data, d_o, n[3], p->dtype);

    /* The device first: a rejected plan needs no reference. */
    {
        const void *in[4] = {p->q_data, p->k_data, p->v_data, d_o_data};
        st = bwd_once(ctx, &p->desc, in, dev_bytes, algo, deterministic, raw, NULL, p->lse_elems, 1,
                      p, var_got[0], var_got[1], r, &planned);
        if (st != POLYATTN_STATUS_SUCCESS) goto done;
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
            const double summed = p->bias_data
                                      ? (double)(c->batch * c->heads_q * c->seq_q * c->seq_kv) /
                                            (double)(p->bias_grad_elems ? p->bias_grad_elems : 1)
                                      : 1.0;
            const double row_err = p->max_k > 0 ? cond[0] / (scale * p->max_k) : 0.0;
            for (int i = 0; i < 2; i++) {
                double max_ref = 0.0, worst = 0.0;
                long long bad = 0;
                if (!var_n[i]) continue;
                for (size_t e = 0; e < var_n[i]; e++)
                    max_ref = fabs(var_ref[i][e]) > max_ref ? fabs(var_ref[i][e]) : max_ref;
                const double lim =
                    r->tolerance * (max_ref > 1e-3 ? max_ref : 1e-3) +
                    (i == 0 ? row_err * summed : row_err * (double)c->batch * (double)c->seq_q);
                for (size_t e = 0; e < var_n[i]; e++) {
                    const double diff = fabs((double)var_got[i][e] - (double)var_ref[i][e]);
                    if (!(diff <= lim)) bad++;
                    worst = pa_tk_worse(worst, diff);
                }
                *vmax[i] = max_ref > 0.0 ? worst / max_ref : worst;
                if (bad) {
                    char vtext[160];
                    snprintf(vtext, sizeof vtext,
                             "%s: %lld elements off by more than %.3g (max %.3g)", vnames[i], bad,
                             lim, worst);
                    bwd_add_message(r, vtext);
                    r->bad_elements += bad;
                }
            }
        }
        /* Fully masked rows: dQ exactly 0. */
        for (int64_t b = 0; b < c->batch; b++)
            for (int64_t h = 0; h < c->heads_q; h++)
                for (int64_t s = 0; s < c->seq_q; s++) {
                    if (!isinf(ref_lse[(b * c->heads_q + h) * c->seq_q + s])) continue;
                    for (int64_t d = 0; d < c->head_dim; d++)
                        masked_bad += got[0][pa_tk_elem_index(&p->desc.q, b, h, s, d)] != 0.0f;
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
