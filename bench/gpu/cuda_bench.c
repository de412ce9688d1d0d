/*
 * cuda_bench: times polyattn on the CUDA backend, one JSON object per line.
 *
 * Reads shape lines from stdin (bench/gpu/shapes.py writes them):
 *     suite dtype batch heads_q heads_kv seq_q seq_kv head_dim causal algo[,algo...]
 * For each line and algorithm: plan, run once and validate sampled rows against a double
 * precision reference computed here from the same rounded inputs, warm up, then time with
 * device events (median of the repetitions), rotating among input sets (256 MiB of Q, K, V
 * in all, at most 16 sets: what compare_torch.py --max-sets 16 does).  FLOPs are 4*batch*heads*seq_q*seq_kv*head_dim, halved when causal
 * (the convention of the FlashAttention papers), so numbers compare with PyTorch's.
 *
 * Options: --backend cuda|host|... (default cuda), --reps N (max timed repetitions),
 * --graph N (CUDA only: each timed sample is one replay of a CUDA graph holding N forwards
 * back to back, ms = replay time / N: the GPU time without the host's launch cost, which
 * the per-call events include when a call is shorter than its launch), --sets N (rotate
 * among N input sets instead of the 256 MiB rule: 1 keeps inputs that fit in L2 warm).
 * The JSON says "timing":"events" or "graph<N>", and "sets".
 */
#include "bench_common.h"
#include "pa_testkit.h"
#include "polyattn.h"
#include "polyattn_cuda.h"

#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SETS 16

static int graph_calls; /* --graph N */
static int sets_wanted; /* --sets N; 0: the rule below */
static cudaStream_t graph_stream;

static pa_tk_rng rng = {0x9e3779b97f4a7c15ull};
static float rng_uniform(void) /* [-1, 1) */
{
    return (float)pa_tk_rng_uniform(&rng);
}

/* Host copies: random f32 values, uploaded in the storage dtype. */
static float *host_in[3];
static size_t host_len;
static void *host_conv;

static int ensure_host(size_t n)
{
    if (n <= host_len) return 0;
    for (int i = 0; i < 3; i++) {
        free(host_in[i]);
        host_in[i] = malloc(n * sizeof(float));
        if (!host_in[i]) return -1;
        for (size_t j = 0; j < n; j++)
            host_in[i][j] = rng_uniform();
    }
    free(host_conv);
    host_conv = malloc(n * sizeof(float));
    host_len = n;
    return host_conv ? 0 : -1;
}

static polyattn_status upload(polyattn_buffer *b, polyattn_dtype t, const float *src, size_t n,
                              size_t shift)
{
    for (size_t i = 0; i < n; i++) {
        float x = src[(i + shift) % n];
        if (t == POLYATTN_DTYPE_F32)
            ((float *)host_conv)[i] = x;
        else
            ((uint16_t *)host_conv)[i] = t == POLYATTN_DTYPE_F16 ? pa_tk_f32_to_f16(x) : pa_tk_f32_to_bf16(x);
    }
    return polyattn_buffer_write(b, 0, host_conv, n * polyattn_dtype_size(t));
}

static void json_head(const shape *s, const char *algo)
{
    printf(
        "{\"impl\":\"polyattn\",\"suite\":\"%s\",\"algo\":\"%s\",\"dtype\":\"%s\",\"batch\":%lld,"
        "\"heads_q\":%lld,\"heads_kv\":%lld,\"seq_q\":%lld,\"seq_kv\":%lld,\"head_dim\":%lld,"
        "\"causal\":%d",
        s->suite, algo, s->dtype_name, (long long)s->batch, (long long)s->heads_q,
        (long long)s->heads_kv, (long long)s->seq_q, (long long)s->seq_kv, (long long)s->head_dim,
        s->causal);
}

static void json_error(const shape *s, const char *algo, const char *what, const char *msg)
{
    json_head(s, algo);
    printf(",\"ok\":false,\"error\":\"%s: ", what);
    for (const char *c = msg; c && *c; c++) {
        if (*c == '"' || *c == '\\') putchar('\\');
        putchar(*c >= ' ' ? *c : ' ');
    }
    printf("\"}\n");
    fflush(stdout);
}

/* Reference for one query row, in double, from the rounded host inputs (BHSD). */
static void reference_row(const shape *s, int64_t b, int64_t h, int64_t i, float scale, double *out,
                          double *row_buf)
{
    const int64_t d = s->head_dim, g = s->heads_q / s->heads_kv, hk = h / g;
    const float *q = host_in[0] + ((b * s->heads_q + h) * s->seq_q + i) * d;
    const float *k = host_in[1] + (b * s->heads_kv + hk) * s->seq_kv * d;
    const float *v = host_in[2] + (b * s->heads_kv + hk) * s->seq_kv * d;
    int64_t vis = s->causal ? i + 1 + (s->causal == 2 ? s->seq_kv - s->seq_q : 0) : s->seq_kv;
    if (vis > s->seq_kv) vis = s->seq_kv;
    double mx = -INFINITY;
    for (int64_t j = 0; j < vis; j++) {
        double acc = 0;
        for (int64_t c = 0; c < d; c++)
            acc += (double)pa_tk_round(q[c], s->dtype) * pa_tk_round(k[j * d + c], s->dtype);
        row_buf[j] = acc * scale;
        if (row_buf[j] > mx) mx = row_buf[j];
    }
    double sum = 0;
    for (int64_t j = 0; j < vis; j++)
        sum += (row_buf[j] = exp(row_buf[j] - mx));
    for (int64_t c = 0; c < d; c++)
        out[c] = 0;
    for (int64_t j = 0; j < vis; j++)
        for (int64_t c = 0; c < d; c++)
            out[c] += row_buf[j] / sum * pa_tk_round(v[j * d + c], s->dtype);
}

/* Fills times[0..reps) with the replay time of a CUDA graph of graph_calls forwards (input
 * sets rotating, as in the per-call loop) divided by graph_calls.  NULL, or what failed. */
static const char *time_graph(polyattn_plan *plan, polyattn_buffer *const *q,
                              polyattn_buffer *const *k, polyattn_buffer *const *v, int sets,
                              polyattn_buffer *o, polyattn_buffer *ws, polyattn_event *e0,
                              polyattn_event *e1, double *times, int reps)
{
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    const char *fail = NULL;
    if (cudaStreamBeginCapture(graph_stream, cudaStreamCaptureModeRelaxed) != cudaSuccess)
        return "graph capture";
    for (int i = 0; i < graph_calls; i++)
        if (!fail && polyattn_forward(plan, q[i % sets], k[i % sets], v[i % sets], o, NULL, NULL, ws))
            fail = "forward under graph capture";
    if (cudaStreamEndCapture(graph_stream, &graph) != cudaSuccess && !fail) fail = "graph capture";
    if (!fail && cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) fail = "graph instantiate";
    if (!fail && cudaGraphLaunch(exec, graph_stream) != cudaSuccess) fail = "graph launch"; /* warm */
    for (int r = 0; !fail && r < reps; r++) {
        if (polyattn_event_record(e0) || cudaGraphLaunch(exec, graph_stream) != cudaSuccess ||
            polyattn_event_record(e1) || polyattn_event_elapsed_ms(e0, e1, &times[r]))
            fail = "graph replay";
        times[r] /= graph_calls;
    }
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    return fail;
}

static void run_one(polyattn_context *ctx, const shape *s, const char *algo_name, int max_reps)
{
    polyattn_algo algo = strcmp(algo_name, "unfused") == 0 ? POLYATTN_ALGO_UNFUSED
                         : strcmp(algo_name, "fused") == 0 ? POLYATTN_ALGO_FUSED
                         : strcmp(algo_name, "flash") == 0 ? POLYATTN_ALGO_FLASH
                                                           : POLYATTN_ALGO_AUTO;
    polyattn_attention_desc desc;
    polyattn_attention_desc_init(&desc, s->dtype, s->batch, s->heads_q, s->heads_kv, s->seq_q,
                                 s->seq_kv, s->head_dim, s->head_dim);
    desc.mask = s->causal == 2 ? POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT
                : s->causal    ? POLYATTN_MASK_CAUSAL_TOP_LEFT
                               : POLYATTN_MASK_NONE;
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    polyattn_plan *plan = NULL;
    if (polyattn_plan_create(ctx, &desc, &opt, &plan) != POLYATTN_STATUS_SUCCESS) {
        json_error(s, algo_name, "plan", polyattn_context_last_error(ctx));
        return;
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_plan_get_info(plan, &info);

    const size_t es = polyattn_dtype_size(s->dtype);
    const size_t nq = (size_t)(s->batch * s->heads_q * s->seq_q * s->head_dim);
    const size_t nk = (size_t)(s->batch * s->heads_kv * s->seq_kv * s->head_dim);
    /* Input sets (Q, K, V) to rotate among: the rule of bench/compare_torch.py with
     * --max-sets 16 (bench/gpu/seed_bench.sh passes it), so that both sides read equally cold
     * inputs: 256 MiB in all (5x the H100's 50 MB L2), at most 16 sets. */
    const size_t set_bytes = (nq + nk * 2) * es;
    int sets = (int)((256u << 20) / (set_bytes ? set_bytes : 1)) + 1;
    if (sets > MAX_SETS) sets = MAX_SETS;
    if (sets_wanted) sets = sets_wanted; /* --sets 1: inputs stay in L2 when they fit */
    polyattn_buffer *q[MAX_SETS] = {0}, *k[MAX_SETS] = {0}, *v[MAX_SETS] = {0}, *o = NULL,
                    *ws = NULL;
    polyattn_event *e0 = NULL, *e1 = NULL;
    double *times = NULL, *ref = NULL, *row_buf = NULL;
    void *out = NULL;
    const char *fail = NULL;
    size_t big = nq > nk ? nq : nk;
    if (ensure_host(big)) fail = "host memory";
    for (int i = 0; !fail && i < sets; i++) {
        if (polyattn_buffer_alloc(ctx, nq * es, &q[i]) ||
            polyattn_buffer_alloc(ctx, nk * es, &k[i]) ||
            polyattn_buffer_alloc(ctx, nk * es, &v[i]))
            fail = "alloc";
        /* set i > 0: the same values shifted, so every set is valid and distinct */
        else if (upload(q[i], s->dtype, host_in[0], nq, (size_t)i * 7) ||
                 upload(k[i], s->dtype, host_in[1], nk, (size_t)i * 7) ||
                 upload(v[i], s->dtype, host_in[2], nk, (size_t)i * 7))
            fail = "upload";
    }
    if (!fail && polyattn_buffer_alloc(ctx, nq * es, &o)) fail = "alloc";
    if (!fail && info.workspace_bytes && polyattn_buffer_alloc(ctx, info.workspace_bytes, &ws))
        fail = "alloc workspace";
    if (!fail && (polyattn_event_create(ctx, &e0) || polyattn_event_create(ctx, &e1)))
        fail = "events";
    /* poison O (0xff bytes: NaN in every dtype), run set 0, validate sampled rows */
    if (!fail) {
        memset(host_conv, 0xff, nq * es);
        if (polyattn_buffer_write(o, 0, host_conv, nq * es)) fail = "poison";
    }
    if (!fail && polyattn_forward(plan, q[0], k[0], v[0], o, NULL, NULL, ws)) fail = "forward";
    if (!fail && polyattn_context_synchronize(ctx)) fail = "synchronize";
    double err_num = 0, err_den = 0;
    int unwritten = 0;
    if (!fail) {
        out = malloc(nq * es);
        ref = malloc(sizeof(double) * (size_t)s->head_dim);
        row_buf = malloc(sizeof(double) * (size_t)s->seq_kv);
        if (!out || !ref || !row_buf)
            fail = "host memory";
        else if (polyattn_buffer_read(o, 0, out, nq * es))
            fail = "read";
    }
    if (!fail) {
        const int64_t rows = s->batch * s->heads_q * s->seq_q;
        const float scale = 1.0f / sqrtf((float)s->head_dim);
        for (int t = 0; t < 12; t++) {
            int64_t r = t == 0   ? 0
                        : t == 1 ? rows - 1
                                 : (int64_t)((rng_uniform() * 0.5 + 0.5) * (double)rows);
            if (r >= rows) r = rows - 1;
            int64_t i = r % s->seq_q, bh = r / s->seq_q, h = bh % s->heads_q, b = bh / s->heads_q;
            reference_row(s, b, h, i, scale, ref, row_buf);
            double num = 0, den = 0;
            for (int64_t c = 0; c < s->head_dim; c++) {
                float x = bench_dev_val(s->dtype, out, (size_t)(r * s->head_dim + c));
                if (isnan(x)) unwritten++;
                num += (x - ref[c]) * (x - ref[c]);
                den += ref[c] * ref[c];
            }
            /* worst row: ||o - ref|| / ||ref|| */
            if (num / (den > 0 ? den : 1) > err_num / (err_den > 0 ? err_den : 1))
                err_num = num, err_den = den;
        }
        /* every element written (no poison left) */
        for (size_t i = 0; i < nq; i++)
            if (isnan(bench_dev_val(s->dtype, out, i))) {
                unwritten++;
                break;
            }
    }
    double rel = err_den > 0 ? sqrt(err_num / err_den) : sqrt(err_num);
    const double tol = s->dtype == POLYATTN_DTYPE_F32   ? 1e-4
                       : s->dtype == POLYATTN_DTYPE_F16 ? 5e-3
                                                        : 2e-2;
    int ok = !fail && !unwritten && rel <= tol;

    double median = 0;
    int reps = 0;
    if (!fail) {
        /* warm up: 3 runs, and estimate the time per run */
        double est = 0;
        polyattn_event_record(e0);
        for (int w = 0; w < 3; w++)
            polyattn_forward(plan, q[w % sets], k[w % sets], v[w % sets], o, NULL, NULL, ws);
        polyattn_event_record(e1);
        if (polyattn_event_elapsed_ms(e0, e1, &est)) fail = "timing";
        est /= 3;
        const int per_sample = graph_calls ? graph_calls : 1; /* forwards per timed sample */
        reps = est > 0 ? (int)(300.0 / (est * per_sample)) : max_reps;
        if (reps < 5) reps = 5;
        if (reps > max_reps) reps = max_reps;
        times = calloc((size_t)reps, sizeof(double));
        if (!times) fail = "host memory";
        else if (graph_calls)
            fail = time_graph(plan, q, k, v, sets, o, ws, e0, e1, times, reps);
        for (int r = 0; !fail && !graph_calls && r < reps; r++) {
            int i = r % sets;
            polyattn_event_record(e0);
            polyattn_status st = polyattn_forward(plan, q[i], k[i], v[i], o, NULL, NULL, ws);
            polyattn_event_record(e1);
            if (st || polyattn_event_elapsed_ms(e0, e1, &times[r])) fail = "timed forward";
        }
        if (!fail) {
            qsort(times, (size_t)reps, sizeof(double), bench_cmp_double);
            median = times[reps / 2];
        }
    }
    if (fail) {
        json_error(s, algo_name, fail, polyattn_context_last_error(ctx));
    } else {
        double flops = 4.0 * (double)s->batch * (double)s->heads_q * (double)s->seq_q *
                       (double)s->seq_kv * (double)s->head_dim * (s->causal ? 0.5 : 1.0);
        char timing_name[32] = "events";
        if (graph_calls) snprintf(timing_name, sizeof timing_name, "graph%d", graph_calls);
        json_head(s, algo_name);
        printf(
            ",\"ok\":%s,\"rel_err\":%.3e,\"unwritten\":%d,\"ms\":%.5f,\"tflops\":%.3f,"
            "\"reps\":%d,\"sets\":%d,\"workspace_bytes\":%llu,\"launches\":%d,\"chosen\":\"%s\","
            "\"timing\":\"%s\"}\n",
            ok ? "true" : "false", rel, unwritten, median, flops / (median * 1e-3) / 1e12, reps,
            sets, (unsigned long long)info.workspace_bytes, info.kernel_launches,
            polyattn_algo_name(info.algo), timing_name);
        fflush(stdout);
    }
    free(times), free(ref), free(row_buf), free(out);
    polyattn_event_destroy(e0), polyattn_event_destroy(e1);
    for (int i = 0; i < sets; i++)
        polyattn_buffer_free(q[i]), polyattn_buffer_free(k[i]), polyattn_buffer_free(v[i]);
    polyattn_buffer_free(o), polyattn_buffer_free(ws);
    polyattn_plan_destroy(plan);
}

int main(int argc, char **argv)
{
    polyattn_backend backend = POLYATTN_BACKEND_CUDA;
    int max_reps = 50;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) {
            const char *b = argv[++i];
            backend = !strcmp(b, "host")     ? POLYATTN_BACKEND_HOST
                      : !strcmp(b, "hip")    ? POLYATTN_BACKEND_HIP
                      : !strcmp(b, "opencl") ? POLYATTN_BACKEND_OPENCL
                                             : POLYATTN_BACKEND_CUDA;
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            max_reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--graph") && i + 1 < argc) {
            graph_calls = atoi(argv[++i]);
            if (graph_calls < 1 || graph_calls > 1000) {
                fprintf(stderr, "%s: --graph: forwards per graph, 1..1000 (got %s)\n", argv[0], argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--sets") && i + 1 < argc) {
            sets_wanted = atoi(argv[++i]);
            if (sets_wanted < 1 || sets_wanted > MAX_SETS) {
                fprintf(stderr, "%s: --sets: input sets to rotate among, 1..%d (got %s)\n", argv[0],
                        MAX_SETS, argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "usage: %s [--backend cuda] [--reps N] [--graph N] [--sets N] < shapes\n",
                    argv[0]);
            return 2;
        }
    }
    if (graph_calls && backend != POLYATTN_BACKEND_CUDA) {
        fprintf(stderr, "%s: --graph: CUDA backend only\n", argv[0]);
        return 2;
    }
    int count = 0;
    const char *reason = NULL;
    polyattn_device_count(backend, &count, &reason);
    if (count == 0) {
        fprintf(stderr, "cuda_bench: no %s device: %s\n", polyattn_backend_name(backend),
                reason ? reason : "");
        return 77;
    }
    polyattn_context *ctx = NULL;
    /* --graph: the context queues on a stream of ours, which the graph captures */
    if (graph_calls && cudaStreamCreateWithFlags(&graph_stream, cudaStreamNonBlocking) != cudaSuccess) {
        fprintf(stderr, "cuda_bench: cannot create a stream\n");
        return 1;
    }
    if (graph_calls ? polyattn_cuda_context_create(0, graph_stream, &ctx)
                    : polyattn_context_create(backend, 0, &ctx)) {
        fprintf(stderr, "cuda_bench: %s\n", polyattn_last_error());
        return 1;
    }
    bench_print_device(ctx);
    char line[512];
    while (fgets(line, sizeof line, stdin)) {
        shape s;
        if (!bench_parse_line(line, &s)) continue;
        for (char *a = s.algos; *a;) {
            char *comma = strchr(a, ',');
            if (comma) *comma = 0;
            run_one(ctx, &s, a, max_reps);
            if (!comma) break;
            a = comma + 1;
        }
    }
    polyattn_context_destroy(ctx);
    if (graph_stream) cudaStreamDestroy(graph_stream);
    return 0;
}
