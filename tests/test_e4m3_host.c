/*
 * FP8 e4m3 inputs on the host backend: the 256 codes against the format's formula (the
 * library's conversions and a forward that returns V), random e4m3 inputs with descales
 * against an independent double reference (odd sizes, GQA, both causal alignments, BSHD,
 * f16/bf16/f32 outputs, unfused and flash, a KV cache with appended rows), the validation
 * rules, and which GPU algorithms plan e4m3 (every backend's flash) or refuse it.
 */
#include "pa_backend.h"
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

static polyattn_context *ctx;

/* The value of code c by the OCP definition, in double. */
static double e4m3_formula(unsigned c)
{
    const unsigned s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    if (e == 15 && m == 7) return NAN;
    const double v = e ? ldexp(1.0 + m / 8.0, (int)e - 7) : ldexp(m / 8.0, -6);
    return s ? -v : v;
}

static int same_value(double a, double b)
{
    return (isnan(a) && isnan(b)) || (a == b && signbit(a) == signbit(b));
}

/* ---- the codes ---- */

static void test_codes(void)
{
    for (unsigned c = 0; c < 256; c++) {
        const double want = e4m3_formula(c);
        CHECK(same_value(pa_e4m3_to_f32((uint8_t)c), want));
        CHECK(same_value(pa_tk_e4m3_to_f32((uint8_t)c), want));
        if (!isnan(want)) { /* every finite code encodes back to itself, -0 included */
            CHECK(pa_f32_to_e4m3((float)want) == c);
            CHECK(pa_tk_f32_to_e4m3((float)want) == c);
        }
    }
    CHECK(e4m3_formula(0x7e) == 448.0 && e4m3_formula(0xfe) == -448.0);
    CHECK(e4m3_formula(0x01) == ldexp(1.0, -9) && e4m3_formula(0x08) == ldexp(1.0, -6));
    /* Rounding: the library's encoder against the search-based one, over a sweep of values
     * including every midpoint between neighbouring codes and the range's ends. */
    for (unsigned c = 0; c < 0x7e; c++) {
        const double lo = e4m3_formula(c), hi = e4m3_formula(c + 1), mid = (lo + hi) / 2;
        const float xs[5] = {(float)mid, (float)-mid, nextafterf((float)mid, 0.0f),
                             nextafterf((float)mid, 1000.0f), (float)(lo + (hi - lo) / 4)};
        for (int i = 0; i < 5; i++)
            CHECK(pa_f32_to_e4m3(xs[i]) == pa_tk_f32_to_e4m3(xs[i]));
        CHECK((pa_f32_to_e4m3((float)mid) & 1) == 0); /* ties to even */
    }
    CHECK(pa_f32_to_e4m3(464.0f) == 0x7e);
    CHECK(pa_f32_to_e4m3(nextafterf(464.0f, 1000.0f)) == 0x7f);
    CHECK(pa_f32_to_e4m3(-1e30f) == 0xff);
    CHECK(pa_f32_to_e4m3(INFINITY) == 0x7f);
    CHECK((pa_f32_to_e4m3(NAN) & 0x7f) == 0x7f);
    CHECK(pa_f32_to_e4m3(ldexpf(1.0f, -11)) == 0x00); /* a quarter of the least: to 0 */
}

/* ---- running the host backend ---- */

typedef struct run_io {
    const void *q, *k, *v;
    void *o;    /* poisoned by the caller */
    float *lse; /* NULL: not asked */
    const int32_t *seqused;
    const void *k_new, *v_new;
} run_io;

static polyattn_buffer *upload(const void *src, uint64_t bytes)
{
    polyattn_buffer *b = NULL;
    if (!bytes) return NULL;
    if (polyattn_buffer_alloc(ctx, bytes, &b) != POLYATTN_STATUS_SUCCESS) return NULL;
    if (src) polyattn_buffer_write(b, 0, src, bytes);
    return b;
}

static polyattn_status run(const polyattn_attention_desc *d, polyattn_algo algo, run_io *io)
{
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_lse = io->lse != NULL;
    polyattn_plan *plan = NULL;
    polyattn_status st = polyattn_plan_create(ctx, d, &opt, &plan);
    if (st != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "plan: %s: %s\n", polyattn_status_name(st),
                polyattn_context_last_error(ctx));
        return st;
    }
    const uint64_t ob = polyattn_tensor_desc_bytes(&d->o);
    const uint64_t rows = (uint64_t)(d->q.shape[0] * d->q.shape[1] * d->q.shape[2]);
    polyattn_buffer *b[8] = {
        upload(io->q, polyattn_tensor_desc_bytes(&d->q)),
        upload(io->k, polyattn_tensor_desc_bytes(&d->k)),
        upload(io->v, polyattn_tensor_desc_bytes(&d->v)),
        upload(io->o, ob),
        io->lse ? upload(NULL, rows * 4) : NULL,
        io->seqused ? upload(io->seqused, (uint64_t)d->q.shape[0] * 4) : NULL,
        io->k_new ? upload(io->k_new, polyattn_tensor_desc_bytes(&d->k_new)) : NULL,
        io->v_new ? upload(io->v_new, polyattn_tensor_desc_bytes(&d->v_new)) : NULL,
    };
    polyattn_extra_tensors extra;
    memset(&extra, 0, sizeof extra);
    extra.struct_size = sizeof extra;
    extra.seqused_kv = b[5], extra.k_new = b[6], extra.v_new = b[7];
    st = polyattn_forward_ex(plan, b[0], b[1], b[2], b[3], b[4], NULL, NULL, &extra);
    if (st == POLYATTN_STATUS_SUCCESS) st = polyattn_buffer_read(b[3], 0, io->o, ob);
    if (st == POLYATTN_STATUS_SUCCESS && io->lse)
        st = polyattn_buffer_read(b[4], 0, io->lse, rows * 4);
    if (st != POLYATTN_STATUS_SUCCESS)
        fprintf(stderr, "forward: %s: %s\n", polyattn_status_name(st),
                polyattn_context_last_error(ctx));
    for (int i = 0; i < 8; i++)
        polyattn_buffer_free(b[i]);
    polyattn_plan_destroy(plan);
    return st;
}

/* Element (b, h, s, x) of a tensor as its e4m3 value times descale, in double. */
static double in_val(const unsigned char *raw, const polyattn_tensor_desc *t, int64_t b, int64_t h,
                     int64_t s, int64_t x, double descale)
{
    const int64_t at =
        b * t->strides[0] + h * t->strides[1] + s * t->strides[2] + x * t->strides[3];
    return descale * e4m3_formula(raw[at]);
}

/* Element (b, h, s, x) of an output in its dtype, as double. */
static double out_val(const void *raw, const polyattn_tensor_desc *t, int64_t b, int64_t h,
                      int64_t s, int64_t x)
{
    const int64_t at =
        b * t->strides[0] + h * t->strides[1] + s * t->strides[2] + x * t->strides[3];
    float f;
    pa_tk_decode(&f, (const unsigned char *)raw + at * (int64_t)polyattn_dtype_size(t->dtype), 1,
                 t->dtype);
    return f;
}

/* Random bytes over every finite code (0x7f and 0xff, the NaNs, excluded). */
static void random_codes(unsigned char *dst, size_t n, pa_tk_rng *rng)
{
    for (size_t i = 0; i < n; i++) {
        unsigned c;
        do
            c = (unsigned)(pa_tk_rng_next(rng) & 0xff);
        while ((c & 0x7f) == 0x7f);
        dst[i] = (unsigned char)c;
    }
}

static double scale_of(const polyattn_attention_desc *d)
{
    return d->scale > 0 ? d->scale : (double)(float)(1.0 / sqrt((double)d->q.shape[3]));
}

static double resolve(float descale) { return descale > 0 ? descale : 1.0; }

/* O and LSE of query row (b, h, i) attending to keys [0, n) of key rows key(j), in double. */
static void reference_row(const polyattn_attention_desc *d, const unsigned char *q,
                          const unsigned char *k, const unsigned char *v, int64_t b, int64_t h,
                          int64_t i, int64_t len_q, int64_t len_kv,
                          const unsigned char *const *krow, const unsigned char *const *vrow,
                          double *o, double *lse)
{
    const int64_t dim = d->q.shape[3], dim_v = d->v.shape[3];
    const int64_t hk = h / (d->q.shape[1] / d->k.shape[1]);
    int64_t hi = len_kv; /* keys [0, hi) */
    if (d->mask == POLYATTN_MASK_CAUSAL_TOP_LEFT) hi = i + 1 < hi ? i + 1 : hi;
    if (d->mask == POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT) {
        const int64_t lim = i + 1 + len_kv - len_q;
        hi = lim < hi ? (lim < 0 ? 0 : lim) : hi;
    }
    double *s = malloc(sizeof *s * (size_t)(len_kv + 1)), mx = -INFINITY, sum = 0;
    for (int64_t j = 0; j < hi; j++) {
        double dot = 0;
        for (int64_t x = 0; x < dim; x++) {
            const double kx = krow ? resolve(d->k_descale) * e4m3_formula(krow[j][x])
                                   : in_val(k, &d->k, b, hk, j, x, resolve(d->k_descale));
            dot += in_val(q, &d->q, b, h, i, x, resolve(d->q_descale)) * kx;
        }
        s[j] = scale_of(d) * dot;
        if (s[j] > mx) mx = s[j];
    }
    for (int64_t x = 0; x < dim_v; x++)
        o[x] = 0;
    for (int64_t j = 0; j < hi; j++) {
        const double w = exp(s[j] - mx);
        sum += w;
        for (int64_t x = 0; x < dim_v; x++)
            o[x] += w * (vrow ? resolve(d->v_descale) * e4m3_formula(vrow[j][x])
                              : in_val(v, &d->v, b, hk, j, x, resolve(d->v_descale)));
    }
    for (int64_t x = 0; x < dim_v; x++)
        o[x] = hi ? o[x] / sum : 0.0;
    *lse = hi ? mx + log(sum) : -INFINITY;
    free(s);
}

/* |got - want| within the output dtype's rounding (one step through f32, then f16/bf16). */
static int close_enough(double got, double want, polyattn_dtype dt)
{
    const double rel = dt == POLYATTN_DTYPE_F32   ? 1e-6
                       : dt == POLYATTN_DTYPE_F16 ? 1.0 / 1024
                                                  : 1.0 / 128;
    const double abs_tol = dt == POLYATTN_DTYPE_F16 ? ldexp(1.0, -24) : 1e-37;
    return fabs(got - want) <= rel * fabs(want) + abs_tol;
}

typedef struct dense_case {
    const char *name;
    int64_t batch, heads_q, heads_kv, seq_q, seq_kv, dim, dim_v;
    polyattn_mask mask;
    polyattn_dtype o_dtype;
    int bshd;
    float q_descale, k_descale, v_descale;
} dense_case;

static void test_dense(const dense_case *c, polyattn_algo algo, uint64_t seed)
{
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_E4M3, c->batch, c->heads_q, c->heads_kv,
                                 c->seq_q, c->seq_kv, c->dim, c->dim_v);
    if (c->bshd) {
        polyattn_tensor_desc_bshd(&d.q, POLYATTN_DTYPE_E4M3, c->batch, c->heads_q, c->seq_q,
                                  c->dim);
        polyattn_tensor_desc_bshd(&d.k, POLYATTN_DTYPE_E4M3, c->batch, c->heads_kv, c->seq_kv,
                                  c->dim);
        polyattn_tensor_desc_bshd(&d.v, POLYATTN_DTYPE_E4M3, c->batch, c->heads_kv, c->seq_kv,
                                  c->dim_v);
        polyattn_tensor_desc_bshd(&d.o, c->o_dtype, c->batch, c->heads_q, c->seq_q, c->dim_v);
    }
    d.o.dtype = c->o_dtype;
    d.mask = c->mask;
    d.q_descale = c->q_descale, d.k_descale = c->k_descale, d.v_descale = c->v_descale;
    const size_t nq = (size_t)polyattn_tensor_desc_bytes(&d.q),
                 nk = (size_t)polyattn_tensor_desc_bytes(&d.k),
                 nv = (size_t)polyattn_tensor_desc_bytes(&d.v),
                 ob = (size_t)polyattn_tensor_desc_bytes(&d.o);
    const size_t rows = (size_t)(c->batch * c->heads_q * c->seq_q);
    unsigned char *q = malloc(nq), *k = malloc(nk), *v = malloc(nv), *o = malloc(ob);
    float *lse = malloc(rows * 4);
    double *ref = malloc(sizeof *ref * (size_t)c->dim_v);
    pa_tk_rng rng;
    pa_tk_rng_seed(&rng, seed);
    random_codes(q, nq, &rng), random_codes(k, nk, &rng), random_codes(v, nv, &rng);
    pa_tk_poison(o, ob / polyattn_dtype_size(c->o_dtype), c->o_dtype);
    run_io io = {q, k, v, o, lse, NULL, NULL, NULL};
    polyattn_status st = run(&d, algo, &io);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    long long bad = 0;
    for (int64_t b = 0; st == POLYATTN_STATUS_SUCCESS && b < c->batch; b++)
        for (int64_t h = 0; h < c->heads_q; h++)
            for (int64_t i = 0; i < c->seq_q; i++) {
                double want_lse;
                reference_row(&d, q, k, v, b, h, i, c->seq_q, c->seq_kv, NULL, NULL, ref,
                              &want_lse);
                for (int64_t x = 0; x < c->dim_v; x++) {
                    const double got = out_val(o, &d.o, b, h, i, x);
                    if (!close_enough(got, ref[x], c->o_dtype) && bad++ < 5)
                        fprintf(stderr, "%s %s: o[%lld,%lld,%lld,%lld] = %.9g, want %.9g\n",
                                c->name, polyattn_algo_name(algo), (long long)b, (long long)h,
                                (long long)i, (long long)x, got, ref[x]);
                }
                const double got_lse = lse[(b * c->heads_q + h) * c->seq_q + i];
                const int lse_ok = isinf(want_lse)
                                       ? got_lse == want_lse
                                       : fabs(got_lse - want_lse) <= 1e-6 * fabs(want_lse) + 1e-6;
                if (!lse_ok && bad++ < 5)
                    fprintf(stderr, "%s %s: lse row %lld = %.9g, want %.9g\n", c->name,
                            polyattn_algo_name(algo), (long long)i, got_lse, want_lse);
            }
    CHECK(bad == 0);
    free(q), free(k), free(v), free(o), free(lse), free(ref);
}

/* Through the forward itself: one key, so O is V: every code of V decoded (times 2). */
static void test_codes_through_forward(void)
{
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_E4M3, 1, 1, 1, 1, 1, 1, 256);
    CHECK(d.o.dtype == POLYATTN_DTYPE_BF16); /* init's default for e4m3 */
    d.o.dtype = POLYATTN_DTYPE_F32;
    d.v_descale = 2.0f;
    unsigned char q = 0x38, k = 0x38, v[256]; /* 1.0, 1.0 */
    float o[256];
    for (int c = 0; c < 256; c++)
        v[c] = (unsigned char)c;
    pa_tk_poison(o, 256, POLYATTN_DTYPE_F32);
    run_io io = {&q, &k, v, o, NULL, NULL, NULL, NULL};
    CHECK(run(&d, POLYATTN_ALGO_UNFUSED, &io) == POLYATTN_STATUS_SUCCESS);
    for (int c = 0; c < 256; c++) /* -0 comes out +0: the weighted sum starts at +0 */
        CHECK(same_value(o[c], c == 0x80 ? 0.0 : 2.0 * e4m3_formula((unsigned)c)));
}

/* A dense KV cache of e4m3 rows plus appended e4m3 rows, f16 output at batch offsets that
 * differ from the inputs' (o's element size is 2, the inputs' 1). */
static void test_cache_append(polyattn_algo algo)
{
    const int64_t seqs = 2, hq = 4, hk = 2, sq = 3, cap = 20, dim = 8, dim_v = 5, n_new = 2;
    const int32_t used[2] = {5, 9};
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_E4M3, seqs, hq, hk, sq, cap, dim, dim_v);
    d.o.dtype = POLYATTN_DTYPE_F16;
    d.mask = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
    d.kv_layout = POLYATTN_KV_CACHE;
    d.has_kv_append = 1;
    polyattn_tensor_desc_bhsd(&d.k_new, POLYATTN_DTYPE_E4M3, seqs, hk, n_new, dim);
    polyattn_tensor_desc_bhsd(&d.v_new, POLYATTN_DTYPE_E4M3, seqs, hk, n_new, dim_v);
    d.q_descale = 0.0625f, d.k_descale = 0.03f, d.v_descale = 1.5f;
    const size_t nq = (size_t)(seqs * hq * sq * dim), nk = (size_t)(seqs * hk * cap * dim),
                 nv = (size_t)(seqs * hk * cap * dim_v), nkn = (size_t)(seqs * hk * n_new * dim),
                 nvn = (size_t)(seqs * hk * n_new * dim_v), no = (size_t)(seqs * hq * sq * dim_v);
    unsigned char *q = malloc(nq), *k = malloc(nk), *v = malloc(nv), *kn = malloc(nkn),
                  *vn = malloc(nvn);
    uint16_t *o = malloc(no * 2);
    pa_tk_rng rng;
    pa_tk_rng_seed(&rng, 99 + (uint64_t)algo);
    random_codes(q, nq, &rng), random_codes(k, nk, &rng), random_codes(v, nv, &rng);
    random_codes(kn, nkn, &rng), random_codes(vn, nvn, &rng);
    pa_tk_poison(o, no, POLYATTN_DTYPE_F16);
    run_io io = {q, k, v, o, NULL, used, kn, vn};
    polyattn_status st = run(&d, algo, &io);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    long long bad = 0;
    const unsigned char *krow[32], *vrow[32];
    double ref[8], lse;
    for (int64_t b = 0; st == POLYATTN_STATUS_SUCCESS && b < seqs; b++) {
        const int64_t len_kv = used[b] + n_new;
        for (int64_t h = 0; h < hq; h++) {
            const int64_t g = h / (hq / hk);
            for (int64_t j = 0; j < len_kv; j++) {
                krow[j] = j < used[b] ? k + ((b * hk + g) * cap + j) * dim
                                      : kn + ((b * hk + g) * n_new + j - used[b]) * dim;
                vrow[j] = j < used[b] ? v + ((b * hk + g) * cap + j) * dim_v
                                      : vn + ((b * hk + g) * n_new + j - used[b]) * dim_v;
            }
            for (int64_t i = 0; i < sq; i++) {
                reference_row(&d, q, NULL, NULL, b, h, i, sq, len_kv, krow, vrow, ref, &lse);
                for (int64_t x = 0; x < dim_v; x++) {
                    const double got = out_val(o, &d.o, b, h, i, x);
                    if (!close_enough(got, ref[x], POLYATTN_DTYPE_F16) && bad++ < 5)
                        fprintf(stderr, "cache %s: o[%lld,%lld,%lld,%lld] = %.9g, want %.9g\n",
                                polyattn_algo_name(algo), (long long)b, (long long)h, (long long)i,
                                (long long)x, got, ref[x]);
                }
            }
        }
    }
    CHECK(bad == 0);
    free(q), free(k), free(v), free(kn), free(vn), free(o);
}

/* ---- validation ---- */

static void expect(const polyattn_attention_desc *d, polyattn_status want, const char *field)
{
    const char *msg = NULL;
    polyattn_status st = polyattn_attention_desc_validate(d, &msg);
    if (want == POLYATTN_STATUS_SUCCESS) {
        CHECK(st == POLYATTN_STATUS_SUCCESS);
        if (st) fprintf(stderr, "  unexpected: %s\n", msg ? msg : "");
        return;
    }
    CHECK(st == want);
    CHECK(msg && strstr(msg, field));
    if (st != want || !msg || !strstr(msg, field))
        fprintf(stderr, "  wanted %s naming %s, got %s: %s\n", polyattn_status_name(want), field,
                polyattn_status_name(st), msg ? msg : "(null)");
}

static void test_validation(void)
{
    polyattn_attention_desc d, base;
    polyattn_attention_desc_init(&base, POLYATTN_DTYPE_E4M3, 1, 2, 1, 3, 5, 8, 8);
    expect(&base, POLYATTN_STATUS_SUCCESS, "");
    d = base, d.o.dtype = POLYATTN_DTYPE_F16;
    expect(&d, POLYATTN_STATUS_SUCCESS, "");
    d = base, d.o.dtype = POLYATTN_DTYPE_F32;
    expect(&d, POLYATTN_STATUS_SUCCESS, "");
    d = base, d.o.dtype = POLYATTN_DTYPE_E4M3;
    expect(&d, POLYATTN_STATUS_INVALID_ARGUMENT, "o.dtype");
    d = base, d.o.dtype = POLYATTN_DTYPE_U8;
    expect(&d, POLYATTN_STATUS_INVALID_ARGUMENT, "o.dtype");
    d = base, d.k.dtype = POLYATTN_DTYPE_BF16;
    expect(&d, POLYATTN_STATUS_INVALID_ARGUMENT, "k.dtype");
    d = base, d.v.dtype = POLYATTN_DTYPE_F16;
    expect(&d, POLYATTN_STATUS_INVALID_ARGUMENT, "v.dtype");
    d = base, d.q.dtype = POLYATTN_DTYPE_BF16;
    expect(&d, POLYATTN_STATUS_INVALID_ARGUMENT, "k.dtype");
    d = base, d.q_descale = -1.0f;
    expect(&d, POLYATTN_STATUS_INVALID_ARGUMENT, "q_descale");
    d = base, d.k_descale = NAN;
    expect(&d, POLYATTN_STATUS_INVALID_ARGUMENT, "k_descale");
    d = base, d.v_descale = INFINITY;
    expect(&d, POLYATTN_STATUS_INVALID_ARGUMENT, "v_descale");
    d = base, d.q_descale = 1e-30f, d.k_descale = 3e4f, d.v_descale = 1.0f;
    expect(&d, POLYATTN_STATUS_SUCCESS, "");
    /* Other dtypes: o matches q, descales 0 or 1 only. */
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F16, 1, 2, 1, 3, 5, 8, 8);
    d.o.dtype = POLYATTN_DTYPE_F32;
    expect(&d, POLYATTN_STATUS_INVALID_ARGUMENT, "o.dtype");
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F16, 1, 2, 1, 3, 5, 8, 8);
    d.q_descale = d.k_descale = d.v_descale = 1.0f;
    expect(&d, POLYATTN_STATUS_SUCCESS, "");
    d.k_descale = 2.0f;
    expect(&d, POLYATTN_STATUS_INVALID_ARGUMENT, "k_descale");
    /* KV append: the new rows follow q's dtype. */
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_E4M3, 2, 2, 1, 1, 16, 8, 8);
    d.kv_layout = POLYATTN_KV_CACHE, d.has_kv_append = 1;
    polyattn_tensor_desc_bhsd(&d.k_new, POLYATTN_DTYPE_E4M3, 2, 1, 1, 8);
    polyattn_tensor_desc_bhsd(&d.v_new, POLYATTN_DTYPE_E4M3, 2, 1, 1, 8);
    expect(&d, POLYATTN_STATUS_SUCCESS, "");
    d.v_new.dtype = POLYATTN_DTYPE_BF16;
    expect(&d, POLYATTN_STATUS_INVALID_ARGUMENT, "v_new.dtype");

    /* A caller built before the descales: struct_size ends at v_new, they count as 1. */
    d = base;
    d.o.dtype = POLYATTN_DTYPE_F32;
    d.struct_size = offsetof(polyattn_attention_desc, q_descale);
    d.q_descale = -5.0f; /* beyond the caller's struct: never read */
    expect(&d, POLYATTN_STATUS_SUCCESS, "");
    unsigned char q[48], k[40], v[40]; /* [1, 2, 3, 8], [1, 1, 5, 8] */
    float o_old[48], o_new[48];
    pa_tk_rng rng;
    pa_tk_rng_seed(&rng, 5);
    random_codes(q, 48, &rng), random_codes(k, 40, &rng), random_codes(v, 40, &rng);
    run_io io = {q, k, v, o_old, NULL, NULL, NULL, NULL};
    CHECK(run(&d, POLYATTN_ALGO_UNFUSED, &io) == POLYATTN_STATUS_SUCCESS);
    d.struct_size = sizeof d, d.q_descale = 1.0f;
    io.o = o_new;
    CHECK(run(&d, POLYATTN_ALGO_UNFUSED, &io) == POLYATTN_STATUS_SUCCESS);
    CHECK(memcmp(o_old, o_new, sizeof o_old) == 0);

    /* Plans: forward only; the host has no fused kernel. */
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.want_backward = 1;
    polyattn_plan *plan = NULL;
    CHECK(polyattn_plan_create(ctx, &base, &opt, &plan) == POLYATTN_STATUS_UNSUPPORTED);
    CHECK(plan == NULL && strstr(polyattn_context_last_error(ctx), "want_backward"));
    polyattn_plan_options_init(&opt);
    opt.algo = POLYATTN_ALGO_FUSED;
    CHECK(polyattn_plan_create(ctx, &base, &opt, &plan) == POLYATTN_STATUS_UNSUPPORTED);
    opt.algo = POLYATTN_ALGO_FLASH;
    CHECK(polyattn_plan_create(ctx, &base, &opt, &plan) == POLYATTN_STATUS_SUCCESS);
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK(polyattn_plan_get_info(plan, &info) == POLYATTN_STATUS_SUCCESS);
    /* q 2x3x8 + k 5x8 + v 5x8 bytes of e4m3, o 2x3x8 bf16 */
    CHECK(info.min_bytes_moved == 48.0 + 40 + 40 + 96);
    polyattn_plan_destroy(plan);

    /* merge_states has no e4m3 states. */
    polyattn_merge_desc md;
    polyattn_merge_desc_init(&md, POLYATTN_DTYPE_E4M3, POLYATTN_DTYPE_F32, 2, 1, 1, 2, 4);
    polyattn_buffer *parts = upload(NULL, 64), *plse = upload(NULL, 64), *out = upload(NULL, 64);
    CHECK(polyattn_merge_states(ctx, &md, parts, plse, out, NULL) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(polyattn_context_last_error(ctx), "e4m3") != NULL);
    polyattn_buffer_free(parts), polyattn_buffer_free(plse), polyattn_buffer_free(out);
}

/* GPU backends: unfused and fused refuse e4m3 with a reason naming it; flash and AUTO plan
 * it on CUDA, HIP (the generic kernel: tests/e4m3_gpu_suite.c checks its numbers) and OpenCL
 * (the same suite, test_gpu_e4m3_opencl). */
static void test_gpu_refusal(void)
{
    const polyattn_backend gpus[3] = {POLYATTN_BACKEND_CUDA, POLYATTN_BACKEND_HIP,
                                      POLYATTN_BACKEND_OPENCL};
    for (int g = 0; g < 3; g++) {
        int n = 0;
        polyattn_context *gctx = NULL;
        if (polyattn_device_count(gpus[g], &n, NULL) != POLYATTN_STATUS_SUCCESS || n == 0 ||
            polyattn_context_create(gpus[g], 0, &gctx) != POLYATTN_STATUS_SUCCESS)
            continue;
        polyattn_attention_desc d;
        polyattn_attention_desc_init(&d, POLYATTN_DTYPE_E4M3, 1, 2, 1, 17, 33, 64, 64);
        for (int a = POLYATTN_ALGO_AUTO; a <= POLYATTN_ALGO_FLASH; a++) {
            polyattn_plan_options opt;
            polyattn_plan_options_init(&opt);
            opt.algo = (polyattn_algo)a;
            polyattn_plan *plan = NULL;
            const polyattn_status st = polyattn_plan_create(gctx, &d, &opt, &plan);
            if (a == POLYATTN_ALGO_AUTO || a == POLYATTN_ALGO_FLASH) {
                CHECK(st == POLYATTN_STATUS_SUCCESS && plan != NULL);
            } else {
                CHECK(st == POLYATTN_STATUS_UNSUPPORTED);
                CHECK(plan == NULL && strstr(polyattn_context_last_error(gctx), "e4m3"));
                printf("%s %s refuses e4m3: %s\n", polyattn_backend_name(gpus[g]),
                       polyattn_algo_name((polyattn_algo)a), polyattn_context_last_error(gctx));
            }
            polyattn_plan_destroy(plan);
        }
        polyattn_context_destroy(gctx);
    }
}

int main(void)
{
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) != POLYATTN_STATUS_SUCCESS)
        return 1;
    test_codes();
    test_codes_through_forward();
    static const dense_case cases[] = {
        {"plain", 1, 2, 2, 7, 13, 24, 17, POLYATTN_MASK_NONE, POLYATTN_DTYPE_F32, 0, 0.0078125f,
         0.01f, 3.0f},
        {"gqa causal br", 2, 6, 2, 11, 5, 16, 16, POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT,
         POLYATTN_DTYPE_BF16, 0, 0.02f, 0.015f, 0.5f},
        {"gqa causal tl bshd", 2, 6, 3, 9, 70, 33, 7, POLYATTN_MASK_CAUSAL_TOP_LEFT,
         POLYATTN_DTYPE_F16, 1, 0.01f, 0.004f, 0.25f},
        {"no descales", 1, 3, 1, 5, 67, 8, 8, POLYATTN_MASK_NONE, POLYATTN_DTYPE_F16, 0, 0.0f, 0.0f,
         0.0f},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        test_dense(&cases[i], POLYATTN_ALGO_UNFUSED, 1000 + i);
        test_dense(&cases[i], POLYATTN_ALGO_FLASH, 1000 + i);
    }
    test_cache_append(POLYATTN_ALGO_UNFUSED);
    test_cache_append(POLYATTN_ALGO_FLASH);
    test_validation();
    test_gpu_refusal();
    polyattn_context_destroy(ctx);
    printf("test_e4m3_host: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
