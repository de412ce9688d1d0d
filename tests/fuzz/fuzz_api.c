/*
 * API fuzzer: random descriptors and options (fuzz_gen.c) through validate, plan_create,
 * forward and backward.  A case runs its buffers only when the plan reports a small problem,
 * so sizes come from the library itself: a wrapped size shows up as a sanitizer report.
 *
 *   fuzz_api [--backend host|opencl] [--seed S] [--count N] [--random N] [--quiet]
 *
 * Case k is generated from seed k alone: cases S .. S+N-1 run first, then --random N cases
 * from a base seed taken from the clock and printed.  A failure prints its seed; replay it
 * with `fuzz_api --seed K --count 1`.  Exit 1 on any failed invariant, 77 without a device.
 */
#define _POSIX_C_SOURCE 200809L
#include "fuzz_gen.h"
#include "pa_testkit.h"

#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t current_seed;
static long long reports;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void print_seed_fd(int fd)
{
    char buf[96];
    int n = snprintf(buf, sizeof buf,
                     "fuzz_api: while running case seed %llu (replay: --seed %llu --count 1)\n",
                     (unsigned long long)current_seed, (unsigned long long)current_seed);
    if (n > 0) (void)!write(fd, buf, (size_t)n);
}

/* Sanitizers call this hook when they report; name the case that triggered it. */
void __sanitizer_report_error_summary(const char *summary);
void __sanitizer_report_error_summary(const char *summary)
{
    fprintf(stderr, "%s\n", summary);
    print_seed_fd(2);
}

static void on_fatal_signal(int sig)
{
    print_seed_fd(2);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void report(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
static void report(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_api: case seed %llu: ", (unsigned long long)current_seed);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    reports++;
}

static int status_known(polyattn_status st)
{
    return st >= 0 && st <= POLYATTN_STATUS_INTERNAL_ERROR;
}

typedef struct run_limits {
    uint64_t max_bytes; /* run a plan whose device bytes stay below this */
    double max_flops;
} run_limits;

typedef struct stats {
    long long cases, valid, planned, forwards, backwards;
    long long serving, serving_rejected; /* serving forwards run; refused for their data */
} stats;

static polyattn_buffer *alloc_filled(polyattn_context *ctx, uint64_t bytes, polyattn_dtype dtype,
                                     fuzz_src *src, int random_fill)
{
    polyattn_buffer *b = NULL;
    if (polyattn_buffer_alloc(ctx, bytes ? bytes : 4, &b) != POLYATTN_STATUS_SUCCESS) return NULL;
    size_t es = polyattn_dtype_size(dtype), n = (size_t)(bytes / (es ? es : 1));
    float *f = malloc((n ? n : 1) * sizeof *f);
    unsigned char *raw = malloc(bytes ? (size_t)bytes : 4);
    if (!f || !raw) {
        free(f), free(raw), polyattn_buffer_free(b);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        f[i] = random_fill ? (float)((double)fuzz_below(src, 1 << 20) / (1 << 18) - 2.0) : NAN;
    memset(raw, 0xff, bytes ? (size_t)bytes : 4);
    pa_tk_encode(raw, f, n, dtype);
    polyattn_buffer_write(b, 0, raw, bytes);
    free(f), free(raw);
    return b;
}

static int64_t visible_keys(const polyattn_attention_desc *d, int64_t i)
{
    int64_t sq = d->q.shape[2], skv = d->k.shape[2];
    int64_t n = d->mask == POLYATTN_MASK_CAUSAL_TOP_LEFT       ? i + 1
                : d->mask == POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT ? i + 1 + (skv - sq)
                                                               : skv;
    return n < 0 ? 0 : n > skv ? skv : n;
}

/* Whether the caller's struct_size reaches a member (members past it are off). */
#define DESC_HAS(d, member)                                                                        \
    ((d)->struct_size >= offsetof(polyattn_attention_desc, member) + sizeof((d)->member))

/* Bytes a bias or attn_mask spans as the library reads it (stride 0 on extent 1). */
static uint64_t score_bytes(const polyattn_tensor_desc *t, uint64_t elem)
{
    uint64_t span = 1;
    for (int i = 0; i < 4; i++)
        if (t->shape[i] > 1) span += (uint64_t)(t->shape[i] - 1) * (uint64_t)t->strides[i];
    return span * elem;
}

/* The variants' tensors of a planned case, sized from the descriptor as the API documents
 * them; NULL where the descriptor asks for none. */
typedef struct variant_buffers {
    polyattn_buffer *slopes, *bias, *attn_mask, *sinks, *d_bias, *d_sinks;
    int on; /* any variant on (the LSE check then knows too little about masked rows) */
} variant_buffers;

static void variants_alloc(polyattn_context *ctx, const fuzz_case *c, fuzz_src *src,
                           variant_buffers *vb)
{
    const polyattn_attention_desc *d = &c->d.desc;
    const polyattn_plan_options *o = &c->o.options;
    /* Per-batch slopes are per sequence: num_seqs of them with a packed (varlen) q. */
    const uint64_t hq = (uint64_t)d->q.shape[1];
    const uint64_t b =
        (uint64_t)(DESC_HAS(d, varlen_q) && d->varlen_q ? d->num_seqs : d->q.shape[0]);
    memset(vb, 0, sizeof *vb);
    const int alibi = DESC_HAS(d, alibi) ? (int)d->alibi : 0;
    if (alibi)
        vb->slopes = alloc_filled(ctx, (alibi == 2 ? b * hq : hq) * 4, POLYATTN_DTYPE_F32, src, 1);
    if (DESC_HAS(d, has_bias) && d->has_bias) {
        vb->bias = alloc_filled(ctx, score_bytes(&d->bias, polyattn_dtype_size(d->bias.dtype)),
                                d->bias.dtype, src, 1);
        if (c->pass_options && o->want_bias_grad && o->want_backward)
            vb->d_bias = alloc_filled(ctx,
                                      (uint64_t)(d->bias.shape[0] * d->bias.shape[1] *
                                                 d->bias.shape[2] * d->bias.shape[3]) *
                                          4,
                                      POLYATTN_DTYPE_F32, src, 0);
    }
    if (DESC_HAS(d, has_attn_mask) && d->has_attn_mask) {
        const uint64_t n = score_bytes(&d->attn_mask, 1);
        unsigned char *m = malloc(n);
        if (polyattn_buffer_alloc(ctx, n, &vb->attn_mask) == POLYATTN_STATUS_SUCCESS && m) {
            for (uint64_t i = 0; i < n; i++)
                m[i] = fuzz_below(src, 4) ? 1 : 0;
            polyattn_buffer_write(vb->attn_mask, 0, m, n);
        }
        free(m);
    }
    if (DESC_HAS(d, has_sinks) && d->has_sinks) {
        vb->sinks = alloc_filled(ctx, hq * 4, POLYATTN_DTYPE_F32, src, 1);
        vb->d_sinks = alloc_filled(ctx, hq * 4, POLYATTN_DTYPE_F32, src, 0);
    }
    vb->on = (DESC_HAS(d, has_window) && d->has_window) || vb->attn_mask || vb->sinks;
}

static void variants_free(variant_buffers *vb)
{
    polyattn_buffer_free(vb->slopes), polyattn_buffer_free(vb->bias);
    polyattn_buffer_free(vb->attn_mask), polyattn_buffer_free(vb->sinks);
    polyattn_buffer_free(vb->d_bias), polyattn_buffer_free(vb->d_sinks);
}

/* The serving layouts' extra tensors of a case (all NULL for a dense one): the int32 data
 * fuzz_gen drew, appended rows of random values; drop_extra leaves out a needed tensor or
 * adds an unasked one.  *required receives whether the forward must then fail. */
typedef struct serving_bufs {
    polyattn_buffer *b[6];
    polyattn_extra_tensors extra;
} serving_bufs;

static void serving_bufs_make(polyattn_context *ctx, const fuzz_case *c, fuzz_src *src,
                              serving_bufs *sb, int *must_fail)
{
    const polyattn_attention_desc *d = &c->d.desc;
    memset(sb, 0, sizeof *sb);
    sb->extra.struct_size = sizeof sb->extra;
    *must_fail = 0;
    if (!c->serving) return;
    const int64_t batch = d->varlen_q ? d->num_seqs : d->q.shape[0];
    const int paged = d->kv_layout == POLYATTN_KV_PAGED;
    const int cache = paged || d->kv_layout == POLYATTN_KV_CACHE;
    const void *data[6] = {c->cu_q, c->cu_kv, c->seqused, c->table, NULL, NULL};
    const uint64_t bytes[6] = {(uint64_t)(batch + 1) * 4,
                               (uint64_t)(batch + 1) * 4,
                               (uint64_t)batch * 4,
                               paged ? (uint64_t)(batch * d->max_blocks_per_seq) * 4 : 4,
                               d->has_kv_append ? polyattn_tensor_desc_bytes(&d->k_new) : 4,
                               d->has_kv_append ? polyattn_tensor_desc_bytes(&d->v_new) : 4};
    int needed[6] = {
        d->varlen_q,     d->kv_layout == POLYATTN_KV_VARLEN, cache, paged, d->has_kv_append,
        d->has_kv_append};
    for (int i = 0; i < 6; i++) {
        int pass = needed[i];
        if (c->drop_extra == i + 1) pass = !pass, *must_fail = 1;
        if (!pass) continue;
        if (i >= 4) {
            sb->b[i] = alloc_filled(ctx, bytes[i] ? bytes[i] : 4, d->q.dtype, src, 1);
        } else if (polyattn_buffer_alloc(ctx, bytes[i] ? bytes[i] : 4, &sb->b[i]) ==
                   POLYATTN_STATUS_SUCCESS) {
            if (bytes[i] && needed[i]) polyattn_buffer_write(sb->b[i], 0, data[i], bytes[i]);
        }
    }
    sb->extra.cu_seqlens_q = sb->b[0], sb->extra.cu_seqlens_kv = sb->b[1];
    sb->extra.seqused_kv = sb->b[2], sb->extra.block_table = sb->b[3];
    sb->extra.k_new = sb->b[4], sb->extra.v_new = sb->b[5];
}

static void serving_bufs_free(serving_bufs *sb)
{
    for (int i = 0; i < 6; i++)
        polyattn_buffer_free(sb->b[i]);
}

/* Bytes of a buffer, for comparing before and after a failed call. */
static unsigned char *snapshot(const polyattn_buffer *b)
{
    uint64_t n = polyattn_buffer_size(b);
    unsigned char *x = malloc(n ? (size_t)n : 1);
    if (x && n) polyattn_buffer_read(b, 0, x, n);
    return x;
}

static int unchanged(const polyattn_buffer *b, const unsigned char *before)
{
    unsigned char *now = snapshot(b);
    int same = now && before && memcmp(now, before, (size_t)polyattn_buffer_size(b)) == 0;
    free(now);
    return same;
}

/* Runs forward (and backward when planned) on buffers of exactly the sizes the plan and
 * the descriptor report; checks the LSE rows: finite, or -inf exactly on masked rows.
 * Serving layouts: valid device data must succeed, broken data must fail with
 * INVALID_ARGUMENT and leave O, the LSE and the caches as they were (or succeed when no
 * sequence reads the broken value). */
static void run_plan(polyattn_context *ctx, polyattn_plan *plan, const fuzz_case *c,
                     const polyattn_plan_info *info, fuzz_src *src, stats *s)
{
    const polyattn_attention_desc *d = &c->d.desc;
    const polyattn_plan_options *o = &c->o.options;
    polyattn_dtype dt = d->q.dtype;
    uint64_t qb = polyattn_tensor_desc_bytes(&d->q), kb = polyattn_tensor_desc_bytes(&d->k);
    uint64_t vb = polyattn_tensor_desc_bytes(&d->v), ob = polyattn_tensor_desc_bytes(&d->o);
    if (!qb || !kb || !vb || !ob) {
        report("a planned descriptor has a tensor of 0 bytes");
        return;
    }
    int64_t rows = d->q.shape[0] * d->q.shape[1] * d->q.shape[2];
    int want_lse = c->pass_options && (o->want_lse || o->want_backward);
    int want_probs = c->pass_options && o->want_probs;
    polyattn_buffer *q = alloc_filled(ctx, qb, dt, src, 1), *k = alloc_filled(ctx, kb, dt, src, 1);
    polyattn_buffer *v = alloc_filled(ctx, vb, dt, src, 1),
                    *out = alloc_filled(ctx, ob, d->o.dtype, src, 0);
    polyattn_buffer *lse =
        want_lse ? alloc_filled(ctx, (uint64_t)rows * 4, POLYATTN_DTYPE_F32, src, 0) : NULL;
    polyattn_buffer *probs = want_probs
                                 ? alloc_filled(ctx, (uint64_t)rows * (uint64_t)d->k.shape[2] * 4,
                                                POLYATTN_DTYPE_F32, src, 0)
                                 : NULL;
    polyattn_buffer *ws = info->workspace_bytes
                              ? alloc_filled(ctx, info->workspace_bytes, POLYATTN_DTYPE_F32, src, 0)
                              : NULL;
    if (!q || !k || !v || !out || (want_lse && !lse) || (want_probs && !probs) ||
        (info->workspace_bytes && !ws)) {
        report("allocating %llu device bytes failed", (unsigned long long)info->device_bytes);
        goto done;
    }
    variant_buffers var;
    variants_alloc(ctx, c, src, &var);
    serving_bufs sb;
    int must_fail = 0;
    serving_bufs_make(ctx, c, src, &sb, &must_fail);
    polyattn_extra_tensors ex = sb.extra; /* struct_size set; the serving layouts' tensors */
    ex.alibi_slopes = var.slopes, ex.bias = var.bias, ex.attn_mask = var.attn_mask,
    ex.sinks = var.sinks;
    const int any_extra = var.slopes || var.bias || var.attn_mask || var.sinks;
    polyattn_status st;
    /* A bad extra (missing or stray tensor, short struct) is refused by name first. */
    if (any_extra && !c->serving && fuzz_below(src, 4) == 0) {
        polyattn_extra_tensors bad_ex = ex;
        switch (fuzz_below(src, 3)) {
        case 0: bad_ex.struct_size = fuzz_below(src, 2) ? 0 : 8; break;
        case 1: bad_ex.alibi_slopes = bad_ex.alibi_slopes ? NULL : out; break;
        default:
            if (bad_ex.sinks) bad_ex.sinks = NULL;
            else if (bad_ex.bias) bad_ex.bias = NULL;
            else if (bad_ex.attn_mask) bad_ex.attn_mask = NULL;
            else bad_ex.alibi_slopes = NULL;
        }
        st = polyattn_forward_ex(plan, q, k, v, out, lse, probs, ws, &bad_ex);
        const char *e = polyattn_context_last_error(ctx);
        if (st != POLYATTN_STATUS_INVALID_ARGUMENT || !e || !strstr(e, "extra"))
            report("a bad extra gave %s: %s", polyattn_status_name(st), e ? e : "");
    }
    unsigned char *o_before = c->serving ? snapshot(out) : NULL,
                  *k_before = c->serving ? snapshot(k) : NULL;
    unsigned char *v_before = c->serving ? snapshot(v) : NULL;
    unsigned char *lse_before = c->serving && lse ? snapshot(lse) : NULL;
    st = polyattn_forward_ex(plan, q, k, v, out, lse, probs, ws, &ex);
    s->forwards++;
    if (c->serving) {
        const int may_fail = must_fail || c->serving_bad;
        s->serving++;
        s->serving_rejected += st == POLYATTN_STATUS_INVALID_ARGUMENT;
        if (st == POLYATTN_STATUS_INVALID_ARGUMENT) {
            if (!may_fail)
                report("forward of valid serving data: %s", polyattn_context_last_error(ctx));
            if (!unchanged(out, o_before) || !unchanged(k, k_before) || !unchanged(v, v_before) ||
                (lse && !unchanged(lse, lse_before)))
                report("a failed serving forward wrote its outputs or caches");
        } else if (st != POLYATTN_STATUS_SUCCESS || must_fail) {
            report("serving forward: %s (must fail: %d): %s", polyattn_status_name(st), must_fail,
                   polyattn_context_last_error(ctx));
        }
    } else if (st != POLYATTN_STATUS_SUCCESS) {
        report("forward: %s: %s", polyattn_status_name(st), polyattn_context_last_error(ctx));
    }
    free(o_before), free(k_before), free(v_before), free(lse_before);
    if (st != POLYATTN_STATUS_SUCCESS) goto done_extra;
    if (lse && d->scale <= 16.0f && !var.on && !c->serving) {
        float *l = malloc((size_t)rows * sizeof *l);
        if (l && polyattn_buffer_read(lse, 0, l, (uint64_t)rows * 4) == POLYATTN_STATUS_SUCCESS)
            for (int64_t r = 0; r < rows; r++) {
                int masked = visible_keys(d, r % d->q.shape[2]) == 0;
                if (masked ? !(isinf(l[r]) && l[r] < 0) : !isfinite(l[r])) {
                    report("lse[%lld] is %g but the row is %s", (long long)r, (double)l[r],
                           masked ? "fully masked" : "visible");
                    break;
                }
            }
        free(l);
    }
    if (o->want_backward && c->pass_options) {
        polyattn_buffer *d_o = alloc_filled(ctx, ob, d->o.dtype, src, 1);
        polyattn_buffer *dq = alloc_filled(ctx, qb, dt, src, 0),
                        *dk = alloc_filled(ctx, kb, dt, src, 0);
        polyattn_buffer *dv = alloc_filled(ctx, vb, dt, src, 0);
        polyattn_buffer *bws =
            info->backward_workspace_bytes
                ? alloc_filled(ctx, info->backward_workspace_bytes, POLYATTN_DTYPE_F32, src, 0)
                : NULL;
        if (d_o && dq && dk && dv && (bws || !info->backward_workspace_bytes)) {
            ex.d_bias = var.d_bias, ex.d_sinks = var.d_sinks;
            st = polyattn_backward_ex(plan, q, k, v, out, d_o, lse, dq, dk, dv, bws, &ex);
            s->backwards++;
            /* Broadcast K or V (stride 0) makes dK or dV overlap itself: refused, not run. */
            if (st != POLYATTN_STATUS_SUCCESS && st != POLYATTN_STATUS_INVALID_ARGUMENT)
                report("backward: %s: %s", polyattn_status_name(st),
                       polyattn_context_last_error(ctx));
        } else {
            report("allocating the backward's buffers failed");
        }
        polyattn_buffer_free(d_o), polyattn_buffer_free(dq), polyattn_buffer_free(dk);
        polyattn_buffer_free(dv), polyattn_buffer_free(bws);
    }
done_extra:
    variants_free(&var);
    serving_bufs_free(&sb);
done:
    polyattn_buffer_free(q), polyattn_buffer_free(k), polyattn_buffer_free(v);
    polyattn_buffer_free(out), polyattn_buffer_free(lse), polyattn_buffer_free(probs);
    polyattn_buffer_free(ws);
}

static void run_case(polyattn_context *ctx, fuzz_src *srcp, fuzz_profile profile,
                     const run_limits *lim, stats *s)
{
    fuzz_src src = *srcp;
    fuzz_case c;
    fuzz_gen_case(&src, profile, &c);
    s->cases++;
    const polyattn_attention_desc *d = &c.d.desc;
    const char *msg = NULL;
    polyattn_status vst = polyattn_attention_desc_validate(d, &msg);
    if (!status_known(vst) ||
        (vst != POLYATTN_STATUS_SUCCESS && vst != POLYATTN_STATUS_INVALID_ARGUMENT))
        report("validate returned %d", (int)vst);
    if (vst != POLYATTN_STATUS_SUCCESS && (!msg || !msg[0]))
        report("validate failed without a message");
    if (vst == POLYATTN_STATUS_SUCCESS) {
        s->valid++;
        const polyattn_tensor_desc *t[4] = {&d->q, &d->k, &d->v, &d->o};
        for (int i = 0; i < 4; i++)
            if (polyattn_tensor_desc_bytes(t[i]) == 0) report("valid tensor %d has 0 bytes", i);
    }
    const polyattn_plan_options *o = &c.o.options;
    int options_ok = !c.pass_options || (o->struct_size >= FUZZ_OPTIONS_V1_SIZE &&
                                         (int)o->algo >= 0 && (int)o->algo < POLYATTN_ALGO_COUNT);
    polyattn_plan *plan = NULL;
    polyattn_status pst = polyattn_plan_create(ctx, d, c.pass_options ? o : NULL, &plan);
    const char *err = polyattn_context_last_error(ctx);
    if (!status_known(pst)) report("plan_create returned %d", (int)pst);
    if ((pst == POLYATTN_STATUS_SUCCESS) != (plan != NULL))
        report("plan_create: status and plan disagree");
    if (pst != POLYATTN_STATUS_SUCCESS && (!err || !err[0]))
        report("plan_create failed without an error");
    if (pst == POLYATTN_STATUS_SUCCESS && err && err[0])
        report("plan_create succeeded but left: %s", err);
    if (!options_ok && pst != POLYATTN_STATUS_INVALID_ARGUMENT) report("bad options accepted");
    if (options_ok && vst != POLYATTN_STATUS_SUCCESS && pst != POLYATTN_STATUS_INVALID_ARGUMENT)
        report("validate refused (%s) but plan_create returned %s", msg ? msg : "",
               polyattn_status_name(pst));
    if (pst == POLYATTN_STATUS_DEVICE_ERROR || pst == POLYATTN_STATUS_INTERNAL_ERROR ||
        pst == POLYATTN_STATUS_KERNEL_BUILD_FAILED)
        report("plan_create: %s: %s", polyattn_status_name(pst), err ? err : "");
    if (!plan) return;
    s->planned++;
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if (polyattn_plan_get_info(plan, &info) != POLYATTN_STATUS_SUCCESS)
        report("plan_get_info failed");
    if (info.device_bytes < info.workspace_bytes || info.workspace_bytes > ((uint64_t)1 << 62) ||
        info.device_bytes > ((uint64_t)1 << 63) || !(info.flops >= 0))
        report("implausible plan sizes: workspace %llu, device %llu, flops %g",
               (unsigned long long)info.workspace_bytes, (unsigned long long)info.device_bytes,
               info.flops);
    /* The bias and attn_mask are the caller's and not in device_bytes: bound them too. */
    const uint64_t extra_bytes =
        (DESC_HAS(d, has_bias) && d->has_bias ? score_bytes(&d->bias, 4) : 0) +
        (DESC_HAS(d, has_attn_mask) && d->has_attn_mask ? score_bytes(&d->attn_mask, 1) : 0);
    if (c.small && info.device_bytes <= lim->max_bytes && extra_bytes <= lim->max_bytes &&
        info.flops <= lim->max_flops)
        run_plan(ctx, plan, &c, &info, &src, s);
    polyattn_plan_destroy(plan);
}

#ifdef FUZZ_LIBFUZZER
/* libFuzzer entry (clang -fsanitize=fuzzer): the input's bytes are the random source. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static polyattn_context *ctx;
    static const run_limits lim = {1 << 20, 4e5};
    stats s;
    fuzz_src src;
    if (!ctx && polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) != POLYATTN_STATUS_SUCCESS)
        return 0;
    memset(&s, 0, sizeof s);
    fuzz_src_bytes(&src, data, size);
    run_case(ctx, &src, FUZZ_ANY, &lim, &s);
    if (reports) abort();
    return 0;
}
#else
static void run_seed(polyattn_context *ctx, fuzz_profile profile, const run_limits *lim, stats *s)
{
    fuzz_src src;
    fuzz_src_seed(&src, current_seed);
    run_case(ctx, &src, profile, lim, s);
}

int main(int argc, char **argv)
{
    const char *backend = "host";
    uint64_t seed = 1, count = 1000, random_count = 0;
    int quiet = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc) backend = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--count") && i + 1 < argc) count = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--random") && i + 1 < argc)
            random_count = strtoull(argv[++i], NULL, 0);
        else if (!strcmp(argv[i], "--quiet")) quiet = 1;
        else {
            fprintf(stderr, "usage: fuzz_api [--backend host|opencl] [--seed S] [--count N] "
                            "[--random N] [--quiet]\n");
            return 2;
        }
    }
    polyattn_backend kind =
        !strcmp(backend, "opencl") ? POLYATTN_BACKEND_OPENCL : POLYATTN_BACKEND_HOST;
    fuzz_profile profile = kind == POLYATTN_BACKEND_HOST ? FUZZ_ANY : FUZZ_SMALL;
    polyattn_context *ctx = NULL;
    if (polyattn_context_create(kind, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        printf("fuzz_api: no %s device (%s): skipped\n", backend, polyattn_last_error());
        return 77;
    }
    signal(SIGSEGV, on_fatal_signal);
    signal(SIGABRT, on_fatal_signal);
    signal(SIGFPE, on_fatal_signal);
    run_limits lim = {1 << 20, 4e5};
    stats s;
    memset(&s, 0, sizeof s);
    double t0 = now_s();
    for (uint64_t i = 0; i < count; i++) {
        current_seed = seed + i;
        run_seed(ctx, profile, &lim, &s);
    }
    if (random_count) {
        uint64_t base = (uint64_t)time(NULL) * 1000003u + (uint64_t)getpid();
        base = base % ((uint64_t)1 << 48) + ((uint64_t)1 << 32);
        printf("fuzz_api: random cases from seed %llu (replay: fuzz_api --backend %s --seed %llu "
               "--count %llu)\n",
               (unsigned long long)base, backend, (unsigned long long)base,
               (unsigned long long)random_count);
        fflush(stdout);
        for (uint64_t i = 0; i < random_count; i++) {
            current_seed = base + i;
            run_seed(ctx, profile, &lim, &s);
        }
    }
    double secs = now_s() - t0;
    polyattn_context_destroy(ctx);
    pa_tk_shutdown();
    if (!quiet || reports)
        printf("fuzz_api (%s): %lld inputs (seeds %llu..%llu%s) in %.1f s: %lld valid, %lld "
               "planned, %lld forwards (%lld serving, %lld of them refused for their data), %lld "
               "backwards run; %lld reports\n",
               backend, s.cases, (unsigned long long)seed, (unsigned long long)(seed + count - 1),
               random_count ? " + random" : "", secs, s.valid, s.planned, s.forwards, s.serving,
               s.serving_rejected, s.backwards, reports);
    return reports ? 1 : 0;
}
#endif
