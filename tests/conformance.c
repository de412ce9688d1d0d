/*
 * conformance --backend host|cuda|hip|opencl [--device N] [--algo X] [--dtype X]
 *             [--case NAME] [--seed N] [--backward] [--list]
 *
 * Every algorithm x dtype x case of the shared table on one device: fresh inputs per
 * combination, poisoned outputs, every element compared with the host reference (double
 * accumulation on the same rounded inputs).  One line per combination:
 *   PASS / FAIL / UNSUPPORTED (with the backend's reason).
 * An algorithm the backend rejects is reported, not failed, except that a "must support"
 * case fails when every algorithm is rejected, and on GPU backends when flash is (not
 * under POLYATTN_FORCE, which narrows what runs by design; such a run must pass a case).
 * --backward: the same table through polyattn_backward instead (plans with want_backward;
 * dQ, dK and dV compared with the host unfused backward, exact in double).  An algorithm
 * without a backward is UNSUPPORTED, printed and not failed (no must-support rule yet).
 * Score-variant cases (window, softcap, ALiBi, bias, attn_mask, sinks; pa_tk_case_variants)
 * pass their tensors through polyattn_forward_ex/backward_ex; the backward also compares
 * d_bias and d_sinks.  A backend that rejects a variant reports UNSUPPORTED, not a failure,
 * except the backward of CUDA and HIP, whose every algorithm takes every variant: there a
 * rejected variant case fails (not under POLYATTN_FORCE).
 * Exit: 0 all good, 1 any failure, 2 bad arguments, 77 no such device.
 */
#define _POSIX_C_SOURCE 200809L
#include "pa_testkit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int parse_backend(const char *s, polyattn_backend *b)
{
    int i;
    for (i = 0; i < POLYATTN_BACKEND_COUNT; i++)
        if (strcmp(s, polyattn_backend_name((polyattn_backend)i)) == 0) {
            *b = (polyattn_backend)i;
            return 1;
        }
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: conformance --backend host|cuda|hip|opencl [--device N] "
                    "[--algo auto|unfused|fused|flash] [--dtype f32|f16|bf16] [--case NAME] "
                    "[--seed N] [--backward] [--list]\n");
}

/* Algorithms with a workspace must refuse a missing or short one before launching
 * anything (the host has none, so this is checked here, per backend).  Returns failures. */
static int check_workspace_rejection(polyattn_context *ctx, const polyattn_algo *algos, int n_algos)
{
    const pa_tk_case *c = pa_tk_find_case("odd_37x53_d32");
    polyattn_attention_desc desc;
    int a, failures = 0;
    pa_tk_case_desc(c, POLYATTN_DTYPE_F32, &desc);
    for (a = 0; a < n_algos; a++) {
        polyattn_plan_options opt;
        polyattn_plan_info info;
        polyattn_plan *plan = NULL;
        polyattn_buffer *q = NULL, *k = NULL, *v = NULL, *o = NULL, *ws = NULL;
        polyattn_status st_null, st_short;
        polyattn_plan_options_init(&opt);
        opt.algo = algos[a];
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        if (polyattn_plan_create(ctx, &desc, &opt, &plan) != POLYATTN_STATUS_SUCCESS)
            continue; /* reported by the main loop */
        if (polyattn_plan_get_info(plan, &info) != POLYATTN_STATUS_SUCCESS ||
            info.workspace_bytes == 0 ||
            polyattn_buffer_alloc(ctx, polyattn_tensor_desc_bytes(&desc.q), &q) ||
            polyattn_buffer_alloc(ctx, polyattn_tensor_desc_bytes(&desc.k), &k) ||
            polyattn_buffer_alloc(ctx, polyattn_tensor_desc_bytes(&desc.v), &v) ||
            polyattn_buffer_alloc(ctx, polyattn_tensor_desc_bytes(&desc.o), &o) ||
            (info.workspace_bytes > 1 &&
             polyattn_buffer_alloc(ctx, info.workspace_bytes - 1, &ws))) {
            polyattn_buffer_free(q), polyattn_buffer_free(k), polyattn_buffer_free(v);
            polyattn_buffer_free(o), polyattn_buffer_free(ws);
            polyattn_plan_destroy(plan);
            continue;
        }
        st_null = polyattn_forward(plan, q, k, v, o, NULL, NULL, NULL);
        const int null_named = strstr(polyattn_context_last_error(ctx), "workspace") != NULL;
        st_short = ws ? polyattn_forward(plan, q, k, v, o, NULL, NULL, ws)
                      : POLYATTN_STATUS_INVALID_ARGUMENT;
        const int short_named =
            !ws || strstr(polyattn_context_last_error(ctx), "workspace") != NULL;
        if (st_null != POLYATTN_STATUS_INVALID_ARGUMENT ||
            st_short != POLYATTN_STATUS_INVALID_ARGUMENT || !null_named || !short_named) {
            printf("FAIL        %-28s f32  %-7s : a missing or short workspace (%llu B needed) was "
                   "not "
                   "rejected with a message naming it: %s / %s\n",
                   "workspace-check", polyattn_algo_name(algos[a]),
                   (unsigned long long)info.workspace_bytes, polyattn_status_name(st_null),
                   polyattn_status_name(st_short));
            failures++;
        } else {
            printf("PASS        %-28s f32  %-7s : missing and short workspace rejected\n",
                   "workspace-check", polyattn_algo_name(algos[a]));
        }
        polyattn_context_synchronize(ctx);
        polyattn_buffer_free(q), polyattn_buffer_free(k), polyattn_buffer_free(v);
        polyattn_buffer_free(o), polyattn_buffer_free(ws);
        polyattn_plan_destroy(plan);
    }
    return failures;
}

/* A backward with a workspace must refuse a missing or short one before launching
 * anything, naming it (the host needs none).  Returns failures. */
static int check_backward_workspace_rejection(polyattn_context *ctx, const polyattn_algo *algos,
                                              int n_algos)
{
    const pa_tk_case *c = pa_tk_find_case("odd_37x53_d32");
    polyattn_attention_desc desc;
    int failures = 0;
    pa_tk_case_desc(c, POLYATTN_DTYPE_F32, &desc);
    const uint64_t qb = polyattn_tensor_desc_bytes(&desc.q),
                   kb = polyattn_tensor_desc_bytes(&desc.k),
                   vb = polyattn_tensor_desc_bytes(&desc.v),
                   ob = polyattn_tensor_desc_bytes(&desc.o),
                   lb = (uint64_t)(desc.q.shape[0] * desc.q.shape[1] * desc.q.shape[2]) * 4;
    for (int a = 0; a < n_algos; a++) {
        polyattn_plan_options opt;
        polyattn_plan_info info;
        polyattn_plan *plan = NULL;
        polyattn_buffer *b[9] = {NULL}, *ws = NULL;
        const uint64_t bytes[9] = {qb, kb, vb, ob, ob, lb, qb, kb, vb};
        int ok = 1;
        polyattn_plan_options_init(&opt);
        opt.algo = algos[a];
        opt.want_backward = 1;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        if (polyattn_plan_create(ctx, &desc, &opt, &plan) != POLYATTN_STATUS_SUCCESS)
            continue; /* reported by the table */
        if (polyattn_plan_get_info(plan, &info) != POLYATTN_STATUS_SUCCESS ||
            info.backward_workspace_bytes == 0)
            ok = 0;
        for (int i = 0; i < 9 && ok; i++)
            ok = polyattn_buffer_alloc(ctx, bytes[i], &b[i]) == POLYATTN_STATUS_SUCCESS;
        if (ok && info.backward_workspace_bytes > 1)
            ok = polyattn_buffer_alloc(ctx, info.backward_workspace_bytes - 1, &ws) ==
                 POLYATTN_STATUS_SUCCESS;
        if (ok) {
            polyattn_status st_null =
                polyattn_backward(plan, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], NULL);
            const int null_named = strstr(polyattn_context_last_error(ctx), "workspace") != NULL;
            polyattn_status st_short = ws ? polyattn_backward(plan, b[0], b[1], b[2], b[3], b[4],
                                                              b[5], b[6], b[7], b[8], ws)
                                          : POLYATTN_STATUS_INVALID_ARGUMENT;
            const int short_named =
                !ws || strstr(polyattn_context_last_error(ctx), "workspace") != NULL;
            if (st_null != POLYATTN_STATUS_INVALID_ARGUMENT ||
                st_short != POLYATTN_STATUS_INVALID_ARGUMENT || !null_named || !short_named) {
                printf(
                    "FAIL        %-28s f32  %-7s : a missing or short backward workspace (%llu B) "
                    "was not rejected with a message naming it: %s / %s\n",
                    "backward-workspace-check", polyattn_algo_name(algos[a]),
                    (unsigned long long)info.backward_workspace_bytes,
                    polyattn_status_name(st_null), polyattn_status_name(st_short));
                failures++;
            } else {
                printf(
                    "PASS        %-28s f32  %-7s : missing and short backward workspace rejected\n",
                    "backward-workspace-check", polyattn_algo_name(algos[a]));
            }
        }
        polyattn_context_synchronize(ctx);
        for (int i = 0; i < 9; i++)
            polyattn_buffer_free(b[i]);
        polyattn_buffer_free(ws);
        polyattn_plan_destroy(plan);
    }
    return failures;
}

/* The backward over the table: one line per case x dtype x algo.  Returns failures and
 * adds to *passed and *unsupported. */
static int backward_suite(polyattn_context *ctx, const polyattn_device_info *info,
                          const char *only_case, const polyattn_algo *algos, int n_algos,
                          const polyattn_dtype *dtypes, int n_dtypes, unsigned long long seed,
                          int variants_required, int *passed, int *unsupported)
{
    size_t n_cases, ci;
    const pa_tk_case *cases = pa_tk_cases(&n_cases);
    int failed = 0;
    for (ci = 0; ci < n_cases; ci++) {
        const pa_tk_case *c = &cases[ci];
        int di, ai;
        if (only_case && strcmp(only_case, c->name) != 0) continue;
        for (di = 0; di < n_dtypes; di++) {
            const polyattn_dtype dtype = dtypes[di];
            if ((dtype == POLYATTN_DTYPE_F16 && !info->f16_storage) ||
                (dtype == POLYATTN_DTYPE_BF16 && !info->bf16_storage)) {
                printf("UNSUPPORTED %-28s %-4s *       : the device has no %s storage\n", c->name,
                       polyattn_dtype_name(dtype), polyattn_dtype_name(dtype));
                (*unsupported)++;
                continue;
            }
            for (ai = 0; ai < n_algos; ai++) {
                const polyattn_algo algo = algos[ai];
                pa_tk_problem p;
                pa_tk_backward_result r;
                polyattn_status st;
                double t0 = now_ms();
                st = pa_tk_problem_init(&p, c, dtype, seed * 16 + (unsigned)algo);
                if (st != POLYATTN_STATUS_SUCCESS) {
                    printf("FAIL        %-28s %-4s %-7s : cannot build the inputs: %s\n", c->name,
                           polyattn_dtype_name(dtype), polyattn_algo_name(algo),
                           polyattn_status_name(st));
                    failed++;
                    continue;
                }
                st = pa_tk_run_backward(ctx, &p, algo, 0, &r);
                if (!r.planned && st == POLYATTN_STATUS_UNSUPPORTED && variants_required &&
                    pa_tk_case_variants(c)) {
                    printf("FAIL        %-28s %-4s %-7s : the backward must take every score "
                           "variant here: %s\n",
                           c->name, polyattn_dtype_name(dtype), polyattn_algo_name(algo),
                           r.message);
                    failed++;
                } else if (!r.planned && st == POLYATTN_STATUS_UNSUPPORTED) {
                    printf("UNSUPPORTED %-28s %-4s %-7s : %s\n", c->name,
                           polyattn_dtype_name(dtype), polyattn_algo_name(algo), r.message);
                    (*unsupported)++;
                } else if (st != POLYATTN_STATUS_SUCCESS || !r.pass) {
                    printf("FAIL        %-28s %-4s %-7s : %s%s%s dQ %.3g dK %.3g dV %.3g (rel; tol "
                           "%.0e + condition)\n",
                           c->name, polyattn_dtype_name(dtype), polyattn_algo_name(algo),
                           st != POLYATTN_STATUS_SUCCESS ? polyattn_status_name(st) : "",
                           st != POLYATTN_STATUS_SUCCESS ? ": " : "", r.message, r.dq_max_rel,
                           r.dk_max_rel, r.dv_max_rel, r.tolerance);
                    failed++;
                } else {
                    char var_text[96] = "";
                    if (p.bias_data || p.sinks)
                        snprintf(var_text, sizeof var_text, " d_bias %.3g d_sinks %.3g",
                                 r.d_bias_max_rel, r.d_sinks_max_rel);
                    printf("PASS        %-28s %-4s %-7s : backward dQ %.3g dK %.3g dV %.3g%s (rel; "
                           "tol %.0e + condition)  [%s, ws %llu B, %.0f ms]\n",
                           c->name, polyattn_dtype_name(dtype), polyattn_algo_name(algo),
                           r.dq_max_rel, r.dk_max_rel, r.dv_max_rel, var_text, r.tolerance,
                           polyattn_algo_name(r.algo),
                           (unsigned long long)r.backward_workspace_bytes, now_ms() - t0);
                    (*passed)++;
                }
                fflush(stdout);
                pa_tk_problem_free(&p);
            }
        }
    }
    return failed;
}

int main(int argc, char **argv)
{
    polyattn_backend backend = POLYATTN_BACKEND_HOST;
    int device = 0, have_backend = 0, list = 0, backward = 0, i, n_algos = 0, n_dtypes = 0,
        count = 0;
    polyattn_algo algos[4];
    polyattn_dtype dtypes[3];
    const char *only_case = NULL, *reason = NULL;
    unsigned long long seed = 1;
    size_t n_cases, ci;
    const pa_tk_case *cases = pa_tk_cases(&n_cases);
    polyattn_context *ctx = NULL;
    polyattn_device_info info;
    int passed = 0, failed = 0, unsupported = 0, gpu;
    const char *forced; /* POLYATTN_FORCE, or NULL */
    double t_start = now_ms();

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--list") == 0) {
            list = 1;
            continue;
        }
        if (strcmp(a, "--backward") == 0) {
            backward = 1;
            continue;
        }
        if (!v) {
            fprintf(stderr, "conformance: %s needs a value\n", a);
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--backend") == 0) {
            if (!parse_backend(v, &backend) || backend == POLYATTN_BACKEND_AUTO) {
                fprintf(stderr, "conformance: --backend: unknown backend '%s'\n", v);
                return 2;
            }
            have_backend = 1;
        } else if (strcmp(a, "--device") == 0) {
            device = atoi(v);
        } else if (strcmp(a, "--algo") == 0) {
            int k, found = 0;
            for (k = 0; k < POLYATTN_ALGO_COUNT; k++)
                if (strcmp(v, polyattn_algo_name((polyattn_algo)k)) == 0)
                    algos[n_algos++] = (polyattn_algo)k, found = 1;
            if (!found || n_algos > 3) {
                fprintf(stderr, "conformance: --algo: unknown algorithm '%s'\n", v);
                return 2;
            }
        } else if (strcmp(a, "--dtype") == 0) {
            int k, found = 0;
            for (k = 0; k < 3; k++)
                if (strcmp(v, polyattn_dtype_name((polyattn_dtype)k)) == 0)
                    dtypes[n_dtypes++] = (polyattn_dtype)k, found = 1;
            if (!found || n_dtypes > 2) {
                fprintf(stderr, "conformance: --dtype: unknown dtype '%s'\n", v);
                return 2;
            }
        } else if (strcmp(a, "--case") == 0) {
            if (!pa_tk_find_case(v)) {
                fprintf(stderr, "conformance: --case: no case named '%s' (see --list)\n", v);
                return 2;
            }
            only_case = v;
        } else if (strcmp(a, "--seed") == 0) {
            seed = strtoull(v, NULL, 10);
        } else {
            fprintf(stderr, "conformance: unknown argument '%s'\n", a);
            usage();
            return 2;
        }
    }
    if (list) {
        for (ci = 0; ci < n_cases; ci++) {
            const pa_tk_case *c = &cases[ci];
            printf("%-28s batch=%lld heads_q=%lld heads_kv=%lld seq_q=%lld seq_kv=%lld "
                   "head_dim=%lld head_dim_v=%lld mask=%s layout=%s scale=%g magnitude=%g\n",
                   c->name, (long long)c->batch, (long long)c->heads_q, (long long)c->heads_kv,
                   (long long)c->seq_q, (long long)c->seq_kv, (long long)c->head_dim,
                   (long long)c->head_dim_v, polyattn_mask_name(c->mask),
                   pa_tk_layout_name(c->layout), (double)c->scale, (double)c->magnitude);
        }
        return 0;
    }
    if (!have_backend) {
        usage();
        return 2;
    }
    if (n_algos == 0) {
        algos[0] = POLYATTN_ALGO_UNFUSED, algos[1] = POLYATTN_ALGO_FUSED,
        algos[2] = POLYATTN_ALGO_FLASH;
        n_algos = 3;
    }
    if (n_dtypes == 0) {
        dtypes[0] = POLYATTN_DTYPE_F32, dtypes[1] = POLYATTN_DTYPE_F16,
        dtypes[2] = POLYATTN_DTYPE_BF16;
        n_dtypes = 3;
    }
    gpu = backend != POLYATTN_BACKEND_HOST;
    forced =
        getenv("POLYATTN_FORCE") && *getenv("POLYATTN_FORCE") ? getenv("POLYATTN_FORCE") : NULL;

    if (polyattn_device_count(backend, &count, &reason) != POLYATTN_STATUS_SUCCESS ||
        count <= device) {
        printf("SKIP: %s device %d absent (%d device(s)%s%s)\n", polyattn_backend_name(backend),
               device, count, reason ? ": " : "", reason ? reason : "");
        return PA_TK_SKIP;
    }
    if (polyattn_context_create(backend, device, &ctx) != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "FAIL: cannot open %s device %d: %s\n", polyattn_backend_name(backend),
                device, polyattn_last_error());
        return 1;
    }
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_context_get_device_info(ctx, &info);
    printf("conformance: %s device %d: %s (%s)\n", polyattn_backend_name(backend), device,
           info.name, info.driver_version);

    if (backward) {
        if (!only_case) failed += check_backward_workspace_rejection(ctx, algos, n_algos);
        const int variants_required =
            (backend == POLYATTN_BACKEND_CUDA || backend == POLYATTN_BACKEND_HIP) && !forced;
        failed += backward_suite(ctx, &info, only_case, algos, n_algos, dtypes, n_dtypes, seed,
                                 variants_required, &passed, &unsupported);
        n_cases = 0; /* the forward loop below is skipped */
    } else if (!only_case) failed += check_workspace_rejection(ctx, algos, n_algos);
    for (ci = 0; ci < n_cases; ci++) {
        const pa_tk_case *c = &cases[ci];
        int di, ai;
        if (only_case && strcmp(only_case, c->name) != 0) continue;
        for (di = 0; di < n_dtypes; di++) {
            const polyattn_dtype dtype = dtypes[di];
            int ran = 0, rejected_flash = 0, tried_flash = 0;
            if ((dtype == POLYATTN_DTYPE_F16 && !info.f16_storage) ||
                (dtype == POLYATTN_DTYPE_BF16 && !info.bf16_storage)) {
                printf("UNSUPPORTED %-28s %-4s *       : the device has no %s storage\n", c->name,
                       polyattn_dtype_name(dtype), polyattn_dtype_name(dtype));
                unsupported++;
                continue;
            }
            for (ai = 0; ai < n_algos; ai++) {
                const polyattn_algo algo = algos[ai];
                pa_tk_problem p;
                pa_tk_result r;
                polyattn_status st;
                double t0 = now_ms();
                const char *outputs = "O,LSE,P";
                if (algo == POLYATTN_ALGO_FLASH) tried_flash = 1;
                /* fresh inputs for every combination */
                st = pa_tk_problem_init(&p, c, dtype, seed * 16 + (unsigned)algo);
                if (st != POLYATTN_STATUS_SUCCESS) {
                    printf("FAIL        %-28s %-4s %-7s : cannot build the inputs: %s\n", c->name,
                           polyattn_dtype_name(dtype), polyattn_algo_name(algo),
                           polyattn_status_name(st));
                    failed++;
                    continue;
                }
                /* probabilities when the algorithm offers them, else O and LSE */
                st = pa_tk_run(ctx, &p, algo, 1, 1, &r);
                if (!r.planned && st == POLYATTN_STATUS_UNSUPPORTED) {
                    st = pa_tk_run(ctx, &p, algo, 1, 0, &r);
                    outputs = "O,LSE";
                }
                if (!r.planned && st == POLYATTN_STATUS_UNSUPPORTED) {
                    printf("UNSUPPORTED %-28s %-4s %-7s : %s\n", c->name,
                           polyattn_dtype_name(dtype), polyattn_algo_name(algo), r.message);
                    unsupported++;
                    if (algo == POLYATTN_ALGO_FLASH) rejected_flash = 1;
                } else if (st != POLYATTN_STATUS_SUCCESS || !r.pass) {
                    printf(
                        "FAIL        %-28s %-4s %-7s : %s%s%s O err %.3g (rel %.3g) LSE err %.3g "
                        "P err %.3g\n",
                        c->name, polyattn_dtype_name(dtype), polyattn_algo_name(algo),
                        st != POLYATTN_STATUS_SUCCESS ? polyattn_status_name(st) : "",
                        st != POLYATTN_STATUS_SUCCESS ? ": " : "", r.message, r.o_max_abs,
                        r.o_max_rel, r.lse_max_abs, r.probs_max_abs);
                    failed++;
                    ran = 1;
                } else {
                    char perr[32] = "-";
                    if (r.checked_probs) snprintf(perr, sizeof perr, "%.3g", r.probs_max_abs);
                    printf("PASS        %-28s %-4s %-7s : %-7s O err %.3g (rel %.3g) LSE err %.3g "
                           "P err %s  [%s, ws %llu B, %.0f ms]\n",
                           c->name, polyattn_dtype_name(dtype), polyattn_algo_name(algo), outputs,
                           r.o_max_abs, r.o_max_rel, r.lse_max_abs, perr,
                           polyattn_algo_name(r.algo), (unsigned long long)r.workspace_bytes,
                           now_ms() - t0);
                    passed++;
                    ran = 1;
                }
                fflush(stdout);
                pa_tk_problem_free(&p);
            }
            /* A forced path (POLYATTN_FORCE) narrows what runs by design: its rejections
             * are reported; the run must still pass some case (checked at the end). */
            if (c->must_support && n_algos >= 3 && !ran && !forced) {
                printf("FAIL        %-28s %-4s *       : a must-support case that every algorithm "
                       "tried rejected\n",
                       c->name, polyattn_dtype_name(dtype));
                failed++;
            }
            if (c->must_support && gpu && tried_flash && rejected_flash && !forced) {
                printf("FAIL        %-28s %-4s flash   : GPU backends must run every "
                       "must-support case with flash\n",
                       c->name, polyattn_dtype_name(dtype));
                failed++;
            }
        }
    }
    if (forced && passed == 0) {
        printf("FAIL: POLYATTN_FORCE=%s ran no case at all\n", forced);
        failed++;
    }
    printf("conformance%s %s: %d passed, %d failed, %d unsupported (%.1f s)\n",
           backward ? " --backward" : "", polyattn_backend_name(backend), passed, failed,
           unsupported, (now_ms() - t_start) / 1e3);
    polyattn_context_destroy(ctx);
    pa_tk_shutdown();
    return failed ? 1 : 0;
}
