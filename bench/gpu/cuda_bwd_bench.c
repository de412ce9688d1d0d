/*
 * cuda_bwd_bench: times polyattn_backward on the CUDA backend, one JSON object per line.
 *
 * Reads the shape lines of bench/gpu/shapes.py from stdin:
 *     suite dtype batch heads_q heads_kv seq_q seq_kv head_dim causal algo[,algo...]
 * For each line and algorithm (and mode: atomic dQ, and with --det also deterministic):
 * plan with want_backward, run the forward once, run the backward once on poisoned
 * gradients and check sampled rows against a double-precision reference computed here
 * (dQ rows exactly from Q, K, V, dO; dK/dV rows from the device's LSE and O, whose
 * forward is checked elsewhere), then time the backward alone with device events (median).
 * FLOPs: 2.5 x the forward's 4*batch*heads*seq_q*seq_kv*head_dim (halved when causal),
 * the FlashAttention papers' convention, so numbers compare with PyTorch's.
 *
 * Options: --reps N (max timed repetitions), --det (also time the deterministic mode).
 */
#include "bench_common.h"
#include "pa_testkit.h"
#include "polyattn.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pa_tk_rng rng = {0x243f6a8885a308d3ull};
static float rng_uniform(void) /* [-1, 1) */
{
    return (float)pa_tk_rng_uniform(&rng);
}

/* Host data of one shape: rounded f32 inputs (BHSD) and the storage-dtype staging. */
typedef struct host_data {
    float *q, *k, *v, *d_o; /* rounded to the dtype */
    void *stage;
    float *o, *lse;          /* read back */
    void *dq, *dk, *dv;      /* read back, dtype */
} host_data;

static void fill(float *x, size_t n, polyattn_dtype t, void *stage)
{
    for (size_t i = 0; i < n; i++) {
        float f = rng_uniform();
        if (t == POLYATTN_DTYPE_F32) {
            ((float *)stage)[i] = f;
        } else {
            uint16_t h = t == POLYATTN_DTYPE_F16 ? pa_tk_f32_to_f16(f) : pa_tk_f32_to_bf16(f);
            ((uint16_t *)stage)[i] = h;
            f = t == POLYATTN_DTYPE_F16 ? pa_tk_f16_to_f32(h) : pa_tk_bf16_to_f32(h);
        }
        x[i] = f;
    }
}

static int64_t visible(const shape *s, int64_t i)
{
    int64_t n = s->causal ? i + 1 + (s->causal == 2 ? s->seq_kv - s->seq_q : 0) : s->seq_kv;
    return n < 0 ? 0 : n > s->seq_kv ? s->seq_kv : n;
}

static double dot(const float *a, const float *b, int64_t n)
{
    double acc = 0;
    for (int64_t c = 0; c < n; c++)
        acc += (double)a[c] * b[c];
    return acc;
}

/* ||x - ref||^2 and ||ref||^2 of one gradient row (device values in dtype). */
static void row_err(const shape *s, const void *dev, size_t at, const double *ref, double *num,
                    double *den, int *bad)
{
    for (int64_t c = 0; c < s->head_dim; c++) {
        float x = bench_dev_val(s->dtype, dev, at + (size_t)c);
        if (!isfinite(x)) ++*bad;
        *num += (x - ref[c]) * (x - ref[c]);
        *den += ref[c] * ref[c];
    }
}

/* Worst relative row error of dQ (exact reference) and of dK/dV (from the device's LSE, O). */
static void check_rows(const shape *s, const host_data *h, float scale, double err[3], int *bad)
{
    const int64_t d = s->head_dim, g = s->heads_q / s->heads_kv;
    double *ref = malloc(sizeof(double) * (size_t)d * 2), *row = malloc(sizeof(double) * (size_t)s->seq_kv);
    double *ref2 = ref + d;
    err[0] = err[1] = err[2] = 0;
    if (!ref || !row) {
        ++*bad;
        free(ref), free(row);
        return;
    }
    for (int t = 0; t < 4; t++) { /* dQ rows */
        const int64_t b = t & 1 ? s->batch - 1 : 0, hq = t & 2 ? s->heads_q - 1 : 0;
        const int64_t i = t == 0 ? 0 : t == 3 ? s->seq_q - 1 : (int64_t)((rng_uniform() * 0.5 + 0.5) * (double)(s->seq_q - 1));
        const int64_t hk = hq / g, vis = visible(s, i);
        const float *qi = h->q + ((b * s->heads_q + hq) * s->seq_q + i) * d;
        const float *doi = h->d_o + ((b * s->heads_q + hq) * s->seq_q + i) * d;
        const float *kb = h->k + (b * s->heads_kv + hk) * s->seq_kv * d;
        const float *vb = h->v + (b * s->heads_kv + hk) * s->seq_kv * d;
        double mx = -INFINITY, sum = 0, delta = 0;
        for (int64_t j = 0; j < vis; j++) {
            row[j] = dot(qi, kb + j * d, d) * scale;
            if (row[j] > mx) mx = row[j];
        }
        for (int64_t j = 0; j < vis; j++)
            sum += (row[j] = exp(row[j] - mx));
        for (int64_t c = 0; c < d; c++)
            ref[c] = 0;
        /* P_j = row[j]/sum; dP_j = dO.v_j; delta = sum_j P_j dP_j */
        for (int64_t j = 0; j < vis; j++)
            delta += row[j] / sum * dot(doi, vb + j * d, d);
        for (int64_t j = 0; j < vis; j++) {
            const double p = row[j] / sum, ds = p * (dot(doi, vb + j * d, d) - delta);
            for (int64_t c = 0; c < d; c++)
                ref[c] += scale * ds * kb[j * d + c];
        }
        double num = 0, den = 0;
        row_err(s, h->dq, (size_t)(((b * s->heads_q + hq) * s->seq_q + i) * d), ref, &num, &den, bad);
        const double r = sqrt(num / (den > 0 ? den : 1));
        if (r > err[0]) err[0] = r;
    }
    for (int t = 0; t < 4; t++) { /* dK, dV rows */
        const int64_t b = t & 1 ? s->batch - 1 : 0, hk = t & 2 ? s->heads_kv - 1 : 0;
        const int64_t j = t == 0 ? 0 : t == 3 ? s->seq_kv - 1 : (int64_t)((rng_uniform() * 0.5 + 0.5) * (double)(s->seq_kv - 1));
        const float *kj = h->k + ((b * s->heads_kv + hk) * s->seq_kv + j) * d;
        const float *vj = h->v + ((b * s->heads_kv + hk) * s->seq_kv + j) * d;
        for (int64_t c = 0; c < 2 * d; c++)
            ref[c] = 0; /* ref: dK, ref2: dV */
        for (int64_t hq = hk * g; hq < (hk + 1) * g; hq++)
            for (int64_t i = 0; i < s->seq_q; i++) {
                if (j >= visible(s, i)) continue;
                const int64_t r = (b * s->heads_q + hq) * s->seq_q + i;
                const float *qi = h->q + r * d, *doi = h->d_o + r * d, *oi = h->o + r * d;
                const double p = exp(dot(qi, kj, d) * scale - h->lse[r]);
                const double ds = p * (dot(doi, vj, d) - dot(doi, oi, d));
                for (int64_t c = 0; c < d; c++) {
                    ref[c] += scale * ds * qi[c];
                    ref2[c] += p * doi[c];
                }
            }
        const size_t at = (size_t)(((b * s->heads_kv + hk) * s->seq_kv + j) * d);
        double num = 0, den = 0;
        row_err(s, h->dk, at, ref, &num, &den, bad);
        double r = sqrt(num / (den > 0 ? den : 1));
        if (r > err[1]) err[1] = r;
        num = den = 0;
        row_err(s, h->dv, at, ref2, &num, &den, bad);
        r = sqrt(num / (den > 0 ? den : 1));
        if (r > err[2]) err[2] = r;
    }
    free(ref), free(row);
}

static void json_head(const shape *s, const char *algo, const char *mode)
{
    const char *tile = getenv("POLYATTN_CUDA_BWD_TILE");
    printf("{\"impl\":\"polyattn\",\"pass\":\"backward\",\"suite\":\"%s\",\"algo\":\"%s\","
           "\"mode\":\"%s\",\"tile\":\"%s\",\"dtype\":\"%s\",\"batch\":%lld,\"heads_q\":%lld,"
           "\"heads_kv\":%lld,\"seq_q\":%lld,\"seq_kv\":%lld,\"head_dim\":%lld,\"causal\":%d",
           s->suite, algo, mode, tile && *tile ? tile : "default", s->dtype_name, (long long)s->batch, (long long)s->heads_q,
           (long long)s->heads_kv, (long long)s->seq_q, (long long)s->seq_kv,
           (long long)s->head_dim, s->causal);
}

static void json_error(const shape *s, const char *algo, const char *mode, const char *what,
                       const char *msg)
{
    json_head(s, algo, mode);
    printf(",\"ok\":false,\"error\":\"%s: ", what);
    for (const char *c = msg; c && *c; c++) {
        if (*c == '"' || *c == '\\') putchar('\\');
        putchar(*c >= ' ' ? *c : ' ');
    }
    printf("\"}\n");
    fflush(stdout);
}

static void run_one(polyattn_context *ctx, const shape *s, const char *algo_name, int det,
                    int max_reps)
{
    const char *mode = det ? "deterministic" : "atomic";
    polyattn_algo algo = !strcmp(algo_name, "unfused") ? POLYATTN_ALGO_UNFUSED
                         : !strcmp(algo_name, "fused") ? POLYATTN_ALGO_FUSED
                                                       : POLYATTN_ALGO_FLASH;
    polyattn_attention_desc desc;
    polyattn_attention_desc_init(&desc, s->dtype, s->batch, s->heads_q, s->heads_kv, s->seq_q,
                                 s->seq_kv, s->head_dim, s->head_dim);
    desc.mask = s->causal == 2 ? POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT
                : s->causal    ? POLYATTN_MASK_CAUSAL_TOP_LEFT
                               : POLYATTN_MASK_NONE;
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_lse = 1;
    opt.want_backward = 1;
    opt.deterministic = det;
    polyattn_plan *plan = NULL;
    if (polyattn_plan_create(ctx, &desc, &opt, &plan) != POLYATTN_STATUS_SUCCESS) {
        json_error(s, algo_name, mode, "plan", polyattn_context_last_error(ctx));
        return;
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_plan_get_info(plan, &info);

    const size_t es = polyattn_dtype_size(s->dtype);
    const size_t nq = (size_t)(s->batch * s->heads_q * s->seq_q * s->head_dim);
    const size_t nk = (size_t)(s->batch * s->heads_kv * s->seq_kv * s->head_dim);
    const size_t nl = (size_t)(s->batch * s->heads_q * s->seq_q);
    /* q k v o do lse dq dk dv ws bws */
    polyattn_buffer *b[11] = {0};
    const size_t bytes[9] = {nq * es, nk * es, nk * es, nq * es, nq * es, nl * 4,
                             nq * es, nk * es, nk * es};
    host_data h;
    memset(&h, 0, sizeof h);
    polyattn_event *e0 = NULL, *e1 = NULL;
    double *times = NULL;
    const char *fail = NULL;
    const size_t big = nq > nk ? nq : nk;
    h.q = malloc(nq * 4), h.k = malloc(nk * 4), h.v = malloc(nk * 4), h.d_o = malloc(nq * 4);
    h.o = malloc(nq * 4), h.lse = malloc(nl * 4), h.stage = malloc(big * 4);
    h.dq = malloc(nq * es), h.dk = malloc(nk * es), h.dv = malloc(nk * es);
    if (!h.q || !h.k || !h.v || !h.d_o || !h.o || !h.lse || !h.stage || !h.dq || !h.dk || !h.dv)
        fail = "host memory";
    for (int i = 0; !fail && i < 9; i++)
        if (polyattn_buffer_alloc(ctx, bytes[i], &b[i])) fail = "alloc";
    if (!fail && info.workspace_bytes && polyattn_buffer_alloc(ctx, info.workspace_bytes, &b[9]))
        fail = "alloc workspace";
    if (!fail && info.backward_workspace_bytes &&
        polyattn_buffer_alloc(ctx, info.backward_workspace_bytes, &b[10]))
        fail = "alloc backward workspace";
    float *hosts[4] = {h.q, h.k, h.v, h.d_o};
    const int which[4] = {0, 1, 2, 4};
    for (int i = 0; !fail && i < 4; i++) {
        const size_t n = bytes[which[i]] / es;
        fill(hosts[i], n, s->dtype, h.stage);
        if (polyattn_buffer_write(b[which[i]], 0, h.stage, n * es)) fail = "upload";
    }
    if (!fail && (polyattn_event_create(ctx, &e0) || polyattn_event_create(ctx, &e1)))
        fail = "events";
    if (!fail && polyattn_forward(plan, b[0], b[1], b[2], b[3], b[5], NULL, b[9])) fail = "forward";
    /* poison the gradients (0xff: NaN in every dtype), run once, check */
    if (!fail) {
        memset(h.stage, 0xff, big * 4);
        for (int i = 6; i < 9 && !fail; i++)
            if (polyattn_buffer_write(b[i], 0, h.stage, bytes[i])) fail = "poison";
    }
    if (!fail && polyattn_backward(plan, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[10]))
        fail = "backward";
    if (!fail && polyattn_context_synchronize(ctx)) fail = "synchronize";
    if (!fail && (polyattn_buffer_read(b[3], 0, h.stage, nq * es) ||
                  polyattn_buffer_read(b[5], 0, h.lse, nl * 4) ||
                  polyattn_buffer_read(b[6], 0, h.dq, nq * es) ||
                  polyattn_buffer_read(b[7], 0, h.dk, nk * es) ||
                  polyattn_buffer_read(b[8], 0, h.dv, nk * es)))
        fail = "read";
    double err[3] = {0, 0, 0};
    int bad = 0;
    if (!fail) {
        for (size_t i = 0; i < nq; i++)
            h.o[i] = bench_dev_val(s->dtype, h.stage, i);
        /* every gradient element written and finite */
        for (size_t i = 0; i < nq && !bad; i++)
            bad += !isfinite(bench_dev_val(s->dtype, h.dq, i));
        for (size_t i = 0; i < nk && !bad; i++)
            bad += !isfinite(bench_dev_val(s->dtype, h.dk, i)) ||
                   !isfinite(bench_dev_val(s->dtype, h.dv, i));
        check_rows(s, &h, 1.0f / sqrtf((float)s->head_dim), err, &bad);
    }
    const double tol = s->dtype == POLYATTN_DTYPE_F32 ? 1e-3 : s->dtype == POLYATTN_DTYPE_F16 ? 1e-2 : 4e-2;
    const int ok = !fail && !bad && err[0] <= tol && err[1] <= tol && err[2] <= tol;

    double median = 0;
    int reps = 0;
    if (!fail) {
        double est = 0;
        polyattn_event_record(e0);
        for (int w = 0; w < 3; w++)
            polyattn_backward(plan, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[10]);
        polyattn_event_record(e1);
        if (polyattn_event_elapsed_ms(e0, e1, &est)) fail = "timing";
        est /= 3;
        reps = est > 0 ? (int)(300.0 / est) : max_reps;
        if (reps < 5) reps = 5;
        if (reps > max_reps) reps = max_reps;
        times = calloc((size_t)reps, sizeof(double));
        for (int r = 0; !fail && r < reps; r++) {
            polyattn_event_record(e0);
            polyattn_status st = polyattn_backward(plan, b[0], b[1], b[2], b[3], b[4], b[5], b[6],
                                                   b[7], b[8], b[10]);
            polyattn_event_record(e1);
            if (st || polyattn_event_elapsed_ms(e0, e1, &times[r])) fail = "timed backward";
        }
        if (!fail) {
            qsort(times, (size_t)reps, sizeof(double), bench_cmp_double);
            median = times[reps / 2];
        }
    }
    if (fail) {
        json_error(s, algo_name, mode, fail, polyattn_context_last_error(ctx));
    } else {
        const double flops = 2.5 * 4.0 * (double)s->batch * (double)s->heads_q * (double)s->seq_q *
                             (double)s->seq_kv * (double)s->head_dim * (s->causal ? 0.5 : 1.0);
        json_head(s, algo_name, mode);
        printf(",\"ok\":%s,\"dq_rel\":%.3e,\"dk_rel\":%.3e,\"dv_rel\":%.3e,\"bad\":%d,"
               "\"ms\":%.5f,\"tflops\":%.3f,\"reps\":%d,\"backward_workspace_bytes\":%llu}\n",
               ok ? "true" : "false", err[0], err[1], err[2], bad, median,
               flops / (median * 1e-3) / 1e12, reps,
               (unsigned long long)info.backward_workspace_bytes);
        fflush(stdout);
    }
    free(times);
    free(h.q), free(h.k), free(h.v), free(h.d_o), free(h.o), free(h.lse), free(h.stage);
    free(h.dq), free(h.dk), free(h.dv);
    polyattn_event_destroy(e0), polyattn_event_destroy(e1);
    for (int i = 0; i < 11; i++)
        polyattn_buffer_free(b[i]);
    polyattn_plan_destroy(plan);
}

int main(int argc, char **argv)
{
    int max_reps = 30, det = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            max_reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--det")) {
            det = 1;
        } else {
            fprintf(stderr, "usage: %s [--reps N] [--det] < shapes\n", argv[0]);
            return 2;
        }
    }
    int count = 0;
    const char *reason = NULL;
    polyattn_device_count(POLYATTN_BACKEND_CUDA, &count, &reason);
    if (count == 0) {
        fprintf(stderr, "cuda_bwd_bench: no CUDA device: %s\n", reason ? reason : "");
        return 77;
    }
    polyattn_context *ctx = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_CUDA, 0, &ctx)) {
        fprintf(stderr, "cuda_bwd_bench: %s\n", polyattn_last_error());
        return 1;
    }
    bench_print_device(ctx);
    char line[512];
    while (fgets(line, sizeof line, stdin)) {
        shape s;
        if (!bench_parse_line(line, &s)) continue;
        for (char *a = s.algos; *a;) {
            char *comma = strchr(a, ',');
            if (comma) *comma = 0;
            run_one(ctx, &s, a, 0, max_reps);
            if (det) run_one(ctx, &s, a, 1, max_reps);
            if (!comma) break;
            a = comma + 1;
        }
    }
    polyattn_context_destroy(ctx);
    return 0;
}
