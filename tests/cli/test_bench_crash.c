/*
 * polyattn bench survives a crash: each target is measured in a child process, and a
 * measurement that kills its process (as a crashing driver would) is reported as an error
 * while a new process goes on with the next.  The measurement function is replaced here
 * by one that crashes on chosen measurements, so the product carries no such hook.
 */
#include "bench.h"

#include <signal.h>
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

static int crash_at = -1;

static void crashing_measure(pa_bench_run *b, int index, const pa_bench_shape *sh,
                             polyattn_dtype dtype, polyattn_algo algo, pa_bench_sets *sets,
                             pa_bench_result *r)
{
    if (index == crash_at) {
        fflush(stdout);
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV);
    }
    pa_bench_measure(b, sh, dtype, algo, sets, r);
}

/* Runs the job on the host backend with a crash at measurement crash; returns how many
 * results arrived. */
static void run(int backward, int crash)
{
    static const pa_bench_shape shapes[] = {
        {1, 2, 1, 9, 11, 8, 8, POLYATTN_MASK_NONE, PA_BENCH_DENSE, 0, 0},
        {1, 1, 1, 7, 9, 8, 8, POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT, PA_BENCH_DENSE, 0, 0},
    };
    static const int dtypes[] = {POLYATTN_DTYPE_F32};
    static const int algos[] = {POLYATTN_ALGO_FLASH, POLYATTN_ALGO_UNFUSED};
    pa_bench_suite suite = {"custom", "test", shapes, 2, POLYATTN_DTYPE_F32};
    pa_bench_target target;
    memset(&target, 0, sizeof target);
    target.backend = POLYATTN_BACKEND_HOST;
    snprintf(target.label, sizeof target.label, "host:0");
    pa_bench_job job;
    memset(&job, 0, sizeof job);
    job.suite = &suite;
    job.shapes = shapes;
    job.n_shapes = 2;
    job.dtypes = dtypes;
    job.n_dtypes = 1;
    job.algos = algos;
    job.n_algos = 2;
    job.n_per_target = 4;
    job.params.reps = 3;
    job.params.warmup = 1;
    job.params.max_seconds = 10;
    job.params.backward = backward;
    job.common.backend = POLYATTN_BACKEND_HOST;
    job.measure = crashing_measure;
    job.n_targets = 1;
    job.target = &target;
    crash_at = crash;
    pa_bench_result results[4];
    unsigned char have[4] = {0, 0, 0, 0};
    memset(results, 0, sizeof results);
    int rc = pa_bench_run_target(&job, results, have);
    CHECK(rc == 0, "run_target returned %d", rc);
    CHECK(target.opened, "the target was not opened");
    for (int i = 0; i < 4; i++) {
        CHECK(have[i], "measurement %d missing", i);
        CHECK(results[i].backward == backward, "measurement %d: pass", i);
        if (i == crash) {
            CHECK(results[i].status == PA_BENCH_ERROR, "crash %d: status %d", i,
                  (int)results[i].status);
            CHECK(strstr(results[i].reason, "crashed: the process died of signal") != NULL,
                  "crash %d: reason '%s'", i, results[i].reason);
        } else {
            CHECK(results[i].status == PA_BENCH_OK, "measurement %d: %s", i, results[i].reason);
        }
    }
}

int main(void)
{
    run(0, 1); /* forward, the crash in the middle */
    run(1, 0); /* backward, the crash first */
    run(0, 3); /* the crash on the last measurement */
    printf("test_bench_crash: %d failures\n", failures);
    return failures ? 1 : 0;
}
