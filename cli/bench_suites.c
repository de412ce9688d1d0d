/* The bench suites' shapes. */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CAUSAL POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT
#define NONE POLYATTN_MASK_NONE
#define DENSE PA_BENCH_DENSE, 0, 0 /* layout, block_size, min_len */

/* The article's benchmark: (seq, d_model as head_dim, batch), one head, causal, float32. */
static const pa_bench_shape article_shapes[] = {
    {16, 1, 1, 128, 128, 512, 512, CAUSAL, DENSE},
    {8, 1, 1, 512, 512, 768, 768, CAUSAL, DENSE},
    {4, 1, 1, 1024, 1024, 1024, 1024, CAUSAL, DENSE},
    {2, 1, 1, 2048, 2048, 1024, 1024, CAUSAL, DENSE},
    {1, 1, 1, 4096, 4096, 1024, 1024, CAUSAL, DENSE},
};

/* FlashAttention-2's forward benchmark: 16k tokens per batch (batch = 16384 / seq), hidden
 * size 2048 (heads = 2048 / head_dim), head_dim 64 and 128, with and without a causal mask. */
#define FA2(seq, dim, mask)                                                                        \
    {                                                                                              \
        16384 / (seq), 2048 / (dim), 2048 / (dim), seq, seq, dim, dim, mask, DENSE                 \
    }
#define FA2_SEQS(dim, mask)                                                                        \
    FA2(512, dim, mask), FA2(1024, dim, mask), FA2(2048, dim, mask), FA2(4096, dim, mask),         \
        FA2(8192, dim, mask), FA2(16384, dim, mask)
static const pa_bench_shape fa2_shapes[] = {
    FA2_SEQS(64, NONE),
    FA2_SEQS(64, CAUSAL),
    FA2_SEQS(128, NONE),
    FA2_SEQS(128, CAUSAL),
};

/* Decoding as an engine runs it: batch 8, one new query per sequence (and 16, as in
 * speculative decoding) against 8k, 32k and 128k cached keys, bottom-right causal (the new
 * queries are the last positions), grouped-query attention (32 query heads sharing 8 KV
 * heads, head_dim 128, as in Llama-3-8B-like models).  Each length as dense K/V tensors, a
 * dense KV cache (seqused_kv = the length) and a paged cache of 16- and 256-key blocks in
 * shuffled order.  The largest holds 4 GiB of bf16 K and V.  --quick: batch 2, 8/2 heads,
 * 32 to 512 keys. */
#define DECODE_ROW(batch, hq, hkv, q, kv, layout, bs)                                              \
    {                                                                                              \
        batch, hq, hkv, q, kv, 128, 128, CAUSAL, layout, bs, 0                                     \
    }
#define DECODE_LAYOUTS(batch, hq, hkv, q, kv)                                                      \
    DECODE_ROW(batch, hq, hkv, q, kv, PA_BENCH_DENSE, 0),                                          \
        DECODE_ROW(batch, hq, hkv, q, kv, PA_BENCH_CACHE, 0),                                      \
        DECODE_ROW(batch, hq, hkv, q, kv, PA_BENCH_PAGED, 16),                                     \
        DECODE_ROW(batch, hq, hkv, q, kv, PA_BENCH_PAGED, 256)
#define DECODE_KV(batch, hq, hkv, q, k1, k2, k3)                                                   \
    DECODE_LAYOUTS(batch, hq, hkv, q, k1), DECODE_LAYOUTS(batch, hq, hkv, q, k2),                  \
        DECODE_LAYOUTS(batch, hq, hkv, q, k3)
static const pa_bench_shape decode_shapes[] = {
    DECODE_KV(8, 32, 8, 1, 8192, 32768, 131072),
    DECODE_KV(8, 32, 8, 16, 8192, 32768, 131072),
};
static const pa_bench_shape decode_quick_shapes[] = {
    DECODE_KV(2, 8, 2, 1, 32, 128, 512),
    DECODE_KV(2, 8, 2, 16, 32, 128, 512),
};

/* Serving: a varlen prefill of 16 sequences of seeded lengths in 128..4096 (16 heads,
 * head_dim 128, bottom-right causal), then the dense batches of the same work (16
 * sequences of the lengths' root mean square: the same FLOPs) and of the padded batch (16
 * of the longest), then paged decode (batch 8, 32/8 heads, 32k keys, 16- and 256-key
 * blocks) beside the dense cache.  The dense rows are filled in from the lengths at run
 * time (serving_init).  --quick: 4 sequences of 8..64, decode of 2 x 8/2 heads x 128 keys. */
enum { SERVING_ROWS = 6 };
static pa_bench_shape serving_shapes[SERVING_ROWS], serving_quick_shapes[SERVING_ROWS];

static void serving_init(pa_bench_shape *rows, int64_t n, int64_t heads, int64_t min_len,
                         int64_t max_len, int64_t dec_batch, int64_t dec_hq, int64_t dec_hkv,
                         int64_t dec_kv)
{
    const pa_bench_shape varlen = {n,   heads,  heads,           max_len, max_len, 128,
                                   128, CAUSAL, PA_BENCH_VARLEN, 0,       min_len};
    int64_t len[PA_BENCH_MAX_SEQS], longest = 0;
    double sq = 0;
    pa_bench_varlen_lengths(&varlen, len);
    for (int64_t b = 0; b < n; b++) {
        sq += (double)len[b] * (double)len[b];
        longest = len[b] > longest ? len[b] : longest;
    }
    int64_t rms = (int64_t)(sqrt(sq / (double)n) + 0.5);
    rows[0] = varlen;
    rows[1] = (pa_bench_shape){n, heads, heads, rms, rms, 128, 128, CAUSAL, PA_BENCH_DENSE, 0, 0};
    rows[2] =
        (pa_bench_shape){n, heads, heads, longest, longest, 128, 128, CAUSAL, PA_BENCH_DENSE, 0, 0};
    rows[3] = (pa_bench_shape)DECODE_ROW(dec_batch, dec_hq, dec_hkv, 1, dec_kv, PA_BENCH_CACHE, 0);
    rows[4] = (pa_bench_shape)DECODE_ROW(dec_batch, dec_hq, dec_hkv, 1, dec_kv, PA_BENCH_PAGED, 16);
    rows[5] =
        (pa_bench_shape)DECODE_ROW(dec_batch, dec_hq, dec_hkv, 1, dec_kv, PA_BENCH_PAGED, 256);
}

void pa_bench_varlen_lengths(const pa_bench_shape *sh, int64_t *len)
{
    uint64_t state = 0x5e7e0000ull + (uint64_t)sh->batch;
    for (int64_t b = 0; b < sh->batch && b < PA_BENCH_MAX_SEQS; b++) {
        /* splitmix64 */
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        len[b] = sh->min_len + (int64_t)(z % (uint64_t)(sh->seq_q - sh->min_len + 1));
    }
}

const char *pa_bench_layout_name(pa_bench_layout layout)
{
    switch (layout) {
    case PA_BENCH_CACHE: return "cache";
    case PA_BENCH_PAGED: return "paged";
    case PA_BENCH_VARLEN: return "varlen";
    default: return "dense";
    }
}

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))
static const pa_bench_suite suites[] = {
    {"article", "the article's five shapes: one head, head_dim 512-1024, causal, float32",
     article_shapes, COUNT(article_shapes), POLYATTN_DTYPE_F32},
    {"fa2", "FlashAttention-2's forward benchmark: 16k tokens, hidden 2048, d 64/128", fa2_shapes,
     COUNT(fa2_shapes), POLYATTN_DTYPE_F16},
    {"decode", "decoding: batch 8, seq_q 1/16, 8k-128k keys dense, cached and paged, GQA 32/8",
     decode_shapes, COUNT(decode_shapes), POLYATTN_DTYPE_BF16},
    {"serving", "varlen prefill against dense batches of the same work, paged decode",
     serving_shapes, SERVING_ROWS, POLYATTN_DTYPE_BF16},
    {"custom", "the shapes given with --shape", NULL, 0, POLYATTN_DTYPE_F32},
};

const pa_bench_suite *pa_bench_find_suite(const char *name, int quick)
{
    static pa_bench_suite quick_suite;
    if (serving_shapes[0].batch == 0) {
        serving_init(serving_shapes, 16, 16, 128, 4096, 8, 32, 8, 32768);
        serving_init(serving_quick_shapes, 4, 4, 8, 64, 2, 8, 2, 128);
    }
    for (int i = 0; i < COUNT(suites); i++) {
        if (strcmp(suites[i].name, name) != 0) continue;
        if (!quick) return &suites[i];
        quick_suite = suites[i];
        if (strcmp(name, "decode") == 0) {
            quick_suite.shapes = decode_quick_shapes;
            quick_suite.n_shapes = COUNT(decode_quick_shapes);
        } else if (strcmp(name, "serving") == 0) {
            quick_suite.shapes = serving_quick_shapes;
        }
        return &quick_suite;
    }
    return NULL;
}

const char *pa_bench_suite_names(void) { return "article|fa2|decode|serving|custom"; }

int pa_bench_parse_shapes(const char *text, polyattn_mask mask, pa_bench_shape *out, int max,
                          char *err, size_t err_size)
{
    int n = 0;
    const char *p = text;
    while (*p) {
        while (*p == ';' || *p == ' ')
            p++;
        if (!*p) break;
        int64_t v[7];
        int k = 0;
        for (;;) {
            char *end;
            long long x = strtoll(p, &end, 10);
            if (end == p || x < 1 || x > INT32_MAX || k >= 7) {
                snprintf(err, err_size,
                         "expected B,HQ,HKV,SQ,SKV,D[,DV] positive integers near '%.20s'", p);
                return -1;
            }
            v[k++] = x;
            p = end;
            if (*p != ',') break;
            p++;
        }
        if (k < 6 || (*p && *p != ';' && *p != ' ')) {
            snprintf(err, err_size, "expected B,HQ,HKV,SQ,SKV,D[,DV], got %d numbers%s", k,
                     *p && *p != ';' && *p != ' ' ? " and junk" : "");
            return -1;
        }
        if (n >= max) {
            snprintf(err, err_size, "more than %d shapes", max);
            return -1;
        }
        pa_bench_shape s = {v[0], v[1],           v[2], v[3], v[4], v[5], k == 7 ? v[6] : v[5],
                            mask, PA_BENCH_DENSE, 0,    0};
        out[n++] = s;
    }
    if (n == 0) {
        snprintf(err, err_size, "no shape given");
        return -1;
    }
    return n;
}
