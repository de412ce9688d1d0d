#define _POSIX_C_SOURCE 200809L /* mkstemp */
/* Autotune: measures once per shape bucket, reuses the winner from memory and from the
 * cache file, ignores damaged lines, and never chooses an ineligible algorithm. */
#include "polyattn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

static polyattn_plan_info plan_with(polyattn_context *ctx, int64_t seq, const char *cache,
                                    int want_probs)
{
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, 1, 2, 2, seq, seq + 3, 32, 32);
    polyattn_plan_options o;
    polyattn_plan_options_init(&o);
    o.autotune = 1;
    o.autotune_cache_file = cache;
    o.want_probs = want_probs;
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_plan *plan = NULL;
    polyattn_status st = polyattn_plan_create(ctx, &d, &o, &plan);
    EXPECT(st == POLYATTN_STATUS_SUCCESS, "%s", polyattn_context_last_error(ctx));
    if (plan) polyattn_plan_get_info(plan, &info);
    polyattn_plan_destroy(plan);
    return info;
}

static const char *other_algo(polyattn_algo a)
{
    return a == POLYATTN_ALGO_FLASH ? "unfused" : "flash";
}

int main(void)
{
    polyattn_context *ctx;
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "no host context: %s\n", polyattn_last_error());
        return 1;
    }
    char cache[] = "/tmp/polyattn_autotune_XXXXXX";
    int fd = mkstemp(cache);
    EXPECT(fd >= 0, "mkstemp");
    close(fd);

    /* First plan of a bucket measures; the host has unfused and flash eligible. */
    polyattn_plan_info a = plan_with(ctx, 40, cache, 0);
    EXPECT(strstr(a.reason, "autotune measured") != NULL, "reason: %s", a.reason);
    EXPECT(strstr(a.reason, "unfused") && strstr(a.reason, "flash"), "reason: %s", a.reason);
    EXPECT(a.algo == POLYATTN_ALGO_UNFUSED || a.algo == POLYATTN_ALGO_FLASH, "algo %d", a.algo);

    /* Same bucket (seq 33..64): the cached winner, no measuring. */
    polyattn_plan_info b = plan_with(ctx, 50, cache, 0);
    EXPECT(strstr(b.reason, "(cached)") != NULL, "reason: %s", b.reason);
    EXPECT(b.algo == a.algo, "cached %d vs measured %d", b.algo, a.algo);

    /* The file holds the winner as "key algo". */
    char line[512] = "", key[320] = "", algo[32] = "";
    FILE *f = fopen(cache, "r");
    EXPECT(f && fgets(line, sizeof line, f), "cache file %s is empty", cache);
    if (f) fclose(f);
    EXPECT(sscanf(line, "%319s %31s", key, algo) == 2 &&
               strcmp(algo, polyattn_algo_name(a.algo)) == 0,
           "line: %s", line);

    /* A second file naming the other algorithm for this bucket, after a damaged line, is
     * read and obeyed: the file is really the source of the choice. */
    char cache2[] = "/tmp/polyattn_autotune2_XXXXXX";
    fd = mkstemp(cache2);
    EXPECT(fd >= 0, "mkstemp");
    close(fd);
    f = fopen(cache2, "w");
    if (f) {
        fprintf(f, "garbage-without-algorithm\n%s no-such-algo\n%s %s\n", key, key,
                other_algo(a.algo));
        fclose(f);
    }
    polyattn_plan_info c = plan_with(ctx, 45, cache2, 0);
    EXPECT(strcmp(polyattn_algo_name(c.algo), other_algo(a.algo)) == 0, "got %s, file says %s",
           polyattn_algo_name(c.algo), other_algo(a.algo));

    /* With probabilities asked for, host flash is ineligible: autotune has one candidate
     * and the plan says it did not compare; the choice is unfused. */
    polyattn_plan_info d = plan_with(ctx, 40, NULL, 1);
    EXPECT(d.algo == POLYATTN_ALGO_UNFUSED, "algo %s", polyattn_algo_name(d.algo));
    EXPECT(strstr(d.reason, "autotune") == NULL, "reason: %s", d.reason);

    unlink(cache);
    unlink(cache2);
    polyattn_context_destroy(ctx);
    if (failures) fprintf(stderr, "test_autotune: %d failure(s)\n", failures);
    else printf("test_autotune: all checks passed\n");
    return failures ? 1 : 0;
}
