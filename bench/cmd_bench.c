/*
 * polyattn bench: for each shape of a suite, each dtype and each algorithm: plan, validate
 * against the host reference, warm up, time with device events over rotated input sets,
 * and report ms, TFLOP/s, GB/s and memory (measured and estimated), with speedup and memory
 * saved against unfused.
 */
#include "bench.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static const char usage[] =
    "usage: polyattn bench [--suite seed|fa2|decode|custom] [--shape B,HQ,HKV,SQ,SKV,D[,DV];...]\n"
    "                      [--causal top-left|bottom-right]\n"
    "                      [--backend auto|host|cuda|hip|opencl[:N][,...]] [--device N]\n"
    "                      [--compare-backends [--include-host]] [--baseline BACKEND[:N]]\n"
    "                      [--algo all|auto|unfused|fused|flash[,...]]\n"
    "                      [--dtype f32|f16|bf16[,...]] [--reps N] [--warmup N] [--sets N]\n"
    "                      [--max-seconds S] [--memory-budget MIB] [--csv FILE] [--json FILE]\n"
    "                      [--backward [--deterministic]] [--list]\n"
    "\n"
    "Suites: seed (the seed article's five shapes, one head, causal, f32), fa2\n"
    "(FlashAttention-2's: 16k tokens, hidden 2048, head_dim 64/128, causal or not, f16),\n"
    "decode (seq_q 1, 4, 16 against a KV cache of 1k-128k, batch 1, and batch 16/64 at\n"
    "4k-16k; GQA 32/8, head_dim 128, bottom-right causal, f16), custom (--shape, separated\n"
    "by ';'; --causal applies to it).  --list prints the suite's shapes as CSV (one row per\n"
    "shape and dtype: suite,batch,heads_q,heads_kv,seq_q,seq_kv,head_dim,head_dim_v,mask,\n"
    "dtype) and runs nothing.\n"
    "\n"
    "Backends: --backend names one device (auto: the first backend with one; :N or --device\n"
    "picks the device) or a comma list of them, measured one after the other.\n"
    "--compare-backends measures every device of every backend (cuda, hip, opencl; or of the\n"
    "backends --backend lists; NAME:N for one device): say CUDA and OpenCL on one GPU and\n"
    "PoCL on the CPU.  The host reference is slow on large shapes: it is measured only when\n"
    "listed (--backend host,...) or with --include-host.  With more than one device, a\n"
    "comparison table follows the per-device tables: for each shape x dtype x algo the ms\n"
    "of each backend:device and the ratio to the fastest (or to --baseline), the best\n"
    "algorithm of each device per shape, and geometric means of the ratios.\n"
    "\n"
    "Each measurement is first validated against the host reference (double accumulation) on\n"
    "sampled rows, then warmed up (--warmup, default 3) and timed with device events over\n"
    "--reps calls (default 10; the median is reported) that rotate among --sets input sets\n"
    "(default: enough to exceed the caches, at most 4); a measurement whose calls are slow\n"
    "gets fewer reps (at least 3) to stay within --max-seconds (default 10, 0: no cap).\n"
    "Reported: ms, TFLOP/s (4*batch*heads_q*seq_q*seq_kv*head_dim, halved when causal),\n"
    "GB/s (the plan's minimum bytes moved), memory measured (one input set + peak of\n"
    "outputs and workspace) and the plan's estimate, speedup and memory saved against\n"
    "unfused.  --algo all (default) means unfused,fused,flash; a combination the planner\n"
    "rejects is reported as skipped.  CSV and JSON hold every device's rows (backend,\n"
    "device, device_index columns).\n"
    "\n"
    "--backward times the backward pass instead (polyattn_backward: dQ, dK, dV from dO):\n"
    "each algorithm is planned with want_backward (--deterministic: bitwise-reproducible\n"
    "gradients), the forward runs once per input set for O and the log-sum-exp (O is\n"
    "validated as above), the gradients are poisoned, then checked against a double host\n"
    "computation on sampled rows (dQ rows of the first and last queries, dK and dV rows of\n"
    "the first and last keys, of the first and last batch entry and KV head), then the\n"
    "backward call alone is warmed up and timed as above, rotating among the input sets\n"
    "(each with its own dO, O and LSE).  TFLOP/s counts 2.5x the forward FLOPs (five GEMMs\n"
    "against two); GB/s counts Q, K, V, O, dO, LSE read and dQ, dK, dV written; workspace\n"
    "and memory are the backward's.  An algorithm without a backward on the backend is\n"
    "reported skipped with the backend's reason (UNSUPPORTED).  CSV and JSON rows carry\n"
    "pass=forward|backward.\n"
    "\n"
    "Each device is measured in a child process: a crash inside a driver or kernel is\n"
    "reported as an error of the measurement under way, and a new process goes on with the\n"
    "next.  SIGINT/SIGTERM: the measurement under way finishes and the reports are written\n"
    "with what was measured; a second signal stops at once.\n"
    "\n"
    "Exit status: 0 every measurement valid or skipped, 1 a wrong result or a device failure\n"
    "(or a crash), 2 bad usage.\n";

#define MAX_SHAPES 64
#define MAX_SETS 4

/* Q, K, V of each set; with --backward also dO (the loss gradient, shaped like O). */
typedef struct input_sets {
    int n, n_tensors;
    uint64_t count[4];
    polyattn_buffer *buf[MAX_SETS][4];
    float *host[4]; /* set 0 as the device sees it (rounded), for validation */
} input_sets;

static void free_sets(input_sets *s)
{
    for (int i = 0; i < s->n; i++)
        for (int t = 0; t < 4; t++)
            polyattn_buffer_free(s->buf[i][t]);
    for (int t = 0; t < 4; t++)
        free(s->host[t]);
    memset(s, 0, sizeof *s);
}

static uint64_t rng_next(uint64_t *state)
{
    /* splitmix64 */
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Uniform in [-1, 1), never exactly 0: timing on zeros would flatter some hardware. */
static void fill_random(float *x, uint64_t n, uint64_t seed)
{
    uint64_t state = seed;
    for (uint64_t i = 0; i < n; i++) {
        double u = (double)(rng_next(&state) >> 11) * (1.0 / 9007199254740992.0);
        float v = (float)(2.0 * u - 1.0);
        x[i] = v == 0.0f ? 0.5f : v;
    }
}

static polyattn_status make_sets(polyattn_context *ctx, const pa_bench_shape *sh,
                                 polyattn_dtype dtype, int n_sets, int with_grad_out,
                                 input_sets *s, void *staging, float *scratch)
{
    memset(s, 0, sizeof *s);
    s->n_tensors = with_grad_out ? 4 : 3;
    s->count[0] = (uint64_t)(sh->batch * sh->heads_q * sh->seq_q * sh->head_dim);
    s->count[1] = (uint64_t)(sh->batch * sh->heads_kv * sh->seq_kv * sh->head_dim);
    s->count[2] = (uint64_t)(sh->batch * sh->heads_kv * sh->seq_kv * sh->head_dim_v);
    s->count[3] = (uint64_t)(sh->batch * sh->heads_q * sh->seq_q * sh->head_dim_v);
    size_t esize = polyattn_dtype_size(dtype);
    for (int t = 0; t < s->n_tensors; t++) {
        s->host[t] = malloc(s->count[t] * 4);
        if (!s->host[t])
            return POLYATTN_STATUS_OUT_OF_MEMORY;
    }
    for (int i = 0; i < n_sets; i++) {
        s->n = i + 1;
        for (int t = 0; t < s->n_tensors; t++) {
            float *values = i == 0 ? s->host[t] : scratch;
            fill_random(values, s->count[t], t == 3 ? 0xd0d00000ull + (uint64_t)i
                                                    : 0x5eed0000ull + (uint64_t)(i * 3 + t));
            pa_cli_from_f32(dtype, values, staging, s->count[t]);
            if (i == 0) /* what the device sees, for the reference */
                pa_cli_to_f32(dtype, staging, values, s->count[t]);
            polyattn_status st = polyattn_buffer_alloc(ctx, s->count[t] * esize, &s->buf[i][t]);
            if (st != POLYATTN_STATUS_SUCCESS) {
                s->buf[i][t] = NULL;
                return st;
            }
            st = polyattn_buffer_write(s->buf[i][t], 0, staging, s->count[t] * esize);
            if (st != POLYATTN_STATUS_SUCCESS)
                return st;
        }
    }
    return POLYATTN_STATUS_SUCCESS;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct bench_run {
    polyattn_context *ctx, *host;
    int reps, warmup;
    uint64_t budget;
    void *staging;
    int corrupt;
    double max_seconds;
    int backward, deterministic;
} bench_run;

/* ms between consecutive events ev[0..reps] into times (sorted), and their median, minimum
 * and maximum into r. */
static polyattn_status event_times(polyattn_event **ev, int reps, double *times,
                                   pa_bench_result *r)
{
    for (int i = 0; i < reps; i++) {
        polyattn_status st = polyattn_event_elapsed_ms(ev[i], ev[i + 1], &times[i]);
        if (st != POLYATTN_STATUS_SUCCESS) return st;
    }
    qsort(times, (size_t)reps, sizeof *times, cmp_double);
    r->ms = reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
    r->ms_min = times[0];
    r->ms_max = times[reps - 1];
    return POLYATTN_STATUS_SUCCESS;
}

static void lib_reason(pa_bench_result *r, polyattn_context *ctx, polyattn_status st,
                       const char *what)
{
    const char *msg = polyattn_context_last_error(ctx);
    snprintf(r->reason, sizeof r->reason, "%s: %s: %s", what, polyattn_status_name(st),
             msg && msg[0] ? msg : polyattn_status_string(st));
}

/* Starts the result of one measurement and plans it (backward: with want_backward and
 * the run's deterministic flag).  NULL when the shape cannot be planned: the result then
 * says skipped (unsupported, over the budget) or error, with the library's reason. */
static polyattn_plan *plan_measurement(bench_run *b, const pa_bench_shape *sh,
                                       polyattn_dtype dtype, polyattn_algo algo, int backward,
                                       float scale, polyattn_plan_info *info,
                                       pa_bench_result *r)
{
    memset(r, 0, sizeof *r);
    r->shape = *sh;
    r->dtype = dtype;
    r->algo_asked = algo;
    r->algo = algo;
    r->backward = backward;
    r->deterministic = backward && b->deterministic;
    polyattn_attention_desc desc;
    polyattn_attention_desc_init(&desc, dtype, sh->batch, sh->heads_q, sh->heads_kv, sh->seq_q,
                                 sh->seq_kv, sh->head_dim, sh->head_dim_v);
    desc.scale = scale;
    desc.mask = sh->mask;
    polyattn_plan_options opts;
    polyattn_plan_options_init(&opts);
    opts.algo = algo;
    opts.memory_budget_bytes = b->budget;
    opts.want_backward = backward;
    opts.deterministic = backward && b->deterministic;
    polyattn_plan *plan = NULL;
    polyattn_status st = polyattn_plan_create(b->ctx, &desc, &opts, &plan);
    if (st != POLYATTN_STATUS_SUCCESS) {
        r->status = (st == POLYATTN_STATUS_UNSUPPORTED || st == POLYATTN_STATUS_OVER_BUDGET)
                        ? PA_BENCH_SKIPPED
                        : PA_BENCH_ERROR;
        lib_reason(r, b->ctx, st, "plan");
        return NULL;
    }
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
    if ((st = polyattn_plan_get_info(plan, info)) != POLYATTN_STATUS_SUCCESS) {
        r->status = PA_BENCH_ERROR;
        lib_reason(r, b->ctx, st, "plan info");
        polyattn_plan_destroy(plan);
        return NULL;
    }
    r->algo = info->algo;
    r->mem_estimate = info->device_bytes;
    r->workspace_bytes = backward ? info->backward_workspace_bytes : info->workspace_bytes;
    return plan;
}

static void measure(bench_run *b, const pa_bench_shape *sh, polyattn_dtype dtype,
                    polyattn_algo algo, input_sets *sets, pa_bench_result *r)
{
    const float scale = (float)(1.0 / sqrt((double)sh->head_dim));
    polyattn_buffer *o = NULL, *ws = NULL;
    polyattn_event **ev = NULL;
    double *times = NULL;
    polyattn_status st;
    polyattn_plan_info info;
    polyattn_plan *plan = plan_measurement(b, sh, dtype, algo, 0, scale, &info, r);
    if (!plan) goto done;

    /* Memory: the peak of what this measurement adds (outputs, workspace) on top of the
     * input sets, plus one input set: what one call needs, comparable with the estimate. */
    polyattn_memory_stats before, after;
    size_t esize = polyattn_dtype_size(dtype);
    uint64_t o_count = (uint64_t)(sh->batch * sh->heads_q * sh->seq_q * sh->head_dim_v);
    if ((st = polyattn_context_memory_stats(b->ctx, 1, &before)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_buffer_alloc(b->ctx, o_count * esize, &o)) != POLYATTN_STATUS_SUCCESS ||
        (info.workspace_bytes &&
         (st = polyattn_buffer_alloc(b->ctx, info.workspace_bytes, &ws)) != POLYATTN_STATUS_SUCCESS)) {
        r->status = st == POLYATTN_STATUS_OUT_OF_MEMORY ? PA_BENCH_SKIPPED : PA_BENCH_ERROR;
        lib_reason(r, b->ctx, st, "allocation");
        goto done;
    }
    /* Poison O so that a row the algorithm forgets cannot pass validation. */
    {
        float *f = b->staging;
        for (uint64_t i = 0; i < o_count; i++)
            f[i] = NAN;
        pa_cli_from_f32(dtype, f, b->staging, o_count);
        if ((st = polyattn_buffer_write(o, 0, b->staging, o_count * esize)) !=
            POLYATTN_STATUS_SUCCESS) {
            r->status = PA_BENCH_ERROR;
            lib_reason(r, b->ctx, st, "poison O");
            goto done;
        }
    }
    polyattn_buffer *const *set0 = sets->buf[0];
    double t0 = now_seconds();
    if ((st = polyattn_forward(plan, set0[0], set0[1], set0[2], o, NULL, NULL, ws)) !=
            POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_context_synchronize(b->ctx)) != POLYATTN_STATUS_SUCCESS) {
        r->status = PA_BENCH_ERROR;
        lib_reason(r, b->ctx, st, "forward");
        goto done;
    }
    double first_call_s = now_seconds() - t0;
    if (b->corrupt) {
        /* Test hook (POLYATTN_BENCH_CORRUPT=1): spoil the last element of O, which the
         * validation's second slice covers, to prove that validation can fail. */
        float f;
        uint64_t at = (o_count - 1) * esize;
        if (polyattn_buffer_read(o, at, b->staging, esize) == POLYATTN_STATUS_SUCCESS) {
            pa_cli_to_f32(dtype, b->staging, &f, 1);
            f += 1.0f;
            pa_cli_from_f32(dtype, &f, b->staging, 1);
            polyattn_buffer_write(o, at, b->staging, esize);
        }
    }
    int v = pa_bench_validate(b->host, sh, scale, dtype, sets->host, o, r);
    if (v != 0) {
        r->status = v > 0 ? PA_BENCH_INVALID : PA_BENCH_ERROR;
        goto done;
    }

    /* Slow calls (a generic kernel on a long sequence) get fewer repetitions: at most
     * --max-seconds per measurement, at least 3 timed calls. */
    int reps = b->reps, warmup = b->warmup;
    if (b->max_seconds > 0 && first_call_s * (reps + warmup) > b->max_seconds) {
        warmup = warmup > 1 ? 1 : warmup;
        reps = (int)(b->max_seconds / first_call_s) - warmup;
        reps = reps < 3 ? 3 : reps > b->reps ? b->reps : reps;
    }
    r->reps = reps;
    for (int i = 0; i < warmup; i++) {
        polyattn_buffer *const *in = sets->buf[(i + 1) % sets->n];
        if ((st = polyattn_forward(plan, in[0], in[1], in[2], o, NULL, NULL, ws)) !=
            POLYATTN_STATUS_SUCCESS) {
            r->status = PA_BENCH_ERROR;
            lib_reason(r, b->ctx, st, "warm-up");
            goto done;
        }
    }
    /* Chained events: ev[i] .. ev[i + 1] brackets call i; calls are queued back to back. */
    ev = calloc((size_t)reps + 1, sizeof *ev);
    times = calloc((size_t)reps, sizeof *times);
    if (!ev || !times) {
        r->status = PA_BENCH_ERROR;
        snprintf(r->reason, sizeof r->reason, "out of host memory");
        goto done;
    }
    for (int i = 0; i <= reps; i++) {
        if ((st = polyattn_event_create(b->ctx, &ev[i])) != POLYATTN_STATUS_SUCCESS) {
            ev[i] = NULL;
            r->status = PA_BENCH_ERROR;
            lib_reason(r, b->ctx, st, "event");
            goto done;
        }
    }
    if ((st = polyattn_event_record(ev[0])) != POLYATTN_STATUS_SUCCESS)
        goto timing_failed;
    for (int i = 0; i < reps; i++) {
        polyattn_buffer *const *in = sets->buf[(i + 1 + warmup) % sets->n];
        if ((st = polyattn_forward(plan, in[0], in[1], in[2], o, NULL, NULL, ws)) !=
                POLYATTN_STATUS_SUCCESS ||
            (st = polyattn_event_record(ev[i + 1])) != POLYATTN_STATUS_SUCCESS)
            goto timing_failed;
    }
    if ((st = event_times(ev, reps, times, r)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_context_memory_stats(b->ctx, 0, &after)) != POLYATTN_STATUS_SUCCESS)
        goto timing_failed;
    if (r->ms > 0) {
        r->tflops = pa_bench_flops(sh) / (r->ms * 1e-3) / 1e12;
        r->gbps = info.min_bytes_moved / (r->ms * 1e-3) / 1e9;
    }
    r->mem_bytes = (after.peak_bytes - before.current_bytes) +
                   (sets->count[0] + sets->count[1] + sets->count[2]) * esize;
    r->status = PA_BENCH_OK;
    goto done;
timing_failed:
    r->status = PA_BENCH_ERROR;
    lib_reason(r, b->ctx, st, "timing");
done:
    if (ev)
        for (int i = 0; i <= r->reps; i++)
            polyattn_event_destroy(ev[i]);
    free(ev);
    free(times);
    polyattn_buffer_free(ws);
    polyattn_buffer_free(o);
    polyattn_plan_destroy(plan);
}

/* --backward: the same plan (made with want_backward) runs the forward once per input set
 * for O and the LSE; the backward is then validated on set 0 (gradients poisoned first)
 * and timed alone, rotating among the sets like the forward. */
static void measure_backward(bench_run *b, const pa_bench_shape *sh, polyattn_dtype dtype,
                             polyattn_algo algo, input_sets *sets, pa_bench_result *r)
{
    const float scale = (float)(1.0 / sqrt((double)sh->head_dim));
    polyattn_buffer *o[MAX_SETS] = {NULL}, *lse[MAX_SETS] = {NULL}, *fws = NULL, *bws = NULL;
    polyattn_buffer *grad[3] = {NULL, NULL, NULL};
    polyattn_event **ev = NULL;
    double *times = NULL;
    int n_ev = 0;
    polyattn_status st;
    polyattn_plan_info info;
    polyattn_plan *plan = plan_measurement(b, sh, dtype, algo, 1, scale, &info, r);
    if (!plan) goto done;

    /* The forward of every set: O and LSE, the backward's inputs. */
    size_t esize = polyattn_dtype_size(dtype);
    uint64_t rows = (uint64_t)(sh->batch * sh->heads_q * sh->seq_q);
    uint64_t o_count = sets->count[3];
    if (info.workspace_bytes &&
        (st = polyattn_buffer_alloc(b->ctx, info.workspace_bytes, &fws)) != POLYATTN_STATUS_SUCCESS) {
        fws = NULL;
        goto alloc_failed;
    }
    for (int i = 0; i < sets->n; i++) {
        polyattn_buffer *const *in = sets->buf[i];
        if ((st = polyattn_buffer_alloc(b->ctx, o_count * esize, &o[i])) != POLYATTN_STATUS_SUCCESS) {
            o[i] = NULL;
            goto alloc_failed;
        }
        if ((st = polyattn_buffer_alloc(b->ctx, rows * 4, &lse[i])) != POLYATTN_STATUS_SUCCESS) {
            lse[i] = NULL;
            goto alloc_failed;
        }
        if ((st = polyattn_forward(plan, in[0], in[1], in[2], o[i], lse[i], NULL, fws)) !=
            POLYATTN_STATUS_SUCCESS) {
            r->status = PA_BENCH_ERROR;
            lib_reason(r, b->ctx, st, "forward");
            goto done;
        }
    }
    if ((st = polyattn_context_synchronize(b->ctx)) != POLYATTN_STATUS_SUCCESS) {
        r->status = PA_BENCH_ERROR;
        lib_reason(r, b->ctx, st, "forward");
        goto done;
    }
    polyattn_buffer_free(fws);
    fws = NULL;
    /* The forward's O must be right before its gradients mean anything. */
    int v = pa_bench_validate(b->host, sh, scale, dtype, sets->host, o[0], r);
    if (v != 0) {
        r->status = v > 0 ? PA_BENCH_INVALID : PA_BENCH_ERROR;
        if (v > 0) { /* say which pass was wrong */
            static const char prefix[] = "forward: ";
            size_t plen = sizeof prefix - 1, len = strlen(r->reason);
            if (len + plen >= sizeof r->reason)
                len = sizeof r->reason - plen - 1;
            memmove(r->reason + plen, r->reason, len);
            r->reason[plen + len] = '\0';
            memcpy(r->reason, prefix, plen);
        }
        goto done;
    }

    /* Memory: what the backward adds (gradients, workspace) measured from here, plus one
     * input set with its dO, O and LSE. */
    polyattn_memory_stats before, after;
    if ((st = polyattn_context_memory_stats(b->ctx, 1, &before)) != POLYATTN_STATUS_SUCCESS)
        goto alloc_failed;
    for (int t = 0; t < 3; t++) {
        if ((st = polyattn_buffer_alloc(b->ctx, sets->count[t] * esize, &grad[t])) !=
            POLYATTN_STATUS_SUCCESS) {
            grad[t] = NULL;
            goto alloc_failed;
        }
        /* Poison: a row the backward forgets cannot pass validation. */
        float *f = b->staging;
        for (uint64_t i = 0; i < sets->count[t]; i++)
            f[i] = NAN;
        pa_cli_from_f32(dtype, f, b->staging, sets->count[t]);
        if ((st = polyattn_buffer_write(grad[t], 0, b->staging, sets->count[t] * esize)) !=
            POLYATTN_STATUS_SUCCESS) {
            r->status = PA_BENCH_ERROR;
            lib_reason(r, b->ctx, st, "poison the gradients");
            goto done;
        }
    }
    if (info.backward_workspace_bytes &&
        (st = polyattn_buffer_alloc(b->ctx, info.backward_workspace_bytes, &bws)) !=
            POLYATTN_STATUS_SUCCESS) {
        bws = NULL;
        goto alloc_failed;
    }
    polyattn_buffer *const *set0 = sets->buf[0];
    double t0 = now_seconds();
    if ((st = polyattn_backward(plan, set0[0], set0[1], set0[2], o[0], set0[3], lse[0], grad[0],
                                grad[1], grad[2], bws)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_context_synchronize(b->ctx)) != POLYATTN_STATUS_SUCCESS) {
        r->status = PA_BENCH_ERROR;
        lib_reason(r, b->ctx, st, "backward");
        goto done;
    }
    double first_call_s = now_seconds() - t0;
    if (b->corrupt) {
        /* Test hook (POLYATTN_BENCH_CORRUPT=1): spoil the last element of dK, which the
         * validation's last key rows cover, to prove that validation can fail. */
        float f;
        uint64_t at = (sets->count[1] - 1) * esize;
        if (polyattn_buffer_read(grad[1], at, b->staging, esize) == POLYATTN_STATUS_SUCCESS) {
            pa_cli_to_f32(dtype, b->staging, &f, 1);
            f += 1.0f;
            pa_cli_from_f32(dtype, &f, b->staging, 1);
            polyattn_buffer_write(grad[1], at, b->staging, esize);
        }
    }
    pa_bench_grads g = {o[0], lse[0], grad[0], grad[1], grad[2]};
    v = pa_bench_validate_backward(sh, scale, dtype, sets->host, &g, r);
    if (v != 0) {
        r->status = v > 0 ? PA_BENCH_INVALID : PA_BENCH_ERROR;
        goto done;
    }

    int reps = b->reps, warmup = b->warmup;
    if (b->max_seconds > 0 && first_call_s * (reps + warmup) > b->max_seconds) {
        warmup = warmup > 1 ? 1 : warmup;
        reps = (int)(b->max_seconds / first_call_s) - warmup;
        reps = reps < 3 ? 3 : reps > b->reps ? b->reps : reps;
    }
    r->reps = reps;
    for (int i = 0; i < warmup; i++) {
        int k = (i + 1) % sets->n;
        polyattn_buffer *const *in = sets->buf[k];
        if ((st = polyattn_backward(plan, in[0], in[1], in[2], o[k], in[3], lse[k], grad[0],
                                    grad[1], grad[2], bws)) != POLYATTN_STATUS_SUCCESS) {
            r->status = PA_BENCH_ERROR;
            lib_reason(r, b->ctx, st, "warm-up");
            goto done;
        }
    }
    ev = calloc((size_t)reps + 1, sizeof *ev);
    times = calloc((size_t)reps, sizeof *times);
    if (!ev || !times) {
        r->status = PA_BENCH_ERROR;
        snprintf(r->reason, sizeof r->reason, "out of host memory");
        goto done;
    }
    for (n_ev = 0; n_ev <= reps; n_ev++) {
        if ((st = polyattn_event_create(b->ctx, &ev[n_ev])) != POLYATTN_STATUS_SUCCESS) {
            ev[n_ev] = NULL;
            r->status = PA_BENCH_ERROR;
            lib_reason(r, b->ctx, st, "event");
            goto done;
        }
    }
    /* Chained events around back-to-back backward calls. */
    if ((st = polyattn_event_record(ev[0])) != POLYATTN_STATUS_SUCCESS)
        goto timing_failed;
    for (int i = 0; i < reps; i++) {
        int k = (i + 1 + warmup) % sets->n;
        polyattn_buffer *const *in = sets->buf[k];
        if ((st = polyattn_backward(plan, in[0], in[1], in[2], o[k], in[3], lse[k], grad[0],
                                    grad[1], grad[2], bws)) != POLYATTN_STATUS_SUCCESS ||
            (st = polyattn_event_record(ev[i + 1])) != POLYATTN_STATUS_SUCCESS)
            goto timing_failed;
    }
    if ((st = event_times(ev, reps, times, r)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_context_memory_stats(b->ctx, 0, &after)) != POLYATTN_STATUS_SUCCESS)
        goto timing_failed;
    if (r->ms > 0) {
        /* Bytes: Q, K, V, O, dO and the LSE read, dQ, dK, dV written. */
        double moved = (double)((sets->count[0] + sets->count[1] + sets->count[2]) * 2 +
                                2 * o_count) * (double)esize + 4.0 * (double)rows;
        r->tflops = pa_bench_backward_flops(sh) / (r->ms * 1e-3) / 1e12;
        r->gbps = moved / (r->ms * 1e-3) / 1e9;
    }
    r->mem_bytes = (after.peak_bytes - before.current_bytes) +
                   (sets->count[0] + sets->count[1] + sets->count[2] + 2 * o_count) * esize +
                   rows * 4;
    r->status = PA_BENCH_OK;
    goto done;
alloc_failed:
    r->status = st == POLYATTN_STATUS_OUT_OF_MEMORY ? PA_BENCH_SKIPPED : PA_BENCH_ERROR;
    lib_reason(r, b->ctx, st, "allocation");
    goto done;
timing_failed:
    r->status = PA_BENCH_ERROR;
    lib_reason(r, b->ctx, st, "timing");
done:
    if (ev)
        for (int i = 0; i < n_ev; i++)
            polyattn_event_destroy(ev[i]);
    free(ev);
    free(times);
    polyattn_buffer_free(bws);
    for (int t = 0; t < 3; t++)
        polyattn_buffer_free(grad[t]);
    for (int i = 0; i < MAX_SETS; i++) {
        polyattn_buffer_free(lse[i]);
        polyattn_buffer_free(o[i]);
    }
    polyattn_buffer_free(fws);
    polyattn_plan_destroy(plan);
}

/* "a,b,c" against choices; returns the count or -1 (message printed). */
static int parse_list(const pa_cli_args *args, const char *name, const char *const *choices,
                      int n_choices, int *out, int max)
{
    const char *text = pa_cli_get(args, name);
    int n = 0;
    const char *p = text;
    while (p && *p) {
        size_t len = strcspn(p, ",");
        int k = -1;
        for (int i = 0; i < n_choices; i++)
            if (strlen(choices[i]) == len && strncmp(choices[i], p, len) == 0)
                k = i;
        if (k < 0 || n >= max) {
            char list[128];
            size_t used = 0;
            for (int i = 0; i < n_choices && used < sizeof list; i++)
                used += (size_t)snprintf(list + used, sizeof list - used, "%s%s", i ? "|" : "",
                                         choices[i]);
            pa_cli_fail("bench", "%s: unknown value '%.*s' (expected %s, comma-separated)", name,
                        (int)len, p, list);
            return -1;
        }
        out[n++] = k;
        p += len;
        if (*p == ',')
            p++;
    }
    if (n == 0) {
        pa_cli_fail("bench", "%s: empty list", name);
        return -1;
    }
    return n;
}

static void format_duration(double seconds, char *buf, size_t size)
{
    if (seconds < 60)
        snprintf(buf, size, "%.0fs", seconds);
    else if (seconds < 3600)
        snprintf(buf, size, "%.0fm%02.0fs", floor(seconds / 60), fmod(seconds, 60));
    else
        snprintf(buf, size, "%.0fh%02.0fm", floor(seconds / 3600), fmod(seconds / 60, 60));
}

/* ---- targets and processes ----------------------------------------------------------
 * Each target (backend:device) is measured in a child process: a crash inside a device
 * library or kernel (a segfault in a driver, say) costs the measurement under way, which
 * is reported as an error, and a new child goes on with the next one.  The parent never
 * touches a device (no driver is initialized before a fork); it collects the results over
 * a pipe and writes the reports.  Device discovery for --compare-backends runs in a child
 * too, for the same reason. */

#define MAX_TARGETS 32

/* SIGINT/SIGTERM: finish the measurement under way, then write what was measured.  The
 * parent forwards the signal to the child measuring; a second signal to the parent kills
 * both.  A child only notes the request (it may get the signal twice: from the terminal
 * and forwarded). */
static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t in_child;
static volatile pid_t measuring_pid;

static void on_stop_signal(int sig)
{
    if (in_child) {
        stop_requested = 1;
        return;
    }
    if (stop_requested) {
        if (measuring_pid > 0)
            kill(measuring_pid, SIGKILL);
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_requested = 1;
    if (measuring_pid > 0)
        kill(measuring_pid, SIGTERM);
}

enum { MSG_DEVICE = 1, MSG_RESULT = 2, MSG_TARGET = 3 };

typedef struct child_msg {
    int kind;
    int index;
    pa_bench_target target;
    pa_bench_result result;
} child_msg;

static int write_full(int fd, const void *data, size_t size)
{
    const char *p = data;
    while (size > 0) {
        ssize_t k = write(fd, p, size);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        size -= (size_t)k;
    }
    return 0;
}

/* 1: a whole message, 0: end of file (or a partial message from a dying child). */
static int read_full(int fd, void *data, size_t size)
{
    char *p = data;
    size_t got = 0;
    while (got < size) {
        ssize_t k = read(fd, p + got, size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return 0;
        got += (size_t)k;
    }
    return 1;
}

/* Runs fn(arg, fd) in a child; the parent reads messages through on_msg.  Returns the
 * child's wait status, or -1 when no child could be started. */
typedef int (*child_fn)(void *arg, int fd);
typedef void (*msg_fn)(void *arg, const child_msg *m);

static int run_child(child_fn fn, void *arg, msg_fn on_msg, void *msg_arg)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        in_child = 1;
        measuring_pid = 0;
        close(fds[0]);
        /* The parent's crash handler would delete the parent's staged report files. */
        static const int fatal[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGHUP};
        for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) {
            struct sigaction old;
            if (sigaction(fatal[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
                signal(fatal[i], SIG_DFL);
        }
        int rc = fn(arg, fds[1]);
        fflush(stdout);
        fflush(stderr);
        close(fds[1]);
        _exit(rc);
    }
    measuring_pid = pid;
    if (stop_requested) /* a signal between fork and here was not forwarded */
        kill(pid, SIGTERM);
    close(fds[1]);
    child_msg m;
    while (read_full(fds[0], &m, sizeof m))
        on_msg(msg_arg, &m);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    measuring_pid = 0;
    return status;
}

/* What a run measures: every target runs the same list of (shape, dtype, algo). */
typedef struct bench_job {
    const pa_bench_suite *suite;
    const pa_bench_shape *shapes;
    int n_shapes;
    const int *dtypes, *algos;
    int n_dtypes, n_algos, n_per_target;
    int n_sets_opt;
    int crash_at;            /* test hook: this measurement crashes its process; -1 none */
    bench_run params;        /* reps, warmup, budget, max_seconds, corrupt */
    pa_cli_common common;    /* --memory-budget etc.; backend/device from the target */
    int n_targets;
    double t_start;
    /* The child under way: */
    pa_bench_target *target;
    int target_no, start;
} bench_job;

static void measurement_of(const bench_job *job, int index, const pa_bench_shape **sh,
                           polyattn_dtype *dtype, polyattn_algo *algo)
{
    int ai = index % job->n_algos, rest = index / job->n_algos;
    *algo = (polyattn_algo)job->algos[ai];
    *dtype = (polyattn_dtype)job->dtypes[rest % job->n_dtypes];
    *sh = &job->shapes[rest / job->n_dtypes];
}

static int send_result(int fd, pa_bench_result *r)
{
    child_msg m;
    memset(&m, 0, sizeof m);
    m.kind = MSG_RESULT;
    m.index = r->index;
    m.result = *r;
    return write_full(fd, &m, sizeof m);
}

/* The child: opens the target's device and measures job->start .. n_per_target - 1. */
static int measure_target(void *arg, int fd)
{
    bench_job *job = arg;
    bench_run b = job->params;
    pa_cli_common common = job->common;
    common.backend = job->target->backend;
    common.device = job->target->device;
    int rc = PA_EXIT_OK;
    float *scratch = NULL;
    input_sets sets;
    memset(&sets, 0, sizeof sets);
    child_msg msg;
    memset(&msg, 0, sizeof msg);
    polyattn_device_info dev_info;
    memset(&dev_info, 0, sizeof dev_info);
    polyattn_device_info *dev = &dev_info;
    dev->struct_size = sizeof *dev;
    rc = pa_cli_open_context("bench", &common, &b.ctx);
    if (rc)
        goto finish;
    polyattn_status st;
    if ((st = polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &b.host)) != POLYATTN_STATUS_SUCCESS) {
        b.host = NULL;
        rc = pa_cli_fail_status("bench", NULL, st, "host reference context");
        goto finish;
    }
    if ((st = polyattn_context_get_device_info(b.ctx, dev)) != POLYATTN_STATUS_SUCCESS) {
        rc = pa_cli_fail_status("bench", b.ctx, st, "device info");
        goto finish;
    }
    msg.kind = MSG_DEVICE;
    msg.target = *job->target;
    msg.target.backend = dev->backend;
    msg.target.device = dev->index;
    msg.target.opened = 1;
    msg.target.info = dev_info;
    if (write_full(fd, &msg, sizeof msg)) {
        rc = PA_EXIT_RUNTIME;
        goto finish;
    }
    /* Staging holds the largest input or output of the suite in f32. */
    uint64_t max_count = 0;
    for (int i = 0; i < job->n_shapes; i++) {
        const pa_bench_shape *s = &job->shapes[i];
        uint64_t c[3] = {(uint64_t)(s->batch * s->heads_q * s->seq_q * (s->head_dim > s->head_dim_v ? s->head_dim : s->head_dim_v)),
                         (uint64_t)(s->batch * s->heads_kv * s->seq_kv * s->head_dim),
                         (uint64_t)(s->batch * s->heads_kv * s->seq_kv * s->head_dim_v)};
        for (int t = 0; t < 3; t++)
            max_count = c[t] > max_count ? c[t] : max_count;
    }
    b.staging = malloc(max_count * 4);
    scratch = malloc(max_count * 4);
    if (!b.staging || !scratch) {
        rc = pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "out of host memory");
        goto finish;
    }

    int tty = isatty(2);
    if (job->start == 0) {
        printf("%spolyattn bench: suite %s, %s:%d (%s), reps %d, warmup %d%s\n",
               job->target_no ? "\n" : "", job->suite->name, polyattn_backend_name(dev->backend),
               dev->index, dev->name, b.reps, b.warmup,
               !b.backward ? ""
               : b.deterministic ? ", backward pass (dQ, dK, dV; deterministic), TFLOP/s at 2.5x "
                                   "the forward FLOPs"
                                 : ", backward pass (dQ, dK, dV), TFLOP/s at 2.5x the forward FLOPs");
        pa_bench_print_header(stdout);
    } else {
        printf("(%s:%d: going on in a new process)\n", polyattn_backend_name(dev->backend),
               dev->index);
    }
    fflush(stdout);
    int n_total = job->n_targets * job->n_per_target;
    const pa_bench_shape *sets_shape = NULL;
    polyattn_dtype sets_dtype = POLYATTN_DTYPE_F32;
    polyattn_status sets_status = POLYATTN_STATUS_SUCCESS;
    for (int index = job->start; index < job->n_per_target && !stop_requested; index++) {
        const pa_bench_shape *sh;
        polyattn_dtype dtype;
        polyattn_algo algo;
        measurement_of(job, index, &sh, &dtype, &algo);
        if (sh != sets_shape || dtype != sets_dtype) {
            free_sets(&sets);
            /* Enough input sets to exceed the last-level cache (~256 MiB), at most 4, within
             * a quarter of the device's memory; one on the host backend. */
            size_t esize = polyattn_dtype_size(dtype);
            uint64_t set_bytes = (uint64_t)(sh->batch * sh->heads_q * sh->seq_q * sh->head_dim +
                                            sh->batch * sh->heads_kv * sh->seq_kv *
                                                (sh->head_dim + sh->head_dim_v)) * esize;
            if (b.backward) /* each set also holds dO, O and the LSE */
                set_bytes += (uint64_t)(sh->batch * sh->heads_q * sh->seq_q) *
                             (2 * (uint64_t)sh->head_dim_v * esize + 4);
            int n_sets = job->n_sets_opt;
            if (n_sets == 0) {
                n_sets = (int)((256ull << 20) / (set_bytes ? set_bytes : 1)) + 1;
                if (n_sets > MAX_SETS)
                    n_sets = MAX_SETS;
                while (n_sets > 1 && (uint64_t)n_sets * set_bytes > dev->global_mem_bytes / 4)
                    n_sets--;
                if (dev->backend == POLYATTN_BACKEND_HOST)
                    n_sets = 1;
            }
            sets_status = make_sets(b.ctx, sh, dtype, n_sets, b.backward, &sets, b.staging,
                                    scratch);
            sets_shape = sh;
            sets_dtype = dtype;
        }
        int done = job->target_no * job->n_per_target + index;
        if (tty) {
            char el[32], eta[32] = "?";
            double elapsed = now_seconds() - job->t_start;
            format_duration(elapsed, el, sizeof el);
            if (done > 0)
                format_duration(elapsed / done * (n_total - done), eta, sizeof eta);
            fprintf(stderr, "\r\033[K[%d/%d] %s:%d b %lld hq %lld sq %lld skv %lld d %lld %s %s%s  "
                            "elapsed %s, ETA %s",
                    done + 1, n_total, polyattn_backend_name(dev->backend), dev->index,
                    (long long)sh->batch, (long long)sh->heads_q, (long long)sh->seq_q,
                    (long long)sh->seq_kv, (long long)sh->head_dim, polyattn_dtype_name(dtype),
                    polyattn_algo_name(algo), b.backward ? " backward" : "", el, eta);
            fflush(stderr);
        }
        if (index == job->crash_at) {
            /* Test hook (POLYATTN_BENCH_CRASH=N): die as a crashing driver would, to prove
             * that the run goes on and reports it. */
            fflush(stdout);
            signal(SIGSEGV, SIG_DFL);
            raise(SIGSEGV);
        }
        pa_bench_result r;
        if (sets_status != POLYATTN_STATUS_SUCCESS) {
            memset(&r, 0, sizeof r);
            r.shape = *sh;
            r.dtype = dtype;
            r.algo_asked = r.algo = algo;
            r.backward = b.backward;
            r.deterministic = b.deterministic;
            r.status = sets_status == POLYATTN_STATUS_OUT_OF_MEMORY ? PA_BENCH_SKIPPED
                                                                    : PA_BENCH_ERROR;
            lib_reason(&r, b.ctx, sets_status, "inputs");
        } else if (b.backward) {
            measure_backward(&b, sh, dtype, algo, &sets, &r);
        } else {
            measure(&b, sh, dtype, algo, &sets, &r);
        }
        r.target = job->target_no;
        r.index = index;
        if (tty)
            fprintf(stderr, "\r\033[K");
        /* The row is printed by the parent, which knows speedups against unfused. */
        if (send_result(fd, &r)) {
            rc = PA_EXIT_RUNTIME;
            break;
        }
    }
    if (tty)
        fprintf(stderr, "\r\033[K");
finish:
    free_sets(&sets);
    free(scratch);
    free(b.staging);
    polyattn_context_destroy(b.host);
    polyattn_context_destroy(b.ctx);
    return rc;
}

/* The parent's side of one target. */
typedef struct target_state {
    bench_job *job;
    pa_bench_result *results; /* n_per_target slots of this target */
    unsigned char *have;
    int next;                 /* first index not received */
} target_state;

static void on_target_msg(void *arg, const child_msg *m)
{
    target_state *ts = arg;
    if (m->kind == MSG_DEVICE) {
        pa_bench_target *t = ts->job->target;
        t->info = m->target.info;
        t->backend = m->target.backend;
        t->device = m->target.device;
        t->opened = 1;
        snprintf(t->label, sizeof t->label, "%s:%d", polyattn_backend_name(t->backend),
                 t->device);
    } else if (m->kind == MSG_RESULT && m->index >= 0 && m->index < ts->job->n_per_target) {
        ts->results[m->index] = m->result;
        ts->have[m->index] = 1;
        ts->next = m->index + 1;
        /* Speedups against unfused need the unfused row of the same shape, measured first. */
        pa_bench_result row = m->result;
        int lo = m->index - m->index % ts->job->n_algos;
        for (int j = lo; j <= m->index; j++)
            if (ts->have[j] && ts->results[j].status == PA_BENCH_OK &&
                ts->results[j].algo == POLYATTN_ALGO_UNFUSED && row.status == PA_BENCH_OK &&
                row.ms > 0) {
                row.speedup_vs_unfused = ts->results[j].ms / row.ms;
                row.mem_saved_vs_unfused =
                    ts->results[j].mem_bytes
                        ? 1.0 - (double)row.mem_bytes / (double)ts->results[j].mem_bytes
                        : 0;
            }
        pa_bench_print_row(stdout, &row);
        fflush(stdout);
    }
}

/* Measures one target, in as many children as crashes require.  Returns 0, or the exit
 * code of a child that failed before measuring (its message printed). */
static int run_target(bench_job *job, pa_bench_result *results, unsigned char *have)
{
    target_state ts = {job, results, have, 0};
    job->start = 0;
    while (job->start < job->n_per_target && !stop_requested) {
        ts.next = job->start;
        int status = run_child(measure_target, job, on_target_msg, &ts);
        if (status == -1)
            return pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "cannot start a process: %s",
                                    strerror(errno));
        if (WIFEXITED(status) && !job->target->opened)
            return WEXITSTATUS(status) ? WEXITSTATUS(status) : PA_EXIT_RUNTIME;
        if (WIFEXITED(status))
            break; /* done, or stopped by a signal, or could not report */
        int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        if (!job->target->opened) {
            return pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "%s: the process opening the "
                                    "device died of signal %d (%s)", job->target->label, sig,
                                    strsignal(sig));
        }
        if (ts.next >= job->n_per_target) {
            pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "%s: the measuring process died of "
                             "signal %d (%s) after its last measurement", job->target->label,
                             sig, strsignal(sig));
            return PA_EXIT_RUNTIME;
        }
        if (stop_requested && sig == SIGKILL)
            break;
        /* The measurement under way crashed the process: report it, go on after it. */
        pa_bench_result *r = &results[ts.next];
        const pa_bench_shape *sh;
        polyattn_dtype dtype;
        polyattn_algo algo;
        measurement_of(job, ts.next, &sh, &dtype, &algo);
        memset(r, 0, sizeof *r);
        r->target = job->target_no;
        r->index = ts.next;
        r->shape = *sh;
        r->dtype = dtype;
        r->algo_asked = r->algo = algo;
        r->backward = job->params.backward;
        r->deterministic = job->params.deterministic;
        r->status = PA_BENCH_ERROR;
        snprintf(r->reason, sizeof r->reason, "crashed: the process died of signal %d (%s)",
                 sig, strsignal(sig));
        have[ts.next] = 1;
        pa_bench_print_row(stdout, r);
        fflush(stdout);
        job->start = ts.next + 1;
    }
    return 0;
}

/* --backend items: NAME[:N]. */
typedef struct backend_item {
    polyattn_backend backend;
    int device; /* -1: not given */
} backend_item;

static int parse_backend_items(const char *option, const char *text, backend_item *items,
                               int max)
{
    static const char *const names[] = {"auto", "cuda", "hip", "opencl", "host"};
    int n = 0;
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, ",");
        size_t name_len = strcspn(p, ",:");
        int k = -1;
        for (int i = 0; i < 5; i++)
            if (strlen(names[i]) == name_len && strncmp(names[i], p, name_len) == 0)
                k = i;
        int device = -1;
        if (k >= 0 && name_len < len) { /* ":N" */
            char *end = NULL;
            long v = strtol(p + name_len + 1, &end, 10);
            if (end != p + len || end == p + name_len + 1 || v < 0 || v > INT_MAX ||
                !isdigit((unsigned char)p[name_len + 1]))
                k = -2;
            device = (int)v;
        }
        if (k < 0 || (k == 0 && device >= 0) || n >= max) {
            pa_cli_fail("bench", "%s: unknown value '%.*s' (expected auto|cuda|hip|opencl|host, "
                        "each optionally :DEVICE, comma-separated)", option, (int)len, p);
            return -1;
        }
        items[n].backend = (polyattn_backend)k;
        items[n].device = device;
        n++;
        p += len;
        if (*p == ',') {
            p++;
            if (!*p) {
                pa_cli_fail("bench", "%s: empty item at the end of '%s'", option, text);
                return -1;
            }
        }
    }
    if (n == 0) {
        pa_cli_fail("bench", "%s: empty list", option);
        return -1;
    }
    return n;
}

/* Device discovery for --compare-backends, in a child (see above). */
typedef struct discovery {
    const backend_item *items;
    int n_items;
    int include_host;
} discovery;

static int send_target(int fd, polyattn_backend backend, int device)
{
    child_msg m;
    memset(&m, 0, sizeof m);
    m.kind = MSG_TARGET;
    m.target.backend = backend;
    m.target.device = device;
    snprintf(m.target.label, sizeof m.target.label, "%s:%d", polyattn_backend_name(backend),
             device);
    return write_full(fd, &m, sizeof m);
}

static int discover_targets(void *arg, int fd)
{
    const discovery *d = arg;
    backend_item list[16];
    int n = 0;
    for (int i = 0; i < d->n_items && n < 12; i++) {
        if (d->items[i].backend == POLYATTN_BACKEND_AUTO) {
            /* auto: every GPU-style backend (the host reference only when asked). */
            for (int b = POLYATTN_BACKEND_CUDA; b <= POLYATTN_BACKEND_OPENCL; b++)
                list[n++] = (backend_item){(polyattn_backend)b, -1};
        } else {
            list[n++] = d->items[i];
        }
    }
    if (d->include_host)
        list[n++] = (backend_item){POLYATTN_BACKEND_HOST, -1};
    int sent = 0;
    for (int i = 0; i < n; i++) {
        polyattn_backend backend = list[i].backend;
        const char *name = polyattn_backend_name(backend);
        /* An item seen before (auto and cuda, say) is measured once. */
        int dup = 0;
        for (int j = 0; j < i; j++)
            dup |= list[j].backend == backend &&
                   (list[j].device == list[i].device || list[j].device < 0);
        if (dup)
            continue;
        int count = 0;
        const char *reason = NULL;
        polyattn_status st = polyattn_backend_compiled(backend)
                                 ? polyattn_device_count(backend, &count, &reason)
                                 : POLYATTN_STATUS_SUCCESS;
        if (!polyattn_backend_compiled(backend))
            reason = "not compiled into this build";
        if (st != POLYATTN_STATUS_SUCCESS || count == 0) {
            const char *why = reason && reason[0] ? reason
                              : st != POLYATTN_STATUS_SUCCESS ? polyattn_status_string(st)
                                                              : "none found";
            if (list[i].device >= 0)
                return pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "--backend: %s has no "
                                        "device (%s)", name, why);
            printf("polyattn bench: compare-backends: %s: no device (%s)\n", name, why);
            continue;
        }
        if (list[i].device >= count)
            return pa_cli_fail("bench", "--backend: %s:%d: %s has %d device%s", name,
                               list[i].device, name, count, count == 1 ? "" : "s");
        for (int k = 0; k < count; k++) {
            if (list[i].device >= 0 && k != list[i].device)
                continue;
            int dup_dev = 0;
            for (int j = 0; j < i; j++)
                dup_dev |= list[j].backend == backend && list[j].device == k;
            if (dup_dev)
                continue;
            if (sent >= MAX_TARGETS || send_target(fd, backend, k))
                return PA_EXIT_RUNTIME;
            sent++;
        }
    }
    return PA_EXIT_OK;
}

typedef struct target_list {
    pa_bench_target *targets;
    int n;
} target_list;

static void on_discovery_msg(void *arg, const child_msg *m)
{
    target_list *tl = arg;
    if (m->kind == MSG_TARGET && tl->n < MAX_TARGETS)
        tl->targets[tl->n++] = m->target;
}

int pa_cmd_bench(int argc, char **argv)
{
    static const pa_cli_opt spec[] = {
        {"--suite", 1},   {"--shape", 1},  {"--causal", 1}, {"--backend", 1},
        {"--device", 1},  {"--algo", 1},   {"--dtype", 1},  {"--reps", 1},
        {"--warmup", 1},  {"--sets", 1},   {"--memory-budget", 1}, {"--csv", 1},
        {"--json", 1},    {"--max-seconds", 1}, {"--compare-backends", 0},
        {"--include-host", 0}, {"--baseline", 1}, {"--list", 0},
        {"--backward", 0}, {"--deterministic", 0},
    };
    pa_cli_args args;
    if (pa_cli_parse(&args, "bench", spec, (int)(sizeof spec / sizeof spec[0]), argc, argv))
        return PA_EXIT_USAGE;
    if (args.help) {
        fputs(usage, stdout);
        return PA_EXIT_OK;
    }
    const char *suite_name = pa_cli_has(&args, "--suite") ? pa_cli_get(&args, "--suite") : "seed";
    const pa_bench_suite *suite = pa_bench_find_suite(suite_name);
    if (!suite)
        return pa_cli_fail("bench", "--suite: unknown value '%s' (expected %s)", suite_name,
                           pa_bench_suite_names());

    /* --algo, --dtype and --backend are lists here: parse them, then the shared options
     * without them. */
    static const char *const algo_names[] = {"auto", "unfused", "fused", "flash", "all"};
    static const char *const dtype_names[] = {"f32", "f16", "bf16"};
    int algo_idx[8], dtype_idx[3], n_algos = 3, n_dtypes = 1;
    algo_idx[0] = POLYATTN_ALGO_UNFUSED;
    algo_idx[1] = POLYATTN_ALGO_FUSED;
    algo_idx[2] = POLYATTN_ALGO_FLASH;
    dtype_idx[0] = (int)suite->default_dtype;
    if (pa_cli_has(&args, "--algo")) {
        int list[8];
        int n = parse_list(&args, "--algo", algo_names, 5, list, 8);
        if (n < 0)
            return PA_EXIT_USAGE;
        n_algos = 0;
        for (int i = 0; i < n; i++) {
            if (list[i] == 4) { /* all */
                for (int a = POLYATTN_ALGO_UNFUSED; a <= POLYATTN_ALGO_FLASH && n_algos < 8; a++)
                    algo_idx[n_algos++] = a;
            } else if (n_algos < 8) {
                algo_idx[n_algos++] = list[i];
            }
        }
    }
    if (pa_cli_has(&args, "--dtype")) {
        n_dtypes = parse_list(&args, "--dtype", dtype_names, 3, dtype_idx, 3);
        if (n_dtypes < 0)
            return PA_EXIT_USAGE;
    }
    pa_cli_args shared = args;
    for (int i = 0; i < shared.n_spec; i++)
        if (strcmp(spec[i].name, "--algo") == 0 || strcmp(spec[i].name, "--dtype") == 0 ||
            strcmp(spec[i].name, "--backend") == 0)
            shared.value[i] = NULL;
    pa_cli_common common;
    int64_t reps = 10, warmup = 3, n_sets_opt = 0;
    double max_seconds = 10;
    if (pa_cli_get_common(&shared, &common) ||
        pa_cli_get_i64(&args, "--reps", 1, 100000, &reps) ||
        pa_cli_get_i64(&args, "--warmup", 0, 10000, &warmup) ||
        pa_cli_get_i64(&args, "--sets", 1, MAX_SETS, &n_sets_opt) ||
        pa_cli_get_double(&args, "--max-seconds", &max_seconds))
        return PA_EXIT_USAGE;
    if (max_seconds < 0)
        return pa_cli_fail("bench", "--max-seconds: expected 0 (no cap) or a positive number, "
                                    "got '%s'", pa_cli_get(&args, "--max-seconds"));
    int backward = pa_cli_has(&args, "--backward");
    if (pa_cli_has(&args, "--deterministic") && !backward)
        return pa_cli_fail("bench", "--deterministic: only with --backward (the forward is "
                                    "deterministic anyway)");

    pa_bench_shape shapes[MAX_SHAPES];
    int n_shapes = 0;
    if (strcmp(suite->name, "custom") == 0) {
        if (pa_cli_require(&args, "--shape"))
            return PA_EXIT_USAGE;
        char err[256];
        n_shapes = pa_bench_parse_shapes(pa_cli_get(&args, "--shape"), common.mask, shapes,
                                         MAX_SHAPES, err, sizeof err);
        if (n_shapes < 0)
            return pa_cli_fail("bench", "--shape: %s", err);
        for (int i = 0; i < n_shapes; i++) {
            polyattn_attention_desc d;
            const pa_bench_shape *s = &shapes[i];
            polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, s->batch, s->heads_q,
                                         s->heads_kv, s->seq_q, s->seq_kv, s->head_dim,
                                         s->head_dim_v);
            const char *why = NULL;
            if (polyattn_attention_desc_validate(&d, &why) != POLYATTN_STATUS_SUCCESS)
                return pa_cli_fail("bench", "--shape: shape %d: %s", i + 1, why ? why : "invalid");
        }
    } else {
        if (pa_cli_has(&args, "--shape"))
            return pa_cli_fail("bench", "--shape: only with --suite custom");
        if (pa_cli_has(&args, "--causal"))
            return pa_cli_fail("bench", "--causal: only with --suite custom (the suites fix "
                                        "their masks)");
        n_shapes = suite->n_shapes;
        memcpy(shapes, suite->shapes, sizeof shapes[0] * (size_t)n_shapes);
    }

    /* Targets: --backend NAME[:N][,...]; --compare-backends expands names to every device. */
    int compare = pa_cli_has(&args, "--compare-backends");
    int include_host = pa_cli_has(&args, "--include-host");
    backend_item items[MAX_TARGETS];
    int n_items = 1;
    items[0].backend = POLYATTN_BACKEND_AUTO;
    items[0].device = -1;
    if (pa_cli_has(&args, "--backend")) {
        n_items = parse_backend_items("--backend", pa_cli_get(&args, "--backend"), items,
                                      MAX_TARGETS);
        if (n_items < 0)
            return PA_EXIT_USAGE;
    }
    if (include_host && !compare)
        return pa_cli_fail("bench", "--include-host: only with --compare-backends (else name "
                                    "it: --backend host,...)");
    if (compare && pa_cli_has(&args, "--device"))
        return pa_cli_fail("bench", "--device: not with --compare-backends (name a device as "
                                    "--backend opencl:1)");
    backend_item baseline_item = {POLYATTN_BACKEND_AUTO, -1};
    if (pa_cli_has(&args, "--baseline")) {
        const char *text = pa_cli_get(&args, "--baseline");
        if (strchr(text, ','))
            return pa_cli_fail("bench", "--baseline: one backend expected, got '%s'", text);
        if (parse_backend_items("--baseline", text, &baseline_item, 1) != 1)
            return PA_EXIT_USAGE;
        if (baseline_item.backend == POLYATTN_BACKEND_AUTO)
            return pa_cli_fail("bench", "--baseline: expected a backend (cuda|hip|opencl|host"
                                        "[:DEVICE]), got '%s'", text);
        int listed = 0;
        for (int i = 0; i < n_items; i++)
            listed |= items[i].backend == baseline_item.backend ||
                      (compare && items[i].backend == POLYATTN_BACKEND_AUTO &&
                       baseline_item.backend != POLYATTN_BACKEND_HOST);
        listed |= include_host && baseline_item.backend == POLYATTN_BACKEND_HOST;
        if (!listed)
            return pa_cli_fail("bench", "--baseline: %s is not among the backends measured",
                               pa_cli_get(&args, "--baseline"));
    }

    if (pa_cli_has(&args, "--list")) {
        pa_bench_write_list(stdout, suite->name, shapes, n_shapes, dtype_idx, n_dtypes);
        return PA_EXIT_OK;
    }

    /* Report files: staged now, so that a bad path fails before any device work. */
    pa_outfile csv_file, json_file;
    int have_csv = pa_cli_has(&args, "--csv"), have_json = pa_cli_has(&args, "--json");
    if (have_csv && have_json && strcmp(pa_cli_get(&args, "--csv"), pa_cli_get(&args, "--json")) == 0)
        return pa_cli_fail("bench", "--json: same file as --csv");
    if (have_csv && pa_outfile_open(&csv_file, "bench", "--csv", pa_cli_get(&args, "--csv")))
        return PA_EXIT_USAGE;
    if (have_json && pa_outfile_open(&json_file, "bench", "--json", pa_cli_get(&args, "--json"))) {
        if (have_csv)
            pa_outfile_discard(&csv_file);
        return PA_EXIT_USAGE;
    }

    bench_job job;
    memset(&job, 0, sizeof job);
    job.suite = suite;
    job.shapes = shapes;
    job.n_shapes = n_shapes;
    job.dtypes = dtype_idx;
    job.n_dtypes = n_dtypes;
    job.algos = algo_idx;
    job.n_algos = n_algos;
    job.n_per_target = n_shapes * n_dtypes * n_algos;
    job.n_sets_opt = (int)n_sets_opt;
    job.params.reps = (int)reps;
    job.params.warmup = (int)warmup;
    job.params.budget = common.memory_budget_bytes;
    job.params.max_seconds = max_seconds;
    job.params.backward = backward;
    job.params.deterministic = pa_cli_has(&args, "--deterministic");
    job.params.corrupt = getenv("POLYATTN_BENCH_CORRUPT") &&
                         strcmp(getenv("POLYATTN_BENCH_CORRUPT"), "1") == 0;
    job.common = common;
    job.crash_at = getenv("POLYATTN_BENCH_CRASH") ? atoi(getenv("POLYATTN_BENCH_CRASH")) : -1;

    int rc = PA_EXIT_OK, n_done = 0, baseline = -1;
    pa_bench_target *targets = calloc(MAX_TARGETS, sizeof *targets);
    pa_bench_result *results = NULL, *done_list = NULL;
    unsigned char *have = NULL;
    int n_targets = 0;
    stop_requested = 0;
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    if (!targets) {
        rc = pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "out of host memory");
        goto finish;
    }
    if (compare) {
        discovery d = {items, n_items, include_host};
        target_list tl = {targets, 0};
        int status = run_child(discover_targets, &d, on_discovery_msg, &tl);
        if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            rc = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : PA_EXIT_RUNTIME;
            if (status == -1 || !WIFEXITED(status))
                pa_cli_fail_code(rc, "bench", "device discovery failed%s",
                                 status == -1 ? ": cannot start a process" : " (the process crashed)");
            goto finish;
        }
        n_targets = tl.n;
        if (n_targets == 0) {
            rc = pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "--compare-backends: no device "
                                  "found%s", include_host ? "" : " (add --include-host to "
                                  "measure the host reference)");
            goto finish;
        }
    } else {
        for (int i = 0; i < n_items; i++) {
            pa_bench_target *t = &targets[n_targets++];
            t->backend = items[i].backend;
            t->device = items[i].device >= 0 ? items[i].device : common.device;
            if (t->backend == POLYATTN_BACKEND_AUTO)
                snprintf(t->label, sizeof t->label, "auto");
            else
                snprintf(t->label, sizeof t->label, "%s:%d", polyattn_backend_name(t->backend),
                         t->device);
        }
    }
    if (compare) {
        printf("polyattn bench: compare-backends:");
        for (int t = 0; t < n_targets; t++)
            printf(" %s", targets[t].label);
        printf("\n");
    }
    results = calloc((size_t)n_targets * (size_t)job.n_per_target, sizeof *results);
    done_list = calloc((size_t)n_targets * (size_t)job.n_per_target, sizeof *done_list);
    have = calloc((size_t)n_targets * (size_t)job.n_per_target, 1);
    if (!results || !done_list || !have) {
        rc = pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "out of host memory");
        goto finish;
    }
    job.n_targets = n_targets;
    job.t_start = now_seconds();
    for (int t = 0; t < n_targets && !stop_requested; t++) {
        job.target = &targets[t];
        job.target_no = t;
        int trc = run_target(&job, results + (size_t)t * job.n_per_target,
                             have + (size_t)t * job.n_per_target);
        if (trc) {
            /* The device could not be opened: alone, that ends the command as before;
             * among several, the others still run. */
            if (n_targets == 1) {
                rc = trc;
                goto finish;
            }
            rc = PA_EXIT_RUNTIME;
        }
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    int n_total = n_targets * job.n_per_target;
    for (int i = 0; i < n_total; i++)
        if (have[i])
            done_list[n_done++] = results[i];
    if (stop_requested) {
        pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "interrupted after %d of %d measurements; "
                         "writing those", n_done, n_total);
        rc = PA_EXIT_RUNTIME;
    }
    pa_bench_compare_unfused(done_list, n_done);
    if (pa_cli_has(&args, "--baseline")) {
        for (int t = 0; t < n_targets && baseline < 0; t++)
            if (targets[t].opened && targets[t].backend == baseline_item.backend &&
                (baseline_item.device < 0 || targets[t].device == baseline_item.device))
                baseline = t;
        if (baseline < 0) {
            pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "--baseline: %s was not measured; "
                             "ratios are to the fastest", pa_cli_get(&args, "--baseline"));
            rc = PA_EXIT_RUNTIME;
        }
    }
    if (compare || n_targets > 1)
        pa_bench_print_comparison(stdout, targets, n_targets, baseline, done_list, n_done);
    if (have_csv) {
        pa_bench_write_csv(csv_file.file, suite->name, targets, done_list, n_done);
        if (pa_outfile_close(&csv_file, "bench") || pa_outfile_commit(&csv_file, "bench"))
            rc = PA_EXIT_RUNTIME;
        have_csv = 0;
    }
    if (have_json) {
        pa_bench_write_json(json_file.file, suite->name, targets, n_targets, job.params.reps,
                            job.params.warmup, backward, done_list, n_done);
        if (pa_outfile_close(&json_file, "bench") || pa_outfile_commit(&json_file, "bench"))
            rc = PA_EXIT_RUNTIME;
        have_json = 0;
    }
    {
        int n_ok = 0, n_skip = 0, n_bad = 0;
        for (int i = 0; i < n_done; i++) {
            n_ok += done_list[i].status == PA_BENCH_OK;
            n_skip += done_list[i].status == PA_BENCH_SKIPPED;
            n_bad += done_list[i].status == PA_BENCH_INVALID || done_list[i].status == PA_BENCH_ERROR;
        }
        printf("%d measured, %d skipped, %d failed\n", n_ok, n_skip, n_bad);
        if (n_bad) {
            pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "%d measurement%s failed (see the table)",
                             n_bad, n_bad == 1 ? "" : "s");
            rc = PA_EXIT_RUNTIME;
        }
    }
finish:
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (have_csv)
        pa_outfile_discard(&csv_file);
    if (have_json)
        pa_outfile_discard(&json_file);
    free(have);
    free(done_list);
    free(results);
    free(targets);
    return rc;
}
