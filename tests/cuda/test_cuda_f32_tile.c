/*
 * f32 flash at head dims 64 and 128 on CUDA: the 3xTF32 tile kernel (flash_f32_tile.cu) at
 * sizes past the conformance table's (several query and key tiles, odd remainders), causal
 * both alignments, fully masked rows, GQA, seq_q != seq_kv, padded layouts, large
 * magnitudes; every element of O and LSE against the host's double reference with the
 * test kit's f32 tolerance (1e-4 of max|O| plus the scores' conditioning term).  On sm_80+
 * the plan must name the tile kernel (but for the padded layout, whose rows are not 16-byte
 * aligned: the generic kernel).
 *
 * First, on every machine (no device needed): that tolerance must reject plain TF32.  The
 * host emulates a kernel that rounds Q, K, P and V to tf32 once (what a 1xTF32 kernel
 * does) and one that forms each product in 3xTF32 as the kernel does, on two problems; the
 * first must fail the check, the second pass it.  So a kernel that lost the low parts
 * cannot pass this test.  Exit 77 without a CUDA device (after that check).
 */
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

/* Query tiles are 128 rows at head dim 64 and 64 at 128, key tiles 64 and 32 keys. */
static const pa_tk_case cases[] = {
    /* GQA 4:1, two batch entries, odd lengths over several tiles */
    {"f32t_gqa4_203x517_d64", 2, 8, 2, 203, 517, 64, 64, NONE, PA_TK_BHSD, 0.f, 1.f, 1},
    /* top-left causal, seq_q > seq_kv, interleaved heads, GQA 2:1 */
    {"f32t_tl_517x300_d64", 1, 4, 2, 517, 300, 64, 64, TL, PA_TK_BSHD, 0.f, 1.f, 1},
    /* bottom-right causal, seq_q > seq_kv: the first 171 rows see no key (O 0, LSE -inf) */
    {"f32t_br_300x129_d64", 1, 2, 2, 300, 129, 64, 64, BR, PA_TK_BHSD, 0.f, 1.f, 1},
    /* bottom-right causal, seq_q < seq_kv (a prefill continuing a cache) */
    {"f32t_br_129x1031_d64", 1, 2, 1, 129, 1031, 64, 64, BR, PA_TK_BSHD, 0.f, 1.f, 1},
    /* large magnitudes: scores in the hundreds, softmax nearly one-hot */
    {"f32t_mag30_257x389_d64", 1, 2, 2, 257, 389, 64, 64, NONE, PA_TK_BHSD, 0.f, 30.f, 1},
    /* an explicit scale */
    {"f32t_scale_131x77_d64", 1, 1, 1, 131, 77, 64, 64, NONE, PA_TK_BHSD, 0.3f, 1.f, 1},
    /* head dim 128: GQA 3:1, odd lengths */
    {"f32t_gqa3_333x515_d128", 1, 6, 2, 333, 515, 128, 128, NONE, PA_TK_BHSD, 0.f, 1.f, 1},
    /* square top-left causal over several tiles, two batch entries */
    {"f32t_tl_259_d128", 2, 2, 2, 259, 259, 128, 128, TL, PA_TK_BSHD, 0.f, 1.f, 1},
    /* bottom-right causal with fully masked rows (the first 223); rows padded by 3 elements
     * (not 16-byte rows: the plan falls back to the generic kernel, which must agree) */
    {"f32t_br_300x77_d128", 1, 2, 1, 300, 77, 128, 128, BR, PA_TK_BSHD_PAD, 0.f, 1.f, 1},
    /* large magnitudes, bottom-right causal, seq_q < seq_kv */
    {"f32t_mag30_br_190x333_d128", 1, 2, 2, 190, 333, 128, 128, BR, PA_TK_BSHD, 0.f, 30.f, 1},
    /* one query (decode-like), GQA 4:1, many key tiles */
    {"f32t_decode_1x1031_d128", 2, 8, 2, 1, 1031, 128, 128, BR, PA_TK_BHSD, 0.f, 1.f, 1},
};

/* ---- the tolerance against plain TF32, on the host ---- */

static float bits_to_float(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint32_t float_to_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
/* tf32 rounded to nearest, ties away (cvt.rna.tf32.f32), and truncated (the mma's read). */
static float tf32_rna(float x) { return bits_to_float((float_to_bits(x) + 0x1000u) & 0xffffe000u); }
static float tf32_trunc(float x) { return bits_to_float(float_to_bits(x) & 0xffffe000u); }

/* c + a*b with tf32 operands: mode 1 plain TF32, 3 the kernel's 3xTF32. */
static float fma_tf32(float c, float a, float b, int mode)
{
    const float ah = tf32_rna(a), bh = tf32_rna(b);
    if (mode == 1) return c + ah * bh;
    const float al = tf32_trunc(a - ah), bl = tf32_trunc(b - bh);
    return ((c + al * bh) + ah * bl) + ah * bh;
}

/* Max over elements of |O - ref| over the test kit's f32 tolerance (> 1: fails), for one
 * head of uniform [-mag, mag] inputs, no mask, in the given mode. */
static double tf32_error(int m, int n, int d, double mag, int mode, uint64_t seed)
{
    pa_tk_rng rng;
    pa_tk_rng_seed(&rng, seed);
    float *q = malloc(sizeof(float) * m * d), *k = malloc(sizeof(float) * n * d),
          *v = malloc(sizeof(float) * n * d), *p = malloc(sizeof(float) * n);
    double *ref = malloc(sizeof(double) * m * d), *pd = malloc(sizeof(double) * n);
    float *o = malloc(sizeof(float) * m * d);
    double max_q = 0, max_k = 0, max_v = 0, max_ref = 0, worst = 0;
    for (int i = 0; i < m * d; i++)
        q[i] = (float)(pa_tk_rng_uniform(&rng) * mag), max_q = fmax(max_q, fabs(q[i]));
    for (int i = 0; i < n * d; i++)
        k[i] = (float)(pa_tk_rng_uniform(&rng) * mag), max_k = fmax(max_k, fabs(k[i]));
    for (int i = 0; i < n * d; i++)
        v[i] = (float)(pa_tk_rng_uniform(&rng) * mag), max_v = fmax(max_v, fabs(v[i]));
    const double scale = 1.0 / sqrt((double)d);
    for (int i = 0; i < m; i++) {
        double mx = -INFINITY, l = 0;
        float mf = -INFINITY, lf = 0;
        for (int j = 0; j < n; j++) {
            double s = 0;
            float sf = 0;
            for (int e = 0; e < d; e++) {
                s += (double)q[i * d + e] * k[j * d + e];
                sf = fma_tf32(sf, q[i * d + e], k[j * d + e], mode);
            }
            pd[j] = s * scale, p[j] = sf * (float)scale;
            mx = fmax(mx, pd[j]), mf = fmaxf(mf, p[j]);
        }
        for (int j = 0; j < n; j++) {
            pd[j] = exp(pd[j] - mx), l += pd[j];
            p[j] = expf(p[j] - mf), lf += p[j];
        }
        for (int e = 0; e < d; e++) {
            double a = 0;
            float af = 0;
            for (int j = 0; j < n; j++) {
                a += pd[j] * v[j * d + e];
                af = fma_tf32(af, p[j], v[j * d + e], mode);
            }
            ref[i * d + e] = a / l, o[i * d + e] = af / lf;
            max_ref = fmax(max_ref, fabs(ref[i * d + e]));
        }
    }
    for (int i = 0; i < m * d; i++)
        worst = fmax(worst, fabs((double)o[i] - ref[i]));
    const double eps_s = ldexp(1.0, -24) * scale * d * max_q * max_k;
    const double tol = pa_tk_tolerance_for(POLYATTN_DTYPE_F32).o_rel * max_ref + 2 * eps_s * max_v;
    free(q), free(k), free(v), free(p), free(ref), free(pd), free(o);
    return worst / tol;
}

static int check_tolerance_rejects_tf32(void)
{
    static const struct {
        int m, n, d;
    } shapes[] = {{48, 200, 64}, {32, 150, 128}};
    int failures = 0;
    for (int i = 0; i < 2; i++) {
        const double plain = tf32_error(shapes[i].m, shapes[i].n, shapes[i].d, 1.0, 1, 11 + i);
        const double x3 = tf32_error(shapes[i].m, shapes[i].n, shapes[i].d, 1.0, 3, 11 + i);
        const int ok = plain > 1 && x3 < 1;
        printf("%s tolerance check d%d: plain TF32 %s the f32 tolerance (%.2fx it), 3xTF32 %s it "
               "(%.2fx)\n",
               ok ? "pass" : "FAIL", shapes[i].d, plain > 1 ? "fails" : "MEETS", plain,
               x3 < 1 ? "meets" : "FAILS", x3);
        failures += !ok;
    }
    return failures;
}

/* ---- the kernel on the device ---- */

/* The plan's reason for flash on case c (f32), into reason. */
static polyattn_status plan_reason(polyattn_context *ctx, const pa_tk_case *c, char *reason,
                                   size_t n)
{
    polyattn_attention_desc desc;
    polyattn_plan_options opt;
    polyattn_plan_info info;
    polyattn_plan *plan = NULL;
    pa_tk_case_desc(c, POLYATTN_DTYPE_F32, &desc);
    polyattn_plan_options_init(&opt);
    opt.algo = POLYATTN_ALGO_FLASH;
    opt.want_lse = 1;
    polyattn_status st = polyattn_plan_create(ctx, &desc, &opt, &plan);
    if (st != POLYATTN_STATUS_SUCCESS) {
        snprintf(reason, n, "%s", polyattn_context_last_error(ctx));
        return st;
    }
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    st = polyattn_plan_get_info(plan, &info);
    snprintf(reason, n, "%s", info.reason);
    polyattn_plan_destroy(plan);
    return st;
}

int main(void)
{
    int failures = check_tolerance_rejects_tf32();
    polyattn_context *gpu = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_CUDA, 0, &gpu) != POLYATTN_STATUS_SUCCESS) {
        printf("no cuda device: %s\n", polyattn_last_error());
        return failures ? 1 : 77;
    }
    polyattn_device_info dinfo;
    memset(&dinfo, 0, sizeof dinfo);
    dinfo.struct_size = sizeof dinfo;
    polyattn_context_get_device_info(gpu, &dinfo);
    const int sm80 = strncmp(dinfo.arch, "sm_", 3) == 0 && atoi(dinfo.arch + 3) >= 80;
    /* the tile kernel on sm_80 and newer (a forced kernel other than mma.sync runs the
     * suite without it) */
    const char *force = getenv("POLYATTN_FORCE");
    const int want_tile =
        sm80 && !(force && strstr(force, "cuda.flash=") && !strstr(force, "cuda.flash=mma"));
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const pa_tk_case *c = &cases[ci];
        char reason[256];
        pa_tk_problem p;
        pa_tk_result r;
        int bad = 0;
        if (plan_reason(gpu, c, reason, sizeof reason) != POLYATTN_STATUS_SUCCESS) {
            printf("FAIL %-28s not planned: %s\n", c->name, reason);
            failures++;
            continue;
        }
        const int tile = want_tile && c->layout != PA_TK_BSHD_PAD;
        if (tile && !(strstr(reason, "3xTF32") && strstr(reason, "tile kernel"))) bad = 1;
        if (pa_tk_problem_init(&p, c, POLYATTN_DTYPE_F32, 26 + ci) != POLYATTN_STATUS_SUCCESS) {
            printf("FAIL %-28s no inputs\n", c->name);
            failures++;
            continue;
        }
        pa_tk_run(gpu, &p, POLYATTN_ALGO_FLASH, 1, 0, &r);
        if (r.status != POLYATTN_STATUS_SUCCESS || !r.pass || !r.checked_lse) bad = 1;
        printf("%s %-28s O max rel %.3g, LSE max %.3g%s%s [%s]\n", bad ? "FAIL" : "pass", c->name,
               r.o_max_rel, r.lse_max_abs, r.message[0] ? ": " : "", r.message, reason);
        failures += bad;
        pa_tk_problem_free(&p);
    }
    polyattn_context_destroy(gpu);
    pa_tk_shutdown();
    printf("test_cuda_f32_tile: %d failures\n", failures);
    return failures ? 1 : 0;
}
