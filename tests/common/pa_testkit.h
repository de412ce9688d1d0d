/*
 * polyattn_testkit: what the tests and the bench share.
 *
 *   - the ONE case table (conformance runs it, the bench validates and times it);
 *   - seeded random inputs (fresh per case), NaN poison, dtype conversions written here
 *     independently of the core's, so that tests can cross-check the core's;
 *   - a run helper: one case on one (context, algo, dtype) through the public API,
 *     compared element by element with the host UNFUSED reference computed in double on
 *     the same rounded inputs.
 */
#ifndef PA_TESTKIT_H
#define PA_TESTKIT_H

#include "polyattn.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Exit status of a test whose device is absent (CTest SKIP_RETURN_CODE). */
#define PA_TK_SKIP 77

typedef enum pa_tk_layout {
    PA_TK_BHSD = 0,    /* contiguous [batch, heads, seq, head_dim] */
    PA_TK_BSHD = 1,    /* contiguous [batch, seq, heads, head_dim]: heads interleaved */
    PA_TK_BSHD_PAD = 2 /* BSHD with 3 unused elements after each (batch, seq) row: gaps
                           that inputs fill with NaN and outputs must leave untouched */
} pa_tk_layout;

/* Score variants of a case (include/polyattn.h); their tensors are drawn by
 * pa_tk_problem_init and passed through polyattn_forward_ex/backward_ex. */
typedef enum pa_tk_score_shape {
    PA_TK_SCORE_NONE = 0,
    PA_TK_SCORE_FULL = 1,   /* [batch, heads_q, seq_q, seq_kv] packed */
    PA_TK_SCORE_SHARED = 2, /* [1, 1, seq_q, seq_kv], stride 0 on the broadcast dimensions */
    PA_TK_SCORE_BATCH = 3,  /* [batch, 1, seq_q, seq_kv] */
    PA_TK_SCORE_HEADS = 4   /* [1, heads_q, seq_q, seq_kv], rows padded by 3 elements */
} pa_tk_score_shape;

typedef struct pa_tk_variants {
    int has_window;
    int64_t window_left, window_right;
    float softcap;
    polyattn_alibi alibi;   /* slopes uniform in [0.05, 0.5] */
    pa_tk_score_shape bias; /* values uniform in [-2, 2], a few -inf */
    polyattn_dtype bias_dtype;
    pa_tk_score_shape attn_mask; /* about one pair in five masked */
    int sinks;                   /* logits uniform in [-1, 3] */
} pa_tk_variants;

typedef struct pa_tk_case {
    const char *name;
    int64_t batch, heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v;
    polyattn_mask mask;
    pa_tk_layout layout;
    float scale;     /* 0: 1/sqrt(head_dim) */
    float magnitude; /* inputs are uniform in [-magnitude, magnitude] */
    /* "Must support" (chosen by the lead): on GPU backends flash must run the case; on
     * every backend at least one algorithm must. */
    int must_support;
} pa_tk_case;

/* The score variants of a case of the table (looked up by name: the cases' initializers
 * stay as they are), or NULL.  A backend without a variant reports UNSUPPORTED for its
 * cases, which is not a failure (they are not "must support"). */
const pa_tk_variants *pa_tk_case_variants(const pa_tk_case *c);

/* The case table; *count receives its length. */
const pa_tk_case *pa_tk_cases(size_t *count);
/* The case named name, or NULL. */
const pa_tk_case *pa_tk_find_case(const char *name);
const char *pa_tk_layout_name(pa_tk_layout layout);

/* Descriptor of a case in a dtype (scale and mask included). */
void pa_tk_case_desc(const pa_tk_case *c, polyattn_dtype dtype, polyattn_attention_desc *desc);
/* A bias or attn_mask of a case in a broadcast shape. */
void pa_tk_score_desc(polyattn_tensor_desc *t, polyattn_dtype dtype, pa_tk_score_shape shape,
                      const pa_tk_case *c);
/* Strides of one tensor [batch, heads, seq, dim] in a layout. */
void pa_tk_tensor_desc(polyattn_tensor_desc *t, polyattn_dtype dtype, pa_tk_layout layout,
                       int64_t batch, int64_t heads, int64_t seq, int64_t dim);

/* ---- random numbers and conversions ---- */

/* splitmix64: a seed per case, tiny state, good enough statistics for test data. */
typedef struct pa_tk_rng {
    uint64_t state;
} pa_tk_rng;
void pa_tk_rng_seed(pa_tk_rng *rng, uint64_t seed);
uint64_t pa_tk_rng_next(pa_tk_rng *rng);
/* Uniform in [-1, 1). */
double pa_tk_rng_uniform(pa_tk_rng *rng);
/* A 64-bit hash of a string mixed with a number (per-case seeds). */
uint64_t pa_tk_hash(const char *text, uint64_t salt);

uint16_t pa_tk_f32_to_f16(float x); /* round to nearest even, overflow to inf */
float pa_tk_f16_to_f32(uint16_t h);
uint16_t pa_tk_f32_to_bf16(float x); /* round to nearest even, NaN kept NaN */
float pa_tk_bf16_to_f32(uint16_t h);
/* x rounded to dtype and back (what a device sees). */
/* e4m3 (OCP e4m3fn), written apart from the library's: decoding from the format's formula,
 * encoding by a search over the finite codes (nearest, ties to the even code; beyond the
 * midpoint past 448 and NaN give NaN 0x7f with x's sign). */
float pa_tk_e4m3_to_f32(uint8_t x);
uint8_t pa_tk_f32_to_e4m3(float x);
float pa_tk_round(float x, polyattn_dtype dtype);
/* Encodes n floats into dst in dtype (n * dtype_size bytes) and decodes back. */
void pa_tk_encode(void *dst, const float *src, size_t n, polyattn_dtype dtype);
void pa_tk_decode(float *dst, const void *src, size_t n, polyattn_dtype dtype);
/* Fills n elements of dtype with a quiet-NaN poison pattern. */
void pa_tk_poison(void *dst, size_t n, polyattn_dtype dtype);

/* ---- tolerances ---- */

typedef struct pa_tk_tolerance {
    double o_rel;     /* |o - ref| <= o_rel * max|ref O| + cond (see pa_tk_numbers.c) */
    double lse_rel;   /* |lse - ref| <= lse_rel * max(1, |ref|) */
    double probs_abs; /* |p - ref| <= probs_abs + cond */
} pa_tk_tolerance;
pa_tk_tolerance pa_tk_tolerance_for(polyattn_dtype dtype);

/* ---- one case on one device ---- */

/* Inputs of one case in one dtype, their rounded f32 values, and (lazily) the reference. */
typedef struct pa_tk_problem {
    const pa_tk_case *c;
    polyattn_dtype dtype;
    polyattn_attention_desc desc;              /* in dtype */
    size_t q_elems, k_elems, v_elems, o_elems; /* elements each buffer spans, gaps included */
    size_t lse_elems, probs_elems;
    float *q, *k, *v;                   /* rounded values; NaN in gaps */
    void *q_data, *k_data, *v_data;     /* the same in dtype, ready to upload */
    unsigned char *o_gap;               /* 1 where an O element is a gap (never written) */
    float *ref_o, *ref_lse, *ref_probs; /* reference in the O layout; NULL until computed */
    double max_q, max_k, max_v;         /* max |input| (condition of the comparison) */
    /* The variants' tensors (NULL when the case has none), the same for device and
     * reference; score_extra bounds |alibi + bias| (condition of the scores). */
    float *slopes, *sinks;
    void *bias_data; /* in the case's bias dtype */
    unsigned char *attn_mask;
    size_t slopes_elems, bias_bytes, attn_mask_bytes, bias_grad_elems;
    double score_extra;
} pa_tk_problem;

/* Draws fresh inputs for the case (seed: pa_tk_hash of the name mixed with seed). */
polyattn_status pa_tk_problem_init(pa_tk_problem *p, const pa_tk_case *c, polyattn_dtype dtype,
                                   uint64_t seed);
void pa_tk_problem_free(pa_tk_problem *p);
/* Computes the reference with the host backend's unfused path in f32 storage on the
 * rounded inputs (double accumulation inside): O, LSE and probabilities. */
polyattn_status pa_tk_problem_reference(pa_tk_problem *p, char *err, size_t err_len);

typedef struct pa_tk_result {
    polyattn_status status; /* SUCCESS: ran and compared; else what failed */
    int planned;            /* 0: the plan was rejected (status says how), nothing ran */
    int pass;               /* ran and every element within tolerance */
    polyattn_algo algo;     /* the plan's algorithm */
    int checked_lse, checked_probs;
    double o_max_abs, o_max_rel; /* rel: divided by max|ref O| */
    double lse_max_abs, probs_max_abs;
    long long bad_elements; /* out of tolerance, NaN, or gap written */
    uint64_t workspace_bytes;
    char message[1024]; /* why it failed or was unsupported */
} pa_tk_result;

/* Plans the problem on ctx with algo (want_lse / want_probs as given), uploads fresh
 * inputs, poisons O, LSE, probabilities and the workspace, runs, reads back, and compares
 * every element (and that gaps and inputs are untouched) with the reference. */
polyattn_status pa_tk_run(polyattn_context *ctx, pa_tk_problem *p, polyattn_algo algo, int want_lse,
                          int want_probs, pa_tk_result *r);

/* ---- backward ---- */

typedef struct pa_tk_backward_result {
    polyattn_status status; /* SUCCESS: ran and compared; else what failed */
    int planned;            /* 0: the plan (want_backward) was rejected, nothing ran */
    int pass;               /* ran and every gradient element within tolerance */
    polyattn_algo algo;
    double dq_max_rel, dk_max_rel, dv_max_rel; /* max |g - ref| / max |ref| per tensor */
    double d_bias_max_rel, d_sinks_max_rel;    /* variants: 0 when the case has none */
    double tolerance;                          /* the relative tolerance applied */
    long long
        bad_elements; /* out of tolerance, NaN, masked row not 0, gap written, input modified */
    uint64_t workspace_bytes, backward_workspace_bytes;
    char message[1024];
} pa_tk_backward_result;

/* Gradients relative to the largest reference gradient of each tensor, per dtype. */
double pa_tk_backward_tolerance(polyattn_dtype dtype);

/* The backward of one case: draws a fresh dO (O's layout, rounded to the dtype), plans
 * with want_backward (and deterministic as given), uploads, poisons O, LSE, dQ, dK, dV and
 * both workspaces, runs the forward then the backward, and compares every element of dQ,
 * dK and dV with the host UNFUSED backward (exact, double inside) on the same rounded
 * inputs in f32 storage.  Also: fully masked rows give dQ = 0 exactly, gaps stay
 * untouched, inputs (q, k, v, dO) come back unchanged.  With variants: d_sinks, and d_bias
 * (want_bias_grad) are compared too. */
polyattn_status pa_tk_run_backward(polyattn_context *ctx, pa_tk_problem *p, polyattn_algo algo,
                                   int deterministic, pa_tk_backward_result *r);

/* Compares n values against a reference (NaN anywhere counts as bad).  Returns the number
 * of bad elements; *max_abs receives the largest |a - ref|. */
long long pa_tk_compare(const float *out, const float *ref, size_t n, double abs_tol,
                        double *max_abs);

/* The lazily created host context the references run on (freed by pa_tk_shutdown). */
polyattn_context *pa_tk_host_context(void);
void pa_tk_shutdown(void);

#ifdef __cplusplus
}
#endif
#endif /* PA_TESTKIT_H */
