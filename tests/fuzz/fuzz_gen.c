/* The API fuzzer's generator (see fuzz_gen.h). */
#include "fuzz_gen.h"

#include <math.h>
#include <string.h>

void fuzz_src_seed(fuzz_src *src, uint64_t seed)
{
    memset(src, 0, sizeof *src);
    src->state = seed;
}

void fuzz_src_bytes(fuzz_src *src, const uint8_t *data, size_t size)
{
    memset(src, 0, sizeof *src);
    src->data = data, src->size = size;
}

uint64_t fuzz_u64(fuzz_src *src)
{
    if (src->data) {
        uint64_t x = 0;
        for (int i = 0; i < 8; i++)
            x = x << 8 | (src->at < src->size ? src->data[src->at++] : 0);
        return x;
    }
    uint64_t z = (src->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t fuzz_below(fuzz_src *src, uint64_t n) { return fuzz_u64(src) % n; }

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Values that break arithmetic: signs, 31/32/61/62-bit edges, the int64 extremes. */
static const int64_t extreme_values[] = {
    0,
    -1,
    -7,
    1,
    2,
    3,
    31,
    1023,
    INT32_MAX,
    (int64_t)INT32_MAX + 1,
    (int64_t)1 << 32,
    (int64_t)1 << 40,
    (int64_t)1 << 61,
    (int64_t)1 << 62,
    INT64_MAX,
    INT64_MAX - 1,
    INT64_MIN,
    INT64_MIN + 1,
    -((int64_t)1 << 62),
};

static int64_t extreme(fuzz_src *src)
{
    uint64_t i = fuzz_below(src, COUNT(extreme_values) + 1);
    return i < COUNT(extreme_values) ? extreme_values[i] : (int64_t)fuzz_u64(src);
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? (b > 0 ? INT64_MAX : INT64_MIN) : r;
}

static int64_t small_dim(fuzz_src *src, int64_t max)
{
    return 1 + (int64_t)fuzz_below(src, (uint64_t)max);
}

static int64_t pick_dim(fuzz_src *src, fuzz_profile profile, int64_t small_max)
{
    if (profile == FUZZ_SMALL || fuzz_below(src, 8) != 0) return small_dim(src, small_max);
    return extreme(src);
}

static int64_t pick_head_dim(fuzz_src *src, fuzz_profile profile)
{
    static const int64_t dims[] = {1, 2, 3, 4, 5, 7, 8, 16, 24, 32, 48, 64, 80, 96, 128, 256};
    if (profile == FUZZ_SMALL) return dims[fuzz_below(src, 13)]; /* up to 128 */
    return fuzz_below(src, 8) ? dims[fuzz_below(src, 9)] : extreme(src);
}

static polyattn_dtype pick_dtype(fuzz_src *src, int bad_ok)
{
    static const int bad[] = {-1, 3, 5, 99, INT32_MIN, INT32_MAX};
    static const polyattn_dtype good[] = {POLYATTN_DTYPE_F32, POLYATTN_DTYPE_F16,
                                          POLYATTN_DTYPE_BF16, POLYATTN_DTYPE_E4M3};
    if (bad_ok && fuzz_below(src, 16) == 0) return (polyattn_dtype)bad[fuzz_below(src, COUNT(bad))];
    return good[fuzz_below(src, COUNT(good))];
}

static float pick_scale(fuzz_src *src, fuzz_profile profile)
{
    static const float odd[] = {0.0f,   -0.0f,  -1.0f, NAN,   INFINITY, -INFINITY,
                                1e-45f, 1e-30f, 1e4f,  1e30f, 3e38f,    3.4028235e38f};
    uint64_t r = fuzz_below(src, 8);
    if (r < 4) return 0.0f; /* the default, 1/sqrt(head_dim) */
    if (r < 6 || profile == FUZZ_SMALL)
        return (float)((double)fuzz_below(src, 1 << 16) / 4096.0); /* [0, 16) */
    return odd[fuzz_below(src, COUNT(odd))];
}

static int64_t pick_stride(fuzz_src *src, int64_t current)
{
    switch (fuzz_below(src, 6)) {
    case 0: return 0;
    case 1: return sat_add(current, (int64_t)fuzz_below(src, 5));
    case 2: return (int64_t)fuzz_below(src, 64);
    case 3: return -(int64_t)fuzz_below(src, 4) - 1;
    default: return extreme(src);
    }
}

/* ---- the field table: every field of the public structs is generated here ---- */

/* One tensor: a packed layout from the constructors, then at most a few mutations. */
static void gen_tensor(fuzz_src *src, fuzz_profile profile, polyattn_tensor_desc *t, int mutations)
{
    for (int m = 0; m < mutations; m++) {
        int d = (int)fuzz_below(src, 4);
        switch (fuzz_below(src, profile == FUZZ_SMALL ? 2 : 4)) {
        case 0: /* broadcast or padded stride (still in bounds of a small buffer) */
            t->strides[d] =
                fuzz_below(src, 2) ? 0 : sat_add(t->strides[d], (int64_t)fuzz_below(src, 3));
            break;
        case 1:
            t->strides[d] = profile == FUZZ_SMALL ? t->strides[d] : pick_stride(src, t->strides[d]);
            break;
        case 2: t->shape[d] = extreme(src); break;
        default: t->dtype = pick_dtype(src, 1); break;
        }
    }
}

/* Descriptor fields beyond the tensors (scale, mask; later: offsets, tables, window...). */
/* e4m3: o's dtype (f16, bf16, f32; now and then e4m3 or a mismatch) and the descales
 * (0, good values, now and then bad ones: negative, NaN, inf, or not 1 on other dtypes). */
static void gen_fp8_fields(fuzz_src *src, fuzz_profile profile, polyattn_attention_desc *d)
{
    static const float good[] = {0.0f, 1.0f, 0.5f, 3.0f, 1.0f / 448.0f, 0.0123f};
    static const float bad[] = {-1.0f, -0.0f, NAN, INFINITY, -INFINITY, 2.0f};
    const int any = profile != FUZZ_SMALL;
    if (d->q.dtype == POLYATTN_DTYPE_E4M3 && fuzz_below(src, 2)) {
        static const polyattn_dtype outs[] = {POLYATTN_DTYPE_F16, POLYATTN_DTYPE_F32,
                                              POLYATTN_DTYPE_E4M3, POLYATTN_DTYPE_U8};
        d->o.dtype = outs[fuzz_below(src, any && fuzz_below(src, 4) == 0 ? 4 : 2)];
    } else if (any && fuzz_below(src, 32) == 0) {
        d->o.dtype = fuzz_below(src, 2) ? POLYATTN_DTYPE_F32 : POLYATTN_DTYPE_E4M3;
    }
    if (fuzz_below(src, 2)) return;
    float *descale[3] = {&d->q_descale, &d->k_descale, &d->v_descale};
    for (int i = 0; i < 3; i++)
        *descale[i] = any && fuzz_below(src, 24) == 0     ? bad[fuzz_below(src, COUNT(bad))]
                      : d->q.dtype == POLYATTN_DTYPE_E4M3 ? good[fuzz_below(src, COUNT(good))]
                                                          : good[fuzz_below(src, 2)];
}

static void gen_desc_fields(fuzz_src *src, fuzz_profile profile, polyattn_attention_desc *d)
{
    static const int bad_masks[] = {-1, 3, 7, INT32_MAX};
    d->scale = pick_scale(src, profile);
    d->mask = (polyattn_mask)fuzz_below(src, 3);
    if (profile != FUZZ_SMALL && fuzz_below(src, 32) == 0)
        d->mask = (polyattn_mask)bad_masks[fuzz_below(src, COUNT(bad_masks))];
    if (profile != FUZZ_SMALL && fuzz_below(src, 32) == 0) {
        static const size_t sizes[] = {0,
                                       1,
                                       FUZZ_DESC_V1_SIZE - 1,
                                       FUZZ_DESC_V1_SIZE,
                                       offsetof(polyattn_attention_desc, softcap),
                                       offsetof(polyattn_attention_desc, has_bias),
                                       offsetof(polyattn_attention_desc, has_sinks),
                                       offsetof(polyattn_attention_desc, q_descale),
                                       sizeof(polyattn_attention_desc) + 8,
                                       sizeof(polyattn_attention_desc) + 64};
        d->struct_size = sizes[fuzz_below(src, COUNT(sizes))];
    }
    gen_fp8_fields(src, profile, d);
}

/* A bias or attn_mask: packed [batch|1, heads_q|1, seq_q, seq_kv] in a good dtype, then
 * (mostly outside FUZZ_SMALL) a wrong dtype, a wrong or broadcast shape, or negative, zero
 * or huge strides. */
static void gen_score_tensor(fuzz_src *src, fuzz_profile profile, const polyattn_attention_desc *d,
                             polyattn_tensor_desc *t, int is_mask)
{
    const int64_t b = fuzz_below(src, 2) ? d->q.shape[0] : 1,
                  h = fuzz_below(src, 2) ? d->q.shape[1] : 1;
    polyattn_tensor_desc_bhsd(t, is_mask ? POLYATTN_DTYPE_U8 : (polyattn_dtype)fuzz_below(src, 3),
                              b, h, d->q.shape[2], d->k.shape[2]);
    if (fuzz_below(src, 3) == 0) /* broadcast by stride 0 on a dimension of extent 1 */
        for (int i = 0; i < 2; i++)
            if (t->shape[i] == 1) t->strides[i] = 0;
    if (fuzz_below(src, profile == FUZZ_SMALL ? 16 : 4) != 0) return;
    const int d_ = (int)fuzz_below(src, 4);
    switch (fuzz_below(src, 4)) {
    case 0: t->dtype = is_mask ? (polyattn_dtype)fuzz_below(src, 3) : POLYATTN_DTYPE_U8; break;
    case 1: t->shape[d_] = fuzz_below(src, 2) ? sat_add(t->shape[d_], 1) : extreme(src); break;
    case 2: t->strides[d_] = profile == FUZZ_SMALL ? 0 : pick_stride(src, t->strides[d_]); break;
    default: t->strides[d_] = fuzz_below(src, 2) ? -1 : INT64_MAX; break;
    }
}

/* The score variants (window, softcap, ALiBi, bias, attn_mask, sinks): off half the time,
 * else each on with good values, sometimes bad ones. */
static void gen_variants(fuzz_src *src, fuzz_profile profile, polyattn_attention_desc *d)
{
    static const int64_t sides[] = {-1, 0, 1, 3, 7, 40};
    static const int64_t bad_sides[] = {-2, -7, INT64_MIN, INT64_MAX};
    static const float caps[] = {0.5f, 1.0f, 30.0f, 1e-3f};
    static const float bad_caps[] = {NAN, INFINITY, -INFINITY, -1.0f, -1e-30f};
    static const int bad_alibi[] = {-1, 3, 99, INT32_MIN};
    const int bad = profile != FUZZ_SMALL;
    if (fuzz_below(src, 2)) return;
    if (fuzz_below(src, 3) == 0) {
        d->has_window = fuzz_below(src, 8) ? 1 : (int)fuzz_below(src, 100) - 50;
        d->window_left = sides[fuzz_below(src, COUNT(sides))];
        d->window_right = sides[fuzz_below(src, COUNT(sides))];
        if (bad && fuzz_below(src, 8) == 0)
            d->window_left = bad_sides[fuzz_below(src, COUNT(bad_sides))];
        if (bad && fuzz_below(src, 8) == 0)
            d->window_right = bad_sides[fuzz_below(src, COUNT(bad_sides))];
    }
    if (fuzz_below(src, 3) == 0)
        d->softcap = bad && fuzz_below(src, 6) == 0 ? bad_caps[fuzz_below(src, COUNT(bad_caps))]
                                                    : caps[fuzz_below(src, COUNT(caps))];
    if (fuzz_below(src, 3) == 0)
        d->alibi = bad && fuzz_below(src, 8) == 0
                       ? (polyattn_alibi)bad_alibi[fuzz_below(src, COUNT(bad_alibi))]
                       : (polyattn_alibi)(1 + fuzz_below(src, 2));
    if (fuzz_below(src, 3) == 0) {
        d->has_bias = 1;
        gen_score_tensor(src, profile, d, &d->bias, 0);
    }
    if (fuzz_below(src, 3) == 0) {
        d->has_attn_mask = 1;
        gen_score_tensor(src, profile, d, &d->attn_mask, 1);
    }
    d->has_sinks = fuzz_below(src, 3) == 0;
}

/* [0, n), or 0 when n <= 0 (n may be an extreme dimension). */
static int64_t below_or_zero(fuzz_src *src, int64_t n)
{
    return n > 0 ? (int64_t)fuzz_below(src, (uint64_t)n) : 0;
}

/* Serving layouts: reshapes q/o (varlen) and k/v (varlen, cache, paged) around the drawn
 * dimensions, with hints, block sizes and appended rows, now and then out of range. */
static void gen_serving_fields(fuzz_src *src, fuzz_profile profile, polyattn_attention_desc *d)
{
    if (fuzz_below(src, 3) != 0) return;
    const int any = profile != FUZZ_SMALL;
    const polyattn_dtype dt = d->q.dtype;
    const int64_t batch = d->q.shape[0], hq = d->q.shape[1], hk = d->k.shape[1];
    const int64_t dq = d->q.shape[3], dv = d->v.shape[3];
    int64_t seq_q = d->q.shape[2], seq_kv = d->k.shape[2];
    d->varlen_q = (int)fuzz_below(src, 2);
    d->kv_layout = (polyattn_kv_layout)fuzz_below(src, 4);
    if (any && fuzz_below(src, 32) == 0)
        d->kv_layout = (polyattn_kv_layout)(fuzz_below(src, 2) ? -1 : 4);
    if (d->varlen_q) {
        int64_t total = sat_add(seq_q, (int64_t)fuzz_below(src, 8)), all;
        if (!__builtin_mul_overflow(batch, seq_q, &all))
            total = sat_add(all, (int64_t)fuzz_below(src, 4));
        if (total < 1) total = 1;
        polyattn_tensor_desc_bshd(&d->q, dt, 1, hq, total, dq);
        polyattn_tensor_desc_bshd(&d->o, d->o.dtype, 1, hq, total, dv);
        d->num_seqs = batch;
        if (any && fuzz_below(src, 16) == 0) d->num_seqs = extreme(src);
        d->max_seqlen_q = fuzz_below(src, 2) ? 0 : below_or_zero(src, sat_add(seq_q, 2));
        if (any && fuzz_below(src, 16) == 0) d->max_seqlen_q = extreme(src);
        if (fuzz_below(src, 16) == 0) d->q.shape[0] = 2; /* not packed: refused */
    } else if (fuzz_below(src, 8) == 0) {
        d->num_seqs = fuzz_below(src, 2) ? batch : sat_add(batch, 1);
    }
    int64_t count = batch, rows = seq_kv;
    switch (d->kv_layout) {
    case POLYATTN_KV_VARLEN:
        count = 1;
        if (__builtin_mul_overflow(batch, seq_kv, &rows) || rows < 1) rows = seq_kv;
        rows = sat_add(rows, (int64_t)fuzz_below(src, 3));
        break;
    case POLYATTN_KV_CACHE: rows = sat_add(seq_kv, (int64_t)fuzz_below(src, 8)); break;
    case POLYATTN_KV_PAGED: {
        static const int64_t sizes[] = {16, 32, 64, 16, 48, 256};
        rows = sizes[fuzz_below(src, 6)];
        if (fuzz_below(src, 16) == 0) rows = any ? extreme(src) : 24; /* not a multiple of 16 */
        count = 1 + (int64_t)fuzz_below(src, 12);
        d->max_blocks_per_seq = 1 + (int64_t)fuzz_below(src, 4);
        if (any && fuzz_below(src, 16) == 0) d->max_blocks_per_seq = extreme(src);
        break;
    }
    default: break;
    }
    if (d->kv_layout != POLYATTN_KV_DENSE) {
        polyattn_tensor_desc_bshd(&d->k, dt, count, hk, rows, dq);
        polyattn_tensor_desc_bshd(&d->v, dt, count, hk, rows, dv);
        d->max_seqlen_kv = fuzz_below(src, 2) ? 0 : below_or_zero(src, sat_add(seq_kv, 2));
        if (any && fuzz_below(src, 16) == 0) d->max_seqlen_kv = extreme(src);
    }
    if (fuzz_below(src, 32) == 0) d->max_blocks_per_seq = 1 + (int64_t)fuzz_below(src, 3);
    if ((d->kv_layout == POLYATTN_KV_CACHE || d->kv_layout == POLYATTN_KV_PAGED ||
         fuzz_below(src, 32) == 0) &&
        fuzz_below(src, 2)) {
        const int64_t seq_new = 1 + (int64_t)fuzz_below(src, 4);
        d->has_kv_append = 1;
        polyattn_tensor_desc_bhsd(&d->k_new, dt, batch, hk, seq_new, dq);
        polyattn_tensor_desc_bshd(&d->v_new, dt, batch, hk, seq_new, dv);
        if (fuzz_below(src, 16) == 0)
            gen_tensor(src, profile, fuzz_below(src, 2) ? &d->k_new : &d->v_new, 1);
    }
}

static int32_t clamp32(int64_t x)
{
    return x > INT32_MAX ? INT32_MAX : x < INT32_MIN ? INT32_MIN : (int32_t)x;
}

/* Offsets into `rows` rows with lengths at most `bound`, the first at 0..2. */
static void gen_offsets(fuzz_src *src, int32_t *cu, int64_t batch, int64_t rows, int64_t bound)
{
    int64_t at = (int64_t)fuzz_below(src, 3);
    if (at > rows) at = rows;
    cu[0] = (int32_t)at;
    for (int64_t b = 0; b < batch; b++) {
        int64_t room = rows - at < bound ? rows - at : bound;
        at += room > 0 && fuzz_below(src, 4) ? (int64_t)fuzz_below(src, (uint64_t)room + 1) : 0;
        cu[b + 1] = (int32_t)at;
    }
}

/* The device data of a small serving case: valid offsets, lengths and block indices, then
 * now and then one broken value (the driver expects INVALID_ARGUMENT with nothing written,
 * or success when the broken value happens to be one no sequence reads). */
static void gen_serving_data(fuzz_src *src, fuzz_case *c)
{
    const polyattn_attention_desc *d = &c->d.desc;
    const int64_t batch = d->varlen_q ? d->num_seqs : d->q.shape[0];
    if (batch < 1 || batch > FUZZ_MAX_SEQS || d->q.shape[2] < 1 || d->k.shape[2] < 1 ||
        d->k.shape[0] < 1) { /* (small cases have no dimension above 256) */
        c->small = 0;
        return;
    }
    const int64_t seq_new = d->has_kv_append ? d->k_new.shape[2] : 0;
    if (seq_new < 0) {
        c->small = 0;
        return;
    }
    if (d->varlen_q)
        gen_offsets(src, c->cu_q, batch, d->q.shape[2],
                    d->max_seqlen_q ? d->max_seqlen_q : d->q.shape[2]);
    if (d->kv_layout == POLYATTN_KV_VARLEN)
        gen_offsets(src, c->cu_kv, batch, d->k.shape[2],
                    d->max_seqlen_kv ? d->max_seqlen_kv : d->k.shape[2]);
    if (d->kv_layout == POLYATTN_KV_CACHE || d->kv_layout == POLYATTN_KV_PAGED) {
        const int paged = d->kv_layout == POLYATTN_KV_PAGED;
        if (paged &&
            (d->max_blocks_per_seq < 1 || d->max_blocks_per_seq > FUZZ_MAX_TABLE / batch)) {
            c->small = 0;
            return;
        }
        const int64_t cap = paged ? d->max_blocks_per_seq * d->k.shape[2] : d->k.shape[2];
        const int64_t bound = d->max_seqlen_kv && d->max_seqlen_kv < cap ? d->max_seqlen_kv : cap;
        if (bound < seq_new) c->serving_bad = 1; /* no valid length exists */
        for (int64_t b = 0; b < batch; b++)
            c->seqused[b] =
                bound >= seq_new ? (int32_t)fuzz_below(src, (uint64_t)(bound - seq_new) + 1) : 0;
        for (int64_t n = 0; paged && n < batch * d->max_blocks_per_seq; n++)
            c->table[n] = (int32_t)fuzz_below(src, (uint64_t)d->k.shape[0]); /* repeats: shared */
    }
    if (fuzz_below(src, 4) != 0) return;
    c->serving_bad = 1;
    const int64_t b = (int64_t)fuzz_below(src, (uint64_t)batch);
    static const int64_t bad_values[] = {-1, -7, INT32_MAX, INT32_MIN, 1 << 20};
    const int64_t v =
        fuzz_below(src, 2) ? bad_values[fuzz_below(src, 5)] : (int64_t)fuzz_below(src, 600) - 8;
    switch (fuzz_below(src, 4)) {
    case 0:
        if (d->varlen_q) c->cu_q[fuzz_below(src, (uint64_t)batch + 1)] = clamp32(v);
        break;
    case 1:
        if (d->kv_layout == POLYATTN_KV_VARLEN)
            c->cu_kv[fuzz_below(src, (uint64_t)batch + 1)] = clamp32(v);
        break;
    case 2: c->seqused[b] = clamp32(v); break;
    default:
        if (d->kv_layout == POLYATTN_KV_PAGED)
            c->table[fuzz_below(src, (uint64_t)(batch * d->max_blocks_per_seq))] = clamp32(v);
        break;
    }
}

static void gen_options(fuzz_src *src, fuzz_profile profile, int small, polyattn_plan_options *o)
{
    static const int bad_algos[] = {-1, POLYATTN_ALGO_COUNT, 99, INT32_MIN};
    static const uint64_t budgets[] = {0, 0, 0, 1, 4096, 1 << 20, (uint64_t)1 << 40, UINT64_MAX};
    polyattn_plan_options_init(o);
    o->algo = (polyattn_algo)fuzz_below(src, POLYATTN_ALGO_COUNT);
    if (profile != FUZZ_SMALL && fuzz_below(src, 32) == 0)
        o->algo = (polyattn_algo)bad_algos[fuzz_below(src, COUNT(bad_algos))];
    o->memory_budget_bytes = budgets[fuzz_below(src, COUNT(budgets))];
    o->debug = fuzz_below(src, 8) == 0;
    o->want_lse = (int)fuzz_below(src, 2) * (fuzz_below(src, 8) ? 1 : -3); /* any non-zero */
    o->want_probs = fuzz_below(src, 4) == 0;
    o->want_backward = fuzz_below(src, 4) == 0;
    o->deterministic = (int)fuzz_below(src, 2);
    o->want_bias_grad = fuzz_below(src, 3) == 0; /* refused without a bias and a backward */
    /* Autotune times every eligible algorithm on real buffers: small problems only. */
    o->autotune = small && fuzz_below(src, 64) == 0;
    if (profile != FUZZ_SMALL && fuzz_below(src, 32) == 0) {
        static const size_t sizes[] = {0, 4, FUZZ_OPTIONS_V1_SIZE - 1, FUZZ_OPTIONS_V1_SIZE,
                                       sizeof(polyattn_plan_options) + 64};
        o->struct_size = sizes[fuzz_below(src, COUNT(sizes))];
    }
}

void fuzz_gen_case(fuzz_src *src, fuzz_profile profile, fuzz_case *c)
{
    memset(c, 0, sizeof *c);
    polyattn_attention_desc *d = &c->d.desc;
    int64_t group = small_dim(src, 4);
    int64_t batch = pick_dim(src, profile, 3), heads_kv = pick_dim(src, profile, 3);
    int64_t heads_q = heads_kv, seq_q = pick_dim(src, profile, 40),
            seq_kv = pick_dim(src, profile, 40);
    int64_t head_dim = pick_head_dim(src, profile);
    int64_t head_dim_v = fuzz_below(src, 4) ? head_dim : pick_head_dim(src, profile);
    if (__builtin_mul_overflow(heads_kv, group, &heads_q)) heads_q = INT64_MAX;
    polyattn_dtype dtype = pick_dtype(src, profile != FUZZ_SMALL);
    polyattn_attention_desc_init(d, dtype, batch, heads_q, heads_kv, seq_q, seq_kv, head_dim,
                                 head_dim_v);
    /* Layouts: BSHD for any tensor, through the constructors (their stride arithmetic is
     * fuzzed too). */
    polyattn_tensor_desc *tensors[4] = {&d->q, &d->k, &d->v, &d->o};
    const int64_t heads[4] = {heads_q, heads_kv, heads_kv, heads_q};
    const int64_t seqs[4] = {seq_q, seq_kv, seq_kv, seq_q};
    const int64_t dims[4] = {head_dim, head_dim, head_dim_v, head_dim_v};
    for (int i = 0; i < 4; i++)
        if (fuzz_below(src, 4) == 0)
            polyattn_tensor_desc_bshd(tensors[i], tensors[i]->dtype, batch, heads[i], seqs[i],
                                      dims[i]);
    if (fuzz_below(src, 16) == 0) /* K and V broadcast one row (issue 25's reproducer shape) */
        for (int i = 1; i < 3; i++)
            memset(tensors[i]->strides, 0, sizeof tensors[i]->strides);
    int mutations = fuzz_below(src, 3) ? 0 : (int)fuzz_below(src, 4);
    for (int m = 0; m < mutations; m++)
        gen_tensor(src, profile, tensors[fuzz_below(src, 4)], 1);
    gen_desc_fields(src, profile, d);
    gen_variants(src, profile, d);
    gen_serving_fields(src, profile, d);
    /* A struct_size that ends before the serving members turns them off in the library. */
    c->serving = (d->varlen_q || d->kv_layout != POLYATTN_KV_DENSE) &&
                 d->struct_size >=
                     offsetof(polyattn_attention_desc, k_new) + 2 * sizeof(polyattn_tensor_desc);
    c->small = 1;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            if (tensors[i]->shape[j] > 256 || tensors[i]->strides[j] > 65536) c->small = 0;
    /* The variants' tensors too (the plan's device bytes do not count them). */
    const polyattn_tensor_desc *score[2] = {d->has_bias ? &d->bias : NULL,
                                            d->has_attn_mask ? &d->attn_mask : NULL};
    for (int i = 0; i < 2; i++)
        for (int j = 0; score[i] && j < 4; j++)
            if (score[i]->shape[j] > 256 || score[i]->strides[j] > 65536) c->small = 0;
    for (int j = 0; j < 4 && d->has_kv_append; j++)
        if (d->k_new.shape[j] > 256 || d->v_new.shape[j] > 256 || d->k_new.strides[j] > 65536 ||
            d->v_new.strides[j] > 65536)
            c->small = 0;
    if (c->serving && c->small) gen_serving_data(src, c);
    c->drop_extra = c->serving && fuzz_below(src, 16) == 0 ? 1 + (int)fuzz_below(src, 6) : 0;
    gen_options(src, profile, c->small, &c->o.options);
    c->pass_options = fuzz_below(src, 16) != 0;
}
