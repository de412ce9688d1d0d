/*
 * polyattn bench's validation must be able to fail: the checking code is called directly
 * on the host backend with a correct output (accepted) and the same output with one
 * element spoiled (rejected as a wrong result), for the forward's O and the backward's dK.
 * The spoiled element is the last one, which the validation's last slice covers (for dK:
 * a key no query sees under the top-left causal mask, whose gradient is 0).
 */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* Adds 1 to the last element of buf (count elements of dtype). */
static void spoil_last(polyattn_buffer *buf, polyattn_dtype dtype, uint64_t count)
{
    size_t esize = polyattn_dtype_size(dtype);
    unsigned char raw[4];
    float f;
    uint64_t at = (count - 1) * esize;
    if (polyattn_buffer_read(buf, at, raw, esize) != POLYATTN_STATUS_SUCCESS) {
        CHECK(0, "read back the element to spoil");
        return;
    }
    pa_cli_to_f32(dtype, raw, &f, 1);
    f += 1.0f;
    pa_cli_from_f32(dtype, &f, raw, 1);
    CHECK(polyattn_buffer_write(buf, at, raw, esize) == POLYATTN_STATUS_SUCCESS, "spoil");
}

static void check_dtype(polyattn_context *ctx, polyattn_dtype dtype)
{
    const pa_bench_shape sh = {
        2, 4, 2, 37, 53, 40, 40, POLYATTN_MASK_CAUSAL_TOP_LEFT, PA_BENCH_DENSE, 0, 0};
    const float scale = (float)(1.0 / sqrt(40.0));
    size_t esize = polyattn_dtype_size(dtype);
    uint64_t big = (uint64_t)(sh.batch * sh.heads_q * sh.seq_kv * sh.head_dim);
    void *staging = malloc(big * 4);
    float *scratch = malloc(big * 4);
    pa_bench_sets sets;
    memset(&sets, 0, sizeof sets);
    polyattn_plan *plan = NULL;
    polyattn_buffer *o = NULL, *lse = NULL, *grad[3] = {NULL, NULL, NULL};
    pa_bench_result r;
    memset(&r, 0, sizeof r);
    if (!staging || !scratch ||
        pa_bench_make_sets(ctx, &sh, dtype, 1, 1, &sets, staging, scratch) !=
            POLYATTN_STATUS_SUCCESS) {
        CHECK(0, "input sets");
        goto done;
    }
    polyattn_attention_desc desc;
    polyattn_attention_desc_init(&desc, dtype, sh.batch, sh.heads_q, sh.heads_kv, sh.seq_q,
                                 sh.seq_kv, sh.head_dim, sh.head_dim_v);
    desc.scale = scale;
    desc.mask = sh.mask;
    polyattn_plan_options opts;
    polyattn_plan_options_init(&opts);
    opts.algo = POLYATTN_ALGO_FLASH;
    opts.want_backward = 1;
    uint64_t rows = (uint64_t)(sh.batch * sh.heads_q * sh.seq_q);
    if (polyattn_plan_create(ctx, &desc, &opts, &plan) != POLYATTN_STATUS_SUCCESS ||
        polyattn_buffer_alloc(ctx, sets.count[3] * esize, &o) != POLYATTN_STATUS_SUCCESS ||
        polyattn_buffer_alloc(ctx, rows * 4, &lse) != POLYATTN_STATUS_SUCCESS) {
        CHECK(0, "plan and buffers: %s", polyattn_context_last_error(ctx));
        goto done;
    }
    polyattn_buffer *const *in = sets.buf[0];
    CHECK(polyattn_forward(plan, in[0], in[1], in[2], o, lse, NULL, NULL) ==
              POLYATTN_STATUS_SUCCESS,
          "forward");

    /* Forward: accepted as computed, rejected once spoiled. */
    CHECK(pa_bench_validate(ctx, &sh, scale, dtype, sets.host, o, &r) == 0,
          "%s: the correct O was rejected: %s", polyattn_dtype_name(dtype), r.reason);
    CHECK(r.rows_checked > 0, "no row checked");
    for (int t = 0; t < 3; t++)
        if (polyattn_buffer_alloc(ctx, sets.count[t] * esize, &grad[t]) !=
            POLYATTN_STATUS_SUCCESS) {
            CHECK(0, "gradient buffers");
            goto done;
        }
    CHECK(polyattn_backward(plan, in[0], in[1], in[2], o, in[3], lse, grad[0], grad[1], grad[2],
                            NULL) == POLYATTN_STATUS_SUCCESS,
          "backward");
    pa_bench_grads g = {o, lse, grad[0], grad[1], grad[2]};
    memset(&r, 0, sizeof r);
    CHECK(pa_bench_validate_backward(&sh, scale, dtype, sets.host, &g, &r) == 0,
          "%s: the correct gradients were rejected: %s", polyattn_dtype_name(dtype), r.reason);
    spoil_last(grad[1], dtype, sets.count[1]);
    memset(&r, 0, sizeof r);
    CHECK(pa_bench_validate_backward(&sh, scale, dtype, sets.host, &g, &r) == 1,
          "%s: a spoiled dK passed", polyattn_dtype_name(dtype));
    CHECK(strstr(r.reason, "wrong gradient: dK batch 1 kv-head 1 row 52 col 39") != NULL,
          "%s: dK reason: %s", polyattn_dtype_name(dtype), r.reason);

    spoil_last(o, dtype, sets.count[3]);
    memset(&r, 0, sizeof r);
    CHECK(pa_bench_validate(ctx, &sh, scale, dtype, sets.host, o, &r) == 1,
          "%s: a spoiled O passed", polyattn_dtype_name(dtype));
    CHECK(strstr(r.reason, "wrong result") != NULL, "%s: O reason: %s", polyattn_dtype_name(dtype),
          r.reason);
    printf("%s: spoiled O and dK rejected\n", polyattn_dtype_name(dtype));
done:
    for (int t = 0; t < 3; t++)
        polyattn_buffer_free(grad[t]);
    polyattn_buffer_free(lse);
    polyattn_buffer_free(o);
    polyattn_plan_destroy(plan);
    pa_bench_free_sets(&sets);
    free(scratch);
    free(staging);
}

/* With score variants: O computed with them is accepted; O computed without one of them
 * (each in turn) is rejected, so that the validation's reference really applies each. */
static void check_variants(polyattn_context *ctx, polyattn_mask mask)
{
    const pa_bench_shape sh = {2, 4, 2, 37, 53, 40, 40, mask, PA_BENCH_DENSE, 0, 0};
    const float scale = (float)(1.0 / sqrt(40.0));
    const polyattn_dtype dtype = POLYATTN_DTYPE_F32;
    uint64_t big = (uint64_t)(sh.batch * sh.heads_q * sh.seq_q * sh.seq_kv);
    void *staging = malloc(big * 4);
    float *scratch = malloc(big * 4);
    pa_bench_sets sets;
    memset(&sets, 0, sizeof sets);
    pa_bench_variants all = {1, 1, 6, 2, 3.0f, 1, 1, 1, POLYATTN_DTYPE_BF16};
    polyattn_buffer *o = NULL;
    if (!staging || !scratch ||
        pa_bench_make_sets(ctx, &sh, dtype, 1, 0, &sets, staging, scratch) !=
            POLYATTN_STATUS_SUCCESS ||
        polyattn_buffer_alloc(ctx, sets.count[3] * 4, &o) != POLYATTN_STATUS_SUCCESS) {
        CHECK(0, "variants: inputs");
        goto done;
    }
    for (int drop = -1; drop < 5; drop++) {
        pa_bench_variants used = all;
        switch (drop) {
        case 0: used.has_window = 0; break;
        case 1: used.softcap = 0; break;
        case 2: used.alibi = 0; break;
        case 3: used.bias = 0; break;
        case 4: used.sinks = 0; break;
        default: break;
        }
        polyattn_attention_desc desc;
        polyattn_attention_desc_init(&desc, dtype, sh.batch, sh.heads_q, sh.heads_kv, sh.seq_q,
                                     sh.seq_kv, sh.head_dim, sh.head_dim_v);
        desc.scale = scale;
        desc.mask = sh.mask;
        pa_bench_variants_apply(&used, &desc);
        polyattn_plan_options opts;
        polyattn_plan_options_init(&opts);
        polyattn_plan *plan = NULL;
        pa_bench_variant_bufs vb;
        memset(&vb, 0, sizeof vb);
        pa_bench_result r;
        memset(&r, 0, sizeof r);
        polyattn_buffer *const *in = sets.buf[0];
        if (polyattn_plan_create(ctx, &desc, &opts, &plan) != POLYATTN_STATUS_SUCCESS ||
            pa_bench_variants_make(ctx, &used, &sh, staging, big * 4, &vb) !=
                POLYATTN_STATUS_SUCCESS ||
            polyattn_forward_ex(plan, in[0], in[1], in[2], o, NULL, NULL, NULL, &vb.extra) !=
                POLYATTN_STATUS_SUCCESS) {
            CHECK(0, "variants: forward: %s", polyattn_context_last_error(ctx));
        } else {
            int v = pa_bench_validate_variants(ctx, &sh, scale, dtype, sets.host, o, &all, &r);
            CHECK(v == (drop < 0 ? 0 : 1), "variants %s: dropping %d: validation gave %d (%s)",
                  polyattn_mask_name(mask), drop, v, r.reason);
        }
        pa_bench_variants_free(&vb);
        polyattn_plan_destroy(plan);
    }
    printf("variants %s: O without any one of them rejected\n", polyattn_mask_name(mask));
done:
    polyattn_buffer_free(o);
    pa_bench_free_sets(&sets);
    free(scratch);
    free(staging);
}

int main(void)
{
    polyattn_context *ctx = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        printf("FAIL: host context\n");
        return 1;
    }
    check_dtype(ctx, POLYATTN_DTYPE_F32);
    check_dtype(ctx, POLYATTN_DTYPE_BF16);
    check_variants(ctx, POLYATTN_MASK_NONE);
    check_variants(ctx, POLYATTN_MASK_CAUSAL_TOP_LEFT);
    check_variants(ctx, POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT);
    polyattn_context_destroy(ctx);
    printf("test_bench_check: %d failures\n", failures);
    return failures ? 1 : 0;
}
