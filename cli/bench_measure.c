/*
 * One measurement of polyattn bench, in the process that holds the device: plan, validate
 * against the host reference, warm up, time with device events (or CUDA graph replays)
 * over rotated input sets, and measure memory.  The forward and, with --backward, the
 * backward call alone.
 */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void pa_bench_free_sets(pa_bench_sets *s)
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
void pa_bench_fill_random(float *x, uint64_t n, uint64_t seed)
{
    uint64_t state = seed;
    for (uint64_t i = 0; i < n; i++) {
        double u = (double)(rng_next(&state) >> 11) * (1.0 / 9007199254740992.0);
        float v = (float)(2.0 * u - 1.0);
        x[i] = v == 0.0f ? 0.5f : v;
    }
}

polyattn_status pa_bench_make_sets(polyattn_context *ctx, const pa_bench_shape *sh,
                                   polyattn_dtype dtype, int n_sets, int with_grad_out,
                                   pa_bench_sets *s, void *staging, float *scratch)
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
        if (!s->host[t]) return POLYATTN_STATUS_OUT_OF_MEMORY;
    }
    for (int i = 0; i < n_sets && i < PA_BENCH_MAX_SETS; i++) {
        s->n = i + 1;
        for (int t = 0; t < s->n_tensors; t++) {
            float *values = i == 0 ? s->host[t] : scratch;
            pa_bench_fill_random(values, s->count[t],
                                 t == 3 ? 0xd0d00000ull + (uint64_t)i
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
            if (st != POLYATTN_STATUS_SUCCESS) return st;
        }
    }
    return POLYATTN_STATUS_SUCCESS;
}

double pa_bench_now_seconds(void)
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

/* Sorts times[0..reps) and puts their median, minimum and maximum into r. */
static void summarize_times(double *times, int reps, pa_bench_result *r)
{
    qsort(times, (size_t)reps, sizeof *times, cmp_double);
    r->ms = reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
    r->ms_min = times[0];
    r->ms_max = times[reps - 1];
}

void pa_bench_lib_reason(pa_bench_result *r, polyattn_context *ctx, polyattn_status st,
                         const char *what)
{
    const char *msg = polyattn_context_last_error(ctx);
    snprintf(r->reason, sizeof r->reason, "%s: %s: %s", what, polyattn_status_name(st),
             msg && msg[0] ? msg : polyattn_status_string(st));
}

/* Slow calls (a generic kernel on a long sequence) get fewer repetitions: at most
 * --max-seconds per measurement, at least 3 timed samples. */
void pa_bench_cap_reps(const pa_bench_run *b, double first_call_s, int *reps, int *warmup)
{
    *reps = b->reps;
    *warmup = b->warmup;
    double per_sample = first_call_s * (b->graph_calls ? b->graph_calls : 1);
    if (b->max_seconds > 0 && per_sample * (*reps + *warmup) > b->max_seconds) {
        *warmup = *warmup > 1 ? 1 : *warmup;
        int r = (int)(b->max_seconds / per_sample) - *warmup;
        *reps = r < 3 ? 3 : r > b->reps ? b->reps : r;
    }
}

/* Warms up with calls 1..warmup, then times reps samples: chained events around
 * back-to-back calls warmup+1.., or with --graph the replays of a CUDA graph of
 * graph_calls calls.  Returns 0, or -1 with r->reason filled. */
int pa_bench_time_calls(pa_bench_run *b, pa_bench_call_fn call, void *arg, int warmup, int reps,
                        pa_bench_result *r)
{
    polyattn_event **ev = NULL;
    double *times = NULL;
    int n_ev = 0, rc = -1;
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    const char *what = "warm-up";
    for (int i = 0; i < warmup; i++)
        if ((st = call(arg, i + 1)) != POLYATTN_STATUS_SUCCESS) goto failed;
    times = calloc((size_t)reps, sizeof *times);
    ev = calloc((size_t)reps + 1, sizeof *ev);
    if (!times || !ev) {
        snprintf(r->reason, sizeof r->reason, "out of host memory");
        goto out;
    }
    if (b->graph_calls) {
        const char *fail =
            pa_bench_graph_time(b->graph_stream, b->ctx, call, arg, b->graph_calls, reps, times);
        if (fail) {
            const char *msg = polyattn_context_last_error(b->ctx);
            snprintf(r->reason, sizeof r->reason, "%s%s%s", fail, msg && msg[0] ? ": " : "",
                     msg ? msg : "");
            goto out;
        }
    } else {
        what = "event";
        for (n_ev = 0; n_ev <= reps; n_ev++) {
            if ((st = polyattn_event_create(b->ctx, &ev[n_ev])) != POLYATTN_STATUS_SUCCESS) {
                ev[n_ev] = NULL;
                goto failed;
            }
        }
        what = "timing";
        if ((st = polyattn_event_record(ev[0])) != POLYATTN_STATUS_SUCCESS) goto failed;
        for (int i = 0; i < reps; i++)
            if ((st = call(arg, i + 1 + warmup)) != POLYATTN_STATUS_SUCCESS ||
                (st = polyattn_event_record(ev[i + 1])) != POLYATTN_STATUS_SUCCESS)
                goto failed;
        for (int i = 0; i < reps; i++)
            if ((st = polyattn_event_elapsed_ms(ev[i], ev[i + 1], &times[i])) !=
                POLYATTN_STATUS_SUCCESS)
                goto failed;
    }
    summarize_times(times, reps, r);
    r->reps = reps;
    rc = 0;
    goto out;
failed:
    pa_bench_lib_reason(r, b->ctx, st, what);
out:
    for (int i = 0; i < n_ev; i++)
        polyattn_event_destroy(ev[i]);
    free(ev);
    free(times);
    return rc;
}

/* Starts the result of one measurement and plans it (backward: with want_backward and
 * the run's deterministic flag).  NULL when the shape cannot be planned: the result then
 * says skipped (unsupported, over the budget) or error, with the library's reason. */
static polyattn_plan *plan_measurement(pa_bench_run *b, const pa_bench_shape *sh,
                                       polyattn_dtype dtype, polyattn_algo algo, int backward,
                                       float scale, polyattn_plan_info *info, pa_bench_result *r)
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
    desc.o.dtype = pa_bench_o_dtype(dtype);
    desc.scale = scale;
    desc.mask = sh->mask;
    pa_bench_variants_apply(&b->var, &desc);
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
        pa_bench_lib_reason(r, b->ctx, st, "plan");
        return NULL;
    }
    memset(info, 0, sizeof *info);
    info->struct_size = sizeof *info;
    if ((st = polyattn_plan_get_info(plan, info)) != POLYATTN_STATUS_SUCCESS) {
        r->status = PA_BENCH_ERROR;
        pa_bench_lib_reason(r, b->ctx, st, "plan info");
        polyattn_plan_destroy(plan);
        return NULL;
    }
    r->algo = info->algo;
    r->num_splits = info->num_splits;
    r->mem_estimate = info->device_bytes;
    r->workspace_bytes = backward ? info->backward_workspace_bytes : info->workspace_bytes;
    return plan;
}

/* Fills a buffer of count elements with NaN: a row the algorithm forgets cannot pass. */
static polyattn_status poison(pa_bench_run *b, polyattn_buffer *buf, polyattn_dtype dtype,
                              uint64_t count)
{
    float *f = b->staging;
    for (uint64_t i = 0; i < count; i++)
        f[i] = NAN;
    pa_cli_from_f32(dtype, f, b->staging, count);
    return polyattn_buffer_write(buf, 0, b->staging, count * polyattn_dtype_size(dtype));
}

typedef struct forward_call {
    polyattn_plan *plan;
    pa_bench_sets *sets;
    polyattn_buffer *o, *ws;
    const polyattn_extra_tensors *extra; /* the score variants' tensors, or NULL */
} forward_call;

static polyattn_status forward_call_fn(void *arg, int i)
{
    forward_call *c = arg;
    polyattn_buffer *const *in = c->sets->buf[i % c->sets->n];
    return polyattn_forward_ex(c->plan, in[0], in[1], in[2], c->o, NULL, NULL, c->ws, c->extra);
}

static void measure_forward(pa_bench_run *b, const pa_bench_shape *sh, polyattn_dtype dtype,
                            polyattn_algo algo, pa_bench_sets *sets, pa_bench_result *r)
{
    const float scale = (float)(1.0 / sqrt((double)sh->head_dim));
    polyattn_buffer *o = NULL, *ws = NULL;
    polyattn_status st;
    polyattn_plan_info info;
    pa_bench_variant_bufs var;
    memset(&var, 0, sizeof var);
    polyattn_plan *plan = plan_measurement(b, sh, dtype, algo, 0, scale, &info, r);
    if (!plan) goto done;
    if (b->var.on &&
        (st = pa_bench_variants_make(b->ctx, &b->var, sh, b->staging, sets->count[1] * 4, &var)) !=
            POLYATTN_STATUS_SUCCESS) {
        r->status = st == POLYATTN_STATUS_OUT_OF_MEMORY ? PA_BENCH_SKIPPED : PA_BENCH_ERROR;
        pa_bench_lib_reason(r, b->ctx, st, "variant inputs");
        goto done;
    }

    /* Memory: the peak of what this measurement adds (outputs, workspace) on top of the
     * input sets, plus one input set: what one call needs, comparable with the estimate. */
    polyattn_memory_stats before, after;
    size_t esize = polyattn_dtype_size(pa_bench_o_dtype(dtype));
    uint64_t o_count = sets->count[3];
    if ((st = polyattn_context_memory_stats(b->ctx, 1, &before)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_buffer_alloc(b->ctx, o_count * esize, &o)) != POLYATTN_STATUS_SUCCESS ||
        (info.workspace_bytes && (st = polyattn_buffer_alloc(b->ctx, info.workspace_bytes, &ws)) !=
                                     POLYATTN_STATUS_SUCCESS)) {
        r->status = st == POLYATTN_STATUS_OUT_OF_MEMORY ? PA_BENCH_SKIPPED : PA_BENCH_ERROR;
        pa_bench_lib_reason(r, b->ctx, st, "allocation");
        goto done;
    }
    if ((st = poison(b, o, pa_bench_o_dtype(dtype), o_count)) != POLYATTN_STATUS_SUCCESS) {
        r->status = PA_BENCH_ERROR;
        pa_bench_lib_reason(r, b->ctx, st, "poison O");
        goto done;
    }
    forward_call call = {plan, sets, o, ws, b->var.on ? &var.extra : NULL};
    double t0 = pa_bench_now_seconds();
    if ((st = forward_call_fn(&call, 0)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_context_synchronize(b->ctx)) != POLYATTN_STATUS_SUCCESS) {
        r->status = PA_BENCH_ERROR;
        pa_bench_lib_reason(r, b->ctx, st, "forward");
        goto done;
    }
    double first_call_s = pa_bench_now_seconds() - t0;
    int v = pa_bench_validate_variants(b->host, sh, scale, dtype, sets->host, o, &b->var, r);
    if (v != 0) {
        r->status = v > 0 ? PA_BENCH_INVALID : PA_BENCH_ERROR;
        goto done;
    }

    int reps, warmup;
    pa_bench_cap_reps(b, first_call_s, &reps, &warmup);
    if (pa_bench_time_calls(b, forward_call_fn, &call, warmup, reps, r) != 0) {
        r->status = PA_BENCH_ERROR;
        goto done;
    }
    if ((st = polyattn_context_memory_stats(b->ctx, 0, &after)) != POLYATTN_STATUS_SUCCESS) {
        r->status = PA_BENCH_ERROR;
        pa_bench_lib_reason(r, b->ctx, st, "memory stats");
        goto done;
    }
    if (r->ms > 0) {
        /* Under a window only the visible pairs are work: the plan counts them. */
        double flops = b->var.has_window ? info.flops : pa_bench_flops(sh);
        r->tflops = flops / (r->ms * 1e-3) / 1e12;
        r->gbps = info.min_bytes_moved / (r->ms * 1e-3) / 1e9;
    }
    r->mem_bytes = (after.peak_bytes - before.current_bytes) +
                   (sets->count[0] + sets->count[1] + sets->count[2]) * esize;
    r->status = PA_BENCH_OK;
done:
    pa_bench_variants_free(&var);
    polyattn_buffer_free(ws);
    polyattn_buffer_free(o);
    polyattn_plan_destroy(plan);
}

typedef struct backward_call {
    polyattn_plan *plan;
    pa_bench_sets *sets;
    polyattn_buffer **o, **lse, **grad, *ws;
} backward_call;

static polyattn_status backward_call_fn(void *arg, int i)
{
    backward_call *c = arg;
    int k = i % c->sets->n;
    polyattn_buffer *const *in = c->sets->buf[k];
    return polyattn_backward(c->plan, in[0], in[1], in[2], c->o[k], in[3], c->lse[k], c->grad[0],
                             c->grad[1], c->grad[2], c->ws);
}

/* --backward: the same plan (made with want_backward) runs the forward once per input set
 * for O and the LSE; the backward is then validated on set 0 (gradients poisoned first)
 * and timed alone, rotating among the sets like the forward. */
static void measure_backward(pa_bench_run *b, const pa_bench_shape *sh, polyattn_dtype dtype,
                             polyattn_algo algo, pa_bench_sets *sets, pa_bench_result *r)
{
    const float scale = (float)(1.0 / sqrt((double)sh->head_dim));
    polyattn_buffer *o[PA_BENCH_MAX_SETS] = {NULL}, *lse[PA_BENCH_MAX_SETS] = {NULL};
    polyattn_buffer *fws = NULL, *bws = NULL, *grad[3] = {NULL, NULL, NULL};
    polyattn_status st;
    polyattn_plan_info info;
    polyattn_plan *plan = plan_measurement(b, sh, dtype, algo, 1, scale, &info, r);
    if (!plan) goto done;

    /* The forward of every set: O and LSE, the backward's inputs. */
    size_t esize = polyattn_dtype_size(dtype);
    uint64_t rows = (uint64_t)(sh->batch * sh->heads_q * sh->seq_q);
    uint64_t o_count = sets->count[3];
    if (info.workspace_bytes && (st = polyattn_buffer_alloc(b->ctx, info.workspace_bytes, &fws)) !=
                                    POLYATTN_STATUS_SUCCESS) {
        fws = NULL;
        goto alloc_failed;
    }
    for (int i = 0; i < sets->n; i++) {
        polyattn_buffer *const *in = sets->buf[i];
        if ((st = polyattn_buffer_alloc(b->ctx, o_count * esize, &o[i])) !=
            POLYATTN_STATUS_SUCCESS) {
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
            pa_bench_lib_reason(r, b->ctx, st, "forward");
            goto done;
        }
    }
    if ((st = polyattn_context_synchronize(b->ctx)) != POLYATTN_STATUS_SUCCESS) {
        r->status = PA_BENCH_ERROR;
        pa_bench_lib_reason(r, b->ctx, st, "forward");
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
            if (len + plen >= sizeof r->reason) len = sizeof r->reason - plen - 1;
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
        if ((st = poison(b, grad[t], dtype, sets->count[t])) != POLYATTN_STATUS_SUCCESS) {
            r->status = PA_BENCH_ERROR;
            pa_bench_lib_reason(r, b->ctx, st, "poison the gradients");
            goto done;
        }
    }
    if (info.backward_workspace_bytes &&
        (st = polyattn_buffer_alloc(b->ctx, info.backward_workspace_bytes, &bws)) !=
            POLYATTN_STATUS_SUCCESS) {
        bws = NULL;
        goto alloc_failed;
    }
    backward_call call = {plan, sets, o, lse, grad, bws};
    double t0 = pa_bench_now_seconds();
    if ((st = backward_call_fn(&call, 0)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_context_synchronize(b->ctx)) != POLYATTN_STATUS_SUCCESS) {
        r->status = PA_BENCH_ERROR;
        pa_bench_lib_reason(r, b->ctx, st, "backward");
        goto done;
    }
    double first_call_s = pa_bench_now_seconds() - t0;
    pa_bench_grads g = {o[0], lse[0], grad[0], grad[1], grad[2]};
    v = pa_bench_validate_backward(sh, scale, dtype, sets->host, &g, r);
    if (v != 0) {
        r->status = v > 0 ? PA_BENCH_INVALID : PA_BENCH_ERROR;
        goto done;
    }

    int reps, warmup;
    pa_bench_cap_reps(b, first_call_s, &reps, &warmup);
    if (pa_bench_time_calls(b, backward_call_fn, &call, warmup, reps, r) != 0) {
        r->status = PA_BENCH_ERROR;
        goto done;
    }
    if ((st = polyattn_context_memory_stats(b->ctx, 0, &after)) != POLYATTN_STATUS_SUCCESS) {
        r->status = PA_BENCH_ERROR;
        pa_bench_lib_reason(r, b->ctx, st, "memory stats");
        goto done;
    }
    if (r->ms > 0) {
        /* Bytes: Q, K, V, O, dO and the LSE read, dQ, dK, dV written. */
        double moved =
            (double)((sets->count[0] + sets->count[1] + sets->count[2]) * 2 + 2 * o_count) *
                (double)esize +
            4.0 * (double)rows;
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
    pa_bench_lib_reason(r, b->ctx, st, "allocation");
done:
    polyattn_buffer_free(bws);
    for (int t = 0; t < 3; t++)
        polyattn_buffer_free(grad[t]);
    for (int i = 0; i < PA_BENCH_MAX_SETS; i++) {
        polyattn_buffer_free(lse[i]);
        polyattn_buffer_free(o[i]);
    }
    polyattn_buffer_free(fws);
    polyattn_plan_destroy(plan);
}

void pa_bench_measure(pa_bench_run *b, const pa_bench_shape *sh, polyattn_dtype dtype,
                      polyattn_algo algo, pa_bench_sets *sets, pa_bench_result *r)
{
    if (b->backward) measure_backward(b, sh, dtype, algo, sets, r);
    else measure_forward(b, sh, dtype, algo, sets, r);
}
