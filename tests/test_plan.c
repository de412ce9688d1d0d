/*
 * Planning on the host backend: the cost model (FLOPs over visible pairs, bytes moved,
 * device bytes), candidate bookkeeping, selection with AUTO / debug / probabilities, the
 * memory budget boundary, and explicit algorithms.
 */
#include "polyattn.h"

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

static polyattn_context *ctx;

static polyattn_status plan_info(const polyattn_attention_desc *d, polyattn_algo algo, int lse,
                                 int probs, int debug, uint64_t budget, polyattn_plan_info *info)
{
    polyattn_plan_options opt;
    polyattn_plan *plan = NULL;
    polyattn_status st;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_lse = lse;
    opt.want_probs = probs;
    opt.debug = debug;
    opt.memory_budget_bytes = budget;
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
    st = polyattn_plan_create(ctx, d, &opt, &plan);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_plan_get_info(plan, info);
    polyattn_plan_destroy(plan);
    return st;
}

/* Exactly one candidate is chosen, it is the plan's algorithm and it is eligible. */
static void check_candidates(const polyattn_plan_info *info)
{
    int i, chosen = 0;
    CHECK(info->n_candidates == 3);
    for (i = 0; i < 3; i++) {
        const polyattn_candidate *c = &info->candidates[i];
        CHECK(c->algo == (polyattn_algo)(POLYATTN_ALGO_UNFUSED + i));
        CHECK(c->reason[0] != '\0');
        if (c->chosen) {
            chosen++;
            CHECK(c->algo == info->algo);
            CHECK(c->status == POLYATTN_STATUS_SUCCESS);
            CHECK(c->workspace_bytes == info->workspace_bytes);
        }
    }
    CHECK(chosen == 1);
    CHECK(info->reason[0] != '\0');
    /* the host has no fused kernel and says so */
    CHECK(info->candidates[1].status == POLYATTN_STATUS_UNSUPPORTED);
    CHECK(strstr(info->candidates[1].reason, "no fused kernel") != NULL);
}

int main(void)
{
    const int64_t batch = 2, heads_q = 4, heads_kv = 2, seq_q = 37, seq_kv = 53, head_dim = 24,
                  head_dim_v = 16;
    polyattn_attention_desc d;
    polyattn_plan_info info;
    double pairs = 0, bytes;
    int64_t i;
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "no host context: %s\n", polyattn_last_error());
        return 1;
    }
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F16, batch, heads_q, heads_kv, seq_q, seq_kv,
                                 head_dim, head_dim_v);
    d.mask = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;

    /* cost model: 2 * (head_dim + head_dim_v) FLOPs per visible (query, key) pair */
    for (i = 0; i < seq_q; i++) {
        int64_t n = i + 1 + seq_kv - seq_q;
        pairs += (double)(n < 0 ? 0 : n > seq_kv ? seq_kv : n);
    }
    pairs *= (double)(batch * heads_q);
    CHECK(plan_info(&d, POLYATTN_ALGO_AUTO, 1, 0, 0, 0, &info) == POLYATTN_STATUS_SUCCESS);
    CHECK(info.flops == 2.0 * (double)(head_dim + head_dim_v) * pairs);
    /* f16 Q, K, V, O once each, plus the f32 LSE */
    bytes =
        2.0 * (double)(batch * heads_q * seq_q * head_dim + batch * heads_kv * seq_kv * head_dim +
                       batch * heads_kv * seq_kv * head_dim_v +
                       batch * heads_q * seq_q * head_dim_v) +
        4.0 * (double)(batch * heads_q * seq_q);
    CHECK(info.min_bytes_moved == bytes);
    CHECK((double)info.device_bytes >= bytes);
    CHECK(info.backend == POLYATTN_BACKEND_HOST);
    CHECK(info.kernel_launches == 1);
    CHECK(info.workspace_bytes == 0);
    /* AUTO on the host: the measured policy puts the unfused reference first */
    CHECK(info.algo == POLYATTN_ALGO_UNFUSED);
    CHECK(strstr(info.reason, "host") != NULL);
    check_candidates(&info);

    /* probabilities asked: only unfused forms them on the host */
    CHECK(plan_info(&d, POLYATTN_ALGO_AUTO, 1, 1, 0, 0, &info) == POLYATTN_STATUS_SUCCESS);
    CHECK(info.algo == POLYATTN_ALGO_UNFUSED);
    check_candidates(&info);
    CHECK(info.candidates[2].status == POLYATTN_STATUS_UNSUPPORTED);
    CHECK(strstr(info.candidates[2].reason, "probabilit") != NULL);
    CHECK(info.min_bytes_moved == bytes + 4.0 * (double)(batch * heads_q * seq_q * seq_kv));

    /* debug mode prefers unfused */
    CHECK(plan_info(&d, POLYATTN_ALGO_AUTO, 0, 0, 1, 0, &info) == POLYATTN_STATUS_SUCCESS);
    CHECK(info.algo == POLYATTN_ALGO_UNFUSED);
    check_candidates(&info);

    /* explicit algorithms */
    CHECK(plan_info(&d, POLYATTN_ALGO_UNFUSED, 0, 0, 0, 0, &info) == POLYATTN_STATUS_SUCCESS);
    CHECK(info.algo == POLYATTN_ALGO_UNFUSED);
    CHECK(plan_info(&d, POLYATTN_ALGO_FLASH, 0, 0, 0, 0, &info) == POLYATTN_STATUS_SUCCESS);
    CHECK(info.algo == POLYATTN_ALGO_FLASH);
    CHECK(plan_info(&d, POLYATTN_ALGO_FLASH, 0, 1, 0, 0, &info) == POLYATTN_STATUS_UNSUPPORTED);
    CHECK(strstr(polyattn_context_last_error(ctx), "probabilit") != NULL);
    CHECK(plan_info(&d, POLYATTN_ALGO_FUSED, 0, 0, 0, 0, &info) == POLYATTN_STATUS_UNSUPPORTED);

    /* the budget boundary: exactly the estimate fits, one byte less does not */
    CHECK(plan_info(&d, POLYATTN_ALGO_UNFUSED, 1, 0, 0, 0, &info) == POLYATTN_STATUS_SUCCESS);
    {
        const uint64_t need = info.device_bytes;
        CHECK(plan_info(&d, POLYATTN_ALGO_UNFUSED, 1, 0, 0, need, &info) ==
              POLYATTN_STATUS_SUCCESS);
        CHECK(plan_info(&d, POLYATTN_ALGO_UNFUSED, 1, 0, 0, need - 1, &info) ==
              POLYATTN_STATUS_OVER_BUDGET);
        CHECK(strstr(polyattn_context_last_error(ctx), "budget") != NULL);
    }

    /* no mask: every pair visible; the host's policy does not depend on the length */
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, 1, 2, 2, 4096, 4096, 64, 64);
    CHECK(plan_info(&d, POLYATTN_ALGO_AUTO, 0, 0, 0, 0, &info) == POLYATTN_STATUS_SUCCESS);
    CHECK(info.flops == 2.0 * 128.0 * 4096.0 * 4096.0 * 2.0);
    CHECK(info.algo == POLYATTN_ALGO_UNFUSED);
    check_candidates(&info);

    polyattn_context_destroy(ctx);
    if (failures) {
        fprintf(stderr, "test_plan: %d of %d checks failed\n", failures, checks);
        return 1;
    }
    printf("test_plan: %d checks passed\n", checks);
    return 0;
}
