/*
 * Plain dense decode problems (no varlen q, kv_layout DENSE) on the OpenCL flash path, forced
 * through the cooperative decode kernel (POLYATTN_FORCE=opencl.serving=coop, set here before
 * the context is made, so PoCL runs the GPU kernel): GQA 4 and 8, 1 and 16 queries, a few
 * thousand keys, causal bottom-right and none, window, sinks, softcap, ALiBi, f32/f16/bf16,
 * key splits chosen, forced to 1 and to several.  Every element of O and the LSE against the
 * serving fixture's double reference (tests/serving_fixture.c); the dispatch log must name
 * the coop kernel, plan info its split count, workspace and launches.  Problems that are not
 * decode-like (more than 64 packed rows, more than 16 queries, short keys) must keep the
 * dense flash kernel.  A dense decode plan's backward runs the dense backward kernels.
 */
#include "serving_fixture.h"

static char log_text[8192];

static void on_log(polyattn_log_category category, const char *message, void *user)
{
    (void)category, (void)user;
    size_t n = strlen(log_text);
    snprintf(log_text + n, sizeof log_text - n, "%s\n", message);
}

typedef struct dcase {
    scase c;
    int splits; /* plan option num_splits */
    int coop;   /* decode-like: the coop kernel must run it */
} dcase;

static void check_case(const dcase *t, uint64_t seed)
{
    const scase *c = &t->c;
    const serving_run run = {.algo = POLYATTN_ALGO_FLASH, .num_splits = t->splits};
    polyattn_plan_info info;
    log_text[0] = '\0';
    if (serving_check_forward(c, &run, seed, &info)) return; /* counted and reported */
    const int coop = strstr(log_text, "cooperative decode kernel") != NULL;
    CHECK(coop == t->coop);
    if (coop != t->coop)
        fprintf(stderr, "  %s: coop kernel %s, want %s; log:\n%s", c->name, coop ? "ran" : "absent",
                t->coop ? "it" : "the dense kernel", log_text);
    const int64_t by_keys = (c->seq_kv + 15) / 16;
    int want = -1; /* exact count where it is known */
    if (!t->coop || t->splits == 1) want = 1;
    else if (t->splits > 1) want = t->splits < by_keys ? t->splits : (int)by_keys;
    if (want > 0) {
        CHECK(info.num_splits == want);
    } else {
        /* The plan's choice: a grid of <= 2 (sequence, KV head) groups always splits. */
        CHECK(info.num_splits > 1 && info.num_splits <= 128);
    }
    CHECK((info.num_splits > 1) == (info.workspace_bytes > 0));
    CHECK(info.kernel_launches == 1 + (info.num_splits > 1));
    if (want > 0 && info.num_splits != want)
        fprintf(stderr, "  %s: plan info num_splits %d, want %d\n", c->name, info.num_splits, want);
}

int main(void)
{
    setenv("POLYATTN_FORCE", "opencl.serving=coop", 1);
    if (polyattn_context_create(POLYATTN_BACKEND_OPENCL, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        printf("no opencl device: skipped\n");
        return 77;
    }
    polyattn_set_log_callback(on_log, NULL);
    polyattn_set_log_mask(POLYATTN_LOG_DISPATCH);
    const polyattn_dtype F32 = POLYATTN_DTYPE_F32, F16 = POLYATTN_DTYPE_F16,
                         BF16 = POLYATTN_DTYPE_BF16;
    const polyattn_mask NONE = POLYATTN_MASK_NONE, BR = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
    const polyattn_kv_layout DENSE = POLYATTN_KV_DENSE;
    const polyattn_alibi AH = POLYATTN_ALIBI_PER_HEAD;
    /* name, dtype, batch, hq, hkv, d, dv, varlen_q, seq_q, kv, seq_kv, block_size, shuffle,
     * share, seq_new, mask, window (on, left, right), softcap, alibi, sinks, hints; then
     * num_splits and whether the coop kernel takes it. */
    // clang-format off
    const dcase cases[] = {
        {{"gqa 4, 1 query, f32, bottom-right", F32, 1, 8, 2, 64, 64, 0, 1, DENSE, 3000, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0}, 0, 1},
        {{"gqa 8, 1 query, f16, none, 4 splits", F16, 2, 8, 1, 64, 64, 0, 1, DENSE, 2500, 0, 0, 0, 0, NONE, 0, -1, -1, 0, 0, 0, 0}, 4, 1},
        {{"gqa 4, 16 queries, bf16, bottom-right, window, sinks", BF16, 1, 4, 1, 64, 32, 0, 16, DENSE, 2000, 0, 0, 0, 0, BR, 1, 300, 0, 0, 0, 1, 0}, 0, 1},
        {{"gqa 8, 1 query, bf16, none, sinks, 1 split", BF16, 1, 16, 2, 128, 128, 0, 1, DENSE, 3000, 0, 0, 0, 0, NONE, 0, -1, -1, 0, 0, 1, 0}, 1, 1},
        {{"gqa 4, 16 queries, f16, none, 6 splits", F16, 2, 8, 2, 64, 64, 0, 16, DENSE, 1500, 0, 0, 0, 0, NONE, 0, -1, -1, 0, 0, 0, 0}, 6, 1},
        {{"gqa 8, 1 query, f32, bottom-right, window", F32, 1, 8, 1, 32, 32, 0, 1, DENSE, 2200, 0, 0, 0, 0, BR, 1, 700, -1, 0, 0, 0, 0}, 0, 1},
        {{"gqa 4, 1 query, f16, bottom-right, softcap, alibi, 3 splits", F16, 2, 8, 2, 64, 64, 0, 1, DENSE, 2000, 0, 0, 0, 0, BR, 0, -1, -1, 30.0f, AH, 0, 0}, 3, 1},
        /* not decode-like: the dense flash kernel, no splits */
        {{"gqa 8, 16 queries (128 rows), f32", F32, 1, 8, 1, 32, 32, 0, 16, DENSE, 1200, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0}, 0, 0},
        {{"gqa 4, 1 query, 500 keys, f32", F32, 1, 8, 2, 32, 32, 0, 1, DENSE, 500, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0}, 0, 0},
        {{"gqa 1, 32 queries, f32", F32, 1, 2, 2, 32, 32, 0, 32, DENSE, 1500, 0, 0, 0, 0, NONE, 0, -1, -1, 0, 0, 0, 0}, 0, 0},
    };
    // clang-format on
    const size_t n = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n; i++)
        check_case(&cases[i], 7000 + i);

    /* The backward of a dense decode plan: coop forward, the dense backward's kernels. */
    // clang-format off
    const scase bwd = {"bwd gqa 4, 1 query, f32, bottom-right, sinks", F32, 1, 4, 1, 32, 32, 0, 1, DENSE, 1100, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 1, 0};
    // clang-format on
    const serving_run run = {.algo = POLYATTN_ALGO_FLASH};
    log_text[0] = '\0';
    serving_check_backward(&bwd, &run, 7100);
    CHECK(strstr(log_text, "cooperative decode kernel") != NULL);
    CHECK(strstr(log_text, "opencl flash backward:") != NULL);
    if (!strstr(log_text, "cooperative decode kernel") || !strstr(log_text, "flash backward:"))
        fprintf(stderr, "  %s: log:\n%s", bwd.name, log_text);

    polyattn_context_destroy(ctx);
    pa_tk_shutdown();
    printf("test_ocl_dense_decode: %zu forward cases, %d checks, %d failures\n", n, checks,
           failures);
    return failures ? 1 : 0;
}
