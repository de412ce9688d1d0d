/*
 * polyattn_host_buffer_wrap: caller memory used in place on the host backend (a forward
 * writes straight into the caller's array and matches the copied path bit for bit), and
 * refused with a message on bad arguments.
 */
#include "polyattn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

enum { BATCH = 2, HEADS = 3, SEQ_Q = 7, SEQ_KV = 11, HEAD_DIM = 16 };
#define NQ (BATCH * HEADS * SEQ_Q * HEAD_DIM)
#define NKV (BATCH * HEADS * SEQ_KV * HEAD_DIM)

int main(void)
{
    static float q[NQ], k[NKV], v[NKV], o_wrapped[NQ], o_copied[NQ];
    srand(7);
    for (int i = 0; i < NQ; i++)
        q[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < NKV; i++)
        k[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < NKV; i++)
        v[i] = (float)rand() / RAND_MAX - 0.5f;
    for (int i = 0; i < NQ; i++)
        o_wrapped[i] = o_copied[i] = NAN; /* poison */

    polyattn_context *ctx = NULL;
    CHECK(polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) == POLYATTN_STATUS_SUCCESS);
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, BATCH, HEADS, HEADS, SEQ_Q, SEQ_KV,
                                 HEAD_DIM, HEAD_DIM);
    polyattn_plan *plan = NULL;
    CHECK(polyattn_plan_create(ctx, &d, NULL, &plan) == POLYATTN_STATUS_SUCCESS);

    polyattn_buffer *wq, *wk, *wv, *wo;
    CHECK(polyattn_host_buffer_wrap(ctx, q, sizeof q, &wq) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_host_buffer_wrap(ctx, k, sizeof k, &wk) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_host_buffer_wrap(ctx, v, sizeof v, &wv) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_host_buffer_wrap(ctx, o_wrapped, sizeof o_wrapped, &wo) ==
          POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_forward(plan, wq, wk, wv, wo, NULL, NULL, NULL) == POLYATTN_STATUS_SUCCESS);

    polyattn_buffer *bq, *bk, *bv, *bo;
    CHECK(polyattn_buffer_alloc(ctx, sizeof q, &bq) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_buffer_alloc(ctx, sizeof k, &bk) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_buffer_alloc(ctx, sizeof v, &bv) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_buffer_alloc(ctx, sizeof o_copied, &bo) == POLYATTN_STATUS_SUCCESS);
    polyattn_buffer_write(bq, 0, q, sizeof q);
    polyattn_buffer_write(bk, 0, k, sizeof k);
    polyattn_buffer_write(bv, 0, v, sizeof v);
    CHECK(polyattn_forward(plan, bq, bk, bv, bo, NULL, NULL, NULL) == POLYATTN_STATUS_SUCCESS);
    polyattn_buffer_read(bo, 0, o_copied, sizeof o_copied);
    CHECK(memcmp(o_wrapped, o_copied, sizeof o_copied) == 0); /* written in place, every element */
    for (int i = 0; i < NQ; i++)
        CHECK(isfinite(o_wrapped[i]));

    polyattn_buffer *bad = (polyattn_buffer *)1;
    CHECK(polyattn_host_buffer_wrap(ctx, NULL, 64, &bad) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(bad == NULL);
    CHECK(strstr(polyattn_context_last_error(ctx), "ptr") != NULL);
    CHECK(polyattn_host_buffer_wrap(ctx, q, 0, &bad) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_host_buffer_wrap(ctx, q, sizeof q, NULL) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_host_buffer_wrap(NULL, q, sizeof q, &bad) == POLYATTN_STATUS_INVALID_ARGUMENT);

    polyattn_buffer_free(wq), polyattn_buffer_free(wk), polyattn_buffer_free(wv);
    polyattn_buffer_free(wo);
    polyattn_buffer_free(bq), polyattn_buffer_free(bk), polyattn_buffer_free(bv);
    polyattn_buffer_free(bo);
    polyattn_plan_destroy(plan);
    polyattn_context_destroy(ctx);
    /* The wrapped arrays are the caller's: still readable after the buffers are gone. */
    CHECK(isfinite(o_wrapped[NQ - 1]));
    printf("test_host_buffer_wrap: %d failures\n", failures);
    return failures ? 1 : 0;
}
