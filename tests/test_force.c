/*
 * POLYATTN_FORCE: read once when a context is made (changing the variable later does not
 * change that context), malformed values and unknown algorithms refused at context
 * creation, and algo= put first by AUTO.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "polyattn.h"

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

/* The algorithm AUTO picks for a small problem on ctx, or -1 when planning fails. */
static int auto_choice(polyattn_context *ctx)
{
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, 1, 2, 2, 5, 7, 16, 16);
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    polyattn_plan *plan = NULL;
    if (polyattn_plan_create(ctx, &d, &opt, &plan) != POLYATTN_STATUS_SUCCESS) return -1;
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    int algo = polyattn_plan_get_info(plan, &info) == POLYATTN_STATUS_SUCCESS ? (int)info.algo : -1;
    polyattn_plan_destroy(plan);
    return algo;
}

static polyattn_status make(const char *force, polyattn_context **ctx)
{
    if (force) setenv("POLYATTN_FORCE", force, 1);
    else unsetenv("POLYATTN_FORCE");
    return polyattn_context_create(POLYATTN_BACKEND_HOST, 0, ctx);
}

int main(void)
{
    polyattn_context *ctx = NULL;
    CHECK(make(NULL, &ctx) == POLYATTN_STATUS_SUCCESS);
    const int unforced = auto_choice(ctx);
    CHECK(unforced == POLYATTN_ALGO_UNFUSED); /* the host's measured order */
    polyattn_context_destroy(ctx);

    const char *algos[] = {"unfused", "fused", "flash"};
    for (int a = 0; a < 3; a++) {
        char value[32];
        snprintf(value, sizeof value, "algo=%s", algos[a]);
        CHECK(make(value, &ctx) == POLYATTN_STATUS_SUCCESS);
        /* The host has no fused kernel: a forced path fails rather than falls back. */
        const int expected = a == 1 ? -1 : POLYATTN_ALGO_UNFUSED + a;
        CHECK(auto_choice(ctx) == expected);
        /* Read once: a later change of the variable leaves this context alone. */
        setenv("POLYATTN_FORCE", "algo=unfused", 1);
        CHECK(auto_choice(ctx) == expected);
        polyattn_context_destroy(ctx);
    }

    const char *bad[] = {"flash",          "algo=",      "=flash",     "algo=flash,",
                         "algo=flash;x=1", "algo=quick", "Algo=flash", "algo=flash x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ctx = NULL;
        const polyattn_status st = make(bad[i], &ctx);
        if (st != POLYATTN_STATUS_INVALID_ARGUMENT || ctx)
            fprintf(stderr, "POLYATTN_FORCE=\"%s\" was accepted\n", bad[i]);
        CHECK(st == POLYATTN_STATUS_INVALID_ARGUMENT && !ctx);
        CHECK(strstr(polyattn_context_last_error(NULL), "POLYATTN_FORCE") != NULL);
        polyattn_context_destroy(ctx);
    }
    /* A backend key the host does not read is kept and harmless. */
    CHECK(make("cuda.flash=wgmma,algo=flash", &ctx) == POLYATTN_STATUS_SUCCESS);
    CHECK(auto_choice(ctx) == POLYATTN_ALGO_FLASH);
    polyattn_context_destroy(ctx);

    printf("test_force: %d failures\n", failures);
    return failures ? 1 : 0;
}
