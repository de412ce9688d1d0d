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
    case POLYATTN_DTYPE_BF16: return 6e-2;
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
            if (m > lim)
                m = lim;
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
            if (m > sq - first)
                m = sq - first;
            out->r0 = first;
            out->s = out->r0 + m + skv - sq;
        }
        break;
    default:
        out->r0 = which ? sq - m : 0;
        break;
    }
    out->m = m;
}

static int lib_fail(pa_bench_result *r, polyattn_context *ctx, polyattn_status st,
                    const char *what)
{
    const char *msg = ctx ? polyattn_context_last_error(ctx) : "";
    snprintf(r->reason, sizeof r->reason, "validation: %s: %s: %s", what,
             polyattn_status_name(st), msg && msg[0] ? msg : polyattn_status_string(st));
    return -1;
}

/* Reads rows [r0, r0 + m) of query head h, batch b from the device O into dst (f32). */
static polyattn_status read_rows(const polyattn_buffer *o, const pa_bench_shape *sh,
                                 polyattn_dtype dtype, int64_t b, int64_t h, int64_t r0,
                                 int64_t m, void *staging, float *dst)
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
        (info.workspace_bytes &&
         (st = polyattn_buffer_alloc(host, info.workspace_bytes, &ws)) != POLYATTN_STATUS_SUCCESS) ||
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
        st = read_rows(o, sh, dtype, sl->b, sl->kv_head * group + j, sl->r0, m, staging,
                       got + j * m * dv);
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
        if (fabs(ref[i]) > max_ref)
            max_ref = fabs(ref[i]);
    }
    double err = max_diff / (max_ref > 1e-20 ? max_ref : 1e-20);
    if (err > *max_err)
        *max_err = err;
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
    if (m > 64)
        m = 64;
    if (m < 1)
        m = 1;
    if (m > sh->seq_q)
        m = sh->seq_q;
    for (int which = 0; which < 2; which++) {
        slice sl;
        make_slice(sh, which, m, &sl);
        int rc = check_slice(host_ctx, sh, &sl, scale, dtype, host_in, o, r, &r->max_err);
        if (rc != 0)
            return rc;
    }
    /* Queries that see no key (bottom-right with seq_q > seq_kv) must give O = 0. */
    if (sh->mask == POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT && sh->seq_q > sh->seq_kv) {
        uint64_t n = (uint64_t)sh->head_dim_v;
        float *row = malloc(n * 4);
        void *staging = malloc(n * 4);
        polyattn_status st = row && staging ? read_rows(o, sh, dtype, 0, 0, 0, 1, staging, row)
                                            : POLYATTN_STATUS_OUT_OF_MEMORY;
        int bad = st != POLYATTN_STATUS_SUCCESS;
        for (uint64_t i = 0; !bad && i < n; i++)
            bad = row[i] != 0.0f;
        free(row);
        free(staging);
        if (st != POLYATTN_STATUS_SUCCESS)
            return lib_fail(r, NULL, st, "reading O");
        if (bad) {
            snprintf(r->reason, sizeof r->reason,
                     "wrong result: query 0 sees no key but O is not 0");
            return 1;
        }
    }
    return 0;
}
