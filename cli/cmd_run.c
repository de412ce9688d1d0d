/* polyattn run: attention over .npy inputs on a chosen backend, outputs written as .npy. */
#include "cli.h"
#include "npy.h"
#include "serving.h"
#include "variants.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "usage: polyattn run --q Q.npy --k K.npy --v V.npy --out O.npy [--lse L.npy] [--probs P.npy]\n"
    "                    [--backend auto|host|cuda|hip|opencl] [--device N]\n"
    "                    [--algo auto|unfused|fused|flash] [--dtype f32|f16|bf16|e4m3]\n"
    "                    [--out-dtype f32|f16|bf16] [--q-descale S] [--k-descale S]\n"
    "                    [--v-descale S]\n"
    "                    [--causal top-left|bottom-right] [--scale S] [--memory-budget MIB]\n"
    "                    [--warmup N] [--json]\n"
    "                    [--window L,R] [--softcap C] [--alibi SLOPES.npy]\n"
    "                    [--bias B.npy [--bias-dtype f32|f16|bf16]] [--mask M.npy]\n"
    "                    [--sinks S.npy]\n"
    "                    [--grad-out DO.npy --dq DQ.npy --dk DK.npy --dv DV.npy\n"
    "                     [--dbias DB.npy] [--dsinks DS.npy]]\n"
    "                    [--cu-seqlens-q CU.npy] [--cu-seqlens-kv CU.npy]\n"
    "                    [--cache-seqlens L.npy [--block-table T.npy]]\n"
    "                    [--k-new KN.npy --v-new VN.npy [--out-k K2.npy] [--out-v V2.npy]]\n"
    "                    [--max-seqlen-q N] [--max-seqlen-kv N] [--num-splits N]\n"
    "                    [--check-inputs]\n"
    "\n"
    "Computes softmax(Q K^T * scale + mask) V once on the device and writes the outputs.\n"
    "With --grad-out (dL/dO, shaped like O) it then runs the backward pass and writes the\n"
    "gradients dL/dQ, dL/dK, dL/dV (float32, shaped like Q, K, V); the four options go\n"
    "together.\n"
    "Inputs are float32 C-order .npy files: Q [batch, heads_q, seq_q, head_dim],\n"
    "K [batch, heads_kv, seq_kv, head_dim], V [batch, heads_kv, seq_kv, head_dim_v];\n"
    "heads_kv must divide heads_q (grouped-query attention).  Outputs are float32 .npy:\n"
    "O [batch, heads_q, seq_q, head_dim_v], LSE [batch, heads_q, seq_q] (natural log),\n"
    "P [batch, heads_q, seq_q, seq_kv].  A query that sees no key gets O = 0, LSE = -inf.\n"
    "\n"
    "  --dtype          precision on the device (inputs are rounded to nearest even);\n"
    "                   default f32.  e4m3 (FP8, forward only, host backend for now): Q, K, V\n"
    "                   may also be uint8 .npy of raw e4m3 bytes; float32 values beyond\n"
    "                   +-448 are refused\n"
    "  --out-dtype      O's precision on the device: the --dtype (default), or f16, bf16\n"
    "                   (default) or f32 with e4m3 inputs\n"
    "  --q-descale, --k-descale, --v-descale  e4m3 only: each input means descale x its\n"
    "                   e4m3 value (positive; default 1)\n"
    "  --causal         top-left: query i sees keys j <= i; bottom-right: j <= i + seq_kv - "
    "seq_q;\n"
    "                   default: no mask\n"
    "  --scale          positive, at most float's 3.4e38; default 1/sqrt(head_dim)\n"
    "  --memory-budget  MiB the call may use on the device (inputs, outputs, workspace)\n"
    "  --warmup         untimed calls before the timed one (default 1; 0 on host)\n"
    "  --json           print one JSON object on stdout (backend, device, algo, dtype, ms,\n"
    "                   workspace_bytes, shapes, ...)\n"
    "\n"
    "Score variants (FlashAttention's semantics; s = scale * q.k, then softcap, then\n"
    "+ ALiBi + bias, then the masks; the diagonal of query i is key i + seq_kv - seq_q, or\n"
    "i under --causal top-left):\n"
    "  --window L,R     query i sees keys diagonal-L .. diagonal+R; -1 leaves a side\n"
    "                   unbounded (with --causal the right side stops at the diagonal)\n"
    "  --softcap C      s = C * tanh(s / C) (Gemma 2); C > 0, 0 is off\n"
    "  --alibi F.npy    ALiBi slopes, float32 [heads_q] or [batch, heads_q]:\n"
    "                   s -= slope * |diagonal - j|\n"
    "  --bias F.npy     additive bias, float32 [batch|1, heads_q|1, seq_q, seq_kv] (leading\n"
    "                   dimensions of extent 1, or absent, broadcast); -inf masks a pair\n"
    "  --bias-dtype     the bias's precision on the device: f32 (default), f16, bf16\n"
    "  --mask F.npy     boolean mask, bool or uint8, same shapes as --bias; false masks\n"
    "  --sinks F.npy    attention sinks, float32 [heads_q]: one logit per head that joins\n"
    "                   each row's softmax denominator (and adds nothing to O)\n"
    "  --dbias, --dsinks  with the backward: dL/dbias (float32, the bias's shape, summed\n"
    "                   over its broadcast dimensions) and dL/dsinks (float32 [heads_q])\n"
    "A query that sees no key through the masks gets O = 0 and LSE = -inf (with sinks,\n"
    "LSE = its sink).\n"
    "\n"
    "Serving layouts (FlashAttention's semantics; offsets, lengths and block indices are\n"
    "int32 .npy, or int64 within int32; each sequence b has its own lengths, and masks,\n"
    "windows and GQA apply per sequence):\n"
    "  --cu-seqlens-q F.npy   [num_seqs + 1] offsets: Q and O are packed [1, heads_q,\n"
    "                   total_q, head_dim] (the tool's BHSD order with batch 1; sequence b\n"
    "                   owns rows cu[b]..cu[b+1]); LSE is [heads_q, total_q].  Rows outside\n"
    "                   every sequence are not computed: O and LSE hold NaN there\n"
    "  --cu-seqlens-kv F.npy  [num_seqs + 1] offsets into K and V packed [1, heads_kv,\n"
    "                   total_kv, head_dim]\n"
    "  --cache-seqlens F.npy  [num_seqs] keys each sequence uses (seqused_kv): K and V are a\n"
    "                   dense cache [num_seqs, heads_kv, capacity, head_dim]\n"
    "  --block-table F.npy    [num_seqs, max_blocks_per_seq] (with --cache-seqlens): K and V\n"
    "                   are a paged cache [num_blocks, heads_kv, block_size, head_dim],\n"
    "                   block_size a multiple of 16; key j of sequence b is row\n"
    "                   j % block_size of block table[b][j / block_size]\n"
    "  --k-new, --v-new F.npy  float32 [num_seqs, heads_kv, seq_new, head_dim(_v)] (with\n"
    "                   --cache-seqlens): appended at each sequence's length, which then\n"
    "                   attends to its cached keys plus these; --out-k/--out-v write the\n"
    "                   updated caches (float32, K's and V's shapes)\n"
    "  --max-seqlen-q/--max-seqlen-kv N  upper bounds of the sequences' lengths (hints for\n"
    "                   the GPU grids; a longer sequence is an error); default: the tensors'\n"
    "  --num-splits N   key splits of a flash forward (0: the plan's choice, 1: none)\n"
    "  --check-inputs   GPU backends check offsets, lengths and block indices on the device\n"
    "                   before the call (the host backend always does)\n"
    "The tool checks the int32 inputs on the host first: offsets non-decreasing within the\n"
    "rows, lengths within the cache or the block table (appended rows included), block\n"
    "indices within the cache.  Not with --bias, --mask or --probs; the backward takes\n"
    "varlen only.  The output (text and --json) names the layout and the plan's split count.\n"
    "\n"
    "--probs needs an algorithm that forms the probabilities (unfused, fused, auto).\n"
    "\n"
    "Outputs appear only when everything succeeded: a file is written to a temporary file\n"
    "beside it and renamed; a symbolic link, a FIFO or a character device (/dev/null,\n"
    "/dev/stdout) is written through, never replaced.  No output may be an input or another\n"
    "output (compared as files: links count).\n"
    "\n"
    "Exit status: 0 success, 1 device or library failure, 2 bad usage or bad input.\n";

enum { IN_Q, IN_K, IN_V, IN_DO, N_IN }; /* IN_DO only with the backward */
/* OUT_K, OUT_V: the KV caches after an append, read back from the K and V buffers. */
enum {
    OUT_O,
    OUT_LSE,
    OUT_PROBS,
    OUT_DQ,
    OUT_DK,
    OUT_DV,
    OUT_DBIAS,
    OUT_DSINKS,
    OUT_K,
    OUT_V,
    N_OUT
};
/* Every input file option, for the check that no output overwrites one. */
static const char *const input_opts[] = {"--q",     "--k",    "--v",    "--grad-out",
                                         "--alibi", "--bias", "--mask", "--sinks"};

typedef struct run_state {
    pa_npy_array in[N_IN];
    pa_outfile out[N_OUT];
    int out_open[N_OUT];
    polyattn_context *ctx;
    polyattn_plan *plan;
    polyattn_buffer *buf_in[N_IN], *buf_out[N_OUT], *workspace, *bwd_workspace;
    polyattn_event *ev_start, *ev_end, *ev_bwd_end;
    void *staging;
    float *host_out[N_OUT];
    pa_cli_variants var;
    pa_cli_serving serving;
    polyattn_extra_tensors extra;
} run_state;

static void run_cleanup(run_state *s)
{
    for (int i = 0; i < N_OUT; i++) {
        if (s->out_open[i]) pa_outfile_discard(&s->out[i]);
        free(s->host_out[i]);
        polyattn_buffer_free(s->buf_out[i]);
    }
    for (int i = 0; i < N_IN; i++) {
        pa_npy_free(&s->in[i]);
        polyattn_buffer_free(s->buf_in[i]);
    }
    polyattn_buffer_free(s->workspace);
    polyattn_buffer_free(s->bwd_workspace);
    free(s->staging);
    polyattn_event_destroy(s->ev_start);
    polyattn_event_destroy(s->ev_end);
    polyattn_event_destroy(s->ev_bwd_end);
    pa_cli_variants_free(&s->var);
    pa_cli_serving_free(&s->serving);
    polyattn_plan_destroy(s->plan);
    polyattn_context_destroy(s->ctx);
}

static int mul_ok(uint64_t *acc, int64_t factor)
{
    if (factor <= 0 || *acc > UINT64_MAX / (uint64_t)factor) return 0;
    *acc *= (uint64_t)factor;
    return 1;
}

/* Element count of a shape, 0 on overflow. */
static uint64_t shape_count(const int64_t *shape, int rank)
{
    uint64_t n = 1;
    for (int i = 0; i < rank; i++)
        if (!mul_ok(&n, shape[i])) return 0;
    return n <= UINT64_MAX / 8 ? n : 0;
}

static const char *const in_opt[N_IN] = {"--q", "--k", "--v", "--grad-out"};
static const char *const in_layout[N_IN] = {
    "[batch, heads_q, seq_q, head_dim]", "[batch, heads_kv, seq_kv, head_dim]",
    "[batch, heads_kv, seq_kv, head_dim_v]", "[batch, heads_q, seq_q, head_dim_v]"};

static int read_inputs(run_state *s, const pa_cli_args *args, int serving, polyattn_dtype dtype)
{
    for (int i = 0; i < N_IN; i++) {
        const char *path = pa_cli_get(args, in_opt[i]);
        if (!path) continue; /* --grad-out without the backward */
        const int rc = pa_cli_read_input("run", in_opt[i], path, dtype, &s->in[i]);
        if (rc) return rc;
        if (s->in[i].rank != 4)
            return pa_cli_fail("run", "%s: expected rank 4 %s, got %d (%s)", in_opt[i],
                               in_layout[i], s->in[i].rank, path);
        for (int d = 0; d < 4; d++)
            if (s->in[i].shape[d] == 0 || s->in[i].shape[d] > INT32_MAX)
                return pa_cli_fail("run", "%s: dimension %d is %lld, expected 1 to 2^31-1 (%s)",
                                   in_opt[i], d, (long long)s->in[i].shape[d], path);
    }
    const int64_t *q = s->in[IN_Q].shape, *k = s->in[IN_K].shape, *v = s->in[IN_V].shape;
    const char *kp = pa_cli_get(args, "--k"), *vp = pa_cli_get(args, "--v");
    if (k[0] != q[0] && !serving)
        return pa_cli_fail("run", "--k: batch is %lld but --q has %lld (%s)", (long long)k[0],
                           (long long)q[0], kp);
    if (v[0] != q[0] && !serving)
        return pa_cli_fail("run", "--v: batch is %lld but --q has %lld (%s)", (long long)v[0],
                           (long long)q[0], vp);
    if (k[3] != q[3])
        return pa_cli_fail("run", "--k: head_dim is %lld but --q has %lld (%s)", (long long)k[3],
                           (long long)q[3], kp);
    if (v[1] != k[1])
        return pa_cli_fail("run", "--v: heads_kv is %lld but --k has %lld (%s)", (long long)v[1],
                           (long long)k[1], vp);
    if (v[2] != k[2])
        return pa_cli_fail("run", "--v: seq_kv is %lld but --k has %lld (%s)", (long long)v[2],
                           (long long)k[2], vp);
    if (q[1] % k[1] != 0)
        return pa_cli_fail("run", "--k: heads_kv %lld does not divide --q's heads_q %lld (%s)",
                           (long long)k[1], (long long)q[1], kp);
    if (s->in[IN_DO].data) {
        const int64_t *g = s->in[IN_DO].shape, want[4] = {q[0], q[1], q[2], v[3]};
        for (int d = 0; d < 4; d++)
            if (g[d] != want[d])
                return pa_cli_fail(
                    "run",
                    "--grad-out: shape [%lld, %lld, %lld, %lld] is not O's "
                    "[batch, heads_q, seq_q, head_dim_v] = [%lld, %lld, %lld, %lld] (%s)",
                    (long long)g[0], (long long)g[1], (long long)g[2], (long long)g[3],
                    (long long)want[0], (long long)want[1], (long long)want[2], (long long)want[3],
                    pa_cli_get(args, "--grad-out"));
    }
    return 0;
}

/* LSE, probabilities and the variants' gradients are float32; O is --out-dtype (the device
 * dtype, or bf16 from e4m3 inputs); the rest the device dtype. */
static polyattn_dtype out_dtype(int out, const pa_cli_common *c)
{
    return out == OUT_LSE || out == OUT_PROBS || out == OUT_DBIAS || out == OUT_DSINKS
               ? POLYATTN_DTYPE_F32
           : out == OUT_O ? c->out_dtype
                          : c->dtype;
}

static void json_shape(const char *key, const int64_t *shape, int rank, int present)
{
    printf("\"%s\": ", key);
    if (!present) {
        printf("null");
        return;
    }
    printf("[");
    for (int i = 0; i < rank; i++)
        printf("%s%lld", i ? ", " : "", (long long)shape[i]);
    printf("]");
}

static void print_result(const pa_cli_args *args, const run_state *s,
                         const polyattn_device_info *dev, const polyattn_plan_info *info,
                         polyattn_dtype dtype, polyattn_dtype o_dtype, polyattn_mask mask,
                         double scale, double ms, double backward_ms, int64_t warmup,
                         int64_t out_shape[N_OUT][4], const int *out_rank, const int *want)
{
    static const char *const in_key[N_IN] = {"q", "k", "v", "grad_out"};
    static const char *const out_key[N_OUT] = {"o",  "lse",   "probs",  "dq", "dk",
                                               "dv", "dbias", "dsinks", "k",  "v"};
    static const char *const out_opt[N_OUT] = {"--out",   "--lse",  "--probs", "--dq",
                                               "--dk",    "--dv",   "--dbias", "--dsinks",
                                               "--out-k", "--out-v"};
    const int backward = want[OUT_DQ];
    if (!pa_cli_has(args, "--json")) {
        char ws[32];
        printf("%s:%d (%s): %s %s, %.3f ms, workspace %s", polyattn_backend_name(info->backend),
               dev->index, dev->name, polyattn_algo_name(info->algo), polyattn_dtype_name(dtype),
               ms, pa_cli_bytes_human(info->workspace_bytes, ws));
        if (backward)
            printf("; backward %.3f ms, workspace %s", backward_ms,
                   pa_cli_bytes_human(info->backward_workspace_bytes, ws));
        if (pa_cli_variants_any(&s->var)) {
            char vars[512];
            pa_cli_variants_describe(&s->var, vars, sizeof vars);
            printf("; %s", vars);
        }
        char layout[128];
        pa_cli_layout_describe(info, layout, sizeof layout);
        printf("; %s", layout);
        printf("; wrote");
        for (int i = 0; i < N_OUT; i++)
            if (want[i]) printf(" %s", pa_cli_get(args, out_opt[i]));
        printf("\n");
        return;
    }
    printf("{\"backend\": \"%s\", \"device_index\": %d, \"device\": ",
           polyattn_backend_name(info->backend), dev->index);
    pa_json_string(stdout, dev->name);
    printf(", \"algo\": \"%s\", \"dtype\": \"%s\", \"out_dtype\": \"%s\", \"mask\": \"%s\", "
           "\"scale\": ",
           polyattn_algo_name(info->algo), polyattn_dtype_name(dtype), polyattn_dtype_name(o_dtype),
           polyattn_mask_name(mask));
    pa_json_number(stdout, scale);
    pa_cli_variants_json(stdout, &s->var);
    pa_cli_layout_json(stdout, info);
    printf(", \"num_seqs\": %lld", (long long)s->serving.num_seqs);
    printf(", \"ms\": ");
    pa_json_number(stdout, ms);
    printf(", \"warmup\": %lld", (long long)warmup);
    printf(", \"backward_ms\": ");
    if (backward) pa_json_number(stdout, backward_ms);
    else printf("null");
    printf(", \"backward_workspace_bytes\": %llu",
           (unsigned long long)info->backward_workspace_bytes);
    printf(", \"workspace_bytes\": %llu, \"device_bytes\": %llu, \"flops\": ",
           (unsigned long long)info->workspace_bytes, (unsigned long long)info->device_bytes);
    pa_json_number(stdout, info->flops);
    printf(", \"min_bytes_moved\": ");
    pa_json_number(stdout, info->min_bytes_moved);
    printf(", \"kernel_launches\": %d, \"reason\": ", info->kernel_launches);
    pa_json_string(stdout, info->reason);
    printf(", \"shapes\": {");
    for (int i = 0; i < N_IN; i++) {
        json_shape(in_key[i], s->in[i].shape, 4, s->in[i].data != NULL);
        printf(", ");
    }
    for (int i = 0; i < N_OUT; i++) {
        json_shape(out_key[i], out_shape[i], out_rank[i], want[i]);
        printf(i + 1 < N_OUT ? ", " : "}");
    }
    printf(", \"outputs\": {");
    for (int i = 0; i < N_OUT; i++) {
        printf("\"%s\": ", out_key[i]);
        if (want[i]) pa_json_string(stdout, pa_cli_get(args, out_opt[i]));
        else printf("null");
        printf(i + 1 < N_OUT ? ", " : "}");
    }
    printf("}\n");
}

static polyattn_status run_forward(run_state *s)
{
    return polyattn_forward_ex(s->plan, s->buf_in[IN_Q], s->buf_in[IN_K], s->buf_in[IN_V],
                               s->buf_out[OUT_O], s->buf_out[OUT_LSE], s->buf_out[OUT_PROBS],
                               s->workspace, &s->extra);
}

static polyattn_status run_backward(run_state *s)
{
    s->extra.d_bias = s->buf_out[OUT_DBIAS];
    s->extra.d_sinks = s->buf_out[OUT_DSINKS];
    return polyattn_backward_ex(s->plan, s->buf_in[IN_Q], s->buf_in[IN_K], s->buf_in[IN_V],
                                s->buf_out[OUT_O], s->buf_in[IN_DO], s->buf_out[OUT_LSE],
                                s->buf_out[OUT_DQ], s->buf_out[OUT_DK], s->buf_out[OUT_DV],
                                s->bwd_workspace, &s->extra);
}

int pa_cmd_run(int argc, char **argv)
{
    static const pa_cli_opt spec[] = {
        {"--q", 1},
        {"--k", 1},
        {"--v", 1},
        {"--out", 1},
        {"--lse", 1},
        {"--probs", 1},
        {"--backend", 1},
        {"--device", 1},
        {"--algo", 1},
        {"--dtype", 1},
        PA_CLI_FP8_OPTIONS,
        {"--causal", 1},
        {"--scale", 1},
        {"--memory-budget", 1},
        {"--json", 0},
        {"--warmup", 1},
        {"--grad-out", 1},
        {"--dq", 1},
        {"--dk", 1},
        {"--dv", 1},
        {"--window", 1},
        {"--softcap", 1},
        {"--alibi", 1},
        {"--bias", 1},
        {"--bias-dtype", 1},
        {"--mask", 1},
        {"--sinks", 1},
        {"--dbias", 1},
        {"--dsinks", 1},
        {"--cu-seqlens-q", 1},
        {"--cu-seqlens-kv", 1},
        {"--cache-seqlens", 1},
        {"--block-table", 1},
        {"--k-new", 1},
        {"--v-new", 1},
        {"--out-k", 1},
        {"--out-v", 1},
        {"--max-seqlen-q", 1},
        {"--max-seqlen-kv", 1},
        {"--num-splits", 1},
        {"--check-inputs", 0},
    };
    pa_cli_args args;
    if (pa_cli_parse(&args, "run", spec, (int)(sizeof spec / sizeof spec[0]), argc, argv))
        return PA_EXIT_USAGE;
    if (args.help) {
        fputs(usage, stdout);
        return PA_EXIT_OK;
    }
    pa_cli_common common;
    double scale = 0;
    if (pa_cli_require(&args, "--q") || pa_cli_require(&args, "--k") ||
        pa_cli_require(&args, "--v") || pa_cli_require(&args, "--out") ||
        pa_cli_get_common(&args, &common) || pa_cli_get_scale(&args, &scale))
        return PA_EXIT_USAGE;
    int64_t warmup = -1; /* default: 1, or 0 on the host backend */
    if (pa_cli_get_i64(&args, "--warmup", 0, 1000, &warmup)) return PA_EXIT_USAGE;
    /* Flash never forms the probability matrix, on any backend: asking for both is a usage
     * error, not a device failure. */
    if (pa_cli_has(&args, "--probs") && common.algo == POLYATTN_ALGO_FLASH)
        return pa_cli_fail("run", "--probs: the flash algorithm never forms the probability "
                                  "matrix (use --algo unfused, fused or auto)");

    /* The backward's four options go together: name the first one missing. */
    static const char *const bwd_opt[4] = {"--grad-out", "--dq", "--dk", "--dv"};
    int n_bwd = 0;
    for (int i = 0; i < 4; i++)
        n_bwd += pa_cli_has(&args, bwd_opt[i]);
    for (int i = 0; i < 4 && n_bwd > 0 && n_bwd < 4; i++)
        if (!pa_cli_has(&args, bwd_opt[i]))
            return pa_cli_fail("run",
                               "%s: required for the backward (--grad-out, --dq, --dk "
                               "and --dv go together)",
                               bwd_opt[i]);
    const int backward = n_bwd == 4;
    if (backward && common.dtype == POLYATTN_DTYPE_E4M3)
        return pa_cli_fail("run", "--grad-out: e4m3 inputs are forward only");
    static const char *const extra_grads[2] = {"--dbias", "--dsinks"};
    for (int i = 0; i < 2; i++)
        if (pa_cli_has(&args, extra_grads[i]) && !backward)
            return pa_cli_fail("run", "%s: needs the backward (--grad-out, --dq, --dk, --dv)",
                               extra_grads[i]);
    if (pa_cli_has(&args, "--dbias") && !pa_cli_has(&args, "--bias"))
        return pa_cli_fail("run", "--dbias: needs --bias");
    if (pa_cli_has(&args, "--dsinks") && !pa_cli_has(&args, "--sinks"))
        return pa_cli_fail("run", "--dsinks: needs --sinks");

    static const char *const out_opt[N_OUT] = {"--out",   "--lse",  "--probs", "--dq",
                                               "--dk",    "--dv",   "--dbias", "--dsinks",
                                               "--out-k", "--out-v"};
    const char *out_path[N_OUT];
    int want[N_OUT];
    /* An output must not be an input, nor another output: compared by file identity
     * (device and inode), so a symbolic or hard link to an input is caught too. */
    for (int i = 0; i < N_OUT; i++) {
        out_path[i] = pa_cli_get(&args, out_opt[i]);
        want[i] = out_path[i] != NULL;
        if (!want[i]) continue;
        const int n_plain = (int)(sizeof input_opts / sizeof input_opts[0]);
        for (int j = 0; j < n_plain + pa_cli_serving_n_inputs; j++) {
            const char *opt = j < n_plain ? input_opts[j] : pa_cli_serving_inputs[j - n_plain];
            const char *in = pa_cli_get(&args, opt);
            if (in && pa_cli_same_file(out_path[i], in))
                return pa_cli_fail("run",
                                   "%s: '%s' is the input %s ('%s'): it would be "
                                   "overwritten",
                                   out_opt[i], out_path[i], opt, in);
        }
        for (int j = 0; j < i; j++)
            if (want[j] && pa_cli_same_file(out_path[i], out_path[j]))
                return pa_cli_fail("run", "%s: same file as %s ('%s')", out_opt[i], out_opt[j],
                                   out_path[i]);
    }

    run_state s;
    memset(&s, 0, sizeof s);
    int rc = pa_cli_get_variant_options(&args, &s.var);
    if (!rc) rc = pa_cli_get_serving_options(&args, &s.serving);
    if (rc) goto done;
    const int serving = s.serving.on;
    if (serving) {
        /* Their [seq_q, seq_kv] shapes have no per-sequence meaning. */
        static const char *const dense_only[3] = {"--probs", "--bias", "--mask"};
        for (int i = 0; i < 3; i++)
            if (pa_cli_has(&args, dense_only[i])) {
                rc = pa_cli_fail("run",
                                 "%s: not with the serving layouts (--cu-seqlens-q/-kv, "
                                 "--cache-seqlens, --block-table)",
                                 dense_only[i]);
                goto done;
            }
        if (backward && s.serving.kv_layout != POLYATTN_KV_DENSE &&
            s.serving.kv_layout != POLYATTN_KV_VARLEN) {
            rc = pa_cli_fail("run", "--grad-out: the backward takes dense or varlen layouts "
                                    "only (a KV cache is inference only)");
            goto done;
        }
    }
    s.serving.dtype = common.dtype;
    rc = read_inputs(&s, &args, serving, common.dtype);
    if (rc) goto done;

    const int64_t *qs = s.in[IN_Q].shape, *ks = s.in[IN_K].shape, *vs = s.in[IN_V].shape;
    int64_t batch = qs[0], heads_q = qs[1], seq_q = qs[2], head_dim = qs[3];
    int64_t heads_kv = ks[1], seq_kv = ks[2], head_dim_v = vs[3];
    if (serving && (rc = pa_cli_load_serving(&args, qs, ks, vs, &s.serving))) goto done;
    polyattn_attention_desc desc;
    polyattn_attention_desc_init(&desc, common.dtype, batch, heads_q, heads_kv, seq_q, seq_kv,
                                 head_dim, head_dim_v);
    /* K and V as the files hold them (a packed, cached or paged batch of their own). */
    polyattn_tensor_desc_bhsd(&desc.k, common.dtype, ks[0], heads_kv, seq_kv, head_dim);
    polyattn_tensor_desc_bhsd(&desc.v, common.dtype, vs[0], heads_kv, seq_kv, head_dim_v);
    desc.scale = (float)scale;
    desc.mask = common.mask;
    /* Per-sequence ALiBi slopes count sequences, not q's batch of 1 when packed. */
    rc = pa_cli_load_variants(&args, serving ? s.serving.num_seqs : batch, heads_q, seq_q, seq_kv,
                              &s.var);
    if (rc) goto done;
    pa_cli_variants_apply(&s.var, &desc);
    pa_cli_serving_apply(&s.serving, &desc, common.dtype);
    pa_cli_common_apply(&common, &desc);
    const char *why = NULL;
    polyattn_status st = polyattn_attention_desc_validate(&desc, &why);
    if (st != POLYATTN_STATUS_SUCCESS) {
        rc = pa_cli_fail_code(pa_cli_status_exit(st), "run", "inputs: %s",
                              why ? why : polyattn_status_string(st));
        goto done;
    }

    int64_t out_shape[N_OUT][4] = {
        {batch, heads_q, seq_q, head_dim_v},
        {batch, heads_q, seq_q, 0},
        {batch, heads_q, seq_q, seq_kv},
        {batch, heads_q, seq_q, head_dim},
        {ks[0], heads_kv, seq_kv, head_dim},
        {vs[0], heads_kv, seq_kv, head_dim_v},
        {s.var.bias_shape[0], s.var.bias_shape[1], s.var.bias_shape[2], s.var.bias_shape[3]},
        {heads_q, 0, 0, 0},
        {ks[0], heads_kv, seq_kv, head_dim},
        {vs[0], heads_kv, seq_kv, head_dim_v}};
    int out_rank[N_OUT] = {4, 3, 4, 4, 4, 4, 4, 1, 4, 4};
    if (s.serving.varlen_q) { /* FlashAttention's varlen LSE: [heads_q, total_q] */
        out_shape[OUT_LSE][0] = heads_q;
        out_shape[OUT_LSE][1] = seq_q;
        out_rank[OUT_LSE] = 2;
    }
    /* Device buffers: what is written, plus the LSE the backward reads even without --lse. */
    int need[N_OUT];
    for (int i = 0; i < N_OUT; i++)
        need[i] = (want[i] && i != OUT_K && i != OUT_V) || (i == OUT_LSE && backward) ||
                  (i == OUT_DSINKS && backward && s.var.has_sinks);
    uint64_t out_count[N_OUT];
    for (int i = 0; i < N_OUT; i++) {
        out_count[i] = shape_count(out_shape[i], out_rank[i]);
        if (want[i] && out_count[i] == 0) {
            rc = pa_cli_fail("run", "%s: output tensor too large", out_opt[i]);
            goto done;
        }
    }

    /* Create the output files now, so that a bad path fails before any device work. */
    for (int i = 0; i < N_OUT; i++) {
        if (!want[i]) continue;
        rc = pa_outfile_open(&s.out[i], "run", out_opt[i], out_path[i]);
        if (rc) goto done;
        s.out_open[i] = 1;
    }

    rc = pa_cli_open_context("run", &common, &s.ctx);
    if (rc) goto done;

    if (warmup < 0) warmup = polyattn_context_backend(s.ctx) == POLYATTN_BACKEND_HOST ? 0 : 1;

    polyattn_plan_options opts;
    polyattn_plan_options_init(&opts);
    opts.algo = common.algo;
    opts.memory_budget_bytes = common.memory_budget_bytes;
    opts.want_lse = want[OUT_LSE];
    opts.want_probs = want[OUT_PROBS];
    opts.want_backward = backward;
    opts.want_bias_grad = want[OUT_DBIAS];
    pa_cli_serving_plan_options(&s.serving, &opts);
    st = polyattn_plan_create(s.ctx, &desc, &opts, &s.plan);
    if (st != POLYATTN_STATUS_SUCCESS) {
        s.plan = NULL;
        rc = pa_cli_fail_status("run", s.ctx, st, "plan");
        goto done;
    }
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    polyattn_device_info dev;
    memset(&dev, 0, sizeof dev);
    dev.struct_size = sizeof dev;
    if ((st = polyattn_plan_get_info(s.plan, &info)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_context_get_device_info(s.ctx, &dev)) != POLYATTN_STATUS_SUCCESS) {
        rc = pa_cli_fail_status("run", s.ctx, st, "plan info");
        goto done;
    }

    /* Inputs: convert to the device dtype and upload. */
    size_t esize = polyattn_dtype_size(common.dtype);
    uint64_t max_count = 0;
    for (int i = 0; i < N_IN; i++)
        max_count = s.in[i].count > max_count ? s.in[i].count : max_count;
    for (int i = 0; i < N_OUT; i++)
        if (need[i] && out_count[i] > max_count) max_count = out_count[i];
    s.staging = malloc(max_count * 4);
    if (!s.staging) {
        rc = pa_cli_fail_code(PA_EXIT_RUNTIME, "run", "out of host memory");
        goto done;
    }
    for (int i = 0; i < N_IN; i++) {
        if (!s.in[i].data) continue;
        uint64_t bytes = s.in[i].count * esize;
        if ((st = polyattn_buffer_alloc(s.ctx, bytes, &s.buf_in[i])) != POLYATTN_STATUS_SUCCESS) {
            s.buf_in[i] = NULL;
            rc = pa_cli_fail_status("run", s.ctx, st, in_opt[i]);
            goto done;
        }
        pa_cli_from_f32(common.dtype, s.in[i].data, s.staging, s.in[i].count);
        if ((st = polyattn_buffer_write(s.buf_in[i], 0, s.staging, bytes)) !=
            POLYATTN_STATUS_SUCCESS) {
            rc = pa_cli_fail_status("run", s.ctx, st, in_opt[i]);
            goto done;
        }
    }
    const char *what = "";
    if ((st = pa_cli_variants_upload(s.ctx, &s.var, &s.extra, &what)) != POLYATTN_STATUS_SUCCESS ||
        (st = pa_cli_serving_upload(s.ctx, &s.serving, common.dtype, &s.extra, &what)) !=
            POLYATTN_STATUS_SUCCESS) {
        rc = pa_cli_fail_status("run", s.ctx, st, what);
        goto done;
    }
    /* Outputs (poisoned below, just before the timed call). */
    for (int i = 0; i < N_OUT; i++) {
        if (!need[i]) continue;
        polyattn_dtype odt = out_dtype(i, &common);
        uint64_t bytes = out_count[i] * polyattn_dtype_size(odt);
        if ((st = polyattn_buffer_alloc(s.ctx, bytes, &s.buf_out[i])) != POLYATTN_STATUS_SUCCESS) {
            s.buf_out[i] = NULL;
            rc = pa_cli_fail_status("run", s.ctx, st, out_opt[i]);
            goto done;
        }
        s.host_out[i] = malloc(out_count[i] * 4);
        if (!s.host_out[i]) {
            rc = pa_cli_fail_code(PA_EXIT_RUNTIME, "run", "out of host memory");
            goto done;
        }
    }
    if (info.workspace_bytes > 0 &&
        (st = polyattn_buffer_alloc(s.ctx, info.workspace_bytes, &s.workspace)) !=
            POLYATTN_STATUS_SUCCESS) {
        s.workspace = NULL;
        rc = pa_cli_fail_status("run", s.ctx, st, "workspace");
        goto done;
    }
    if (backward && info.backward_workspace_bytes > 0 &&
        (st = polyattn_buffer_alloc(s.ctx, info.backward_workspace_bytes, &s.bwd_workspace)) !=
            POLYATTN_STATUS_SUCCESS) {
        s.bwd_workspace = NULL;
        rc = pa_cli_fail_status("run", s.ctx, st, "backward workspace");
        goto done;
    }

    /* Untimed calls first: the first call of a process pays one-time costs (module and
     * kernel loading, vendor library handles) that are not the attention's. */
    for (int64_t i = 0; i < warmup; i++) {
        if ((st = run_forward(&s)) != POLYATTN_STATUS_SUCCESS) {
            rc = pa_cli_fail_status("run", s.ctx, st, "forward");
            goto done;
        }
        if (backward && (st = run_backward(&s)) != POLYATTN_STATUS_SUCCESS) {
            rc = pa_cli_fail_status("run", s.ctx, st, "backward");
            goto done;
        }
    }
    /* Outputs poisoned with NaN before the call that counts, so that an element the
     * library forgot shows. */
    for (int i = 0; i < N_OUT; i++) {
        if (!need[i]) continue;
        polyattn_dtype odt = out_dtype(i, &common);
        uint64_t bytes = out_count[i] * polyattn_dtype_size(odt);
        float *f = s.staging;
        for (uint64_t e = 0; e < out_count[i]; e++)
            f[e] = NAN;
        pa_cli_from_f32(odt, f, s.staging, out_count[i]);
        if ((st = polyattn_buffer_write(s.buf_out[i], 0, s.staging, bytes)) !=
            POLYATTN_STATUS_SUCCESS) {
            rc = pa_cli_fail_status("run", s.ctx, st, out_opt[i]);
            goto done;
        }
    }

    double ms = 0;
    if ((st = polyattn_event_create(s.ctx, &s.ev_start)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_event_create(s.ctx, &s.ev_end)) != POLYATTN_STATUS_SUCCESS) {
        rc = pa_cli_fail_status("run", s.ctx, st, "event");
        goto done;
    }
    if ((st = polyattn_event_record(s.ev_start)) != POLYATTN_STATUS_SUCCESS ||
        (st = run_forward(&s)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_event_record(s.ev_end)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_event_elapsed_ms(s.ev_start, s.ev_end, &ms)) != POLYATTN_STATUS_SUCCESS ||
        (st = polyattn_context_synchronize(s.ctx)) != POLYATTN_STATUS_SUCCESS) {
        rc = pa_cli_fail_status("run", s.ctx, st, "forward");
        goto done;
    }
    /* The backward, timed on its own from the end of the forward. */
    double backward_ms = 0;
    if (backward &&
        ((st = polyattn_event_create(s.ctx, &s.ev_bwd_end)) != POLYATTN_STATUS_SUCCESS ||
         (st = run_backward(&s)) != POLYATTN_STATUS_SUCCESS ||
         (st = polyattn_event_record(s.ev_bwd_end)) != POLYATTN_STATUS_SUCCESS ||
         (st = polyattn_event_elapsed_ms(s.ev_end, s.ev_bwd_end, &backward_ms)) !=
             POLYATTN_STATUS_SUCCESS ||
         (st = polyattn_context_synchronize(s.ctx)) != POLYATTN_STATUS_SUCCESS)) {
        rc = pa_cli_fail_status("run", s.ctx, st, "backward");
        goto done;
    }

    for (int i = 0; i < N_OUT; i++) {
        if (!want[i]) continue;
        /* The caches after the append are K and V in the device dtype. */
        int cache = i == OUT_K || i == OUT_V;
        polyattn_dtype odt = cache ? common.dtype : out_dtype(i, &common);
        const polyattn_buffer *src = cache ? s.buf_in[i == OUT_K ? IN_K : IN_V] : s.buf_out[i];
        if (cache && !s.host_out[i] && !(s.host_out[i] = malloc(out_count[i] * 4))) {
            rc = pa_cli_fail_code(PA_EXIT_RUNTIME, "run", "out of host memory");
            goto done;
        }
        uint64_t bytes = out_count[i] * polyattn_dtype_size(odt);
        if ((st = polyattn_buffer_read(src, 0, s.staging, bytes)) != POLYATTN_STATUS_SUCCESS) {
            rc = pa_cli_fail_status("run", s.ctx, st, out_opt[i]);
            goto done;
        }
        pa_cli_to_f32(odt, s.staging, s.host_out[i], out_count[i]);
        rc = pa_outfile_write_npy(&s.out[i], "run", s.host_out[i], out_rank[i], out_shape[i]);
        if (rc) goto done;
    }
    for (int i = 0; i < N_OUT; i++) {
        if (!want[i]) continue;
        rc = pa_outfile_commit(&s.out[i], "run");
        if (rc) goto done;
        s.out_open[i] = 0;
    }

    double used_scale = scale > 0 ? (double)(float)scale : 1.0 / sqrt((double)head_dim);
    print_result(&args, &s, &dev, &info, common.dtype, common.out_dtype, common.mask, used_scale,
                 ms, backward_ms, warmup, out_shape, out_rank, want);
    rc = PA_EXIT_OK;
done:
    run_cleanup(&s);
    return rc;
}
