/*
 * Serving layouts on the host backend: bad inputs.  Every plan-time and forward-time check
 * names its field and writes nothing (outputs and caches compared byte for byte).
 */
#include "serving_fixture.h"

/* ---- bad inputs ---- */

/* A forward whose device data is bad: INVALID_ARGUMENT naming `field`, nothing written. */
static void expect_forward_fails(built *w, const char *field)
{
    polyattn_plan *plan = NULL;
    if (plan_for(w, POLYATTN_ALGO_UNFUSED, 0, &plan) != POLYATTN_STATUS_SUCCESS) {
        CHECK(!"plan of a bad-data case");
        return;
    }
    /* Fresh poison and caches, so that any write shows. */
    polyattn_buffer_write(w->bo, 0, w->o_img, w->o_bytes);
    polyattn_buffer_write(w->bk, 0, w->k_img, w->k_bytes);
    polyattn_buffer_write(w->bv, 0, w->v_img, w->v_bytes);
    float *lse0 = malloc(w->lse_elems * 4), *lse1 = malloc(w->lse_elems * 4);
    pa_tk_poison(lse0, w->lse_elems, POLYATTN_DTYPE_F32);
    polyattn_buffer_write(w->blse, 0, lse0, w->lse_elems * 4);
    polyattn_status st =
        polyattn_forward_ex(plan, w->bq, w->bk, w->bv, w->bo, w->blse, NULL, NULL, &w->extra);
    const char *err = polyattn_context_last_error(ctx);
    CHECK(st == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(err, field) != NULL);
    if (st != POLYATTN_STATUS_INVALID_ARGUMENT || !strstr(err, field))
        fprintf(stderr, "  expected a forward error naming %s, got %s: %s\n", field,
                polyattn_status_name(st), err);
    unsigned char *o = malloc(w->o_bytes), *k = malloc(w->k_bytes), *v = malloc(w->v_bytes);
    polyattn_buffer_read(w->bo, 0, o, w->o_bytes), polyattn_buffer_read(w->bk, 0, k, w->k_bytes);
    polyattn_buffer_read(w->bv, 0, v, w->v_bytes),
        polyattn_buffer_read(w->blse, 0, lse1, w->lse_elems * 4);
    CHECK(memcmp(o, w->o_img, w->o_bytes) == 0);
    CHECK(memcmp(k, w->k_img, w->k_bytes) == 0 && memcmp(v, w->v_img, w->v_bytes) == 0);
    CHECK(memcmp(lse0, lse1, w->lse_elems * 4) == 0);
    free(o), free(k), free(v), free(lse0), free(lse1);
    polyattn_plan_destroy(plan);
}

static void bad_device_data(void)
{
    const scase paged = {"bad paged",
                         POLYATTN_DTYPE_F32,
                         3,
                         4,
                         2,
                         8,
                         8,
                         1,
                         5,
                         POLYATTN_KV_PAGED,
                         40,
                         16,
                         1,
                         0,
                         2,
                         POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT,
                         0,
                         -1,
                         -1,
                         0,
                         0,
                         0,
                         1};
    built w;
    build(&w, &paged, 99);
    const int32_t cu_q[MAXB + 1] = {w.cu_q[0], w.cu_q[1], w.cu_q[2], w.cu_q[3]};
    int32_t *cu = w.cu_q;
#define UPLOAD_CU() polyattn_buffer_write(w.bcu_q, 0, cu, 4 * 4)
    cu[2] = cu[1] - 1, UPLOAD_CU();
    expect_forward_fails(&w, "extra.cu_seqlens_q[2]");
    memcpy(cu, cu_q, sizeof cu_q), cu[0] = -1, UPLOAD_CU();
    expect_forward_fails(&w, "extra.cu_seqlens_q[0]");
    memcpy(cu, cu_q, sizeof cu_q), cu[3] = (int32_t)w.total_q + 1, UPLOAD_CU();
    expect_forward_fails(&w, "extra.cu_seqlens_q[3]");
    memcpy(cu, cu_q, sizeof cu_q), cu[3] = cu[2] + (int32_t)w.desc.max_seqlen_q + 1, UPLOAD_CU();
    expect_forward_fails(&w, "max_seqlen_q");
    memcpy(cu, cu_q, sizeof cu_q), UPLOAD_CU();
    int32_t used[MAXB];
    memcpy(used, w.seqused, sizeof used);
    w.seqused[1] = -1, polyattn_buffer_write(w.bused, 0, w.seqused, 3 * 4);
    expect_forward_fails(&w, "extra.seqused_kv[1]");
    w.seqused[1] = (int32_t)(w.cap - paged.seq_new + 1),
    polyattn_buffer_write(w.bused, 0, w.seqused, 3 * 4);
    expect_forward_fails(&w, "past the cache's end");
    w.seqused[1] = (int32_t)(w.desc.max_seqlen_kv - paged.seq_new + 1);
    polyattn_buffer_write(w.bused, 0, w.seqused, 3 * 4);
    expect_forward_fails(&w, "max_seqlen_kv");
    memcpy(w.seqused, used, sizeof used), polyattn_buffer_write(w.bused, 0, w.seqused, 3 * 4);
    const size_t tb = (size_t)(3 * w.max_blocks) * 4;
    int32_t first = w.table[0];
    w.table[0] = (int32_t)w.num_blocks, polyattn_buffer_write(w.btable, 0, w.table, tb);
    expect_forward_fails(&w, "extra.block_table[0][0]");
    w.table[0] = -5, polyattn_buffer_write(w.btable, 0, w.table, tb);
    expect_forward_fails(&w, "extra.block_table[0][0]");
    w.table[0] = first;
    /* The block sequence 0 appends into (its last one). */
    const int64_t last = (w.lk[0] - 1) / paged.block_size;
    int32_t keep = w.table[last];
    w.table[last] = INT32_MAX, polyattn_buffer_write(w.btable, 0, w.table, tb);
    char field[64];
    snprintf(field, sizeof field, "extra.block_table[0][%lld]", (long long)last);
    expect_forward_fails(&w, field);
    w.table[last] = keep, polyattn_buffer_write(w.btable, 0, w.table, tb);
    /* Entries past a sequence's need are not read: -1 there is fine (build wrote them). */
    polyattn_plan *plan = NULL;
    CHECK(plan_for(&w, POLYATTN_ALGO_FLASH, 0, &plan) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, &w.extra) ==
          POLYATTN_STATUS_SUCCESS);
    /* Extra tensors: missing, not asked for, short, old struct_size, aliasing an output. */
    polyattn_extra_tensors ex = w.extra;
    ex.cu_seqlens_q = NULL;
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, &ex) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(polyattn_context_last_error(ctx), "extra.cu_seqlens_q") != NULL);
    ex = w.extra, ex.cu_seqlens_kv = w.bcu_q;
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, &ex) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(polyattn_context_last_error(ctx), "extra.cu_seqlens_kv") != NULL);
    polyattn_buffer *short_used = upload(NULL, 8);
    ex = w.extra, ex.seqused_kv = short_used;
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, &ex) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(polyattn_context_last_error(ctx), "extra.seqused_kv") != NULL);
    ex = w.extra, ex.struct_size = offsetof(polyattn_extra_tensors, d_sinks) + sizeof(void *);
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, &ex) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(polyattn_context_last_error(ctx), "extra.cu_seqlens_q: NULL") != NULL);
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, NULL) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    polyattn_buffer *o_view = NULL;
    polyattn_buffer_view(w.bo, 0, 16, &o_view);
    ex = w.extra, ex.seqused_kv = o_view;
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, &ex) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(polyattn_context_last_error(ctx), "overlaps") != NULL);
    polyattn_buffer_free(o_view), polyattn_buffer_free(short_used);
    polyattn_plan_destroy(plan);
    unbuild(&w);
#undef UPLOAD_CU

    /* A dense cache without append: a length beyond its capacity. */
    const scase dense = {
        "bad cache", POLYATTN_DTYPE_F32, 2, 2,  2,  8, 8, 0, 3, POLYATTN_KV_CACHE, 20, 0, 0, 0,
        0,           POLYATTN_MASK_NONE, 0, -1, -1, 0, 0, 0, 0};
    build(&w, &dense, 7);
    w.seqused[1] = (int32_t)w.cap + 1, polyattn_buffer_write(w.bused, 0, w.seqused, 2 * 4);
    expect_forward_fails(&w, "beyond the cache's capacity");
    unbuild(&w);
    /* Varlen keys: offsets decreasing, past the rows. */
    const scase vk = {"bad varlen kv",
                      POLYATTN_DTYPE_F32,
                      3,
                      2,
                      1,
                      8,
                      8,
                      0,
                      4,
                      POLYATTN_KV_VARLEN,
                      12,
                      0,
                      0,
                      0,
                      0,
                      POLYATTN_MASK_CAUSAL_TOP_LEFT,
                      0,
                      -1,
                      -1,
                      0,
                      0,
                      0,
                      0};
    build(&w, &vk, 8);
    int32_t cu_kv[MAXB + 1];
    memcpy(cu_kv, w.cu_kv, sizeof cu_kv);
    w.cu_kv[1] = w.cu_kv[2] + 1, polyattn_buffer_write(w.bcu_kv, 0, w.cu_kv, 4 * 4);
    expect_forward_fails(&w, "extra.cu_seqlens_kv[2]");
    memcpy(w.cu_kv, cu_kv, sizeof cu_kv), w.cu_kv[3] = (int32_t)w.total_kv + 1;
    polyattn_buffer_write(w.bcu_kv, 0, w.cu_kv, 4 * 4);
    expect_forward_fails(&w, "extra.cu_seqlens_kv[3]");
    unbuild(&w);
}

/* A descriptor (or plan) refused at plan time with `status`, naming `field`. */
static void expect_plan_fails(const polyattn_attention_desc *d, const polyattn_plan_options *opt,
                              polyattn_status status, const char *field)
{
    polyattn_plan *plan = NULL;
    polyattn_status st = polyattn_plan_create(ctx, d, opt, &plan);
    const char *err = polyattn_context_last_error(ctx);
    CHECK(st == status && plan == NULL);
    CHECK(strstr(err, field) != NULL);
    if (st != status || !strstr(err, field))
        fprintf(stderr, "  expected %s naming %s, got %s: %s\n", polyattn_status_name(status),
                field, polyattn_status_name(st), err);
    if (status == POLYATTN_STATUS_INVALID_ARGUMENT && !opt) {
        const char *msg = NULL;
        CHECK(polyattn_attention_desc_validate(d, &msg) == POLYATTN_STATUS_INVALID_ARGUMENT);
    }
    polyattn_plan_destroy(plan);
}

static void bad_descriptors(void)
{
    const scase paged = {
        "desc", POLYATTN_DTYPE_F32, 3, 4,  2,  8, 8, 1, 5, POLYATTN_KV_PAGED, 40, 16, 1, 0,
        2,      POLYATTN_MASK_NONE, 0, -1, -1, 0, 0, 0, 0};
    built w;
    build(&w, &paged, 5);
    const polyattn_attention_desc good = w.desc;
    polyattn_attention_desc d;
    const polyattn_dtype f32 = POLYATTN_DTYPE_F32;
    const char *msg = NULL;
    CHECK(polyattn_attention_desc_validate(&good, &msg) == POLYATTN_STATUS_SUCCESS);
    d = good, polyattn_tensor_desc_bshd(&d.k, f32, w.num_blocks, 2, 24, 8);
    polyattn_tensor_desc_bshd(&d.v, f32, w.num_blocks, 2, 24, 8);
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "block_size");
    d = good, d.max_blocks_per_seq = 0;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "max_blocks_per_seq");
    d = good, polyattn_tensor_desc_bshd(&d.q, f32, 2, 4, w.total_q, 8);
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "q.shape[0]");
    d = good, d.num_seqs = 0;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "num_seqs");
    d = good, d.max_seqlen_q = w.total_q + 1;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "max_seqlen_q");
    d = good, d.max_seqlen_kv = w.max_blocks * 16 + 1;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "max_seqlen_kv");
    d = good, polyattn_tensor_desc_bhsd(&d.k_new, f32, 3, 1, 2, 8);
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "k_new.shape[1]");
    d = good, d.v_new.dtype = POLYATTN_DTYPE_F16;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "v_new.dtype");
    d = good, polyattn_tensor_desc_bhsd(&d.k_new, f32, 3, 2, w.max_blocks * 16 + 1, 8);
    polyattn_tensor_desc_bhsd(&d.v_new, f32, 3, 2, w.max_blocks * 16 + 1, 8);
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "k_new.shape[2]");
    d = good, d.kv_layout = (polyattn_kv_layout)7;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "kv_layout");
    d = good, d.kv_layout = POLYATTN_KV_VARLEN, d.max_blocks_per_seq = 0;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "has_kv_append");
    d = good, d.kv_layout = POLYATTN_KV_CACHE;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "max_blocks_per_seq");
    d = good, d.has_bias = 1, pa_tk_tensor_desc(&d.bias, f32, PA_TK_BHSD, 1, 1, w.total_q, 5);
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "has_bias");
    d = good, d.q.shape[2] = (int64_t)INT32_MAX + 1, d.o.shape[2] = d.q.shape[2];
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "q.shape[2]");
    /* A k cache that overlaps itself cannot be appended to. */
    d = good, d.k.strides[2] = 0;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "k.strides");
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.want_probs = 1;
    expect_plan_fails(&good, &opt, POLYATTN_STATUS_INVALID_ARGUMENT, "options.want_probs");
    polyattn_plan_options_init(&opt);
    opt.want_backward = 1;
    expect_plan_fails(&good, &opt, POLYATTN_STATUS_UNSUPPORTED, "inference-only");
    /* Dense q: num_seqs is 0 or the batch. */
    polyattn_attention_desc_init(&d, f32, 2, 2, 2, 3, 5, 8, 8);
    d.num_seqs = 3;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "num_seqs");
    d.num_seqs = 2;
    CHECK(polyattn_attention_desc_validate(&d, &msg) == POLYATTN_STATUS_SUCCESS);
    /* Plan info: upper bounds from max_seqlen (no mask: every pair of the bounds). */
    d = good, d.mask = POLYATTN_MASK_NONE, d.max_seqlen_q = 5, d.max_seqlen_kv = 30;
    polyattn_plan *plan = NULL;
    polyattn_plan_options_init(&opt);
    CHECK(polyattn_plan_create(ctx, &d, &opt, &plan) == POLYATTN_STATUS_SUCCESS);
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK(polyattn_plan_get_info(plan, &info) == POLYATTN_STATUS_SUCCESS);
    CHECK(fabs(info.flops - 2.0 * 3 * 4 * 5 * 30 * 16) < 1e-6);
    CHECK(info.min_bytes_moved >= (double)(w.q_bytes + w.k_bytes + w.v_bytes + w.o_bytes));
    polyattn_plan_destroy(plan);
    unbuild(&w);
}

int main(void)
{
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        printf("no host device: skipped\n");
        return 77;
    }
    bad_device_data();
    bad_descriptors();
    polyattn_context_destroy(ctx);
    pa_tk_shutdown();
    printf("test_serving_errors: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
