/*
 * Validation before timing: the device's output is compared with the host reference (double
 * accumulation) on a few slices of the problem, so that long sequences stay cheap.  A slice
 * is one batch entry, one group of query heads sharing a KV head, m consecutive query rows
 * and the keys those rows can see, expressed as a smaller problem whose mask gives every
 * row exactly the keys it has in the full problem.
 */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Host reference work per slice, in multiply-adds: keeps validation to ~0.1-1 s. */
#define SLICE_BUDGET 1.0e8

double pa_bench_tolerance(polyattn_dtype dtype)
{
    /* Gross-error gates (the conformance tests hold the tight bounds): f32 leaves room for
     * TF32 tensor-core GEMMs; f16 and bf16 for their storage rounding of O and P. */
    switch (dtype) {
    case POLYATTN_DTYPE_F16: return 1e-2;
    case POLYATTN_DTYPE_BF16:
    case POLYATTN_DTYPE_E4M3: return 6e-2; /* its O is bf16; the reference reads the same inputs */
    default: return 5e-3;
    }
}

typedef struct slice {
    int64_t b, kv_head, r0, m, s;
    polyattn_mask mask;
} slice;

/* which 0: first batch entry, first KV head, early rows; 1: last entry, last head, late rows. */
static void make_slice(const pa_bench_shape *sh, int which, int64_t m, slice *out)
{
    int64_t sq = sh->seq_q, skv = sh->seq_kv;
    out->b = which ? sh->batch - 1 : 0;
    out->kv_head = which ? sh->heads_kv - 1 : 0;
    out->mask = sh->mask;
    out->s = skv;
    switch (sh->mask) {
    case POLYATTN_MASK_CAUSAL_TOP_LEFT:
        if (which == 0) {
            out->r0 = 0; /* row i sees min(i + 1, skv) keys in both problems */
        } else if (sq - m + 1 >= skv) {
            out->r0 = sq - m; /* every one of these rows sees every key */
            out->mask = POLYATTN_MASK_NONE;
        } else {
            /* Rows [r0, r0 + m) with r0 + m <= skv see i + 1 keys: bottom-right alignment
             * over the first r0 + m keys gives the same. */
            int64_t lim = sq < skv ? sq : skv;
            if (m > lim) m = lim;
            out->r0 = lim - m;
            out->s = out->r0 + m;
            out->mask = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
        }
        break;
    case POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT:
        if (which == 1) {
            out->r0 = sq - m;
        } else {
            /* The first row that sees a key, then keys [0, r0 + m + skv - sq). */
            int64_t first = sq > skv ? sq - skv : 0;
            if (m > sq - first) m = sq - first;
            out->r0 = first;
            out->s = out->r0 + m + skv - sq;
        }
        break;
    default: out->r0 = which ? sq - m : 0; break;
    }
    out->m = m;
}

static int lib_fail(pa_bench_result *r, polyattn_context *ctx, polyattn_status st, const char *what)
{
    const char *msg = ctx ? polyattn_context_last_error(ctx) : "";
    snprintf(r->reason, sizeof r->reason, "validation: %s: %s: %s", what, polyattn_status_name(st),
             msg && msg[0] ? msg : polyattn_status_string(st));
    return -1;
}

/* Reads rows [r0, r0 + m) of query head h, batch b from the device O into dst (f32). */
static polyattn_status read_rows(const polyattn_buffer *o, const pa_bench_shape *sh,
                                 polyattn_dtype dtype, int64_t b, int64_t h, int64_t r0, int64_t m,
                                 void *staging, float *dst)
{
    size_t esize = polyattn_dtype_size(dtype);
    uint64_t offset = (uint64_t)(((b * sh->heads_q + h) * sh->seq_q + r0) * sh->head_dim_v) * esize;
    uint64_t bytes = (uint64_t)(m * sh->head_dim_v) * esize;
    polyattn_status st = polyattn_buffer_read(o, offset, staging, bytes);
    if (st == POLYATTN_STATUS_SUCCESS)
        pa_cli_to_f32(dtype, staging, dst, (uint64_t)(m * sh->head_dim_v));
    return st;
}

static int check_slice(polyattn_context *host, const pa_bench_shape *sh, const slice *sl,
                       float scale, polyattn_dtype dtype, float *const in[3],
                       const polyattn_buffer *o, pa_bench_result *r, double *max_err)
{
    int64_t group = sh->heads_q / sh->heads_kv, d = sh->head_dim, dv = sh->head_dim_v;
    int64_t m = sl->m, s = sl->s;
    uint64_t nq = (uint64_t)(group * m * d), nk = (uint64_t)(s * d), nv = (uint64_t)(s * dv),
             no = (uint64_t)(group * m * dv);
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nv * 4), *ref = malloc(no * 4),
          *got = malloc(no * 4);
    void *staging = malloc(no * 4);
    polyattn_buffer *bq = NULL, *bk = NULL, *bv = NULL, *bo = NULL, *ws = NULL;
    polyattn_plan *plan = NULL;
    int rc = -1;
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    if (!q || !k || !v || !ref || !got || !staging) {
        snprintf(r->reason, sizeof r->reason, "validation: out of host memory");
        goto done;
    }
    for (int64_t j = 0; j < group; j++) {
        int64_t h = sl->kv_head * group + j;
        const float *src = in[0] + ((sl->b * sh->heads_q + h) * sh->seq_q + sl->r0) * d;
        memcpy(q + j * m * d, src, (size_t)(m * d) * 4);
    }
    memcpy(k, in[1] + (sl->b * sh->heads_kv + sl->kv_head) * sh->seq_kv * d, nk * 4);
    memcpy(v, in[2] + (sl->b * sh->heads_kv + sl->kv_head) * sh->seq_kv * dv, nv * 4);

    polyattn_attention_desc desc;
    polyattn_attention_desc_init(&desc, POLYATTN_DTYPE_F32, 1, group, 1, m, s, d, dv);
    desc.scale = scale;
    desc.mask = sl->mask;
    polyattn_plan_options opts;
    polyattn_plan_options_init(&opts);
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if ((st = polyattn_plan_create(host, &desc, &opts, &plan)) != POLYATTN_STATUS_SUCCESS) {
        plan = NULL;
        lib_fail(r, host, st, "host plan");
        goto done;
    }
    if ((st = polyattn_plan_get_info(plan, &info)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_buffer_alloc(host, nq * 4, &bq)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_buffer_alloc(host, nk * 4, &bk)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_buffer_alloc(host, nv * 4, &bv)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_buffer_alloc(host, no * 4, &bo)) != POLYATTN_STATUS_SUCCESS ||
        (info.workspace_bytes && (st = polyattn_buffer_alloc(host, info.workspace_bytes, &ws)) !=
                                     POLYATTN_STATUS_SUCCESS) ||
        (st = polyattn_buffer_write(bq, 0, q, nq * 4)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_buffer_write(bk, 0, k, nk * 4)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_buffer_write(bv, 0, v, nv * 4)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_forward(plan, bq, bk, bv, bo, NULL, NULL, ws)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_context_synchronize(host)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_buffer_read(bo, 0, ref, no * 4)) != POLYATTN_STATUS_SUCCESS) {
        lib_fail(r, host, st, "host reference");
        goto done;
    }
    for (int64_t j = 0; j < group; j++) {
        st = read_rows(o, sh, pa_bench_o_dtype(dtype), sl->b, sl->kv_head * group + j, sl->r0, m,
                       staging, got + j * m * dv);
        if (st != POLYATTN_STATUS_SUCCESS) {
            lib_fail(r, NULL, st, "reading O");
            goto done;
        }
    }
    double max_ref = 0, max_diff = 0;
    uint64_t worst = 0;
    for (uint64_t i = 0; i < no; i++) {
        double diff = fabs((double)got[i] - (double)ref[i]);
        if (!(diff <= max_diff)) { /* NaN lands here too */
            max_diff = isnan(diff) ? INFINITY : diff;
            worst = i;
        }
        if (fabs(ref[i]) > max_ref) max_ref = fabs(ref[i]);
    }
    double err = max_diff / (max_ref > 1e-20 ? max_ref : 1e-20);
    if (err > *max_err) *max_err = err;
    r->rows_checked += (int)(group * m);
    rc = 0;
    if (!(err <= pa_bench_tolerance(dtype))) {
        int64_t row = (int64_t)worst / dv, j = row / m;
        snprintf(r->reason, sizeof r->reason,
                 "wrong result: batch %lld head %lld row %lld col %lld: got %g, host reference "
                 "%g (error %.3g of max |O|, tolerance %.1g)",
                 (long long)sl->b, (long long)(sl->kv_head * group + j),
                 (long long)(sl->r0 + row % m), (long long)((int64_t)worst % dv),
                 (double)got[worst], (double)ref[worst], err, pa_bench_tolerance(dtype));
        rc = 1;
    }
done:
    polyattn_buffer_free(ws);
    polyattn_buffer_free(bo);
    polyattn_buffer_free(bv);
    polyattn_buffer_free(bk);
    polyattn_buffer_free(bq);
    polyattn_plan_destroy(plan);
    free(q);
    free(k);
    free(v);
    free(ref);
    free(got);
    free(staging);
    return rc;
}

int pa_bench_validate(polyattn_context *host_ctx, const pa_bench_shape *sh, float scale,
                      polyattn_dtype dtype, float *const host_in[3], const polyattn_buffer *o,
                      pa_bench_result *r)
{
    r->max_err = 0;
    r->rows_checked = 0;
    int64_t group = sh->heads_q / sh->heads_kv;
    double per_row = (double)group * (double)sh->seq_kv * (double)(sh->head_dim + sh->head_dim_v);
    int64_t m = (int64_t)(SLICE_BUDGET / per_row);
    if (m > 64) m = 64;
    if (m < 1) m = 1;
    if (m > sh->seq_q) m = sh->seq_q;
    for (int which = 0; which < 2; which++) {
        slice sl;
        make_slice(sh, which, m, &sl);
        int rc = check_slice(host_ctx, sh, &sl, scale, dtype, host_in, o, r, &r->max_err);
        if (rc != 0) return rc;
    }
    /* Queries that see no key (bottom-right with seq_q > seq_kv) must give O = 0. */
    if (sh->mask == POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT && sh->seq_q > sh->seq_kv) {
        uint64_t n = (uint64_t)sh->head_dim_v;
        float *row = malloc(n * 4);
        void *staging = malloc(n * 4);
        polyattn_status st =
            row && staging ? read_rows(o, sh, pa_bench_o_dtype(dtype), 0, 0, 0, 1, staging, row)
                           : POLYATTN_STATUS_OUT_OF_MEMORY;
        int bad = st != POLYATTN_STATUS_SUCCESS;
        for (uint64_t i = 0; !bad && i < n; i++)
            bad = row[i] != 0.0f;
        free(row);
        free(staging);
        if (st != POLYATTN_STATUS_SUCCESS) return lib_fail(r, NULL, st, "reading O");
        if (bad) {
            snprintf(r->reason, sizeof r->reason,
                     "wrong result: query 0 sees no key but O is not 0");
            return 1;
        }
    }
    return 0;
}

/* ---- backward ----------------------------------------------------------------------
 * Gradients on sampled rows, in double on the host, from the same rounded inputs the device
 * saw.  A dQ row needs its own row of P and dP only; a dK or dV row needs every query that
 * sees the key, through P_ij = exp(s_ij - LSE_i) and delta_i = rowsum(dO_i * O_i): the
 * device's LSE and O serve there (the backward's own inputs; the LSE is checked against
 * the host on the dQ rows and O by the forward validation), so each sampled key costs one
 * pass over the queries of its KV group. */

double pa_bench_backward_tolerance(polyattn_dtype dtype)
{
    /* Gross-error gates (conformance --backward holds the tight bounds): long rows of
     * rounded P and dS in f16/bf16 GEMMs, TF32 room in f32. */
    switch (dtype) {
    case POLYATTN_DTYPE_F16: return 2e-2;
    case POLYATTN_DTYPE_BF16: return 1e-1;
    default: return 5e-3;
    }
}

/* Keys [0, n) that query row i sees. */
static int64_t visible_keys(const pa_bench_shape *sh, int64_t i)
{
    int64_t n;
    switch (sh->mask) {
    case POLYATTN_MASK_CAUSAL_TOP_LEFT: n = i + 1; break;
    case POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT: n = i + 1 + sh->seq_kv - sh->seq_q; break;
    default: n = sh->seq_kv; break;
    }
    return n < 0 ? 0 : n > sh->seq_kv ? sh->seq_kv : n;
}

static double dot_f(const float *a, const float *b, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)a[i] * (double)b[i];
    return s;
}

/* Reads count elements of a device tensor of dtype from element offset first, as f32. */
static polyattn_status read_elems(const polyattn_buffer *buf, polyattn_dtype dtype, uint64_t first,
                                  uint64_t count, void *staging, float *dst)
{
    size_t esize = polyattn_dtype_size(dtype);
    polyattn_status st = polyattn_buffer_read(buf, first * esize, staging, count * esize);
    if (st == POLYATTN_STATUS_SUCCESS) pa_cli_to_f32(dtype, staging, dst, count);
    return st;
}

typedef struct grad_check {
    double max_diff, max_ref, max_cond;
    int64_t b, head, row, col;
    double got, ref;
} grad_check;

/* cond[x]: the sum of |terms| of ref[x] (|dP| + |delta| for dS): when every sampled
 * reference is 0 or nearly (a query that sees one key has dS = 0 exactly, up to the
 * device's rounding), errors are measured against 1e-3 of it instead. */
static void grad_compare(grad_check *c, const float *got, const double *ref, const double *cond,
                         int64_t n, int64_t b, int64_t head, int64_t row)
{
    for (int64_t x = 0; x < n; x++) {
        if (cond[x] > c->max_cond) c->max_cond = cond[x];
        double diff = fabs((double)got[x] - ref[x]);
        if (!(diff <= c->max_diff)) { /* NaN lands here too */
            c->max_diff = isnan(diff) ? INFINITY : diff;
            c->b = b, c->head = head, c->row = row, c->col = x;
            c->got = got[x], c->ref = ref[x];
        }
        if (fabs(ref[x]) > c->max_ref) c->max_ref = fabs(ref[x]);
    }
}

int pa_bench_validate_backward(const pa_bench_shape *sh, float scale, polyattn_dtype dtype,
                               float *const in[4], const pa_bench_grads *g, pa_bench_result *r)
{
    static const char *const names[3] = {"dQ", "dK", "dV"};
    int64_t group = sh->heads_q / sh->heads_kv, d = sh->head_dim, dv = sh->head_dim_v;
    int64_t sq = sh->seq_q, skv = sh->seq_kv;
    double sc = (double)scale;
    r->max_err = 0;
    r->rows_checked = 0;
    /* Rows per slice within the budget: a dQ row costs seq_kv*(2d+dv) per head of the
     * group, a dK/dV row seq_q*(2d+2dv) per head. */
    double per_q = (double)group * (double)skv * (double)(2 * d + dv);
    double per_k = (double)group * (double)sq * (double)(2 * d + 2 * dv);
    int64_t mq = (int64_t)(SLICE_BUDGET / 2 / per_q), mk = (int64_t)(SLICE_BUDGET / 2 / per_k);
    mq = mq < 1 ? 1 : mq > 32 ? 32 : mq;
    mk = mk < 1 ? 1 : mk > 32 ? 32 : mk;
    mq = mq > sq ? sq : mq;
    mk = mk > skv ? skv : mk;

    uint64_t group_rows = (uint64_t)(group * sq);
    uint64_t stage_elems = group_rows * (uint64_t)dv;
    uint64_t row_elems = (uint64_t)((mq > mk ? mq : mk) * (d > dv ? d : dv));
    if (row_elems > stage_elems) stage_elems = row_elems;
    if (group_rows > stage_elems) stage_elems = group_rows;
    float *o_rows = malloc(group_rows * (uint64_t)dv * 4), *lse = malloc(group_rows * 4);
    double *delta = malloc(group_rows * 8), *s = malloc((size_t)skv * 8);
    double *dps = malloc((size_t)skv * 8);
    double *acc_k = malloc((size_t)d * 8), *acc_v = malloc((size_t)dv * 8);
    double *cond = malloc((size_t)(d > dv ? d : dv) * 8);
    float *got = malloc(row_elems * 4);
    void *staging = malloc(stage_elems * 4);
    grad_check chk[3];
    memset(chk, 0, sizeof chk);
    int rc = -1;
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    if (!o_rows || !lse || !delta || !s || !dps || !acc_k || !acc_v || !cond || !got || !staging) {
        snprintf(r->reason, sizeof r->reason, "validation: out of host memory");
        goto done;
    }
    for (int which = 0; which < 2; which++) {
        int64_t b = which ? sh->batch - 1 : 0, kvh = which ? sh->heads_kv - 1 : 0;
        int64_t q0 = which ? sq - mq : 0, k0 = which ? skv - mk : 0;
        /* The group's LSE and O from the device, and delta_i = dO_i . O_i. */
        for (int64_t j = 0; j < group; j++) {
            int64_t h = kvh * group + j;
            uint64_t row0 = (uint64_t)((b * sh->heads_q + h) * sq);
            if ((st = read_elems(g->lse, POLYATTN_DTYPE_F32, row0, (uint64_t)sq, staging,
                                 lse + j * sq)) != POLYATTN_STATUS_SUCCESS ||
                (st = read_elems(g->o, dtype, row0 * (uint64_t)dv, (uint64_t)(sq * dv), staging,
                                 o_rows + j * sq * dv)) != POLYATTN_STATUS_SUCCESS) {
                lib_fail(r, NULL, st, "reading O and LSE");
                goto done;
            }
            for (int64_t i = 0; i < sq; i++)
                delta[j * sq + i] = dot_f(in[3] + (row0 + (uint64_t)i) * (uint64_t)dv,
                                          o_rows + (j * sq + i) * dv, dv);
        }
        /* dQ rows: everything from the inputs. */
        for (int64_t j = 0; j < group; j++) {
            int64_t h = kvh * group + j;
            uint64_t row0 = (uint64_t)((b * sh->heads_q + h) * sq);
            const float *kk = in[1] + (b * sh->heads_kv + kvh) * skv * d;
            const float *vv = in[2] + (b * sh->heads_kv + kvh) * skv * dv;
            if ((st = read_elems(g->dq, dtype, (row0 + (uint64_t)q0) * (uint64_t)d,
                                 (uint64_t)(mq * d), staging, got)) != POLYATTN_STATUS_SUCCESS) {
                lib_fail(r, NULL, st, "reading dQ");
                goto done;
            }
            for (int64_t i = q0; i < q0 + mq; i++) {
                const float *qi = in[0] + (row0 + (uint64_t)i) * (uint64_t)d;
                const float *doi = in[3] + (row0 + (uint64_t)i) * (uint64_t)dv;
                int64_t n = visible_keys(sh, i);
                double mx = -INFINITY, sum = 0, dl = 0, ref_lse = -INFINITY;
                for (int64_t x = 0; x < d; x++)
                    acc_k[x] = cond[x] = 0;
                for (int64_t t = 0; t < n; t++) {
                    s[t] = sc * dot_f(qi, kk + t * d, d);
                    mx = s[t] > mx ? s[t] : mx;
                }
                for (int64_t t = 0; t < n; t++)
                    sum += exp(s[t] - mx);
                if (n > 0) ref_lse = mx + log(sum);
                float dev_lse = lse[j * sq + i];
                int lse_ok =
                    n > 0 ? fabs((double)dev_lse - ref_lse) <= 5e-3 * fmax(1.0, fabs(ref_lse))
                          : isinf(dev_lse) && dev_lse < 0;
                if (!lse_ok) {
                    snprintf(r->reason, sizeof r->reason,
                             "wrong LSE: batch %lld head %lld row %lld: got %g, host reference %g",
                             (long long)b, (long long)h, (long long)i, (double)dev_lse, ref_lse);
                    rc = 1;
                    goto done;
                }
                /* delta = sum_j P_ij dP_ij, dQ_i = scale * sum_j P_ij (dP_ij - delta) K_j */
                for (int64_t t = 0; t < n; t++) {
                    s[t] = exp(s[t] - ref_lse);
                    dps[t] = dot_f(doi, vv + t * dv, dv);
                    dl += s[t] * dps[t];
                }
                for (int64_t t = 0; t < n; t++) {
                    double w = sc * s[t] * (dps[t] - dl);
                    double wc = fabs(sc) * s[t] * (fabs(dps[t]) + fabs(dl));
                    const float *kt = kk + t * d;
                    for (int64_t x = 0; x < d; x++) {
                        acc_k[x] += w * (double)kt[x];
                        cond[x] += wc * fabs((double)kt[x]);
                    }
                }
                grad_compare(&chk[0], got + (i - q0) * d, acc_k, cond, d, b, h, i);
                r->rows_checked++;
            }
        }
        /* dK and dV rows: every query of the group that sees the key. */
        for (int t = 1; t < 3; t++) {
            int64_t width = t == 1 ? d : dv;
            if ((st = read_elems(t == 1 ? g->dk : g->dv, dtype,
                                 (uint64_t)(((b * sh->heads_kv + kvh) * skv + k0) * width),
                                 (uint64_t)(mk * width), staging, got)) !=
                POLYATTN_STATUS_SUCCESS) {
                lib_fail(r, NULL, st, t == 1 ? "reading dK" : "reading dV");
                goto done;
            }
            for (int64_t key = k0; key < k0 + mk; key++) {
                const float *kj = in[1] + ((b * sh->heads_kv + kvh) * skv + key) * d;
                const float *vj = in[2] + ((b * sh->heads_kv + kvh) * skv + key) * dv;
                for (int64_t x = 0; x < d; x++)
                    acc_k[x] = 0;
                for (int64_t x = 0; x < dv; x++)
                    acc_v[x] = 0;
                for (int64_t x = 0; x < width; x++)
                    cond[x] = 0;
                for (int64_t j = 0; j < group; j++) {
                    uint64_t row0 = (uint64_t)((b * sh->heads_q + kvh * group + j) * sq);
                    for (int64_t i = 0; i < sq; i++) {
                        if (visible_keys(sh, i) <= key) continue;
                        const float *qi = in[0] + (row0 + (uint64_t)i) * (uint64_t)d;
                        const float *doi = in[3] + (row0 + (uint64_t)i) * (uint64_t)dv;
                        double p = exp(sc * dot_f(qi, kj, d) - (double)lse[j * sq + i]);
                        if (t == 2) {
                            for (int64_t x = 0; x < dv; x++) {
                                acc_v[x] += p * (double)doi[x];
                                cond[x] += p * fabs((double)doi[x]);
                            }
                        } else {
                            double dp = dot_f(doi, vj, dv), dl = delta[j * sq + i];
                            double w = sc * p * (dp - dl),
                                   wc = fabs(sc) * p * (fabs(dp) + fabs(dl));
                            for (int64_t x = 0; x < d; x++) {
                                acc_k[x] += w * (double)qi[x];
                                cond[x] += wc * fabs((double)qi[x]);
                            }
                        }
                    }
                }
                grad_compare(&chk[t], got + (key - k0) * width, t == 1 ? acc_k : acc_v, cond, width,
                             b, kvh, key);
                r->rows_checked++;
            }
        }
    }
    rc = 0;
    for (int t = 0; t < 3; t++) {
        double norm = fmax(fmax(chk[t].max_ref, 1e-3 * chk[t].max_cond), 1e-20);
        double err = chk[t].max_diff / norm;
        r->err_grad[t] = err;
        if (err > r->max_err || isnan(err)) r->max_err = isnan(err) ? INFINITY : err;
        if (rc == 0 && !(err <= pa_bench_backward_tolerance(dtype))) {
            snprintf(r->reason, sizeof r->reason,
                     "wrong gradient: %s batch %lld %s %lld row %lld col %lld: got %g, host "
                     "reference %g (error %.3g of max |%s|, tolerance %.1g)",
                     names[t], (long long)chk[t].b, t == 0 ? "head" : "kv-head",
                     (long long)chk[t].head, (long long)chk[t].row, (long long)chk[t].col,
                     chk[t].got, chk[t].ref, err, names[t], pa_bench_backward_tolerance(dtype));
            rc = 1;
        }
    }
done:
    free(o_rows);
    free(lse);
    free(delta);
    free(s);
    free(dps);
    free(acc_k);
    free(acc_v);
    free(cond);
    free(got);
    free(staging);
    return rc;
}
