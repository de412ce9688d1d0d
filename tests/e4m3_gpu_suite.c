/* e4m3 inputs on a GPU backend's flash against the host backend: see e4m3_gpu_suite.h. */
#include "e4m3_gpu_suite.h"

#include "pa_testkit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Which codes a tensor draws. */
enum { CODES_ALL, CODES_SMALL, CODES_EXTREME };

/* One problem's host data: every tensor's bytes, the int32 serving tensors. */
typedef struct e4_input {
    polyattn_attention_desc d;
    int num_splits;
    unsigned char *q, *k, *v, *kn, *vn;
    int32_t *cu_q, *cu_kv, *used, *table;
    size_t n_cu, n_used, n_table;
} e4_input;

typedef struct e4_output {
    unsigned char *o, *k, *v; /* o poisoned before the run; k, v: the caches after it */
    float *lse;
    char message[512];
} e4_output;

static int verbose_runs;

/* The value of code c by the OCP definition, in double. */
static double e4m3_formula(unsigned c)
{
    const unsigned s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    if (e == 15 && m == 7) return NAN;
    const double v = e ? ldexp(1.0 + m / 8.0, (int)e - 7) : ldexp(m / 8.0, -6);
    return s ? -v : v;
}

static void fill_codes(unsigned char *dst, size_t n, int mode, pa_tk_rng *rng)
{
    static const unsigned char extreme[] = {0x00, 0x80, 0x7e, 0xfe, 0x01, 0x81, 0x38, 0xb8, 0x07};
    for (size_t i = 0; i < n; i++) {
        unsigned c = (unsigned)(pa_tk_rng_next(rng) & 0xff);
        if (mode == CODES_EXTREME) c = extreme[c % sizeof extreme];
        else if (mode == CODES_SMALL) c &= 0x8f; /* exponents 0 and 1: subnormals, +-0 */
        else if ((c & 0x7f) == 0x7f) c ^= 0x01;  /* the NaNs: the largest finite instead */
        dst[i] = (unsigned char)c;
    }
}

static size_t bytes_of(const polyattn_tensor_desc *t)
{
    return (size_t)polyattn_tensor_desc_bytes(t);
}

static size_t lse_elems(const polyattn_attention_desc *d)
{
    return (size_t)(d->varlen_q ? d->q.shape[1] * d->q.shape[2]
                                : d->q.shape[0] * d->q.shape[1] * d->q.shape[2]);
}

static polyattn_buffer *upload(polyattn_context *ctx, const void *src, size_t bytes)
{
    polyattn_buffer *b = NULL;
    if (!src || !bytes) return NULL;
    if (polyattn_buffer_alloc(ctx, bytes, &b) != POLYATTN_STATUS_SUCCESS) return NULL;
    if (polyattn_buffer_write(b, 0, src, bytes) != POLYATTN_STATUS_SUCCESS) {
        polyattn_buffer_free(b);
        return NULL;
    }
    return b;
}

/* Plans `algo` for in on ctx and runs it on poisoned outputs; the status, the plan's note or
 * error in out->message. */
static polyattn_status run_on(polyattn_context *ctx, polyattn_algo algo, const e4_input *in,
                              e4_output *out)
{
    const polyattn_attention_desc *d = &in->d;
    const size_t ob = bytes_of(&d->o), nl = lse_elems(d);
    out->o = malloc(ob), out->lse = malloc(nl * 4);
    out->k = malloc(bytes_of(&d->k)), out->v = malloc(bytes_of(&d->v));
    pa_tk_poison(out->o, ob / polyattn_dtype_size(d->o.dtype), d->o.dtype);
    pa_tk_poison(out->lse, nl, POLYATTN_DTYPE_F32);
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_lse = 1;
    opt.num_splits = in->num_splits;
    polyattn_plan *plan = NULL;
    polyattn_status st = polyattn_plan_create(ctx, d, &opt, &plan);
    if (st != POLYATTN_STATUS_SUCCESS) {
        snprintf(out->message, sizeof out->message, "plan: %s: %s", polyattn_status_name(st),
                 polyattn_context_last_error(ctx));
        return st;
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_plan_get_info(plan, &info);
    snprintf(out->message, sizeof out->message, "%d split(s): %s", info.num_splits, info.reason);
    polyattn_buffer *b[12] = {
        upload(ctx, in->q, bytes_of(&d->q)),
        upload(ctx, in->k, bytes_of(&d->k)),
        upload(ctx, in->v, bytes_of(&d->v)),
        upload(ctx, out->o, ob),
        upload(ctx, out->lse, nl * 4),
        NULL,
        upload(ctx, in->kn, d->has_kv_append ? bytes_of(&d->k_new) : 0),
        upload(ctx, in->vn, d->has_kv_append ? bytes_of(&d->v_new) : 0),
        upload(ctx, in->cu_q, in->cu_q ? in->n_cu * 4 : 0),
        upload(ctx, in->cu_kv, in->cu_kv ? in->n_cu * 4 : 0),
        upload(ctx, in->used, in->n_used * 4),
        upload(ctx, in->table, in->n_table * 4),
    };
    if (info.workspace_bytes) polyattn_buffer_alloc(ctx, info.workspace_bytes, &b[5]);
    polyattn_extra_tensors x;
    memset(&x, 0, sizeof x);
    x.struct_size = sizeof x;
    x.k_new = b[6], x.v_new = b[7], x.cu_seqlens_q = b[8], x.cu_seqlens_kv = b[9];
    x.seqused_kv = b[10], x.block_table = b[11];
    st = polyattn_forward_ex(plan, b[0], b[1], b[2], b[3], b[4], NULL, b[5], &x);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_read(b[3], 0, out->o, ob);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_read(b[4], 0, out->lse, nl * 4);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_read(b[1], 0, out->k, bytes_of(&d->k));
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_read(b[2], 0, out->v, bytes_of(&d->v));
    if (st != POLYATTN_STATUS_SUCCESS)
        snprintf(out->message, sizeof out->message, "forward: %s: %s", polyattn_status_name(st),
                 polyattn_context_last_error(ctx));
    for (int i = 0; i < 12; i++)
        polyattn_buffer_free(b[i]);
    polyattn_plan_destroy(plan);
    return st;
}

static void output_free(e4_output *o) { free(o->o), free(o->lse), free(o->k), free(o->v); }

static double resolve(float descale) { return descale > 0 ? descale : 1.0; }

/* The largest |v_descale x V| of the inputs: the scale of O's absolute error. */
static double v_max(const e4_input *in)
{
    double m = 0;
    const size_t n = bytes_of(&in->d.v), nn = in->d.has_kv_append ? bytes_of(&in->d.v_new) : 0;
    for (size_t i = 0; i < n + nn; i++) {
        const double x = fabs(e4m3_formula(i < n ? in->v[i] : in->vn[i - n]));
        if (x > m) m = x;
    }
    return m * resolve(in->d.v_descale);
}

/* Compares the GPU's outputs with the host's, every element (untouched ones bitwise). */
static int compare(const char *name, const e4_input *in, const e4_output *gpu,
                   const e4_output *host, double *worst_o, double *worst_lse)
{
    const polyattn_attention_desc *d = &in->d;
    const polyattn_dtype dt = d->o.dtype;
    const size_t es = polyattn_dtype_size(dt), n = bytes_of(&d->o) / es, nl = lse_elems(d);
    /* O: one rounding to its dtype on each side (they may differ by a step) plus the f32
     * computation's error, at most a few 1e-6 of the largest value of V here. */
    const double rel = dt == POLYATTN_DTYPE_F32   ? 1e-5
                       : dt == POLYATTN_DTYPE_F16 ? 1.0 / 1024
                                                  : 1.0 / 128;
    const double abs_tol = 2e-5 * v_max(in) + (dt == POLYATTN_DTYPE_F16 ? ldexp(1.0, -24) : 0.0);
    int bad = 0;
    *worst_o = *worst_lse = 0;
    for (size_t i = 0; i < n; i++) {
        if (!memcmp(gpu->o + i * es, host->o + i * es, es)) continue;
        float g, h;
        pa_tk_decode(&g, gpu->o + i * es, 1, dt);
        pa_tk_decode(&h, host->o + i * es, 1, dt);
        const double err = fabs((double)g - h);
        if (err > *worst_o || err != err) *worst_o = err;
        if (!(err <= rel * fabs(h) + abs_tol) && bad++ < 5)
            printf("  %s: o[%zu] = %.9g, host %.9g (tol %.3g)\n", name, i, g, h,
                   rel * fabs(h) + abs_tol);
    }
    for (size_t i = 0; i < nl; i++) {
        if (!memcmp(&gpu->lse[i], &host->lse[i], 4)) continue;
        const double g = gpu->lse[i], h = host->lse[i], err = fabs(g - h);
        if (err > *worst_lse || err != err) *worst_lse = err;
        if (!(err <= 2e-5 * (1.0 + fabs(h))) && bad++ < 10)
            printf("  %s: lse[%zu] = %.9g, host %.9g\n", name, i, g, h);
    }
    /* KV append: the caches hold the same bytes afterwards. */
    if (d->has_kv_append &&
        (memcmp(gpu->k, host->k, bytes_of(&d->k)) || memcmp(gpu->v, host->v, bytes_of(&d->v)))) {
        printf("  %s: the caches after the append differ from the host's\n", name);
        bad++;
    }
    return bad;
}

/* Runs in on the GPU's flash and on the host; returns 1 on a failure. */
static int check(polyattn_context *gpu, polyattn_context *host, const char *label, const char *name,
                 const e4_input *in)
{
    e4_output g, h;
    memset(&g, 0, sizeof g), memset(&h, 0, sizeof h);
    const polyattn_status sh = run_on(host, POLYATTN_ALGO_FLASH, in, &h);
    const polyattn_status sg = run_on(gpu, POLYATTN_ALGO_FLASH, in, &g);
    int fail = 1;
    double wo = 0, wl = 0;
    if (sh != POLYATTN_STATUS_SUCCESS) printf("  %s: host %s\n", name, h.message);
    else if (sg != POLYATTN_STATUS_SUCCESS) printf("  %s: %s\n", name, g.message);
    else fail = compare(name, in, &g, &h, &wo, &wl) != 0;
    printf("%s: %s e4m3 %-28s o %-4s max|dO| %-9.3g max|dLSE| %-9.3g%s%s\n", fail ? "FAIL" : "pass",
           label, name, polyattn_dtype_name(in->d.o.dtype), wo, wl, verbose_runs ? "  " : "",
           verbose_runs ? g.message : "");
    output_free(&g), output_free(&h);
    return fail;
}

static void input_free(e4_input *in)
{
    free(in->q), free(in->k), free(in->v), free(in->kn), free(in->vn);
    free(in->cu_q), free(in->cu_kv), free(in->used), free(in->table);
}

/* Random codes in every tensor the descriptor has. */
static void fill_inputs(e4_input *in, int mode, uint64_t seed)
{
    pa_tk_rng r;
    pa_tk_rng_seed(&r, seed);
    const polyattn_attention_desc *d = &in->d;
    in->q = malloc(bytes_of(&d->q)), in->k = malloc(bytes_of(&d->k));
    in->v = malloc(bytes_of(&d->v));
    fill_codes(in->q, bytes_of(&d->q), mode, &r);
    fill_codes(in->k, bytes_of(&d->k), mode, &r);
    fill_codes(in->v, bytes_of(&d->v), mode, &r);
    if (d->has_kv_append) {
        in->kn = malloc(bytes_of(&d->k_new)), in->vn = malloc(bytes_of(&d->v_new));
        fill_codes(in->kn, bytes_of(&d->k_new), mode, &r);
        fill_codes(in->vn, bytes_of(&d->v_new), mode, &r);
    }
}

typedef struct dense_case {
    const char *name;
    int64_t batch, hq, hkv, sq, skv, dim, dim_v;
    polyattn_mask mask;
    polyattn_dtype o_dtype;
    int bshd, codes, splits;
    float qd, kd, vd;
    int64_t window; /* > 0: a window of this many keys each side */
    float softcap;
} dense_case;

static int dense(polyattn_context *gpu, polyattn_context *host, const char *label,
                 const dense_case *c, uint64_t seed)
{
    e4_input in;
    memset(&in, 0, sizeof in);
    polyattn_attention_desc *d = &in.d;
    const polyattn_dtype e = POLYATTN_DTYPE_E4M3;
    polyattn_attention_desc_init(d, e, c->batch, c->hq, c->hkv, c->sq, c->skv, c->dim, c->dim_v);
    if (c->bshd) {
        polyattn_tensor_desc_bshd(&d->q, e, c->batch, c->hq, c->sq, c->dim);
        polyattn_tensor_desc_bshd(&d->k, e, c->batch, c->hkv, c->skv, c->dim);
        polyattn_tensor_desc_bshd(&d->v, e, c->batch, c->hkv, c->skv, c->dim_v);
        polyattn_tensor_desc_bshd(&d->o, c->o_dtype, c->batch, c->hq, c->sq, c->dim_v);
    }
    d->o.dtype = c->o_dtype;
    d->mask = c->mask;
    d->q_descale = c->qd, d->k_descale = c->kd, d->v_descale = c->vd;
    if (c->window) d->has_window = 1, d->window_left = d->window_right = c->window;
    d->softcap = c->softcap;
    in.num_splits = c->splits;
    fill_inputs(&in, c->codes, seed);
    const int fail = check(gpu, host, label, c->name, &in);
    input_free(&in);
    return fail;
}

/* One query, one key: O is v_descale x V, every code (NaN for 0x7f and 0xff). */
static int codes_through_forward(polyattn_context *gpu, const char *label)
{
    e4_input in;
    memset(&in, 0, sizeof in);
    polyattn_attention_desc_init(&in.d, POLYATTN_DTYPE_E4M3, 1, 1, 1, 1, 1, 1, 256);
    in.d.o.dtype = POLYATTN_DTYPE_F32;
    in.d.v_descale = 2.0f;
    unsigned char q = 0x38, k = 0x38, v[256]; /* 1.0, 1.0 */
    for (int c = 0; c < 256; c++)
        v[c] = (unsigned char)c;
    in.q = &q, in.k = &k, in.v = v;
    e4_output g;
    memset(&g, 0, sizeof g);
    int bad = 0;
    if (run_on(gpu, POLYATTN_ALGO_FLASH, &in, &g) != POLYATTN_STATUS_SUCCESS) {
        printf("  codes: %s\n", g.message);
        bad = 1;
    }
    for (int c = 0; c < 256 && !bad; c++) {
        float got;
        memcpy(&got, g.o + 4 * c, 4);
        const double want = c == 0x80 ? 0.0 : 2.0 * e4m3_formula((unsigned)c);
        const int ok = isnan(want) ? isnan(got) : got == want && (want != 0 || !signbit(got));
        if (!ok && bad++ < 5) printf("  code 0x%02x: %.9g, want %.9g\n", c, got, want);
    }
    printf("%s: %s e4m3 every code through a one-key forward (o = 2 x v)\n", bad ? "FAIL" : "pass",
           label);
    output_free(&g);
    return bad != 0;
}

/* A dense cache with appended rows (the append copies bytes), key splits merged into f16. */
static int cache_append(polyattn_context *gpu, polyattn_context *host, const char *label,
                        int splits)
{
    const int64_t seqs = 2, hq = 4, hk = 2, sq = 3, cap = 200, dim = 8, dim_v = 5, n_new = 2;
    e4_input in;
    memset(&in, 0, sizeof in);
    polyattn_attention_desc *d = &in.d;
    polyattn_attention_desc_init(d, POLYATTN_DTYPE_E4M3, seqs, hq, hk, sq, cap, dim, dim_v);
    d->o.dtype = POLYATTN_DTYPE_F16;
    d->mask = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
    d->kv_layout = POLYATTN_KV_CACHE;
    d->has_kv_append = 1;
    polyattn_tensor_desc_bhsd(&d->k_new, POLYATTN_DTYPE_E4M3, seqs, hk, n_new, dim);
    polyattn_tensor_desc_bshd(&d->v_new, POLYATTN_DTYPE_E4M3, seqs, hk, n_new, dim_v);
    d->q_descale = 0.0625f, d->k_descale = 0.03f, d->v_descale = 1.5f;
    in.num_splits = splits;
    fill_inputs(&in, CODES_ALL, 0xcafe + (uint64_t)splits);
    in.used = malloc(2 * 4), in.n_used = 2;
    in.used[0] = 130, in.used[1] = 7;
    char name[64];
    snprintf(name, sizeof name, "cache+append splits %d", splits);
    const int fail = check(gpu, host, label, name, &in);
    input_free(&in);
    return fail;
}

/* A paged cache (shuffled blocks, an empty sequence before its append), top-left causal. */
static int paged(polyattn_context *gpu, polyattn_context *host, const char *label)
{
    const int64_t seqs = 3, hq = 2, hk = 1, sq = 4, bs = 16, nb = 16, mb = 5, dim = 24, dim_v = 9;
    e4_input in;
    memset(&in, 0, sizeof in);
    polyattn_attention_desc *d = &in.d;
    polyattn_attention_desc_init(d, POLYATTN_DTYPE_E4M3, seqs, hq, hk, sq, mb * bs, dim, dim_v);
    polyattn_tensor_desc_bshd(&d->k, POLYATTN_DTYPE_E4M3, nb, hk, bs, dim);
    polyattn_tensor_desc_bshd(&d->v, POLYATTN_DTYPE_E4M3, nb, hk, bs, dim_v);
    d->o.dtype = POLYATTN_DTYPE_BF16;
    d->mask = POLYATTN_MASK_CAUSAL_TOP_LEFT;
    d->kv_layout = POLYATTN_KV_PAGED;
    d->max_blocks_per_seq = mb;
    d->has_kv_append = 1;
    polyattn_tensor_desc_bhsd(&d->k_new, POLYATTN_DTYPE_E4M3, seqs, hk, 1, dim);
    polyattn_tensor_desc_bhsd(&d->v_new, POLYATTN_DTYPE_E4M3, seqs, hk, 1, dim_v);
    d->q_descale = 0.02f, d->k_descale = 0.01f, d->v_descale = 0.75f;
    fill_inputs(&in, CODES_ALL, 0x9a9e);
    in.used = malloc(seqs * 4), in.n_used = (size_t)seqs;
    in.used[0] = 70, in.used[1] = 0, in.used[2] = 33;
    in.table = malloc(seqs * mb * 4), in.n_table = (size_t)(seqs * mb);
    for (int64_t i = 0; i < seqs * mb; i++) /* a permutation of 15 of the 16 blocks */
        in.table[i] = (int32_t)((i * 7 + 3) % nb);
    const int fail = check(gpu, host, label, "paged+append shuffled", &in);
    input_free(&in);
    return fail;
}

/* Varlen queries and keys (an empty query sequence, padding rows), f32 O, key splits. */
static int varlen(polyattn_context *gpu, polyattn_context *host, const char *label)
{
    const int64_t seqs = 3, hq = 3, hk = 1, dim = 20, dim_v = 12, total_q = 14, total_kv = 112;
    e4_input in;
    memset(&in, 0, sizeof in);
    polyattn_attention_desc *d = &in.d;
    polyattn_attention_desc_init(d, POLYATTN_DTYPE_E4M3, seqs, hq, hk, 7, 63, dim, dim_v);
    d->varlen_q = 1;
    d->num_seqs = seqs;
    polyattn_tensor_desc_bshd(&d->q, POLYATTN_DTYPE_E4M3, 1, hq, total_q, dim);
    polyattn_tensor_desc_bshd(&d->o, POLYATTN_DTYPE_F32, 1, hq, total_q, dim_v);
    d->kv_layout = POLYATTN_KV_VARLEN;
    polyattn_tensor_desc_bshd(&d->k, POLYATTN_DTYPE_E4M3, 1, hk, total_kv, dim);
    polyattn_tensor_desc_bshd(&d->v, POLYATTN_DTYPE_E4M3, 1, hk, total_kv, dim_v);
    d->mask = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
    d->q_descale = 0.01f, d->k_descale = 0.02f, d->v_descale = 4.0f;
    in.num_splits = 2;
    fill_inputs(&in, CODES_ALL, 0x7a41);
    static const int32_t cu_q[4] = {1, 6, 6, 13}, cu_kv[4] = {2, 42, 49, 112};
    in.cu_q = malloc(sizeof cu_q), in.cu_kv = malloc(sizeof cu_kv), in.n_cu = 4;
    memcpy(in.cu_q, cu_q, sizeof cu_q), memcpy(in.cu_kv, cu_kv, sizeof cu_kv);
    const int fail = check(gpu, host, label, "varlen q+kv splits 2", &in);
    input_free(&in);
    return fail;
}

/* Unfused and fused refuse e4m3 with a reason; backward too; AUTO plans flash. */
static int refusals(polyattn_context *gpu, const char *label)
{
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_E4M3, 1, 2, 1, 17, 33, 64, 64);
    int bad = 0;
    const polyattn_algo algos[3] = {POLYATTN_ALGO_UNFUSED, POLYATTN_ALGO_FUSED, POLYATTN_ALGO_AUTO};
    for (int a = 0; a < 3; a++) {
        polyattn_plan_options opt;
        polyattn_plan_options_init(&opt);
        opt.algo = algos[a];
        polyattn_plan *plan = NULL;
        const polyattn_status st = polyattn_plan_create(gpu, &d, &opt, &plan);
        polyattn_plan_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        if (plan) polyattn_plan_get_info(plan, &info);
        const int ok = algos[a] == POLYATTN_ALGO_AUTO
                           ? st == POLYATTN_STATUS_SUCCESS && info.algo == POLYATTN_ALGO_FLASH
                           : st == POLYATTN_STATUS_UNSUPPORTED && !plan &&
                                 strstr(polyattn_context_last_error(gpu), "e4m3");
        if (!ok) {
            printf("  %s: %s: %s\n", polyattn_algo_name(algos[a]), polyattn_status_name(st),
                   polyattn_context_last_error(gpu));
            bad++;
        }
        polyattn_plan_destroy(plan);
    }
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = POLYATTN_ALGO_FLASH;
    opt.want_backward = 1;
    polyattn_plan *plan = NULL;
    if (polyattn_plan_create(gpu, &d, &opt, &plan) != POLYATTN_STATUS_UNSUPPORTED || plan) {
        printf("  flash backward planned for e4m3\n");
        bad++;
    }
    polyattn_plan_destroy(plan);
    printf("%s: %s e4m3: unfused, fused and backward refuse, AUTO plans flash\n",
           bad ? "FAIL" : "pass", label);
    return bad != 0;
}

int e4m3_gpu_suite(polyattn_context *gpu, const char *label, int verbose)
{
    verbose_runs = verbose;
    polyattn_context *host = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &host) != POLYATTN_STATUS_SUCCESS) {
        printf("FAIL: no host context\n");
        return 1;
    }
    const polyattn_mask N = POLYATTN_MASK_NONE, TL = POLYATTN_MASK_CAUSAL_TOP_LEFT,
                        BR = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
    const polyattn_dtype F32 = POLYATTN_DTYPE_F32, F16 = POLYATTN_DTYPE_F16,
                         BF16 = POLYATTN_DTYPE_BF16;
    const dense_case cases[] = {
        {"plain 7x13 d24/17", 1, 2, 2, 7, 13, 24, 17, N, F32, 0, CODES_ALL, 0, 0.0078125f, 0.01f,
         3.0f, 0, 0.0f},
        {"gqa3 causal br 11x5", 2, 6, 2, 11, 5, 16, 16, BR, BF16, 0, CODES_ALL, 0, 0.02f, 0.015f,
         0.5f, 0, 0.0f},
        {"gqa2 causal tl bshd 37x70", 2, 6, 3, 37, 70, 33, 7, TL, F16, 1, CODES_ALL, 0, 0.01f,
         0.004f, 0.25f, 0, 0.0f},
        {"subnormals br 9x130", 1, 2, 1, 9, 130, 40, 40, BR, F32, 0, CODES_SMALL, 0, 64.0f, 64.0f,
         256.0f, 0, 0.0f},
        {"+-448 +-0 extremes 5x9", 1, 1, 1, 5, 9, 8, 8, N, BF16, 0, CODES_EXTREME, 0, 1e-3f, 1e-3f,
         1.0f, 0, 0.0f},
        {"no descales small 5x67", 1, 3, 1, 5, 67, 8, 8, N, F16, 0, CODES_SMALL, 0, 0.0f, 0.0f,
         0.0f, 0, 0.0f},
        {"gqa4 d128/160 br 40x150", 1, 4, 1, 40, 150, 128, 160, BR, BF16, 0, CODES_ALL, 0, 0.003f,
         0.002f, 0.1f, 0, 0.0f},
        {"d300/260 tl 6x20 f32", 1, 1, 1, 6, 20, 300, 260, TL, F32, 1, CODES_ALL, 0, 0.002f,
         0.0015f, 2.0f, 0, 0.0f},
        {"dense splits 3 gqa2 3x200", 1, 4, 2, 3, 200, 64, 64, BR, F16, 0, CODES_ALL, 3, 0.01f,
         0.01f, 1.0f, 0, 0.0f},
        {"window 9 softcap 5 br 21x90", 1, 2, 1, 21, 90, 32, 32, BR, BF16, 0, CODES_ALL, 0, 0.02f,
         0.01f, 0.5f, 9, 5.0f},
    };
    int failed = 0;
    failed += codes_through_forward(gpu, label);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        failed += dense(gpu, host, label, &cases[i], 0xe4 + i);
    failed += cache_append(gpu, host, label, 3);
    failed += cache_append(gpu, host, label, 1);
    failed += paged(gpu, host, label);
    failed += varlen(gpu, host, label);
    failed += refusals(gpu, label);
    polyattn_context_destroy(host);
    printf("%s e4m3: %d FAIL\n", label, failed);
    return failed;
}
