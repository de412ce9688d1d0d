/* The score variants on the command line: options, .npy inputs, descriptor members and
 * buffers.  Every problem found is one line naming the option, exit status 2. */
#include "variants.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* "A,B": two integers >= min.  Returns 1 when the text has that form. */
static int parse_pair(const char *text, int64_t min, int64_t *a, int64_t *b)
{
    const char *comma = strchr(text, ',');
    if (!comma || strchr(comma + 1, ',')) return 0;
    const char *parts[2] = {text, comma + 1};
    int64_t out[2];
    for (int i = 0; i < 2; i++) {
        const char *p = parts[i];
        if (!((*p >= '0' && *p <= '9') || (*p == '-' && p[1] >= '0' && p[1] <= '9'))) return 0;
        char *end = NULL;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (errno != 0 || (i == 0 ? end != comma : *end != '\0') || v < min) return 0;
        out[i] = v;
    }
    *a = out[0];
    *b = out[1];
    return 1;
}

int pa_cli_get_variant_options(const pa_cli_args *args, pa_cli_variants *v)
{
    const char *w = pa_cli_get(args, "--window");
    if (w) {
        if (!parse_pair(w, -1, &v->window_left, &v->window_right))
            return pa_cli_fail(args->cmd,
                               "--window: expected L,R (keys left and right of the "
                               "diagonal, each >= 0 or -1 for unbounded), got '%s'",
                               w);
        v->has_window = 1;
    }
    if (pa_cli_has(args, "--softcap")) {
        const char *text = pa_cli_get(args, "--softcap");
        if (pa_cli_get_double(args, "--softcap", &v->softcap)) return PA_EXIT_USAGE;
        if (v->softcap < 0 || v->softcap > FLT_MAX)
            return pa_cli_fail(args->cmd,
                               "--softcap: expected a number >= 0 within float range "
                               "(0: off), got '%s'",
                               text);
        if (v->softcap > 0 && (float)v->softcap == 0.0f)
            return pa_cli_fail(args->cmd, "--softcap: '%s' underflows float32", text);
    }
    static const char *const dtypes[] = {"f32", "f16", "bf16"};
    int dt = POLYATTN_DTYPE_F32;
    if (pa_cli_get_choice(args, "--bias-dtype", dtypes, 3, &dt)) return PA_EXIT_USAGE;
    v->bias_dtype = (polyattn_dtype)dt;
    return 0;
}

/* --bias B,H / --mask B,H: extents of batch and heads, each 1 or the problem's. */
static int get_extents(const pa_cli_args *args, const char *name, int64_t batch, int64_t heads_q,
                       int64_t seq_q, int64_t seq_kv, int64_t shape[4])
{
    const char *text = pa_cli_get(args, name);
    int64_t b = 0, h = 0;
    if (!parse_pair(text, 1, &b, &h) || (b != 1 && b != batch) || (h != 1 && h != heads_q))
        return pa_cli_fail(args->cmd,
                           "%s: expected B,H with B 1 or the batch (%lld) and H 1 or "
                           "heads_q (%lld), got '%s'",
                           name, (long long)batch, (long long)heads_q, text);
    shape[0] = b;
    shape[1] = h;
    shape[2] = seq_q;
    shape[3] = seq_kv;
    return 0;
}

int pa_cli_get_variant_shapes(const pa_cli_args *args, int64_t batch, int64_t heads_q,
                              int64_t seq_q, int64_t seq_kv, pa_cli_variants *v)
{
    static const char *const kinds[] = {"per-head", "per-batch-head"};
    int kind = 0;
    if (pa_cli_has(args, "--alibi")) {
        if (pa_cli_get_choice(args, "--alibi", kinds, 2, &kind)) return PA_EXIT_USAGE;
        v->alibi = kind == 0 ? POLYATTN_ALIBI_PER_HEAD : POLYATTN_ALIBI_PER_BATCH_HEAD;
    }
    if (pa_cli_has(args, "--bias")) {
        if (get_extents(args, "--bias", batch, heads_q, seq_q, seq_kv, v->bias_shape))
            return PA_EXIT_USAGE;
        v->has_bias = 1;
    } else if (pa_cli_has(args, "--bias-dtype")) {
        return pa_cli_fail(args->cmd, "--bias-dtype: given without --bias");
    }
    if (pa_cli_has(args, "--mask")) {
        if (get_extents(args, "--mask", batch, heads_q, seq_q, seq_kv, v->mask_shape))
            return PA_EXIT_USAGE;
        v->has_mask = 1;
    }
    v->has_sinks = pa_cli_has(args, "--sinks");
    return 0;
}

static void shape_text(const int64_t *shape, int rank, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < rank && n < size; i++)
        n += (size_t)snprintf(buf + n, size - n, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (n < size) snprintf(buf + n, size - n, "]");
}

/* A score tensor file: rank 2 to 4, padded on the left with 1 to [b|1, h|1, sq, skv]. */
static int check_score_shape(const pa_cli_args *args, const char *name, const char *path,
                             const pa_npy_array *a, int64_t batch, int64_t heads_q, int64_t seq_q,
                             int64_t seq_kv, int64_t out[4])
{
    char got[128];
    shape_text(a->shape, a->rank, got, sizeof got);
    int ok = a->rank >= 2 && a->rank <= 4;
    for (int d = 0; ok && d < 4; d++) {
        int src = d - (4 - a->rank);
        out[d] = src < 0 ? 1 : a->shape[src];
    }
    if (ok)
        ok = (out[0] == 1 || out[0] == batch) && (out[1] == 1 || out[1] == heads_q) &&
             out[2] == seq_q && out[3] == seq_kv;
    if (!ok)
        return pa_cli_fail(args->cmd,
                           "%s: shape %s does not broadcast to [batch, heads_q, seq_q, seq_kv] "
                           "= [%lld, %lld, %lld, %lld] (batch and heads may be 1; rank 2 to 4) "
                           "(%s)",
                           name, got, (long long)batch, (long long)heads_q, (long long)seq_q,
                           (long long)seq_kv, path);
    return 0;
}

static int read_file(const pa_cli_args *args, const char *name, int u8, pa_npy_array *a)
{
    const char *path = pa_cli_get(args, name);
    char err[512];
    int rc =
        u8 ? pa_npy_read_u8(path, a, err, sizeof err) : pa_npy_read_f32(path, a, err, sizeof err);
    if (rc != 0) return pa_cli_fail(args->cmd, "%s: %s (%s)", name, err, path);
    return 0;
}

int pa_cli_load_variants(const pa_cli_args *args, int64_t batch, int64_t heads_q, int64_t seq_q,
                         int64_t seq_kv, pa_cli_variants *v)
{
    char got[128];
    if (pa_cli_has(args, "--alibi")) {
        const char *path = pa_cli_get(args, "--alibi");
        if (read_file(args, "--alibi", 0, &v->slopes)) return PA_EXIT_USAGE;
        shape_text(v->slopes.shape, v->slopes.rank, got, sizeof got);
        if (v->slopes.rank == 1 && v->slopes.shape[0] == heads_q)
            v->alibi = POLYATTN_ALIBI_PER_HEAD;
        else if (v->slopes.rank == 2 && v->slopes.shape[0] == batch &&
                 v->slopes.shape[1] == heads_q)
            v->alibi = POLYATTN_ALIBI_PER_BATCH_HEAD;
        else
            return pa_cli_fail(args->cmd,
                               "--alibi: slopes of shape %s, expected [heads_q] = "
                               "[%lld] or [batch, heads_q] = [%lld, %lld] (%s)",
                               got, (long long)heads_q, (long long)batch, (long long)heads_q, path);
    }
    if (pa_cli_has(args, "--bias")) {
        if (read_file(args, "--bias", 0, &v->bias) ||
            check_score_shape(args, "--bias", pa_cli_get(args, "--bias"), &v->bias, batch, heads_q,
                              seq_q, seq_kv, v->bias_shape))
            return PA_EXIT_USAGE;
        v->has_bias = 1;
    } else if (pa_cli_has(args, "--bias-dtype")) {
        return pa_cli_fail(args->cmd, "--bias-dtype: given without --bias");
    }
    if (pa_cli_has(args, "--mask")) {
        if (read_file(args, "--mask", 1, &v->mask) ||
            check_score_shape(args, "--mask", pa_cli_get(args, "--mask"), &v->mask, batch, heads_q,
                              seq_q, seq_kv, v->mask_shape))
            return PA_EXIT_USAGE;
        v->has_mask = 1;
    }
    if (pa_cli_has(args, "--sinks")) {
        const char *path = pa_cli_get(args, "--sinks");
        if (read_file(args, "--sinks", 0, &v->sinks)) return PA_EXIT_USAGE;
        shape_text(v->sinks.shape, v->sinks.rank, got, sizeof got);
        if (v->sinks.rank != 1 || v->sinks.shape[0] != heads_q)
            return pa_cli_fail(args->cmd, "--sinks: shape %s, expected [heads_q] = [%lld] (%s)",
                               got, (long long)heads_q, path);
        v->has_sinks = 1;
    }
    return 0;
}

static void contiguous(polyattn_tensor_desc *t, polyattn_dtype dtype, const int64_t shape[4])
{
    t->dtype = dtype;
    int64_t step = 1;
    for (int d = 3; d >= 0; d--) {
        t->shape[d] = shape[d];
        t->strides[d] = step;
        step *= shape[d];
    }
}

void pa_cli_variants_apply(const pa_cli_variants *v, polyattn_attention_desc *desc)
{
    desc->has_window = v->has_window;
    desc->window_left = v->has_window ? v->window_left : -1;
    desc->window_right = v->has_window ? v->window_right : -1;
    desc->softcap = (float)v->softcap;
    desc->alibi = v->alibi;
    desc->has_bias = v->has_bias;
    if (v->has_bias) contiguous(&desc->bias, v->bias_dtype, v->bias_shape);
    desc->has_attn_mask = v->has_mask;
    if (v->has_mask) contiguous(&desc->attn_mask, POLYATTN_DTYPE_U8, v->mask_shape);
    desc->has_sinks = v->has_sinks;
}

static polyattn_status upload(polyattn_context *ctx, const void *src, uint64_t bytes,
                              polyattn_buffer **buf)
{
    polyattn_status st = polyattn_buffer_alloc(ctx, bytes ? bytes : 1, buf);
    if (st != POLYATTN_STATUS_SUCCESS) {
        *buf = NULL;
        return st;
    }
    return polyattn_buffer_write(*buf, 0, src, bytes);
}

polyattn_status pa_cli_variants_upload(polyattn_context *ctx, pa_cli_variants *v,
                                       polyattn_extra_tensors *extra, const char **what)
{
    memset(extra, 0, sizeof *extra);
    extra->struct_size = sizeof *extra;
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    if (v->slopes.data) {
        *what = "--alibi";
        if ((st = upload(ctx, v->slopes.data, v->slopes.count * 4, &v->buf_slopes))) return st;
        extra->alibi_slopes = v->buf_slopes;
    }
    if (v->bias.data) {
        *what = "--bias";
        size_t esize = polyattn_dtype_size(v->bias_dtype);
        void *staged = malloc(v->bias.count * esize + 1);
        if (!staged) return POLYATTN_STATUS_OUT_OF_MEMORY;
        pa_cli_from_f32(v->bias_dtype, v->bias.data, staged, v->bias.count);
        st = upload(ctx, staged, v->bias.count * esize, &v->buf_bias);
        free(staged);
        if (st) return st;
        extra->bias = v->buf_bias;
    }
    if (v->mask.bytes) {
        *what = "--mask";
        if ((st = upload(ctx, v->mask.bytes, v->mask.count, &v->buf_mask))) return st;
        extra->attn_mask = v->buf_mask;
    }
    if (v->sinks.data) {
        *what = "--sinks";
        if ((st = upload(ctx, v->sinks.data, v->sinks.count * 4, &v->buf_sinks))) return st;
        extra->sinks = v->buf_sinks;
    }
    return st;
}

int pa_cli_variants_any(const pa_cli_variants *v)
{
    return v->has_window || v->softcap > 0 || v->alibi != POLYATTN_ALIBI_NONE || v->has_bias ||
           v->has_mask || v->has_sinks;
}

void pa_cli_variants_free(pa_cli_variants *v)
{
    pa_npy_free(&v->slopes);
    pa_npy_free(&v->bias);
    pa_npy_free(&v->mask);
    pa_npy_free(&v->sinks);
    polyattn_buffer_free(v->buf_slopes);
    polyattn_buffer_free(v->buf_bias);
    polyattn_buffer_free(v->buf_mask);
    polyattn_buffer_free(v->buf_sinks);
    v->buf_slopes = v->buf_bias = v->buf_mask = v->buf_sinks = NULL;
}

static const char *alibi_name(polyattn_alibi a)
{
    return a == POLYATTN_ALIBI_PER_HEAD ? "per-head" : "per-batch-head";
}

void pa_cli_variants_describe(const pa_cli_variants *v, char *buf, size_t size)
{
    size_t n = 0;
    buf[0] = '\0';
#define PA_ADD(...)                                                                                \
    do {                                                                                           \
        if (n < size) n += (size_t)snprintf(buf + n, size - n, "%s", n ? ", " : "");               \
        if (n < size) n += (size_t)snprintf(buf + n, size - n, __VA_ARGS__);                       \
    } while (0)
    char shape[128];
    if (v->has_window)
        PA_ADD("window (%lld, %lld)", (long long)v->window_left, (long long)v->window_right);
    if (v->softcap > 0) PA_ADD("softcap %g", (double)(float)v->softcap);
    if (v->alibi != POLYATTN_ALIBI_NONE) PA_ADD("alibi %s", alibi_name(v->alibi));
    if (v->has_bias) {
        shape_text(v->bias_shape, 4, shape, sizeof shape);
        PA_ADD("bias %s %s", polyattn_dtype_name(v->bias_dtype), shape);
    }
    if (v->has_mask) {
        shape_text(v->mask_shape, 4, shape, sizeof shape);
        PA_ADD("attn_mask %s", shape);
    }
    if (v->has_sinks) PA_ADD("sinks");
#undef PA_ADD
    if (n == 0) snprintf(buf, size, "none");
}

static void json_shape(FILE *out, const int64_t *shape)
{
    fprintf(out, "[%lld, %lld, %lld, %lld]", (long long)shape[0], (long long)shape[1],
            (long long)shape[2], (long long)shape[3]);
}

void pa_cli_variants_json(FILE *out, const pa_cli_variants *v)
{
    fprintf(out, ", \"variants\": {\"window\": ");
    if (v->has_window)
        fprintf(out, "[%lld, %lld]", (long long)v->window_left, (long long)v->window_right);
    else fprintf(out, "null");
    fprintf(out, ", \"softcap\": ");
    pa_json_number(out, (double)(float)v->softcap);
    fprintf(out, ", \"alibi\": ");
    if (v->alibi != POLYATTN_ALIBI_NONE) fprintf(out, "\"%s\"", alibi_name(v->alibi));
    else fprintf(out, "null");
    fprintf(out, ", \"bias\": ");
    if (v->has_bias) {
        fprintf(out, "{\"dtype\": \"%s\", \"shape\": ", polyattn_dtype_name(v->bias_dtype));
        json_shape(out, v->bias_shape);
        fprintf(out, "}");
    } else {
        fprintf(out, "null");
    }
    fprintf(out, ", \"attn_mask\": ");
    if (v->has_mask) {
        fprintf(out, "{\"shape\": ");
        json_shape(out, v->mask_shape);
        fprintf(out, "}");
    } else {
        fprintf(out, "null");
    }
    fprintf(out, ", \"sinks\": %s}", v->has_sinks ? "true" : "false");
}
