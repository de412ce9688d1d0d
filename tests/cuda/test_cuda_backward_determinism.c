/*
 * Deterministic backward on CUDA: a plan made with want_backward and deterministic runs
 * polyattn_backward 10 times on the same inputs; dQ, dK and dV must be bitwise identical
 * every time (outputs are poisoned before each run, so a stale result cannot pass), and
 * finite and not all zero.  GQA, bottom-right causal mask, odd sequence lengths.
 * Every algorithm the CUDA backend offers a backward for is tried; the others are listed
 * as UNSUPPORTED.  Exits 77 without a CUDA device.
 */
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
                    while ((a >> e) > 1) e++;
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

static int run_case(polyattn_context *ctx, polyattn_dtype dtype, polyattn_algo algo,
                    int *unsupported)
{
    const int64_t batch = 2, heads_q = 4, heads_kv = 2, seq_q = 201, seq_kv = 333, hd = 64;
    polyattn_attention_desc desc;
    polyattn_attention_desc_init(&desc, dtype, batch, heads_q, heads_kv, seq_q, seq_kv, hd, hd);
    desc.mask = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
    const size_t es = polyattn_dtype_size(dtype);
    const size_t nq = (size_t)(batch * heads_q * seq_q * hd), nk = (size_t)(batch * heads_kv * seq_kv * hd);
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
        printf("UNSUPPORTED %-7s %-4s : %s\n", polyattn_algo_name(algo), polyattn_dtype_name(dtype),
               polyattn_context_last_error(ctx));
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
    const size_t sizes[9] = {nq * es, nk * es, nk * es, nq * es, nq * es, nl * 4,
                             nq * es, nk * es, nk * es};
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
        printf("%s %-7s %-4s : %d backward runs, %d bitwise mismatches, %d non-finite, %d nonzero "
               "gradient elements\n",
               fail ? "FAIL" : "PASS", polyattn_algo_name(algo), polyattn_dtype_name(dtype), RUNS,
               mismatch, nonfinite, nonzero);
    for (int i = 0; i < 11; i++)
        polyattn_buffer_free(b[i]);
    for (int i = 0; i < 3; i++)
        free(first[i]), free(now[i]);
    free(host_in), free(poison);
    polyattn_plan_destroy(plan);
    return fail;
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
    const polyattn_algo algos[3] = {POLYATTN_ALGO_UNFUSED, POLYATTN_ALGO_FUSED, POLYATTN_ALGO_FLASH};
    for (int a = 0; a < 3; a++)
        for (int t = 0; t < 3; t++) {
            failed += run_case(ctx, dtypes[t], algos[a], &unsupported);
            tried++;
        }
    polyattn_context_destroy(ctx);
    printf("determinism: %d cases, %d failed, %d unsupported\n", tried, failed, unsupported);
    if (failed) return 1;
    if (unsupported == tried) {
        printf("FAIL: no algorithm offers a CUDA backward\n");
        return 1;
    }
    return 0;
}
