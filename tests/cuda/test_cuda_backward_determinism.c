/*
 * Deterministic backward on CUDA: a plan made with want_backward and deterministic runs
 * polyattn_backward 10 times on the same inputs; dQ, dK and dV must be bitwise identical
 * every time (outputs are poisoned before each run, so a stale result cannot pass), and
 * finite and not all zero.  Shapes: GQA with a bottom-right causal mask (head dim 64) and
 * GQA with a top-left causal mask (head dim 128), odd sequence lengths: both reach the
 * tensor-core flash backward in f16/bf16 and the SIMT one in f32.
 * Every algorithm the CUDA backend offers a backward for is tried; the others are listed
 * as UNSUPPORTED.  Then, for flash and fused, deterministic and atomic (default) modes
 * both agree with the host reference (testkit, every element) on a few table cases.
 * Exits 77 without a CUDA device.
 */
#include "pa_testkit.h"
#include "polyattn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { RUNS = 10 };

static unsigned long long rng = 987654321;
static float uniform(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static void encode(void *dst, size_t n, polyattn_dtype t)
{
    for (size_t i = 0; i < n; i++) {
        float x = uniform();
        if (t == POLYATTN_DTYPE_F32) {
            ((float *)dst)[i] = x;
        } else {
            unsigned int u;
            memcpy(&u, &x, 4);
            /* bf16 by truncation and f16 via the exact small-integer grid: any value works */
            if (t == POLYATTN_DTYPE_BF16) {
                ((unsigned short *)dst)[i] = (unsigned short)(u >> 16);
            } else {
                /* f16 of k/1024 for |k| < 1024: sign, exponent, mantissa built exactly */
                int k = (int)(x * 1023.0f);
                unsigned short h = 0;
                if (k != 0) {
                    unsigned int a = (unsigned int)(k < 0 ? -k : k);
                    int e = 0;
                    while ((a >> e) > 1)
                        e++;
                    /* value a * 2^-10 = 1.m * 2^(e-10) */
                    unsigned int mant = (a << (10 - e)) & 0x3ffu;
                    h = (unsigned short)(((unsigned int)(e - 10 + 15) << 10) | mant);
                    if (k < 0) h |= 0x8000u;
                }
                ((unsigned short *)dst)[i] = h;
            }
        }
    }
}

typedef struct det_shape {
    const char *name;
    int64_t batch, heads_q, heads_kv, seq_q, seq_kv, hd;
    polyattn_mask mask;
} det_shape;

static const det_shape shapes[2] = {
    {"gqa2_br_201x333_d64", 2, 4, 2, 201, 333, 64, POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT},
    {"gqa4_tl_197x197_d128", 1, 8, 2, 197, 197, 128, POLYATTN_MASK_CAUSAL_TOP_LEFT},
};

static int run_case(polyattn_context *ctx, const det_shape *sh, polyattn_dtype dtype,
                    polyattn_algo algo, int *unsupported)
{
    const int64_t batch = sh->batch, heads_q = sh->heads_q, heads_kv = sh->heads_kv,
                  seq_q = sh->seq_q, seq_kv = sh->seq_kv, hd = sh->hd;
    polyattn_attention_desc desc;
    polyattn_attention_desc_init(&desc, dtype, batch, heads_q, heads_kv, seq_q, seq_kv, hd, hd);
    desc.mask = sh->mask;
    const size_t es = polyattn_dtype_size(dtype);
    const size_t nq = (size_t)(batch * heads_q * seq_q * hd),
                 nk = (size_t)(batch * heads_kv * seq_kv * hd);
    const size_t nl = (size_t)(batch * heads_q * seq_q);
    const size_t bytes[3] = {nq * es, nk * es, nk * es};
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_lse = 1;
    opt.want_backward = 1;
    opt.deterministic = 1;
    polyattn_plan *plan = NULL;
    polyattn_status st = polyattn_plan_create(ctx, &desc, &opt, &plan);
    if (st == POLYATTN_STATUS_UNSUPPORTED) {
        printf("UNSUPPORTED %-20s %-7s %-4s : %s\n", sh->name, polyattn_algo_name(algo),
               polyattn_dtype_name(dtype), polyattn_context_last_error(ctx));
        ++*unsupported;
        return 0;
    }
    if (st) {
        printf("FAIL %s %s: plan: %s\n", polyattn_algo_name(algo), polyattn_dtype_name(dtype),
               polyattn_context_last_error(ctx));
        return 1;
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_plan_get_info(plan, &info);

    polyattn_buffer *b[11] = {NULL}; /* q k v o do lse dq dk dv ws bws */
    void *host_in = malloc(nq * es), *first[3], *now[3], *poison = malloc(nq * es);
    int bad = !host_in || !poison;
    for (int i = 0; i < 3; i++) {
        first[i] = malloc(bytes[i]);
        now[i] = malloc(bytes[i]);
        bad = bad || !first[i] || !now[i];
    }
    const size_t sizes[9] = {nq * es, nk * es, nk * es, nq * es, nq * es,
                             nl * 4,  nq * es, nk * es, nk * es};
    for (int i = 0; i < 9 && !bad; i++)
        bad = polyattn_buffer_alloc(ctx, sizes[i], &b[i]) != 0;
    if (!bad && info.workspace_bytes) bad = polyattn_buffer_alloc(ctx, info.workspace_bytes, &b[9]);
    if (!bad && info.backward_workspace_bytes)
        bad = polyattn_buffer_alloc(ctx, info.backward_workspace_bytes, &b[10]);
    const int inputs[4] = {0, 1, 2, 4};
    for (int i = 0; i < 4 && !bad; i++) {
        const size_t n = sizes[inputs[i]];
        encode(host_in, n / es, dtype);
        bad = polyattn_buffer_write(b[inputs[i]], 0, host_in, n) != 0;
    }
    if (!bad) bad = polyattn_forward(plan, b[0], b[1], b[2], b[3], b[5], NULL, b[9]) != 0;
    if (bad) {
        printf("FAIL %s %s: setup: %s\n", polyattn_algo_name(algo), polyattn_dtype_name(dtype),
               polyattn_context_last_error(ctx));
    }
    memset(poison, 0x7f, nq * es);
    int mismatch = 0, nonfinite = 0, nonzero = 0;
    for (int run = 0; run < RUNS && !bad; run++) {
        for (int i = 0; i < 3 && !bad; i++)
            bad = polyattn_buffer_write(b[6 + i], 0, poison, bytes[i]) != 0;
        if (!bad)
            bad = polyattn_backward(plan, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8],
                                    b[10]) != 0;
        for (int i = 0; i < 3 && !bad; i++)
            bad = polyattn_buffer_read(b[6 + i], 0, run ? now[i] : first[i], bytes[i]) != 0;
        if (bad) {
            printf("FAIL %s %s: backward run %d: %s\n", polyattn_algo_name(algo),
                   polyattn_dtype_name(dtype), run, polyattn_context_last_error(ctx));
            break;
        }
        for (int i = 0; i < 3 && run; i++)
            if (memcmp(first[i], now[i], bytes[i]) != 0) {
                printf("  run %d: d%c differs bitwise from run 0\n", run, "qkv"[i]);
                mismatch++;
            }
    }
    /* Sanity of run 0: finite, not all zero (f32 view only decodes f32; for 16-bit types,
     * check the exponent bits). */
    for (int i = 0; i < 3 && !bad; i++) {
        const size_t n = bytes[i] / es;
        for (size_t e = 0; e < n; e++) {
            if (dtype == POLYATTN_DTYPE_F32) {
                float x = ((float *)first[i])[e];
                nonfinite += !isfinite(x);
                nonzero += x != 0.0f;
            } else {
                unsigned short h = ((unsigned short *)first[i])[e];
                unsigned short emask = dtype == POLYATTN_DTYPE_BF16 ? 0x7f80u : 0x7c00u;
                nonfinite += (h & emask) == emask;
                nonzero += (h & 0x7fffu) != 0;
            }
        }
    }
    int fail = bad || mismatch || nonfinite || !nonzero;
    if (!bad)
        printf("%s %-20s %-7s %-4s : %d backward runs, %d bitwise mismatches, %d non-finite, "
               "%d nonzero gradient elements\n",
               fail ? "FAIL" : "PASS", sh->name, polyattn_algo_name(algo),
               polyattn_dtype_name(dtype), RUNS, mismatch, nonfinite, nonzero);
    for (int i = 0; i < 11; i++)
        polyattn_buffer_free(b[i]);
    for (int i = 0; i < 3; i++)
        free(first[i]), free(now[i]);
    free(host_in), free(poison);
    polyattn_plan_destroy(plan);
    return fail;
}

/* Both modes of flash and fused against the host reference (every element). */
static int reference_checks(polyattn_context *ctx)
{
    static const char *const cases[] = {"gqa4_65x97_d64", "causal_tl_129_d128",
                                        "long_causal_br_300x257_d64", "bshd_pad_gqa_47x61_d64",
                                        "causal_br_53x37_d64"};
    const polyattn_dtype dtypes[3] = {POLYATTN_DTYPE_F32, POLYATTN_DTYPE_F16, POLYATTN_DTYPE_BF16};
    const polyattn_algo algos[2] = {POLYATTN_ALGO_FUSED, POLYATTN_ALGO_FLASH};
    int failed = 0, ran = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const pa_tk_case *tc = pa_tk_find_case(cases[c]);
        if (!tc) {
            printf("FAIL reference: no case %s in the table\n", cases[c]);
            failed++;
            continue;
        }
        for (int t = 0; t < 3; t++)
            for (int a = 0; a < 2; a++)
                for (int det = 0; det < 2; det++) {
                    pa_tk_problem p;
                    if (pa_tk_problem_init(&p, tc, dtypes[t], 7 + (uint64_t)det)) {
                        printf("FAIL reference %s: inputs\n", cases[c]);
                        failed++;
                        continue;
                    }
                    pa_tk_backward_result r;
                    memset(&r, 0, sizeof r);
                    polyattn_status st = pa_tk_run_backward(ctx, &p, algos[a], det, &r);
                    const char *mode = det ? "deterministic" : "atomic";
                    if (!r.planned) {
                        printf("UNSUPPORTED reference %-28s %-4s %-7s %-13s : %s\n", cases[c],
                               polyattn_dtype_name(dtypes[t]), polyattn_algo_name(algos[a]), mode,
                               r.message);
                    } else {
                        const int ok = st == POLYATTN_STATUS_SUCCESS && r.pass;
                        printf("%s reference %-28s %-4s %-7s %-13s : dQ %.3g dK %.3g dV %.3g (rel; "
                               "tol %.3g) %s\n",
                               ok ? "PASS" : "FAIL", cases[c], polyattn_dtype_name(dtypes[t]),
                               polyattn_algo_name(algos[a]), mode, r.dq_max_rel, r.dk_max_rel,
                               r.dv_max_rel, r.tolerance, ok ? "" : r.message);
                        failed += !ok;
                        ran++;
                    }
                    pa_tk_problem_free(&p);
                }
    }
    printf("reference: %d runs compared, %d failed\n", ran, failed);
    return failed || !ran;
}

int main(void)
{
    int count = 0, failed = 0, unsupported = 0, tried = 0;
    const char *reason = NULL;
    if (polyattn_device_count(POLYATTN_BACKEND_CUDA, &count, &reason) || count == 0) {
        printf("SKIP: no CUDA device (%s)\n", reason ? reason : "");
        return 77;
    }
    polyattn_context *ctx = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_CUDA, 0, &ctx)) {
        printf("FAIL: context: %s\n", polyattn_last_error());
        return 1;
    }
    const polyattn_dtype dtypes[3] = {POLYATTN_DTYPE_F32, POLYATTN_DTYPE_F16, POLYATTN_DTYPE_BF16};
    const polyattn_algo algos[3] = {POLYATTN_ALGO_UNFUSED, POLYATTN_ALGO_FUSED,
                                    POLYATTN_ALGO_FLASH};
    for (int s = 0; s < 2; s++)
        for (int a = 0; a < 3; a++)
            for (int t = 0; t < 3; t++) {
                failed += run_case(ctx, &shapes[s], dtypes[t], algos[a], &unsupported);
                tried++;
            }
    printf("determinism: %d cases, %d failed, %d unsupported\n", tried, failed, unsupported);
    int ref_failed = reference_checks(ctx);
    polyattn_context_destroy(ctx);
    if (failed || ref_failed) return 1;
    if (unsupported == tried) {
        printf("FAIL: no algorithm offers a CUDA backward\n");
        return 1;
    }
    return 0;
}
