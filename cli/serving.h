/*
 * The serving layouts on the command line (polyattn run): varlen queries and keys
 * (--cu-seqlens-q, --cu-seqlens-kv), a dense KV cache (--cache-seqlens), a paged one
 * (--block-table), KV append (--k-new, --v-new), the hints (--max-seqlen-q/-kv) and the
 * plan options (--num-splits, --check-inputs).  Offsets, lengths and block indices are int32
 * .npy files, checked on the host before any device work so that each error names its
 * option; the tensors keep the tool's BHSD convention (packed tensors have batch 1).
 */
#ifndef PA_CLI_SERVING_H
#define PA_CLI_SERVING_H

#include "cli.h"
#include "npy.h"

typedef struct pa_cli_serving {
    int on;               /* any serving option given */
    polyattn_dtype dtype; /* the inputs' (k_new/v_new: uint8 .npy of raw bytes with e4m3) */
    int varlen_q;
    polyattn_kv_layout kv_layout;
    int64_t num_seqs;
    int64_t max_seqlen_q, max_seqlen_kv; /* 0: from the tensors */
    int64_t num_splits;                  /* 0: the plan's choice */
    int check_inputs;
    int append;
    int64_t block_size, max_blocks, seq_new;
    pa_npy_array cu_q, cu_kv, seqused, table; /* int32 */
    pa_npy_array k_new, v_new;                /* float32 [num_seqs, heads_kv, seq_new, d] */
    polyattn_buffer *buf_cu_q, *buf_cu_kv, *buf_seqused, *buf_table, *buf_k_new, *buf_v_new;
} pa_cli_serving;

/* Every file option of the serving layouts (for the check that no output overwrites one). */
extern const char *const pa_cli_serving_inputs[];
extern const int pa_cli_serving_n_inputs;

/* The options alone: numbers, which go together, which exclude each other. */
int pa_cli_get_serving_options(const pa_cli_args *args, pa_cli_serving *s);
/* Reads the int32 files and k_new/v_new, checks them against q [q0, hq, total_q, d],
 * k [k0, hkv, rows, d] and v (shapes and values: offsets non-decreasing within the rows,
 * lengths within the cache, block indices within the blocks).  Returns 0 or 2. */
int pa_cli_load_serving(const pa_cli_args *args, const int64_t *q, const int64_t *k,
                        const int64_t *v, pa_cli_serving *s);
/* Sets the descriptor's serving members (q, k, v, o already described as the files). */
void pa_cli_serving_apply(const pa_cli_serving *s, polyattn_attention_desc *desc,
                          polyattn_dtype dtype);
void pa_cli_serving_plan_options(const pa_cli_serving *s, polyattn_plan_options *opts);
/* Uploads the int32 tensors and k_new/v_new (in dtype) into *extra. */
polyattn_status pa_cli_serving_upload(polyattn_context *ctx, pa_cli_serving *s,
                                      polyattn_dtype dtype, polyattn_extra_tensors *extra,
                                      const char **what);
void pa_cli_serving_free(pa_cli_serving *s);

/* "dense", "varlen", "cache", "paged". */
const char *pa_cli_kv_layout_name(polyattn_kv_layout layout);
/* "varlen q, kv paged (block 16), 4 splits" from plan info. */
void pa_cli_layout_describe(const polyattn_plan_info *info, char *buf, size_t size);
/* ", \"layout\": {...}, \"num_splits\": N" from plan info. */
void pa_cli_layout_json(FILE *out, const polyattn_plan_info *info);

#endif /* PA_CLI_SERVING_H */
