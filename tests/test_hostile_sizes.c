/*
 * Hostile sizes on the host backend: descriptors whose sizes cannot be represented are
 * refused at plan time (never a wrapped size, never undefined behaviour), planning is
 * bounded for huge causal problems, and a successful plan leaves no stale error behind.
 * Run under ASan+UBSan in the sanitizer build, where an overflow would be reported.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#include "polyattn.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int failures, checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static polyattn_context *ctx;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static polyattn_status try_plan(const polyattn_attention_desc *d, polyattn_plan_info *info)
{
    polyattn_plan *plan = NULL;
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    polyattn_status st = polyattn_plan_create(ctx, d, &opt, &plan);
    if (st == POLYATTN_STATUS_SUCCESS && info) {
        memset(info, 0, sizeof *info);
        info->struct_size = sizeof *info;
        polyattn_plan_get_info(plan, info);
    }
    polyattn_plan_destroy(plan);
    return st;
}

/* The reproducer: K and V broadcast one row (all strides 0) over seq_kv = 2^61.
 * Their spans are one element, but every size derived from seq_kv (scratch, packed copies,
 * bytes moved) wraps; the plan used to report 16 device bytes and forward overflowed. */
static void broadcast_kv_huge_seq(void)
{
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, 1, 1, 1, 1, 1, 16, 16);
    d.k.shape[2] = d.v.shape[2] = (int64_t)1 << 61;
    memset(d.k.strides, 0, sizeof d.k.strides);
    memset(d.v.strides, 0, sizeof d.v.strides);
    const char *msg = NULL;
    CHECK(polyattn_attention_desc_validate(&d, &msg) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(msg && strncmp(msg, "k:", 2) == 0 && strstr(msg, "seq_kv"));
    polyattn_plan_info info;
    CHECK(try_plan(&d, &info) == POLYATTN_STATUS_INVALID_ARGUMENT);
    const char *err = polyattn_context_last_error(ctx);
    CHECK(err && strstr(err, "seq_kv") && strstr(err, "cannot be represented"));
    /* The largest seq_kv that still fits is planned with honest (unwrapped) sizes. */
    d.k.shape[2] = d.v.shape[2] = (int64_t)1 << 40;
    polyattn_status st = try_plan(&d, &info);
    CHECK(st == POLYATTN_STATUS_SUCCESS || st == POLYATTN_STATUS_OVER_BUDGET);
    if (st == POLYATTN_STATUS_SUCCESS) CHECK(info.device_bytes >= ((uint64_t)1 << 40) * 16 * 4);
}

/* Probabilities of a problem whose probability count wraps are refused by name. */
static void probs_too_large(void)
{
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, 1, 1, 1, 1, 1, 1, 1);
    d.q.shape[2] = d.o.shape[2] = (int64_t)1 << 32;
    d.k.shape[2] = d.v.shape[2] = (int64_t)1 << 32;
    d.q.strides[2] = d.q.strides[1] = d.q.strides[0] = 0;
    d.k.strides[2] = d.k.strides[1] = d.k.strides[0] = 0;
    d.v.strides[2] = d.v.strides[1] = d.v.strides[0] = 0;
    d.o.strides[1] = d.o.strides[0] = (int64_t)1 << 32;
    polyattn_plan *plan = NULL;
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.want_probs = 1;
    CHECK(polyattn_plan_create(ctx, &d, &opt, &plan) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(polyattn_context_last_error(ctx), "probs:") != NULL);
    polyattn_plan_destroy(plan);
}

/* Causal planning is O(1) per problem: seq_q = 2^40 used to walk every row (hours). */
static void huge_causal_plans_fast(void)
{
    const polyattn_mask masks[2] = {POLYATTN_MASK_CAUSAL_TOP_LEFT,
                                    POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT};
    for (int m = 0; m < 2; m++) {
        polyattn_attention_desc d;
        polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F16, 1, 1, 1, (int64_t)1 << 40, 1 << 20, 16,
                                     16);
        d.mask = masks[m];
        double t0 = now_ms();
        polyattn_status st = try_plan(&d, NULL);
        double ms = now_ms() - t0;
        /* Top-left's work (2^65 multiply-adds) is refused; bottom-right's is planned. */
        CHECK(st == (m == 0 ? POLYATTN_STATUS_INVALID_ARGUMENT : POLYATTN_STATUS_OVER_BUDGET));
        CHECK(ms < 500.0);
        printf("causal seq_q 2^40 (%s): %s in %.2f ms\n", polyattn_mask_name(masks[m]),
               polyattn_status_string(st), ms);
    }
}

/* The closed form equals a pair-by-pair count (FLOPs of plan info), for every mask and
 * sliding window (FlashAttention's semantics: keys d - left <= j <= d + right around the
 * diagonal d = i + seq_kv - seq_q, or d = i under causal top-left; -1 unbounded). */
static void closed_form_pairs(void)
{
    const int64_t sides[] = {-1, 0, 1, 3};
    for (int mask = 0; mask < 3; mask++)
        for (int w = -1; w < 16; w++)
            for (int64_t sq = 1; sq <= 9; sq++)
                for (int64_t skv = 1; skv <= 9; skv++) {
                    polyattn_attention_desc d;
                    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, 2, 3, 1, sq, skv, 4, 2);
                    d.mask = (polyattn_mask)mask;
                    d.has_window = w >= 0;
                    const int64_t left = w >= 0 ? sides[w / 4] : -1;
                    const int64_t right = w >= 0 ? sides[w % 4] : -1;
                    d.window_left = left, d.window_right = right;
                    double pairs = 0;
                    for (int64_t i = 0; i < sq; i++) {
                        const int64_t diag =
                            mask == POLYATTN_MASK_CAUSAL_TOP_LEFT ? i : i + skv - sq;
                        for (int64_t j = 0; j < skv; j++) {
                            int seen = 1;
                            if (mask != POLYATTN_MASK_NONE && j > diag) seen = 0;
                            if (left >= 0 && j < diag - left) seen = 0;
                            if (right >= 0 && j > diag + right) seen = 0;
                            pairs += seen;
                        }
                    }
                    polyattn_plan_info info;
                    CHECK(try_plan(&d, &info) == POLYATTN_STATUS_SUCCESS);
                    if (info.flops != 2.0 * pairs * 2 * 3 * (4 + 2))
                        fprintf(stderr,
                                "mask %d window (%lld, %lld) %lldx%lld: %g pairs, plan %g\n", mask,
                                (long long)left, (long long)right, (long long)sq, (long long)skv,
                                pairs, info.flops / (2.0 * 2 * 3 * 6));
                    CHECK(info.flops == 2.0 * pairs * 2 * 3 * (4 + 2));
                }
}

/* Packed strides of huge shapes saturate instead of overflowing (UBSan checks the
 * arithmetic); validation then rejects the tensor. */
static void huge_shape_constructors(void)
{
    const int64_t seq = (int64_t)1 << 62;
    polyattn_tensor_desc t;
    polyattn_tensor_desc_bhsd(&t, POLYATTN_DTYPE_F32, 4, 8, seq, 16);
    CHECK(t.strides[2] == 16 && t.strides[1] == INT64_MAX && t.strides[0] == INT64_MAX);
    CHECK(polyattn_tensor_desc_bytes(&t) == 0);
    polyattn_tensor_desc_bshd(&t, POLYATTN_DTYPE_F32, 4, 8, seq, 16);
    CHECK(t.strides[1] == 16 && t.strides[2] == 128 && t.strides[0] == INT64_MAX);
    CHECK(polyattn_tensor_desc_bytes(&t) == 0);
    polyattn_tensor_desc_bhsd(&t, POLYATTN_DTYPE_F32, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX);
    CHECK(polyattn_tensor_desc_bytes(&t) == 0);
    polyattn_tensor_desc_bshd(&t, POLYATTN_DTYPE_F32, INT64_MIN, INT64_MIN, INT64_MIN, -1);
    CHECK(polyattn_tensor_desc_bytes(&t) == 0);
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F16, 2, 4, 2, seq, seq, 16, 16);
    const char *msg = NULL;
    CHECK(polyattn_attention_desc_validate(&d, &msg) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(msg && strstr(msg, "q:"));
    CHECK(try_plan(&d, NULL) == POLYATTN_STATUS_INVALID_ARGUMENT);
}

/* A successful autotuned plan_create leaves no error from its measurements behind. */
static void autotune_clears_error(void)
{
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, 1, 2, 1, 17, 23, 8, 8);
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.autotune = 1;
    polyattn_plan *plan = NULL;
    CHECK(polyattn_plan_create(ctx, &d, &opt, &plan) == POLYATTN_STATUS_SUCCESS);
    const char *err = polyattn_context_last_error(ctx);
    CHECK(err && err[0] == '\0');
    if (err && err[0]) fprintf(stderr, "  last error after success: %s\n", err);
    polyattn_plan_destroy(plan);
}

int main(void)
{
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "no host context: %s\n", polyattn_last_error());
        return 1;
    }
    broadcast_kv_huge_seq();
    probs_too_large();
    huge_causal_plans_fast();
    closed_form_pairs();
    huge_shape_constructors();
    autotune_clears_error();
    polyattn_context_destroy(ctx);
    printf("test_hostile_sizes: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
