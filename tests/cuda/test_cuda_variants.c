/*
 * Score variants on CUDA at sizes the conformance table does not reach: several query and
 * key tiles under a sliding window (the mma.sync kernel skips the key tiles a query tile
 * cannot see), softcap, ALiBi and sinks together, bias and attn_mask on the generic kernel,
 * head dims 64..256; every algorithm against the host reference, every element of O and
 * LSE.  Flash problems without bias or attn_mask must run a tensor-core kernel (the plan's
 * reason says so) on sm_80+ (the mma.sync kernel; --mma forces it, --wgmma the Hopper kernel
 * on sm_90, which takes bias too).  Exit 77 without a CUDA device.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "pa_testkit.h"
#include "polyattn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct variant_case {
    const char *name;
    int batch, heads_q, heads_kv, seq_q, seq_kv, head_dim;
    polyattn_dtype dtype;
    polyattn_mask mask;
    int64_t window_left, window_right; /* both -2: no window */
    float softcap;
    polyattn_alibi alibi;
    int bias; /* 0 none; 1 f32 rows of seq_kv; 2 in the case's dtype, rows padded to 8 keys */
    int attn_mask, sinks;
} variant_case;

/* The bias row stride: 16-bit biases with rows padded to 16 bytes take the Hopper kernel's
 * shared-memory path, with keys that end inside a 16-byte piece. */
static int64_t bias_ld(const variant_case *c)
{
    return c->bias == 2 ? (c->seq_kv + 7) / 8 * 8 : c->seq_kv;
}
static size_t bias_elems(const variant_case *c)
{
    return (size_t)c->heads_q * c->seq_q * bias_ld(c);
}

static const variant_case cases[] = {
    /* gpt-oss-like: window + softcap + sinks, causal, many query and key tiles */
    {"window_softcap_sinks_br", 1, 4, 2, 700, 900, 64, POLYATTN_DTYPE_F16,
     POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT, 100, 0, 30.f, POLYATTN_ALIBI_NONE, 0, 0, 1},
    /* two-sided window without a causal mask, ALiBi, head dim 128, bf16 */
    {"window_alibi_128", 2, 2, 2, 300, 520, 128, POLYATTN_DTYPE_BF16, POLYATTN_MASK_NONE, 33, 7,
     0.f, POLYATTN_ALIBI_PER_BATCH_HEAD, 0, 0, 0},
    /* head dim 96 (the Hopper kernel pads it to 128 columns; opt-in there), window and sinks */
    {"window_sinks_96", 1, 3, 1, 277, 389, 96, POLYATTN_DTYPE_BF16,
     POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT, 120, 0, 0.f, POLYATTN_ALIBI_NONE, 0, 0, 1},
    /* head dim 192, window and ALiBi (per head) with sinks across 128-row query tiles */
    {"window_alibi_sinks_192", 1, 3, 1, 290, 411, 192, POLYATTN_DTYPE_BF16,
     POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT, 150, 0, 0.f, POLYATTN_ALIBI_PER_HEAD, 0, 0, 1},
    /* softcap alone, no mask, keys past several 128-key tiles, f16 */
    {"softcap_128", 1, 4, 4, 257, 643, 128, POLYATTN_DTYPE_F16, POLYATTN_MASK_NONE, -2, -2, 20.f,
     POLYATTN_ALIBI_NONE, 0, 0, 0},
    /* head dim 256 (32-key tiles), left-only window, top-left causal, seq_q > seq_kv */
    {"window_tl_256", 1, 2, 1, 400, 333, 256, POLYATTN_DTYPE_F16, POLYATTN_MASK_CAUSAL_TOP_LEFT, 50,
     -1, 0.f, POLYATTN_ALIBI_NONE, 0, 0, 1},
    /* bias alone (with softcap and a causal band): the Hopper kernel on sm_90 */
    {"bias_softcap_128", 2, 4, 2, 333, 517, 128, POLYATTN_DTYPE_BF16,
     POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT, -2, -2, 15.f, POLYATTN_ALIBI_NONE, 1, 0, 0},
    /* 16-bit biases with padded rows (the Hopper kernel's shared-memory path): with a
     * window, sinks and bottom-right causal; with ALiBi at head dim 64; with softcap at 256 */
    {"bias16_window_sinks_128", 2, 4, 2, 333, 517, 128, POLYATTN_DTYPE_BF16,
     POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT, 200, 0, 0.f, POLYATTN_ALIBI_NONE, 2, 0, 1},
    {"bias16_alibi_64", 1, 4, 4, 190, 301, 64, POLYATTN_DTYPE_F16, POLYATTN_MASK_NONE, -2, -2, 0.f,
     POLYATTN_ALIBI_PER_HEAD, 2, 0, 0},
    {"bias16_softcap_256", 1, 2, 1, 150, 203, 256, POLYATTN_DTYPE_F16,
     POLYATTN_MASK_CAUSAL_TOP_LEFT, -2, -2, 10.f, POLYATTN_ALIBI_NONE, 2, 0, 0},
    /* bias and attn_mask with a window: the generic kernel on flash */
    {"bias_mask_window", 1, 2, 2, 150, 170, 64, POLYATTN_DTYPE_F16, POLYATTN_MASK_NONE, 20, 20, 0.f,
     POLYATTN_ALIBI_NONE, 1, 1, 1},
    /* f32: the generic kernel on flash */
    {"f32_window_softcap", 1, 2, 2, 130, 200, 96, POLYATTN_DTYPE_F32,
     POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT, 40, -1, 5.f, POLYATTN_ALIBI_PER_HEAD, 0, 0, 1},
};

typedef struct run_out {
    float *o, *lse;
    char reason[256];
    int ran;
} run_out;

/* Runs one algorithm of c on ctx with the inputs given (storage dtype), into out. */
static int run(polyattn_context *ctx, const variant_case *c, polyattn_algo algo, const void *q,
               const void *k, const void *v, const float *slopes, const float *bias,
               const unsigned char *mask, const float *sinks, run_out *out)
{
    const size_t es = polyattn_dtype_size(c->dtype);
    const size_t nq = (size_t)c->batch * c->heads_q * c->seq_q * c->head_dim;
    const size_t nk = (size_t)c->batch * c->heads_kv * c->seq_kv * c->head_dim;
    const size_t rows = (size_t)c->batch * c->heads_q * c->seq_q;
    const size_t pairs = (size_t)c->seq_q * c->seq_kv;
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, c->dtype, c->batch, c->heads_q, c->heads_kv, c->seq_q,
                                 c->seq_kv, c->head_dim, c->head_dim);
    d.mask = c->mask;
    if (c->window_left != -2) {
        d.has_window = 1;
        d.window_left = c->window_left;
        d.window_right = c->window_right;
    }
    d.softcap = c->softcap;
    d.alibi = c->alibi;
    /* bias [1, heads_q, seq_q, seq_kv] (broadcast over the batch); mask u8 [1, 1, ...] */
    if (c->bias) {
        d.has_bias = 1;
        d.bias.dtype = c->bias == 2 ? c->dtype : POLYATTN_DTYPE_F32;
        const int64_t shape[4] = {1, c->heads_q, c->seq_q, c->seq_kv};
        const int64_t strides[4] = {0, c->seq_q * bias_ld(c), bias_ld(c), 1};
        memcpy(d.bias.shape, shape, sizeof shape);
        memcpy(d.bias.strides, strides, sizeof strides);
    }
    if (c->attn_mask) {
        d.has_attn_mask = 1;
        d.attn_mask.dtype = POLYATTN_DTYPE_U8;
        const int64_t shape[4] = {1, 1, c->seq_q, c->seq_kv};
        const int64_t strides[4] = {0, 0, c->seq_kv, 1};
        memcpy(d.attn_mask.shape, shape, sizeof shape);
        memcpy(d.attn_mask.strides, strides, sizeof strides);
    }
    d.has_sinks = c->sinks;
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_lse = 1;
    polyattn_plan *plan = NULL;
    out->ran = 0;
    polyattn_status st = polyattn_plan_create(ctx, &d, &opt, &plan);
    if (st == POLYATTN_STATUS_UNSUPPORTED) {
        snprintf(out->reason, sizeof out->reason, "%s", polyattn_context_last_error(ctx));
        return 0;
    }
    if (st != POLYATTN_STATUS_SUCCESS) {
        printf("FAIL %s %s: plan: %s\n", c->name, polyattn_algo_name(algo),
               polyattn_context_last_error(ctx));
        return 1;
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_plan_get_info(plan, &info);
    snprintf(out->reason, sizeof out->reason, "%s", info.reason);
    const size_t n_slopes = c->alibi == POLYATTN_ALIBI_PER_BATCH_HEAD
                                ? (size_t)c->batch * c->heads_q
                                : (size_t)c->heads_q;
    polyattn_buffer *b[10] = {NULL};
    enum { BQ, BK, BV, BO, BL, BW, BS, BB, BM, BSK };
    const size_t bias_es = c->bias == 2 ? es : 4;
    void *bias_raw = (void *)bias;
    if (c->bias == 2) {
        bias_raw = malloc(bias_elems(c) * bias_es);
        pa_tk_encode(bias_raw, bias, bias_elems(c), c->dtype);
    }
    int bad = polyattn_buffer_alloc(ctx, nq * es, &b[BQ]) ||
              polyattn_buffer_alloc(ctx, nk * es, &b[BK]) ||
              polyattn_buffer_alloc(ctx, nk * es, &b[BV]) ||
              polyattn_buffer_alloc(ctx, nq * es, &b[BO]) ||
              polyattn_buffer_alloc(ctx, rows * 4, &b[BL]) ||
              (info.workspace_bytes && polyattn_buffer_alloc(ctx, info.workspace_bytes, &b[BW])) ||
              (c->alibi && polyattn_buffer_alloc(ctx, n_slopes * 4, &b[BS])) ||
              (c->bias && polyattn_buffer_alloc(ctx, bias_elems(c) * bias_es, &b[BB])) ||
              (c->attn_mask && polyattn_buffer_alloc(ctx, pairs, &b[BM])) ||
              (c->sinks && polyattn_buffer_alloc(ctx, (size_t)c->heads_q * 4, &b[BSK]));
    bad = bad || polyattn_buffer_write(b[BQ], 0, q, nq * es) ||
          polyattn_buffer_write(b[BK], 0, k, nk * es) ||
          polyattn_buffer_write(b[BV], 0, v, nk * es) ||
          (c->alibi && polyattn_buffer_write(b[BS], 0, slopes, n_slopes * 4)) ||
          (c->bias && polyattn_buffer_write(b[BB], 0, bias_raw, bias_elems(c) * bias_es)) ||
          (c->attn_mask && polyattn_buffer_write(b[BM], 0, mask, pairs)) ||
          (c->sinks && polyattn_buffer_write(b[BSK], 0, sinks, (size_t)c->heads_q * 4));
    /* poison O and LSE */
    unsigned char *o_raw = malloc(nq * es);
    bad = bad || !o_raw;
    if (!bad) {
        memset(o_raw, 0x7f, nq * es);
        for (size_t i = 0; i < rows; i++)
            out->lse[i] = 12345.f;
        bad = polyattn_buffer_write(b[BO], 0, o_raw, nq * es) ||
              polyattn_buffer_write(b[BL], 0, out->lse, rows * 4);
    }
    polyattn_extra_tensors ex;
    memset(&ex, 0, sizeof ex);
    ex.struct_size = sizeof ex;
    ex.alibi_slopes = b[BS], ex.bias = b[BB], ex.attn_mask = b[BM], ex.sinks = b[BSK];
    bad = bad || polyattn_forward_ex(plan, b[BQ], b[BK], b[BV], b[BO], b[BL], NULL, b[BW], &ex) ||
          polyattn_context_synchronize(ctx) || polyattn_buffer_read(b[BO], 0, o_raw, nq * es) ||
          polyattn_buffer_read(b[BL], 0, out->lse, rows * 4);
    if (!bad) pa_tk_decode(out->o, o_raw, nq, c->dtype);
    if (bad)
        printf("FAIL %s %s: %s\n", c->name, polyattn_algo_name(algo),
               polyattn_context_last_error(ctx));
    free(o_raw);
    if (bias_raw != (void *)bias) free(bias_raw);
    for (int i = 0; i < 10; i++)
        polyattn_buffer_free(b[i]);
    polyattn_plan_destroy(plan);
    out->ran = !bad;
    return bad ? 1 : 0;
}

int main(int argc, char **argv)
{
    /* --mma: flash on the mma.sync kernel (POLYATTN_FORCE=cuda.flash=mma), which refuses
     * bias, attn_mask and f32; --wgmma: on the Hopper kernel (cuda.flash=wgmma, sm_90),
     * which refuses attn_mask and f32: those cases skip flash */
    const int force_mma = argc > 1 && !strcmp(argv[1], "--mma");
    const int force_wgmma = argc > 1 && !strcmp(argv[1], "--wgmma");
    if (argc > 1 && !force_mma && !force_wgmma) {
        fprintf(stderr, "usage: test_cuda_variants [--mma | --wgmma]\n");
        return 2;
    }
    if (force_mma || force_wgmma) { /* keys already set (cuda.hopper_sched=...) stay */
        const char *had = getenv("POLYATTN_FORCE");
        char force[256];
        snprintf(force, sizeof force, "cuda.flash=%s%s%s", force_mma ? "mma" : "wgmma",
                 had && *had ? "," : "", had ? had : "");
        setenv("POLYATTN_FORCE", force, 1);
    }
    polyattn_context *gpu = NULL, *host = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_CUDA, 0, &gpu) != POLYATTN_STATUS_SUCCESS) {
        printf("no cuda device: %s\n", polyattn_last_error());
        return 77;
    }
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &host) != POLYATTN_STATUS_SUCCESS) {
        printf("FAIL: no host context\n");
        return 1;
    }
    polyattn_device_info dinfo;
    memset(&dinfo, 0, sizeof dinfo);
    dinfo.struct_size = sizeof dinfo;
    polyattn_context_get_device_info(gpu, &dinfo);
    const int sm80 = strncmp(dinfo.arch, "sm_", 3) == 0 && atoi(dinfo.arch + 3) >= 80;
    const int sm90 = strcmp(dinfo.arch, "sm_90") == 0;
    if (force_wgmma && !sm90) {
        printf("the Hopper kernel runs on sm_90 only (this device: %s): skipped\n", dinfo.arch);
        return 77;
    }
    int failures = 0;
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const variant_case *c = &cases[ci];
        const size_t es = polyattn_dtype_size(c->dtype);
        const size_t nq = (size_t)c->batch * c->heads_q * c->seq_q * c->head_dim;
        const size_t nk = (size_t)c->batch * c->heads_kv * c->seq_kv * c->head_dim;
        const size_t rows = (size_t)c->batch * c->heads_q * c->seq_q;
        const size_t pairs = (size_t)c->seq_q * c->seq_kv;
        pa_tk_rng rng;
        pa_tk_rng_seed(&rng, 1000 + ci);
        float *qf = malloc(nq * 4), *kf = malloc(nk * 4), *vf = malloc(nk * 4);
        void *q = malloc(nq * es), *k = malloc(nk * es), *v = malloc(nk * es);
        float slopes[64], sinks[64];
        float *bias = c->bias ? malloc(bias_elems(c) * 4) : NULL;
        unsigned char *mask = c->attn_mask ? malloc(pairs) : NULL;
        for (size_t i = 0; i < nq; i++)
            qf[i] = (float)(2 * pa_tk_rng_uniform(&rng) - 1);
        for (size_t i = 0; i < nk; i++)
            kf[i] = (float)(2 * pa_tk_rng_uniform(&rng) - 1);
        for (size_t i = 0; i < nk; i++)
            vf[i] = (float)(2 * pa_tk_rng_uniform(&rng) - 1);
        for (int i = 0; i < 64; i++)
            slopes[i] = (float)(0.05 + 0.2 * pa_tk_rng_uniform(&rng));
        for (int i = 0; i < 64; i++)
            sinks[i] = (float)(4 * pa_tk_rng_uniform(&rng) - 1);
        for (size_t i = 0; bias && i < bias_elems(c); i++)
            bias[i] = pa_tk_rng_uniform(&rng) < 0.05 ? -INFINITY
                                                     : (float)(2 * pa_tk_rng_uniform(&rng) - 1);
        for (size_t i = 0; mask && i < pairs; i++)
            mask[i] = pa_tk_rng_uniform(&rng) < 0.8;
        pa_tk_encode(q, qf, nq, c->dtype), pa_tk_encode(k, kf, nk, c->dtype);
        pa_tk_encode(v, vf, nk, c->dtype);
        run_out ref = {malloc(nq * 4), malloc(rows * 4), "", 0};
        failures += run(host, c, POLYATTN_ALGO_AUTO, q, k, v, slopes, bias, mask, sinks, &ref);
        const double tol = c->dtype == POLYATTN_DTYPE_F32   ? 2e-5
                           : c->dtype == POLYATTN_DTYPE_F16 ? 4e-3
                                                            : 3e-2;
        for (int a = POLYATTN_ALGO_UNFUSED; ref.ran && a <= POLYATTN_ALGO_FLASH; a++) {
            /* the mma.sync kernel lacks bias and head dim 192; the Hopper kernel (sm_90, which
             * AUTO picks there) has both */
            const int hopper_case = !c->attn_mask && c->dtype != POLYATTN_DTYPE_F32;
            const int mma_case = hopper_case && !c->bias && c->head_dim != 192;
            const int tc_case = force_mma ? mma_case : sm90 ? hopper_case : mma_case;
            if (a == POLYATTN_ALGO_FLASH &&
                ((force_mma && !tc_case) || (force_wgmma && !hopper_case)))
                continue;
            run_out got = {malloc(nq * 4), malloc(rows * 4), "", 0};
            failures += run(gpu, c, (polyattn_algo)a, q, k, v, slopes, bias, mask, sinks, &got);
            if (!got.ran) { /* every CUDA forward has every variant */
                printf("FAIL %-24s %-7s not run: %s\n", c->name,
                       polyattn_algo_name((polyattn_algo)a), got.reason);
                failures++;
            } else {
                long long bad = 0;
                double worst = 0;
                for (size_t i = 0; i < nq; i++) {
                    const double e = fabs((double)got.o[i] - ref.o[i]);
                    if (!(e <= tol * (1 + fabs(ref.o[i])))) bad++;
                    if (e > worst) worst = e;
                }
                for (size_t i = 0; i < rows; i++) {
                    const int same_inf = isinf(ref.lse[i]) && ref.lse[i] == got.lse[i];
                    const double e = fabs((double)got.lse[i] - ref.lse[i]);
                    if (!same_inf && !(e <= 1e-3 * (1 + fabs(ref.lse[i])))) bad++;
                }
                const int want_tc =
                    a == POLYATTN_ALGO_FLASH && sm80 && (force_wgmma ? hopper_case : tc_case);
                const char *kernel = force_mma     ? "mma.sync"
                                     : force_wgmma ? "warp-specialized"
                                                   : "tensor-core";
                const int tc = strstr(got.reason, kernel) != NULL;
                if (want_tc && !tc) bad++;
                /* cuda.hopper_bias=smem: 16-bit biases must take the shared-memory path */
                const char *force = getenv("POLYATTN_FORCE");
                if (want_tc && sm90 && c->bias == 2 && force &&
                    strstr(force, "cuda.hopper_bias=smem") &&
                    !strstr(got.reason, "bias via shared memory"))
                    bad++;
                /* cuda.hopper_sched=overlap: head dims up to 192 without a bias overlap */
                if (want_tc && force_wgmma && !c->bias && c->head_dim <= 192 && force &&
                    strstr(force, "cuda.hopper_sched=overlap") &&
                    !strstr(got.reason, "each overlapping"))
                    bad++;
                /* cuda.hopper_exp2=poly: softcap without a bias takes the FMA-pipe exp2 */
                if (want_tc && force_wgmma && c->softcap > 0.f && !c->bias && force &&
                    strstr(force, "cuda.hopper_exp2=poly") &&
                    !strstr(got.reason, "exp2 on the FMA pipe"))
                    bad++;
                printf("%-24s %-7s %s: %lld bad, max |dO| %.3g [%s]\n", c->name,
                       polyattn_algo_name((polyattn_algo)a), bad ? "FAIL" : "pass", bad, worst,
                       got.reason);
                failures += bad != 0;
            }
            free(got.o), free(got.lse);
        }
        free(ref.o), free(ref.lse);
        free(qf), free(kf), free(vf), free(q), free(k), free(v), free(bias), free(mask);
    }
    polyattn_context_destroy(gpu);
    polyattn_context_destroy(host);
    printf("test_cuda_variants: %d failures\n", failures);
    return failures ? 1 : 0;
}
