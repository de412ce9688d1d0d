/*
 * ocl_bwd_bench: forward and backward times of the algorithms with a backward, on one
 * backend (default opencl), device events, random inputs, one warm-up, median of --reps.
 * Correctness is the conformance suite's job; this only times.
 *
 *   ocl_bwd_bench [--backend opencl] [--reps N] [--shape b,h,seq,d] [--causal] [--bf16]
 *                 [--dtype f32,f16,bf16] [--algo unfused,fused,flash] [--mask none,causal]
 *
 * Default dtypes f32 and bf16, algorithms unfused and flash, masks none and causal.  The
 * flash backward variant follows POLYATTN_OCL_BWD=tiled|rows (the library reads it).
 * Lines starting with "row" are one measurement each (for scripts).
 * Without --shape: a small PoCL-sized list.  GFLOP/s of the backward counts 2.5x the
 * forward's 4*batch*heads*N*N*D (halved for causal).
 */
#include "pa_testkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(x)                                                                              \
    do {                                                                                      \
        polyattn_status st_ = (x);                                                            \
        if (st_ != POLYATTN_STATUS_SUCCESS) {                                                 \
            fprintf(stderr, "%s:%d: %s: %s (%s)\n", __FILE__, __LINE__, #x,                   \
                    polyattn_status_name(st_), polyattn_context_last_error(ctx));             \
            goto fail;                                                                        \
        }                                                                                     \
    } while (0)

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static polyattn_status fill(polyattn_buffer *buf, size_t n, polyattn_dtype dt, uint64_t seed)
{
    float *f = malloc(n * sizeof *f);
    void *d = malloc(n * polyattn_dtype_size(dt));
    polyattn_status st = POLYATTN_STATUS_OUT_OF_MEMORY;
    if (f && d) {
        pa_tk_rng rng;
        pa_tk_rng_seed(&rng, seed);
        for (size_t i = 0; i < n; i++) f[i] = (float)pa_tk_rng_uniform(&rng);
        pa_tk_encode(d, f, n, dt);
        st = polyattn_buffer_write(buf, 0, d, n * polyattn_dtype_size(dt));
    }
    free(f);
    free(d);
    return st;
}

/* Median ms of reps calls (after one warm-up): backward when bwd, else forward. */
static polyattn_status time_calls(polyattn_context *ctx, polyattn_plan *plan, polyattn_buffer **b,
                                  polyattn_buffer *fws, polyattn_buffer *bws, int bwd, int reps,
                                  double *ms)
{
    polyattn_event *e0 = NULL, *e1 = NULL;
    double t[32];
    polyattn_status st = polyattn_event_create(ctx, &e0);
    if (!st) st = polyattn_event_create(ctx, &e1);
    for (int r = -1; !st && r < reps; r++) {
        st = polyattn_event_record(e0);
        if (!st)
            st = bwd ? polyattn_backward(plan, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                                         b[8], bws)
                     : polyattn_forward(plan, b[0], b[1], b[2], b[3], b[5], NULL, fws);
        if (!st) st = polyattn_event_record(e1);
        if (!st && r >= 0) st = polyattn_event_elapsed_ms(e0, e1, &t[r]);
    }
    if (!st) {
        qsort(t, (size_t)reps, sizeof t[0], cmp_double);
        *ms = t[reps / 2];
    }
    polyattn_event_destroy(e0);
    polyattn_event_destroy(e1);
    return st;
}

int main(int argc, char **argv)
{
    const char *backend_name = "opencl";
    int reps = 3, custom = 0;
    int dt_on[3] = {1, 0, 1}, algo_on[3] = {1, 0, 1}, mask_on[2] = {1, 1};
    int64_t shapes[8][4] = {{1, 4, 256, 64}, {1, 4, 512, 64}, {1, 8, 1024, 64}};
    int n_shapes = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend_name = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--causal")) mask_on[0] = 0;
        else if (!strcmp(argv[i], "--bf16")) dt_on[0] = dt_on[1] = 0, dt_on[2] = 1;
        else if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            const char *l = argv[++i];
            dt_on[0] = strstr(l, "f32") != NULL, dt_on[1] = strstr(l, "f16") != NULL;
            dt_on[2] = strstr(l, "bf16") != NULL;
        } else if (!strcmp(argv[i], "--algo") && i + 1 < argc) {
            const char *l = argv[++i];
            algo_on[0] = strstr(l, "unfused") != NULL;
            algo_on[1] = !strncmp(l, "fused", 5) || strstr(l, ",fused") != NULL; /* not unfused */
            algo_on[2] = strstr(l, "flash") != NULL;
        } else if (!strcmp(argv[i], "--mask") && i + 1 < argc) {
            const char *l = argv[++i];
            mask_on[0] = strstr(l, "none") != NULL, mask_on[1] = strstr(l, "causal") != NULL;
        }
        else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            long long s[4];
            if (sscanf(argv[++i], "%lld,%lld,%lld,%lld", &s[0], &s[1], &s[2], &s[3]) != 4) {
                fprintf(stderr, "ocl_bwd_bench: --shape b,h,seq,d\n");
                return 2;
            }
            if (!custom) n_shapes = 0;
            custom = 1;
            if (n_shapes < 8) {
                for (int j = 0; j < 4; j++) shapes[n_shapes][j] = s[j];
                n_shapes++;
            }
        } else {
            fprintf(stderr, "ocl_bwd_bench: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (reps > 32) reps = 32;
    polyattn_backend backend = POLYATTN_BACKEND_OPENCL;
    for (int bk = 1; bk < POLYATTN_BACKEND_COUNT; bk++)
        if (!strcmp(polyattn_backend_name((polyattn_backend)bk), backend_name))
            backend = (polyattn_backend)bk;
    int count = 0;
    if (polyattn_device_count(backend, &count, NULL) != 0 || count == 0) {
        fprintf(stderr, "ocl_bwd_bench: no %s device\n", backend_name);
        return PA_TK_SKIP;
    }
    polyattn_context *ctx = NULL;
    if (polyattn_context_create(backend, 0, &ctx) != 0) return 1;
    polyattn_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_context_get_device_info(ctx, &info);
    printf("device: %s (%s)\n", info.name, backend_name);
    const char *bwd_env = getenv("POLYATTN_OCL_BWD");
    printf("flash backward variant: %s\n", bwd_env ? bwd_env : "default (tiled on GPUs, rows on CPUs)");
    printf("%-3s %-20s %-4s %-6s %-7s %10s %10s %6s %10s\n", "", "shape b,h,seq,d", "dt", "mask",
           "algo", "fwd ms", "bwd ms", "b/f", "bwd GF/s");
    static const polyattn_algo algos[] = {POLYATTN_ALGO_UNFUSED, POLYATTN_ALGO_FUSED,
                                          POLYATTN_ALGO_FLASH};
    static const polyattn_dtype dts[] = {POLYATTN_DTYPE_F32, POLYATTN_DTYPE_F16,
                                         POLYATTN_DTYPE_BF16};
    for (int si = 0; si < n_shapes; si++)
        for (int di = 0; di < 3; di++)
            for (int causal = 0; causal < 2; causal++)
                for (int ai = 0; ai < 3; ai++) {
                    if (!dt_on[di] || !mask_on[causal] || !algo_on[ai]) continue;
                    const int64_t *s = shapes[si];
                    polyattn_dtype dt = dts[di];
                    polyattn_attention_desc desc;
                    polyattn_attention_desc_init(&desc, dt, s[0], s[1], s[1], s[2], s[2], s[3],
                                                 s[3]);
                    desc.mask = causal ? POLYATTN_MASK_CAUSAL_TOP_LEFT : POLYATTN_MASK_NONE;
                    polyattn_plan_options opt;
                    polyattn_plan_options_init(&opt);
                    opt.algo = algos[ai];
                    opt.want_backward = 1;
                    polyattn_plan *plan = NULL;
                    polyattn_buffer *b[9] = {0}, *fws = NULL, *bws = NULL;
                    polyattn_plan_info pi;
                    memset(&pi, 0, sizeof pi);
                    pi.struct_size = sizeof pi;
                    double fms = 0, bms = 0;
                    size_t n = (size_t)(s[0] * s[1] * s[2] * s[3]), es = polyattn_dtype_size(dt);
                    CHECK(polyattn_plan_create(ctx, &desc, &opt, &plan));
                    CHECK(polyattn_plan_get_info(plan, &pi));
                    for (int i = 0; i < 9; i++)
                        CHECK(polyattn_buffer_alloc(
                            ctx, i == 5 ? (uint64_t)(s[0] * s[1] * s[2]) * 4 : n * es, &b[i]));
                    if (pi.workspace_bytes)
                        CHECK(polyattn_buffer_alloc(ctx, pi.workspace_bytes, &fws));
                    if (pi.backward_workspace_bytes)
                        CHECK(polyattn_buffer_alloc(ctx, pi.backward_workspace_bytes, &bws));
                    for (int i = 0; i < 5; i++)
                        if (i != 3) CHECK(fill(b[i], n, dt, 1000u * (unsigned)si + (unsigned)i));
                    CHECK(time_calls(ctx, plan, b, fws, bws, 0, reps, &fms));
                    CHECK(time_calls(ctx, plan, b, fws, bws, 1, reps, &bms));
                    {
                        double flops = 2.5 * 4.0 * (double)s[0] * (double)s[1] * (double)s[2] *
                                       (double)s[2] * (double)s[3] * (causal ? 0.5 : 1.0);
                        char name[64];
                        snprintf(name, sizeof name, "%lld,%lld,%lld,%lld", (long long)s[0],
                                 (long long)s[1], (long long)s[2], (long long)s[3]);
                        printf("row %-20s %-4s %-6s %-7s %10.3f %10.3f %6.2f %10.2f\n", name,
                               polyattn_dtype_name(dt), causal ? "causal" : "none",
                               polyattn_algo_name(algos[ai]), fms, bms, bms / fms,
                               flops / (bms * 1e-3) / 1e9);
                    }
                fail:
                    for (int i = 0; i < 9; i++) polyattn_buffer_free(b[i]);
                    polyattn_buffer_free(fws);
                    polyattn_buffer_free(bws);
                    polyattn_plan_destroy(plan);
                    fflush(stdout);
                }
    polyattn_context_destroy(ctx);
    return 0;
}
