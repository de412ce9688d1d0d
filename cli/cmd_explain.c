/* polyattn explain: makes a plan for a shape (no data) and prints what the planner decided
 * for each algorithm and why. */
#include "cli.h"
#include "serving.h"
#include "variants.h"

#include <limits.h>
#include <string.h>

static const char usage[] =
    "usage: polyattn explain --batch B --heads H [--heads-kv HK] --seq-q N [--seq-kv M]\n"
    "                        --head-dim D [--head-dim-v DV] [--dtype f32|f16|bf16|e4m3]\n"
    "                        [--out-dtype f32|f16|bf16] [--q-descale S] [--k-descale S]\n"
    "                        [--v-descale S]  (e4m3: FP8 inputs, O bf16 by default)\n"
    "                        [--causal top-left|bottom-right] [--scale S] [--memory-budget MIB]\n"
    "                        [--debug] [--probs] [--lse] [--backend auto|host|cuda|hip|opencl]\n"
    "                        [--device N] [--algo auto|unfused|fused|flash] [--autotune]\n"
    "                        [--window L,R] [--softcap C] [--alibi per-head|per-batch-head]\n"
    "                        [--bias B,H [--bias-dtype f32|f16|bf16]] [--mask B,H] [--sinks]\n"
    "                        [--varlen-q] [--kv-layout dense|varlen|cache|paged]\n"
    "                        [--block-size N] [--seq-new N] [--num-splits N] [--json]\n"
    "\n"
    "Plans attention for the shape and prints the chosen algorithm and why, then each\n"
    "candidate (unfused, fused, flash): eligible, chosen or rejected, its workspace, its\n"
    "device-memory estimate (inputs + outputs + workspace) and the reason; and the plan's\n"
    "FLOPs, minimum bytes moved and kernel launches.  Defaults: --heads-kv = --heads,\n"
    "--seq-kv = --seq-q, --head-dim-v = --head-dim, f32, no mask.\n"
    "\n"
    "  --debug   prefer the unfused path (debuggable, returns probabilities)\n"
    "  --probs   plan for returning probabilities; --lse: for returning the log-sum-exp\n"
    "  --autotune  time the eligible algorithms on the device (random inputs) and choose the\n"
    "            fastest instead of the default policy; the reason lists the timings\n"
    "  --json    one JSON object on stdout\n"
    "\n"
    "Score variants (see polyattn run --help): --window L,R (-1 unbounded), --softcap C,\n"
    "--alibi per-head|per-batch-head (the slopes' shape), --bias B,H and --mask B,H (the\n"
    "extents of the bias's or mask's batch and head dimensions: 1 broadcasts, else the\n"
    "batch or heads; --bias-dtype its precision, default f32), --sinks.  They are printed\n"
    "with the problem, and an algorithm that lacks one is rejected with the reason.\n"
    "\n"
    "Serving layouts (see polyattn run --help): --batch sequences of at most --seq-q queries\n"
    "and --seq-kv keys each.  --varlen-q packs the queries ([1, heads, batch x seq_q, d]);\n"
    "--kv-layout varlen packs the keys, cache keeps them in a dense cache [batch, heads_kv,\n"
    "seq_kv, d], paged in blocks of --block-size keys (default 16) [batch x ceil(seq_kv /\n"
    "block_size), heads_kv, block_size, d]; --seq-new N appends N rows per sequence (cache,\n"
    "paged).  --num-splits N: the plan's key splits (0: its choice, 1: none).  The layout\n"
    "and the split count of the plan are printed (JSON: \"layout\", \"num_splits\").\n"
    "\n"
    "Exit status: 0 a plan exists, 1 no algorithm fits (every rejection is printed) or a\n"
    "device failure, 2 bad usage.\n";

static const char *candidate_status(const polyattn_candidate *c)
{
    if (c->chosen) return "chosen";
    return c->status == POLYATTN_STATUS_SUCCESS ? "eligible" : "rejected";
}

/* The problem as given: batch, seq_q, seq_kv (per sequence under the serving layouts). */
typedef struct problem_dims {
    int64_t batch, seq_q, seq_kv;
} problem_dims;

static void print_problem_text(const polyattn_attention_desc *d, const problem_dims *p,
                               const pa_cli_variants *v, const polyattn_device_info *dev,
                               uint64_t budget)
{
    char a[32], b[32], vars[512];
    printf("problem: batch %lld, heads_q %lld, heads_kv %lld, seq_q %lld, seq_kv %lld, "
           "head_dim %lld, head_dim_v %lld, dtype %s%s%s%s, mask %s\n",
           (long long)p->batch, (long long)d->q.shape[1], (long long)d->k.shape[1],
           (long long)p->seq_q, (long long)p->seq_kv, (long long)d->q.shape[3],
           (long long)d->v.shape[3], polyattn_dtype_name(d->q.dtype),
           d->o.dtype != d->q.dtype ? " (O " : "",
           d->o.dtype != d->q.dtype ? polyattn_dtype_name(d->o.dtype) : "",
           d->o.dtype != d->q.dtype ? ")" : "", polyattn_mask_name(d->mask));
    pa_cli_variants_describe(v, vars, sizeof vars);
    printf("variants: %s\n", vars);
    printf("device: %s:%d (%s), memory %s\n", polyattn_backend_name(dev->backend), dev->index,
           dev->name, pa_cli_bytes_human(dev->global_mem_bytes, a));
    if (budget)
        printf("memory budget: %llu B (%s)\n", (unsigned long long)budget,
               pa_cli_bytes_human(budget, b));
    else printf("memory budget: none (the device's memory)\n");
}

/* "16777216 B (16.0 MiB)", or "0 B" when the unit adds nothing. */
static void print_bytes_line(const char *label, uint64_t bytes)
{
    char a[32];
    if (bytes < 1024) printf("%s: %llu B\n", label, (unsigned long long)bytes);
    else
        printf("%s: %llu B (%s)\n", label, (unsigned long long)bytes, pa_cli_bytes_human(bytes, a));
}

static void print_plan_text(const polyattn_plan_info *info)
{
    char layout[128];
    printf("chosen: %s\n", polyattn_algo_name(info->algo));
    printf("reason: %s\n", info->reason);
    pa_cli_layout_describe(info, layout, sizeof layout);
    printf("layout: %s\n", layout);
    printf("flops: %.6g\n", info->flops);
    print_bytes_line("min bytes moved", (uint64_t)info->min_bytes_moved);
    printf("kernel launches: %d\n", info->kernel_launches);
    print_bytes_line("workspace", info->workspace_bytes);
    print_bytes_line("device memory estimate", info->device_bytes);
    printf("candidates:\n");
    for (int i = 0; i < info->n_candidates && i < 3; i++) {
        const polyattn_candidate *c = &info->candidates[i];
        char ws[32], dm[32], status[64];
        if (c->status == POLYATTN_STATUS_SUCCESS || c->chosen)
            snprintf(status, sizeof status, "%s", candidate_status(c));
        else snprintf(status, sizeof status, "rejected (%s)", polyattn_status_name(c->status));
        printf("  %-8s %-24s workspace %-10s device memory %-10s %s\n", polyattn_algo_name(c->algo),
               status, pa_cli_bytes_human(c->workspace_bytes, ws),
               pa_cli_bytes_human(c->device_bytes, dm), c->reason);
    }
}

static void print_json(const polyattn_attention_desc *d, const problem_dims *p,
                       const pa_cli_variants *v, const polyattn_device_info *dev, uint64_t budget,
                       const polyattn_plan_info *info, const char *error)
{
    printf("{\"problem\": {\"batch\": %lld, \"heads_q\": %lld, \"heads_kv\": %lld, "
           "\"seq_q\": %lld, \"seq_kv\": %lld, \"head_dim\": %lld, \"head_dim_v\": %lld, "
           "\"dtype\": \"%s\", \"out_dtype\": \"%s\", \"mask\": \"%s\"",
           (long long)p->batch, (long long)d->q.shape[1], (long long)d->k.shape[1],
           (long long)p->seq_q, (long long)p->seq_kv, (long long)d->q.shape[3],
           (long long)d->v.shape[3], polyattn_dtype_name(d->q.dtype),
           polyattn_dtype_name(d->o.dtype), polyattn_mask_name(d->mask));
    pa_cli_variants_json(stdout, v);
    printf("}, ");
    printf("\"backend\": \"%s\", \"device_index\": %d, \"device\": ",
           polyattn_backend_name(dev->backend), dev->index);
    pa_json_string(stdout, dev->name);
    printf(", \"memory_budget_bytes\": ");
    if (budget) printf("%llu", (unsigned long long)budget);
    else printf("null");
    if (!info) {
        printf(", \"chosen\": null, \"candidates\": null, \"error\": ");
        pa_json_string(stdout, error);
        printf("}\n");
        return;
    }
    printf(", \"chosen\": \"%s\", \"reason\": ", polyattn_algo_name(info->algo));
    pa_json_string(stdout, info->reason);
    pa_cli_layout_json(stdout, info);
    printf(", \"flops\": ");
    pa_json_number(stdout, info->flops);
    printf(", \"min_bytes_moved\": ");
    pa_json_number(stdout, info->min_bytes_moved);
    printf(", \"kernel_launches\": %d, \"workspace_bytes\": %llu, \"device_bytes\": %llu, "
           "\"candidates\": [",
           info->kernel_launches, (unsigned long long)info->workspace_bytes,
           (unsigned long long)info->device_bytes);
    for (int i = 0; i < info->n_candidates && i < 3; i++) {
        const polyattn_candidate *c = &info->candidates[i];
        printf("%s{\"algo\": \"%s\", \"status\": \"%s\", \"status_code\": \"%s\", "
               "\"chosen\": %s, \"workspace_bytes\": %llu, \"device_bytes\": %llu, "
               "\"reason\": ",
               i ? ", " : "", polyattn_algo_name(c->algo), candidate_status(c),
               polyattn_status_name(c->status), c->chosen ? "true" : "false",
               (unsigned long long)c->workspace_bytes, (unsigned long long)c->device_bytes);
        pa_json_string(stdout, c->reason);
        printf("}");
    }
    printf("], \"error\": null}\n");
}

/* --varlen-q, --kv-layout, --block-size, --seq-new: the descriptor's serving members for
 * desc's batch of sequences (q and k still dense [batch, heads, seq, d]). */
static int serving_layout(const pa_cli_args *args, polyattn_attention_desc *d, int64_t *num_splits)
{
    static const char *const layouts[] = {"dense", "varlen", "cache", "paged"};
    int kv = POLYATTN_KV_DENSE;
    int64_t block_size = 16, seq_new = 0;
    if (pa_cli_get_choice(args, "--kv-layout", layouts, 4, &kv) ||
        pa_cli_get_i64(args, "--block-size", 16, INT32_MAX, &block_size) ||
        pa_cli_get_i64(args, "--seq-new", 1, INT32_MAX, &seq_new) ||
        pa_cli_get_i64(args, "--num-splits", 0, 1024, num_splits))
        return PA_EXIT_USAGE;
    if (pa_cli_has(args, "--block-size") && kv != POLYATTN_KV_PAGED)
        return pa_cli_fail(args->cmd, "--block-size: only with --kv-layout paged");
    if (block_size % 16 != 0)
        return pa_cli_fail(args->cmd, "--block-size: %lld is not a multiple of 16",
                           (long long)block_size);
    if (seq_new && kv != POLYATTN_KV_CACHE && kv != POLYATTN_KV_PAGED)
        return pa_cli_fail(args->cmd, "--seq-new: only with --kv-layout cache or paged");
    const int varlen = pa_cli_has(args, "--varlen-q");
    if (!varlen && kv == POLYATTN_KV_DENSE) return 0;
    const polyattn_dtype dt = d->q.dtype;
    const int64_t batch = d->q.shape[0], hq = d->q.shape[1], sq = d->q.shape[2];
    const int64_t hkv = d->k.shape[1], skv = d->k.shape[2], hd = d->q.shape[3], dv = d->v.shape[3];
    if (seq_new > skv)
        return pa_cli_fail(args->cmd, "--seq-new: %lld is more than --seq-kv %lld",
                           (long long)seq_new, (long long)skv);
    d->num_seqs = batch;
    if (varlen) {
        d->varlen_q = 1;
        d->max_seqlen_q = sq;
        polyattn_tensor_desc_bhsd(&d->q, dt, 1, hq, batch * sq, hd);
        polyattn_tensor_desc_bhsd(&d->o, dt, 1, hq, batch * sq, dv);
    }
    d->kv_layout = (polyattn_kv_layout)kv;
    if (kv != POLYATTN_KV_DENSE) d->max_seqlen_kv = skv;
    int64_t kv0 = batch, rows = skv;
    if (kv == POLYATTN_KV_VARLEN) {
        kv0 = 1;
        rows = batch * skv;
    } else if (kv == POLYATTN_KV_PAGED) {
        d->max_blocks_per_seq = (skv + block_size - 1) / block_size;
        kv0 = batch * d->max_blocks_per_seq;
        rows = block_size;
    }
    polyattn_tensor_desc_bhsd(&d->k, dt, kv0, hkv, rows, hd);
    polyattn_tensor_desc_bhsd(&d->v, dt, kv0, hkv, rows, dv);
    if (seq_new) {
        d->has_kv_append = 1;
        polyattn_tensor_desc_bhsd(&d->k_new, dt, batch, hkv, seq_new, hd);
        polyattn_tensor_desc_bhsd(&d->v_new, dt, batch, hkv, seq_new, dv);
    }
    return 0;
}

int pa_cmd_explain(int argc, char **argv)
{
    static const pa_cli_opt spec[] = {
        {"--batch", 1},      {"--heads", 1},    {"--heads-kv", 1},      {"--seq-q", 1},
        {"--seq-kv", 1},     {"--head-dim", 1}, {"--head-dim-v", 1},    {"--dtype", 1},
        {"--causal", 1},     {"--scale", 1},    {"--memory-budget", 1}, {"--debug", 0},
        {"--probs", 0},      {"--lse", 0},      {"--backend", 1},       {"--device", 1},
        {"--algo", 1},       {"--json", 0},     {"--autotune", 0},      {"--window", 1},
        {"--softcap", 1},    {"--alibi", 1},    {"--bias", 1},          {"--bias-dtype", 1},
        {"--mask", 1},       {"--sinks", 0},    {"--varlen-q", 0},      {"--kv-layout", 1},
        {"--block-size", 1}, {"--seq-new", 1},  {"--num-splits", 1},    PA_CLI_FP8_OPTIONS,
    };
    pa_cli_args args;
    if (pa_cli_parse(&args, "explain", spec, (int)(sizeof spec / sizeof spec[0]), argc, argv))
        return PA_EXIT_USAGE;
    if (args.help) {
        fputs(usage, stdout);
        return PA_EXIT_OK;
    }
    pa_cli_common common;
    int64_t batch = 0, heads_q = 0, heads_kv = 0, seq_q = 0, seq_kv = 0, head_dim = 0,
            head_dim_v = 0;
    double scale = 0;
    if (pa_cli_require(&args, "--batch") || pa_cli_require(&args, "--heads") ||
        pa_cli_require(&args, "--seq-q") || pa_cli_require(&args, "--head-dim") ||
        pa_cli_get_i64(&args, "--batch", 1, INT32_MAX, &batch) ||
        pa_cli_get_i64(&args, "--heads", 1, INT32_MAX, &heads_q) ||
        pa_cli_get_i64(&args, "--seq-q", 1, INT32_MAX, &seq_q) ||
        pa_cli_get_i64(&args, "--head-dim", 1, INT32_MAX, &head_dim))
        return PA_EXIT_USAGE;
    heads_kv = heads_q;
    seq_kv = seq_q;
    head_dim_v = head_dim;
    if (pa_cli_get_i64(&args, "--heads-kv", 1, INT32_MAX, &heads_kv) ||
        pa_cli_get_i64(&args, "--seq-kv", 1, INT32_MAX, &seq_kv) ||
        pa_cli_get_i64(&args, "--head-dim-v", 1, INT32_MAX, &head_dim_v) ||
        pa_cli_get_common(&args, &common) || pa_cli_get_scale(&args, &scale))
        return PA_EXIT_USAGE;
    if (pa_cli_has(&args, "--probs") && common.algo == POLYATTN_ALGO_FLASH)
        return pa_cli_fail("explain", "--probs: the flash algorithm never forms the "
                                      "probability matrix (use --algo unfused, fused or auto)");
    if (heads_q % heads_kv != 0)
        return pa_cli_fail("explain", "--heads-kv: %lld does not divide --heads %lld",
                           (long long)heads_kv, (long long)heads_q);
    int json = pa_cli_has(&args, "--json");
    int rc = 0;
    pa_cli_variants var;
    memset(&var, 0, sizeof var);
    if (pa_cli_get_variant_options(&args, &var) ||
        pa_cli_get_variant_shapes(&args, batch, heads_q, seq_q, seq_kv, &var))
        return PA_EXIT_USAGE;

    polyattn_attention_desc desc;
    polyattn_attention_desc_init(&desc, common.dtype, batch, heads_q, heads_kv, seq_q, seq_kv,
                                 head_dim, head_dim_v);
    desc.scale = (float)scale;
    desc.mask = common.mask;
    pa_cli_variants_apply(&var, &desc);
    int64_t num_splits = 0;
    if ((rc = serving_layout(&args, &desc, &num_splits))) return rc;
    pa_cli_common_apply(&common, &desc);
    const problem_dims dims = {batch, seq_q, seq_kv};
    const char *why = NULL;
    polyattn_status st = polyattn_attention_desc_validate(&desc, &why);
    if (st != POLYATTN_STATUS_SUCCESS)
        return pa_cli_fail_code(pa_cli_status_exit(st), "explain", "shape: %s",
                                why ? why : polyattn_status_string(st));

    polyattn_context *ctx = NULL;
    rc = pa_cli_open_context("explain", &common, &ctx);
    if (rc) return rc;
    polyattn_device_info dev;
    memset(&dev, 0, sizeof dev);
    dev.struct_size = sizeof dev;
    st = polyattn_context_get_device_info(ctx, &dev);
    if (st != POLYATTN_STATUS_SUCCESS) {
        rc = pa_cli_fail_status("explain", ctx, st, "device info");
        polyattn_context_destroy(ctx);
        return rc;
    }

    polyattn_plan_options opts;
    polyattn_plan_options_init(&opts);
    opts.algo = common.algo;
    opts.memory_budget_bytes = common.memory_budget_bytes;
    opts.debug = pa_cli_has(&args, "--debug");
    opts.want_probs = pa_cli_has(&args, "--probs");
    opts.want_lse = pa_cli_has(&args, "--lse");
    opts.autotune = pa_cli_has(&args, "--autotune");
    opts.num_splits = (int)num_splits;
    polyattn_plan *plan = NULL;
    st = polyattn_plan_create(ctx, &desc, &opts, &plan);
    if (st != POLYATTN_STATUS_SUCCESS) {
        const char *msg = polyattn_context_last_error(ctx);
        if (!msg || !msg[0]) msg = polyattn_status_string(st);
        if (st == POLYATTN_STATUS_INVALID_ARGUMENT) {
            rc = pa_cli_fail_status("explain", ctx, st, "plan");
        } else {
            /* No plan, so no per-candidate info: the planner's message lists every
             * rejection.  Print it whole on stdout; stderr gets the one-line verdict. */
            if (json) {
                print_json(&desc, &dims, &var, &dev, common.memory_budget_bytes, NULL, msg);
            } else {
                print_problem_text(&desc, &dims, &var, &dev, common.memory_budget_bytes);
                printf("chosen: none (%s)\n", polyattn_status_name(st));
                printf("candidates:\n");
                const char *p = msg;
                while (*p) {
                    size_t n = strcspn(p, "\n");
                    printf("  %.*s\n", (int)n, p);
                    p += n;
                    if (*p == '\n') p++;
                }
            }
            rc = pa_cli_fail_code(PA_EXIT_RUNTIME, "explain", "no algorithm fits: %s",
                                  polyattn_status_name(st));
        }
        polyattn_context_destroy(ctx);
        return rc;
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    st = polyattn_plan_get_info(plan, &info);
    if (st != POLYATTN_STATUS_SUCCESS) {
        rc = pa_cli_fail_status("explain", ctx, st, "plan info");
    } else if (json) {
        print_json(&desc, &dims, &var, &dev, common.memory_budget_bytes, &info, NULL);
    } else {
        print_problem_text(&desc, &dims, &var, &dev, common.memory_budget_bytes);
        print_plan_text(&info);
    }
    polyattn_plan_destroy(plan);
    polyattn_context_destroy(ctx);
    return rc;
}
