/*
 * polyattn bench: options and the run.  For each shape of a suite, each dtype and each
 * algorithm: plan, validate against the host reference, warm up, time with device events
 * (or CUDA graph replays) over rotated input sets, and report ms, TFLOP/s, GB/s and memory
 * (measured and estimated), with speedup and memory saved against unfused.  The
 * measurements run in child processes (bench_procs.c, bench_measure.c).
 */
#include "bench.h"
#include "variants.h"

#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: polyattn bench [--suite article|fa2|decode|serving|custom] [--shape "
    "B,HQ,HKV,SQ,SKV,D[,DV];...]\n"
    "                      [--causal top-left|bottom-right]\n"
    "                      [--backend auto|host|cuda|hip|opencl[:N][,...]] [--device N]\n"
    "                      [--compare-backends [--include-host]] [--baseline BACKEND[:N]]\n"
    "                      [--algo all|auto|unfused|fused|flash[,...]]\n"
    "                      [--dtype f32|f16|bf16|e4m3[,...]] [--reps N] [--warmup N] [--rotate N]\n"
    "                      [--graph N]\n"
    "                      [--max-seconds S] [--memory-budget MIB] [--csv FILE] [--json FILE]\n"
    "                      [--backward [--deterministic]] [--list] [--quick]\n"
    "                      [--window L,R] [--softcap C] [--alibi] [--bias [--bias-dtype D]]\n"
    "                      [--sinks]\n"
    "\n"
    "Suites: article (the article's five shapes: one head, head_dim 512-1024, causal, f32), fa2\n"
    "(FlashAttention-2's: 16k tokens, hidden 2048, head_dim 64/128, causal or not, f16),\n"
    "decode (batch 8, seq_q 1 and 16 against 8k, 32k and 128k keys, GQA 32/8, head_dim 128,\n"
    "bottom-right causal, bf16; each as dense K/V, a dense KV cache with seqused_kv = the\n"
    "length, and paged caches of 16- and 256-key blocks in a shuffled block table),\n"
    "serving (a varlen prefill of 16 sequences of seeded lengths 128-4096, 16 heads,\n"
    "head_dim 128, bottom-right causal; the dense batch of the same FLOPs (16 sequences of\n"
    "the lengths' root mean square) and the padded dense batch (16 of the longest); paged\n"
    "decode of batch 8, 32/8 heads, 32k keys, blocks of 16 and 256, beside the dense cache;\n"
    "bf16), custom (--shape, separated by ';'; --causal applies to it).  --quick runs decode\n"
    "and serving at tiny sizes (batch 2-4, 8 heads or fewer, at most 512 keys): a smoke run\n"
    "for the host reference or PoCL.  --list prints the suite's shapes as CSV (one row per\n"
    "shape and dtype: suite,batch,heads_q,heads_kv,seq_q,seq_kv,head_dim,head_dim_v,mask,\n"
    "dtype,layout,block_size) and runs nothing.\n"
    "\n"
    "Rows of a serving layout (cache, paged, varlen) make their own inputs (random, never\n"
    "zero; one set), are validated on the first and last 16 query rows of the first and\n"
    "last sequences against the host reference (each sequence as its own dense problem)\n"
    "and timed like the others.  Their GB/s counts Q, O and the keys and values each\n"
    "sequence uses once; their TFLOP/s the visible pairs exactly; the table's note, the\n"
    "CSV and the JSON give the layout, block size and the plan's split count.  They time\n"
    "the forward only (--backward reports them skipped) and take no score variant.\n"
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
    "--reps calls (default 10; the median is reported) that rotate among --rotate N input\n"
    "sets (1-16; default: enough to exceed the caches, at most 4); a measurement whose calls\n"
    "are slow gets fewer reps (at least 3) to stay within --max-seconds (default 10, 0: no\n"
    "cap).  --graph N (CUDA only: --backend cuda[:N]): each timed sample is one replay of a\n"
    "CUDA graph of N calls back to back (input sets rotating), ms = replay time / N: the GPU\n"
    "time without the host's launch cost, which per-call events include when a call is\n"
    "shorter than its launch.  A build without the CUDA backend refuses --graph (exit 1).\n"
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
    "Score variants (forward only; see polyattn run --help): every measurement gets\n"
    "--window L,R (-1 unbounded) and --softcap C as given, and with --alibi, --bias and\n"
    "--sinks inputs the bench makes: slopes 2^(-8(h+1)/heads_q), a bias [1, heads_q, seq_q,\n"
    "seq_kv] of uniform values in [-1, 1) in --bias-dtype (f32 default, f16, bf16), sinks\n"
    "uniform in [-1, 1).  Validation runs the host reference with the same inputs on\n"
    "slices that keep every key.  Under a window TFLOP/s counts the visible pairs only.\n"
    "\n"
    "The library's kernel choice can be forced for A/B runs with the documented\n"
    "POLYATTN_FORCE environment override (read at context creation); the bench adds no\n"
    "knob of its own.\n"
    "\n"
    "Exit status: 0 every measurement valid or skipped, 1 a wrong result or a device failure\n"
    "(or a crash), 2 bad usage.\n";

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
            if (strlen(choices[i]) == len && strncmp(choices[i], p, len) == 0) k = i;
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
        if (*p == ',') p++;
    }
    if (n == 0) {
        pa_cli_fail("bench", "%s: empty list", name);
        return -1;
    }
    return n;
}

/* --backend items: NAME[:N]. */
static int parse_pa_bench_backend_items(const char *option, const char *text,
                                        pa_bench_backend_item *items, int max)
{
    static const char *const names[] = {"auto", "cuda", "hip", "opencl", "host"};
    int n = 0;
    const char *p = text;
    while (*p) {
        size_t len = strcspn(p, ",");
        size_t name_len = strcspn(p, ",:");
        int k = -1;
        for (int i = 0; i < 5; i++)
            if (strlen(names[i]) == name_len && strncmp(names[i], p, name_len) == 0) k = i;
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
            pa_cli_fail("bench",
                        "%s: unknown value '%.*s' (expected auto|cuda|hip|opencl|host, "
                        "each optionally :DEVICE, comma-separated)",
                        option, (int)len, p);
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
int pa_cmd_bench(int argc, char **argv)
{
    static const pa_cli_opt spec[] = {
        {"--suite", 1},        {"--shape", 1},         {"--causal", 1},
        {"--backend", 1},      {"--device", 1},        {"--algo", 1},
        {"--dtype", 1},        {"--reps", 1},          {"--warmup", 1},
        {"--rotate", 1},       {"--memory-budget", 1}, {"--csv", 1},
        {"--json", 1},         {"--max-seconds", 1},   {"--compare-backends", 0},
        {"--include-host", 0}, {"--baseline", 1},      {"--list", 0},
        {"--backward", 0},     {"--deterministic", 0}, {"--graph", 1},
        {"--window", 1},       {"--softcap", 1},       {"--alibi", 0},
        {"--bias", 0},         {"--bias-dtype", 1},    {"--sinks", 0},
        {"--quick", 0},
    };
    pa_cli_args args;
    if (pa_cli_parse(&args, "bench", spec, (int)(sizeof spec / sizeof spec[0]), argc, argv))
        return PA_EXIT_USAGE;
    if (args.help) {
        fputs(usage, stdout);
        return PA_EXIT_OK;
    }
    const char *suite_name =
        pa_cli_has(&args, "--suite") ? pa_cli_get(&args, "--suite") : "article";
    const int quick = pa_cli_has(&args, "--quick");
    const pa_bench_suite *suite = pa_bench_find_suite(suite_name, quick);
    if (!suite)
        return pa_cli_fail("bench", "--suite: unknown value '%s' (expected %s)", suite_name,
                           pa_bench_suite_names());
    const int serving_suite =
        strcmp(suite->name, "decode") == 0 || strcmp(suite->name, "serving") == 0;
    if (quick && !serving_suite)
        return pa_cli_fail("bench", "--quick: only with --suite decode or serving");

    /* --algo, --dtype and --backend are lists here: parse them, then the shared options
     * without them. */
    static const char *const algo_names[] = {"auto", "unfused", "fused", "flash", "all"};
    static const char *const dtype_names[] = {"f32", "f16", "bf16", "e4m3"};
    int algo_idx[8], dtype_idx[4], n_algos = 3, n_dtypes = 1;
    algo_idx[0] = POLYATTN_ALGO_UNFUSED;
    algo_idx[1] = POLYATTN_ALGO_FUSED;
    algo_idx[2] = POLYATTN_ALGO_FLASH;
    dtype_idx[0] = (int)suite->default_dtype;
    if (pa_cli_has(&args, "--algo")) {
        int list[8];
        int n = parse_list(&args, "--algo", algo_names, 5, list, 8);
        if (n < 0) return PA_EXIT_USAGE;
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
        n_dtypes = parse_list(&args, "--dtype", dtype_names, 4, dtype_idx, 4);
        if (n_dtypes < 0) return PA_EXIT_USAGE;
        for (int i = 0; i < n_dtypes; i++) /* the names follow the enum but for e4m3 */
            if (dtype_idx[i] == 3) dtype_idx[i] = POLYATTN_DTYPE_E4M3;
    }
    pa_cli_args shared = args;
    for (int i = 0; i < shared.n_spec; i++)
        if (strcmp(spec[i].name, "--algo") == 0 || strcmp(spec[i].name, "--dtype") == 0 ||
            strcmp(spec[i].name, "--backend") == 0)
            shared.value[i] = NULL;
    pa_cli_common common;
    int64_t reps = 10, warmup = 3, n_sets_opt = 0, graph_calls = 0;
    double max_seconds = 10;
    if (pa_cli_get_common(&shared, &common) || pa_cli_get_i64(&args, "--reps", 1, 100000, &reps) ||
        pa_cli_get_i64(&args, "--warmup", 0, 10000, &warmup) ||
        pa_cli_get_i64(&args, "--rotate", 1, PA_BENCH_MAX_SETS, &n_sets_opt) ||
        pa_cli_get_i64(&args, "--graph", 1, 1000, &graph_calls) ||
        pa_cli_get_double(&args, "--max-seconds", &max_seconds))
        return PA_EXIT_USAGE;
    if (max_seconds < 0)
        return pa_cli_fail("bench",
                           "--max-seconds: expected 0 (no cap) or a positive number, "
                           "got '%s'",
                           pa_cli_get(&args, "--max-seconds"));
    int backward = pa_cli_has(&args, "--backward");
    if (pa_cli_has(&args, "--deterministic") && !backward)
        return pa_cli_fail("bench", "--deterministic: only with --backward (the forward is "
                                    "deterministic anyway)");

    pa_cli_variants cv;
    memset(&cv, 0, sizeof cv);
    if (pa_cli_get_variant_options(&args, &cv)) return PA_EXIT_USAGE;
    if (pa_cli_has(&args, "--bias-dtype") && !pa_cli_has(&args, "--bias"))
        return pa_cli_fail("bench", "--bias-dtype: given without --bias");
    pa_bench_variants var = {0};
    var.has_window = cv.has_window;
    var.window_left = cv.window_left;
    var.window_right = cv.window_right;
    var.softcap = (float)cv.softcap;
    var.alibi = pa_cli_has(&args, "--alibi");
    var.bias = pa_cli_has(&args, "--bias");
    var.bias_dtype = cv.bias_dtype;
    var.sinks = pa_cli_has(&args, "--sinks");
    var.on = var.has_window || var.softcap > 0 || var.alibi || var.bias || var.sinks;
    if (var.on && serving_suite)
        return pa_cli_fail("bench", "--%s: not with --suite %s (its rows fix their inputs)",
                           var.has_window    ? "window"
                           : var.softcap > 0 ? "softcap"
                           : var.alibi       ? "alibi"
                           : var.bias        ? "bias"
                                             : "sinks",
                           suite->name);
    if (var.on && backward)
        return pa_cli_fail("bench", "--backward: the bench times the score variants' forward "
                                    "only (drop --window, --softcap, --alibi, --bias, --sinks)");

    pa_bench_shape shapes[PA_BENCH_MAX_SHAPES];
    int n_shapes = 0;
    if (strcmp(suite->name, "custom") == 0) {
        if (pa_cli_require(&args, "--shape")) return PA_EXIT_USAGE;
        char err[256];
        n_shapes = pa_bench_parse_shapes(pa_cli_get(&args, "--shape"), common.mask, shapes,
                                         PA_BENCH_MAX_SHAPES, err, sizeof err);
        if (n_shapes < 0) return pa_cli_fail("bench", "--shape: %s", err);
        for (int i = 0; i < n_shapes; i++) {
            polyattn_attention_desc d;
            const pa_bench_shape *s = &shapes[i];
            polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, s->batch, s->heads_q, s->heads_kv,
                                         s->seq_q, s->seq_kv, s->head_dim, s->head_dim_v);
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
    pa_bench_backend_item items[PA_BENCH_MAX_TARGETS];
    int n_items = 1;
    items[0].backend = POLYATTN_BACKEND_AUTO;
    items[0].device = -1;
    if (pa_cli_has(&args, "--backend")) {
        n_items = parse_pa_bench_backend_items("--backend", pa_cli_get(&args, "--backend"), items,
                                               PA_BENCH_MAX_TARGETS);
        if (n_items < 0) return PA_EXIT_USAGE;
    }
    if (include_host && !compare)
        return pa_cli_fail("bench", "--include-host: only with --compare-backends (else name "
                                    "it: --backend host,...)");
    if (compare && pa_cli_has(&args, "--device"))
        return pa_cli_fail("bench", "--device: not with --compare-backends (name a device as "
                                    "--backend opencl:1)");
    pa_bench_backend_item baseline_item = {POLYATTN_BACKEND_AUTO, -1};
    if (pa_cli_has(&args, "--baseline")) {
        const char *text = pa_cli_get(&args, "--baseline");
        if (strchr(text, ','))
            return pa_cli_fail("bench", "--baseline: one backend expected, got '%s'", text);
        if (parse_pa_bench_backend_items("--baseline", text, &baseline_item, 1) != 1)
            return PA_EXIT_USAGE;
        if (baseline_item.backend == POLYATTN_BACKEND_AUTO)
            return pa_cli_fail("bench",
                               "--baseline: expected a backend (cuda|hip|opencl|host"
                               "[:DEVICE]), got '%s'",
                               text);
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

    /* --graph: CUDA graph replay needs a CUDA context on a stream of ours. */
    if (graph_calls) {
        if (compare)
            return pa_cli_fail("bench", "--graph: not with --compare-backends (CUDA graphs: "
                                        "--backend cuda[:N])");
        for (int i = 0; i < n_items; i++)
            if (items[i].backend != POLYATTN_BACKEND_CUDA)
                return pa_cli_fail("bench",
                                   "--graph: CUDA graphs need --backend cuda[:N] "
                                   "(got '%s')",
                                   pa_cli_has(&args, "--backend") ? pa_cli_get(&args, "--backend")
                                                                  : "auto");
        if (!pa_bench_graph_available())
            return pa_cli_fail_code(PA_EXIT_RUNTIME, "bench",
                                    "--graph: this polyattn was "
                                    "built without the CUDA backend (no CUDA graphs)");
    }

    if (pa_cli_has(&args, "--list")) {
        pa_bench_write_list(stdout, suite->name, shapes, n_shapes, dtype_idx, n_dtypes);
        return PA_EXIT_OK;
    }

    /* Report files: staged now, so that a bad path fails before any device work. */
    pa_outfile csv_file, json_file;
    int have_csv = pa_cli_has(&args, "--csv"), have_json = pa_cli_has(&args, "--json");
    if (have_csv && have_json &&
        pa_cli_same_file(pa_cli_get(&args, "--csv"), pa_cli_get(&args, "--json")))
        return pa_cli_fail("bench", "--json: same file as --csv");
    if (have_csv && pa_outfile_open(&csv_file, "bench", "--csv", pa_cli_get(&args, "--csv")))
        return PA_EXIT_USAGE;
    if (have_json && pa_outfile_open(&json_file, "bench", "--json", pa_cli_get(&args, "--json"))) {
        if (have_csv) pa_outfile_discard(&csv_file);
        return PA_EXIT_USAGE;
    }

    pa_bench_job job;
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
    job.params.graph_calls = (int)graph_calls;
    job.params.var = var;
    job.common = common;

    int rc = PA_EXIT_OK, n_done = 0, baseline = -1;
    pa_bench_target *targets = calloc(PA_BENCH_MAX_TARGETS, sizeof *targets);
    pa_bench_result *results = NULL, *done_list = NULL;
    unsigned char *have = NULL;
    int n_targets = 0;
    pa_bench_catch_stop_signals(1);
    if (!targets) {
        rc = pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "out of host memory");
        goto finish;
    }
    if (compare) {
        if ((rc = pa_bench_discover(items, n_items, include_host, targets, &n_targets)))
            goto finish;
        if (n_targets == 0) {
            rc = pa_cli_fail_code(PA_EXIT_RUNTIME, "bench",
                                  "--compare-backends: no device "
                                  "found%s",
                                  include_host ? ""
                                               : " (add --include-host to "
                                                 "measure the host reference)");
            goto finish;
        }
    } else {
        for (int i = 0; i < n_items; i++) {
            pa_bench_target *t = &targets[n_targets++];
            t->backend = items[i].backend;
            t->device = items[i].device >= 0 ? items[i].device : common.device;
            if (t->backend == POLYATTN_BACKEND_AUTO) snprintf(t->label, sizeof t->label, "auto");
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
    job.t_start = pa_bench_now_seconds();
    for (int t = 0; t < n_targets && !pa_bench_stop_requested(); t++) {
        job.target = &targets[t];
        job.target_no = t;
        int trc = pa_bench_run_target(&job, results + (size_t)t * job.n_per_target,
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
    pa_bench_catch_stop_signals(0);
    int n_total = n_targets * job.n_per_target;
    for (int i = 0; i < n_total; i++)
        if (have[i]) done_list[n_done++] = results[i];
    if (pa_bench_stop_requested()) {
        pa_cli_fail_code(PA_EXIT_RUNTIME, "bench",
                         "interrupted after %d of %d measurements; "
                         "writing those",
                         n_done, n_total);
        rc = PA_EXIT_RUNTIME;
    }
    pa_bench_compare_unfused(done_list, n_done);
    if (pa_cli_has(&args, "--baseline")) {
        for (int t = 0; t < n_targets && baseline < 0; t++)
            if (targets[t].opened && targets[t].backend == baseline_item.backend &&
                (baseline_item.device < 0 || targets[t].device == baseline_item.device))
                baseline = t;
        if (baseline < 0) {
            pa_cli_fail_code(PA_EXIT_RUNTIME, "bench",
                             "--baseline: %s was not measured; "
                             "ratios are to the fastest",
                             pa_cli_get(&args, "--baseline"));
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
                            job.params.warmup, backward, job.params.graph_calls, job.n_sets_opt,
                            done_list, n_done);
        if (pa_outfile_close(&json_file, "bench") || pa_outfile_commit(&json_file, "bench"))
            rc = PA_EXIT_RUNTIME;
        have_json = 0;
    }
    {
        int n_ok = 0, n_skip = 0, n_bad = 0;
        for (int i = 0; i < n_done; i++) {
            n_ok += done_list[i].status == PA_BENCH_OK;
            n_skip += done_list[i].status == PA_BENCH_SKIPPED;
            n_bad +=
                done_list[i].status == PA_BENCH_INVALID || done_list[i].status == PA_BENCH_ERROR;
        }
        printf("%d measured, %d skipped, %d failed\n", n_ok, n_skip, n_bad);
        if (n_bad) {
            pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "%d measurement%s failed (see the table)",
                             n_bad, n_bad == 1 ? "" : "s");
            rc = PA_EXIT_RUNTIME;
        }
    }
finish:
    pa_bench_catch_stop_signals(0);
    if (have_csv) pa_outfile_discard(&csv_file);
    if (have_json) pa_outfile_discard(&json_file);
    free(have);
    free(done_list);
    free(results);
    free(targets);
    return rc;
}
