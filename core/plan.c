/*
 * Plans: validation, algorithm selection and the cost model, done once; then forward.
 *
 * Selection walks candidates in priority order and records why each one was rejected
 * (like PyTorch's sdp_utils).  The default order per backend comes from measurements
 * (policy.c); the autotune option measures instead.
 */
#include "pa_core.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

void polyattn_plan_options_init(polyattn_plan_options *options)
{
    if (!options) return;
    memset(options, 0, sizeof *options);
    options->struct_size = sizeof *options;
    options->algo = POLYATTN_ALGO_AUTO;
}

/* Sum over queries i in [a, b] of max(0, min(hi_c, i + hi_o) - max(lo_c, i + lo_o)): the
 * visible keys of each row, where the range's ends are clamped lines in i.  Split [a, b]
 * where a clamp or the max(0, .) changes form; on each piece the count is linear in i and
 * sums in closed form (O(1)). */
static double window_pairs(int64_t a, int64_t b, double lo_c, double lo_o, double hi_c, double hi_o)
{
    double cuts[6] = {(double)a, (double)b + 1, hi_c - hi_o, lo_c - lo_o, 0, 0};
    int n = 4;
    /* Where the count max(0, ...) crosses zero on each of the four linear forms. */
    cuts[n++] = lo_c - hi_o;    /* i + hi_o = lo_c: hi line meets lo constant */
    cuts[n++] = hi_c - lo_o;    /* hi constant meets i + lo_o */
    for (int x = 1; x < n; x++) /* insertion sort */
        for (int y = x; y > 0 && cuts[y] < cuts[y - 1]; y--) {
            double t = cuts[y];
            cuts[y] = cuts[y - 1], cuts[y - 1] = t;
        }
    double total = 0.0;
    for (int c = 0; c + 1 < n; c++) {
        double s = ceil(cuts[c]), e = ceil(cuts[c + 1]) - 1; /* integer queries [s, e] */
        if (s < (double)a) s = (double)a;
        if (e > (double)b) e = (double)b;
        if (e < s) continue;
        const double mid = (s + e) / 2.0; /* the form is fixed on [s, e]: evaluate at mid */
        const int hi_line = mid + hi_o<hi_c, lo_line = mid + lo_o> lo_c;
        const double slope = (hi_line ? 1.0 : 0.0) - (lo_line ? 1.0 : 0.0);
        const double at_s = (hi_line ? s + hi_o : hi_c) - (lo_line ? s + lo_o : lo_c);
        const double at_e = at_s + slope * (e - s);
        if (at_s <= 0 && at_e <= 0) continue;
        total += (at_s + at_e) / 2.0 * (e - s + 1.0);
    }
    return total;
}

/* Closed form (O(1) per problem): the pairs the causal mask and the window leave visible
 * (pa_visible_range), over every batch entry and head.  FLOPs count these only. */
double pa_visible_pairs(const pa_problem *p)
{
    const double big = 1e30;                        /* beyond any key index: an unbounded side */
    const double off = (double)(pa_diagonal(p, 0)); /* d(i) = i + off */
    double lo_o = -big, hi_o = big;                 /* keys [i + lo_o, i + hi_o) */
    if (p->mask != POLYATTN_MASK_NONE) hi_o = off + 1;
    if (p->has_window && p->window_left >= 0) lo_o = off - (double)p->window_left;
    if (p->has_window && p->window_right >= 0 && off + (double)p->window_right + 1 < hi_o)
        hi_o = off + (double)p->window_right + 1;
    double pairs = p->seq_q > 0 && p->seq_kv > 0
                       ? window_pairs(0, p->seq_q - 1, 0.0, lo_o, (double)p->seq_kv, hi_o)
                       : 0.0;
    return pairs * (double)p->batch * (double)p->heads_q;
}

/* Saturating (PA_SIZE_OVERFLOW), though pa_problem_check_sizes keeps these representable. */
static uint64_t tensor_bytes_of(const pa_problem *p, polyattn_dtype dtype, int64_t heads,
                                int64_t seq, int64_t dim)
{
    return pa_size_mul(pa_size_mul4(p->batch, heads, seq, dim), polyattn_dtype_size(dtype));
}

/* Serving layouts: the tensors as described (whole caches, packed rows), the appended rows
 * and the LSE; their per-sequence lengths are on the device. */
static uint64_t serving_io_bytes(const pa_problem *p)
{
    polyattn_tensor_desc t[4];
    pa_problem_tensors(p, &t[0], &t[1], &t[2], &t[3]);
    uint64_t bytes = 0;
    for (int i = 0; i < 4; i++)
        bytes = pa_size_add(bytes, pa_tensor_bytes(&t[i]));
    if (p->has_kv_append)
        bytes = pa_size_add(bytes, pa_size_mul(pa_size_mul4(p->batch, p->heads_kv, p->seq_new,
                                                            p->head_dim + p->head_dim_v),
                                               polyattn_dtype_size(p->dtype)));
    if (p->want_lse) bytes = pa_size_add(bytes, pa_size_mul(pa_problem_lse_elements(p), 4));
    return bytes;
}

/* Bytes of the inputs plus the outputs a call writes (not the workspace). */
static uint64_t io_bytes(const pa_problem *p)
{
    if (pa_problem_serving(p)) return serving_io_bytes(p);
    uint64_t bytes = pa_size_add(
        pa_size_add(tensor_bytes_of(p, p->dtype, p->heads_q, p->seq_q, p->head_dim),
                    tensor_bytes_of(p, p->dtype, p->heads_kv, p->seq_kv, p->head_dim)),
        pa_size_add(tensor_bytes_of(p, p->dtype, p->heads_kv, p->seq_kv, p->head_dim_v),
                    tensor_bytes_of(p, p->o_dtype, p->heads_q, p->seq_q, p->head_dim_v)));
    uint64_t rows = pa_size_mul4(p->batch, p->heads_q, p->seq_q, 1);
    if (p->want_lse) bytes = pa_size_add(bytes, pa_size_mul(rows, 4));
    if (p->want_probs)
        bytes = pa_size_add(bytes, pa_size_mul(pa_size_mul(rows, (uint64_t)p->seq_kv), 4));
    return bytes;
}

/* What a backward call adds: dO read, dQ, dK and dV written (the LSE is counted above). */
static uint64_t backward_io_bytes(const pa_problem *p)
{
    if (!p->want_backward) return 0;
    if (pa_problem_serving(p)) { /* dO, dQ, dK and dV: the tensors' own sizes */
        polyattn_tensor_desc t[4];
        pa_problem_tensors(p, &t[0], &t[1], &t[2], &t[3]);
        uint64_t bytes = 0;
        for (int i = 0; i < 4; i++)
            bytes = pa_size_add(bytes, pa_tensor_bytes(&t[i]));
        return bytes;
    }
    return pa_size_add(
        pa_size_add(tensor_bytes_of(p, p->o_dtype, p->heads_q, p->seq_q, p->head_dim_v),
                    tensor_bytes_of(p, p->dtype, p->heads_q, p->seq_q, p->head_dim)),
        pa_size_add(tensor_bytes_of(p, p->dtype, p->heads_kv, p->seq_kv, p->head_dim),
                    tensor_bytes_of(p, p->dtype, p->heads_kv, p->seq_kv, p->head_dim_v)));
}

static uint64_t backward_workspace(polyattn_context *ctx, const pa_algo_ops *algo,
                                   const pa_problem *p)
{
    return p->want_backward && algo->backward && algo->backward_workspace_size
               ? algo->backward_workspace_size(ctx->dev, p)
               : 0;
}

static const pa_algo_ops *find_algo(const pa_backend_ops *ops, polyattn_algo algo)
{
    for (size_t i = 0; i < ops->n_algos; i++)
        if (ops->algos[i].algo == algo) return &ops->algos[i];
    return NULL;
}

static void order_candidates(const polyattn_context *ctx, const char *arch, const pa_problem *p,
                             const polyattn_plan_options *opt, polyattn_algo order[3],
                             const char **why)
{
    if (opt->debug || opt->want_probs) {
        order[0] = POLYATTN_ALGO_UNFUSED, order[1] = POLYATTN_ALGO_FUSED,
        order[2] = POLYATTN_ALGO_FLASH;
        *why = opt->debug ? "debug mode prefers unfused (separate kernels, probabilities)"
                          : "probabilities asked for: unfused materializes them";
        return;
    }
    pa_policy_order(ctx->ops, arch, p, order, why);
}

/* POLYATTN_FORCE=algo=NAME turns AUTO into a request for that algorithm (it fails when the
 * algorithm cannot run, like an explicit request: a forced path never falls back). */
static int forced_algo(const polyattn_context *ctx, polyattn_algo *algo)
{
    char name[16];
    if (!pa_force_get(ctx->dev, "algo", name, sizeof name)) return 0;
    for (int a = POLYATTN_ALGO_UNFUSED; a <= POLYATTN_ALGO_FLASH; a++)
        if (!strcmp(name, polyattn_algo_name((polyattn_algo)a))) {
            *algo = (polyattn_algo)a;
            return 1;
        }
    return 0;
}

/* Puts the measured (or cached) fastest eligible algorithm first. */
static void autotune_order(polyattn_context *ctx, const pa_problem *p,
                           const polyattn_plan_options *opt, const polyattn_candidate cands[3],
                           polyattn_algo order[3], const char **policy, char *why, size_t n)
{
    const pa_algo_ops *algos[3];
    for (int i = 0; i < 3; i++)
        algos[i] =
            cands[i].status == POLYATTN_STATUS_SUCCESS ? find_algo(ctx->ops, cands[i].algo) : NULL;
    polyattn_algo winner;
    if (pa_autotune(ctx, p, cands, algos, opt->autotune_cache_file, &winner, why, n) !=
        POLYATTN_STATUS_SUCCESS) {
        pa_log(POLYATTN_LOG_DISPATCH, "%s; using the length policy", why);
        return;
    }
    for (int i = 0; i < 3; i++)
        if (order[i] == winner) {
            for (int j = i; j > 0; j--)
                order[j] = order[j - 1];
            order[0] = winner;
        }
    *policy = why;
}

/* "123 B" under 1 MiB (a tiny budget must not read "0.0 MiB"), else "12.3 MiB". */
static const char *size_text(uint64_t bytes, char buf[32])
{
    if (bytes < 1024 * 1024) snprintf(buf, 32, "%llu B", (unsigned long long)bytes);
    else snprintf(buf, 32, "%.1f MiB", (double)bytes / (1024.0 * 1024.0));
    return buf;
}

/* Evaluates one algorithm: backend check, then the memory budget. */
static void evaluate(polyattn_context *ctx, const pa_problem *p, uint64_t budget,
                     const char *budget_name, polyattn_candidate *c)
{
    const pa_algo_ops *algo = find_algo(ctx->ops, c->algo);
    if (!algo) {
        c->status = POLYATTN_STATUS_UNSUPPORTED;
        snprintf(c->reason, sizeof c->reason, "the %s backend has no %s implementation",
                 ctx->ops->name, polyattn_algo_name(c->algo));
        return;
    }
    const unsigned missing =
        pa_problem_features(p) & ~algo->features & ~(p->want_backward ? 0u : PA_FEATURE_BIAS_GRAD);
    const unsigned missing_bwd =
        p->want_backward ? pa_problem_features(p) & ~algo->backward_features : 0u;
    if (missing || missing_bwd) {
        static const char *const names[] = {"sliding window", "softcap",
                                            "ALiBi",          "additive bias",
                                            "attn_mask",      "sinks",
                                            "bias gradient",  "varlen queries",
                                            "varlen keys",    "KV cache with seqused_kv",
                                            "paged KV cache", "KV append",
                                            "e4m3 inputs"};
        const unsigned m = missing ? missing : missing_bwd;
        int bit = 0;
        while (!(m & (1u << bit)))
            bit++;
        c->status = POLYATTN_STATUS_UNSUPPORTED;
        snprintf(c->reason, sizeof c->reason, "the %s backend's %s%s has no %s yet", ctx->ops->name,
                 polyattn_algo_name(c->algo), missing ? "" : " backward", names[bit]);
        return;
    }
    const char *why_not = NULL;
    polyattn_status st = algo->check(ctx->dev, p, &why_not);
    if (st == POLYATTN_STATUS_SUCCESS && p->want_backward && !algo->backward) {
        c->status = POLYATTN_STATUS_UNSUPPORTED;
        snprintf(c->reason, sizeof c->reason, "the %s backend has no %s backward yet",
                 ctx->ops->name, polyattn_algo_name(c->algo));
        return;
    }
    c->workspace_bytes = st == POLYATTN_STATUS_SUCCESS || st == POLYATTN_STATUS_OVER_BUDGET
                             ? algo->workspace_size(ctx->dev, p)
                             : 0;
    /* With want_backward the budget covers the backward's tensors and workspace too. */
    uint64_t bwd_ws = st == POLYATTN_STATUS_SUCCESS ? backward_workspace(ctx, algo, p) : 0;
    c->device_bytes = pa_size_add(pa_size_add(io_bytes(p), c->workspace_bytes),
                                  pa_size_add(backward_io_bytes(p), bwd_ws));
    if (st == POLYATTN_STATUS_SUCCESS && c->device_bytes == PA_SIZE_OVERFLOW) {
        st = POLYATTN_STATUS_UNSUPPORTED;
        why_not = c->workspace_bytes == PA_SIZE_OVERFLOW
                      ? "its workspace size cannot be represented in 64 bits"
                  : bwd_ws == PA_SIZE_OVERFLOW
                      ? "its backward workspace size cannot be represented in 64 bits"
                      : "its device memory cannot be represented in 64 bits";
        c->workspace_bytes = 0;
    }
    if (st != POLYATTN_STATUS_SUCCESS) {
        c->status = st;
        snprintf(c->reason, sizeof c->reason, "%s", why_not ? why_not : polyattn_status_string(st));
        return;
    }
    if (c->device_bytes > budget) {
        c->status = POLYATTN_STATUS_OVER_BUDGET;
        char need[32], ws[32], have[32];
        snprintf(c->reason, sizeof c->reason, "needs %s (workspace %s) but the %s is %s",
                 size_text(c->device_bytes, need), size_text(c->workspace_bytes, ws), budget_name,
                 size_text(budget, have));
        return;
    }
    c->status = POLYATTN_STATUS_SUCCESS;
    /* A check may say how it will run (e.g. which GEMM): keep that as the note. */
    snprintf(c->reason, sizeof c->reason, "eligible%s%.230s", why_not ? ": " : "",
             why_not ? why_not : "");
}

static void append(char *buf, size_t n, const char *fmt, const char *a, const char *b)
{
    size_t len = strlen(buf);
    if (len < n) snprintf(buf + len, n - len, fmt, a, b);
}

polyattn_status polyattn_plan_create(polyattn_context *ctx, const polyattn_attention_desc *desc,
                                     const polyattn_plan_options *options, polyattn_plan **out)
{
    if (!ctx) return POLYATTN_STATUS_INVALID_ARGUMENT;
    pa_context_clear_error(ctx);
    if (!out) return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT, "plan: NULL output");
    *out = NULL;
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    if (options) {
        /* Members appended later (want_bias_grad) are off for callers built before them. */
        const size_t v1 = offsetof(polyattn_plan_options, deterministic) + sizeof(int);
        if (options->struct_size < v1)
            return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                                   "options.struct_size: %zu is smaller than any "
                                   "polyattn_plan_options (%zu)",
                                   options->struct_size, v1);
        memcpy(&opt, options,
               options->struct_size < sizeof opt ? options->struct_size : sizeof opt);
        opt.struct_size = sizeof opt;
    }
    if ((int)opt.algo < 0 || (int)opt.algo >= POLYATTN_ALGO_COUNT)
        return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "options.algo: %d is not a polyattn_algo", (int)opt.algo);

    pa_problem p;
    const char *message = NULL;
    polyattn_status st = pa_desc_normalize(desc, &p, &message);
    if (st != POLYATTN_STATUS_SUCCESS)
        return pa_context_fail(ctx, st, "%s", message ? message : "invalid descriptor");
    p.want_backward = opt.want_backward != 0;
    p.deterministic = p.want_backward && opt.deterministic != 0;
    p.want_lse = opt.want_lse != 0 || p.want_backward; /* the backward reads the LSE */
    p.want_probs = opt.want_probs != 0;
    if (opt.want_bias_grad && !(p.want_backward && p.has_bias)) {
        return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "options.want_bias_grad: needs want_backward and a bias in the "
                               "descriptor");
    }
    p.want_bias_grad = opt.want_bias_grad != 0;
    p.check_device_inputs = opt.check_device_inputs != 0;
    if (opt.num_splits < 0 || opt.num_splits > PA_MAX_SPLITS)
        return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "options.num_splits: %d is not in [0, %d] (0: the plan chooses)",
                               opt.num_splits, PA_MAX_SPLITS);
    p.num_splits = opt.num_splits;
    if (pa_problem_serving(&p) && p.want_probs)
        return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "options.want_probs: not available with varlen or a KV cache "
                               "(the [seq_q, seq_kv] matrix has no per-sequence layout)");
    if (p.want_backward &&
        (p.kv_layout == POLYATTN_KV_CACHE || p.kv_layout == POLYATTN_KV_PAGED || p.has_kv_append))
        return pa_context_fail(ctx, POLYATTN_STATUS_UNSUPPORTED,
                               "options.want_backward: a KV cache (kv_layout %s) and KV append "
                               "are inference-only; they have no backward (varlen has one)",
                               p.kv_layout == POLYATTN_KV_PAGED ? "paged" : "cache");
    if (p.want_backward && p.dtype == POLYATTN_DTYPE_E4M3)
        return pa_context_fail(ctx, POLYATTN_STATUS_UNSUPPORTED,
                               "options.want_backward: e4m3 inputs are forward only");
    if ((st = pa_problem_check_sizes(&p, &message)) != POLYATTN_STATUS_SUCCESS)
        return pa_context_fail(ctx, st, "%s", message);

    polyattn_device_info dev_info;
    memset(&dev_info, 0, sizeof dev_info);
    dev_info.struct_size = sizeof dev_info;
    ctx->ops->device_info(ctx->dev->index, &dev_info);
    uint64_t budget = opt.memory_budget_bytes;
    const char *budget_name = "memory budget";
    if (budget == 0 || (dev_info.global_mem_bytes && budget > dev_info.global_mem_bytes)) {
        if (budget == 0 || dev_info.global_mem_bytes < budget) {
            budget = dev_info.global_mem_bytes ? dev_info.global_mem_bytes : UINT64_MAX;
            budget_name = "device memory";
        }
    }

    polyattn_plan *plan = calloc(1, sizeof *plan);
    if (!plan) return pa_context_fail(ctx, POLYATTN_STATUS_OUT_OF_MEMORY, "out of host memory");
    plan->ctx = ctx;
    plan->problem = p;
    polyattn_plan_info *info = &plan->info;
    info->struct_size = sizeof *info;
    info->backend = ctx->ops->kind;
    info->flops = 2.0 * pa_visible_pairs(&p) * (double)(p.head_dim + p.head_dim_v);
    info->min_bytes_moved = (double)io_bytes(&p);
    info->n_candidates = 3;
    info->varlen_q = p.varlen_q;
    info->kv_layout = p.kv_layout;
    info->kv_block_size = p.kv_layout == POLYATTN_KV_PAGED ? p.kv_rows : 0;
    for (int i = 0; i < 3; i++) {
        info->candidates[i].algo = (polyattn_algo)(POLYATTN_ALGO_UNFUSED + i);
        evaluate(ctx, &p, budget, budget_name, &info->candidates[i]);
    }

    polyattn_algo order[3];
    const char *policy = "";
    char tune_why[256];
    int n_order = 3;
    if (opt.algo != POLYATTN_ALGO_AUTO) {
        order[0] = opt.algo;
        n_order = 1;
        policy = "requested by the caller";
    } else if (forced_algo(ctx, &order[0])) {
        n_order = 1;
        policy = "forced by POLYATTN_FORCE=algo";
    } else {
        order_candidates(ctx, dev_info.arch, &p, &opt, order, &policy);
        /* Autotune would time invented lengths on a serving layout: the policy decides. */
        if (opt.autotune && pa_problem_serving(&p))
            pa_log(POLYATTN_LOG_DISPATCH, "autotune skipped: a serving layout's lengths are "
                                          "on the device; using the policy");
        else if (opt.autotune)
            autotune_order(ctx, &p, &opt, info->candidates, order, &policy, tune_why,
                           sizeof tune_why);
    }

    char rejected[1536] = "";
    for (int i = 0; i < n_order; i++) {
        polyattn_candidate *c = &info->candidates[order[i] - POLYATTN_ALGO_UNFUSED];
        if (c->status == POLYATTN_STATUS_SUCCESS) {
            const pa_algo_ops *algo = find_algo(ctx->ops, c->algo);
            void *state = NULL;
            if (algo->prepare) {
                polyattn_status pst = algo->prepare(ctx->dev, &p, &state);
                if (pst != POLYATTN_STATUS_SUCCESS) {
                    c->status = pst;
                    snprintf(c->reason, sizeof c->reason, "preparing failed: %.200s",
                             ctx->dev->last_error[0] ? ctx->dev->last_error
                                                     : polyattn_status_string(pst));
                }
            }
            if (c->status == POLYATTN_STATUS_SUCCESS) {
                c->chosen = 1;
                /* the backend's note on how it runs, after the policy: a short policy (an
                 * explicit algorithm) leaves it ~220 characters, where kernels name their
                 * options last */
                char note[sizeof c->reason] = "";
                if (strncmp(c->reason, "eligible: ", 10) == 0)
                    snprintf(note, sizeof note, " [%s]", c->reason + 10);
                c->reason[0] = '\0';
                if (i == 0) append(c->reason, sizeof c->reason, "chosen: %.120s%s", policy, note);
                else
                    append(c->reason, sizeof c->reason,
                           "chosen: %.80s, but %.8s was rejected (see its reason)", policy,
                           polyattn_algo_name(order[0]));
                if (i != 0) append(c->reason, sizeof c->reason, "%s%s", note, "");
                plan->algo = algo;
                plan->state = state;
                info->algo = c->algo;
                info->workspace_bytes = c->workspace_bytes;
                info->device_bytes = c->device_bytes;
                info->kernel_launches = algo->kernel_launches(ctx->dev, &p);
                info->backward_workspace_bytes = backward_workspace(ctx, algo, &p);
                info->num_splits = algo->splits ? algo->splits(ctx->dev, &p) : 1;
                snprintf(info->reason, sizeof info->reason, "%s", c->reason + 8);
                break;
            }
        }
        append(rejected, sizeof rejected, "%s%s", rejected[0] ? "; " : "",
               polyattn_algo_name(c->algo));
        append(rejected, sizeof rejected, ": %s%s", c->reason, "");
    }
    for (int i = 0; i < 3; i++) {
        polyattn_candidate *c = &info->candidates[i];
        pa_log(POLYATTN_LOG_DISPATCH, "%s %s: %s", ctx->ops->name, polyattn_algo_name(c->algo),
               c->reason);
    }
    if (!plan->algo) {
        /* The most specific failure wins: a budget problem over a plain "unsupported". */
        polyattn_status fail = POLYATTN_STATUS_UNSUPPORTED;
        for (int i = 0; i < n_order; i++) {
            polyattn_status s = info->candidates[order[i] - POLYATTN_ALGO_UNFUSED].status;
            if (s != POLYATTN_STATUS_UNSUPPORTED) fail = s;
        }
        free(plan);
        return pa_context_fail(ctx, fail, "no algorithm can run this problem on %s: %s",
                               ctx->ops->name, rejected);
    }
    pa_context_clear_error(ctx); /* what autotune or a rejected prepare left is no error */
    *out = plan;
    return POLYATTN_STATUS_SUCCESS;
}

void polyattn_plan_destroy(polyattn_plan *plan)
{
    if (!plan) return;
    if (plan->algo && plan->algo->release) plan->algo->release(plan->ctx->dev, plan->state);
    free(plan);
}

polyattn_status polyattn_plan_get_info(const polyattn_plan *plan, polyattn_plan_info *info)
{
    if (!plan) return POLYATTN_STATUS_INVALID_ARGUMENT;
    /* Callers built before the appended members get the ones they know. */
    const size_t v1 = offsetof(polyattn_plan_info, backward_workspace_bytes) + sizeof(uint64_t);
    if (!info || info->struct_size < v1)
        return pa_context_fail(plan->ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                               "info: NULL or struct_size smaller than any polyattn_plan_info");
    const size_t size = info->struct_size < sizeof *info ? info->struct_size : sizeof *info;
    memcpy(info, &plan->info, size);
    info->struct_size = size;
    return POLYATTN_STATUS_SUCCESS;
}

/* ---- forward ---- */

polyattn_status polyattn_forward(polyattn_plan *plan, const polyattn_buffer *q,
                                 const polyattn_buffer *k, const polyattn_buffer *v,
                                 polyattn_buffer *o, polyattn_buffer *lse, polyattn_buffer *probs,
                                 polyattn_buffer *workspace)
{
    return polyattn_forward_ex(plan, q, k, v, o, lse, probs, workspace, NULL);
}

polyattn_status polyattn_forward_ex(polyattn_plan *plan, const polyattn_buffer *q,
                                    const polyattn_buffer *k, const polyattn_buffer *v,
                                    polyattn_buffer *o, polyattn_buffer *lse,
                                    polyattn_buffer *probs, polyattn_buffer *workspace,
                                    const polyattn_extra_tensors *extra)
{
    if (!plan) return POLYATTN_STATUS_INVALID_ARGUMENT;
    polyattn_context *ctx = plan->ctx;
    const pa_problem *p = &plan->problem;
    pa_context_clear_error(ctx);
    pa_variant_io var;
    polyattn_status vst = pa_bind_variants(ctx, p, extra, 0, &var);
    if (vst != POLYATTN_STATUS_SUCCESS) return vst;
    pa_serving_io srv;
    if ((vst = pa_bind_serving(ctx, p, extra, 0, &srv)) != POLYATTN_STATUS_SUCCESS) return vst;
    const uint64_t rows = pa_problem_lse_elements(p);
    polyattn_tensor_desc tq, tk, tv, to;
    pa_problem_tensors(p, &tq, &tk, &tv, &to);
    /* KV append writes the caches: k and v are outputs then (they may share one buffer). */
    const int append = p->has_kv_append;
    pa_buffer_binding b[7] = {
        {"q", q, pa_tensor_bytes(&tq), 0, 0},
        {"k", k, pa_tensor_bytes(&tk), append, 1}, /* the K and V caches may share a buffer */
        {"v", v, pa_tensor_bytes(&tv), append, 1},
        {"o", o, pa_tensor_bytes(&to), 1, 0},
        {"lse", lse, p->want_lse ? pa_size_mul(rows, 4) : 0, 1, 0},
        {"probs", probs, p->want_probs ? pa_size_mul(pa_size_mul(rows, (uint64_t)p->seq_kv), 4) : 0,
         1, 0},
        {"workspace", workspace, plan->info.workspace_bytes, 1, 0},
    };
    /* lse and probs given to a plan made without them are a caller's mistake. */
    for (int i = 4; i <= 5; i++)
        if (b[i].need == 0 && b[i].buf)
            return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                                   "%s: a buffer was given but the plan was made without want_%s",
                                   b[i].name, b[i].name);
    polyattn_status bst = pa_check_buffers(ctx, b, 7, "plan");
    if (bst != POLYATTN_STATUS_SUCCESS) return bst;
    /* The serving tensors are inputs: no output may overlap them. */
    if (pa_problem_serving(p)) {
        const polyattn_buffer *sb[6] = {NULL};
        static const char *const names[6] = {"extra.cu_seqlens_q", "extra.cu_seqlens_kv",
                                             "extra.seqused_kv",   "extra.block_table",
                                             "extra.k_new",        "extra.v_new"};
        polyattn_extra_tensors ex;
        if (pa_extra_read(ctx, extra, &ex) != POLYATTN_STATUS_SUCCESS)
            return POLYATTN_STATUS_INVALID_ARGUMENT;
        sb[0] = ex.cu_seqlens_q, sb[1] = ex.cu_seqlens_kv, sb[2] = ex.seqused_kv;
        sb[3] = ex.block_table, sb[4] = ex.k_new, sb[5] = ex.v_new;
        for (int i = 0; i < 7; i++)
            for (int j = 0; j < 6; j++)
                if (b[i].buf && b[i].is_output && sb[j] && pa_buffers_overlap(b[i].buf, sb[j]))
                    return pa_context_fail(ctx, POLYATTN_STATUS_INVALID_ARGUMENT,
                                           "%s: overlaps %s in memory; outputs must not alias",
                                           names[j], b[i].name);
    }

    pa_io io;
    memset(&io, 0, sizeof io);
    pa_tensor_ref *refs[7] = {&io.q, &io.k, &io.v, &io.o, &io.lse, &io.probs, &io.workspace};
    for (int i = 0; i < 7; i++)
        if (b[i].buf) refs[i]->mem = b[i].buf->mem, refs[i]->offset = b[i].buf->offset;
    io.workspace_bytes = b[6].buf ? b[6].buf->bytes : 0;
    io.var = var;
    io.srv = srv;
    if ((vst = pa_serving_check_device(ctx, p, &srv, 0)) != POLYATTN_STATUS_SUCCESS) return vst;
    return plan->algo->forward(ctx->dev, p, plan->state, &io);
}
