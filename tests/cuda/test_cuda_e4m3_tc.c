/*
 * e4m3 inputs on the Hopper kernel's FP8 tensor cores (POLYATTN_FORCE=cuda.flash=wgmma on
 * sm_90; opt-in until it has run on a GPU): O and LSE against the host backend, which
 * computes e4m3 exactly from the dequantized inputs.  The kernel rounds P to e4m3 for P V,
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
} fp8_case;

static const fp8_case cases[] = {
    {"plain 2x8/8 257x300", 2, 8, 8, 257, 300, NONE, POLYATTN_DTYPE_BF16, 0, 1, 1, 1, 0, 0, 0},
    {"one query one key", 1, 2, 2, 1, 1, NONE, POLYATTN_DTYPE_F16, 0, 1, 1, 1, 0, 0, 0},
    {"gqa4 causal tl 129x129", 1, 8, 2, 129, 129, TL, POLYATTN_DTYPE_F16, 0, 1, 1, 1, 0, 0, 0},
    {"gqa2 causal br 300x77", 1, 4, 2, 300, 77, BR, POLYATTN_DTYPE_BF16, 0, 1, 1, 1, 0, 0, 0},
    {"causal br 77x1000 bshd", 2, 4, 4, 77, 1000, BR, POLYATTN_DTYPE_BF16, 1, 1, 1, 1, 0, 0, 0},
    {"sharp softmax 200x513", 1, 4, 1, 200, 513, NONE, POLYATTN_DTYPE_F16, 0, 4, 2, 0.5f, 0, 0, 0},
    {"window 64 softcap 20 sinks br", 1, 4, 2, 190, 640, BR, POLYATTN_DTYPE_BF16, 1, 1, 1, 1, 64,
     20.f, 1},
};

/* Upload, plan, run with the workspace the plan asks for, download O and the LSE. */
static polyattn_status run(polyattn_context *ctx, const polyattn_attention_desc *d,
                           const void *const host_in[4], float *o, float *lse, char *note,
                           size_t note_len)
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
    polyattn_buffer *b[7] = {NULL};
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
    polyattn_extra_tensors x;
    memset(&x, 0, sizeof x);
    x.struct_size = sizeof x;
    x.sinks = b[6];
    if (st == POLYATTN_STATUS_SUCCESS)
        st = polyattn_forward_ex(plan, b[0], b[1], b[2], b[3], b[4], NULL, b[5], &x);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_read(b[3], 0, obytes, ob);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_read(b[4], 0, lse, nl * 4);
    if (st != POLYATTN_STATUS_SUCCESS)
        snprintf(note, note_len, "run: %s: %s", polyattn_status_name(st),
                 polyattn_context_last_error(ctx));
    else pa_tk_decode(o, obytes, on, d->o.dtype);
    for (int i = 0; i < 7; i++)
        polyattn_buffer_free(b[i]);
    free(obytes);
    polyattn_plan_destroy(plan);
    return st;
}

static void check_case(polyattn_context *gpu, polyattn_context *host, const fp8_case *c,
                       uint64_t seed)
{
    const polyattn_dtype e = POLYATTN_DTYPE_E4M3;
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, e, c->batch, c->hq, c->hkv, c->sq, c->skv, 128, 128);
    if (c->bshd) {
        polyattn_tensor_desc_bshd(&d.q, e, c->batch, c->hq, c->sq, 128);
        polyattn_tensor_desc_bshd(&d.k, e, c->batch, c->hkv, c->skv, 128);
        polyattn_tensor_desc_bshd(&d.v, e, c->batch, c->hkv, c->skv, 128);
        polyattn_tensor_desc_bshd(&d.o, c->o_dtype, c->batch, c->hq, c->sq, 128);
    }
    d.o.dtype = c->o_dtype;
    d.mask = c->mask;
    d.q_descale = c->qd, d.k_descale = c->kd, d.v_descale = c->vd;
    if (c->window) d.has_window = 1, d.window_left = d.window_right = c->window;
    d.softcap = c->softcap;
    d.has_sinks = c->sinks;
    /* random e4m3 codes of values in [-1, 1) (every exponent down to the subnormals) */
    pa_tk_rng rng;
    pa_tk_rng_seed(&rng, seed);
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
    const polyattn_status sh = run(host, &d, (const void *const *)in, oh, lh, nh, sizeof nh);
    const polyattn_status sg = run(gpu, &d, (const void *const *)in, og, lg, ng, sizeof ng);
    int bad = 0;
    double l2 = 0, worst = 0, worst_lse = 0;
    if (sh != POLYATTN_STATUS_SUCCESS || sg != POLYATTN_STATUS_SUCCESS) {
        printf("  %s: %s\n", c->name, sh != POLYATTN_STATUS_SUCCESS ? nh : ng);
        bad = 1;
    } else {
        if (!strstr(ng, "FP8")) {
            printf("  %s: the plan does not run the FP8 products: %s\n", c->name, ng);
            bad++;
        }
        double *g = malloc(on * sizeof *g), *h = malloc(on * sizeof *h), big = 0;
        for (size_t i = 0; i < on; i++)
            g[i] = og[i], h[i] = oh[i], big = fmax(big, fabs(h[i]));
        l2 = rel_l2(g, h, on);
        for (size_t i = 0; i < on; i++) {
            const double err = fabs(g[i] - h[i]);
            worst = err > worst || err != err ? err : worst;
            if (!(err <= kElem * big) && bad++ < 5)
                printf("  %s: o[%zu] = %.6g, host %.6g\n", c->name, i, g[i], h[i]);
        }
        for (size_t i = 0; i < nl; i++) {
            const double err = isinf(lh[i]) && lg[i] == lh[i] ? 0 : fabs((double)lg[i] - lh[i]);
            worst_lse = err > worst_lse || err != err ? err : worst_lse;
            if (!(err <= kLse * (1 + fabs(lh[i]))) && bad++ < 10)
                printf("  %s: lse[%zu] = %.6g, host %.6g\n", c->name, i, lg[i], lh[i]);
        }
        if (!(l2 <= kRelL2)) bad++;
        free(g), free(h);
    }
    printf("%s: %-30s o %-4s rel L2 %-9.3g max|dO| %-9.3g max|dLSE| %.3g\n", bad ? "FAIL" : "pass",
           c->name, polyattn_dtype_name(c->o_dtype), l2, worst, worst_lse);
    failures += bad != 0;
    for (int i = 0; i < 4; i++)
        free(in[i]);
    free(og), free(oh), free(lg), free(lh);
}

int main(void)
{
    bound_check();
    /* the Hopper kernel, forced: the core copies POLYATTN_FORCE into a device when the
     * context is made */
    setenv("POLYATTN_FORCE", "cuda.flash=wgmma", 1);
    int n = 0;
    polyattn_context *gpu = NULL, *host = NULL;
    polyattn_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if (polyattn_device_count(POLYATTN_BACKEND_CUDA, &n, NULL) != POLYATTN_STATUS_SUCCESS ||
        n == 0 ||
        polyattn_device_get_info(POLYATTN_BACKEND_CUDA, 0, &info) != POLYATTN_STATUS_SUCCESS ||
        strcmp(info.arch, "sm_90") != 0 ||
        polyattn_context_create(POLYATTN_BACKEND_CUDA, 0, &gpu) != POLYATTN_STATUS_SUCCESS) {
        printf("no sm_90 CUDA device: skipped (%d failures on the host)\n", failures);
        polyattn_context_destroy(gpu);
        return failures ? 1 : 77;
    }
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &host) != POLYATTN_STATUS_SUCCESS) {
        printf("FAIL: no host context\n");
        return 1;
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(gpu, host, &cases[i], 0xf8 + i);
    polyattn_context_destroy(gpu);
    polyattn_context_destroy(host);
    printf("test_cuda_e4m3_tc: %d failures\n", failures);
    return failures ? 1 : 0;
}
