/*
 * polyattn_merge_states on the host backend against a double reference written here from
 * include/polyattn.h:  LSE = log(sum_p exp(LSE_p)),  O = sum_p exp(LSE_p - LSE) O_p, where
 * -inf parts contribute nothing (their O_p holds NaN here, to prove it is not read), all
 * parts -inf give O = 0 and LSE = -inf, a NaN or +inf LSE_p gives a NaN row.
 * Runs on the host backend, or on OpenCL with --backend opencl.
 * Parts and outputs in f32, f16 and bf16, strided (BSHD outputs, padded part strides, column
 * strides 3 and 2), one to nine parts; head dims and row counts that leave remainders in the
 * OpenCL kernel's (row, column) grid (1, 3, 13, 67, 129, 257 columns; 15, 21, 35 rows).
 * End to end: attention over key chunks, each a forward with want_lse, merged,
 * equals one forward over every key.  Errors name the field and write nothing.
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

static polyattn_context *ctx;
/* Device backends accumulate in f32 and need a workspace for unfused: end_to_end then runs
 * flash and allows f32 rounding. */
static int on_device;

static polyattn_buffer *upload(const void *data, size_t bytes)
{
    polyattn_buffer *b = NULL;
    if (polyattn_buffer_alloc(ctx, bytes ? bytes : 4, &b) != POLYATTN_STATUS_SUCCESS) return NULL;
    if (data) polyattn_buffer_write(b, 0, data, bytes);
    return b;
}

static size_t esize(polyattn_dtype dt) { return polyattn_dtype_size(dt); }

/* Element (b, h, i, d) of a 4-D tensor at its strides. */
static int64_t at4(const polyattn_tensor_desc *t, int64_t b, int64_t h, int64_t i, int64_t d)
{
    return b * t->strides[0] + h * t->strides[1] + i * t->strides[2] + d * t->strides[3];
}

typedef struct mcase {
    int64_t parts, batch, heads, seq, dv;
    polyattn_dtype part_dt, out_dt;
    int bshd_out;  /* out in BSHD */
    int pad_parts; /* part_stride padded by 5 elements */
    int specials;  /* -inf, NaN and +inf LSE rows */
    int want_lse;
    int odd_strides; /* parts and out at padded strides with column strides 3 and 2 */
} mcase;

static void run_case(const mcase *mc, uint64_t seed)
{
    pa_tk_rng rng;
    pa_tk_rng_seed(&rng, seed);
    polyattn_merge_desc md;
    polyattn_merge_desc_init(&md, mc->part_dt, mc->out_dt, mc->parts, mc->batch, mc->heads, mc->seq,
                             mc->dv);
    if (mc->bshd_out)
        polyattn_tensor_desc_bshd(&md.out, mc->out_dt, mc->batch, mc->heads, mc->seq, mc->dv);
    if (mc->odd_strides) { /* no unit column stride, rows not aligned to anything */
        const int64_t *sh = md.part.shape;
        int64_t *ps = md.part.strides, *os = md.out.strides;
        ps[3] = 3, ps[2] = 3 * sh[3] + 1, ps[1] = ps[2] * sh[2] + 2, ps[0] = ps[1] * sh[1] + 1;
        os[3] = 2, os[2] = 2 * sh[3] + 3, os[1] = os[2] * sh[2], os[0] = os[1] * sh[1] + 5;
        md.part_stride = ps[0] * sh[0] + 7;
    }
    if (mc->pad_parts) md.part_stride += 5;
    const int64_t rows = mc->batch * mc->heads * mc->seq;
    const size_t part_elems =
        (size_t)(md.part_stride * (mc->parts - 1) +
                 (int64_t)(polyattn_tensor_desc_bytes(&md.part) / esize(mc->part_dt)));
    const size_t out_elems = (size_t)(polyattn_tensor_desc_bytes(&md.out) / esize(mc->out_dt));
    float *parts = malloc(part_elems * sizeof *parts),
          *lse = malloc((size_t)(rows * mc->parts) * 4);
    for (size_t e = 0; e < part_elems; e++)
        parts[e] = pa_tk_round((float)(2.0 * pa_tk_rng_uniform(&rng)), mc->part_dt);
    for (int64_t e = 0; e < rows * mc->parts; e++)
        lse[e] = (float)(4.0 * pa_tk_rng_uniform(&rng));
    /* Row kinds: 0 plain, 1 some parts -inf, 2 all -inf, 3 one NaN, 4 one +inf. */
    int *kind = calloc((size_t)rows, sizeof *kind);
    for (int64_t r = 0; r < rows; r++) {
        kind[r] = mc->specials ? (int)(pa_tk_rng_next(&rng) % 5) : 0;
        if (r == 0 && mc->specials) kind[r] = 2;
        for (int64_t p = 0; p < mc->parts; p++) {
            float *l = &lse[p * rows + r];
            if (kind[r] == 1 && (p % 2 == 0 || mc->parts == 1)) *l = -INFINITY;
            if (kind[r] == 2) *l = -INFINITY;
            if (kind[r] == 3 && p == mc->parts - 1) *l = NAN;
            if (kind[r] == 4 && p == 0) *l = INFINITY;
        }
        if (kind[r] == 1) /* a big LSE spread: the max-shift must keep it exact */
            lse[(mc->parts - 1) * rows + r] = mc->parts > 1 ? 80.0f : -INFINITY;
    }
    /* -inf parts hold NaN: a merge that reads them fails. */
    const int64_t b_h_s[3] = {mc->batch, mc->heads, mc->seq};
    (void)b_h_s;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t b = r / (mc->heads * mc->seq), h = r / mc->seq % mc->heads, i = r % mc->seq;
        for (int64_t p = 0; p < mc->parts; p++)
            if (lse[p * rows + r] == -INFINITY)
                for (int64_t d = 0; d < mc->dv; d++)
                    parts[p * md.part_stride + at4(&md.part, b, h, i, d)] = NAN;
    }
    /* Reference in double. */
    double *ref_o = calloc((size_t)(rows * mc->dv), sizeof *ref_o),
           *ref_lse = calloc((size_t)rows, sizeof *ref_lse);
    for (int64_t r = 0; r < rows; r++) {
        const int64_t b = r / (mc->heads * mc->seq), h = r / mc->seq % mc->heads, i = r % mc->seq;
        double mx = -INFINITY, sum = 0.0;
        int nan_row = 0;
        for (int64_t p = 0; p < mc->parts; p++) {
            double l = lse[p * rows + r];
            if (isnan(l) || l == INFINITY) nan_row = 1;
            else if (l > mx) mx = l;
        }
        if (nan_row) {
            ref_lse[r] = NAN;
            for (int64_t d = 0; d < mc->dv; d++)
                ref_o[r * mc->dv + d] = NAN;
            continue;
        }
        if (mx == -INFINITY) {
            ref_lse[r] = -INFINITY;
            continue;
        }
        for (int64_t p = 0; p < mc->parts; p++)
            sum += exp((double)lse[p * rows + r] - mx);
        ref_lse[r] = mx + log(sum);
        for (int64_t p = 0; p < mc->parts; p++) {
            double l = lse[p * rows + r];
            if (l == -INFINITY) continue;
            for (int64_t d = 0; d < mc->dv; d++)
                ref_o[r * mc->dv + d] +=
                    exp(l - ref_lse[r]) * parts[p * md.part_stride + at4(&md.part, b, h, i, d)];
        }
    }
    void *parts_raw = malloc(part_elems * esize(mc->part_dt));
    pa_tk_encode(parts_raw, parts, part_elems, mc->part_dt);
    void *out_raw = malloc(out_elems * esize(mc->out_dt));
    pa_tk_poison(out_raw, out_elems, mc->out_dt);
    float *lse_out = malloc((size_t)rows * 4);
    pa_tk_poison(lse_out, (size_t)rows, POLYATTN_DTYPE_F32);
    polyattn_buffer *bp = upload(parts_raw, part_elems * esize(mc->part_dt));
    polyattn_buffer *bl = upload(lse, (size_t)(rows * mc->parts) * 4);
    polyattn_buffer *bo = upload(out_raw, out_elems * esize(mc->out_dt));
    polyattn_buffer *bol = mc->want_lse ? upload(lse_out, (size_t)rows * 4) : NULL;
    polyattn_status st = polyattn_merge_states(ctx, &md, bp, bl, bo, bol);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS) fprintf(stderr, "  %s\n", polyattn_context_last_error(ctx));
    polyattn_buffer_read(bo, 0, out_raw, out_elems * esize(mc->out_dt));
    if (bol) polyattn_buffer_read(bol, 0, lse_out, (size_t)rows * 4);
    float *out = malloc(out_elems * sizeof *out);
    pa_tk_decode(out, out_raw, out_elems, mc->out_dt);
    const double tol = mc->out_dt == POLYATTN_DTYPE_F32   ? 2e-6
                       : mc->out_dt == POLYATTN_DTYPE_F16 ? 2e-3
                                                          : 1e-2;
    long long bad = 0;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t b = r / (mc->heads * mc->seq), h = r / mc->seq % mc->heads, i = r % mc->seq;
        for (int64_t d = 0; d < mc->dv; d++) {
            double got = out[at4(&md.out, b, h, i, d)], want = ref_o[r * mc->dv + d];
            int ok = isnan(want)    ? isnan(got)
                     : kind[r] == 2 ? got == 0.0
                                    : fabs(got - want) <= tol * (1.0 + fabs(want));
            if (!ok && bad++ < 5)
                fprintf(stderr, "  row %lld (kind %d) d %lld: O %g, want %g\n", (long long)r,
                        kind[r], (long long)d, got, want);
        }
        if (bol) {
            double got = lse_out[r], want = ref_lse[r];
            int ok = isnan(want)   ? isnan(got)
                     : isinf(want) ? got == want
                                   : fabs(got - want) <= 2e-6 * (1.0 + fabs(want));
            if (!ok && bad++ < 5)
                fprintf(stderr, "  row %lld (kind %d): LSE %g, want %g\n", (long long)r, kind[r],
                        got, want);
        }
    }
    CHECK(bad == 0);
    if (bad)
        fprintf(stderr, "  case parts %lld [%lld,%lld,%lld,%lld] %s->%s: %lld bad\n",
                (long long)mc->parts, (long long)mc->batch, (long long)mc->heads,
                (long long)mc->seq, (long long)mc->dv, polyattn_dtype_name(mc->part_dt),
                polyattn_dtype_name(mc->out_dt), bad);
    polyattn_buffer_free(bp), polyattn_buffer_free(bl), polyattn_buffer_free(bo),
        polyattn_buffer_free(bol);
    free(parts), free(lse), free(kind), free(ref_o), free(ref_lse), free(parts_raw), free(out_raw);
    free(lse_out), free(out);
}

/* Attention over keys [0, seq_kv) split into chunks: each chunk's forward (want_lse), then
 * merged, against one forward over all keys (both on the host backend). */
static void end_to_end(int64_t chunks, int64_t seq_kv, polyattn_algo algo)
{
    const int64_t batch = 2, hq = 4, hkv = 2, sq = 5, d = 16;
    pa_tk_rng rng;
    pa_tk_rng_seed(&rng, (uint64_t)(chunks * 1000 + seq_kv));
    size_t qn = (size_t)(batch * hq * sq * d), kn = (size_t)(batch * hkv * seq_kv * d);
    float *q = malloc(qn * 4), *k = malloc(kn * 4), *v = malloc(kn * 4);
    for (size_t i = 0; i < qn; i++)
        q[i] = (float)pa_tk_rng_uniform(&rng);
    for (size_t i = 0; i < kn; i++)
        k[i] = (float)pa_tk_rng_uniform(&rng), v[i] = (float)pa_tk_rng_uniform(&rng);
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_lse = 1;
    /* Full forward. */
    polyattn_attention_desc desc;
    polyattn_attention_desc_init(&desc, POLYATTN_DTYPE_F32, batch, hq, hkv, sq, seq_kv, d, d);
    polyattn_plan *plan = NULL;
    CHECK(polyattn_plan_create(ctx, &desc, &opt, &plan) == POLYATTN_STATUS_SUCCESS);
    polyattn_buffer *bq = upload(q, qn * 4), *bk = upload(k, kn * 4), *bv = upload(v, kn * 4);
    polyattn_buffer *bo = upload(NULL, qn * 4), *bl = upload(NULL, (size_t)(batch * hq * sq) * 4);
    CHECK(polyattn_forward(plan, bq, bk, bv, bo, bl, NULL, NULL) == POLYATTN_STATUS_SUCCESS);
    polyattn_plan_destroy(plan);
    /* Chunks: keys [c * seq_kv / chunks, (c + 1) * seq_kv / chunks), K and V read through
     * views at the chunk's first key with the full tensor's strides; parts stacked. */
    polyattn_buffer *parts = upload(NULL, (size_t)chunks * qn * 4);
    polyattn_buffer *parts_lse = upload(NULL, (size_t)(chunks * batch * hq * sq) * 4);
    for (int64_t c = 0; c < chunks; c++) {
        int64_t j0 = c * seq_kv / chunks, j1 = (c + 1) * seq_kv / chunks;
        polyattn_attention_desc cd = desc;
        cd.k.shape[2] = cd.v.shape[2] = j1 - j0; /* strides keep the full tensor's */
        polyattn_plan *cp = NULL;
        CHECK(polyattn_plan_create(ctx, &cd, &opt, &cp) == POLYATTN_STATUS_SUCCESS);
        polyattn_buffer *kv_k = NULL, *kv_v = NULL, *po = NULL, *pl = NULL;
        uint64_t off = (uint64_t)(j0 * d) * 4;
        polyattn_buffer_view(bk, off, kn * 4 - off, &kv_k);
        polyattn_buffer_view(bv, off, kn * 4 - off, &kv_v);
        polyattn_buffer_view(parts, (uint64_t)c * qn * 4, qn * 4, &po);
        polyattn_buffer_view(parts_lse, (uint64_t)(c * batch * hq * sq) * 4,
                             (uint64_t)(batch * hq * sq) * 4, &pl);
        CHECK(cp &&
              polyattn_forward(cp, bq, kv_k, kv_v, po, pl, NULL, NULL) == POLYATTN_STATUS_SUCCESS);
        polyattn_buffer_free(kv_k), polyattn_buffer_free(kv_v), polyattn_buffer_free(po),
            polyattn_buffer_free(pl);
        polyattn_plan_destroy(cp);
    }
    polyattn_merge_desc md;
    polyattn_merge_desc_init(&md, POLYATTN_DTYPE_F32, POLYATTN_DTYPE_F32, chunks, batch, hq, sq, d);
    polyattn_buffer *mo = upload(NULL, qn * 4), *ml = upload(NULL, (size_t)(batch * hq * sq) * 4);
    CHECK(polyattn_merge_states(ctx, &md, parts, parts_lse, mo, ml) == POLYATTN_STATUS_SUCCESS);
    float *o_full = malloc(qn * 4), *o_merged = malloc(qn * 4);
    float *l_full = malloc((size_t)(batch * hq * sq) * 4),
          *l_merged = malloc((size_t)(batch * hq * sq) * 4);
    polyattn_buffer_read(bo, 0, o_full, qn * 4), polyattn_buffer_read(mo, 0, o_merged, qn * 4);
    polyattn_buffer_read(bl, 0, l_full, (size_t)(batch * hq * sq) * 4);
    polyattn_buffer_read(ml, 0, l_merged, (size_t)(batch * hq * sq) * 4);
    double worst = 0.0;
    for (size_t i = 0; i < qn; i++)
        worst = fmax(worst, fabs((double)o_full[i] - o_merged[i]));
    for (int64_t i = 0; i < batch * hq * sq; i++)
        worst = fmax(worst, fabs((double)l_full[i] - l_merged[i]));
    CHECK(worst < (on_device ? 2e-5 : 2e-6));
    if (!(worst < (on_device ? 2e-5 : 2e-6)))
        fprintf(stderr, "  end to end, %lld chunks: max difference %g\n", (long long)chunks, worst);
    polyattn_buffer_free(bq), polyattn_buffer_free(bk), polyattn_buffer_free(bv),
        polyattn_buffer_free(bo);
    polyattn_buffer_free(bl), polyattn_buffer_free(parts), polyattn_buffer_free(parts_lse);
    polyattn_buffer_free(mo), polyattn_buffer_free(ml);
    free(q), free(k), free(v), free(o_full), free(o_merged), free(l_full), free(l_merged);
}

/* A bad call fails with INVALID_ARGUMENT, names `field` and leaves both outputs as they were. */
static void expect_bad(const polyattn_merge_desc *md, polyattn_buffer *parts, polyattn_buffer *lse,
                       polyattn_buffer *out, polyattn_buffer *out_lse, const char *field)
{
    unsigned char before[512], after[512];
    uint64_t n =
        polyattn_buffer_size(out) < sizeof before ? polyattn_buffer_size(out) : sizeof before;
    memset(before, 0xab, sizeof before);
    polyattn_buffer_write(out, 0, before, n);
    if (out_lse)
        polyattn_buffer_write(out_lse, 0, before,
                              polyattn_buffer_size(out_lse) < 64 ? polyattn_buffer_size(out_lse)
                                                                 : 64);
    polyattn_status st = polyattn_merge_states(ctx, md, parts, lse, out, out_lse);
    const char *err = polyattn_context_last_error(ctx);
    CHECK(st == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(err, field) != NULL);
    if (st != POLYATTN_STATUS_INVALID_ARGUMENT || !strstr(err, field))
        fprintf(stderr, "  expected an error naming %s, got %s: %s\n", field,
                polyattn_status_name(st), err);
    polyattn_buffer_read(out, 0, after, n);
    CHECK(memcmp(before, after, (size_t)n) == 0);
    if (out_lse) {
        polyattn_buffer_read(out_lse, 0, after,
                             polyattn_buffer_size(out_lse) < 64 ? polyattn_buffer_size(out_lse)
                                                                : 64);
        CHECK(memcmp(before, after,
                     polyattn_buffer_size(out_lse) < 64 ? polyattn_buffer_size(out_lse) : 64) == 0);
    }
}

static void bad_inputs(void)
{
    polyattn_merge_desc md, bad;
    polyattn_merge_desc_init(&md, POLYATTN_DTYPE_F32, POLYATTN_DTYPE_F32, 3, 2, 2, 3, 8);
    const uint64_t pb = 3 * 2 * 2 * 3 * 8 * 4, lb = 3 * 2 * 2 * 3 * 4, ob = pb / 3, olb = lb / 3;
    polyattn_buffer *parts = upload(NULL, pb), *lse = upload(NULL, lb), *out = upload(NULL, ob);
    polyattn_buffer *out_lse = upload(NULL, olb), *small = upload(NULL, ob - 4), *view = NULL;
    polyattn_buffer_view(parts, 0, ob, &view);
    CHECK(polyattn_merge_states(ctx, &md, parts, lse, out, out_lse) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_merge_states(ctx, &md, parts, lse, out, NULL) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_merge_states(NULL, &md, parts, lse, out, out_lse) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    expect_bad(NULL, parts, lse, out, out_lse, "desc");
    bad = md, bad.struct_size = 8;
    expect_bad(&bad, parts, lse, out, out_lse, "desc.struct_size");
    bad = md, bad.num_parts = 0;
    expect_bad(&bad, parts, lse, out, out_lse, "num_parts");
    bad = md, bad.part_stride = -1;
    expect_bad(&bad, parts, lse, out, out_lse, "part_stride");
    bad = md;
    polyattn_tensor_desc_bhsd(&bad.out, POLYATTN_DTYPE_F32, 2, 2, 4, 8);
    expect_bad(&bad, parts, lse, out, out_lse, "out.shape[2]");
    bad = md, bad.part.dtype = POLYATTN_DTYPE_U8;
    expect_bad(&bad, parts, lse, out, out_lse, "part.dtype");
    bad = md, bad.out.strides[2] = 0;
    expect_bad(&bad, parts, lse, out, out_lse, "out.strides");
    bad = md, bad.num_parts = INT64_MAX;
    expect_bad(&bad, parts, lse, out, out_lse, "num_parts");
    bad = md, bad.part_stride += 1; /* the stacked parts outgrow the buffer */
    expect_bad(&bad, parts, lse, out, out_lse, "parts");
    expect_bad(&md, NULL, lse, out, out_lse, "parts");
    expect_bad(&md, parts, NULL, out, out_lse, "parts_lse");
    polyattn_buffer *tiny = upload(NULL, lb - 4);
    expect_bad(&md, parts, tiny, out, out_lse, "parts_lse");
    polyattn_buffer_free(tiny);
    expect_bad(&md, parts, lse, small, out_lse, "out");
    expect_bad(&md, view, lse, out, out_lse, "parts");
    /* Outputs aliasing inputs or each other. */
    polyattn_buffer *o_in_parts = NULL;
    polyattn_buffer_view(parts, pb - ob, ob, &o_in_parts);
    expect_bad(&md, parts, lse, o_in_parts, out_lse, "overlaps");
    expect_bad(&md, parts, lse, out, out, "overlaps");
    polyattn_buffer_free(o_in_parts), polyattn_buffer_free(view);
    polyattn_buffer_free(parts), polyattn_buffer_free(lse), polyattn_buffer_free(out);
    polyattn_buffer_free(out_lse), polyattn_buffer_free(small);
}

/* The backend to merge on (host, cuda, hip, opencl; default host), as argv[1] or after
 * --backend; the chunked forwards of end_to_end run there too.  Exits 77 without its
 * device. */
int main(int argc, char **argv)
{
    const char *name = argc > 2 && !strcmp(argv[1], "--backend") ? argv[2]
                       : argc > 1                                ? argv[1]
                                                                 : "host";
    polyattn_backend backend = POLYATTN_BACKEND_HOST;
    if (!strcmp(name, "cuda")) backend = POLYATTN_BACKEND_CUDA;
    else if (!strcmp(name, "hip")) backend = POLYATTN_BACKEND_HIP;
    else if (!strcmp(name, "opencl")) backend = POLYATTN_BACKEND_OPENCL;
    else if (strcmp(name, "host") != 0) {
        printf("unknown backend %s\n", name);
        return 2;
    }
    on_device = backend != POLYATTN_BACKEND_HOST;
    if (polyattn_context_create(backend, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        printf("no %s device: skipped\n", name);
        return 77;
    }
    static const polyattn_dtype dts[3] = {POLYATTN_DTYPE_F32, POLYATTN_DTYPE_F16,
                                          POLYATTN_DTYPE_BF16};
    uint64_t seed = 1;
    for (int pdt = 0; pdt < 3; pdt++)
        for (int odt = 0; odt < 3; odt++) {
            mcase mc = {3, 2, 3, 5, 16, dts[pdt], dts[odt], odt == 1, pdt == 2, 1, 1, 0};
            run_case(&mc, seed++);
        }
    static const int64_t part_counts[] = {1, 2, 4, 7};
    for (size_t i = 0; i < 4; i++) {
        mcase mc = {part_counts[i], 1, 2, 33, 8, POLYATTN_DTYPE_F32, POLYATTN_DTYPE_F32, 1, 1, 1,
                    (int)(i % 2),   0};
        run_case(&mc, seed++);
        mcase plain = {part_counts[i],      3, 1, 7, 40, POLYATTN_DTYPE_F32,
                       POLYATTN_DTYPE_BF16, 0, 0, 0, 1,  0};
        run_case(&plain, seed++);
    }
    /* Remainders of a work-item per (row, column) in groups of 256, 4-wide columns never
     * aligned: odd head dims and row counts, strided columns, every row kind. */
    static const struct {
        int64_t parts, batch, heads, seq, dv;
        int pdt, odt, odd;
    } odd[] = {{3, 1, 3, 7, 1, 0, 0, 1},  {9, 3, 1, 5, 3, 1, 2, 0},   {2, 1, 3, 7, 13, 2, 1, 1},
               {5, 1, 5, 7, 67, 0, 2, 0}, {3, 3, 1, 5, 257, 1, 0, 1}, {1, 1, 1, 21, 13, 0, 0, 1},
               {4, 1, 3, 5, 129, 2, 2, 1}};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        mcase mc = {odd[i].parts,    odd[i].batch,
                    odd[i].heads,    odd[i].seq,
                    odd[i].dv,       dts[odd[i].pdt],
                    dts[odd[i].odt], 0,
                    (int)(i % 2),    1,
                    i % 3 != 1,      odd[i].odd};
        run_case(&mc, seed++);
    }
    end_to_end(1, 17, on_device ? POLYATTN_ALGO_FLASH : POLYATTN_ALGO_UNFUSED);
    end_to_end(3, 70, on_device ? POLYATTN_ALGO_FLASH : POLYATTN_ALGO_UNFUSED);
    end_to_end(4, 130, POLYATTN_ALGO_FLASH);
    bad_inputs();
    polyattn_context_destroy(ctx);
    pa_tk_shutdown();
    printf("test_merge_states (%s): %d checks, %d failures\n", name, checks, failures);
    return failures ? 1 : 0;
}
