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
    0, -1, -7, 1, 2, 3, 31, 1023, INT32_MAX, (int64_t)INT32_MAX + 1, (int64_t)1 << 32,
    (int64_t)1 << 40, (int64_t)1 << 61, (int64_t)1 << 62, INT64_MAX, INT64_MAX - 1,
    INT64_MIN, INT64_MIN + 1, -((int64_t)1 << 62),
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

static int64_t small_dim(fuzz_src *src, int64_t max) { return 1 + (int64_t)fuzz_below(src, (uint64_t)max); }

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
    static const int bad[] = {-1, 3, 4, 99, INT32_MIN, INT32_MAX};
    if (bad_ok && fuzz_below(src, 16) == 0) return (polyattn_dtype)bad[fuzz_below(src, COUNT(bad))];
    return (polyattn_dtype)fuzz_below(src, 3);
}

static float pick_scale(fuzz_src *src, fuzz_profile profile)
{
    static const float odd[] = {0.0f, -0.0f, -1.0f, NAN, INFINITY, -INFINITY, 1e-45f, 1e-30f,
                                1e4f, 1e30f, 3e38f, 3.4028235e38f};
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
            t->strides[d] = fuzz_below(src, 2) ? 0 : sat_add(t->strides[d], (int64_t)fuzz_below(src, 3));
            break;
        case 1: t->strides[d] = profile == FUZZ_SMALL ? t->strides[d] : pick_stride(src, t->strides[d]); break;
        case 2: t->shape[d] = extreme(src); break;
        default: t->dtype = pick_dtype(src, 1); break;
        }
    }
}

/* Descriptor fields beyond the tensors (scale, mask; later: offsets, tables, window...). */
static void gen_desc_fields(fuzz_src *src, fuzz_profile profile, polyattn_attention_desc *d)
{
    static const int bad_masks[] = {-1, 3, 7, INT32_MAX};
    d->scale = pick_scale(src, profile);
    d->mask = (polyattn_mask)fuzz_below(src, 3);
    if (profile != FUZZ_SMALL && fuzz_below(src, 32) == 0)
        d->mask = (polyattn_mask)bad_masks[fuzz_below(src, COUNT(bad_masks))];
    if (profile != FUZZ_SMALL && fuzz_below(src, 32) == 0) {
        static const size_t sizes[] = {0, 1, FUZZ_DESC_V1_SIZE - 1, FUZZ_DESC_V1_SIZE,
                                       offsetof(polyattn_attention_desc, softcap),
                                       offsetof(polyattn_attention_desc, has_bias),
                                       offsetof(polyattn_attention_desc, has_sinks),
                                       sizeof(polyattn_attention_desc) + 8,
                                       sizeof(polyattn_attention_desc) + 64};
        d->struct_size = sizes[fuzz_below(src, COUNT(sizes))];
    }
}

/* A bias or attn_mask: packed [batch|1, heads_q|1, seq_q, seq_kv] in a good dtype, then
 * (mostly outside FUZZ_SMALL) a wrong dtype, a wrong or broadcast shape, or negative, zero
 * or huge strides. */
static void gen_score_tensor(fuzz_src *src, fuzz_profile profile, const polyattn_attention_desc *d,
                             polyattn_tensor_desc *t, int is_mask)
{
    const int64_t b = fuzz_below(src, 2) ? d->q.shape[0] : 1, h = fuzz_below(src, 2) ? d->q.shape[1] : 1;
    polyattn_tensor_desc_bhsd(t, is_mask ? POLYATTN_DTYPE_U8 : (polyattn_dtype)fuzz_below(src, 3), b,
                              h, d->q.shape[2], d->k.shape[2]);
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
        if (bad && fuzz_below(src, 8) == 0) d->window_left = bad_sides[fuzz_below(src, COUNT(bad_sides))];
        if (bad && fuzz_below(src, 8) == 0) d->window_right = bad_sides[fuzz_below(src, COUNT(bad_sides))];
    }
    if (fuzz_below(src, 3) == 0)
        d->softcap = bad && fuzz_below(src, 6) == 0 ? bad_caps[fuzz_below(src, COUNT(bad_caps))]
                                                    : caps[fuzz_below(src, COUNT(caps))];
    if (fuzz_below(src, 3) == 0)
        d->alibi = bad && fuzz_below(src, 8) == 0 ? (polyattn_alibi)bad_alibi[fuzz_below(src, COUNT(bad_alibi))]
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
    int64_t heads_q = heads_kv, seq_q = pick_dim(src, profile, 40), seq_kv = pick_dim(src, profile, 40);
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
            polyattn_tensor_desc_bshd(tensors[i], dtype, batch, heads[i], seqs[i], dims[i]);
    if (fuzz_below(src, 16) == 0) /* K and V broadcast one row (issue 25's reproducer shape) */
        for (int i = 1; i < 3; i++) memset(tensors[i]->strides, 0, sizeof tensors[i]->strides);
    int mutations = fuzz_below(src, 3) ? 0 : (int)fuzz_below(src, 4);
    for (int m = 0; m < mutations; m++)
        gen_tensor(src, profile, tensors[fuzz_below(src, 4)], 1);
    gen_desc_fields(src, profile, d);
    gen_variants(src, profile, d);
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
    gen_options(src, profile, c->small, &c->o.options);
    c->pass_options = fuzz_below(src, 16) != 0;
}
