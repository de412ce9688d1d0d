/*
 * The one case table, shared by conformance (every backend x algo x dtype) and the bench.
 *
 * Kept modest on purpose: CI runs the whole table on PoCL with 2 cores, 9 combinations
 * per case, and recomputes the double-precision reference per combination.  Each case is
 * there for a reason written beside it; sizes are odd so no kernel gets away with tile
 * multiples only.
 */
#include "pa_testkit.h"

#include <string.h>

#define NONE POLYATTN_MASK_NONE
#define TL POLYATTN_MASK_CAUSAL_TOP_LEFT
#define BR POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT

/* Score variants: a few per variant and gpt-oss's mix, small and odd (PoCL runs them). */
static const pa_tk_variants v_window = {
    1, 7, 2, 0.f, POLYATTN_ALIBI_NONE, PA_TK_SCORE_NONE, POLYATTN_DTYPE_F32, PA_TK_SCORE_NONE, 0};
static const pa_tk_variants v_window_left = {
    1, 11, -1, 0.f, POLYATTN_ALIBI_NONE, PA_TK_SCORE_NONE, POLYATTN_DTYPE_F32, PA_TK_SCORE_NONE, 0};
static const pa_tk_variants v_softcap = {
    0, -1, -1, 0.5f, POLYATTN_ALIBI_NONE, PA_TK_SCORE_NONE, POLYATTN_DTYPE_F32, PA_TK_SCORE_NONE,
    0};
static const pa_tk_variants v_alibi = {
    0, -1, -1, 0.f, POLYATTN_ALIBI_PER_HEAD, PA_TK_SCORE_NONE, POLYATTN_DTYPE_F32, PA_TK_SCORE_NONE,
    0};
static const pa_tk_variants v_bias_full = {
    0, -1, -1, 0.f, POLYATTN_ALIBI_NONE, PA_TK_SCORE_FULL, POLYATTN_DTYPE_F32, PA_TK_SCORE_NONE, 0};
static const pa_tk_variants v_bias_shared = {
    0, -1, -1, 0.f, POLYATTN_ALIBI_NONE, PA_TK_SCORE_SHARED, POLYATTN_DTYPE_F16, PA_TK_SCORE_NONE,
    0};
static const pa_tk_variants v_mask = {
    0, -1, -1, 0.f, POLYATTN_ALIBI_NONE, PA_TK_SCORE_NONE, POLYATTN_DTYPE_F32, PA_TK_SCORE_HEADS,
    0};
static const pa_tk_variants v_sinks = {
    0, -1, -1, 0.f, POLYATTN_ALIBI_NONE, PA_TK_SCORE_NONE, POLYATTN_DTYPE_F32, PA_TK_SCORE_NONE, 1};
static const pa_tk_variants v_gpt_oss = {
    1, 16, 0, 0.5f, POLYATTN_ALIBI_NONE, PA_TK_SCORE_NONE, POLYATTN_DTYPE_F32, PA_TK_SCORE_NONE, 1};
static const pa_tk_variants v_alibi_bias = {0,
                                            -1,
                                            -1,
                                            0.f,
                                            POLYATTN_ALIBI_PER_BATCH_HEAD,
                                            PA_TK_SCORE_BATCH,
                                            POLYATTN_DTYPE_BF16,
                                            PA_TK_SCORE_NONE,
                                            0};
static const pa_tk_variants v_bias_heads_softcap = {
    0, -1, -1, 1.f, POLYATTN_ALIBI_NONE, PA_TK_SCORE_HEADS, POLYATTN_DTYPE_F32, PA_TK_SCORE_NONE,
    0};
static const pa_tk_variants v_mask_window = {
    1, 5, 5, 0.f, POLYATTN_ALIBI_NONE, PA_TK_SCORE_NONE, POLYATTN_DTYPE_F32, PA_TK_SCORE_SHARED, 0};

static const pa_tk_case cases[] = {
    /* name                 b  hq hkv  sq   skv  d    dv  mask layout    scale mag must */
    /* the smallest problem: one query, one key */
    {"single_1x1_d16", 1, 1, 1, 1, 1, 16, 16, NONE, PA_TK_BHSD, 0.f, 1.f, 1},
    /* odd lengths, seq_q < seq_kv, batch > 1 */
    {"odd_37x53_d32", 2, 3, 3, 37, 53, 32, 32, NONE, PA_TK_BHSD, 0.f, 1.f, 1},
    /* causal top-left with seq_q > seq_kv: queries 36..52 see every key; top-left never
     * masks a whole row (query i always sees key 0) */
    {"causal_tl_53x37_d64", 1, 2, 2, 53, 37, 64, 64, TL, PA_TK_BHSD, 0.f, 1.f, 1},
    /* causal bottom-right with seq_q > seq_kv: the first 16 queries see no key at all
     * (fully masked rows: O = 0, LSE = -inf) */
    {"causal_br_53x37_d64", 1, 2, 2, 53, 37, 64, 64, BR, PA_TK_BHSD, 0.f, 1.f, 1},
    /* causal bottom-right, seq_q < seq_kv (a prefill continuing a cache) */
    {"causal_br_37x129_d64", 2, 2, 2, 37, 129, 64, 64, BR, PA_TK_BHSD, 0.f, 1.f, 1},
    /* causal top-left, seq_q < seq_kv: query i ignores keys past i */
    {"causal_tl_37x129_d32", 1, 2, 2, 37, 129, 32, 32, TL, PA_TK_BHSD, 0.f, 1.f, 1},
    /* square causal over several key tiles */
    {"causal_tl_129_d128", 1, 2, 2, 129, 129, 128, 128, TL, PA_TK_BHSD, 0.f, 1.f, 1},
    /* fully masked rows with top-left: seq_kv = 1 keeps every row visible, bottom-right
     * with seq_kv = 1 masks all but the last query */
    {"causal_br_7x1_d16", 2, 1, 1, 7, 1, 16, 16, BR, PA_TK_BHSD, 0.f, 1.f, 1},
    /* GQA 4:1, odd lengths */
    {"gqa4_65x97_d64", 1, 8, 2, 65, 97, 64, 64, NONE, PA_TK_BHSD, 0.f, 1.f, 1},
    /* GQA 2:1, decode-like single query, bottom-right (sees all keys) */
    {"gqa2_decode_1x129_d128", 2, 6, 3, 1, 129, 128, 128, BR, PA_TK_BHSD, 0.f, 1.f, 1},
    /* head_dim 40 (not a power of two) */
    {"d40_45x45", 2, 2, 2, 45, 45, 40, 40, NONE, PA_TK_BHSD, 0.f, 1.f, 1},
    /* head_dim 96 in BSHD (interleaved heads) */
    {"d96_bshd_77x130", 1, 2, 2, 77, 130, 96, 96, NONE, PA_TK_BSHD, 0.f, 1.f, 1},
    /* big head dims: few and short */
    {"d256_causal_33x65", 1, 1, 1, 33, 65, 256, 256, TL, PA_TK_BHSD, 0.f, 1.f, 1},
    {"d512_17x40", 1, 1, 1, 17, 40, 512, 512, NONE, PA_TK_BHSD, 0.f, 1.f, 1},
    /* head_dim_v != head_dim, both ways */
    {"dv32_d64_29x31", 1, 2, 2, 29, 31, 64, 32, NONE, PA_TK_BHSD, 0.f, 1.f, 1},
    {"dv128_d32_causal_31x29", 1, 2, 1, 31, 29, 32, 128, BR, PA_TK_BHSD, 0.f, 1.f, 1},
    /* large magnitudes (x30): scores in the hundreds, softmax nearly one-hot; catches
     * kernels that skip the max subtraction or accumulate in half precision */
    {"large_mag_64x200_d64", 1, 2, 2, 64, 200, 64, 64, NONE, PA_TK_BHSD, 0.f, 30.f, 1},
    {"large_mag_causal_50x70_d128", 1, 1, 1, 50, 70, 128, 128, BR, PA_TK_BSHD, 0.f, 30.f, 1},
    /* large magnitudes at a wide head dim: the running max of a row keeps jumping by
     * more than the lazy-rescale slack of the wide kernels (2^8) in later key tiles */
    {"large_mag_br_70x150_d512", 1, 1, 1, 70, 150, 512, 512, BR, PA_TK_BHSD, 0.f, 8.f, 1},
    /* strided BSHD with gaps between rows, with GQA and causal */
    {"bshd_pad_gqa_47x61_d64", 2, 4, 2, 47, 61, 64, 64, TL, PA_TK_BSHD_PAD, 0.f, 1.f, 1},
    /* an explicit scale (not 1/sqrt(d)) */
    {"scale_half_31x33_d32", 1, 2, 2, 31, 33, 32, 32, NONE, PA_TK_BHSD, 0.5f, 1.f, 1},
    /* longer: several query and key tiles, mask crossing tiles */
    {"long_causal_br_300x257_d64", 1, 2, 2, 300, 257, 64, 64, BR, PA_TK_BHSD, 0.f, 1.f, 1},
    /* ---- score variants (must_support 0: a backend without one reports UNSUPPORTED) */
    /* window over several key tiles, no causal mask: both sides bounded */
    {"window_7_2_37x150_d32", 1, 2, 1, 37, 150, 32, 32, NONE, PA_TK_BHSD, 0.f, 1.f, 0},
    /* window left only with causal top-left, seq_q > seq_kv (GQA) */
    {"window_11_tl_53x37_d64", 1, 4, 2, 53, 37, 64, 64, TL, PA_TK_BSHD, 0.f, 1.f, 0},
    /* softcap with large scores (x4): the cap decides the softmax */
    {"softcap_41x45_d64", 2, 2, 2, 41, 45, 64, 64, NONE, PA_TK_BHSD, 0.f, 4.f, 0},
    /* ALiBi with causal bottom-right over several tiles */
    {"alibi_br_33x97_d64", 1, 2, 2, 33, 97, 64, 64, BR, PA_TK_BHSD, 0.f, 1.f, 0},
    /* bias per (batch, head), f32; -inf entries mask pairs */
    {"bias_full_29x70_d32", 2, 2, 1, 29, 70, 32, 32, NONE, PA_TK_BHSD, 0.f, 1.f, 0},
    /* one f16 bias shared by every batch entry and head (stride 0), causal top-left */
    {"bias_shared_f16_tl_45x31_d64", 2, 2, 2, 45, 31, 64, 64, TL, PA_TK_BHSD, 0.f, 1.f, 0},
    /* attn_mask per head with padded rows, GQA */
    {"attn_mask_heads_37x53_d32", 1, 4, 2, 37, 53, 32, 32, NONE, PA_TK_BHSD, 0.f, 1.f, 0},
    /* sinks with fully masked rows (bottom-right, seq_q > seq_kv): LSE = the sink */
    {"sinks_br_45x29_d64", 1, 2, 2, 45, 29, 64, 64, BR, PA_TK_BHSD, 0.f, 1.f, 0},
    /* gpt-oss: window + softcap + sinks, causal bottom-right, GQA */
    {"gpt_oss_br_67x131_d64", 1, 4, 2, 67, 131, 64, 64, BR, PA_TK_BHSD, 0.f, 1.f, 0},
    /* ALiBi per sequence + a bf16 bias per batch entry + causal top-left */
    {"alibi_bias_tl_35x35_d32", 2, 2, 2, 35, 35, 32, 32, TL, PA_TK_BHSD, 0.f, 1.f, 0},
    /* a bias per head shared by the batch entries (d_bias sums them) under softcap (d_bias
     * is dS before softcap's derivative), GQA, causal bottom-right */
    {"bias_heads_softcap_br_23x41_d32", 2, 4, 2, 23, 41, 32, 32, BR, PA_TK_BHSD, 0.f, 2.f, 0},
    /* attn_mask shared + window */
    {"attn_mask_window_47x47_d32", 1, 2, 1, 47, 47, 32, 32, NONE, PA_TK_BHSD, 0.f, 1.f, 0},
};

static const struct {
    const char *name;
    const pa_tk_variants *var;
} case_variants[] = {
    {"window_7_2_37x150_d32", &v_window},
    {"window_11_tl_53x37_d64", &v_window_left},
    {"softcap_41x45_d64", &v_softcap},
    {"alibi_br_33x97_d64", &v_alibi},
    {"bias_full_29x70_d32", &v_bias_full},
    {"attn_mask_heads_37x53_d32", &v_mask},
    {"sinks_br_45x29_d64", &v_sinks},
    {"gpt_oss_br_67x131_d64", &v_gpt_oss},
    {"alibi_bias_tl_35x35_d32", &v_alibi_bias},
    {"bias_shared_f16_tl_45x31_d64", &v_bias_shared},
    {"attn_mask_window_47x47_d32", &v_mask_window},
    {"bias_heads_softcap_br_23x41_d32", &v_bias_heads_softcap},
};

const pa_tk_variants *pa_tk_case_variants(const pa_tk_case *c)
{
    for (size_t i = 0; c && i < sizeof case_variants / sizeof case_variants[0]; i++)
        if (strcmp(c->name, case_variants[i].name) == 0) return case_variants[i].var;
    return NULL;
}

const pa_tk_case *pa_tk_cases(size_t *count)
{
    if (count) *count = sizeof cases / sizeof cases[0];
    return cases;
}

const pa_tk_case *pa_tk_find_case(const char *name)
{
    size_t i;
    if (!name) return NULL;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (strcmp(cases[i].name, name) == 0) return &cases[i];
    return NULL;
}

const char *pa_tk_layout_name(pa_tk_layout layout)
{
    switch (layout) {
    case PA_TK_BHSD: return "bhsd";
    case PA_TK_BSHD: return "bshd";
    case PA_TK_BSHD_PAD: return "bshd-padded";
    }
    return "?";
}

/* Unused elements after each (batch, seq) row of the padded layout. */
#define PA_TK_ROW_PAD 3

void pa_tk_tensor_desc(polyattn_tensor_desc *t, polyattn_dtype dtype, pa_tk_layout layout,
                       int64_t batch, int64_t heads, int64_t seq, int64_t dim)
{
    int64_t row;
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->shape[0] = batch;
    t->shape[1] = heads;
    t->shape[2] = seq;
    t->shape[3] = dim;
    t->strides[3] = 1;
    if (layout == PA_TK_BHSD) {
        t->strides[2] = dim;
        t->strides[1] = seq * dim;
        t->strides[0] = heads * seq * dim;
        return;
    }
    row = heads * dim + (layout == PA_TK_BSHD_PAD ? PA_TK_ROW_PAD : 0);
    t->strides[1] = dim;
    t->strides[2] = row;
    t->strides[0] = seq * row;
}

void pa_tk_score_desc(polyattn_tensor_desc *t, polyattn_dtype dtype, pa_tk_score_shape shape,
                      const pa_tk_case *c)
{
    const int64_t row = shape == PA_TK_SCORE_HEADS ? c->seq_kv + 3 : c->seq_kv;
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    t->shape[0] = shape == PA_TK_SCORE_SHARED || shape == PA_TK_SCORE_HEADS ? 1 : c->batch;
    t->shape[1] = shape == PA_TK_SCORE_SHARED || shape == PA_TK_SCORE_BATCH ? 1 : c->heads_q;
    t->shape[2] = c->seq_q;
    t->shape[3] = c->seq_kv;
    t->strides[3] = 1;
    t->strides[2] = row;
    t->strides[1] = c->seq_q * row;
    t->strides[0] = t->shape[1] * c->seq_q * row;
    if (shape == PA_TK_SCORE_SHARED) t->strides[0] = t->strides[1] = 0;
}

void pa_tk_case_desc(const pa_tk_case *c, polyattn_dtype dtype, polyattn_attention_desc *desc)
{
    memset(desc, 0, sizeof *desc);
    desc->struct_size = sizeof *desc;
    pa_tk_tensor_desc(&desc->q, dtype, c->layout, c->batch, c->heads_q, c->seq_q, c->head_dim);
    pa_tk_tensor_desc(&desc->k, dtype, c->layout, c->batch, c->heads_kv, c->seq_kv, c->head_dim);
    pa_tk_tensor_desc(&desc->v, dtype, c->layout, c->batch, c->heads_kv, c->seq_kv, c->head_dim_v);
    pa_tk_tensor_desc(&desc->o, dtype, c->layout, c->batch, c->heads_q, c->seq_q, c->head_dim_v);
    desc->scale = c->scale;
    desc->mask = c->mask;
    const pa_tk_variants *v = pa_tk_case_variants(c);
    if (v) {
        desc->has_window = v->has_window;
        desc->window_left = v->has_window ? v->window_left : -1;
        desc->window_right = v->has_window ? v->window_right : -1;
        desc->softcap = v->softcap;
        desc->alibi = v->alibi;
        if (v->bias) {
            desc->has_bias = 1;
            pa_tk_score_desc(&desc->bias, v->bias_dtype, v->bias, c);
        }
        if (v->attn_mask) {
            desc->has_attn_mask = 1;
            pa_tk_score_desc(&desc->attn_mask, POLYATTN_DTYPE_U8, v->attn_mask, c);
        }
        desc->has_sinks = v->sinks;
    } else {
        desc->window_left = desc->window_right = -1;
    }
}
