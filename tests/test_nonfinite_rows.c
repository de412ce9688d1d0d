/*
 * Non-finite values (polyattn.h): a NaN in a row of Q makes that row's O and LSE NaN, a NaN
 * in a visible key makes every row that sees it NaN, a scale whose scores overflow makes
 * every visible row NaN; fully masked rows keep O = 0 and LSE = -inf, and the rest stay
 * finite.  Every algorithm of the backend given (default host) is checked.
 *   test_nonfinite_rows [--backend host|opencl|cuda|hip]     exit 77 without the device
 */
#include "polyattn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BATCH = 1, HEADS = 2, SEQ_Q = 11, SEQ_KV = 9, DIM = 16 };
enum row_kind { FINITE, MASKED, NAN_ROW };

static int failures, checks;

static float uniform(unsigned *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (float)(*state >> 8) / (float)(1u << 24) * 2.0f - 1.0f;
}

/* Bottom-right causal with seq_q > seq_kv: query i sees i - 1 keys (rows 0 and 1 none). */
static int64_t visible(int64_t i)
{
    int64_t n = i + 1 + (SEQ_KV - SEQ_Q);
    return n < 0 ? 0 : n > SEQ_KV ? SEQ_KV : n;
}

/* The documented rule for overflowing scores: +inf (or NaN) anywhere or -inf everywhere in
 * the visible keys makes the row NaN; data here keep every score far from the threshold. */
static enum row_kind overflow_kind(const float *q, const float *k, int h, int i, float scale)
{
    int any_pos_inf = 0, all_neg_inf = 1;
    for (int64_t j = 0; j < visible(i); j++) {
        double dot = 0;
        for (int c = 0; c < DIM; c++)
            dot += (double)q[((size_t)h * SEQ_Q + (size_t)i) * DIM + (size_t)c] *
                   (double)k[((size_t)h * SEQ_KV + (size_t)j) * DIM + (size_t)c];
        double s = dot * (double)scale;
        int inf = fabs(s) > 2.3587511e38;
        any_pos_inf |= inf && s > 0;
        all_neg_inf &= inf && s < 0;
    }
    return any_pos_inf || all_neg_inf ? NAN_ROW : FINITE;
}

static void run_case(polyattn_context *ctx, polyattn_algo algo, const char *name, float scale,
                     int nan_q_row, int nan_k_row)
{
    const size_t nq = (size_t)BATCH * HEADS * SEQ_Q * DIM,
                 nk = (size_t)BATCH * HEADS * SEQ_KV * DIM;
    const size_t rows = (size_t)BATCH * HEADS * SEQ_Q;
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4), *o = malloc(nq * 4);
    float *lse = malloc(rows * 4);
    unsigned seed = 7;
    for (size_t i = 0; i < nq; i++)
        q[i] = uniform(&seed);
    for (size_t i = 0; i < nk; i++)
        k[i] = uniform(&seed), v[i] = uniform(&seed);
    /* Head 0 only: head 1 stays finite. */
    if (nan_q_row >= 0) q[(size_t)nan_q_row * DIM + 3] = NAN;
    if (nan_k_row >= 0) k[(size_t)nan_k_row * DIM + 5] = NAN;

    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, BATCH, HEADS, HEADS, SEQ_Q, SEQ_KV, DIM,
                                 DIM);
    d.mask = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
    d.scale = scale;
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_lse = 1;
    polyattn_plan *plan = NULL;
    polyattn_buffer *bq = NULL, *bk = NULL, *bv = NULL, *bo = NULL, *bl = NULL, *bw = NULL;
    polyattn_status st = polyattn_plan_create(ctx, &d, &opt, &plan);
    if (st == POLYATTN_STATUS_UNSUPPORTED) goto done; /* e.g. the host has no fused path */
    checks++;
    if (st != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "%s %s: plan: %s\n", polyattn_algo_name(algo), name,
                polyattn_context_last_error(ctx));
        failures++;
        goto done;
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_plan_get_info(plan, &info);
    polyattn_buffer_alloc(ctx, nq * 4, &bq), polyattn_buffer_alloc(ctx, nk * 4, &bk);
    polyattn_buffer_alloc(ctx, nk * 4, &bv), polyattn_buffer_alloc(ctx, nq * 4, &bo);
    polyattn_buffer_alloc(ctx, rows * 4, &bl);
    if (info.workspace_bytes) polyattn_buffer_alloc(ctx, info.workspace_bytes, &bw);
    polyattn_buffer_write(bq, 0, q, nq * 4), polyattn_buffer_write(bk, 0, k, nk * 4);
    polyattn_buffer_write(bv, 0, v, nk * 4);
    for (size_t i = 0; i < nq; i++)
        o[i] = 12345.0f; /* poison */
    for (size_t i = 0; i < rows; i++)
        lse[i] = 12345.0f;
    polyattn_buffer_write(bo, 0, o, nq * 4), polyattn_buffer_write(bl, 0, lse, rows * 4);
    st = polyattn_forward(plan, bq, bk, bv, bo, bl, NULL, bw);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_context_synchronize(ctx);
    if (st != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "%s %s: forward: %s\n", polyattn_algo_name(algo), name,
                polyattn_context_last_error(ctx));
        failures++;
        goto done;
    }
    polyattn_buffer_read(bo, 0, o, nq * 4), polyattn_buffer_read(bl, 0, lse, rows * 4);
    for (int h = 0; h < HEADS; h++)
        for (int i = 0; i < SEQ_Q; i++) {
            enum row_kind want = FINITE;
            if (visible(i) == 0) want = MASKED;
            else if (scale > 1e30f) want = overflow_kind(q, k, h, i, scale);
            else if (h == 0 && (i == nan_q_row || (nan_k_row >= 0 && visible(i) > nan_k_row)))
                want = NAN_ROW;
            size_t row = (size_t)h * SEQ_Q + (size_t)i;
            int ok = want == MASKED    ? isinf(lse[row]) && lse[row] < 0
                     : want == NAN_ROW ? isnan(lse[row])
                                       : isfinite(lse[row]);
            for (int c = 0; c < DIM; c++) {
                float x = o[row * DIM + (size_t)c];
                ok &= want == MASKED ? x == 0.0f : want == NAN_ROW ? isnan(x) : isfinite(x);
            }
            if (!ok) {
                fprintf(stderr, "%s %s: head %d row %d: lse %g, o[0] %g; expected a %s row\n",
                        polyattn_algo_name(algo), name, h, i, (double)lse[row],
                        (double)o[row * DIM],
                        want == MASKED    ? "fully masked"
                        : want == NAN_ROW ? "NaN"
                                          : "finite");
                failures++;
                break;
            }
        }
done:
    polyattn_buffer_free(bq), polyattn_buffer_free(bk), polyattn_buffer_free(bv);
    polyattn_buffer_free(bo), polyattn_buffer_free(bl), polyattn_buffer_free(bw);
    polyattn_plan_destroy(plan);
    free(q), free(k), free(v), free(o), free(lse);
}

/* Every case on every algorithm of ctx's backend; returns the failures. */
int pa_nonfinite_rows_suite(polyattn_context *ctx, int *cases);
int pa_nonfinite_rows_suite(polyattn_context *ctx, int *cases)
{
    failures = checks = 0;
    for (int a = POLYATTN_ALGO_UNFUSED; a <= POLYATTN_ALGO_FLASH; a++) {
        run_case(ctx, (polyattn_algo)a, "finite", 0.0f, -1, -1);
        run_case(ctx, (polyattn_algo)a, "NaN in q row 5", 0.0f, 5, -1);
        run_case(ctx, (polyattn_algo)a, "NaN in k row 2", 0.0f, -1, 2);
        run_case(ctx, (polyattn_algo)a, "NaN in q row 0 (masked)", 0.0f, 0, -1);
        run_case(ctx, (polyattn_algo)a, "scale 1e38", 1e38f, -1, -1);
    }
    *cases = checks;
    return failures;
}

/* test_hip_emulated runs the suite on its emulated device (it has no main of its own here). */
#ifndef PA_NONFINITE_ROWS_NO_MAIN
int main(int argc, char **argv)
{
    polyattn_backend backend = POLYATTN_BACKEND_HOST;
    for (int i = 1; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--backend")) {
            const char *n = argv[i + 1];
            backend = !strcmp(n, "opencl") ? POLYATTN_BACKEND_OPENCL
                      : !strcmp(n, "cuda") ? POLYATTN_BACKEND_CUDA
                      : !strcmp(n, "hip")  ? POLYATTN_BACKEND_HIP
                                           : POLYATTN_BACKEND_HOST;
        }
    polyattn_context *ctx = NULL;
    if (polyattn_context_create(backend, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        printf("no %s device: %s\n", polyattn_backend_name(backend), polyattn_last_error());
        return 77;
    }
    int cases = 0;
    const int failed = pa_nonfinite_rows_suite(ctx, &cases);
    polyattn_context_destroy(ctx);
    printf("test_nonfinite_rows (%s): %d cases, %d failures\n", polyattn_backend_name(backend),
           cases, failed);
    return failed ? 1 : 0;
}
#endif
