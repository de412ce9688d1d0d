/*
 * The interface every backend fills in (host built in; cuda, hip and opencl as modules the
 * core loads at run time).  Internal: not installed, not part of the public ABI.
 */
#ifndef PA_BACKEND_H
#define PA_BACKEND_H

#include "polyattn.h"

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever this file changes incompatibly; a module built against another value
 * is refused at load time. */
/* 4: score variants; 5: merge_states, serving layouts; 6: key splits; 7: e4m3 inputs */
#define PA_BACKEND_ABI_VERSION 7
#define PA_MAX_SPLITS 128 /* polyattn_plan_options.num_splits */

/* A validated, normalized problem: what kernels see.  Strides are in elements. */
typedef struct pa_problem {
    polyattn_dtype dtype;
    int64_t batch, heads_q, heads_kv, seq_q, seq_kv, head_dim, head_dim_v;
    int64_t q_stride[4], k_stride[4], v_stride[4], o_stride[4];
    float scale; /* resolved: never 0 */
    polyattn_mask mask;
    int want_lse;   /* lse: f32 contiguous [batch, heads_q, seq_q] */
    int want_probs; /* probs: f32 contiguous [batch, heads_q, seq_q, seq_kv] */
    /* The plan also runs the backward (want_lse is then set too).  A check may reject a
     * problem whose backward it cannot run, as it does for want_probs. */
    int want_backward;
    int deterministic; /* backward: no atomics in the dQ accumulation */

    /* Score variants (polyattn_attention_desc; all off when zero).  Order of a score:
     * scale, softcap, + alibi + bias, then causal, window and attn_mask. */
    int has_window;
    int64_t window_left, window_right; /* -1: unbounded on that side */
    float softcap;                     /* 0: off */
    polyattn_alibi alibi;              /* slopes f32 [heads_q] or [batch, heads_q] */
    int has_bias;
    polyattn_dtype bias_dtype;
    int64_t bias_stride[4]; /* elements; 0 on broadcast dimensions */
    int has_attn_mask;      /* u8 */
    int64_t attn_mask_stride[4];
    int has_sinks;         /* f32 [heads_q] */
    int want_bias_grad;    /* backward writes d_bias f32 contiguous [bias_shape] */
    int64_t bias_shape[4]; /* batch or 1, heads_q or 1, seq_q, seq_kv */

    /* Serving layouts (polyattn_attention_desc; all zero: dense).  With any of them, batch
     * counts sequences and seq_q / seq_kv are only upper bounds of each sequence's lengths
     * (max_seqlen_q/kv resolved); the lengths live in device buffers (pa_serving_io) that
     * a forward must check before reading through them (polyattn.h, "What is checked
     * where").  Strides above stay the tensors' own. */
    int varlen_q;    /* q, o [1, heads_q, total_q, d]; cu_seqlens_q [batch + 1] */
    int64_t total_q; /* q.shape[2] with varlen_q, else seq_q */
    polyattn_kv_layout kv_layout;
    /* k.shape[0] and k.shape[2] as given: 1 and total_kv (varlen), batch and capacity
     * (cache), num_blocks and block_size (paged), batch and seq_kv (dense). */
    int64_t kv_count, kv_rows;
    int64_t max_blocks_per_seq; /* paged: block_table [batch, max_blocks_per_seq] */
    int has_kv_append;
    int64_t seq_new; /* k_new, v_new [batch, heads_kv, seq_new, d] */
    int64_t k_new_stride[4], v_new_stride[4];
    int check_device_inputs; /* plan option: validate the device buffers before a forward */
    int num_splits;          /* plan option: 0 the backend chooses, 1 none, N at most N */

    /* FP8 inputs (dtype POLYATTN_DTYPE_E4M3, PA_FEATURE_E4M3): o's own dtype (f16, bf16 or
     * f32; equal to dtype otherwise) and the per-tensor descales, resolved (1, never 0):
     * q_real = q_descale * q, likewise k and v.  Forward only. */
    polyattn_dtype o_dtype;
    float q_descale, k_descale, v_descale;
} pa_problem;

/* Whether a problem uses any serving layout. */
static inline int pa_problem_serving(const pa_problem *p)
{
    return p->varlen_q || p->kv_layout != POLYATTN_KV_DENSE;
}

/* Features of a problem beyond the plain mask; an algorithm lists those it implements
 * (pa_algo_ops.features, .backward_features) and the core rejects the rest with a reason. */
#define PA_FEATURE_WINDOW (1u << 0)
#define PA_FEATURE_SOFTCAP (1u << 1)
#define PA_FEATURE_ALIBI (1u << 2)
#define PA_FEATURE_BIAS (1u << 3)
#define PA_FEATURE_ATTN_MASK (1u << 4)
#define PA_FEATURE_SINKS (1u << 5)
#define PA_FEATURE_BIAS_GRAD (1u << 6)
#define PA_FEATURE_ALL_VARIANTS ((1u << 7) - 1u)
/* Serving layouts. */
#define PA_FEATURE_VARLEN_Q (1u << 7)
#define PA_FEATURE_VARLEN_KV (1u << 8)
#define PA_FEATURE_KV_CACHE (1u << 9)
#define PA_FEATURE_PAGED_KV (1u << 10)
#define PA_FEATURE_KV_APPEND (1u << 11)
#define PA_FEATURE_ALL_SERVING (((1u << 12) - 1u) & ~PA_FEATURE_ALL_VARIANTS)
/* FP8 e4m3 q, k and v with descales, and o in another dtype (forward only). */
#define PA_FEATURE_E4M3 (1u << 12)

/* The features problem p needs. */
static inline unsigned pa_problem_features(const pa_problem *p)
{
    return (p->has_window ? PA_FEATURE_WINDOW : 0u) |
           (p->softcap > 0.0f ? PA_FEATURE_SOFTCAP : 0u) |
           (p->alibi != POLYATTN_ALIBI_NONE ? PA_FEATURE_ALIBI : 0u) |
           (p->has_bias ? PA_FEATURE_BIAS : 0u) | (p->has_attn_mask ? PA_FEATURE_ATTN_MASK : 0u) |
           (p->has_sinks ? PA_FEATURE_SINKS : 0u) |
           (p->want_backward && p->want_bias_grad ? PA_FEATURE_BIAS_GRAD : 0u) |
           (p->varlen_q ? PA_FEATURE_VARLEN_Q : 0u) |
           (p->kv_layout == POLYATTN_KV_VARLEN ? PA_FEATURE_VARLEN_KV : 0u) |
           (p->kv_layout == POLYATTN_KV_CACHE ? PA_FEATURE_KV_CACHE : 0u) |
           (p->kv_layout == POLYATTN_KV_PAGED ? PA_FEATURE_PAGED_KV : 0u) |
           (p->has_kv_append ? PA_FEATURE_KV_APPEND : 0u) |
           (p->dtype == POLYATTN_DTYPE_E4M3 ? PA_FEATURE_E4M3 : 0u);
}

/* NULL when q, k, v and o all hold one of f32, f16 and bf16 (what the GPU kernels read);
 * otherwise the sentence a GPU backend's check answers with.  The core already refuses
 * e4m3 to algorithms without PA_FEATURE_E4M3: this keeps each backend safe on its own. */
static inline const char *pa_problem_dtype_refusal(const pa_problem *p)
{
    if (p->dtype == POLYATTN_DTYPE_E4M3) return "e4m3 inputs: no kernel on this backend yet";
    if ((p->dtype != POLYATTN_DTYPE_F32 && p->dtype != POLYATTN_DTYPE_F16 &&
         p->dtype != POLYATTN_DTYPE_BF16) ||
        p->o_dtype != p->dtype)
        return "q, k, v and o must share one dtype of f32, f16 and bf16 on this backend";
    return NULL;
}

/* ---- checked sizes: every byte or element count the library computes goes through these ----
 * pa_mul_u64 / pa_add_u64 return 0 and store the result, or return 1 on overflow (then *out
 * is PA_SIZE_OVERFLOW).  pa_size_mul / pa_size_add saturate instead: PA_SIZE_OVERFLOW is
 * sticky, so a chain of them is checked once at its end.  A workspace_size hook returns
 * PA_SIZE_OVERFLOW when its size cannot be represented; planning then rejects the algorithm. */
#define PA_SIZE_OVERFLOW UINT64_MAX

static inline int pa_mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a == PA_SIZE_OVERFLOW || b == PA_SIZE_OVERFLOW || __builtin_mul_overflow(a, b, out)) {
        *out = PA_SIZE_OVERFLOW;
        return 1;
    }
    return *out == PA_SIZE_OVERFLOW;
}

static inline int pa_add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a == PA_SIZE_OVERFLOW || b == PA_SIZE_OVERFLOW || __builtin_add_overflow(a, b, out)) {
        *out = PA_SIZE_OVERFLOW;
        return 1;
    }
    return *out == PA_SIZE_OVERFLOW;
}

static inline uint64_t pa_size_mul(uint64_t a, uint64_t b)
{
    uint64_t r;
    pa_mul_u64(a, b, &r);
    return r;
}

static inline uint64_t pa_size_add(uint64_t a, uint64_t b)
{
    uint64_t r;
    pa_add_u64(a, b, &r);
    return r;
}

/* a * b * c * d for non-negative int64 dimensions (negative ones count as overflow). */
static inline uint64_t pa_size_mul4(int64_t a, int64_t b, int64_t c, int64_t d)
{
    if (a < 0 || b < 0 || c < 0 || d < 0) return PA_SIZE_OVERFLOW;
    return pa_size_mul(pa_size_mul((uint64_t)a, (uint64_t)b),
                       pa_size_mul((uint64_t)c, (uint64_t)d));
}

/* Key d(i) on the diagonal of query i: bottom-right aligned, or top-left under that mask. */
static inline int64_t pa_diagonal(const pa_problem *p, int64_t query)
{
    return p->mask == POLYATTN_MASK_CAUSAL_TOP_LEFT ? query : query + (p->seq_kv - p->seq_q);
}

/* Keys [*lo, *hi) that the causal mask and the window leave visible to query i (bias and
 * attn_mask may mask more); *lo >= *hi: none. */
static inline void pa_visible_range(const pa_problem *p, int64_t query, int64_t *lo, int64_t *hi)
{
    const int64_t d = pa_diagonal(p, query);
    int64_t a = 0, b = p->seq_kv;
    if (p->mask != POLYATTN_MASK_NONE && d + 1 < b) b = d + 1;
    if (p->has_window) { /* compared as distances: a side up to INT64_MAX cannot overflow */
        if (p->window_left >= 0 && p->window_left < d - a) a = d - p->window_left;
        if (p->window_right >= 0 && p->window_right < b - d - 1) b = d + p->window_right + 1;
    }
    if (b < 0) b = 0;
    if (a > p->seq_kv) a = p->seq_kv;
    *lo = a, *hi = b > a ? b : a;
}

/* Queries attend to keys [0, pa_visible_keys(p, i)); 0 means a fully masked row.  Causal
 * masks only: kernels without PA_FEATURE_WINDOW use it. */
static inline int64_t pa_visible_keys(const pa_problem *p, int64_t query)
{
    int64_t n;
    switch (p->mask) {
    case POLYATTN_MASK_CAUSAL_TOP_LEFT: n = query + 1; break;
    case POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT: n = query + 1 + (p->seq_kv - p->seq_q); break;
    default: n = p->seq_kv; break;
    }
    return n < 0 ? 0 : (n > p->seq_kv ? p->seq_kv : n);
}

/* Every backend's device begins with this header (first member), so the core can reach
 * the context's error slot and the ops from any backend device. */
typedef struct pa_device {
    const struct pa_backend_ops *ops;
    int index;
    char last_error[2048];
    /* POLYATTN_FORCE as read once when the context was made ("key=value,..."; "" when
     * unset).  Backends read it through pa_force_get at plan time only. */
    char force[256];
} pa_device;

/* Device memory as a backend handle plus a byte offset (views share the handle). */
typedef struct pa_tensor_ref {
    void *mem;       /* backend handle: CUdeviceptr-like pointer, cl_mem, host pointer */
    uint64_t offset; /* bytes from the start of mem */
} pa_tensor_ref;

/* The variants' tensors (mem NULL when the problem has no such variant). */
typedef struct pa_variant_io {
    pa_tensor_ref alibi_slopes, bias, attn_mask, sinks;
    pa_tensor_ref d_bias, d_sinks; /* backward outputs */
} pa_variant_io;

/* The serving layouts' int32 tensors and the appended rows (mem NULL when unused). */
typedef struct pa_serving_io {
    pa_tensor_ref cu_seqlens_q, cu_seqlens_kv, seqused_kv, block_table;
    pa_tensor_ref k_new, v_new;
} pa_serving_io;

typedef struct pa_io {
    pa_tensor_ref q, k, v, o;
    pa_tensor_ref lse;       /* mem NULL unless want_lse */
    pa_tensor_ref probs;     /* mem NULL unless want_probs */
    pa_tensor_ref workspace; /* mem NULL when the algorithm needs none */
    uint64_t workspace_bytes;
    pa_variant_io var;
    pa_serving_io srv; /* with has_kv_append, the forward writes into k and v */
} pa_io;

/* Tensors of a backward call.  dq, dk, dv have q's, k's and v's strides; d_o has o's. */
typedef struct pa_backward_io {
    pa_tensor_ref q, k, v, o, d_o;
    pa_tensor_ref lse; /* f32 contiguous [batch, heads_q, seq_q], -inf on fully masked rows */
    pa_tensor_ref dq, dk, dv;
    pa_tensor_ref workspace; /* mem NULL when backward_workspace_size is 0 */
    uint64_t workspace_bytes;
    pa_variant_io var;
    pa_serving_io srv; /* cu_seqlens_q / cu_seqlens_kv of varlen problems */
} pa_backward_io;

/* A validated polyattn_merge_states call (strides in elements). */
typedef struct pa_merge_problem {
    int64_t num_parts, batch, heads, seq, head_dim_v;
    polyattn_dtype part_dtype, out_dtype;
    int64_t part_stride[5]; /* part, batch, heads, seq, head_dim_v */
    int64_t out_stride[4];
    int want_lse; /* out_lse f32 contiguous [batch, heads, seq] */
} pa_merge_problem;

typedef struct pa_merge_io {
    pa_tensor_ref parts, parts_lse, out;
    pa_tensor_ref out_lse; /* mem NULL unless want_lse */
} pa_merge_io;

typedef struct pa_algo_ops {
    polyattn_algo algo;
    /* Pure; gates planning and dispatch alike.  On rejection returns UNSUPPORTED (or
     * another status) and sets *why_not to a static or device-owned sentence. */
    polyattn_status (*check)(pa_device *dev, const pa_problem *p, const char **why_not);
    uint64_t (*workspace_size)(pa_device *dev, const pa_problem *p);
    int (*kernel_launches)(pa_device *dev, const pa_problem *p);
    /* Optional: builds kernels etc. once per plan.  *state is passed to forward. */
    polyattn_status (*prepare)(pa_device *dev, const pa_problem *p, void **state);
    void (*release)(pa_device *dev, void *state);
    /* Enqueues the work; must not allocate device memory. */
    polyattn_status (*forward)(pa_device *dev, const pa_problem *p, void *state, const pa_io *io);
    /* Optional backward (NULL: a plan with want_backward rejects the algorithm, "the <backend>
     * backend has no <algo> backward yet").  The state is prepare's; check and prepare saw
     * p->want_backward.  backward_workspace_size NULL means 0.  backward writes every
     * element of dq, dk and dv (zeros where a gradient is zero) and must not allocate
     * device memory. */
    uint64_t (*backward_workspace_size)(pa_device *dev, const pa_problem *p);
    polyattn_status (*backward)(pa_device *dev, const pa_problem *p, void *state,
                                const pa_backward_io *io);
    /* PA_FEATURE_* the forward and the backward implement; a problem needing another is
     * rejected by the core ("the cuda flash path has no sliding window yet"). */
    unsigned features, backward_features;
    /* Optional: the key splits the forward will run for p (NULL: 1, no split). */
    int (*splits)(pa_device *dev, const pa_problem *p);
} pa_algo_ops;

typedef struct pa_backend_ops {
    uint32_t abi_version; /* PA_BACKEND_ABI_VERSION */
    polyattn_backend kind;
    const char *name;
    /* No driver or runtime: *count = 0 and SUCCESS, *reason says why (static string). */
    polyattn_status (*probe)(int *count, const char **reason);
    polyattn_status (*device_info)(int index, polyattn_device_info *info);
    polyattn_status (*device_open)(int index, pa_device **out);
    void (*device_close)(pa_device *dev);
    polyattn_status (*mem_alloc)(pa_device *dev, uint64_t bytes, void **mem);
    void (*mem_free)(pa_device *dev, void *mem);
    polyattn_status (*mem_write)(pa_device *dev, void *mem, uint64_t offset, const void *src,
                                 uint64_t bytes);
    polyattn_status (*mem_read)(pa_device *dev, void *mem, uint64_t offset, void *dst,
                                uint64_t bytes);
    polyattn_status (*synchronize)(pa_device *dev);
    /* Events: record a timestamp on the device's stream; elapsed blocks for both. */
    polyattn_status (*event_create)(pa_device *dev, void **event);
    void (*event_destroy)(pa_device *dev, void *event);
    polyattn_status (*event_record)(pa_device *dev, void *event);
    polyattn_status (*event_elapsed_ms)(pa_device *dev, void *start, void *end, double *ms);
    const pa_algo_ops *algos;
    size_t n_algos;
    /* AUTO's default order on this backend and a sentence naming the measurements behind
     * it (each backend's <name>_policy.c).  Pure: arch is polyattn_device_info.arch ("" if
     * unknown).  NULL: the core's unmeasured default (core/policy.c). */
    void (*auto_order)(const char *arch, const pa_problem *p, polyattn_algo order[3],
                       const char **why);
    /* polyattn_merge_states (appended; NULL: the core answers UNSUPPORTED, "the <name>
     * backend has no merge_states yet").  The core has checked every size and overlap;
     * enqueues the work, must not allocate device memory. */
    polyattn_status (*merge_states)(pa_device *dev, const pa_merge_problem *m,
                                    const pa_merge_io *io);
} pa_backend_ops;

/* A module exports this symbol (extern "C"), returning its static ops table. */
typedef const pa_backend_ops *(*pa_backend_entry_fn)(void);
#define PA_BACKEND_ENTRY_SYMBOL "polyattn_backend_entry"

/* ---- services the core offers to backends (exported from libpolyattn) ---- */

#if defined(_WIN32)
#define PA_INTERNAL_API
#else
#define PA_INTERNAL_API __attribute__((visibility("default")))
#endif

/* Writes the message into dev->last_error (which the context reports) and logs it as an
 * error; returns status so that `return pa_fail(dev, st, ...)` reads naturally. */
PA_INTERNAL_API polyattn_status pa_fail(pa_device *dev, polyattn_status status, const char *fmt,
                                        ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
PA_INTERNAL_API void pa_log(polyattn_log_category category, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
PA_INTERNAL_API int pa_log_enabled(polyattn_log_category category);

/* The value of `key` in the device's POLYATTN_FORCE override (core/force.c): copies it into
 * value (n bytes) and returns 1, or returns 0 when the key is absent.  Keys a backend
 * reads are listed in docs (README, "Forcing a path"); the core reads `algo`. */
PA_INTERNAL_API int pa_force_get(const pa_device *dev, const char *key, char *value, size_t n);

/* Interop: a context around a device a backend opened on caller-owned handles, and a
 * buffer around caller-owned memory (never freed by polyattn). */
PA_INTERNAL_API polyattn_status pa_context_wrap_device(const pa_backend_ops *ops, pa_device *dev,
                                                       polyattn_context **context);
PA_INTERNAL_API polyattn_status pa_buffer_wrap(polyattn_context *context, void *mem, uint64_t bytes,
                                               polyattn_buffer **buffer);
PA_INTERNAL_API pa_device *pa_context_device(polyattn_context *context);

/* float <-> f16 / bf16 conversions (round to nearest even) shared by host code. */
PA_INTERNAL_API uint16_t pa_f32_to_f16(float x);
PA_INTERNAL_API float pa_f16_to_f32(uint16_t h);
PA_INTERNAL_API uint16_t pa_f32_to_bf16(float x);
PA_INTERNAL_API float pa_bf16_to_f32(uint16_t h);
/* FP8 e4m3 (OCP e4m3fn): decoding is exact; encoding rounds to nearest even and gives NaN
 * (0x7f, with x's sign) for NaN and for values that round beyond 448 (no saturation, as
 * torch's float8_e4m3fn conversion). */
PA_INTERNAL_API float pa_e4m3_to_f32(uint8_t x);
PA_INTERNAL_API uint8_t pa_f32_to_e4m3(float x);

#ifdef __cplusplus
}
#endif
#endif /* PA_BACKEND_H */
