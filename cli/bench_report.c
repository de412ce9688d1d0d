/* Bench reports: a table on stdout, CSV and JSON files. */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *pa_bench_status_name(pa_bench_status status)
{
    switch (status) {
    case PA_BENCH_OK: return "ok";
    case PA_BENCH_SKIPPED: return "skipped";
    case PA_BENCH_INVALID: return "invalid";
    default: return "error";
    }
}

double pa_bench_flops(const pa_bench_shape *s)
{
    /* FlashAttention's convention: two GEMMs of 2*seq_q*seq_kv*head_dim each, halved when
     * causal (the plan's own count, 2*(d+dv) per visible pair, is exact instead). */
    double f = 4.0 * (double)s->batch * (double)s->heads_q * (double)s->seq_q * (double)s->seq_kv *
               (double)s->head_dim;
    return s->mask == POLYATTN_MASK_NONE ? f : f / 2;
}

double pa_bench_backward_flops(const pa_bench_shape *s)
{
    /* FlashAttention's convention for the backward: 2.5x the forward (five GEMMs of the
     * same size against two: S, dP, dV, dQ and dK, the recomputation of S included). */
    return 2.5 * pa_bench_flops(s);
}

static const char *mask_short(polyattn_mask m)
{
    return m == POLYATTN_MASK_NONE ? "none" : m == POLYATTN_MASK_CAUSAL_TOP_LEFT ? "tl" : "br";
}

void pa_bench_print_header(FILE *out)
{
    fprintf(out,
            "%-5s %-4s %-4s %-6s %-6s %-5s %-4s %-5s %-8s %-8s %10s %9s %9s %10s %10s "
            "%8s %8s %s\n",
            "batch", "hq", "hkv", "seq_q", "seq_kv", "d", "mask", "dtype", "algo", "status", "ms",
            "TFLOP/s", "GB/s", "mem MiB", "est MiB", "speedup", "saved", "note");
}

void pa_bench_print_row(FILE *out, const pa_bench_result *r)
{
    const pa_bench_shape *s = &r->shape;
    char algo[24];
    if (r->algo_asked == POLYATTN_ALGO_AUTO && r->status == PA_BENCH_OK)
        snprintf(algo, sizeof algo, "auto>%s", polyattn_algo_name(r->algo));
    else snprintf(algo, sizeof algo, "%s", polyattn_algo_name(r->algo_asked));
    fprintf(out, "%-5lld %-4lld %-4lld %-6lld %-6lld %-5lld %-4s %-5s %-8s %-8s ",
            (long long)s->batch, (long long)s->heads_q, (long long)s->heads_kv, (long long)s->seq_q,
            (long long)s->seq_kv, (long long)s->head_dim, mask_short(s->mask),
            polyattn_dtype_name(r->dtype), algo, pa_bench_status_name(r->status));
    if (r->status != PA_BENCH_OK) {
        fprintf(out, "%10s %9s %9s %10s %10.1f %8s %8s %s\n", "-", "-", "-", "-",
                (double)r->mem_estimate / 1048576.0, "-", "-", r->reason);
        return;
    }
    char speedup[16] = "-", saved[16] = "-";
    if (r->speedup_vs_unfused > 0) {
        snprintf(speedup, sizeof speedup, "%.2fx", r->speedup_vs_unfused);
        snprintf(saved, sizeof saved, "%.1f%%", 100.0 * r->mem_saved_vs_unfused);
    }
    fprintf(out, "%10.4f %9.3f %9.2f %10.1f %10.1f %8s %8s err %.1e", r->ms, r->tflops, r->gbps,
            (double)r->mem_bytes / 1048576.0, (double)r->mem_estimate / 1048576.0, speedup, saved,
            r->max_err);
    if (r->backward) {
        char ws[32];
        fprintf(out, " (dQ %.1e dK %.1e dV %.1e) ws %s", r->err_grad[0], r->err_grad[1],
                r->err_grad[2], pa_cli_bytes_human(r->workspace_bytes, ws));
    }
    if (s->layout == PA_BENCH_PAGED) fprintf(out, " paged/%lld", (long long)s->block_size);
    else if (s->layout != PA_BENCH_DENSE) fprintf(out, " %s", pa_bench_layout_name(s->layout));
    if (r->num_splits > 0) fprintf(out, " splits %d", r->num_splits);
    fputc('\n', out);
}

void pa_bench_compare_unfused(pa_bench_result *r, int n)
{
    for (int i = 0; i < n; i++) {
        r[i].speedup_vs_unfused = 0;
        r[i].mem_saved_vs_unfused = 0;
        if (r[i].status != PA_BENCH_OK) continue;
        for (int j = 0; j < n; j++) {
            if (r[j].status != PA_BENCH_OK || r[j].algo != POLYATTN_ALGO_UNFUSED ||
                r[j].target != r[i].target || r[j].dtype != r[i].dtype ||
                r[j].backward != r[i].backward ||
                memcmp(&r[j].shape, &r[i].shape, sizeof r[i].shape))
                continue;
            r[i].speedup_vs_unfused = r[i].ms > 0 ? r[j].ms / r[i].ms : 0;
            r[i].mem_saved_vs_unfused =
                r[j].mem_bytes ? 1.0 - (double)r[i].mem_bytes / (double)r[j].mem_bytes : 0;
            break;
        }
    }
}

/* CSV field: quoted, with quotes doubled. */
static void csv_text(FILE *out, const char *text)
{
    fputc('"', out);
    for (const char *p = text; *p; p++) {
        if (*p == '"') fputc('"', out);
        fputc(*p == '\n' ? ' ' : *p, out);
    }
    fputc('"', out);
}

void pa_bench_write_csv(FILE *out, const char *suite, const pa_bench_target *targets,
                        const pa_bench_result *r, int n)
{
    fprintf(
        out,
        "suite,backend,device,batch,heads_q,heads_kv,seq_q,seq_kv,head_dim,head_dim_v,mask,dtype,"
        "algo_asked,algo,status,reps,ms,ms_min,ms_max,tflops,gbps,mem_bytes,"
        "mem_estimate_bytes,workspace_bytes,max_err,rows_checked,speedup_vs_unfused,"
        "mem_saved_vs_unfused,reason,device_index,pass,layout,block_size,num_splits\n");
    for (int i = 0; i < n; i++) {
        const pa_bench_shape *s = &r[i].shape;
        const polyattn_device_info *dev = &targets[r[i].target].info;
        fprintf(out, "%s,%s,", suite, polyattn_backend_name(dev->backend));
        csv_text(out, dev->name);
        fprintf(out, ",%lld,%lld,%lld,%lld,%lld,%lld,%lld,%s,%s,%s,%s,%s,", (long long)s->batch,
                (long long)s->heads_q, (long long)s->heads_kv, (long long)s->seq_q,
                (long long)s->seq_kv, (long long)s->head_dim, (long long)s->head_dim_v,
                polyattn_mask_name(s->mask), polyattn_dtype_name(r[i].dtype),
                polyattn_algo_name(r[i].algo_asked), polyattn_algo_name(r[i].algo),
                pa_bench_status_name(r[i].status));
        if (r[i].status == PA_BENCH_OK)
            fprintf(out, "%d,%.6g,%.6g,%.6g,%.6g,%.6g,%llu,", r[i].reps, r[i].ms, r[i].ms_min,
                    r[i].ms_max, r[i].tflops, r[i].gbps, (unsigned long long)r[i].mem_bytes);
        else fprintf(out, ",,,,,,,");
        fprintf(out, "%llu,%llu,", (unsigned long long)r[i].mem_estimate,
                (unsigned long long)r[i].workspace_bytes);
        if (r[i].rows_checked) fprintf(out, "%.3g,%d,", r[i].max_err, r[i].rows_checked);
        else fprintf(out, ",,");
        if (r[i].speedup_vs_unfused > 0)
            fprintf(out, "%.4g,%.4g,", r[i].speedup_vs_unfused, r[i].mem_saved_vs_unfused);
        else fprintf(out, ",,");
        csv_text(out, r[i].reason);
        fprintf(out, ",%d,%s,%s,%lld,", dev->index, r[i].backward ? "backward" : "forward",
                pa_bench_layout_name(s->layout), (long long)s->block_size);
        if (r[i].num_splits > 0) fprintf(out, "%d", r[i].num_splits);
        fputc('\n', out);
    }
}

static void json_opt_number(FILE *out, const char *key, double value, int present)
{
    fprintf(out, ", \"%s\": ", key);
    if (present) pa_json_number(out, value);
    else fputs("null", out);
}

static void json_device(FILE *out, const polyattn_device_info *dev)
{
    fprintf(out, "\"backend\": \"%s\", \"device_index\": %d, \"device\": ",
            polyattn_backend_name(dev->backend), dev->index);
    pa_json_string(out, dev->name);
    fprintf(out, ", \"vendor\": ");
    pa_json_string(out, dev->vendor);
    fprintf(out, ", \"driver_version\": ");
    pa_json_string(out, dev->driver_version);
    fprintf(out, ", \"arch\": ");
    pa_json_string(out, dev->arch);
}

void pa_bench_write_json(FILE *out, const char *suite, const pa_bench_target *targets,
                         int n_targets, int reps, int warmup, int backward, int graph_calls,
                         int rotate, const pa_bench_result *r, int n)
{
    char date[32];
    time_t now = time(NULL);
    struct tm tm_utc;
    gmtime_r(&now, &tm_utc);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm_utc);
    fprintf(out, "{\"suite\": \"%s\", \"date\": \"%s\", \"polyattn_version\": \"%s\", ", suite,
            date, polyattn_version_string());
    /* How the times were taken, and a forced kernel choice (POLYATTN_FORCE) if any. */
    if (graph_calls) fprintf(out, "\"timing\": \"graph%d\", ", graph_calls);
    else fputs("\"timing\": \"events\", ", out);
    if (rotate) fprintf(out, "\"rotate\": %d, ", rotate);
    else fputs("\"rotate\": null, ", out);
    const char *force = getenv("POLYATTN_FORCE");
    fputs("\"polyattn_force\": ", out);
    if (force) pa_json_string(out, force);
    else fputs("null", out);
    fputs(", ", out);
    /* One device: its fields at the top (the single-backend format); several: null there,
     * each result names its own. */
    int n_opened = 0, first = -1;
    for (int t = 0; t < n_targets; t++)
        if (targets[t].opened) {
            n_opened++;
            first = first < 0 ? t : first;
        }
    if (n_opened == 1) json_device(out, &targets[first].info);
    else
        fputs("\"backend\": null, \"device_index\": null, \"device\": null, \"vendor\": null, "
              "\"driver_version\": null, \"arch\": null",
              out);
    fputs(", \"targets\": [", out);
    for (int t = 0, k = 0; t < n_targets; t++) {
        if (!targets[t].opened) continue;
        fprintf(out, "%s{\"label\": ", k++ ? ", " : "");
        pa_json_string(out, targets[t].label);
        fputs(", ", out);
        json_device(out, &targets[t].info);
        fputc('}', out);
    }
    fprintf(out,
            "], \"reps\": %d, \"warmup\": %d, \"pass\": \"%s\", \"flops_convention\": "
            "\"%s4*batch*heads_q*seq_q*seq_kv*head_dim, halved when causal (layouts other "
            "than dense: 2*(head_dim+head_dim_v)*heads_q per visible pair of each "
            "sequence)\", \"results\": [",
            reps, warmup, backward ? "backward" : "forward", backward ? "2.5 x " : "");
    for (int i = 0; i < n; i++) {
        const pa_bench_shape *s = &r[i].shape;
        int ok = r[i].status == PA_BENCH_OK;
        const polyattn_device_info *dev = &targets[r[i].target].info;
        fprintf(out,
                "%s\n  {\"backend\": \"%s\", \"device_index\": %d, \"batch\": %lld, \"heads_q\": "
                "%lld, \"heads_kv\": %lld, "
                "\"seq_q\": %lld, \"seq_kv\": %lld, \"head_dim\": %lld, "
                "\"head_dim_v\": %lld, \"mask\": \"%s\", \"dtype\": \"%s\", "
                "\"algo_asked\": \"%s\", \"algo\": \"%s\", \"status\": \"%s\"",
                i ? "," : "", polyattn_backend_name(dev->backend), dev->index, (long long)s->batch,
                (long long)s->heads_q, (long long)s->heads_kv, (long long)s->seq_q,
                (long long)s->seq_kv, (long long)s->head_dim, (long long)s->head_dim_v,
                polyattn_mask_name(s->mask), polyattn_dtype_name(r[i].dtype),
                polyattn_algo_name(r[i].algo_asked), polyattn_algo_name(r[i].algo),
                pa_bench_status_name(r[i].status));
        json_opt_number(out, "reps", r[i].reps, ok);
        json_opt_number(out, "ms", r[i].ms, ok);
        json_opt_number(out, "ms_min", r[i].ms_min, ok);
        json_opt_number(out, "ms_max", r[i].ms_max, ok);
        json_opt_number(out, "tflops", r[i].tflops, ok);
        json_opt_number(out, "gbps", r[i].gbps, ok);
        json_opt_number(out, "mem_bytes", (double)r[i].mem_bytes, ok);
        json_opt_number(out, "mem_estimate_bytes", (double)r[i].mem_estimate, 1);
        json_opt_number(out, "workspace_bytes", (double)r[i].workspace_bytes, 1);
        json_opt_number(out, "max_err", r[i].max_err, r[i].rows_checked > 0);
        json_opt_number(out, "rows_checked", r[i].rows_checked, 1);
        json_opt_number(out, "speedup_vs_unfused", r[i].speedup_vs_unfused,
                        r[i].speedup_vs_unfused > 0);
        json_opt_number(out, "mem_saved_vs_unfused", r[i].mem_saved_vs_unfused,
                        r[i].speedup_vs_unfused > 0);
        fprintf(out, ", \"pass\": \"%s\"", r[i].backward ? "backward" : "forward");
        if (r[i].backward) {
            fprintf(out, ", \"deterministic\": %s", r[i].deterministic ? "true" : "false");
            json_opt_number(out, "max_err_dq", r[i].err_grad[0], r[i].rows_checked > 0);
            json_opt_number(out, "max_err_dk", r[i].err_grad[1], r[i].rows_checked > 0);
            json_opt_number(out, "max_err_dv", r[i].err_grad[2], r[i].rows_checked > 0);
        }
        fprintf(out, ", \"layout\": \"%s\", \"block_size\": %lld", pa_bench_layout_name(s->layout),
                (long long)s->block_size);
        json_opt_number(out, "num_splits", r[i].num_splits, r[i].num_splits > 0);
        fprintf(out, ", \"device\": ");
        pa_json_string(out, dev->name);
        fprintf(out, ", \"reason\": ");
        pa_json_string(out, r[i].reason);
        fputc('}', out);
    }
    fprintf(out, "\n]}\n");
}

void pa_bench_write_list(FILE *out, const char *suite, const pa_bench_shape *shapes, int n_shapes,
                         const int *dtypes, int n_dtypes)
{
    fprintf(out, "suite,batch,heads_q,heads_kv,seq_q,seq_kv,head_dim,head_dim_v,mask,dtype,"
                 "layout,block_size\n");
    for (int i = 0; i < n_shapes; i++) {
        const pa_bench_shape *s = &shapes[i];
        for (int d = 0; d < n_dtypes; d++)
            fprintf(out, "%s,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%s,%s,%s,%lld\n", suite,
                    (long long)s->batch, (long long)s->heads_q, (long long)s->heads_kv,
                    (long long)s->seq_q, (long long)s->seq_kv, (long long)s->head_dim,
                    (long long)s->head_dim_v, polyattn_mask_name(s->mask),
                    polyattn_dtype_name((polyattn_dtype)dtypes[d]), pa_bench_layout_name(s->layout),
                    (long long)s->block_size);
    }
}

/* ---- backend comparison ---- */

#define CELL_WIDTH 19

static const pa_bench_result *find_result(const pa_bench_result *r, int n, int target, int index)
{
    for (int i = 0; i < n; i++)
        if (r[i].target == target && r[i].index == index) return &r[i];
    return NULL;
}

static void print_shape_cells(FILE *out, const pa_bench_result *r, const char *algo)
{
    const pa_bench_shape *s = &r->shape;
    /* A serving layout follows the algorithm: flash/cache, auto/paged16, flash/varlen. */
    char cell[40];
    if (s->layout == PA_BENCH_PAGED)
        snprintf(cell, sizeof cell, "%s/paged%lld", algo, (long long)s->block_size);
    else if (s->layout != PA_BENCH_DENSE)
        snprintf(cell, sizeof cell, "%s/%s", algo, pa_bench_layout_name(s->layout));
    else snprintf(cell, sizeof cell, "%s", algo);
    fprintf(out, "%-5lld %-4lld %-4lld %-6lld %-6lld %-5lld %-4s %-5s %-14s", (long long)s->batch,
            (long long)s->heads_q, (long long)s->heads_kv, (long long)s->seq_q,
            (long long)s->seq_kv, (long long)s->head_dim, mask_short(s->mask),
            polyattn_dtype_name(r->dtype), cell);
}

/* ms[t] < 0: not measured (text[t] says why).  Prints one row's cells and accumulates the
 * log-ratios for the geometric means. */
static void print_ratio_cells(FILE *out, int n_targets, int baseline, const double *ms,
                              char (*text)[CELL_WIDTH + 1], double *log_sum, int *log_n)
{
    double ref = -1;
    if (baseline >= 0) {
        ref = ms[baseline];
    } else {
        for (int t = 0; t < n_targets; t++)
            if (ms[t] > 0 && (ref < 0 || ms[t] < ref)) ref = ms[t];
    }
    for (int t = 0; t < n_targets; t++) {
        char cell[64];
        if (ms[t] > 0 && ref > 0) {
            snprintf(cell, sizeof cell, "%.4g (%.2fx)", ms[t], ms[t] / ref);
            log_sum[t] += log(ms[t] / ref);
            log_n[t]++;
        } else if (ms[t] > 0) {
            snprintf(cell, sizeof cell, "%.4g (-)", ms[t]);
        } else {
            snprintf(cell, sizeof cell, "%s", text[t]);
        }
        fprintf(out, " %*s", CELL_WIDTH, cell);
    }
    fputc('\n', out);
}

void pa_bench_print_comparison(FILE *out, const pa_bench_target *targets, int n_targets,
                               int baseline, const pa_bench_result *r, int n)
{
    if (n_targets <= 0 || n <= 0) return;
    int max_index = -1;
    for (int i = 0; i < n; i++)
        max_index = r[i].index > max_index ? r[i].index : max_index;
    double *ms = calloc((size_t)n_targets, sizeof *ms);
    double *log_sum = calloc((size_t)n_targets * 2, sizeof *log_sum);
    int *log_n = calloc((size_t)n_targets * 2, sizeof *log_n);
    char(*text)[CELL_WIDTH + 1] = calloc((size_t)n_targets, sizeof *text);
    if (!ms || !log_sum || !log_n || !text) {
        free(ms);
        free(log_sum);
        free(log_n);
        free(text);
        return;
    }
    fprintf(out, "\nBackend comparison%s: ms per call (ratio to %s%s); geometric means below\n",
            r[0].backward ? " (backward pass)" : "", baseline >= 0 ? "" : "the fastest",
            baseline >= 0 ? targets[baseline].label : "");
    for (int t = 0; t < n_targets; t++)
        fprintf(out, "  %-12s %s%s\n", targets[t].label,
                targets[t].opened ? targets[t].info.name : "(not opened)",
                t == baseline ? "  [baseline]" : "");
    char header[160];
    snprintf(header, sizeof header, "%-5s %-4s %-4s %-6s %-6s %-5s %-4s %-5s %-14s", "batch", "hq",
             "hkv", "seq_q", "seq_kv", "d", "mask", "dtype", "algo");
    fputs(header, out);
    for (int t = 0; t < n_targets; t++)
        fprintf(out, " %*s", CELL_WIDTH, targets[t].label);
    fputc('\n', out);

    /* Per algorithm: rows in the order measured. */
    for (int idx = 0; idx <= max_index; idx++) {
        const pa_bench_result *any = NULL;
        for (int t = 0; t < n_targets; t++) {
            const pa_bench_result *x = find_result(r, n, t, idx);
            ms[t] = -1;
            snprintf(text[t], CELL_WIDTH + 1, "-");
            if (!x) continue;
            any = any ? any : x;
            if (x->status == PA_BENCH_OK && x->ms > 0) ms[t] = x->ms;
            else snprintf(text[t], CELL_WIDTH + 1, "%s", pa_bench_status_name(x->status));
        }
        if (!any) continue;
        print_shape_cells(out, any, polyattn_algo_name(any->algo_asked));
        print_ratio_cells(out, n_targets, baseline, ms, text, log_sum, log_n);
    }

    /* Best algorithm of each target per (shape, dtype): the vendor comparison proper. */
    int printed_best = 0;
    for (int idx = 0; idx <= max_index; idx++) {
        const pa_bench_result *first = NULL;
        for (int t = 0; t < n_targets && !first; t++)
            first = find_result(r, n, t, idx);
        if (!first) continue;
        /* Only at the first index of each (shape, dtype) group. */
        int seen = 0;
        for (int j = 0; j < idx && !seen; j++) {
            const pa_bench_result *y = NULL;
            for (int t = 0; t < n_targets && !y; t++)
                y = find_result(r, n, t, j);
            seen = y && y->dtype == first->dtype &&
                   memcmp(&y->shape, &first->shape, sizeof y->shape) == 0;
        }
        if (seen) continue;
        if (!printed_best) {
            fprintf(out,
                    "best algorithm per target (ms, ratio; the winning algorithm after '/'):\n");
            printed_best = 1;
        }
        for (int t = 0; t < n_targets; t++) {
            ms[t] = -1;
            for (int i = 0; i < n; i++) {
                const pa_bench_result *x = &r[i];
                if (x->target != t || x->status != PA_BENCH_OK || !(x->ms > 0) ||
                    x->dtype != first->dtype ||
                    memcmp(&x->shape, &first->shape, sizeof x->shape) != 0)
                    continue;
                if (ms[t] < 0 || x->ms < ms[t]) ms[t] = x->ms;
            }
        }
        print_shape_cells(out, first, "best");
        double ref = -1;
        if (baseline >= 0) ref = ms[baseline];
        else
            for (int t = 0; t < n_targets; t++)
                if (ms[t] > 0 && (ref < 0 || ms[t] < ref)) ref = ms[t];
        for (int t = 0; t < n_targets; t++) {
            char cell[64];
            const char *winner = "";
            for (int i = 0; i < n; i++) {
                const pa_bench_result *x = &r[i];
                if (x->target == t && x->status == PA_BENCH_OK && x->ms == ms[t] &&
                    x->dtype == first->dtype &&
                    memcmp(&x->shape, &first->shape, sizeof x->shape) == 0) {
                    winner = polyattn_algo_name(x->algo);
                    break;
                }
            }
            if (ms[t] > 0 && ref > 0) {
                snprintf(cell, sizeof cell, "%.4g (%.2fx)/%.2s", ms[t], ms[t] / ref, winner);
                log_sum[n_targets + t] += log(ms[t] / ref);
                log_n[n_targets + t]++;
            } else if (ms[t] > 0) {
                snprintf(cell, sizeof cell, "%.4g (-)/%.2s", ms[t], winner);
            } else {
                snprintf(cell, sizeof cell, "-");
            }
            fprintf(out, " %*s", CELL_WIDTH, cell);
        }
        fputc('\n', out);
    }
    fprintf(out, "%-61s", "geomean ratio, per algorithm rows");
    for (int t = 0; t < n_targets; t++) {
        char cell[32] = "-";
        if (log_n[t])
            snprintf(cell, sizeof cell, "%.2fx (%d)", exp(log_sum[t] / log_n[t]), log_n[t]);
        fprintf(out, " %*s", CELL_WIDTH, cell);
    }
    fputc('\n', out);
    if (printed_best) {
        fprintf(out, "%-61s", "geomean ratio, best rows");
        for (int t = 0; t < n_targets; t++) {
            char cell[32] = "-";
            if (log_n[n_targets + t])
                snprintf(cell, sizeof cell, "%.2fx (%d)",
                         exp(log_sum[n_targets + t] / log_n[n_targets + t]), log_n[n_targets + t]);
            fprintf(out, " %*s", CELL_WIDTH, cell);
        }
        fputc('\n', out);
    }
    fprintf(out,
            "(cells: ms (ratio); best rows: /un unfused, /fu fused, /fl flash; a status when not "
            "measured; (n): rows in the mean)\n");
    free(ms);
    free(log_sum);
    free(log_n);
    free(text);
}
