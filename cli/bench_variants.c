/*
 * polyattn bench with score variants: the inputs the bench makes for them (ALiBi slopes, a
 * bias, sinks), and their validation against the host reference on slices that keep every
 * key and the rows' diagonals, so that windows and ALiBi distances match the full problem.
 */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void pa_bench_variants_apply(const pa_bench_variants *v, polyattn_attention_desc *desc)
{
    if (!v || !v->on) return;
    desc->has_window = v->has_window;
    desc->window_left = v->has_window ? v->window_left : -1;
    desc->window_right = v->has_window ? v->window_right : -1;
    desc->softcap = v->softcap;
    desc->alibi = v->alibi ? POLYATTN_ALIBI_PER_HEAD : POLYATTN_ALIBI_NONE;
    desc->has_bias = v->bias;
    if (v->bias) {
        /* [1, heads_q, seq_q, seq_kv], broadcast over the batch */
        int64_t hq = desc->q.shape[1], sq = desc->q.shape[2], skv = desc->k.shape[2];
        polyattn_tensor_desc_bhsd(&desc->bias, v->bias_dtype, 1, hq, sq, skv);
    }
    desc->has_sinks = v->sinks;
}

float pa_bench_slope(int64_t head, int64_t heads_q)
{
    return (float)pow(2.0, -8.0 * (double)(head + 1) / (double)heads_q);
}

static float uniform(uint64_t index)
{
    uint64_t z = index * 0x9e3779b97f4a7c15ull + 0x6a09e667f3bcc909ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (float)(2.0 * (double)(z >> 11) * (1.0 / 9007199254740992.0) - 1.0);
}

float pa_bench_sink(int64_t head) { return uniform(0x51c0000000ull + (uint64_t)head); }

static float round_to(polyattn_dtype dtype, float x)
{
    if (dtype == POLYATTN_DTYPE_F16) return pa_cli_f16_to_f32(pa_cli_f32_to_f16(x));
    if (dtype == POLYATTN_DTYPE_BF16) return pa_cli_bf16_to_f32(pa_cli_f32_to_bf16(x));
    return x;
}

float pa_bench_bias_value(const pa_bench_variants *v, const pa_bench_shape *sh, int64_t head,
                          int64_t row, int64_t key)
{
    uint64_t index = ((uint64_t)head * (uint64_t)sh->seq_q + (uint64_t)row) * (uint64_t)sh->seq_kv +
                     (uint64_t)key;
    return round_to(v->bias_dtype, uniform(index));
}

void pa_bench_variants_free(pa_bench_variant_bufs *b)
{
    polyattn_buffer_free(b->slopes);
    polyattn_buffer_free(b->bias);
    polyattn_buffer_free(b->sinks);
    memset(b, 0, sizeof *b);
}

polyattn_status pa_bench_variants_make(polyattn_context *ctx, const pa_bench_variants *v,
                                       const pa_bench_shape *sh, void *staging,
                                       uint64_t staging_bytes, pa_bench_variant_bufs *out)
{
    memset(out, 0, sizeof *out);
    out->extra.struct_size = sizeof out->extra;
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    float *f = staging;
    int64_t hq = sh->heads_q;
    if (v->alibi || v->sinks) {
        for (int which = 0; which < 2; which++) {
            if (!(which ? v->sinks : v->alibi)) continue;
            for (int64_t h = 0; h < hq; h++)
                f[h] = which ? pa_bench_sink(h) : pa_bench_slope(h, hq);
            polyattn_buffer **buf = which ? &out->sinks : &out->slopes;
            if ((st = polyattn_buffer_alloc(ctx, (uint64_t)hq * 4, buf)) !=
                POLYATTN_STATUS_SUCCESS) {
                *buf = NULL;
                return st;
            }
            if ((st = polyattn_buffer_write(*buf, 0, f, (uint64_t)hq * 4))) return st;
        }
        out->extra.alibi_slopes = out->slopes;
        out->extra.sinks = out->sinks;
    }
    if (v->bias) {
        /* Written a block of rows at a time through the staging area (f32 values, then the
         * dtype's bytes in place at its start). */
        size_t esize = polyattn_dtype_size(v->bias_dtype);
        uint64_t row = (uint64_t)sh->seq_kv, rows = (uint64_t)(hq * sh->seq_q);
        uint64_t per = staging_bytes / (4 * row);
        if (per == 0) return POLYATTN_STATUS_OUT_OF_MEMORY;
        if ((st = polyattn_buffer_alloc(ctx, rows * row * esize, &out->bias))) {
            out->bias = NULL;
            return st;
        }
        for (uint64_t r0 = 0; r0 < rows; r0 += per) {
            uint64_t n = rows - r0 < per ? rows - r0 : per;
            for (uint64_t r = 0; r < n; r++) {
                int64_t h = (int64_t)((r0 + r) / (uint64_t)sh->seq_q);
                int64_t i = (int64_t)((r0 + r) % (uint64_t)sh->seq_q);
                for (uint64_t j = 0; j < row; j++)
                    f[r * row + j] = pa_bench_bias_value(v, sh, h, i, (int64_t)j);
            }
            pa_cli_from_f32(v->bias_dtype, f, staging, n * row);
            if ((st = polyattn_buffer_write(out->bias, r0 * row * esize, staging, n * row * esize)))
                return st;
        }
        out->extra.bias = out->bias;
    }
    return st;
}

void pa_bench_variants_describe(const pa_bench_variants *v, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
    if (!v || !v->on) return;
    if (v->has_window)
        n += (size_t)snprintf(buf + n, size - n, "window (%lld, %lld), ", (long long)v->window_left,
                              (long long)v->window_right);
    if (v->softcap > 0 && n < size)
        n += (size_t)snprintf(buf + n, size - n, "softcap %g, ", (double)v->softcap);
    if (v->alibi && n < size) n += (size_t)snprintf(buf + n, size - n, "alibi, ");
    if (v->bias && n < size)
        n += (size_t)snprintf(buf + n, size - n, "bias %s, ", polyattn_dtype_name(v->bias_dtype));
    if (v->sinks && n < size) n += (size_t)snprintf(buf + n, size - n, "sinks, ");
    if (n >= 2 && n < size) buf[n - 2] = '\0';
}

/* ---- validation ------------------------------------------------------------------- */

static int lib_fail(pa_bench_result *r, polyattn_context *ctx, polyattn_status st, const char *what)
{
    const char *msg = ctx ? polyattn_context_last_error(ctx) : "";
    snprintf(r->reason, sizeof r->reason, "validation: %s: %s: %s", what, polyattn_status_name(st),
             msg && msg[0] ? msg : polyattn_status_string(st));
    return -1;
}

/* One slice: batch entry b, the query heads of KV head kv_head, rows [r0, r0 + m), every
 * key, as a problem of batch 1 on the host with the same variants. */
static int check_slice(polyattn_context *host, const pa_bench_shape *sh, int64_t b, int64_t kv_head,
                       int64_t r0, int64_t m, polyattn_mask mask, float scale, polyattn_dtype dtype,
                       float *const in[3], const polyattn_buffer *o, const pa_bench_variants *var,
                       pa_bench_result *r)
{
    int64_t group = sh->heads_q / sh->heads_kv, d = sh->head_dim, dv = sh->head_dim_v;
    int64_t s = sh->seq_kv, h0 = kv_head * group;
    uint64_t nq = (uint64_t)(group * m * d), nk = (uint64_t)(s * d), nv = (uint64_t)(s * dv),
             no = (uint64_t)(group * m * dv), nb = var->bias ? (uint64_t)(group * m * s) : 1;
    size_t esize = polyattn_dtype_size(pa_bench_o_dtype(dtype)); /* of O */
    float *q = malloc(nq * 4), *ref = malloc(no * 4), *got = malloc(no * 4), *bias = malloc(nb * 4),
          small[2][1024];
    void *staging = malloc(no * 4);
    polyattn_buffer *buf[8] = {NULL};
    polyattn_plan *plan = NULL;
    int rc = -1;
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    if (!q || !ref || !got || !bias || !staging || group > 1024) {
        snprintf(r->reason, sizeof r->reason, "validation: out of host memory");
        goto done;
    }
    for (int64_t j = 0; j < group; j++) {
        int64_t h = h0 + j;
        memcpy(q + j * m * d, in[0] + ((b * sh->heads_q + h) * sh->seq_q + r0) * d,
               (size_t)(m * d) * 4);
        small[0][j] = pa_bench_slope(h, sh->heads_q);
        small[1][j] = pa_bench_sink(h);
        for (int64_t i = 0; var->bias && i < m; i++)
            for (int64_t k = 0; k < s; k++)
                bias[(j * m + i) * s + k] = pa_bench_bias_value(var, sh, h, r0 + i, k);
    }
    polyattn_attention_desc desc;
    polyattn_attention_desc_init(&desc, POLYATTN_DTYPE_F32, 1, group, 1, m, s, d, dv);
    desc.scale = scale;
    desc.mask = mask;
    pa_bench_variants_apply(var, &desc);
    if (var->bias) desc.bias.dtype = POLYATTN_DTYPE_F32; /* the values as the device sees them */
    polyattn_plan_options opts;
    polyattn_plan_options_init(&opts);
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    const float *src[6] = {q,
                           in[1] + (b * sh->heads_kv + kv_head) * s * d,
                           in[2] + (b * sh->heads_kv + kv_head) * s * dv,
                           small[0],
                           bias,
                           small[1]};
    const uint64_t count[7] = {nq, nk, nv, (uint64_t)group, nb, (uint64_t)group, no};
    if ((st = polyattn_plan_create(host, &desc, &opts, &plan)) != POLYATTN_STATUS_SUCCESS) {
        plan = NULL;
        lib_fail(r, host, st, "host plan");
        goto done;
    }
    for (int t = 0; t < 7; t++) {
        if ((st = polyattn_buffer_alloc(host, count[t] * 4, &buf[t])) != POLYATTN_STATUS_SUCCESS) {
            buf[t] = NULL;
            lib_fail(r, host, st, "host buffers");
            goto done;
        }
        if (t < 6 && (st = polyattn_buffer_write(buf[t], 0, src[t], count[t] * 4))) {
            lib_fail(r, host, st, "host buffers");
            goto done;
        }
    }
    polyattn_extra_tensors extra;
    memset(&extra, 0, sizeof extra);
    extra.struct_size = sizeof extra;
    extra.alibi_slopes = var->alibi ? buf[3] : NULL;
    extra.bias = var->bias ? buf[4] : NULL;
    extra.sinks = var->sinks ? buf[5] : NULL;
    if ((st = polyattn_plan_get_info(plan, &info)) != POLYATTN_STATUS_SUCCESS ||
        (info.workspace_bytes &&
         (st = polyattn_buffer_alloc(host, info.workspace_bytes, &buf[7])) !=
             POLYATTN_STATUS_SUCCESS) ||
        (st = polyattn_forward_ex(plan, buf[0], buf[1], buf[2], buf[6], NULL, NULL, buf[7],
                                  &extra)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_context_synchronize(host)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_buffer_read(buf[6], 0, ref, no * 4)) != POLYATTN_STATUS_SUCCESS) {
        lib_fail(r, host, st, "host reference");
        goto done;
    }
    for (int64_t j = 0; j < group; j++) {
        uint64_t offset = (uint64_t)(((b * sh->heads_q + h0 + j) * sh->seq_q + r0) * dv) * esize;
        if ((st = polyattn_buffer_read(o, offset, staging, (uint64_t)(m * dv) * esize))) {
            lib_fail(r, NULL, st, "reading O");
            goto done;
        }
        pa_cli_to_f32(pa_bench_o_dtype(dtype), staging, got + j * m * dv, (uint64_t)(m * dv));
    }
    double max_ref = 0, max_diff = 0;
    uint64_t worst = 0;
    for (uint64_t i = 0; i < no; i++) {
        double diff = fabs((double)got[i] - (double)ref[i]);
        if (!(diff <= max_diff)) {
            max_diff = isnan(diff) ? INFINITY : diff;
            worst = i;
        }
        if (fabs(ref[i]) > max_ref) max_ref = fabs(ref[i]);
    }
    double err = max_diff / (max_ref > 1e-20 ? max_ref : 1e-20);
    if (err > r->max_err) r->max_err = err;
    r->rows_checked += (int)(group * m);
    rc = 0;
    if (!(err <= pa_bench_tolerance(dtype))) {
        int64_t row = (int64_t)worst / dv;
        snprintf(r->reason, sizeof r->reason,
                 "wrong result: batch %lld head %lld row %lld col %lld: got %g, host reference "
                 "%g (error %.3g of max |O|, tolerance %.1g)",
                 (long long)b, (long long)(h0 + row / m), (long long)(r0 + row % m),
                 (long long)((int64_t)worst % dv), (double)got[worst], (double)ref[worst], err,
                 pa_bench_tolerance(dtype));
        rc = 1;
    }
done:
    for (int t = 0; t < 8; t++)
        polyattn_buffer_free(buf[t]);
    polyattn_plan_destroy(plan);
    free(q);
    free(ref);
    free(got);
    free(bias);
    free(staging);
    return rc;
}

int pa_bench_validate_variants(polyattn_context *host_ctx, const pa_bench_shape *sh, float scale,
                               polyattn_dtype dtype, float *const host_in[3],
                               const polyattn_buffer *o, const pa_bench_variants *var,
                               pa_bench_result *r)
{
    if (!var || !var->on) return pa_bench_validate(host_ctx, sh, scale, dtype, host_in, o, r);
    r->max_err = 0;
    r->rows_checked = 0;
    int64_t group = sh->heads_q / sh->heads_kv;
    double per_row = (double)group * (double)sh->seq_kv * (double)(sh->head_dim + sh->head_dim_v);
    int64_t m = (int64_t)(1.0e8 / per_row);
    m = m > 32 ? 32 : m < 1 ? 1 : m;
    if (m > sh->seq_q) m = sh->seq_q;
    /* Rows whose diagonal the slice keeps: the first ones under top-left (d(i) = i), the
     * last ones otherwise (d(i) = i + seq_kv - seq_q in both problems). */
    int64_t r0 = sh->mask == POLYATTN_MASK_CAUSAL_TOP_LEFT ? 0 : sh->seq_q - m;
    for (int which = 0; which < 2; which++) {
        int rc = check_slice(host_ctx, sh, which ? sh->batch - 1 : 0, which ? sh->heads_kv - 1 : 0,
                             r0, m, sh->mask, scale, dtype, host_in, o, var, r);
        if (rc != 0) return rc;
    }
    return 0;
}
