/* The serving layouts on the command line: options, int32 .npy inputs checked on the host
 * (each error names its option, exit status 2), descriptor members and buffers. */
#include "serving.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

const char *const pa_cli_serving_inputs[] = {"--cu-seqlens-q", "--cu-seqlens-kv", "--cache-seqlens",
                                             "--block-table",  "--k-new",         "--v-new"};
const int pa_cli_serving_n_inputs = 6;

const char *pa_cli_kv_layout_name(polyattn_kv_layout layout)
{
    switch (layout) {
    case POLYATTN_KV_VARLEN: return "varlen";
    case POLYATTN_KV_CACHE: return "cache";
    case POLYATTN_KV_PAGED: return "paged";
    default: return "dense";
    }
}

/* "--a: needs --b" when a is given without b. */
static int needs(const pa_cli_args *args, const char *a, const char *b, const char *why)
{
    if (pa_cli_has(args, a) && !pa_cli_has(args, b))
        return pa_cli_fail(args->cmd, "%s: needs %s%s", a, b, why);
    return 0;
}

int pa_cli_get_serving_options(const pa_cli_args *args, pa_cli_serving *s)
{
    if (needs(args, "--block-table", "--cache-seqlens",
              " (the keys each sequence uses in its blocks)") ||
        needs(args, "--k-new", "--v-new", " (the rows appended go in pairs)") ||
        needs(args, "--v-new", "--k-new", " (the rows appended go in pairs)") ||
        needs(args, "--k-new", "--cache-seqlens", " (rows are appended after each sequence's)") ||
        needs(args, "--out-k", "--k-new", " (the cache changes only when rows are appended)") ||
        needs(args, "--out-v", "--k-new", " (the cache changes only when rows are appended)") ||
        needs(args, "--max-seqlen-q", "--cu-seqlens-q", " (dense queries all have seq_q rows)"))
        return PA_EXIT_USAGE;
    if (pa_cli_has(args, "--cu-seqlens-kv") && pa_cli_has(args, "--cache-seqlens"))
        return pa_cli_fail(args->cmd, "--cu-seqlens-kv: not with --cache-seqlens (packed keys or "
                                      "a cache, not both)");
    if (pa_cli_has(args, "--max-seqlen-kv") && !pa_cli_has(args, "--cu-seqlens-kv") &&
        !pa_cli_has(args, "--cache-seqlens"))
        return pa_cli_fail(args->cmd, "--max-seqlen-kv: needs --cu-seqlens-kv or --cache-seqlens "
                                      "(dense keys all have seq_kv rows)");
    if (pa_cli_get_i64(args, "--max-seqlen-q", 0, INT32_MAX, &s->max_seqlen_q) ||
        pa_cli_get_i64(args, "--max-seqlen-kv", 0, INT32_MAX, &s->max_seqlen_kv) ||
        pa_cli_get_i64(args, "--num-splits", 0, 1024, &s->num_splits))
        return PA_EXIT_USAGE;
    s->check_inputs = pa_cli_has(args, "--check-inputs");
    s->varlen_q = pa_cli_has(args, "--cu-seqlens-q");
    s->kv_layout = pa_cli_has(args, "--cu-seqlens-kv")   ? POLYATTN_KV_VARLEN
                   : pa_cli_has(args, "--block-table")   ? POLYATTN_KV_PAGED
                   : pa_cli_has(args, "--cache-seqlens") ? POLYATTN_KV_CACHE
                                                         : POLYATTN_KV_DENSE;
    s->append = pa_cli_has(args, "--k-new");
    s->on = s->varlen_q || s->kv_layout != POLYATTN_KV_DENSE;
    return 0;
}

static int read_ints(const pa_cli_args *args, const char *name, int rank, pa_npy_array *a)
{
    const char *path = pa_cli_get(args, name);
    char err[512];
    if (pa_npy_read_i32(path, a, err, sizeof err) != 0)
        return pa_cli_fail(args->cmd, "%s: %s (%s)", name, err, path);
    if (a->rank != rank)
        return pa_cli_fail(args->cmd, "%s: expected an int32 array of rank %d, got rank %d (%s)",
                           name, rank, a->rank, path);
    return 0;
}

/* Offsets: n + 1 entries, from >= 0, non-decreasing, at most rows; lengths within max. */
static int check_offsets(const pa_cli_args *args, const char *name, const pa_npy_array *a,
                         int64_t n, int64_t rows, const char *rows_what, int64_t max_len,
                         const char *max_opt)
{
    const char *path = pa_cli_get(args, name);
    if (a->shape[0] != n + 1)
        return pa_cli_fail(args->cmd, "%s: %lld entries, expected num_seqs + 1 = %lld (%s)", name,
                           (long long)a->shape[0], (long long)(n + 1), path);
    const int32_t *c = a->ints;
    if (c[0] < 0)
        return pa_cli_fail(args->cmd, "%s: entry 0 is %d, negative (%s)", name, c[0], path);
    for (int64_t b = 0; b < n; b++) {
        if (c[b + 1] < c[b])
            return pa_cli_fail(args->cmd,
                               "%s: entry %lld is %d, below entry %lld (%d): offsets must be "
                               "non-decreasing (%s)",
                               name, (long long)(b + 1), c[b + 1], (long long)b, c[b], path);
        if (max_len > 0 && c[b + 1] - c[b] > max_len)
            return pa_cli_fail(args->cmd, "%s: sequence %lld has %d rows, beyond %s %lld (%s)",
                               name, (long long)b, c[b + 1] - c[b], max_opt, (long long)max_len,
                               path);
    }
    if (c[n] > rows)
        return pa_cli_fail(args->cmd, "%s: last entry is %d, past the %lld rows of %s (%s)", name,
                           c[n], (long long)rows, rows_what, path);
    return 0;
}

static int check_cache(const pa_cli_args *args, const int64_t *k, pa_cli_serving *s)
{
    const char *used_path = pa_cli_get(args, "--cache-seqlens");
    if (s->seqused.shape[0] != s->num_seqs)
        return pa_cli_fail(args->cmd,
                           "--cache-seqlens: %lld entries, expected num_seqs = %lld (%s)",
                           (long long)s->seqused.shape[0], (long long)s->num_seqs, used_path);
    int64_t capacity = k[2];
    if (s->kv_layout == POLYATTN_KV_PAGED) {
        const char *path = pa_cli_get(args, "--block-table");
        s->block_size = k[2];
        s->max_blocks = s->table.shape[1];
        if (s->block_size % 16 != 0)
            return pa_cli_fail(
                args->cmd,
                "--k: block size (shape[2] of the paged cache [num_blocks, "
                "heads_kv, block_size, head_dim]) is %lld, not a multiple of 16 (%s)",
                (long long)s->block_size, pa_cli_get(args, "--k"));
        if (s->table.shape[0] != s->num_seqs || s->max_blocks < 1)
            return pa_cli_fail(args->cmd,
                               "--block-table: shape [%lld, %lld], expected [num_seqs, "
                               "max_blocks_per_seq] = [%lld, >= 1] (%s)",
                               (long long)s->table.shape[0], (long long)s->table.shape[1],
                               (long long)s->num_seqs, path);
        capacity = s->max_blocks * s->block_size;
    } else if (k[0] != s->num_seqs) {
        return pa_cli_fail(args->cmd,
                           "--k: the cache has %lld sequences (shape[0]), --cache-seqlens %lld "
                           "(%s)",
                           (long long)k[0], (long long)s->num_seqs, pa_cli_get(args, "--k"));
    }
    for (int64_t b = 0; b < s->num_seqs; b++) {
        int64_t used = s->seqused.ints[b], len = used + s->seq_new;
        if (used < 0)
            return pa_cli_fail(args->cmd, "--cache-seqlens: sequence %lld is %lld, negative (%s)",
                               (long long)b, (long long)used, used_path);
        if (len > capacity)
            return pa_cli_fail(args->cmd,
                               "--cache-seqlens: sequence %lld uses %lld keys%s, beyond the %s's "
                               "%lld (%s)",
                               (long long)b, (long long)used,
                               s->seq_new ? " plus the appended ones" : "",
                               s->kv_layout == POLYATTN_KV_PAGED ? "block table" : "cache",
                               (long long)capacity, used_path);
        if (s->max_seqlen_kv > 0 && len > s->max_seqlen_kv)
            return pa_cli_fail(args->cmd,
                               "--cache-seqlens: sequence %lld has %lld keys, beyond "
                               "--max-seqlen-kv %lld (%s)",
                               (long long)b, (long long)len, (long long)s->max_seqlen_kv,
                               used_path);
        if (s->kv_layout != POLYATTN_KV_PAGED) continue;
        for (int64_t n = 0; n * s->block_size < len; n++) {
            int32_t blk = s->table.ints[b * s->max_blocks + n];
            if (blk < 0 || blk >= k[0])
                return pa_cli_fail(args->cmd,
                                   "--block-table: sequence %lld, entry %lld is block %d, outside "
                                   "the cache's %lld blocks (%s)",
                                   (long long)b, (long long)n, blk, (long long)k[0],
                                   pa_cli_get(args, "--block-table"));
        }
    }
    return 0;
}

static int read_new(const pa_cli_args *args, const char *name, polyattn_dtype dtype,
                    pa_npy_array *a)
{
    return pa_cli_read_input(args->cmd, name, pa_cli_get(args, name), dtype, a);
}

int pa_cli_load_serving(const pa_cli_args *args, const int64_t *q, const int64_t *k,
                        const int64_t *v, pa_cli_serving *s)
{
    const char *kp = pa_cli_get(args, "--k");
    s->num_seqs = q[0];
    if (s->varlen_q) {
        if (read_ints(args, "--cu-seqlens-q", 1, &s->cu_q)) return PA_EXIT_USAGE;
        if (q[0] != 1)
            return pa_cli_fail(args->cmd,
                               "--q: packed queries (with --cu-seqlens-q) are [1, heads_q, "
                               "total_q, head_dim], got batch %lld (%s)",
                               (long long)q[0], pa_cli_get(args, "--q"));
        if (s->cu_q.shape[0] < 2)
            return pa_cli_fail(args->cmd,
                               "--cu-seqlens-q: %lld entries, expected num_seqs + 1 >= 2 (%s)",
                               (long long)s->cu_q.shape[0], pa_cli_get(args, "--cu-seqlens-q"));
        s->num_seqs = s->cu_q.shape[0] - 1;
        if (check_offsets(args, "--cu-seqlens-q", &s->cu_q, s->num_seqs, q[2], "--q",
                          s->max_seqlen_q, "--max-seqlen-q"))
            return PA_EXIT_USAGE;
    }
    if (v[0] != k[0] || v[1] != k[1] || v[2] != k[2])
        return pa_cli_fail(args->cmd,
                           "--v: shape [%lld, %lld, %lld, ...] differs from --k's [%lld, %lld, "
                           "%lld, ...] (%s)",
                           (long long)v[0], (long long)v[1], (long long)v[2], (long long)k[0],
                           (long long)k[1], (long long)k[2], pa_cli_get(args, "--v"));
    switch (s->kv_layout) {
    case POLYATTN_KV_VARLEN:
        if (read_ints(args, "--cu-seqlens-kv", 1, &s->cu_kv)) return PA_EXIT_USAGE;
        if (k[0] != 1)
            return pa_cli_fail(args->cmd,
                               "--k: packed keys (with --cu-seqlens-kv) are [1, heads_kv, "
                               "total_kv, head_dim], got batch %lld (%s)",
                               (long long)k[0], kp);
        if (check_offsets(args, "--cu-seqlens-kv", &s->cu_kv, s->num_seqs, k[2], "--k",
                          s->max_seqlen_kv, "--max-seqlen-kv"))
            return PA_EXIT_USAGE;
        break;
    case POLYATTN_KV_CACHE:
    case POLYATTN_KV_PAGED:
        if (read_ints(args, "--cache-seqlens", 1, &s->seqused)) return PA_EXIT_USAGE;
        if (s->kv_layout == POLYATTN_KV_PAGED && read_ints(args, "--block-table", 2, &s->table))
            return PA_EXIT_USAGE;
        if (s->append) {
            if (read_new(args, "--k-new", s->dtype, &s->k_new) ||
                read_new(args, "--v-new", s->dtype, &s->v_new))
                return PA_EXIT_USAGE;
            const int64_t *kn = s->k_new.shape, *vn = s->v_new.shape;
            if (s->k_new.rank != 4 || kn[0] != s->num_seqs || kn[1] != k[1] || kn[2] < 1 ||
                kn[3] != q[3])
                return pa_cli_fail(args->cmd,
                                   "--k-new: expected [num_seqs, heads_kv, seq_new, head_dim] = "
                                   "[%lld, %lld, >= 1, %lld] (%s)",
                                   (long long)s->num_seqs, (long long)k[1], (long long)q[3],
                                   pa_cli_get(args, "--k-new"));
            if (s->v_new.rank != 4 || vn[0] != kn[0] || vn[1] != kn[1] || vn[2] != kn[2] ||
                vn[3] != v[3])
                return pa_cli_fail(args->cmd,
                                   "--v-new: expected [num_seqs, heads_kv, seq_new, head_dim_v] "
                                   "= [%lld, %lld, %lld, %lld] (%s)",
                                   (long long)s->num_seqs, (long long)k[1], (long long)kn[2],
                                   (long long)v[3], pa_cli_get(args, "--v-new"));
            s->seq_new = kn[2];
        }
        if (check_cache(args, k, s)) return PA_EXIT_USAGE;
        break;
    default:
        if (k[0] != s->num_seqs)
            return pa_cli_fail(args->cmd, "--k: batch is %lld but there are %lld sequences (%s)",
                               (long long)k[0], (long long)s->num_seqs, kp);
        break;
    }
    return 0;
}

void pa_cli_serving_apply(const pa_cli_serving *s, polyattn_attention_desc *desc,
                          polyattn_dtype dtype)
{
    if (!s->on) return;
    desc->varlen_q = s->varlen_q;
    desc->num_seqs = s->num_seqs;
    desc->max_seqlen_q = s->max_seqlen_q;
    desc->max_seqlen_kv = s->max_seqlen_kv;
    desc->kv_layout = s->kv_layout;
    desc->max_blocks_per_seq = s->kv_layout == POLYATTN_KV_PAGED ? s->max_blocks : 0;
    desc->has_kv_append = s->append;
    if (s->append) {
        const int64_t *kn = s->k_new.shape, *vn = s->v_new.shape;
        polyattn_tensor_desc_bhsd(&desc->k_new, dtype, kn[0], kn[1], kn[2], kn[3]);
        polyattn_tensor_desc_bhsd(&desc->v_new, dtype, vn[0], vn[1], vn[2], vn[3]);
    }
}

void pa_cli_serving_plan_options(const pa_cli_serving *s, polyattn_plan_options *opts)
{
    opts->num_splits = (int)s->num_splits;
    opts->check_device_inputs = s->check_inputs;
}

static polyattn_status upload(polyattn_context *ctx, const void *src, uint64_t bytes,
                              polyattn_buffer **buf)
{
    polyattn_status st = polyattn_buffer_alloc(ctx, bytes ? bytes : 4, buf);
    if (st != POLYATTN_STATUS_SUCCESS) {
        *buf = NULL;
        return st;
    }
    return bytes ? polyattn_buffer_write(*buf, 0, src, bytes) : st;
}

static polyattn_status upload_converted(polyattn_context *ctx, const pa_npy_array *a,
                                        polyattn_dtype dtype, polyattn_buffer **buf)
{
    size_t esize = polyattn_dtype_size(dtype);
    void *staged = malloc(a->count * esize + 1);
    if (!staged) return POLYATTN_STATUS_OUT_OF_MEMORY;
    pa_cli_from_f32(dtype, a->data, staged, a->count);
    polyattn_status st = upload(ctx, staged, a->count * esize, buf);
    free(staged);
    return st;
}

polyattn_status pa_cli_serving_upload(polyattn_context *ctx, pa_cli_serving *s,
                                      polyattn_dtype dtype, polyattn_extra_tensors *extra,
                                      const char **what)
{
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    struct {
        const char *name;
        const pa_npy_array *a;
        polyattn_buffer **buf;
        const polyattn_buffer **slot;
    } ints[4] = {
        {"--cu-seqlens-q", &s->cu_q, &s->buf_cu_q, &extra->cu_seqlens_q},
        {"--cu-seqlens-kv", &s->cu_kv, &s->buf_cu_kv, &extra->cu_seqlens_kv},
        {"--cache-seqlens", &s->seqused, &s->buf_seqused, &extra->seqused_kv},
        {"--block-table", &s->table, &s->buf_table, &extra->block_table},
    };
    for (int i = 0; i < 4; i++) {
        if (!ints[i].a->ints) continue;
        *what = ints[i].name;
        if ((st = upload(ctx, ints[i].a->ints, ints[i].a->count * 4, ints[i].buf))) return st;
        *ints[i].slot = *ints[i].buf;
    }
    if (s->append) {
        *what = "--k-new";
        if ((st = upload_converted(ctx, &s->k_new, dtype, &s->buf_k_new))) return st;
        *what = "--v-new";
        if ((st = upload_converted(ctx, &s->v_new, dtype, &s->buf_v_new))) return st;
        extra->k_new = s->buf_k_new;
        extra->v_new = s->buf_v_new;
    }
    return st;
}

void pa_cli_serving_free(pa_cli_serving *s)
{
    pa_npy_free(&s->cu_q);
    pa_npy_free(&s->cu_kv);
    pa_npy_free(&s->seqused);
    pa_npy_free(&s->table);
    pa_npy_free(&s->k_new);
    pa_npy_free(&s->v_new);
    polyattn_buffer_free(s->buf_cu_q);
    polyattn_buffer_free(s->buf_cu_kv);
    polyattn_buffer_free(s->buf_seqused);
    polyattn_buffer_free(s->buf_table);
    polyattn_buffer_free(s->buf_k_new);
    polyattn_buffer_free(s->buf_v_new);
    s->buf_cu_q = s->buf_cu_kv = s->buf_seqused = s->buf_table = NULL;
    s->buf_k_new = s->buf_v_new = NULL;
}

void pa_cli_layout_describe(const polyattn_plan_info *info, char *buf, size_t size)
{
    char block[48] = "";
    if (info->kv_layout == POLYATTN_KV_PAGED)
        snprintf(block, sizeof block, " (block size %lld)", (long long)info->kv_block_size);
    snprintf(buf, size, "%s q, kv %s%s, %d split%s", info->varlen_q ? "varlen" : "dense",
             pa_cli_kv_layout_name(info->kv_layout), block, info->num_splits,
             info->num_splits == 1 ? "" : "s");
}

void pa_cli_layout_json(FILE *out, const polyattn_plan_info *info)
{
    fprintf(out,
            ", \"layout\": {\"varlen_q\": %s, \"kv_layout\": \"%s\", \"kv_block_size\": %lld}, "
            "\"num_splits\": %d",
            info->varlen_q ? "true" : "false", pa_cli_kv_layout_name(info->kv_layout),
            (long long)info->kv_block_size, info->num_splits);
}
