/*
 * Autotune: time the eligible algorithms of a problem once and remember the fastest per
 * (backend, device, dtype, mask, head dims, power-of-two buckets of batch*heads_q, seq_q
 * and seq_kv), in memory and optionally in a text file shared across processes.
 */
#include "pa_core.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PA_AUTOTUNE_MAX_ENTRIES 4096

typedef struct tune_entry {
    char key[320];
    polyattn_algo winner;
} tune_entry;

static tune_entry entries[PA_AUTOTUNE_MAX_ENTRIES];
static int n_entries;
static char loaded_file[1024]; /* the cache file already read, "" if none */
static pthread_mutex_t tune_lock = PTHREAD_MUTEX_INITIALIZER;

static int64_t pow2_bucket(int64_t n)
{
    int64_t b = 1;
    while (b < n && b < ((int64_t)1 << 40))
        b <<= 1;
    return b;
}

static void make_key(polyattn_context *ctx, const pa_problem *p, char *key, size_t n)
{
    polyattn_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    ctx->ops->device_info(ctx->dev->index, &info);
    for (char *c = info.name; *c; c++)
        if (*c == ' ' || *c == '\t') *c = '_'; /* keys are whitespace-free words */
    snprintf(key, n, "%s|%.200s|%s|%s|d%lld|dv%lld|bh%lld|sq%lld|skv%lld|lse%d|p%d", ctx->ops->name,
             info.name, polyattn_dtype_name(p->dtype), polyattn_mask_name(p->mask),
             (long long)p->head_dim, (long long)p->head_dim_v,
             (long long)pow2_bucket(p->batch * p->heads_q), (long long)pow2_bucket(p->seq_q),
             (long long)pow2_bucket(p->seq_kv), p->want_lse, p->want_probs);
}

static int lookup(const char *key, polyattn_algo *winner)
{
    for (int i = n_entries - 1; i >= 0; i--)
        if (strcmp(entries[i].key, key) == 0) {
            *winner = entries[i].winner;
            return 1;
        }
    return 0;
}

static void remember(const char *key, polyattn_algo winner)
{
    if (n_entries == PA_AUTOTUNE_MAX_ENTRIES) n_entries = 0; /* crude, bounded */
    snprintf(entries[n_entries].key, sizeof entries[n_entries].key, "%s", key);
    entries[n_entries].winner = winner;
    n_entries++;
}

/* Lines "key algo"; anything else is ignored, so a damaged file costs a re-measure. */
static void load_file(const char *path)
{
    if (!path || strcmp(loaded_file, path) == 0) return;
    snprintf(loaded_file, sizeof loaded_file, "%s", path);
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[512], key[320], algo[32];
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "%319s %31s", key, algo) == 2)
            for (int a = POLYATTN_ALGO_UNFUSED; a <= POLYATTN_ALGO_FLASH; a++)
                if (strcmp(algo, polyattn_algo_name((polyattn_algo)a)) == 0)
                    remember(key, (polyattn_algo)a);
    fclose(f);
}

static void append_file(const char *path, const char *key, polyattn_algo winner)
{
    if (!path) return;
    FILE *f = fopen(path, "a"); /* one short line per write: appends do not interleave */
    if (!f) {
        pa_log(POLYATTN_LOG_DISPATCH, "autotune: cannot append to %s", path);
        return;
    }
    fprintf(f, "%s %s\n", key, polyattn_algo_name(winner));
    fclose(f);
}

/* ---- measuring ---- */

typedef struct tune_buffers {
    void *mem[7]; /* q, k, v, o, lse, probs, workspace */
} tune_buffers;

static void free_buffers(polyattn_context *ctx, tune_buffers *b)
{
    for (int i = 0; i < 7; i++)
        if (b->mem[i]) ctx->ops->mem_free(ctx->dev, b->mem[i]);
}

/* Uniform random values in [-1, 1) in the problem's dtype (never zeros: zeros can run
 * faster than real data). */
static polyattn_status fill_random(polyattn_context *ctx, void *mem, uint64_t bytes,
                                   polyattn_dtype dtype, uint64_t seed)
{
    unsigned char *host = malloc(bytes);
    if (!host) return pa_context_fail(ctx, POLYATTN_STATUS_OUT_OF_MEMORY, "autotune: host memory");
    size_t es = polyattn_dtype_size(dtype);
    for (uint64_t i = 0; i + es <= bytes; i += es) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        float x = (float)((double)(seed >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0);
        if (dtype == POLYATTN_DTYPE_F32) memcpy(host + i, &x, 4);
        else if (dtype == POLYATTN_DTYPE_E4M3) host[i] = pa_f32_to_e4m3(x);
        else {
            uint16_t h = dtype == POLYATTN_DTYPE_F16 ? pa_f32_to_f16(x) : pa_f32_to_bf16(x);
            memcpy(host + i, &h, 2);
        }
    }
    polyattn_status st = ctx->ops->mem_write(ctx->dev, mem, 0, host, bytes);
    free(host);
    return st;
}

static uint64_t span_bytes(const pa_problem *p, polyattn_dtype dtype, const int64_t stride[4],
                           int64_t heads, int64_t seq, int64_t dim)
{
    int64_t shape[4] = {p->batch, heads, seq, dim}, span = 1;
    for (int d = 0; d < 4; d++)
        span += (shape[d] - 1) * stride[d];
    return (uint64_t)span * polyattn_dtype_size(dtype);
}

static polyattn_status time_algo(polyattn_context *ctx, const pa_problem *p,
                                 const pa_algo_ops *algo, pa_io *io, double *ms)
{
    void *state = NULL, *ev[4] = {0};
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    if (algo->prepare && (st = algo->prepare(ctx->dev, p, &state))) return st;
    double times[3];
    for (int e = 0; e < 2 && !st; e++)
        st = ctx->ops->event_create(ctx->dev, &ev[e]);
    if (!st) st = algo->forward(ctx->dev, p, state, io); /* warm-up: builds, caches, clocks */
    for (int r = 0; r < 3 && !st; r++) {
        st = ctx->ops->event_record(ctx->dev, ev[0]);
        if (!st) st = algo->forward(ctx->dev, p, state, io);
        if (!st) st = ctx->ops->event_record(ctx->dev, ev[1]);
        if (!st) st = ctx->ops->event_elapsed_ms(ctx->dev, ev[0], ev[1], &times[r]);
    }
    for (int e = 0; e < 2; e++)
        if (ev[e]) ctx->ops->event_destroy(ctx->dev, ev[e]);
    if (algo->release) algo->release(ctx->dev, state);
    if (st) return st;
    /* median of three */
    double a = times[0], b = times[1], c = times[2];
    *ms = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status measure(polyattn_context *ctx, const pa_problem *p,
                               const polyattn_candidate cands[3], const pa_algo_ops *algos[3],
                               double ms[3], polyattn_algo *winner)
{
    uint64_t rows = pa_size_mul4(p->batch, p->heads_q, p->seq_q, 1);
    uint64_t ws = 0;
    for (int i = 0; i < 3; i++)
        if (algos[i] && cands[i].workspace_bytes > ws) ws = cands[i].workspace_bytes;
    uint64_t bytes[7] = {
        span_bytes(p, p->dtype, p->q_stride, p->heads_q, p->seq_q, p->head_dim),
        span_bytes(p, p->dtype, p->k_stride, p->heads_kv, p->seq_kv, p->head_dim),
        span_bytes(p, p->dtype, p->v_stride, p->heads_kv, p->seq_kv, p->head_dim_v),
        span_bytes(p, p->o_dtype, p->o_stride, p->heads_q, p->seq_q, p->head_dim_v),
        p->want_lse ? pa_size_mul(rows, 4) : 0,
        p->want_probs ? pa_size_mul(pa_size_mul(rows, (uint64_t)p->seq_kv), 4) : 0,
        ws};
    tune_buffers b;
    memset(&b, 0, sizeof b);
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    for (int i = 0; i < 7 && !st; i++)
        if (bytes[i]) st = ctx->ops->mem_alloc(ctx->dev, bytes[i], &b.mem[i]);
    for (int i = 0; i < 3 && !st; i++)
        st = fill_random(ctx, b.mem[i], bytes[i], p->dtype, 17u + i);
    pa_io io;
    memset(&io, 0, sizeof io);
    pa_tensor_ref *refs[7] = {&io.q, &io.k, &io.v, &io.o, &io.lse, &io.probs, &io.workspace};
    for (int i = 0; i < 7; i++)
        refs[i]->mem = b.mem[i];
    io.workspace_bytes = ws;
    double best = 0.0;
    *winner = POLYATTN_ALGO_AUTO;
    for (int i = 0; i < 3 && !st; i++) {
        ms[i] = -1.0;
        if (!algos[i]) continue;
        polyattn_status ast = time_algo(ctx, p, algos[i], &io, &ms[i]);
        if (ast) {
            pa_log(POLYATTN_LOG_DISPATCH, "autotune: %s failed: %s",
                   polyattn_algo_name(cands[i].algo), ctx->dev->last_error);
            ms[i] = -1.0;
            continue;
        }
        if (*winner == POLYATTN_ALGO_AUTO || ms[i] < best) best = ms[i], *winner = cands[i].algo;
    }
    if (!st) st = ctx->ops->synchronize(ctx->dev);
    free_buffers(ctx, &b);
    if (!st && *winner == POLYATTN_ALGO_AUTO) st = POLYATTN_STATUS_UNSUPPORTED;
    return st;
}

polyattn_status pa_autotune(polyattn_context *ctx, const pa_problem *p,
                            const polyattn_candidate cands[3], const pa_algo_ops *algos[3],
                            const char *cache_file, polyattn_algo *winner, char *why, size_t n)
{
    char key[320];
    make_key(ctx, p, key, sizeof key);
    pthread_mutex_lock(&tune_lock);
    load_file(cache_file);
    int hit = lookup(key, winner);
    pthread_mutex_unlock(&tune_lock);
    int eligible = 0;
    for (int i = 0; i < 3; i++)
        eligible += algos[i] != NULL;
    if (hit) {
        for (int i = 0; i < 3; i++)
            if (cands[i].algo == *winner && algos[i]) {
                snprintf(why, n, "autotune: %s was the fastest in this shape bucket (cached)",
                         polyattn_algo_name(*winner));
                return POLYATTN_STATUS_SUCCESS;
            }
        /* The cached winner is not eligible now (budget, options): measure afresh. */
    }
    if (eligible < 2) {
        snprintf(why, n, "autotune: nothing to compare (%d eligible algorithm)", eligible);
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    double ms[3];
    polyattn_status st = measure(ctx, p, cands, algos, ms, winner);
    if (st) {
        snprintf(why, n, "autotune could not measure (%s): %.160s", polyattn_status_name(st),
                 ctx->dev->last_error);
        return st;
    }
    int len = snprintf(why, n, "autotune measured");
    for (int i = 0; i < 3; i++)
        if (algos[i] && len > 0 && (size_t)len < n)
            len += snprintf(why + len, n - (size_t)len, " %s %.3g ms%s",
                            polyattn_algo_name(cands[i].algo), ms[i], ms[i] < 0 ? " (failed)" : "");
    pthread_mutex_lock(&tune_lock);
    remember(key, *winner);
    append_file(cache_file, key, *winner);
    pthread_mutex_unlock(&tune_lock);
    return POLYATTN_STATUS_SUCCESS;
}
