/*
 * e4m3 inputs on CUDA's tensor cores, both opt-in until they have run on a GPU, against the
 * host backend, which computes e4m3 exactly from the dequantized inputs:
 *   - the serving kernel (POLYATTN_FORCE=cuda.flash=mma; sm_80+): decode shapes and a paged
 *     cache, K/V read as bytes and converted exactly to f16, so O is held to the f16
 *     tolerance of the test kit (5e-3 of max|O|, bf16's 3e-2 for bf16 O) and the LSE to 1e-3;
 *   - the Hopper kernel's FP8 products (POLYATTN_FORCE=cuda.flash=wgmma; sm_90), below.
 * For the Hopper kernel: the scores are exact products of e4m3 summed in f32, but it rounds
 * P to e4m3 for P V,  The kernel rounds P to e4m3 for P V,
 * so O is held to the FP8 bound of the Hopper issue, 5e-2 relative L2 a case, and each
 * element to 0.125 of the case's largest |O|; the scores are exact products summed in f32,
 * so the LSE is held to 1e-3 (absolute, plus relative).  Every element is checked after
 * poisoning (none may stay NaN), fully masked rows must give O = 0 and LSE = -inf, and the
 * plan must name the FP8 products.
 *
 * Cases: head dim 128 (the instance), odd lengths below and past the 128-row and 128-key
 * tiles, one query and one key, GQA, both causal alignments (bottom-right with more queries
 * than keys: fully masked rows), BSHD, f16 and bf16 O, descales that make the softmax sharp,
 * a window with softcap and sinks.
 *
 * First, on every machine (no device needed): the bound must be reachable and able to fail.
 * A host emulation of the kernel's rounding (P as e4m3 of 256 p) passes it on two problems,
 * and the same emulation with V^T's keys left in the scores' order (not the order of P's
 * e4m3 fragments, e4m3_vt.cu) fails it.  Exit 77 without a sm_90 device (after that check).
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "pa_testkit.h"
#include "polyattn.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NONE POLYATTN_MASK_NONE
#define TL POLYATTN_MASK_CAUSAL_TOP_LEFT
#define BR POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT

static const double kRelL2 = 5e-2, kElem = 0.125, kLse = 1e-3;

static int failures = 0;

/* Relative L2 of got against ref over n values. */
static double rel_l2(const double *got, const double *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++)
        num += (got[i] - ref[i]) * (got[i] - ref[i]), den += ref[i] * ref[i];
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* Where the kernel's P V takes logical key k of a 16-key group: P's e4m3 A fragment holds
 * the scores of keys 8 (i / 2) + 2 t + i % 2 at logical 4 t + i (e4m3_vt.cu). */
static int fragment_key(int k)
{
    return 16 * (k / 16) + 8 * (k % 4 / 2) + 2 * (k % 16 / 4) + k % 2;
}

/* One head of n_q queries against n_k keys (head dim d, no mask) in double: exact, and as the
 * kernel rounds (P as e4m3 of 256 p, the max exact), and with V^T's keys permuted wrongly. */
static void emulate(int n_q, int n_k, int d, double q_scale, uint64_t seed, double *worst_ok,
                    double *best_wrong)
{
    pa_tk_rng rng;
    pa_tk_rng_seed(&rng, seed);
    const size_t nq = (size_t)n_q * d, nk = (size_t)n_k * d;
    double *q = malloc(nq * sizeof *q), *k = malloc(nk * sizeof *k), *v = malloc(nk * sizeof *v);
    double *o = calloc(nq, sizeof *o), *o8 = calloc(nq, sizeof *o8), *bad = calloc(nq, sizeof *bad);
    double *p = malloc((size_t)n_k * sizeof *p);
    for (size_t i = 0; i < nq; i++)
        q[i] = pa_tk_e4m3_to_f32(pa_tk_f32_to_e4m3((float)pa_tk_rng_uniform(&rng)));
    for (size_t i = 0; i < nk; i++) {
        k[i] = pa_tk_e4m3_to_f32(pa_tk_f32_to_e4m3((float)pa_tk_rng_uniform(&rng)));
        v[i] = pa_tk_e4m3_to_f32(pa_tk_f32_to_e4m3((float)pa_tk_rng_uniform(&rng)));
    }
    const double scale = q_scale / sqrt((double)d);
    for (int i = 0; i < n_q; i++) {
        double m = -INFINITY, l = 0;
        for (int j = 0; j < n_k; j++) {
            double s = 0;
            for (int c = 0; c < d; c++)
                s += q[(size_t)i * d + c] * k[(size_t)j * d + c];
            p[j] = s * scale;
            m = fmax(m, p[j]);
        }
        for (int j = 0; j < n_k; j++)
            l += (p[j] = exp(p[j] - m));
        for (int j = 0; j < n_k; j++) {
            const double p8 = pa_tk_e4m3_to_f32(pa_tk_f32_to_e4m3((float)(256 * p[j]))) / 256;
            const int jw =
                j - j % 16 + fragment_key(j % 16) < n_k ? j - j % 16 + fragment_key(j % 16) : j;
            for (int c = 0; c < d; c++) {
                o[(size_t)i * d + c] += p[j] * v[(size_t)j * d + c] / l;
                o8[(size_t)i * d + c] += p8 * v[(size_t)j * d + c] / l;
                bad[(size_t)i * d + c] += p8 * v[(size_t)jw * d + c] / l;
            }
        }
    }
    *worst_ok = fmax(*worst_ok, rel_l2(o8, o, nq));
    *best_wrong = fmin(*best_wrong, rel_l2(bad, o, nq));
    free(q), free(k), free(v), free(o), free(o8), free(bad), free(p);
}

static void bound_check(void)
{
    double worst_ok = 0, best_wrong = INFINITY;
    emulate(8, 256, 128, 1.0, 0xe4a1, &worst_ok, &best_wrong);
    emulate(8, 160, 128, 4.0, 0xe4a2, &worst_ok, &best_wrong);
    const int ok = worst_ok <= kRelL2 && best_wrong > kRelL2;
    printf("%s: host emulation: P as e4m3 rel L2 %.3g (bound %.3g), V^T in the scores' key order "
           "%.3g\n",
           ok ? "pass" : "FAIL", worst_ok, kRelL2, best_wrong);
    failures += !ok;
}

typedef struct fp8_case {
    const char *name;
    int64_t batch, hq, hkv, sq, skv;
    polyattn_mask mask;
    polyattn_dtype o_dtype;
    int bshd;
    float qd, kd, vd;
    int64_t window; /* > 0: keys within this many of the diagonal */
    float softcap;
    int sinks;
    int64_t dim;        /* 0: 128 */
    int64_t block_size; /* > 0: a paged cache of shuffled blocks (lengths up to skv) */
} fp8_case;

/* The serving kernel's cases (cuda.flash=mma): decode shapes its plan splits by keys. */
static const fp8_case serving_cases[] = {
    {"decode gqa4 br 1x1000", 3, 8, 2, 1, 1000, BR, POLYATTN_DTYPE_BF16, 0, 2, 2, 2, 0, 0, 0, 0, 0},
    {"decode 16 queries gqa4 tl", 2, 8, 2, 16, 700, TL, POLYATTN_DTYPE_F16, 1, 1, 1, 1, 0, 0, 0, 0,
     0},
    {"decode d64 gqa8 f32 O 1x2049", 2, 8, 1, 1, 2049, NONE, POLYATTN_DTYPE_F32, 0, 4, 2, 0.5f, 0,
     0, 0, 64, 0},
    {"decode d256 window softcap sinks", 1, 4, 4, 2, 300, BR, POLYATTN_DTYPE_BF16, 1, 1, 1, 1, 40,
     10.f, 1, 256, 0},
    {"paged 16 decode gqa4 br", 3, 8, 2, 1, 400, BR, POLYATTN_DTYPE_F16, 1, 2, 1, 1, 0, 0, 0, 0,
     16},
    {"paged 64 decode 3 queries", 2, 4, 2, 3, 640, BR, POLYATTN_DTYPE_BF16, 1, 1, 1, 1, 0, 0, 0, 0,
     64},
};

static const fp8_case cases[] = {
    {"plain 2x8/8 257x300", 2, 8, 8, 257, 300, NONE, POLYATTN_DTYPE_BF16, 0, 1, 1, 1, 0, 0, 0, 0,
     0},
    {"one query one key", 1, 2, 2, 1, 1, NONE, POLYATTN_DTYPE_F16, 0, 1, 1, 1, 0, 0, 0, 0, 0},
    {"gqa4 causal tl 129x129", 1, 8, 2, 129, 129, TL, POLYATTN_DTYPE_F16, 0, 1, 1, 1, 0, 0, 0, 0,
     0},
    {"gqa2 causal br 300x77", 1, 4, 2, 300, 77, BR, POLYATTN_DTYPE_BF16, 0, 1, 1, 1, 0, 0, 0, 0, 0},
    {"causal br 77x1000 bshd", 2, 4, 4, 77, 1000, BR, POLYATTN_DTYPE_BF16, 1, 1, 1, 1, 0, 0, 0, 0,
     0},
    {"sharp softmax 200x513", 1, 4, 1, 200, 513, NONE, POLYATTN_DTYPE_F16, 0, 4, 2, 0.5f, 0, 0, 0,
     0, 0},
    {"window 64 softcap 20 sinks br", 1, 4, 2, 190, 640, BR, POLYATTN_DTYPE_BF16, 1, 1, 1, 1, 64,
     20.f, 1, 0, 0},
};

/* A paged case's int32 tensors: each sequence's length and its row of the block table. */
typedef struct paged_input {
    int32_t *used, *table;
    size_t n_used, n_table;
} paged_input;

/* Upload, plan, run with the workspace the plan asks for, download O and the LSE. */
static polyattn_status run(polyattn_context *ctx, const polyattn_attention_desc *d,
                           const void *const host_in[4], const paged_input *pg, float *o,
                           float *lse, char *note, size_t note_len)
{
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = POLYATTN_ALGO_FLASH;
    opt.want_lse = 1;
    polyattn_plan *plan = NULL;
    polyattn_status st = polyattn_plan_create(ctx, d, &opt, &plan);
    if (st != POLYATTN_STATUS_SUCCESS) {
        snprintf(note, note_len, "plan: %s", polyattn_context_last_error(ctx));
        return st;
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_plan_get_info(plan, &info);
    snprintf(note, note_len, "%s", info.reason);
    const polyattn_tensor_desc *t[3] = {&d->q, &d->k, &d->v};
    const size_t ob = polyattn_tensor_desc_bytes(&d->o), on = ob / polyattn_dtype_size(d->o.dtype);
    const size_t nl = (size_t)(d->q.shape[0] * d->q.shape[1] * d->q.shape[2]);
    void *obytes = malloc(ob);
    pa_tk_poison(obytes, on, d->o.dtype);
    pa_tk_poison(lse, nl, POLYATTN_DTYPE_F32);
    polyattn_buffer *b[9] = {NULL};
    for (int i = 0; i < 3 && st == POLYATTN_STATUS_SUCCESS; i++) {
        const uint64_t n = polyattn_tensor_desc_bytes(t[i]);
        st = polyattn_buffer_alloc(ctx, n, &b[i]);
        if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_write(b[i], 0, host_in[i], n);
    }
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_alloc(ctx, ob, &b[3]);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_write(b[3], 0, obytes, ob);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_alloc(ctx, nl * 4, &b[4]);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_write(b[4], 0, lse, nl * 4);
    if (st == POLYATTN_STATUS_SUCCESS && info.workspace_bytes)
        st = polyattn_buffer_alloc(ctx, info.workspace_bytes, &b[5]);
    if (st == POLYATTN_STATUS_SUCCESS && d->has_sinks) {
        st = polyattn_buffer_alloc(ctx, d->q.shape[1] * 4, &b[6]);
        if (st == POLYATTN_STATUS_SUCCESS)
            st = polyattn_buffer_write(b[6], 0, host_in[3], d->q.shape[1] * 4);
    }
    if (st == POLYATTN_STATUS_SUCCESS && pg->used) {
        st = polyattn_buffer_alloc(ctx, pg->n_used * 4, &b[7]);
        if (st == POLYATTN_STATUS_SUCCESS)
            st = polyattn_buffer_write(b[7], 0, pg->used, pg->n_used * 4);
        if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_alloc(ctx, pg->n_table * 4, &b[8]);
        if (st == POLYATTN_STATUS_SUCCESS)
            st = polyattn_buffer_write(b[8], 0, pg->table, pg->n_table * 4);
    }
    polyattn_extra_tensors x;
    memset(&x, 0, sizeof x);
    x.struct_size = sizeof x;
    x.sinks = b[6];
    x.seqused_kv = b[7], x.block_table = b[8];
    if (st == POLYATTN_STATUS_SUCCESS)
        st = polyattn_forward_ex(plan, b[0], b[1], b[2], b[3], b[4], NULL, b[5], &x);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_read(b[3], 0, obytes, ob);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_read(b[4], 0, lse, nl * 4);
    if (st != POLYATTN_STATUS_SUCCESS)
        snprintf(note, note_len, "run: %s: %s", polyattn_status_name(st),
                 polyattn_context_last_error(ctx));
    else pa_tk_decode(o, obytes, on, d->o.dtype);
    for (int i = 0; i < 9; i++)
        polyattn_buffer_free(b[i]);
    free(obytes);
    polyattn_plan_destroy(plan);
    return st;
}

/* Whether a case runs the serving kernel (f16 products from bytes, tight tolerance) or the
 * Hopper kernel's FP8 products (the relative L2 bound). */
enum { MODE_SERVING, MODE_FP8 };

static void check_case(polyattn_context *gpu, polyattn_context *host, const fp8_case *c,
                       uint64_t seed, int mode)
{
    const polyattn_dtype e = POLYATTN_DTYPE_E4M3;
    const int64_t dim = c->dim ? c->dim : 128, bs = c->block_size;
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, e, c->batch, c->hq, c->hkv, c->sq, c->skv, dim, dim);
    if (c->bshd) {
        polyattn_tensor_desc_bshd(&d.q, e, c->batch, c->hq, c->sq, dim);
        polyattn_tensor_desc_bshd(&d.k, e, c->batch, c->hkv, c->skv, dim);
        polyattn_tensor_desc_bshd(&d.v, e, c->batch, c->hkv, c->skv, dim);
        polyattn_tensor_desc_bshd(&d.o, c->o_dtype, c->batch, c->hq, c->sq, dim);
    }
    pa_tk_rng rng;
    pa_tk_rng_seed(&rng, seed);
    paged_input pg = {NULL, NULL, 0, 0};
    if (bs) { /* a pool of shuffled blocks (two spare), lengths up to skv, one sequence empty */
        const int64_t mb = (c->skv + bs - 1) / bs, nb = c->batch * mb + 2;
        polyattn_tensor_desc_bshd(&d.k, e, nb, c->hkv, bs, dim);
        polyattn_tensor_desc_bshd(&d.v, e, nb, c->hkv, bs, dim);
        d.kv_layout = POLYATTN_KV_PAGED;
        d.max_blocks_per_seq = mb;
        pg.n_used = (size_t)c->batch, pg.n_table = (size_t)(c->batch * mb);
        pg.used = malloc(pg.n_used * 4), pg.table = malloc(pg.n_table * 4);
        for (int64_t b = 0; b < c->batch; b++)
            pg.used[b] = b == 1 ? 0 : (int32_t)(c->skv - 37 * b);
        for (size_t i = 0; i < pg.n_table; i++) /* a permutation of the pool's blocks */
            pg.table[i] = (int32_t)((i * 7 + 3) % (size_t)nb);
    }
    d.o.dtype = c->o_dtype;
    d.mask = c->mask;
    d.q_descale = c->qd, d.k_descale = c->kd, d.v_descale = c->vd;
    if (c->window) d.has_window = 1, d.window_left = d.window_right = c->window;
    d.softcap = c->softcap;
    d.has_sinks = c->sinks;
    /* random e4m3 codes of values in [-1, 1) (every exponent down to the subnormals) */
    void *in[4];
    const polyattn_tensor_desc *t[3] = {&d.q, &d.k, &d.v};
    for (int i = 0; i < 3; i++) {
        const size_t n = polyattn_tensor_desc_bytes(t[i]);
        uint8_t *bytes = malloc(n);
        for (size_t j = 0; j < n; j++)
            bytes[j] = pa_tk_f32_to_e4m3((float)pa_tk_rng_uniform(&rng));
        in[i] = bytes;
    }
    float *sinks = malloc((size_t)c->hq * sizeof *sinks);
    for (int h = 0; h < c->hq; h++)
        sinks[h] = (float)(2 * pa_tk_rng_uniform(&rng));
    in[3] = sinks;
    const size_t on = polyattn_tensor_desc_bytes(&d.o) / polyattn_dtype_size(c->o_dtype);
    const size_t nl = (size_t)(c->batch * c->hq * c->sq);
    float *og = malloc(on * 4), *oh = malloc(on * 4), *lg = malloc(nl * 4), *lh = malloc(nl * 4);
    char ng[512], nh[512];
    const polyattn_status sh = run(host, &d, (const void *const *)in, &pg, oh, lh, nh, sizeof nh);
    const polyattn_status sg = run(gpu, &d, (const void *const *)in, &pg, og, lg, ng, sizeof ng);
    /* the serving kernel's products are f16 (P rounded to f16), O then in its dtype */
    const double elem = mode == MODE_FP8 ? kElem
                        : c->o_dtype == POLYATTN_DTYPE_BF16
                            ? pa_tk_tolerance_for(POLYATTN_DTYPE_BF16).o_rel
                            : pa_tk_tolerance_for(POLYATTN_DTYPE_F16).o_rel;
    const char *kernel = mode == MODE_FP8 ? "FP8 products" : "from e4m3 bytes";
    int bad = 0;
    double l2 = 0, worst = 0, worst_lse = 0;
    if (sh != POLYATTN_STATUS_SUCCESS || sg != POLYATTN_STATUS_SUCCESS) {
        printf("  %s: %s\n", c->name, sh != POLYATTN_STATUS_SUCCESS ? nh : ng);
        bad = 1;
    } else {
        if (!strstr(ng, kernel)) {
            printf("  %s: the plan does not name \"%s\": %s\n", c->name, kernel, ng);
            bad++;
        }
        double *g = malloc(on * sizeof *g), *h = malloc(on * sizeof *h), big = 0;
        for (size_t i = 0; i < on; i++)
            g[i] = og[i], h[i] = oh[i], big = fmax(big, fabs(h[i]));
        l2 = rel_l2(g, h, on);
        for (size_t i = 0; i < on; i++) {
            const double err = fabs(g[i] - h[i]);
            worst = err > worst || err != err ? err : worst;
            if (!(err <= elem * big) && bad++ < 5)
                printf("  %s: o[%zu] = %.6g, host %.6g\n", c->name, i, g[i], h[i]);
        }
        for (size_t i = 0; i < nl; i++) {
            const double err = isinf(lh[i]) && lg[i] == lh[i] ? 0 : fabs((double)lg[i] - lh[i]);
            worst_lse = err > worst_lse || err != err ? err : worst_lse;
            if (!(err <= kLse * (1 + fabs(lh[i]))) && bad++ < 10)
                printf("  %s: lse[%zu] = %.6g, host %.6g\n", c->name, i, lg[i], lh[i]);
        }
        if (mode == MODE_FP8 && !(l2 <= kRelL2)) bad++;
        free(g), free(h);
    }
    printf("%s: %-32s o %-4s rel L2 %-9.3g max|dO| %-9.3g max|dLSE| %.3g\n", bad ? "FAIL" : "pass",
           c->name, polyattn_dtype_name(c->o_dtype), l2, worst, worst_lse);
    failures += bad != 0;
    for (int i = 0; i < 4; i++)
        free(in[i]);
    free(og), free(oh), free(lg), free(lh), free(pg.used), free(pg.table);
}

/* A CUDA context with POLYATTN_FORCE set to force (the core copies it into a device when the
 * context is made), if device 0 is at least compute capability `major`.minor. */
static polyattn_context *forced_context(const char *force, int major, int minor)
{
    int n = 0;
    polyattn_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    int cc_major = 0, cc_minor = 0;
    if (polyattn_device_count(POLYATTN_BACKEND_CUDA, &n, NULL) != POLYATTN_STATUS_SUCCESS ||
        n == 0 ||
        polyattn_device_get_info(POLYATTN_BACKEND_CUDA, 0, &info) != POLYATTN_STATUS_SUCCESS ||
        sscanf(info.arch, "sm_%1d%1d", &cc_major, &cc_minor) != 2 ||
        cc_major * 10 + cc_minor < major * 10 + minor)
        return NULL;
    setenv("POLYATTN_FORCE", force, 1);
    polyattn_context *ctx = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_CUDA, 0, &ctx) != POLYATTN_STATUS_SUCCESS)
        ctx = NULL;
    unsetenv("POLYATTN_FORCE");
    return ctx;
}

int main(void)
{
    bound_check();
    polyattn_context *host = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &host) != POLYATTN_STATUS_SUCCESS) {
        printf("FAIL: no host context\n");
        return 1;
    }
    int ran = 0;
    polyattn_context *gpu = forced_context("cuda.flash=mma", 8, 0);
    if (gpu) {
        for (size_t i = 0; i < sizeof serving_cases / sizeof serving_cases[0]; i++)
            check_case(gpu, host, &serving_cases[i], 0x5e + i, MODE_SERVING);
        polyattn_context_destroy(gpu);
        ran = 1;
    }
    gpu = forced_context("cuda.flash=wgmma", 9, 0);
    if (gpu) {
        int major = 0, minor = 0;
        polyattn_device_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        polyattn_device_get_info(POLYATTN_BACKEND_CUDA, 0, &info);
        if (sscanf(info.arch, "sm_%1d%1d", &major, &minor) == 2 && major == 9 && minor == 0)
            for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
                check_case(gpu, host, &cases[i], 0xf8 + i, MODE_FP8);
        polyattn_context_destroy(gpu);
    }
    polyattn_context_destroy(host);
    if (!ran) {
        printf("no sm_80+ CUDA device: skipped (%d failures on the host)\n", failures);
        return failures ? 1 : 77;
    }
    printf("test_cuda_e4m3_tc: %d failures\n", failures);
    return failures ? 1 : 0;
}
