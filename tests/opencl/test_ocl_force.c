/*
 * POLYATTN_FORCE's opencl.* keys: each forced kernel variant is the one the plan runs (its
 * dispatch log says so and names the key) and agrees with the host reference; a bad value
 * or an unknown opencl.* key fails planning with a message naming POLYATTN_FORCE and the
 * key; a forced tile the device cannot take fails at plan time, not at forward time.
 */
#include "pa_testkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
static char log_text[16384];

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void on_log(polyattn_log_category category, const char *message, void *user)
{
    (void)category;
    (void)user;
    size_t n = strlen(log_text);
    snprintf(log_text + n, sizeof log_text - n, "%s\n", message);
}

static polyattn_context *make(const char *force)
{
    setenv("POLYATTN_FORCE", force, 1);
    polyattn_context *ctx = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_OPENCL, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        printf("FAIL: context with POLYATTN_FORCE=%s: %s\n", force, polyattn_last_error());
        failures++;
        return NULL;
    }
    log_text[0] = '\0';
    return ctx;
}

/* Runs a case forward (backward with bwd) and checks it passes and the log has `want`. */
static void forced_run(const char *force, polyattn_algo algo, int bwd, const char *want)
{
    polyattn_context *ctx = make(force);
    if (!ctx) return;
    pa_tk_problem p;
    const pa_tk_case *c = pa_tk_find_case("bshd_pad_gqa_47x61_d64");
    if (!c || pa_tk_problem_init(&p, c, POLYATTN_DTYPE_F32, 3) != POLYATTN_STATUS_SUCCESS) {
        printf("FAIL: inputs\n");
        failures++;
        polyattn_context_destroy(ctx);
        return;
    }
    int pass;
    char message[1024];
    if (bwd) {
        pa_tk_backward_result r;
        pa_tk_run_backward(ctx, &p, algo, 1, &r);
        pass = r.pass;
        snprintf(message, sizeof message, "%s", r.message);
    } else {
        pa_tk_result r;
        pa_tk_run(ctx, &p, algo, 1, 0, &r);
        pass = r.pass;
        snprintf(message, sizeof message, "%s", r.message);
    }
    CHECK(pass, "POLYATTN_FORCE=%s %s%s: %s", force, polyattn_algo_name(algo),
          bwd ? " backward" : "", message);
    CHECK(strstr(log_text, want) != NULL, "POLYATTN_FORCE=%s: the dispatch log lacks \"%s\":\n%s",
          force, want, log_text);
    if (pass && strstr(log_text, want))
        printf("PASS POLYATTN_FORCE=%s %s%s\n", force, polyattn_algo_name(algo),
               bwd ? " backward" : "");
    pa_tk_problem_free(&p);
    polyattn_context_destroy(ctx);
}

/* Planning fails with `status`, and the message names each of the `n` words. */
static void refused(const char *force, polyattn_algo algo, int bwd, polyattn_status status,
                    const char *const *words, int n)
{
    polyattn_context *ctx = make(force);
    if (!ctx) return;
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, 1, 2, 2, 33, 40, 64, 64);
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_backward = bwd;
    polyattn_plan *plan = NULL;
    polyattn_status st = polyattn_plan_create(ctx, &d, &opt, &plan);
    const char *msg = polyattn_context_last_error(ctx);
    int named = 1;
    for (int i = 0; i < n; i++)
        named &= strstr(msg, words[i]) != NULL;
    CHECK(st == status && !plan && named, "POLYATTN_FORCE=%s: status %s, message: %s", force,
          polyattn_status_name(st), msg);
    if (st == status && named) printf("PASS POLYATTN_FORCE=%s refused: %.160s\n", force, msg);
    polyattn_plan_destroy(plan);
    polyattn_context_destroy(ctx);
}

int main(void)
{
    int count = 0;
    const char *reason = NULL;
    if (polyattn_device_count(POLYATTN_BACKEND_OPENCL, &count, &reason) != 0 || count == 0) {
        printf("SKIP: no OpenCL device (%s)\n", reason ? reason : "?");
        return PA_TK_SKIP;
    }
    polyattn_set_log_callback(on_log, NULL);
    polyattn_set_log_mask(POLYATTN_LOG_DISPATCH);

    /* Every variant forced, whatever the device would pick. */
    forced_run("opencl.flash=tiled", POLYATTN_ALGO_FLASH, 0,
               "opencl flash: tiled, 4-wide kernel (POLYATTN_FORCE opencl.flash=tiled)");
    forced_run("opencl.flash=rows", POLYATTN_ALGO_FLASH, 0,
               "opencl flash: row-streaming (CPU) kernel (POLYATTN_FORCE opencl.flash=rows)");
    forced_run("opencl.flash=tiled,opencl.tiles=32x64:8x16:32:16", POLYATTN_ALGO_FLASH, 0,
               "opencl.flash=tiled,opencl.tiles=32x64:8x16:32:16)");
    forced_run("opencl.tiles=32x32:16x8:16:16", POLYATTN_ALGO_FUSED, 0,
               "(POLYATTN_FORCE opencl.tiles=32x32:16x8:16:16)");
    forced_run("opencl.bwd=tiled,opencl.bwd_tiles=32x64:8x32:32:16", POLYATTN_ALGO_FLASH, 1,
               "opencl flash backward: tiled (GPU) kernels (POLYATTN_FORCE "
               "opencl.bwd=tiled,opencl.bwd_tiles=32x64:8x32:32:16)");
    forced_run("opencl.bwd=rows", POLYATTN_ALGO_FUSED, 1,
               "opencl flash backward: row-streaming (CPU) kernels "
               "(POLYATTN_FORCE opencl.bwd=rows)");
    forced_run("opencl.unfused_chunk=3", POLYATTN_ALGO_UNFUSED, 1,
               "scores in the workspace, 3 passes (POLYATTN_FORCE opencl.unfused_chunk=3)");

    /* Bad values and unknown keys: planning fails (AUTO too), naming the key. */
    static const struct {
        const char *force, *key;
    } bad[] = {
        {"opencl.flash=fast", "opencl.flash=fast"},
        {"opencl.bwd=tile", "opencl.bwd=tile"},
        {"opencl.tiles=64x64", "opencl.tiles=64x64"},
        {"opencl.tiles=64x64:16x7:32:32", "opencl.tiles"},
        {"opencl.bwd_tiles=64x64:16x16:32:0", "opencl.bwd_tiles"},
        {"opencl.unfused_chunk=0", "opencl.unfused_chunk"},
        {"opencl.unfused_chunk=2x", "opencl.unfused_chunk"},
        {"opencl.tile=64x64:16x8:32:32", "opencl.tile"},
        {"opencl.coop=fast", "opencl.coop=fast"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *words[2] = {"POLYATTN_FORCE", bad[i].key};
        refused(bad[i].force, POLYATTN_ALGO_AUTO, 0, POLYATTN_STATUS_INVALID_ARGUMENT, words, 2);
    }
    /* A forced tile the device cannot take: the plan fails, with the reason. */
    const char *local[1] = {"local memory"};
    refused("opencl.flash=tiled,opencl.tiles=4096x4096:1x1:64:64", POLYATTN_ALGO_FLASH, 0,
            POLYATTN_STATUS_UNSUPPORTED, local, 1);
    refused("opencl.bwd=tiled,opencl.bwd_tiles=1024x1024:1x1:64:64", POLYATTN_ALGO_FLASH, 1,
            POLYATTN_STATUS_UNSUPPORTED, local, 1);

    unsetenv("POLYATTN_FORCE");
    pa_tk_shutdown();
    printf("%s: %d failure(s)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
