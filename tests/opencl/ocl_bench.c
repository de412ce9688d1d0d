/*
 * ocl_bench: times polyattn's algorithms on one backend (default opencl) with device
 * events: random inputs (never zeros), rotated input sets so caches do not flatter,
 * warm-up, median of repeats.  Before timing, every algorithm's output on input set 0 is
 * compared with the first algorithm's (and checked finite).
 *
 *   ocl_bench [--backend opencl] [--suite seed|grid|tune|pocl|all] [--json FILE]
 *             [--algos unfused,fused,flash] [--max-seconds S]
 *
 * TFLOP/s counts 4*batch*heads*N*N*D (halved for causal), as the seed does.
 */
#include "pa_testkit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct shape {
    const char *suite;
    int64_t batch, heads, seq, dim;
    polyattn_dtype dtype;
    int causal;
} shape;

#define CHECK(x)                                                                              \
    do {                                                                                      \
        polyattn_status st_ = (x);                                                            \
        if (st_ != POLYATTN_STATUS_SUCCESS) {                                                 \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #x,                   \
                    polyattn_status_name(st_), ctx ? polyattn_context_last_error(ctx) : "");  \
            goto fail;                                                                        \
        }                                                                                     \
    } while (0)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static size_t add_shapes(shape *out, const char *suite)
{
    size_t n = 0;
    if (!strcmp(suite, "seed") || !strcmp(suite, "all")) {
        static const int64_t seed[5][3] = {
            {128, 512, 16}, {512, 768, 8}, {1024, 1024, 4}, {2048, 1024, 2}, {4096, 1024, 1}};
        for (int i = 0; i < 5; i++)
            out[n++] = (shape){"seed", seed[i][2], 1, seed[i][0], seed[i][1], POLYATTN_DTYPE_F32, 1};
    }
    if (!strcmp(suite, "grid") || !strcmp(suite, "all")) {
        for (int dt = 0; dt < 2; dt++)
            for (int causal = 0; causal < 2; causal++)
                for (int64_t d = 64; d <= 128; d *= 2)
                    for (int64_t seq = 1024; seq <= 8192; seq *= 2)
                        out[n++] = (shape){"grid", 4, 16, seq, d,
                                           dt ? POLYATTN_DTYPE_F16 : POLYATTN_DTYPE_F32, causal};
    }
    if (!strcmp(suite, "tune")) {
        out[n++] = (shape){"tune", 4, 16, 4096, 64, POLYATTN_DTYPE_F32, 0};
        out[n++] = (shape){"tune", 4, 16, 4096, 128, POLYATTN_DTYPE_F32, 0};
    }
    if (!strcmp(suite, "pocl")) {
        for (int causal = 0; causal < 2; causal++)
            out[n++] = (shape){"pocl", 1, 2, 2048, 64, POLYATTN_DTYPE_F32, causal};
    }
    return n;
}

static void fill(polyattn_buffer *buf, size_t n, polyattn_dtype dt, uint64_t seed)
{
    pa_tk_rng rng;
    pa_tk_rng_seed(&rng, seed);
    float *f = malloc(n * sizeof *f);
    void *raw = malloc(n * 4);
    for (size_t i = 0; i < n; i++) f[i] = (float)pa_tk_rng_uniform(&rng);
    pa_tk_encode(raw, f, n, dt);
    polyattn_buffer_write(buf, 0, raw, n * polyattn_dtype_size(dt));
    free(f);
    free(raw);
}

int main(int argc, char **argv)
{
    const char *backend_name = "opencl", *suite = "all", *json_path = NULL;
    const char *algos_arg = "unfused,fused,flash";
    double max_seconds = 1.0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend_name = argv[++i];
        else if (!strcmp(argv[i], "--suite") && i + 1 < argc) suite = argv[++i];
        else if (!strcmp(argv[i], "--json") && i + 1 < argc) json_path = argv[++i];
        else if (!strcmp(argv[i], "--algos") && i + 1 < argc) algos_arg = argv[++i];
        else if (!strcmp(argv[i], "--max-seconds") && i + 1 < argc) max_seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "ocl_bench: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    polyattn_backend backend = POLYATTN_BACKEND_OPENCL;
    for (int b = 1; b < POLYATTN_BACKEND_COUNT; b++)
        if (!strcmp(polyattn_backend_name((polyattn_backend)b), backend_name))
            backend = (polyattn_backend)b;
    polyattn_context *ctx = NULL;
    if (polyattn_context_create(backend, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "ocl_bench: no %s device: %s\n", backend_name, polyattn_last_error());
        return 77;
    }
    polyattn_device_info info = {.struct_size = sizeof info};
    polyattn_context_get_device_info(ctx, &info);
    FILE *js = json_path ? fopen(json_path, "w") : NULL;
    if (js) fprintf(js, "{\"device\": \"%s\", \"driver\": \"%s\", \"backend\": \"%s\", \"results\": [\n",
                    info.name, info.driver_version, backend_name);
    int first_json = 1;
    printf("device: %s (driver %s)\n", info.name, info.driver_version);
    printf("%-5s %5s %3s %5s %5s %4s %3s | %-7s %10s %8s %12s %9s\n", "suite", "batch", "hq",
           "N", "D", "dt", "cau", "algo", "ms", "TFLOP/s", "workspace", "maxdiff");

    shape shapes[64];
    size_t n_shapes = add_shapes(shapes, suite);
    polyattn_algo algos[3];
    int n_algos = 0;
    {
        char list[128];
        snprintf(list, sizeof list, "%s", algos_arg);
        for (char *tok = strtok(list, ","); tok && n_algos < 3; tok = strtok(NULL, ","))
            for (int a = 1; a < POLYATTN_ALGO_COUNT; a++)
                if (!strcmp(tok, polyattn_algo_name((polyattn_algo)a))) algos[n_algos++] = (polyattn_algo)a;
    }

    for (size_t si = 0; si < n_shapes; si++) {
        const shape *sh = &shapes[si];
        polyattn_attention_desc desc;
        polyattn_attention_desc_init(&desc, sh->dtype, sh->batch, sh->heads, sh->heads, sh->seq,
                                     sh->seq, sh->dim, sh->dim);
        desc.mask = sh->causal ? POLYATTN_MASK_CAUSAL_TOP_LEFT : POLYATTN_MASK_NONE;
        size_t elems = (size_t)(sh->batch * sh->heads * sh->seq * sh->dim);
        size_t bytes = elems * polyattn_dtype_size(sh->dtype);
        /* Rotate through enough input sets to exceed the last-level cache (>= 3, <= 1 GiB). */
        /* Rotate input sets until they exceed the last-level cache many times over (two
         * sets suffice once one set alone is far larger). */
        int n_sets = 3 * bytes > ((size_t)256 << 20) ? 2 : 3;
        while (n_sets < 8 && (size_t)n_sets * 3 * bytes < (size_t)256 << 20) n_sets++;
        polyattn_buffer *q[8] = {0}, *k[8] = {0}, *v[8] = {0}, *o = NULL, *ws = NULL;
        float *ref = NULL, *out = malloc(elems * 4);
        void *raw = malloc(bytes);
        for (int s = 0; s < n_sets; s++) {
            CHECK(polyattn_buffer_alloc(ctx, bytes, &q[s]));
            CHECK(polyattn_buffer_alloc(ctx, bytes, &k[s]));
            CHECK(polyattn_buffer_alloc(ctx, bytes, &v[s]));
            fill(q[s], elems, sh->dtype, 3 * (uint64_t)s + 1 + si * 100);
            fill(k[s], elems, sh->dtype, 3 * (uint64_t)s + 2 + si * 100);
            fill(v[s], elems, sh->dtype, 3 * (uint64_t)s + 3 + si * 100);
        }
        CHECK(polyattn_buffer_alloc(ctx, bytes, &o));
        double flops = 4.0 * (double)sh->batch * (double)sh->heads * (double)sh->seq *
                       (double)sh->seq * (double)sh->dim / (sh->causal ? 2.0 : 1.0);
        for (int ai = 0; ai < n_algos; ai++) {
            polyattn_plan_options opt;
            polyattn_plan_options_init(&opt);
            opt.algo = algos[ai];
            polyattn_plan *plan = NULL;
            polyattn_status pst = polyattn_plan_create(ctx, &desc, &opt, &plan);
            if (pst != POLYATTN_STATUS_SUCCESS) {
                printf("%-5s %5lld %3lld %5lld %5lld %4s %3d | %-7s unsupported: %s\n", sh->suite,
                       (long long)sh->batch, (long long)sh->heads, (long long)sh->seq,
                       (long long)sh->dim, polyattn_dtype_name(sh->dtype), sh->causal,
                       polyattn_algo_name(algos[ai]), polyattn_context_last_error(ctx));
                continue;
            }
            polyattn_plan_info pi = {.struct_size = sizeof pi};
            polyattn_plan_get_info(plan, &pi);
            if (pi.workspace_bytes) {
                pst = polyattn_buffer_alloc(ctx, pi.workspace_bytes, &ws);
                if (pst != POLYATTN_STATUS_SUCCESS) {
                    printf("%-7s workspace %llu bytes: %s\n", polyattn_algo_name(algos[ai]),
                           (unsigned long long)pi.workspace_bytes, polyattn_context_last_error(ctx));
                    polyattn_plan_destroy(plan);
                    continue;
                }
            }
            /* Validate on set 0: finite, and equal to the first algorithm's output. */
            pa_tk_poison(raw, elems, sh->dtype);
            CHECK(polyattn_buffer_write(o, 0, raw, bytes));
            pst = polyattn_forward(plan, q[0], k[0], v[0], o, NULL, NULL, ws);
            if (pst == POLYATTN_STATUS_SUCCESS) pst = polyattn_context_synchronize(ctx);
            if (pst != POLYATTN_STATUS_SUCCESS) {
                printf("%-5s %5lld %3lld %5lld %5lld %4s %3d | %-7s FAILED: %s\n", sh->suite,
                       (long long)sh->batch, (long long)sh->heads, (long long)sh->seq,
                       (long long)sh->dim, polyattn_dtype_name(sh->dtype), sh->causal,
                       polyattn_algo_name(algos[ai]), polyattn_context_last_error(ctx));
                polyattn_buffer_free(ws);
                ws = NULL;
                polyattn_plan_destroy(plan);
                continue;
            }
            CHECK(polyattn_buffer_read(o, 0, raw, bytes));
            pa_tk_decode(out, raw, elems, sh->dtype);
            double maxdiff = 0.0;
            long long bad = 0;
            for (size_t i = 0; i < elems; i++) {
                if (!isfinite(out[i])) bad++;
                if (ref) {
                    double dd = fabs((double)out[i] - (double)ref[i]);
                    if (!(dd <= maxdiff)) maxdiff = dd;
                }
            }
            if (!ref) {
                ref = out;
                out = malloc(elems * 4);
            }
            /* Warm-up, then repeats up to max_seconds. */
            polyattn_event *e0 = NULL, *e1 = NULL;
            CHECK(polyattn_event_create(ctx, &e0));
            CHECK(polyattn_event_create(ctx, &e1));
            double times[64];
            int reps = 0;
            CHECK(polyattn_forward(plan, q[1 % n_sets], k[1 % n_sets], v[1 % n_sets], o, NULL, NULL, ws));
            CHECK(polyattn_context_synchronize(ctx));
            double t_start = now_s();
            while (reps < 64 && (reps < 3 || (now_s() - t_start < max_seconds && reps < 25))) {
                int s = (reps + 2) % n_sets;
                CHECK(polyattn_event_record(e0));
                CHECK(polyattn_forward(plan, q[s], k[s], v[s], o, NULL, NULL, ws));
                CHECK(polyattn_event_record(e1));
                CHECK(polyattn_event_elapsed_ms(e0, e1, &times[reps]));
                reps++;
            }
            qsort(times, (size_t)reps, sizeof times[0], cmp_double);
            double ms = times[reps / 2];
            double tflops = flops / (ms * 1e-3) / 1e12;
            printf("%-5s %5lld %3lld %5lld %5lld %4s %3d | %-7s %10.3f %8.3f %12llu %9.2e%s\n",
                   sh->suite, (long long)sh->batch, (long long)sh->heads, (long long)sh->seq,
                   (long long)sh->dim, polyattn_dtype_name(sh->dtype), sh->causal,
                   polyattn_algo_name(algos[ai]), ms, tflops,
                   (unsigned long long)pi.workspace_bytes, maxdiff, bad ? "  NONFINITE" : "");
            fflush(stdout);
            if (js) {
                fprintf(js,
                        "%s  {\"suite\": \"%s\", \"batch\": %lld, \"heads\": %lld, \"seq\": %lld, "
                        "\"head_dim\": %lld, \"dtype\": \"%s\", \"causal\": %d, \"algo\": \"%s\", "
                        "\"ms\": %.5f, \"tflops\": %.4f, \"reps\": %d, \"workspace_bytes\": %llu, "
                        "\"max_abs_diff_vs_first_algo\": %.3e, \"nonfinite\": %lld}",
                        first_json ? "" : ",\n", sh->suite, (long long)sh->batch,
                        (long long)sh->heads, (long long)sh->seq, (long long)sh->dim,
                        polyattn_dtype_name(sh->dtype), sh->causal, polyattn_algo_name(algos[ai]),
                        ms, tflops, reps, (unsigned long long)pi.workspace_bytes, maxdiff, bad);
                first_json = 0;
                fflush(js);
            }
            polyattn_event_destroy(e0);
            polyattn_event_destroy(e1);
            polyattn_buffer_free(ws);
            ws = NULL;
            polyattn_plan_destroy(plan);
        }
        for (int s = 0; s < n_sets; s++) {
            polyattn_buffer_free(q[s]);
            polyattn_buffer_free(k[s]);
            polyattn_buffer_free(v[s]);
        }
        polyattn_buffer_free(o);
        free(ref);
        free(out);
        free(raw);
    }
    if (js) {
        fprintf(js, "\n]}\n");
        fclose(js);
    }
    polyattn_context_destroy(ctx);
    return 0;
fail:
    polyattn_context_destroy(ctx);
    return 1;
}
