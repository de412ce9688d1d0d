/*
 * FP8 e4m3 inputs on the OpenCL flash kernels against the host backend (itself checked
 * against a double reference by test_e4m3_host): every code of q, k and v decoded exactly
 * (NaN codes included), random codes over the whole range (subnormals, +-448, +-0) with
 * descales other than 1, odd sizes (partial tiles), GQA, both causal alignments (rows that
 * see no key), a window with softcap, BSHD strides and O in f32, f16 and bf16, through the
 * row kernel and the tiled kernels, 4-wide and scalar (POLYATTN_FORCE=opencl.flash=rows /
 * tiled, opencl.tiles); the serving kernels (row and cooperative decode,
 * POLYATTN_FORCE=opencl.serving=coop) on a KV cache with appended rows (the cache must end up
 * holding the appended bytes) and on varlen queries over a paged cache with key splits.  O and the LSE are poisoned and every element compared.  AUTO must plan flash, and
 * unfused and fused refuse e4m3 with a reason that names it.
 */
#include "pa_testkit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

enum { Q, K, V, KN, VN, N_IN };

/* One problem: the descriptor, its inputs (e4m3 bytes) and serving tensors. */
typedef struct prob {
    const char *name;
    polyattn_attention_desc d;
    unsigned char *in[N_IN];
    size_t bytes[N_IN];
    int32_t *cu_q, *used, *table;
    size_t n_cu_q, n_used, n_table, lse_elems;
    int num_splits;
    double atol_o, atol_lse; /* from the inputs' magnitudes (set_tolerance) */
} prob;

typedef struct result {
    void *o;
    float *lse;
    unsigned char *k_after, *v_after;
    polyattn_algo algo;
} result;

static polyattn_buffer *upload(polyattn_context *c, const void *src, size_t bytes)
{
    polyattn_buffer *b = NULL;
    if (!bytes || polyattn_buffer_alloc(c, bytes, &b) != POLYATTN_STATUS_SUCCESS) return NULL;
    if (src) polyattn_buffer_write(b, 0, src, bytes);
    return b;
}

/* Plans p on c (want_lse), runs it on poisoned O and LSE, reads O, LSE, K and V back. */
static polyattn_status run_on(polyattn_context *c, const prob *p, polyattn_algo algo, result *r)
{
    memset(r, 0, sizeof *r);
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_lse = 1;
    opt.num_splits = p->num_splits;
    polyattn_plan *plan = NULL;
    polyattn_status st = polyattn_plan_create(c, &p->d, &opt, &plan);
    if (st != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "%s: plan: %s: %s\n", p->name, polyattn_status_name(st),
                polyattn_context_last_error(c));
        return st;
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_plan_get_info(plan, &info);
    r->algo = info.algo;
    const size_t ob = (size_t)polyattn_tensor_desc_bytes(&p->d.o);
    r->o = malloc(ob);
    r->lse = malloc(p->lse_elems * 4);
    r->k_after = malloc(p->bytes[K]);
    r->v_after = malloc(p->bytes[V]);
    pa_tk_poison(r->o, ob / polyattn_dtype_size(p->d.o.dtype), p->d.o.dtype);
    pa_tk_poison(r->lse, p->lse_elems, POLYATTN_DTYPE_F32);
    polyattn_buffer *b[N_IN], *bo = upload(c, r->o, ob), *bl = upload(c, r->lse, p->lse_elems * 4);
    for (int i = 0; i < N_IN; i++)
        b[i] = upload(c, p->in[i], p->bytes[i]);
    polyattn_buffer *bcu = upload(c, p->cu_q, p->n_cu_q * 4),
                    *bused = upload(c, p->used, p->n_used * 4),
                    *btable = upload(c, p->table, p->n_table * 4),
                    *ws = upload(c, NULL, (size_t)info.workspace_bytes);
    polyattn_extra_tensors extra;
    memset(&extra, 0, sizeof extra);
    extra.struct_size = sizeof extra;
    extra.cu_seqlens_q = bcu, extra.seqused_kv = bused, extra.block_table = btable;
    extra.k_new = b[KN], extra.v_new = b[VN];
    st = polyattn_forward_ex(plan, b[Q], b[K], b[V], bo, bl, NULL, ws, &extra);
    if (!st) st = polyattn_buffer_read(bo, 0, r->o, ob);
    if (!st) st = polyattn_buffer_read(bl, 0, r->lse, p->lse_elems * 4);
    if (!st) st = polyattn_buffer_read(b[K], 0, r->k_after, p->bytes[K]);
    if (!st) st = polyattn_buffer_read(b[V], 0, r->v_after, p->bytes[V]);
    if (st)
        fprintf(stderr, "%s: forward: %s: %s\n", p->name, polyattn_status_name(st),
                polyattn_context_last_error(c));
    for (int i = 0; i < N_IN; i++)
        polyattn_buffer_free(b[i]);
    polyattn_buffer_free(bo), polyattn_buffer_free(bl), polyattn_buffer_free(bcu);
    polyattn_buffer_free(bused), polyattn_buffer_free(btable), polyattn_buffer_free(ws);
    polyattn_plan_destroy(plan);
    return st;
}

static void free_result(result *r) { free(r->o), free(r->lse), free(r->k_after), free(r->v_after); }

/* Largest |value| x descale over a tensor's finite codes. */
static double max_abs(const unsigned char *x, size_t n, float descale)
{
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        const double a = fabs((double)pa_tk_e4m3_to_f32(x[i]));
        if (a > m && !isnan(a)) m = a;
    }
    return m * (descale > 0 ? descale : 1.0);
}

/* The device computes in f32: a score's error grows with the sum of |q_x k_x| (bounded by
 * head_dim x max|q| x max|k| x scale), and O's with it times max|v|. */
static void set_tolerance(prob *p)
{
    const polyattn_attention_desc *d = &p->d;
    const double dim = (double)d->q.shape[3];
    const double scale = d->scale > 0 ? d->scale : 1.0 / sqrt(dim);
    double kmax = max_abs(p->in[K], p->bytes[K], d->k_descale);
    double vmax = max_abs(p->in[V], p->bytes[V], d->v_descale);
    if (p->in[KN]) {
        kmax = fmax(kmax, max_abs(p->in[KN], p->bytes[KN], d->k_descale));
        vmax = fmax(vmax, max_abs(p->in[VN], p->bytes[VN], d->v_descale));
    }
    const double sb = scale * dim * max_abs(p->in[Q], p->bytes[Q], d->q_descale) * kmax;
    const double eps = ldexp(1.0, -24);
    p->atol_o = vmax * (16 * eps * (sb + dim) + 1e-6);
    p->atol_lse = 16 * eps * (sb + dim) + 1e-6;
}

static int matches(double got, double want, double rel, double atol)
{
    if (isnan(want) || isnan(got)) return isnan(want) && isnan(got);
    if (isinf(want) || isinf(got)) return got == want;
    return fabs(got - want) <= rel * fabs(want) + atol;
}

/* Every O and LSE element of got against want (the host's); the caches byte for byte. */
static void compare(const prob *p, const result *want, const result *got, const char *how)
{
    const polyattn_dtype odt = p->d.o.dtype;
    const size_t es = polyattn_dtype_size(odt);
    const size_t n = (size_t)polyattn_tensor_desc_bytes(&p->d.o) / es;
    const double rel = odt == POLYATTN_DTYPE_F32   ? ldexp(1.0, -21)
                       : odt == POLYATTN_DTYPE_F16 ? ldexp(1.0, -10)
                                                   : ldexp(1.0, -7);
    const double atol = p->atol_o + (odt == POLYATTN_DTYPE_F16 ? ldexp(1.0, -24) : 0.0);
    long long bad = 0;
    for (size_t i = 0; i < n; i++) {
        float g, w;
        pa_tk_decode(&g, (const unsigned char *)got->o + i * es, 1, odt);
        pa_tk_decode(&w, (const unsigned char *)want->o + i * es, 1, odt);
        if (!matches(g, w, rel, atol) && bad++ < 5)
            fprintf(stderr, "%s (%s): o[%zu] = %.9g, host %.9g (tolerance %.3g)\n", p->name, how, i,
                    (double)g, (double)w, rel * fabs(w) + atol);
    }
    for (size_t i = 0; i < p->lse_elems; i++)
        if (!matches(got->lse[i], want->lse[i], p->atol_lse, p->atol_lse) && bad++ < 5)
            fprintf(stderr, "%s (%s): lse[%zu] = %.9g, host %.9g\n", p->name, how, i,
                    (double)got->lse[i], (double)want->lse[i]);
    if (memcmp(got->k_after, want->k_after, p->bytes[K]) ||
        memcmp(got->v_after, want->v_after, p->bytes[V])) {
        fprintf(stderr, "%s (%s): the K/V cache differs from the host's after the forward\n",
                p->name, how);
        bad++;
    }
    CHECK(bad == 0);
}

/* Random bytes over every finite code (the NaNs 0x7f and 0xff left out). */
static unsigned char *random_codes(size_t n, pa_tk_rng *rng)
{
    unsigned char *x = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) {
        unsigned c;
        do
            c = (unsigned)(pa_tk_rng_next(rng) & 0xff);
        while ((c & 0x7f) == 0x7f);
        x[i] = (unsigned char)c;
    }
    return x;
}

static void fill_inputs(prob *p, uint64_t seed)
{
    pa_tk_rng rng;
    pa_tk_rng_seed(&rng, seed);
    const polyattn_tensor_desc *t[N_IN] = {&p->d.q, &p->d.k, &p->d.v, &p->d.k_new, &p->d.v_new};
    for (int i = 0; i < N_IN; i++) {
        if ((i == KN || i == VN) && !p->d.has_kv_append) continue;
        p->bytes[i] = (size_t)polyattn_tensor_desc_bytes(t[i]);
        p->in[i] = random_codes(p->bytes[i], &rng);
    }
    /* Some exact extremes wherever they land: +-448, +-0, the least subnormals. */
    static const unsigned char special[] = {0x7e, 0xfe, 0x00, 0x80, 0x01, 0x81, 0x08};
    for (int i = 0; i < N_IN; i++)
        for (size_t j = 0; p->in[i] && j < sizeof special; j++)
            p->in[i][(j * 7919u) % p->bytes[i]] = special[j];
    set_tolerance(p);
}

static void free_prob(prob *p)
{
    for (int i = 0; i < N_IN; i++)
        free(p->in[i]);
    free(p->cu_q), free(p->used), free(p->table);
}

/* Runs p on the host (flash) and on each OpenCL context, comparing. */
static void check_prob(const prob *p, polyattn_context *host, polyattn_context *const *ocl,
                       const char *const *how, int n_ocl)
{
    result want;
    if (run_on(host, p, POLYATTN_ALGO_FLASH, &want)) {
        CHECK(0);
        free_result(&want);
        return;
    }
    for (int c = 0; c < n_ocl; c++) {
        result got;
        const polyattn_status st = run_on(ocl[c], p, POLYATTN_ALGO_FLASH, &got);
        CHECK(st == POLYATTN_STATUS_SUCCESS);
        if (!st) compare(p, &want, &got, how[c]);
        free_result(&got);
    }
    free_result(&want);
}

/* ---- dense problems ---- */

typedef struct dense_case {
    const char *name;
    int64_t batch, hq, hkv, sq, skv, dim, dim_v;
    polyattn_mask mask;
    polyattn_dtype o_dtype;
    int bshd;
    float qd, kd, vd;
    int variants; /* a sliding window and softcap (the kernels' PA_VAR build) */
} dense_case;

static void dense_prob(prob *p, const dense_case *c)
{
    memset(p, 0, sizeof *p);
    p->name = c->name;
    polyattn_attention_desc *d = &p->d;
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
    if (c->variants) {
        d->has_window = 1, d->window_left = 3, d->window_right = 1;
        d->softcap = 4.0f;
    }
    p->lse_elems = (size_t)(c->batch * c->hq * c->sq);
}

/* Every code of q (and, with swap, of k) in some batch's score, every code of v in O: batch b
 * has one query and one key of head dim 8; lane b % 8 holds q's code b (k: 1.0) and v's row
 * holds codes 8b .. 8b + 7 (mod 256).  Scale 1: the LSE is the decoded code. */
static void codes_prob(prob *p, int swap)
{
    memset(p, 0, sizeof *p);
    p->name = swap ? "every k code" : "every q code";
    polyattn_attention_desc *d = &p->d;
    polyattn_attention_desc_init(d, POLYATTN_DTYPE_E4M3, 256, 1, 1, 1, 1, 8, 8);
    d->o.dtype = POLYATTN_DTYPE_F32;
    d->scale = 1.0f;
    d->v_descale = 2.0f; /* exact */
    for (int i = Q; i <= V; i++) {
        p->bytes[i] = 256 * 8;
        p->in[i] = calloc(256, 8);
    }
    for (int b = 0; b < 256; b++) {
        p->in[swap ? K : Q][b * 8 + b % 8] = (unsigned char)b;
        p->in[swap ? Q : K][b * 8 + b % 8] = 0x38; /* 1.0 */
        for (int x = 0; x < 8; x++)
            p->in[V][b * 8 + x] = (unsigned char)((b * 8 + x) & 255);
    }
    p->lse_elems = 256;
    p->atol_o = 0.0, p->atol_lse = 1e-6; /* O exact; LSE through exp2/log2 */
}

/* ---- serving problems ---- */

/* A dense KV cache ([seqs, hkv, cap, d], BSHD) holding used[b] keys, n_new rows appended. */
static void cache_prob(prob *p)
{
    memset(p, 0, sizeof *p);
    p->name = "cache append";
    const int64_t seqs = 2, hq = 4, hk = 2, sq = 3, cap = 20, dim = 8, dim_v = 5, n_new = 2;
    polyattn_attention_desc *d = &p->d;
    const polyattn_dtype e = POLYATTN_DTYPE_E4M3;
    polyattn_attention_desc_init(d, e, seqs, hq, hk, sq, cap, dim, dim_v);
    polyattn_tensor_desc_bshd(&d->k, e, seqs, hk, cap, dim);
    polyattn_tensor_desc_bshd(&d->v, e, seqs, hk, cap, dim_v);
    d->o.dtype = POLYATTN_DTYPE_F16;
    d->mask = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
    d->kv_layout = POLYATTN_KV_CACHE;
    d->has_kv_append = 1;
    polyattn_tensor_desc_bhsd(&d->k_new, e, seqs, hk, n_new, dim);
    polyattn_tensor_desc_bshd(&d->v_new, e, seqs, hk, n_new, dim_v);
    d->q_descale = 0.0625f, d->k_descale = 0.03f, d->v_descale = 1.5f;
    p->used = malloc(2 * 4);
    p->used[0] = 5, p->used[1] = 9;
    p->n_used = 2;
    p->lse_elems = (size_t)(seqs * hq * sq);
}

/* Varlen queries (3 sequences, one with no keys) over a paged cache of 16-key blocks in
 * shuffled order, GQA 4, key splits. */
static void paged_prob(prob *p)
{
    memset(p, 0, sizeof *p);
    p->name = "varlen paged splits";
    const int64_t seqs = 3, hq = 8, hk = 2, dim = 16, blk = 16, max_blocks = 3, n_blocks = 6;
    static const int32_t cu[4] = {0, 1, 4, 6}, used[3] = {7, 0, 37};
    polyattn_attention_desc *d = &p->d;
    const polyattn_dtype e = POLYATTN_DTYPE_E4M3;
    polyattn_attention_desc_init(d, e, seqs, hq, hk, 3, max_blocks * blk, dim, dim);
    d->varlen_q = 1;
    d->num_seqs = seqs;
    polyattn_tensor_desc_bshd(&d->q, e, 1, hq, cu[3], dim);
    polyattn_tensor_desc_bshd(&d->o, POLYATTN_DTYPE_BF16, 1, hq, cu[3], dim);
    d->kv_layout = POLYATTN_KV_PAGED;
    d->max_blocks_per_seq = max_blocks;
    polyattn_tensor_desc_bshd(&d->k, e, n_blocks, hk, blk, dim);
    polyattn_tensor_desc_bshd(&d->v, e, n_blocks, hk, blk, dim);
    d->mask = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
    d->q_descale = 0.02f, d->k_descale = 0.05f, d->v_descale = 0.75f;
    p->cu_q = malloc(sizeof cu), p->used = malloc(sizeof used);
    memcpy(p->cu_q, cu, sizeof cu), memcpy(p->used, used, sizeof used);
    p->n_cu_q = 4, p->n_used = 3;
    static const int32_t table[3][3] = {{4, -1, -1}, {-1, -1, -1}, {5, 0, 2}};
    p->table = malloc(sizeof table);
    memcpy(p->table, table, sizeof table);
    p->n_table = 9;
    p->lse_elems = (size_t)(hq * cu[3]);
    p->num_splits = 3;
}

/* ---- AUTO and the refusals ---- */

static void check_planning(polyattn_context *c)
{
    polyattn_attention_desc d;
    /* decode-shaped (AUTO's unfused-first order for other dtypes) and prefill-shaped */
    static const int64_t shapes[2][2] = {{1, 4096}, {300, 300}};
    for (int s = 0; s < 2; s++) {
        polyattn_attention_desc_init(&d, POLYATTN_DTYPE_E4M3, 1, 4, 4, shapes[s][0], shapes[s][1],
                                     16, 16);
        for (int a = POLYATTN_ALGO_AUTO; a <= POLYATTN_ALGO_FLASH; a++) {
            polyattn_plan_options opt;
            polyattn_plan_options_init(&opt);
            opt.algo = (polyattn_algo)a;
            polyattn_plan *plan = NULL;
            const polyattn_status st = polyattn_plan_create(c, &d, &opt, &plan);
            if (a == POLYATTN_ALGO_UNFUSED || a == POLYATTN_ALGO_FUSED) {
                CHECK(st == POLYATTN_STATUS_UNSUPPORTED);
                CHECK(strstr(polyattn_context_last_error(c), "e4m3") != NULL);
                if (s == 0)
                    printf("%s: %s\n", polyattn_algo_name((polyattn_algo)a),
                           polyattn_context_last_error(c));
            } else {
                CHECK(st == POLYATTN_STATUS_SUCCESS);
                polyattn_plan_info info;
                memset(&info, 0, sizeof info);
                info.struct_size = sizeof info;
                CHECK(plan && !polyattn_plan_get_info(plan, &info));
                CHECK(info.algo == POLYATTN_ALGO_FLASH);
                if (st) fprintf(stderr, "plan: %s\n", polyattn_context_last_error(c));
            }
            polyattn_plan_destroy(plan);
        }
    }
}

static polyattn_context *opencl_with(const char *force)
{
    if (force) setenv("POLYATTN_FORCE", force, 1);
    else unsetenv("POLYATTN_FORCE");
    polyattn_context *c = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_OPENCL, 0, &c) != POLYATTN_STATUS_SUCCESS)
        return NULL;
    return c;
}

int main(void)
{
    int n = 0;
    if (polyattn_device_count(POLYATTN_BACKEND_OPENCL, &n, NULL) != POLYATTN_STATUS_SUCCESS ||
        n == 0) {
        printf("test_ocl_e4m3: no OpenCL device, skipped\n");
        return PA_TK_SKIP;
    }
    polyattn_context *host = NULL, *plain = opencl_with(NULL);
    polyattn_context *rows = opencl_with("opencl.flash=rows"),
                     *tiled = opencl_with("opencl.flash=tiled"),
                     *tiled1 = opencl_with("opencl.flash=tiled,opencl.tiles=32x32:16x8:16:16"),
                     *coop = opencl_with("opencl.serving=coop");
    unsetenv("POLYATTN_FORCE");
    if (!plain || !rows || !tiled || !tiled1 || !coop ||
        polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &host) != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "test_ocl_e4m3: contexts\n");
        return 1;
    }
    check_planning(plain);

    polyattn_context *const dense_ctx[2] = {rows, tiled};
    static const char *const dense_how[2] = {"opencl.flash=rows", "opencl.flash=tiled"};
    prob p;
    for (int swap = 0; swap < 2; swap++) {
        codes_prob(&p, swap);
        check_prob(&p, host, dense_ctx, dense_how, 2);
        free_prob(&p);
    }
    static const dense_case cases[] = {
        {"gqa causal br window softcap, rows without keys", 2, 6, 2, 11, 5, 16, 16,
         POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT, POLYATTN_DTYPE_BF16, 0, 0.02f, 0.015f, 0.5f, 1},
        {"gqa causal tl bshd", 2, 6, 3, 9, 70, 33, 7, POLYATTN_MASK_CAUSAL_TOP_LEFT,
         POLYATTN_DTYPE_F16, 1, 0.01f, 0.004f, 0.25f, 0},
        {"head dim 64 partial tiles bshd", 1, 4, 1, 67, 131, 64, 64, POLYATTN_MASK_NONE,
         POLYATTN_DTYPE_F32, 1, 0.015625f, 0.03125f, 3.0f, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dense_prob(&p, &cases[i]);
        fill_inputs(&p, 4000 + i);
        check_prob(&p, host, dense_ctx, dense_how, 2);
        if (i == 1) { /* the scalar tiled kernel (the head-dim table's tiles are 4-wide) */
            static const char *const how1 = "opencl.tiles=32x32:16x8:16:16";
            check_prob(&p, host, &tiled1, &how1, 1);
        }
        free_prob(&p);
    }

    polyattn_context *const srv_ctx[2] = {plain, coop};
    static const char *const srv_how[2] = {"serving default", "opencl.serving=coop"};
    cache_prob(&p);
    fill_inputs(&p, 77);
    check_prob(&p, host, srv_ctx, srv_how, 2);
    free_prob(&p);
    paged_prob(&p);
    fill_inputs(&p, 78);
    check_prob(&p, host, srv_ctx, srv_how, 2);
    free_prob(&p);

    polyattn_context_destroy(plain), polyattn_context_destroy(rows);
    polyattn_context_destroy(tiled), polyattn_context_destroy(tiled1);
    polyattn_context_destroy(coop);
    polyattn_context_destroy(host);
    printf("test_ocl_e4m3: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
