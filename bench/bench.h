/*
 * polyattn bench: suites of shapes, validation against the host reference, timing with
 * device events, reports (table, CSV, JSON).
 */
#ifndef PA_BENCH_H
#define PA_BENCH_H

#include "cli.h"

typedef struct pa_bench_shape {
    int64_t batch, heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v;
    polyattn_mask mask;
} pa_bench_shape;

/* ---- suites (suites.c) ---- */

typedef struct pa_bench_suite {
    const char *name;
    const char *description;
    const pa_bench_shape *shapes;
    int n_shapes;
    polyattn_dtype default_dtype;
} pa_bench_suite;

/* The suite called name, or NULL; "custom" has no shapes (they come from --shape). */
const pa_bench_suite *pa_bench_find_suite(const char *name);
/* "seed|fa2|decode|custom" */
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
    int target;                /* index into the run's targets (backend:device) */
    int index;                 /* measurement number within a target (shape, dtype, algo) */
    pa_bench_shape shape;
    polyattn_dtype dtype;
    polyattn_algo algo_asked;  /* what --algo named (auto included) */
    polyattn_algo algo;        /* what the plan chose */
    pa_bench_status status;
    char reason[512];
    double ms, ms_min, ms_max; /* median, min, max over reps */
    int reps;                  /* timed calls (fewer than --reps when calls are slow) */
    double tflops;             /* 4*b*hq*sq*skv*d (halved when causal) / time */
    double gbps;               /* plan's minimum bytes moved / time */
    uint64_t mem_bytes;        /* measured: one input set + peak of outputs and workspace */
    uint64_t mem_estimate;     /* the plan's device_bytes */
    uint64_t workspace_bytes;
    double max_err;            /* vs the host reference, relative to max |O| of the slice */
    int rows_checked;
    double speedup_vs_unfused; /* 0 when unknown */
    double mem_saved_vs_unfused; /* fraction, 0 when unknown */
    /* --backward: this row times polyattn_backward (dQ, dK, dV) alone; workspace_bytes is
     * then the backward's workspace and tflops counts 2.5x the forward FLOPs. */
    int backward;
    int deterministic;          /* the plan was made with deterministic gradients */
    double err_grad[3];         /* backward: dQ, dK, dV error, each relative to its max |ref| */
} pa_bench_result;

/* ---- validation (bench_check.c) ---- */

/* Compares the device output o (f32 copy of the whole tensor not needed: rows are read from
 * the buffer) with the host reference on a few sampled slices.  host_in[0..2] are Q, K, V
 * as the device sees them (rounded to the dtype), f32, contiguous BHSD.  Fills max_err and
 * rows_checked; returns 0 when within tolerance, else writes reason and returns 1; returns
 * -1 on a library failure (reason filled). */
int pa_bench_validate(polyattn_context *host_ctx, const pa_bench_shape *shape, float scale,
                      polyattn_dtype dtype, float *const host_in[3], const polyattn_buffer *o,
                      pa_bench_result *result);
/* Tolerance on the validation error for a dtype. */
double pa_bench_tolerance(polyattn_dtype dtype);

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
    char label[32];           /* "opencl:1" */
    int opened;               /* info is valid */
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
                         int n_targets, int reps, int warmup, int backward,
                         const pa_bench_result *r, int n);
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
void pa_bench_write_list(FILE *out, const char *suite, const pa_bench_shape *shapes,
                         int n_shapes, const int *dtypes, int n_dtypes);

const char *pa_bench_status_name(pa_bench_status status);

int pa_cmd_bench(int argc, char **argv);

#endif /* PA_BENCH_H */
