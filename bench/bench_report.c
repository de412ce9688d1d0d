/* Bench reports: a table on stdout, CSV and JSON files. */
#include "bench.h"

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
    double f = 4.0 * (double)s->batch * (double)s->heads_q * (double)s->seq_q *
               (double)s->seq_kv * (double)s->head_dim;
    return s->mask == POLYATTN_MASK_NONE ? f : f / 2;
}

static const char *mask_short(polyattn_mask m)
{
    return m == POLYATTN_MASK_NONE ? "none" : m == POLYATTN_MASK_CAUSAL_TOP_LEFT ? "tl" : "br";
}

void pa_bench_print_header(FILE *out)
{
    fprintf(out, "%-5s %-4s %-4s %-6s %-6s %-5s %-4s %-5s %-8s %-8s %10s %9s %9s %10s %10s "
                 "%8s %8s %s\n",
            "batch", "hq", "hkv", "seq_q", "seq_kv", "d", "mask", "dtype", "algo", "status",
            "ms", "TFLOP/s", "GB/s", "mem MiB", "est MiB", "speedup", "saved", "note");
}

void pa_bench_print_row(FILE *out, const pa_bench_result *r)
{
    const pa_bench_shape *s = &r->shape;
    char algo[24];
    if (r->algo_asked == POLYATTN_ALGO_AUTO && r->status == PA_BENCH_OK)
        snprintf(algo, sizeof algo, "auto>%s", polyattn_algo_name(r->algo));
    else
        snprintf(algo, sizeof algo, "%s", polyattn_algo_name(r->algo_asked));
    fprintf(out, "%-5lld %-4lld %-4lld %-6lld %-6lld %-5lld %-4s %-5s %-8s %-8s ",
            (long long)s->batch, (long long)s->heads_q, (long long)s->heads_kv,
            (long long)s->seq_q, (long long)s->seq_kv, (long long)s->head_dim,
            mask_short(s->mask), polyattn_dtype_name(r->dtype), algo,
            pa_bench_status_name(r->status));
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
    fprintf(out, "%10.4f %9.3f %9.2f %10.1f %10.1f %8s %8s err %.1e\n", r->ms, r->tflops,
            r->gbps, (double)r->mem_bytes / 1048576.0, (double)r->mem_estimate / 1048576.0,
            speedup, saved, r->max_err);
}

void pa_bench_compare_unfused(pa_bench_result *r, int n)
{
    for (int i = 0; i < n; i++) {
        r[i].speedup_vs_unfused = 0;
        r[i].mem_saved_vs_unfused = 0;
        if (r[i].status != PA_BENCH_OK)
            continue;
        for (int j = 0; j < n; j++) {
            if (r[j].status != PA_BENCH_OK || r[j].algo != POLYATTN_ALGO_UNFUSED ||
                r[j].dtype != r[i].dtype || memcmp(&r[j].shape, &r[i].shape, sizeof r[i].shape))
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
        if (*p == '"')
            fputc('"', out);
        fputc(*p == '\n' ? ' ' : *p, out);
    }
    fputc('"', out);
}

void pa_bench_write_csv(FILE *out, const char *suite, const polyattn_device_info *dev,
                        const pa_bench_result *r, int n)
{
    fprintf(out, "suite,backend,device,batch,heads_q,heads_kv,seq_q,seq_kv,head_dim,head_dim_v,mask,dtype,"
                 "algo_asked,algo,status,reps,ms,ms_min,ms_max,tflops,gbps,mem_bytes,"
                 "mem_estimate_bytes,workspace_bytes,max_err,rows_checked,speedup_vs_unfused,"
                 "mem_saved_vs_unfused,reason\n");
    for (int i = 0; i < n; i++) {
        const pa_bench_shape *s = &r[i].shape;
        fprintf(out, "%s,%s,", suite, polyattn_backend_name(dev->backend));
        csv_text(out, dev->name);
        fprintf(out, ",%lld,%lld,%lld,%lld,%lld,%lld,%lld,%s,%s,%s,%s,%s,", (long long)s->batch, (long long)s->heads_q, (long long)s->heads_kv,
                (long long)s->seq_q, (long long)s->seq_kv, (long long)s->head_dim,
                (long long)s->head_dim_v, polyattn_mask_name(s->mask),
                polyattn_dtype_name(r[i].dtype), polyattn_algo_name(r[i].algo_asked),
                polyattn_algo_name(r[i].algo), pa_bench_status_name(r[i].status));
        if (r[i].status == PA_BENCH_OK)
            fprintf(out, "%d,%.6g,%.6g,%.6g,%.6g,%.6g,%llu,", r[i].reps, r[i].ms, r[i].ms_min,
                    r[i].ms_max, r[i].tflops, r[i].gbps, (unsigned long long)r[i].mem_bytes);
        else
            fprintf(out, ",,,,,,,");
        fprintf(out, "%llu,%llu,", (unsigned long long)r[i].mem_estimate,
                (unsigned long long)r[i].workspace_bytes);
        if (r[i].rows_checked)
            fprintf(out, "%.3g,%d,", r[i].max_err, r[i].rows_checked);
        else
            fprintf(out, ",,");
        if (r[i].speedup_vs_unfused > 0)
            fprintf(out, "%.4g,%.4g,", r[i].speedup_vs_unfused, r[i].mem_saved_vs_unfused);
        else
            fprintf(out, ",,");
        csv_text(out, r[i].reason);
        fputc('\n', out);
    }
}

static void json_opt_number(FILE *out, const char *key, double value, int present)
{
    fprintf(out, ", \"%s\": ", key);
    if (present)
        pa_json_number(out, value);
    else
        fputs("null", out);
}

void pa_bench_write_json(FILE *out, const char *suite, const polyattn_device_info *dev,
                         int reps, int warmup, const pa_bench_result *r, int n)
{
    char date[32];
    time_t now = time(NULL);
    struct tm tm_utc;
    gmtime_r(&now, &tm_utc);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm_utc);
    fprintf(out, "{\"suite\": \"%s\", \"date\": \"%s\", \"polyattn_version\": \"%s\", "
                 "\"backend\": \"%s\", \"device_index\": %d, \"device\": ",
            suite, date, polyattn_version_string(), polyattn_backend_name(dev->backend),
            dev->index);
    pa_json_string(out, dev->name);
    fprintf(out, ", \"vendor\": ");
    pa_json_string(out, dev->vendor);
    fprintf(out, ", \"driver_version\": ");
    pa_json_string(out, dev->driver_version);
    fprintf(out, ", \"arch\": ");
    pa_json_string(out, dev->arch);
    fprintf(out, ", \"reps\": %d, \"warmup\": %d, \"flops_convention\": "
                 "\"4*batch*heads_q*seq_q*seq_kv*head_dim, halved when causal\", \"results\": [",
            reps, warmup);
    for (int i = 0; i < n; i++) {
        const pa_bench_shape *s = &r[i].shape;
        int ok = r[i].status == PA_BENCH_OK;
        fprintf(out, "%s\n  {\"batch\": %lld, \"heads_q\": %lld, \"heads_kv\": %lld, "
                     "\"seq_q\": %lld, \"seq_kv\": %lld, \"head_dim\": %lld, "
                     "\"head_dim_v\": %lld, \"mask\": \"%s\", \"dtype\": \"%s\", "
                     "\"algo_asked\": \"%s\", \"algo\": \"%s\", \"status\": \"%s\"",
                i ? "," : "", (long long)s->batch, (long long)s->heads_q,
                (long long)s->heads_kv, (long long)s->seq_q, (long long)s->seq_kv,
                (long long)s->head_dim, (long long)s->head_dim_v, polyattn_mask_name(s->mask),
                polyattn_dtype_name(r[i].dtype), polyattn_algo_name(r[i].algo_asked),
                polyattn_algo_name(r[i].algo), pa_bench_status_name(r[i].status));
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
        fprintf(out, ", \"reason\": ");
        pa_json_string(out, r[i].reason);
        fputc('}', out);
    }
    fprintf(out, "\n]}\n");
}
