/*
 * polyattn bench: suites of shapes, validation against the host reference, timing with
 * device events, reports (table, CSV, JSON).
 */
#ifndef PA_BENCH_H
#define PA_BENCH_H

#include "cli.h"

/* How a shape's tensors are laid out: the dense rows (zero), or a serving layout
 * (bench_serving.c). */
typedef enum pa_bench_layout {
    PA_BENCH_DENSE = 0,
    PA_BENCH_CACHE = 1,  /* q [batch, hq, seq_q, d]; a dense KV cache, seqused_kv = seq_kv */
    PA_BENCH_PAGED = 2,  /* the same keys in blocks of block_size, a shuffled block table */
    PA_BENCH_VARLEN = 3, /* batch sequences of seeded lengths in [min_len, seq_q], packed
                          * queries and keys (seq_kv = seq_q: a prefill) */
} pa_bench_layout;

typedef struct pa_bench_shape {
    int64_t batch, heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v;
    polyattn_mask mask;
    pa_bench_layout layout;
    int64_t block_size; /* PA_BENCH_PAGED */
    int64_t min_len;    /* PA_BENCH_VARLEN */
} pa_bench_shape;

/* ---- suites (suites.c) ---- */

typedef struct pa_bench_suite {
    const char *name;
    const char *description;
    const pa_bench_shape *shapes;
    int n_shapes;
    polyattn_dtype default_dtype;
} pa_bench_suite;

/* The suite called name, or NULL; "custom" has no shapes (they come from --shape).  quick:
 * the decode and serving suites at tiny sizes (smoke runs on the host or PoCL); others
 * unchanged. */
const pa_bench_suite *pa_bench_find_suite(const char *name, int quick);
/* "dense", "cache", "paged", "varlen". */
const char *pa_bench_layout_name(pa_bench_layout layout);
/* The sequence lengths of a PA_BENCH_VARLEN shape (seeded: the same in every process). */
void pa_bench_varlen_lengths(const pa_bench_shape *sh, int64_t *len);
#define PA_BENCH_MAX_SEQS 64
/* "article|fa2|decode|serving|custom" */
const char *pa_bench_suite_names(void);
/* Parses "B,HQ,HKV,SQ,SKV,D[,DV]" items separated by ';' or ' '.  Returns the count, or -1
 * (err filled) on a syntax error. */
int pa_bench_parse_shapes(const char *text, polyattn_mask mask, pa_bench_shape *out, int max,
                          char *err, size_t err_size);

/* ---- one measurement's result ---- */

typedef enum pa_bench_status {
    PA_BENCH_OK = 0,      /* validated and timed */
    PA_BENCH_SKIPPED = 1, /* the planner rejected it (UNSUPPORTED, OVER_BUDGET): not a failure */
    PA_BENCH_INVALID = 2, /* wrong results: not timed */
    PA_BENCH_ERROR = 3    /* device or library failure */
} pa_bench_status;

typedef struct pa_bench_result {
    int target; /* index into the run's targets (backend:device) */
    int index;  /* measurement number within a target (shape, dtype, algo) */
    pa_bench_shape shape;
    polyattn_dtype dtype;
    polyattn_algo algo_asked; /* what --algo named (auto included) */
    polyattn_algo algo;       /* what the plan chose */
    pa_bench_status status;
    char reason[512];
    double ms, ms_min, ms_max; /* median, min, max over reps */
    int reps;                  /* timed calls (fewer than --reps when calls are slow) */
    double tflops;             /* 4*b*hq*sq*skv*d (halved when causal) / time */
    double gbps;               /* plan's minimum bytes moved / time */
    uint64_t mem_bytes;        /* measured: one input set + peak of outputs and workspace */
    uint64_t mem_estimate;     /* the plan's device_bytes */
    uint64_t workspace_bytes;
    double max_err; /* vs the host reference, relative to max |O| of the slice */
    int rows_checked;
    double speedup_vs_unfused;   /* 0 when unknown */
    double mem_saved_vs_unfused; /* fraction, 0 when unknown */
    /* --backward: this row times polyattn_backward (dQ, dK, dV) alone; workspace_bytes is
     * then the backward's workspace and tflops counts 2.5x the forward FLOPs. */
    int backward;
    int deterministic;  /* the plan was made with deterministic gradients */
    double err_grad[3]; /* backward: dQ, dK, dV error, each relative to its max |ref| */
    int num_splits;     /* the plan's key splits (plan info; 0: not reported) */
} pa_bench_result;

/* ---- score variants (bench_variants.c) ---- */

/* --window, --softcap, --alibi, --bias, --sinks: every measurement of the run gets them,
 * with inputs the bench makes: ALiBi slopes 2^(-8(h+1)/heads_q), a bias [1, heads_q, seq_q,
 * seq_kv] of uniform values in [-1, 1) (a function of the element's index, so that the
 * validation regenerates the rows it checks) in --bias-dtype, sinks uniform in [-1, 1). */
typedef struct pa_bench_variants {
    int on;
    int has_window;
    int64_t window_left, window_right;
    float softcap;
    int alibi, bias, sinks;
    polyattn_dtype bias_dtype;
} pa_bench_variants;

/* The device tensors of one measurement's variants. */
typedef struct pa_bench_variant_bufs {
    polyattn_buffer *slopes, *bias, *sinks;
    polyattn_extra_tensors extra;
} pa_bench_variant_bufs;

void pa_bench_variants_apply(const pa_bench_variants *v, polyattn_attention_desc *desc);
polyattn_status pa_bench_variants_make(polyattn_context *ctx, const pa_bench_variants *v,
                                       const pa_bench_shape *sh, void *staging,
                                       uint64_t staging_bytes, pa_bench_variant_bufs *out);
void pa_bench_variants_free(pa_bench_variant_bufs *b);
/* Host values of the inputs, as the device sees them. */
float pa_bench_slope(int64_t head, int64_t heads_q);
float pa_bench_sink(int64_t head);
float pa_bench_bias_value(const pa_bench_variants *v, const pa_bench_shape *sh, int64_t head,
                          int64_t row, int64_t key);
/* "window (L, R), softcap C, alibi, bias f16, sinks" or "". */
void pa_bench_variants_describe(const pa_bench_variants *v, char *buf, size_t size);

/* ---- validation (bench_check.c) ---- */

/* Compares the device output o (f32 copy of the whole tensor not needed: rows are read from
 * the buffer) with the host reference on a few sampled slices.  host_in[0..2] are Q, K, V
 * as the device sees them (rounded to the dtype), f32, contiguous BHSD.  Fills max_err and
 * rows_checked; returns 0 when within tolerance, else writes reason and returns 1; returns
 * -1 on a library failure (reason filled). */
int pa_bench_validate(polyattn_context *host_ctx, const pa_bench_shape *shape, float scale,
                      polyattn_dtype dtype, float *const host_in[3], const polyattn_buffer *o,
                      pa_bench_result *result);
/* The same with score variants (var NULL or off: pa_bench_validate).  The slices keep every
 * key and rows whose diagonal is the full problem's (the first rows under causal top-left,
 * the last ones otherwise), so that windows and ALiBi distances are the same. */
int pa_bench_validate_variants(polyattn_context *host_ctx, const pa_bench_shape *shape, float scale,
                               polyattn_dtype dtype, float *const host_in[3],
                               const polyattn_buffer *o, const pa_bench_variants *var,
                               pa_bench_result *result);
/* Tolerance on the validation error for a dtype. */
double pa_bench_tolerance(polyattn_dtype dtype);
/* O's dtype in a measurement of inputs in dtype: bf16 for e4m3 (FlashAttention-3's). */
static inline polyattn_dtype pa_bench_o_dtype(polyattn_dtype dtype)
{
    return dtype == POLYATTN_DTYPE_E4M3 ? POLYATTN_DTYPE_BF16 : dtype;
}

/* The backward's device tensors, all contiguous BHSD in the bench dtype except lse (f32
 * [batch, heads_q, seq_q]). */
typedef struct pa_bench_grads {
    const polyattn_buffer *o, *lse, *dq, *dk, *dv;
} pa_bench_grads;

/* Checks the gradients of a backward call against a double host computation on sampled
 * rows: dQ rows (first and last query rows of the first and last batch entry and KV group;
 * everything recomputed on the host, the device's LSE compared on the way) and dK/dV rows
 * (first and last keys; P from the device's LSE, delta = rowsum(dO * O) from the device's
 * O: the backward's own inputs).  host_in[0..3] are Q, K, V and dO as the device sees
 * them, f32 contiguous BHSD.  Fills err_grad, max_err and rows_checked; returns as
 * pa_bench_validate. */
int pa_bench_validate_backward(const pa_bench_shape *shape, float scale, polyattn_dtype dtype,
                               float *const host_in[4], const pa_bench_grads *g,
                               pa_bench_result *result);
double pa_bench_backward_tolerance(polyattn_dtype dtype);

/* ---- reports (bench_report.c) ---- */

/* One backend:device a run measures. */
typedef struct pa_bench_target {
    polyattn_backend backend; /* AUTO until the measuring process opened the device */
    int device;
    char label[32]; /* "opencl:1" */
    int opened;     /* info is valid */
    polyattn_device_info info;
} pa_bench_target;

double pa_bench_flops(const pa_bench_shape *shape); /* the FlashAttention convention */
/* Backward: 2.5x the forward (FlashAttention's count: five GEMMs against two). */
double pa_bench_backward_flops(const pa_bench_shape *shape);
void pa_bench_print_header(FILE *out);
void pa_bench_print_row(FILE *out, const pa_bench_result *r);
/* Reports: r[i].target indexes targets[]. */
void pa_bench_write_csv(FILE *out, const char *suite, const pa_bench_target *targets,
                        const pa_bench_result *r, int n);
void pa_bench_write_json(FILE *out, const char *suite, const pa_bench_target *targets,
                         int n_targets, int reps, int warmup, int backward, int graph_calls,
                         int rotate, const pa_bench_result *r, int n);
/* Fills speedup and memory saved against the unfused result of the same target, shape and
 * dtype. */
void pa_bench_compare_unfused(pa_bench_result *r, int n);
/* The backend comparison: for each (shape, dtype, algo) measured on any target, ms per
 * target and the ratio to the fastest target (baseline < 0) or to targets[baseline]; then
 * the best algorithm of each target per (shape, dtype), and geometric means of the ratios.
 * r[i].index numbers the (shape, dtype, algo) of a target's run, the same on every target. */
void pa_bench_print_comparison(FILE *out, const pa_bench_target *targets, int n_targets,
                               int baseline, const pa_bench_result *r, int n);
/* The suite's shapes as CSV (one row per shape and dtype), for scripts (--list). */
void pa_bench_write_list(FILE *out, const char *suite, const pa_bench_shape *shapes, int n_shapes,
                         const int *dtypes, int n_dtypes);

/* ---- one target's measurements (bench_measure.c) ---- */

#define PA_BENCH_MAX_SHAPES 64
#define PA_BENCH_MAX_SETS 16 /* --rotate N */

/* Q, K, V of each input set; with --backward also dO (the loss gradient, shaped like O). */
typedef struct pa_bench_sets {
    int n, n_tensors;
    uint64_t count[4];
    polyattn_buffer *buf[PA_BENCH_MAX_SETS][4];
    float *host[4]; /* set 0 as the device sees it (rounded), for validation */
} pa_bench_sets;

/* What every measurement of a target shares. */
typedef struct pa_bench_run {
    polyattn_context *ctx, *host;
    int reps, warmup;
    uint64_t budget;
    void *staging;
    double max_seconds;
    int backward, deterministic;
    pa_bench_variants var; /* score variants of every measurement */
    int graph_calls;       /* --graph N: each timed sample replays a CUDA graph of N calls */
    void *graph_stream;    /* the cudaStream_t ctx queues on (--graph) */
} pa_bench_run;

/* One call of a timed loop: call i of a sample (input set i % n). */
typedef polyattn_status (*pa_bench_call_fn)(void *arg, int i);
double pa_bench_now_seconds(void);
/* Random inputs (never zeros: timing on zeros would flatter some hardware), n_sets sets. */
polyattn_status pa_bench_make_sets(polyattn_context *ctx, const pa_bench_shape *sh,
                                   polyattn_dtype dtype, int n_sets, int with_grad_out,
                                   pa_bench_sets *s, void *staging, float *scratch);
void pa_bench_free_sets(pa_bench_sets *s);
/* "what: STATUS: the context's message" into r->reason. */
void pa_bench_lib_reason(pa_bench_result *r, polyattn_context *ctx, polyattn_status st,
                         const char *what);
/* Uniform in [-1, 1), never 0, from a seed. */
void pa_bench_fill_random(float *x, uint64_t n, uint64_t seed);
/* Fewer reps for slow calls (--max-seconds), at least 3. */
void pa_bench_cap_reps(const pa_bench_run *b, double first_call_s, int *reps, int *warmup);
/* Warms up with calls 1..warmup, then times reps calls (events or graph replays) into
 * r->ms, ms_min, ms_max, reps.  Returns 0, or -1 with r->reason filled. */
int pa_bench_time_calls(pa_bench_run *b, pa_bench_call_fn call, void *arg, int warmup, int reps,
                        pa_bench_result *r);
/* The serving layouts' forward (bench_serving.c): its own inputs (a dense cache, a paged one
 * or packed sequences; random, never zeros), validated against the host reference on sampled
 * rows of the first, middle and last sequences (each as its own dense problem), then timed.
 * GB/s counts Q, O and the keys and values each sequence uses, once; TFLOP/s the visible
 * pairs exactly; num_splits comes from the plan. */
void pa_bench_measure_serving(pa_bench_run *b, const pa_bench_shape *sh, polyattn_dtype dtype,
                              polyattn_algo algo, pa_bench_result *r);
/* Plans, validates and times one (shape, dtype, algo): the forward, or with b->backward
 * the backward.  Fills *r (status, reason, times, memory). */
void pa_bench_measure(pa_bench_run *b, const pa_bench_shape *sh, polyattn_dtype dtype,
                      polyattn_algo algo, pa_bench_sets *sets, pa_bench_result *r);

/* ---- CUDA graph replay (bench_graph.c) ---- */

/* 1 when this build can replay CUDA graphs (the CUDA backend was built). */
int pa_bench_graph_available(void);
/* A CUDA context on a new stream of ours, which graphs capture.  Returns the library's
 * status; *stream is destroyed by pa_bench_graph_context_destroy. */
polyattn_status pa_bench_graph_context(int device, polyattn_context **ctx, void **stream,
                                       const char **why);
void pa_bench_graph_context_destroy(polyattn_context *ctx, void *stream);
/* Captures calls 0..n_calls-1 of call into a graph, replays it once to warm up, then
 * reps times between events: times[r] = replay ms / n_calls.  NULL, or what failed. */
const char *pa_bench_graph_time(void *stream, polyattn_context *ctx, pa_bench_call_fn call,
                                void *arg, int n_calls, int reps, double *times);

/* ---- processes: one child per target (bench_procs.c) ---- */

#define PA_BENCH_MAX_TARGETS 32

/* --backend items: NAME[:N]. */
typedef struct pa_bench_backend_item {
    polyattn_backend backend;
    int device; /* -1: not given */
} pa_bench_backend_item;

/* Measures one (shape, dtype, algo) in the child; index numbers it within the target. */
typedef void (*pa_bench_measure_fn)(pa_bench_run *b, int index, const pa_bench_shape *sh,
                                    polyattn_dtype dtype, polyattn_algo algo, pa_bench_sets *sets,
                                    pa_bench_result *r);

/* What a run measures: every target runs the same list of (shape, dtype, algo). */
typedef struct pa_bench_job {
    const pa_bench_suite *suite;
    const pa_bench_shape *shapes;
    int n_shapes;
    const int *dtypes, *algos;
    int n_dtypes, n_algos, n_per_target;
    int n_sets_opt;              /* --rotate N; 0: the cache rule */
    pa_bench_run params;         /* reps, warmup, budget, max_seconds, graph_calls */
    pa_cli_common common;        /* --memory-budget etc.; backend/device from the target */
    pa_bench_measure_fn measure; /* NULL: pa_bench_measure (tests pass their own) */
    int n_targets;
    double t_start;
    /* The child under way: */
    pa_bench_target *target;
    int target_no, start;
} pa_bench_job;

/* The (shape, dtype, algo) of measurement index of a target. */
void pa_bench_measurement_of(const pa_bench_job *job, int index, const pa_bench_shape **sh,
                             polyattn_dtype *dtype, polyattn_algo *algo);
/* Measures job->target in a child process, in as many children as crashes require (a
 * crash is reported as an error of the measurement under way, and a new child goes on
 * with the next).  results/have: n_per_target slots.  Returns 0, or the exit code of a
 * child that failed before measuring (its message printed). */
int pa_bench_run_target(pa_bench_job *job, pa_bench_result *results, unsigned char *have);
/* --compare-backends: every device of the items' backends (and the host reference when
 * include_host), found in a child.  Returns 0 (targets and *n filled) or an exit code. */
int pa_bench_discover(const pa_bench_backend_item *items, int n_items, int include_host,
                      pa_bench_target *targets, int *n);
/* SIGINT/SIGTERM: finish the measurement under way, then write what was measured. */
void pa_bench_catch_stop_signals(int on);
int pa_bench_stop_requested(void);

const char *pa_bench_status_name(pa_bench_status status);

int pa_cmd_bench(int argc, char **argv);

#endif /* PA_BENCH_H */
