/* One attention forward on the host backend: 1 batch, 2 heads, 3 queries, 4 keys. */
#include <polyattn.h>
#include <stdio.h>

#define CHECK(call) do { polyattn_status s_ = (call); if (s_ != POLYATTN_STATUS_SUCCESS) { \
    fprintf(stderr, "%s: %s\n", #call, polyattn_status_string(s_)); return 1; } } while (0)

int main(void)
{
    enum { BATCH = 1, HEADS = 2, SEQ_Q = 3, SEQ_KV = 4, HEAD_DIM = 8 };
    float q[BATCH * HEADS * SEQ_Q * HEAD_DIM], kv[BATCH * HEADS * SEQ_KV * HEAD_DIM];
    float o[BATCH * HEADS * SEQ_Q * HEAD_DIM];
    for (int i = 0; i < (int)(sizeof q / sizeof q[0]); i++) q[i] = 0.01f * (float)(i % 7);
    for (int i = 0; i < (int)(sizeof kv / sizeof kv[0]); i++) kv[i] = 1.0f; /* V rows all 1 */

    polyattn_context *ctx;
    CHECK(polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx));
    polyattn_attention_desc desc;   /* contiguous BHSD float32, scale 1/sqrt(head_dim) */
    polyattn_attention_desc_init(&desc, POLYATTN_DTYPE_F32, BATCH, HEADS, HEADS, SEQ_Q, SEQ_KV,
                                 HEAD_DIM, HEAD_DIM);
    polyattn_plan *plan;
    CHECK(polyattn_plan_create(ctx, &desc, NULL, &plan)); /* NULL options: algorithm AUTO */
    polyattn_plan_info info = {.struct_size = sizeof info};
    CHECK(polyattn_plan_get_info(plan, &info));

    polyattn_buffer *bq, *bk, *bv, *bo;
    CHECK(polyattn_buffer_alloc(ctx, sizeof q, &bq));
    CHECK(polyattn_buffer_alloc(ctx, sizeof kv, &bk));
    CHECK(polyattn_buffer_alloc(ctx, sizeof kv, &bv));
    CHECK(polyattn_buffer_alloc(ctx, sizeof o, &bo));
    CHECK(polyattn_buffer_write(bq, 0, q, sizeof q));
    CHECK(polyattn_buffer_write(bk, 0, kv, sizeof kv));
    CHECK(polyattn_buffer_write(bv, 0, kv, sizeof kv));
    CHECK(polyattn_forward(plan, bq, bk, bv, bo, NULL, NULL, NULL)); /* workspace: 0 bytes */
    CHECK(polyattn_buffer_read(bo, 0, o, sizeof o));

    printf("algorithm: %s (%s)\n", polyattn_algo_name(info.algo), info.reason);
    printf("o[0][0][0][0] = %.6f\n", o[0]); /* softmax weights sum to 1, V rows are 1 */
    int ok = o[0] > 0.9999f && o[0] < 1.0001f;
    polyattn_buffer_free(bq); polyattn_buffer_free(bk);
    polyattn_buffer_free(bv); polyattn_buffer_free(bo);
    polyattn_plan_destroy(plan);
    polyattn_context_destroy(ctx);
    return ok ? 0 : 1;
}
