/*
 * Every rejection path of descriptor validation, plan creation and forward: each must
 * return INVALID_ARGUMENT (never crash) with a message naming the field, and a rejected
 * forward must leave the outputs untouched.
 */
#include "polyattn.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

static int failures, checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* Asserts status == want and that message contains `field` (the name of what is wrong). */
static void expect_msg(int line, const char *what, polyattn_status st, const char *message,
                       polyattn_status want, const char *field)
{
    checks++;
    if (st != want) {
        fprintf(stderr, "line %d: %s: status %s, want %s (message: %s)\n", line, what,
                polyattn_status_name(st), polyattn_status_name(want), message ? message : "(null)");
        failures++;
        return;
    }
    if (field && (!message || !strstr(message, field))) {
        fprintf(stderr, "line %d: %s: message \"%s\" does not name \"%s\"\n", line, what,
                message ? message : "(null)", field);
        failures++;
    }
}

static polyattn_attention_desc base_desc(void)
{
    polyattn_attention_desc d;
    /* GQA 4:2, seq_q != seq_kv, head_dim_v != head_dim: all legal */
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, 2, 4, 2, 5, 7, 8, 6);
    return d;
}

/* validate(desc) must fail with INVALID_ARGUMENT naming field; so must plan creation. */
static polyattn_context *g_ctx;
static void expect_invalid_desc(int line, const char *what, const polyattn_attention_desc *d,
                                const char *field)
{
    const char *message = NULL;
    polyattn_plan *plan = NULL;
    polyattn_status st = polyattn_attention_desc_validate(d, &message);
    expect_msg(line, what, st, message, POLYATTN_STATUS_INVALID_ARGUMENT, field);
    /* NULL message pointer is allowed */
    CHECK(polyattn_attention_desc_validate(d, NULL) == POLYATTN_STATUS_INVALID_ARGUMENT);
    if (g_ctx) {
        st = polyattn_plan_create(g_ctx, d, NULL, &plan);
        expect_msg(line, what, st, polyattn_context_last_error(g_ctx),
                   POLYATTN_STATUS_INVALID_ARGUMENT, field);
        CHECK(plan == NULL);
        polyattn_plan_destroy(plan);
    }
}

#define INVALID(desc, field) expect_invalid_desc(__LINE__, #desc " -> " field, &(desc), field)

static polyattn_tensor_desc *tensor_of(polyattn_attention_desc *d, int which)
{
    switch (which) {
    case 0: return &d->q;
    case 1: return &d->k;
    case 2: return &d->v;
    default: return &d->o;
    }
}

static void test_descriptors(void)
{
    static const char *const tnames[4] = {"q", "k", "v", "o"};
    polyattn_attention_desc d = base_desc();
    const char *message = (const char *)1;
    char field[64];
    int t, dim;

    CHECK(polyattn_attention_desc_validate(&d, &message) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_attention_desc_validate(NULL, &message) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(message != NULL && message[0] != '\0');

    /* struct_size too small (0 and one byte short of the first published struct, which
     * ended at `mask`); that struct itself is accepted, its later members read as off even
     * when the bytes behind it say otherwise. */
    const size_t desc_v1 = offsetof(polyattn_attention_desc, mask) + sizeof(polyattn_mask);
    d = base_desc();
    d.struct_size = 0;
    INVALID(d, "struct_size");
    d.struct_size = desc_v1 - 1;
    INVALID(d, "struct_size");
    d.struct_size = desc_v1;
    d.has_window = 1, d.window_left = -7; /* beyond the caller's struct: ignored */
    CHECK(polyattn_attention_desc_validate(&d, NULL) == POLYATTN_STATUS_SUCCESS);
    d.struct_size = sizeof d;
    INVALID(d, "window_left");

    /* every dimension of every tensor: zero and negative; negative strides */
    for (t = 0; t < 4; t++) {
        for (dim = 0; dim < 4; dim++) {
            d = base_desc();
            tensor_of(&d, t)->shape[dim] = 0;
            snprintf(field, sizeof field, "%s.shape[%d]", tnames[t], dim);
            expect_invalid_desc(__LINE__, field, &d, field);
            d = base_desc();
            tensor_of(&d, t)->shape[dim] = -3;
            expect_invalid_desc(__LINE__, field, &d, field);
            d = base_desc();
            tensor_of(&d, t)->strides[dim] = -1;
            snprintf(field, sizeof field, "%s.strides[%d]", tnames[t], dim);
            expect_invalid_desc(__LINE__, field, &d, field);
        }
        /* an unknown dtype */
        d = base_desc();
        tensor_of(&d, t)->dtype = (polyattn_dtype)7;
        snprintf(field, sizeof field, "%s.dtype", tnames[t]);
        expect_invalid_desc(__LINE__, field, &d, field);
    }

    /* byte counts that overflow int64: the span itself, then span * sizeof(element) */
    d = base_desc();
    d.q.shape[0] = (int64_t)1 << 40;
    d.q.strides[0] = (int64_t)1 << 40;
    INVALID(d, "q: ");
    CHECK(polyattn_tensor_desc_bytes(&d.q) == 0);
    d = base_desc();
    d.k.strides[2] = (int64_t)1 << 61; /* (7 - 1) * 2^61 elements: the span overflows */
    INVALID(d, "k: ");
    CHECK(polyattn_tensor_desc_bytes(&d.k) == 0);
    d = base_desc();
    d.v.shape[2] = 7;
    d.v.strides[2] = ((int64_t)1 << 62) / 6; /* ~2^62 elements fit; x4 bytes do not */
    INVALID(d, "v: ");
    CHECK(polyattn_tensor_desc_bytes(&d.v) == 0);
    d = base_desc();
    /* head_dim_v = 2^58: V (stride 1, overlapping rows are legal for inputs) still fits,
     * O with stride 64 spans 2^64 elements */
    d.v.shape[3] = (int64_t)1 << 58;
    d.o.shape[3] = (int64_t)1 << 58;
    d.o.strides[3] = 64;
    INVALID(d, "o: ");

    /* output strides that make elements overlap (inputs may overlap: read-only) */
    d = base_desc();
    d.o.strides[2] = 1; /* seq stride 1 while head_dim stride 1 */
    INVALID(d, "o.strides");
    d = base_desc();
    d.o.strides[1] = 0; /* broadcasting over heads in an output */
    INVALID(d, "o.strides");
    d = base_desc();
    d.o.strides[0] = d.o.strides[1]; /* batch aliases heads */
    INVALID(d, "o.strides");
    d = base_desc();
    d.k.strides[1] = 0; /* broadcast K over heads: legal for an input */
    CHECK(polyattn_attention_desc_validate(&d, NULL) == POLYATTN_STATUS_SUCCESS);
    d = base_desc();
    polyattn_tensor_desc_bshd(&d.o, POLYATTN_DTYPE_F32, 2, 4, 5, 6); /* a permutation is fine */
    CHECK(polyattn_attention_desc_validate(&d, NULL) == POLYATTN_STATUS_SUCCESS);

    /* heads_q not a multiple of heads_kv */
    d = base_desc();
    d.k.shape[1] = 3;
    d.v.shape[1] = 3;
    INVALID(d, "heads_kv");

    /* mismatched dtypes */
    d = base_desc();
    d.k.dtype = POLYATTN_DTYPE_F16;
    INVALID(d, "k.dtype");
    d = base_desc();
    d.v.dtype = POLYATTN_DTYPE_BF16;
    INVALID(d, "v.dtype");
    d = base_desc();
    d.o.dtype = POLYATTN_DTYPE_F16;
    INVALID(d, "o.dtype");
    d = base_desc();
    d.q.dtype = POLYATTN_DTYPE_BF16;
    INVALID(d, "dtype");

    /* mismatched batch / heads / seq / head dims between q, k, v, o */
    d = base_desc();
    d.k.shape[0] = 3;
    INVALID(d, "k.shape[0]");
    d = base_desc();
    d.v.shape[0] = 3;
    INVALID(d, "v.shape[0]");
    d = base_desc();
    d.o.shape[0] = 3;
    INVALID(d, "o.shape[0]");
    d = base_desc();
    d.v.shape[1] = 1;
    INVALID(d, "v.shape[1]");
    d = base_desc();
    d.o.shape[1] = 2;
    INVALID(d, "o.shape[1]");
    d = base_desc();
    d.v.shape[2] = 6;
    INVALID(d, "v.shape[2]");
    d = base_desc();
    d.o.shape[2] = 4;
    INVALID(d, "o.shape[2]");
    d = base_desc();
    d.k.shape[3] = 9;
    INVALID(d, "k.shape[3]");
    d = base_desc();
    d.o.shape[3] = 8; /* head_dim_v is 6 */
    INVALID(d, "o.shape[3]");

    /* scale: NaN, negative, infinite; 0 means the default and is fine */
    d = base_desc();
    d.scale = NAN;
    INVALID(d, "scale");
    d.scale = -0.5f;
    INVALID(d, "scale");
    d.scale = INFINITY;
    INVALID(d, "scale");
    d.scale = 0.0f;
    CHECK(polyattn_attention_desc_validate(&d, NULL) == POLYATTN_STATUS_SUCCESS);

    /* an unknown mask */
    d = base_desc();
    d.mask = (polyattn_mask)9;
    INVALID(d, "mask");

    /* malformed tensors have no byte size */
    d = base_desc();
    d.q.shape[2] = 0;
    CHECK(polyattn_tensor_desc_bytes(&d.q) == 0);
    d = base_desc();
    CHECK(polyattn_tensor_desc_bytes(&d.q) == 2u * 4 * 5 * 8 * 4);
    CHECK(polyattn_tensor_desc_bytes(NULL) == 0);
}

static void test_plan_options(polyattn_context *ctx)
{
    polyattn_attention_desc d = base_desc();
    polyattn_plan_options opt;
    polyattn_plan *plan = (polyattn_plan *)&opt; /* must be reset to NULL on failure */
    polyattn_status st;

    polyattn_plan_options_init(&opt);
    CHECK(opt.struct_size == sizeof opt && opt.algo == POLYATTN_ALGO_AUTO);

    /* NULL context, NULL output, NULL descriptor */
    CHECK(polyattn_plan_create(NULL, &d, &opt, &plan) == POLYATTN_STATUS_INVALID_ARGUMENT);
    st = polyattn_plan_create(ctx, &d, &opt, NULL);
    CHECK(st == POLYATTN_STATUS_INVALID_ARGUMENT);
    st = polyattn_plan_create(ctx, NULL, &opt, &plan);
    expect_msg(__LINE__, "NULL desc", st, polyattn_context_last_error(ctx),
               POLYATTN_STATUS_INVALID_ARGUMENT, "desc");
    CHECK(plan == NULL);

    /* options.struct_size too small: below the first published struct (up to deterministic) */
    opt.struct_size = offsetof(polyattn_plan_options, deterministic) + sizeof(int) - 1;
    st = polyattn_plan_create(ctx, &d, &opt, &plan);
    expect_msg(__LINE__, "options.struct_size", st, polyattn_context_last_error(ctx),
               POLYATTN_STATUS_INVALID_ARGUMENT, "struct_size");
    opt.struct_size = 0;
    st = polyattn_plan_create(ctx, &d, &opt, &plan);
    expect_msg(__LINE__, "options.struct_size 0", st, polyattn_context_last_error(ctx),
               POLYATTN_STATUS_INVALID_ARGUMENT, "struct_size");

    /* an unknown algorithm */
    polyattn_plan_options_init(&opt);
    opt.algo = (polyattn_algo)7;
    st = polyattn_plan_create(ctx, &d, &opt, &plan);
    expect_msg(__LINE__, "options.algo 7", st, polyattn_context_last_error(ctx),
               POLYATTN_STATUS_INVALID_ARGUMENT, "algo");
    opt.algo = (polyattn_algo)-1;
    st = polyattn_plan_create(ctx, &d, &opt, &plan);
    expect_msg(__LINE__, "options.algo -1", st, polyattn_context_last_error(ctx),
               POLYATTN_STATUS_INVALID_ARGUMENT, "algo");

    /* an algorithm the host backend does not have is UNSUPPORTED with its reason */
    polyattn_plan_options_init(&opt);
    opt.algo = POLYATTN_ALGO_FUSED;
    st = polyattn_plan_create(ctx, &d, &opt, &plan);
    expect_msg(__LINE__, "host fused", st, polyattn_context_last_error(ctx),
               POLYATTN_STATUS_UNSUPPORTED, "no fused kernel");
    CHECK(plan == NULL);

    /* a memory budget too small for anything: OVER_BUDGET, not a crash */
    polyattn_plan_options_init(&opt);
    opt.memory_budget_bytes = 16;
    st = polyattn_plan_create(ctx, &d, &opt, &plan);
    expect_msg(__LINE__, "budget 16 bytes", st, polyattn_context_last_error(ctx),
               POLYATTN_STATUS_OVER_BUDGET, "budget");
    CHECK(plan == NULL);

    /* plan info: NULL or too small */
    polyattn_plan_options_init(&opt);
    st = polyattn_plan_create(ctx, &d, &opt, &plan);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st == POLYATTN_STATUS_SUCCESS) {
        polyattn_plan_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = offsetof(polyattn_plan_info, backward_workspace_bytes);
        CHECK(polyattn_plan_get_info(plan, &info) == POLYATTN_STATUS_INVALID_ARGUMENT);
        /* a caller built before the appended members gets the ones it knows, nothing more */
        info.struct_size = offsetof(polyattn_plan_info, num_splits);
        info.num_splits = -7;
        CHECK(polyattn_plan_get_info(plan, &info) == POLYATTN_STATUS_SUCCESS);
        CHECK(info.n_candidates == 3 && info.num_splits == -7);
        CHECK(info.struct_size == offsetof(polyattn_plan_info, num_splits));
        CHECK(polyattn_plan_get_info(plan, NULL) == POLYATTN_STATUS_INVALID_ARGUMENT);
        CHECK(polyattn_plan_get_info(NULL, &info) == POLYATTN_STATUS_INVALID_ARGUMENT);
        info.struct_size = sizeof info;
        CHECK(polyattn_plan_get_info(plan, &info) == POLYATTN_STATUS_SUCCESS);
        CHECK(info.algo == POLYATTN_ALGO_UNFUSED || info.algo == POLYATTN_ALGO_FLASH);
        CHECK(info.n_candidates == 3);
        CHECK(info.candidates[1].algo == POLYATTN_ALGO_FUSED &&
              info.candidates[1].status == POLYATTN_STATUS_UNSUPPORTED &&
              strstr(info.candidates[1].reason, "no fused kernel") != NULL);
        polyattn_plan_destroy(plan);
    }
    polyattn_plan_destroy(NULL);
}

static uint64_t o_bytes_of(void)
{
    polyattn_attention_desc d = base_desc();
    return polyattn_tensor_desc_bytes(&d.o);
}

/* The O buffer still holds the pattern written before the rejected call. */
static int o_untouched(polyattn_buffer *o)
{
    unsigned char back[4096];
    uint64_t n = o_bytes_of(), i;
    if (n > sizeof back || polyattn_buffer_read(o, 0, back, n) != POLYATTN_STATUS_SUCCESS) return 0;
    for (i = 0; i < n; i++)
        if (back[i] != 0xAB) return 0;
    return 1;
}

static void expect_forward(int line, const char *what, polyattn_context *ctx, polyattn_plan *plan,
                           const polyattn_buffer *q, const polyattn_buffer *k,
                           const polyattn_buffer *v, polyattn_buffer *o, polyattn_buffer *lse,
                           polyattn_buffer *probs, const char *field, polyattn_buffer *o_check)
{
    polyattn_status st = polyattn_forward(plan, q, k, v, o, lse, probs, NULL);
    expect_msg(line, what, st, polyattn_context_last_error(ctx), POLYATTN_STATUS_INVALID_ARGUMENT,
               field);
    if (o_check && !o_untouched(o_check)) {
        fprintf(stderr, "line %d: %s: the rejected forward wrote into O\n", line, what);
        failures++;
    }
}

static void test_forward(polyattn_context *ctx, polyattn_context *other_ctx)
{
    polyattn_attention_desc d = base_desc();
    polyattn_plan_options opt;
    polyattn_plan *plan = NULL, *plan_plain = NULL;
    polyattn_buffer *q, *k, *v, *o, *lse, *probs, *big, *short_o, *view_a, *view_b, *foreign;
    const uint64_t qb = polyattn_tensor_desc_bytes(&d.q), kb = polyattn_tensor_desc_bytes(&d.k),
                   vb = polyattn_tensor_desc_bytes(&d.v), ob = polyattn_tensor_desc_bytes(&d.o);
    const uint64_t lb = 2 * 4 * 5 * 4, pb = 2 * 4 * 5 * 7 * 4;
    unsigned char fill[4096];
    float ramp[1024];
    int i;

    for (i = 0; i < 1024; i++)
        ramp[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
    memset(fill, 0xAB, sizeof fill);
    polyattn_plan_options_init(&opt);
    opt.algo = POLYATTN_ALGO_UNFUSED;
    opt.want_lse = 1;
    opt.want_probs = 1;
    CHECK(polyattn_plan_create(ctx, &d, &opt, &plan) == POLYATTN_STATUS_SUCCESS);
    polyattn_plan_options_init(&opt);
    CHECK(polyattn_plan_create(ctx, &d, &opt, &plan_plain) == POLYATTN_STATUS_SUCCESS);
    if (!plan || !plan_plain) return;

    CHECK(polyattn_buffer_alloc(ctx, qb, &q) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_buffer_alloc(ctx, kb, &k) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_buffer_alloc(ctx, vb, &v) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_buffer_alloc(ctx, ob, &o) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_buffer_alloc(ctx, lb, &lse) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_buffer_alloc(ctx, pb, &probs) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_buffer_alloc(ctx, 4 * ob + 64, &big) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_buffer_alloc(ctx, ob - 4, &short_o) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_buffer_alloc(other_ctx, ob, &foreign) == POLYATTN_STATUS_SUCCESS);
    CHECK(qb <= sizeof ramp && kb <= sizeof ramp && vb <= sizeof ramp && ob <= sizeof fill);
    polyattn_buffer_write(q, 0, ramp, qb);
    polyattn_buffer_write(k, 0, ramp, kb);
    polyattn_buffer_write(v, 0, ramp, vb);
    polyattn_buffer_write(o, 0, fill, ob);
    polyattn_buffer_write(short_o, 0, fill, ob - 4);

    /* the baseline succeeds (so the rejections below are about one thing each) */
    CHECK(polyattn_forward(plan, q, k, v, o, lse, probs, NULL) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_forward(plan_plain, q, k, v, o, NULL, NULL, NULL) == POLYATTN_STATUS_SUCCESS);
    polyattn_buffer_write(o, 0, fill, ob);

    CHECK(polyattn_forward(NULL, q, k, v, o, NULL, NULL, NULL) == POLYATTN_STATUS_INVALID_ARGUMENT);
    /* null buffers */
    expect_forward(__LINE__, "q NULL", ctx, plan_plain, NULL, k, v, o, NULL, NULL, "q", o);
    expect_forward(__LINE__, "k NULL", ctx, plan_plain, q, NULL, v, o, NULL, NULL, "k", o);
    expect_forward(__LINE__, "v NULL", ctx, plan_plain, q, k, NULL, o, NULL, NULL, "v", o);
    expect_forward(__LINE__, "o NULL", ctx, plan_plain, q, k, v, NULL, NULL, NULL, "o", NULL);
    /* missing lse / probs when the plan asked for them */
    expect_forward(__LINE__, "lse missing", ctx, plan, q, k, v, o, NULL, probs, "lse", o);
    expect_forward(__LINE__, "probs missing", ctx, plan, q, k, v, o, lse, NULL, "probs", o);
    /* lse / probs given to a plan made without them */
    expect_forward(__LINE__, "lse unasked", ctx, plan_plain, q, k, v, o, lse, NULL, "lse", o);
    expect_forward(__LINE__, "probs unasked", ctx, plan_plain, q, k, v, o, NULL, probs, "probs", o);
    /* too-small buffers: each input and output */
    expect_forward(__LINE__, "q small", ctx, plan_plain, k, k, v, o, NULL, NULL, "q", o);
    expect_forward(__LINE__, "k small", ctx, plan_plain, q, v, v, o, NULL, NULL, "k", o);
    expect_forward(__LINE__, "o small", ctx, plan_plain, q, k, v, short_o, NULL, NULL, "o", NULL);
    {
        polyattn_buffer *v_small = NULL;
        CHECK(polyattn_buffer_view(v, 0, vb - 2, &v_small) == POLYATTN_STATUS_SUCCESS);
        expect_forward(__LINE__, "v small", ctx, plan_plain, q, k, v_small, o, NULL, NULL, "v", o);
        polyattn_buffer_free(v_small);
    }
    {
        polyattn_buffer *lse_small = NULL;
        CHECK(polyattn_buffer_view(lse, 0, lb - 4, &lse_small) == POLYATTN_STATUS_SUCCESS);
        expect_forward(__LINE__, "lse small", ctx, plan, q, k, v, o, lse_small, probs, "lse", o);
        polyattn_buffer_free(lse_small);
    }
    expect_forward(__LINE__, "probs small", ctx, plan, q, k, v, o, lse, lse, "probs", o);
    /* a buffer of another context */
    expect_forward(__LINE__, "o foreign", ctx, plan_plain, q, k, v, foreign, NULL, NULL, "o", NULL);
    expect_forward(__LINE__, "q foreign", ctx, plan_plain, foreign, k, v, o, NULL, NULL, "q", o);

    /* output aliasing an input: the same buffer */
    expect_forward(__LINE__, "o is q", ctx, plan_plain, big, k, v, big, NULL, NULL, "o", NULL);
    expect_forward(__LINE__, "o is k", ctx, plan_plain, q, big, v, big, NULL, NULL, "o", NULL);
    expect_forward(__LINE__, "o is v", ctx, plan_plain, q, k, big, big, NULL, NULL, "o", NULL);
    /* overlapping views of one buffer */
    CHECK(polyattn_buffer_view(big, 0, qb, &view_a) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_buffer_view(big, qb - 4, ob, &view_b) == POLYATTN_STATUS_SUCCESS);
    polyattn_buffer_write(view_b, 0, fill, ob);
    expect_forward(__LINE__, "o overlaps q", ctx, plan_plain, view_a, k, v, view_b, NULL, NULL, "o",
                   view_b);
    polyattn_buffer_free(view_b);
    /* adjacent but disjoint views are fine */
    CHECK(polyattn_buffer_view(big, qb, ob, &view_b) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_forward(plan_plain, view_a, k, v, view_b, NULL, NULL, NULL) ==
          POLYATTN_STATUS_SUCCESS);
    polyattn_buffer_free(view_b);
    polyattn_buffer_free(view_a);
    /* two outputs overlapping: lse inside o, probs inside lse */
    CHECK(polyattn_buffer_view(big, 0, ob, &view_a) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_buffer_view(big, ob / 2, lb, &view_b) == POLYATTN_STATUS_SUCCESS);
    expect_forward(__LINE__, "lse overlaps o", ctx, plan, q, k, v, view_a, view_b, probs, "lse",
                   NULL);
    polyattn_buffer_free(view_b);
    polyattn_buffer_free(view_a);
    expect_forward(__LINE__, "probs is o", ctx, plan, q, k, v, big, lse, big, "o", NULL);
    /* inputs may alias each other (self-attention on one buffer): legal */
    {
        polyattn_attention_desc self;
        polyattn_plan *p2 = NULL;
        polyattn_attention_desc_init(&self, POLYATTN_DTYPE_F32, 1, 2, 2, 6, 6, 8, 8);
        CHECK(polyattn_plan_create(ctx, &self, NULL, &p2) == POLYATTN_STATUS_SUCCESS);
        if (p2)
            CHECK(polyattn_forward(p2, q, q, q, o, NULL, NULL, NULL) == POLYATTN_STATUS_SUCCESS);
        polyattn_plan_destroy(p2);
    }

    /* buffers: views and copies out of range */
    {
        polyattn_buffer *bad = NULL;
        CHECK(polyattn_buffer_view(o, ob, 1, &bad) == POLYATTN_STATUS_INVALID_ARGUMENT && !bad);
        CHECK(polyattn_buffer_view(o, 4, ob, &bad) == POLYATTN_STATUS_INVALID_ARGUMENT && !bad);
        CHECK(polyattn_buffer_view(o, 0, 0, &bad) == POLYATTN_STATUS_INVALID_ARGUMENT && !bad);
        CHECK(polyattn_buffer_view(o, UINT64_MAX, 2, &bad) == POLYATTN_STATUS_INVALID_ARGUMENT);
        CHECK(polyattn_buffer_write(o, 1, fill, ob) == POLYATTN_STATUS_INVALID_ARGUMENT);
        CHECK(polyattn_buffer_write(o, UINT64_MAX, fill, 2) == POLYATTN_STATUS_INVALID_ARGUMENT);
        CHECK(polyattn_buffer_read(o, 0, fill, ob + 1) == POLYATTN_STATUS_INVALID_ARGUMENT);
        CHECK(polyattn_buffer_write(o, 0, NULL, 4) == POLYATTN_STATUS_INVALID_ARGUMENT);
        CHECK(polyattn_buffer_alloc(ctx, 0, &bad) == POLYATTN_STATUS_INVALID_ARGUMENT);
        CHECK(polyattn_buffer_alloc(ctx, UINT64_MAX, &bad) != POLYATTN_STATUS_SUCCESS);
        CHECK(polyattn_buffer_alloc(NULL, 16, &bad) == POLYATTN_STATUS_INVALID_ARGUMENT);
        CHECK(polyattn_buffer_size(o) == ob && polyattn_buffer_size(NULL) == 0);
    }

    polyattn_buffer_free(q);
    polyattn_buffer_free(k);
    polyattn_buffer_free(v);
    polyattn_buffer_free(o);
    polyattn_buffer_free(lse);
    polyattn_buffer_free(probs);
    polyattn_buffer_free(big);
    polyattn_buffer_free(short_o);
    polyattn_buffer_free(foreign);
    polyattn_buffer_free(NULL);
    polyattn_plan_destroy(plan);
    polyattn_plan_destroy(plan_plain);
}

/* Errors reach the log callback (with its user data); dispatch reasons when enabled. */
static int log_errors, log_dispatch, log_bad_user;
static char log_last[1024];
static int log_marker;

static void on_log(polyattn_log_category category, const char *message, void *user_data)
{
    if (user_data != &log_marker) log_bad_user++;
    if (category == POLYATTN_LOG_ERROR) {
        log_errors++;
        snprintf(log_last, sizeof log_last, "%s", message ? message : "");
    } else if (category == POLYATTN_LOG_DISPATCH) {
        log_dispatch++;
    }
}

static void test_logging(polyattn_context *ctx)
{
    polyattn_attention_desc d = base_desc();
    polyattn_plan *plan = NULL;
    int before = log_errors;
    d.k.shape[3] = 9;
    CHECK(polyattn_plan_create(ctx, &d, NULL, &plan) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(log_errors == before + 1);
    CHECK(strstr(log_last, "k.shape[3]") != NULL);
    CHECK(log_bad_user == 0);
    polyattn_set_log_mask(POLYATTN_LOG_DISPATCH);
    d = base_desc();
    CHECK(polyattn_plan_create(ctx, &d, NULL, &plan) == POLYATTN_STATUS_SUCCESS);
    CHECK(log_dispatch >= 3); /* one reason per candidate */
    polyattn_plan_destroy(plan);
    polyattn_set_log_mask(0);
    before = log_dispatch;
    CHECK(polyattn_plan_create(ctx, &d, NULL, &plan) == POLYATTN_STATUS_SUCCESS);
    CHECK(log_dispatch == before);
    polyattn_plan_destroy(plan);
}

/* Events and device info: the remaining argument checks. */
static void test_events_info(polyattn_context *ctx, polyattn_context *other)
{
    polyattn_event *a = NULL, *b = NULL;
    polyattn_device_info info;
    double ms = 0;
    CHECK(polyattn_event_create(NULL, &a) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_event_create(ctx, NULL) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_event_create(ctx, &a) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_event_create(other, &b) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_event_record(a) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_event_record(b) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_event_record(NULL) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_event_elapsed_ms(a, b, &ms) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_event_elapsed_ms(a, a, NULL) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_event_elapsed_ms(NULL, a, &ms) == POLYATTN_STATUS_INVALID_ARGUMENT);
    polyattn_event_destroy(a);
    polyattn_event_destroy(b);
    polyattn_event_destroy(NULL);
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info - 8;
    CHECK(polyattn_context_get_device_info(ctx, &info) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_context_get_device_info(ctx, NULL) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_context_get_device_info(NULL, &info) == POLYATTN_STATUS_INVALID_ARGUMENT);
    info.struct_size = sizeof info;
    CHECK(polyattn_context_get_device_info(ctx, &info) == POLYATTN_STATUS_SUCCESS);
    CHECK(info.backend == POLYATTN_BACKEND_HOST && info.struct_size == sizeof info);
    CHECK(polyattn_context_backend(ctx) == POLYATTN_BACKEND_HOST);
    CHECK(polyattn_context_synchronize(NULL) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_context_memory_stats(ctx, 0, NULL) == POLYATTN_STATUS_INVALID_ARGUMENT);
}

/* Remaining argument checks of buffers, views and the registry. */
static void test_buffers_registry(polyattn_context *ctx)
{
    polyattn_buffer *parent = NULL, *view = (polyattn_buffer *)&checks, *view2 = NULL;
    polyattn_device_info info;
    int count = 5, i;
    const char *reason = NULL;
    CHECK(polyattn_buffer_alloc(ctx, 16, NULL) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_buffer_view(NULL, 0, 4, &view) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_buffer_alloc(ctx, 64, &parent) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_buffer_view(parent, 0, 4, NULL) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_buffer_read(NULL, 0, &count, 4) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_buffer_write(NULL, 0, &count, 4) == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_buffer_read(parent, 0, NULL, 4) == POLYATTN_STATUS_INVALID_ARGUMENT);
    /* a view of a view addresses the right bytes */
    CHECK(polyattn_buffer_view(parent, 8, 32, &view) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_buffer_view(view, 4, 8, &view2) == POLYATTN_STATUS_SUCCESS);
    {
        unsigned char bytes[64], back[8];
        for (i = 0; i < 64; i++)
            bytes[i] = (unsigned char)i;
        CHECK(polyattn_buffer_write(parent, 0, bytes, 64) == POLYATTN_STATUS_SUCCESS);
        CHECK(polyattn_buffer_read(view2, 0, back, 8) == POLYATTN_STATUS_SUCCESS);
        CHECK(back[0] == 12 && back[7] == 19);
        CHECK(polyattn_buffer_read(view2, 1, back, 8) == POLYATTN_STATUS_INVALID_ARGUMENT);
    }
    /* freeing a parent under a live view is refused (reported, nothing freed) */
    polyattn_buffer_free(view);
    CHECK(strstr(polyattn_context_last_error(ctx), "view") != NULL);
    polyattn_buffer_free(view2);
    polyattn_buffer_free(view);
    polyattn_buffer_free(parent);

    CHECK(polyattn_device_count(POLYATTN_BACKEND_HOST, NULL, NULL) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_device_count(POLYATTN_BACKEND_AUTO, &count, &reason) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_backend_compiled(POLYATTN_BACKEND_AUTO) == 0);
    CHECK(polyattn_backend_compiled((polyattn_backend)42) == 0);
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info - 1;
    CHECK(polyattn_device_get_info(POLYATTN_BACKEND_HOST, 0, &info) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_device_get_info(POLYATTN_BACKEND_HOST, 0, NULL) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    info.struct_size = sizeof info;
    CHECK(polyattn_device_get_info(POLYATTN_BACKEND_HOST, -1, &info) == POLYATTN_STATUS_NOT_FOUND);
    /* a backend without devices: context creation is NOT_FOUND with a reason */
    for (i = POLYATTN_BACKEND_CUDA; i <= POLYATTN_BACKEND_OPENCL; i++) {
        polyattn_context *none = NULL;
        count = 0;
        CHECK(polyattn_device_count((polyattn_backend)i, &count, NULL) == POLYATTN_STATUS_SUCCESS);
        if (count > 0) continue;
        CHECK(polyattn_context_create((polyattn_backend)i, 0, &none) == POLYATTN_STATUS_NOT_FOUND);
        CHECK(none == NULL && polyattn_last_error()[0] != '\0');
        CHECK(polyattn_device_get_info((polyattn_backend)i, 0, &info) == POLYATTN_STATUS_NOT_FOUND);
    }
}

static void test_contexts(void)
{
    polyattn_context *ctx = (polyattn_context *)&checks;
    CHECK(polyattn_context_create(POLYATTN_BACKEND_HOST, 0, NULL) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(polyattn_context_create((polyattn_backend)42, 0, &ctx) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(ctx == NULL);
    CHECK(strstr(polyattn_last_error(), "backend") != NULL);
    ctx = (polyattn_context *)&checks;
    CHECK(polyattn_context_create(POLYATTN_BACKEND_HOST, 1, &ctx) == POLYATTN_STATUS_NOT_FOUND);
    CHECK(ctx == NULL);
    CHECK(polyattn_context_create(POLYATTN_BACKEND_HOST, -1, &ctx) == POLYATTN_STATUS_NOT_FOUND);
    polyattn_context_destroy(NULL);
}

int main(void)
{
    polyattn_context *ctx = NULL, *other = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) != POLYATTN_STATUS_SUCCESS ||
        polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &other) != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "cannot create a host context: %s\n", polyattn_last_error());
        return 1;
    }
    /* collect errors instead of printing hundreds of expected ones on stderr */
    polyattn_set_log_callback(on_log, &log_marker);
    g_ctx = ctx;
    test_descriptors();
    CHECK(log_errors > 0);
    test_logging(ctx);
    test_events_info(ctx, other);
    test_buffers_registry(ctx);
    test_plan_options(ctx);
    test_forward(ctx, other);
    test_contexts();
    polyattn_context_destroy(ctx);
    polyattn_context_destroy(other);
    polyattn_set_log_callback(NULL, NULL);
    if (failures) {
        fprintf(stderr, "test_validation: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("test_validation: %d checks passed\n", checks);
    return 0;
}
