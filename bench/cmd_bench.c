/*
 * polyattn bench: for each shape of a suite, each dtype and each algorithm: plan, validate
 * against the host reference, warm up, time with device events over rotated input sets,
 * and report ms, TFLOP/s, GB/s and memory (measured and estimated), with speedup and memory
 * saved against unfused.
 */
#include "bench.h"

#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char usage[] =
    "usage: polyattn bench [--suite seed|fa2|decode|custom] [--shape B,HQ,HKV,SQ,SKV,D[,DV];...]\n"
    "                      [--causal top-left|bottom-right] [--backend auto|host|cuda|hip|opencl]\n"
    "                      [--device N] [--algo all|auto|unfused|fused|flash[,...]]\n"
    "                      [--dtype f32|f16|bf16[,...]] [--reps N] [--warmup N] [--sets N]\n"
    "                      [--max-seconds S] [--memory-budget MIB] [--csv FILE] [--json FILE]\n"
    "\n"
    "Suites: seed (the seed article's five shapes, one head, causal, f32), fa2\n"
    "(FlashAttention-2's: 16k tokens, hidden 2048, head_dim 64/128, causal or not, f16),\n"
    "decode (seq_q 1, KV cache 1k-64k, GQA 32/8, head_dim 128, f16), custom (--shape,\n"
    "separated by ';'; --causal applies to it).\n"
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
    "rejects is reported as skipped.  SIGINT/SIGTERM: the measurement under way finishes\n"
    "and the reports are written with what was measured.\n"
    "\n"
    "Exit status: 0 every measurement valid or skipped, 1 a wrong result or a device failure,\n"
    "2 bad usage.\n";

#define MAX_SHAPES 64
#define MAX_SETS 4

typedef struct input_sets {
    int n;
    uint64_t count[3];
    polyattn_buffer *buf[MAX_SETS][3];
    float *host[3]; /* set 0 as the device sees it (rounded), for validation */
} input_sets;

static void free_sets(input_sets *s)
{
    for (int i = 0; i < s->n; i++)
        for (int t = 0; t < 3; t++)
            polyattn_buffer_free(s->buf[i][t]);
    for (int t = 0; t < 3; t++)
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
                                 polyattn_dtype dtype, int n_sets, input_sets *s, void *staging,
                                 float *scratch)
{
    memset(s, 0, sizeof *s);
    s->count[0] = (uint64_t)(sh->batch * sh->heads_q * sh->seq_q * sh->head_dim);
    s->count[1] = (uint64_t)(sh->batch * sh->heads_kv * sh->seq_kv * sh->head_dim);
    s->count[2] = (uint64_t)(sh->batch * sh->heads_kv * sh->seq_kv * sh->head_dim_v);
    size_t esize = polyattn_dtype_size(dtype);
    for (int t = 0; t < 3; t++) {
        s->host[t] = malloc(s->count[t] * 4);
        if (!s->host[t])
            return POLYATTN_STATUS_OUT_OF_MEMORY;
    }
    for (int i = 0; i < n_sets; i++) {
        s->n = i + 1;
        for (int t = 0; t < 3; t++) {
            float *values = i == 0 ? s->host[t] : scratch;
            fill_random(values, s->count[t], 0x5eed0000ull + (uint64_t)(i * 3 + t));
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
} bench_run;

static void lib_reason(pa_bench_result *r, polyattn_context *ctx, polyattn_status st,
                       const char *what)
{
    const char *msg = polyattn_context_last_error(ctx);
    snprintf(r->reason, sizeof r->reason, "%s: %s: %s", what, polyattn_status_name(st),
             msg && msg[0] ? msg : polyattn_status_string(st));
}

static void measure(bench_run *b, const pa_bench_shape *sh, polyattn_dtype dtype,
                    polyattn_algo algo, input_sets *sets, pa_bench_result *r)
{
    memset(r, 0, sizeof *r);
    r->shape = *sh;
    r->dtype = dtype;
    r->algo_asked = algo;
    r->algo = algo;
    polyattn_attention_desc desc;
    polyattn_attention_desc_init(&desc, dtype, sh->batch, sh->heads_q, sh->heads_kv, sh->seq_q,
                                 sh->seq_kv, sh->head_dim, sh->head_dim_v);
    float scale = (float)(1.0 / sqrt((double)sh->head_dim));
    desc.scale = scale;
    desc.mask = sh->mask;
    polyattn_plan_options opts;
    polyattn_plan_options_init(&opts);
    opts.algo = algo;
    opts.memory_budget_bytes = b->budget;
    polyattn_plan *plan = NULL;
    polyattn_buffer *o = NULL, *ws = NULL;
    polyattn_event **ev = NULL;
    double *times = NULL;
    polyattn_status st = polyattn_plan_create(b->ctx, &desc, &opts, &plan);
    if (st != POLYATTN_STATUS_SUCCESS) {
        plan = NULL;
        r->status = (st == POLYATTN_STATUS_UNSUPPORTED || st == POLYATTN_STATUS_OVER_BUDGET)
                        ? PA_BENCH_SKIPPED
                        : PA_BENCH_ERROR;
        lib_reason(r, b->ctx, st, "plan");
        goto done;
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if ((st = polyattn_plan_get_info(plan, &info)) != POLYATTN_STATUS_SUCCESS) {
        r->status = PA_BENCH_ERROR;
        lib_reason(r, b->ctx, st, "plan info");
        goto done;
    }
    r->algo = info.algo;
    r->mem_estimate = info.device_bytes;
    r->workspace_bytes = info.workspace_bytes;

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
    for (int i = 0; i < reps; i++)
        if ((st = polyattn_event_elapsed_ms(ev[i], ev[i + 1], &times[i])) !=
            POLYATTN_STATUS_SUCCESS)
            goto timing_failed;
    if ((st = polyattn_context_memory_stats(b->ctx, 0, &after)) != POLYATTN_STATUS_SUCCESS)
        goto timing_failed;
    qsort(times, (size_t)reps, sizeof *times, cmp_double);
    r->ms = reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
    r->ms_min = times[0];
    r->ms_max = times[reps - 1];
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

/* SIGINT/SIGTERM: finish the measurement under way, then write what was measured.  A
 * second signal takes the default action. */
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int sig)
{
    stop_requested = 1;
    signal(sig, SIG_DFL);
}

int pa_cmd_bench(int argc, char **argv)
{
    static const pa_cli_opt spec[] = {
        {"--suite", 1}, {"--shape", 1},  {"--causal", 1}, {"--backend", 1},
        {"--device", 1}, {"--algo", 1},  {"--dtype", 1},  {"--reps", 1},
        {"--warmup", 1}, {"--sets", 1},  {"--memory-budget", 1}, {"--csv", 1},
        {"--json", 1},   {"--max-seconds", 1},
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

    /* --algo and --dtype are lists here: parse them, then the shared options without them. */
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
        if (strcmp(spec[i].name, "--algo") == 0 || strcmp(spec[i].name, "--dtype") == 0)
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

    bench_run b;
    memset(&b, 0, sizeof b);
    b.reps = (int)reps;
    b.warmup = (int)warmup;
    b.budget = common.memory_budget_bytes;
    b.max_seconds = max_seconds;
    b.corrupt = getenv("POLYATTN_BENCH_CORRUPT") && strcmp(getenv("POLYATTN_BENCH_CORRUPT"), "1") == 0;
    int n_results = n_shapes * n_dtypes * n_algos, rc = PA_EXIT_OK, done = 0;
    pa_bench_result *results = calloc((size_t)n_results, sizeof *results);
    float *scratch = NULL;
    input_sets sets;
    memset(&sets, 0, sizeof sets);
    polyattn_device_info dev;
    memset(&dev, 0, sizeof dev);
    dev.struct_size = sizeof dev;
    rc = pa_cli_open_context("bench", &common, &b.ctx);
    if (rc)
        goto finish;
    polyattn_status st;
    if ((st = polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &b.host)) != POLYATTN_STATUS_SUCCESS) {
        b.host = NULL;
        rc = pa_cli_fail_status("bench", NULL, st, "host reference context");
        goto finish;
    }
    if ((st = polyattn_context_get_device_info(b.ctx, &dev)) != POLYATTN_STATUS_SUCCESS) {
        rc = pa_cli_fail_status("bench", b.ctx, st, "device info");
        goto finish;
    }
    /* Staging holds the largest input or output of the suite in f32. */
    uint64_t max_count = 0;
    for (int i = 0; i < n_shapes; i++) {
        const pa_bench_shape *s = &shapes[i];
        uint64_t c[3] = {(uint64_t)(s->batch * s->heads_q * s->seq_q * (s->head_dim > s->head_dim_v ? s->head_dim : s->head_dim_v)),
                         (uint64_t)(s->batch * s->heads_kv * s->seq_kv * s->head_dim),
                         (uint64_t)(s->batch * s->heads_kv * s->seq_kv * s->head_dim_v)};
        for (int t = 0; t < 3; t++)
            max_count = c[t] > max_count ? c[t] : max_count;
    }
    b.staging = malloc(max_count * 4);
    scratch = malloc(max_count * 4);
    if (!results || !b.staging || !scratch) {
        rc = pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "out of host memory");
        goto finish;
    }

    int tty = isatty(2);
    printf("polyattn bench: suite %s, %s:%d (%s), reps %d, warmup %d\n", suite->name,
           polyattn_backend_name(dev.backend), dev.index, dev.name, b.reps, b.warmup);
    pa_bench_print_header(stdout);
    fflush(stdout);
    double t_start = now_seconds();
    stop_requested = 0;
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    for (int si = 0; si < n_shapes && !stop_requested; si++) {
        const pa_bench_shape *sh = &shapes[si];
        for (int di = 0; di < n_dtypes && !stop_requested; di++) {
            polyattn_dtype dtype = (polyattn_dtype)dtype_idx[di];
            /* Enough input sets to exceed the last-level cache (~256 MiB), at most 4, within
             * a quarter of the device's memory; one on the host backend. */
            size_t esize = polyattn_dtype_size(dtype);
            uint64_t set_bytes = (uint64_t)(sh->batch * sh->heads_q * sh->seq_q * sh->head_dim +
                                            sh->batch * sh->heads_kv * sh->seq_kv *
                                                (sh->head_dim + sh->head_dim_v)) * esize;
            int n_sets = (int)n_sets_opt;
            if (n_sets == 0) {
                n_sets = (int)((256ull << 20) / (set_bytes ? set_bytes : 1)) + 1;
                if (n_sets > MAX_SETS)
                    n_sets = MAX_SETS;
                while (n_sets > 1 && (uint64_t)n_sets * set_bytes > dev.global_mem_bytes / 4)
                    n_sets--;
                if (dev.backend == POLYATTN_BACKEND_HOST)
                    n_sets = 1;
            }
            st = make_sets(b.ctx, sh, dtype, n_sets, &sets, b.staging, scratch);
            for (int ai = 0; ai < n_algos && !stop_requested; ai++) {
                pa_bench_result *r = &results[done];
                if (tty) {
                    char el[32], eta[32] = "?";
                    double elapsed = now_seconds() - t_start;
                    format_duration(elapsed, el, sizeof el);
                    if (done > 0)
                        format_duration(elapsed / done * (n_results - done), eta, sizeof eta);
                    fprintf(stderr, "\r\033[K[%d/%d] b %lld hq %lld sq %lld skv %lld d %lld %s %s  "
                                    "elapsed %s, ETA %s",
                            done + 1, n_results, (long long)sh->batch, (long long)sh->heads_q,
                            (long long)sh->seq_q, (long long)sh->seq_kv, (long long)sh->head_dim,
                            polyattn_dtype_name(dtype), polyattn_algo_name((polyattn_algo)algo_idx[ai]),
                            el, eta);
                    fflush(stderr);
                }
                if (st != POLYATTN_STATUS_SUCCESS) {
                    memset(r, 0, sizeof *r);
                    r->shape = *sh;
                    r->dtype = dtype;
                    r->algo_asked = r->algo = (polyattn_algo)algo_idx[ai];
                    r->status = st == POLYATTN_STATUS_OUT_OF_MEMORY ? PA_BENCH_SKIPPED
                                                                    : PA_BENCH_ERROR;
                    lib_reason(r, b.ctx, st, "inputs");
                } else {
                    measure(&b, sh, dtype, (polyattn_algo)algo_idx[ai], &sets, r);
                }
                done++;
                pa_bench_compare_unfused(results, done);
                if (tty)
                    fprintf(stderr, "\r\033[K");
                pa_bench_print_row(stdout, r);
                fflush(stdout);
                if (r->status == PA_BENCH_INVALID || r->status == PA_BENCH_ERROR)
                    rc = PA_EXIT_RUNTIME;
            }
            free_sets(&sets);
        }
    }
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (tty)
        fprintf(stderr, "\r\033[K");
    if (stop_requested) {
        pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "interrupted after %d of %d measurements; "
                         "writing those", done, n_results);
        rc = PA_EXIT_RUNTIME;
    }
    pa_bench_compare_unfused(results, done);
    if (have_csv) {
        pa_bench_write_csv(csv_file.file, suite->name, &dev, results, done);
        if (pa_outfile_close(&csv_file, "bench") || pa_outfile_commit(&csv_file, "bench"))
            rc = PA_EXIT_RUNTIME;
        have_csv = 0;
    }
    if (have_json) {
        pa_bench_write_json(json_file.file, suite->name, &dev, b.reps, b.warmup, results, done);
        if (pa_outfile_close(&json_file, "bench") || pa_outfile_commit(&json_file, "bench"))
            rc = PA_EXIT_RUNTIME;
        have_json = 0;
    }
    {
        int n_ok = 0, n_skip = 0, n_bad = 0;
        for (int i = 0; i < done; i++) {
            n_ok += results[i].status == PA_BENCH_OK;
            n_skip += results[i].status == PA_BENCH_SKIPPED;
            n_bad += results[i].status == PA_BENCH_INVALID || results[i].status == PA_BENCH_ERROR;
        }
        printf("%d measured, %d skipped, %d failed\n", n_ok, n_skip, n_bad);
        if (n_bad)
            pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "%d measurement%s failed (see the table)",
                             n_bad, n_bad == 1 ? "" : "s");
    }
finish:
    if (have_csv)
        pa_outfile_discard(&csv_file);
    if (have_json)
        pa_outfile_discard(&json_file);
    free_sets(&sets);
    free(scratch);
    free(b.staging);
    free(results);
    polyattn_context_destroy(b.host);
    polyattn_context_destroy(b.ctx);
    return rc;
}
