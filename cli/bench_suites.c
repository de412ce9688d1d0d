/* The bench suites' shapes. */
#include "bench.h"

#include <stdlib.h>
#include <string.h>

#define CAUSAL POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT
#define NONE POLYATTN_MASK_NONE

/* The article's benchmark: (seq, d_model as head_dim, batch), one head, causal, float32. */
static const pa_bench_shape article_shapes[] = {
    {16, 1, 1, 128, 128, 512, 512, CAUSAL},    {8, 1, 1, 512, 512, 768, 768, CAUSAL},
    {4, 1, 1, 1024, 1024, 1024, 1024, CAUSAL}, {2, 1, 1, 2048, 2048, 1024, 1024, CAUSAL},
    {1, 1, 1, 4096, 4096, 1024, 1024, CAUSAL},
};

/* FlashAttention-2's forward benchmark: 16k tokens per batch (batch = 16384 / seq), hidden
 * size 2048 (heads = 2048 / head_dim), head_dim 64 and 128, with and without a causal mask. */
#define FA2(seq, dim, mask)                                                                        \
    {                                                                                              \
        16384 / (seq), 2048 / (dim), 2048 / (dim), seq, seq, dim, dim, mask                        \
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

/* Decoding: a few new queries per sequence (1 token, or 4 and 16 as in speculative or
 * chunked decoding) against a long KV cache, bottom-right causal (the new queries are the
 * last positions), grouped-query attention (32 query heads sharing 8 KV heads, head_dim 128,
 * as in Llama-3-8B-like models).  Batch 1 from 1k to 128k keys; batch 16 and 64 at
 * moderate lengths.  The largest (batch 16, 16k) holds 1 GiB of f16 K and V per input set;
 * unfused's scores at batch 1, 16 x 128k x 32 heads are 256 MiB of f32. */
#define DECODE(batch, q, kv)                                                                       \
    {                                                                                              \
        batch, 32, 8, q, kv, 128, 128, CAUSAL                                                      \
    }
#define DECODE_KV(q)                                                                               \
    DECODE(1, q, 1024), DECODE(1, q, 4096), DECODE(1, q, 16384), DECODE(1, q, 65536),              \
        DECODE(1, q, 131072)
static const pa_bench_shape decode_shapes[] = {
    DECODE_KV(1),         DECODE_KV(4),         DECODE_KV(16),         DECODE(16, 1, 4096),
    DECODE(16, 1, 16384), DECODE(16, 16, 4096), DECODE(16, 16, 16384), DECODE(64, 1, 4096),
};

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))
static const pa_bench_suite suites[] = {
    {"article", "the article's five shapes: one head, head_dim 512-1024, causal, float32",
     article_shapes, COUNT(article_shapes), POLYATTN_DTYPE_F32},
    {"fa2", "FlashAttention-2's forward benchmark: 16k tokens, hidden 2048, d 64/128", fa2_shapes,
     COUNT(fa2_shapes), POLYATTN_DTYPE_F16},
    {"decode", "decoding: seq_q 1/4/16, KV cache 1k-128k, GQA 32/8, d 128, causal", decode_shapes,
     COUNT(decode_shapes), POLYATTN_DTYPE_F16},
    {"custom", "the shapes given with --shape", NULL, 0, POLYATTN_DTYPE_F32},
};

const pa_bench_suite *pa_bench_find_suite(const char *name)
{
    for (int i = 0; i < COUNT(suites); i++)
        if (strcmp(suites[i].name, name) == 0) return &suites[i];
    return NULL;
}

const char *pa_bench_suite_names(void) { return "article|fa2|decode|custom"; }

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
        pa_bench_shape s = {v[0], v[1], v[2], v[3], v[4], v[5], k == 7 ? v[6] : v[5], mask};
        out[n++] = s;
    }
    if (n == 0) {
        snprintf(err, err_size, "no shape given");
        return -1;
    }
    return n;
}
