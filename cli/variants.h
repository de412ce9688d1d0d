/*
 * The score variants on the command line (sliding window, softcap, ALiBi, additive bias,
 * boolean mask, sinks): parsing, .npy inputs for run, the descriptor's members, the
 * buffers of polyattn_extra_tensors, and how run and explain print them.
 */
#ifndef PA_CLI_VARIANTS_H
#define PA_CLI_VARIANTS_H

#include "cli.h"
#include "npy.h"

typedef struct pa_cli_variants {
    int has_window;
    int64_t window_left, window_right; /* -1: unbounded */
    double softcap;                    /* 0: off */
    polyattn_alibi alibi;
    int has_bias;
    polyattn_dtype bias_dtype;
    int64_t bias_shape[4]; /* [batch|1, heads_q|1, seq_q, seq_kv] */
    int has_mask;
    int64_t mask_shape[4];
    int has_sinks;
    /* run: the files' contents (slopes f32, bias f32, mask bytes, sinks f32) */
    pa_npy_array slopes, bias, mask, sinks;
    /* run: device buffers, then the struct the _ex calls take */
    polyattn_buffer *buf_slopes, *buf_bias, *buf_mask, *buf_sinks;
} pa_cli_variants;

/* --window L,R, --softcap C and --bias-dtype (each may be absent from the command's spec).
 * Returns 0 or PA_EXIT_USAGE (one line printed naming the option). */
int pa_cli_get_variant_options(const pa_cli_args *args, pa_cli_variants *v);
/* explain and bench: --alibi per-head|per-batch-head, --bias B,H and --mask B,H (the
 * extents of the batch and head dimensions: 1 broadcasts), --sinks. */
int pa_cli_get_variant_shapes(const pa_cli_args *args, int64_t batch, int64_t heads_q,
                              int64_t seq_q, int64_t seq_kv, pa_cli_variants *v);
/* run: --alibi SLOPES.npy, --bias B.npy, --mask M.npy, --sinks S.npy read and checked
 * against the problem. */
int pa_cli_load_variants(const pa_cli_args *args, int64_t batch, int64_t heads_q, int64_t seq_q,
                         int64_t seq_kv, pa_cli_variants *v);
/* Sets the descriptor's variant members (contiguous bias and mask). */
void pa_cli_variants_apply(const pa_cli_variants *v, polyattn_attention_desc *desc);
/* Uploads what was loaded (bias converted to bias_dtype) and fills *extra. */
polyattn_status pa_cli_variants_upload(polyattn_context *ctx, pa_cli_variants *v,
                                       polyattn_extra_tensors *extra, const char **what);
int pa_cli_variants_any(const pa_cli_variants *v);
void pa_cli_variants_free(pa_cli_variants *v);
/* "window (128, 0), softcap 30, alibi per-head, bias f16 [1, 8, 64, 64], ...", or "none". */
void pa_cli_variants_describe(const pa_cli_variants *v, char *buf, size_t size);
/* "variants": {...} members, without braces around the whole: ", \"variants\": {...}". */
void pa_cli_variants_json(FILE *out, const pa_cli_variants *v);

#endif /* PA_CLI_VARIANTS_H */
