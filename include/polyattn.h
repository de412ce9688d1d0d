/*
 * polyattn: portable multi-vendor attention, softmax(Q K^T * scale + mask) V.
 *
 * One public header, C99 and C++ clean, no vendor header.  Usage pattern:
 * context (one device of one backend) -> buffers -> descriptor -> plan -> forward.
 * All validation and algorithm selection happen in polyattn_plan_create; executing a
 * plan never allocates.  Every call returns a status; outputs come last.
 */
#ifndef POLYATTN_H
#define POLYATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define POLYATTN_API
#else
#define POLYATTN_API __attribute__((visibility("default")))
#endif

/* ---- versions ------------------------------------------------------------ */

#define POLYATTN_VERSION_MAJOR 0
#define POLYATTN_VERSION_MINOR 1
#define POLYATTN_VERSION_PATCH 0
/* Bumped whenever a public struct or function signature changes incompatibly. */
#define POLYATTN_ABI_VERSION 1

/* Version of the library actually loaded: major*10000 + minor*100 + patch. */
POLYATTN_API int polyattn_version(void);
POLYATTN_API const char *polyattn_version_string(void);
POLYATTN_API int polyattn_abi_version(void);

/* ---- status -------------------------------------------------------------- */

/* X(name, value, description) */
#define POLYATTN_STATUS_TABLE(X)                                                                   \
    X(SUCCESS, 0, "success")                                                                       \
    X(INVALID_ARGUMENT, 1, "invalid argument")                                                     \
    X(UNSUPPORTED, 2, "unsupported by this backend, device or algorithm")                          \
    X(OUT_OF_MEMORY, 3, "out of memory")                                                           \
    X(OVER_BUDGET, 4, "exceeds the memory budget")                                                 \
    X(NOT_FOUND, 5, "no such backend or device")                                                   \
    X(DEVICE_ERROR, 6, "device, driver or vendor library error")                                   \
    X(KERNEL_BUILD_FAILED, 7, "kernel compilation failed")                                         \
    X(INTERNAL_ERROR, 8, "internal error")

typedef enum polyattn_status {
#define POLYATTN_STATUS_ENUM_(name, value, text) POLYATTN_STATUS_##name = value,
    POLYATTN_STATUS_TABLE(POLYATTN_STATUS_ENUM_)
#undef POLYATTN_STATUS_ENUM_
        POLYATTN_STATUS_COUNT_
} polyattn_status;

/* Static description of a status; never NULL. */
POLYATTN_API const char *polyattn_status_string(polyattn_status status);
/* The constant's name without prefix, e.g. "INVALID_ARGUMENT"; never NULL. */
POLYATTN_API const char *polyattn_status_name(polyattn_status status);

/* ---- logging ------------------------------------------------------------- */

typedef enum polyattn_log_category {
    POLYATTN_LOG_ERROR = 1,    /* always on */
    POLYATTN_LOG_DISPATCH = 2, /* algorithm selection and rejection reasons */
    POLYATTN_LOG_BUILD = 4,    /* kernel builds, caches, build logs */
    POLYATTN_LOG_PROFILE = 8   /* per-call timings */
} polyattn_log_category;

typedef void (*polyattn_log_fn)(polyattn_log_category category, const char *message,
                                void *user_data);

/* Replaces the sink (default: stderr for the categories enabled).  NULL restores it.
 * The enabled categories come from POLYATTN_LOG=dispatch,build,profile (or "all")
 * unless polyattn_set_log_mask is called. */
POLYATTN_API void polyattn_set_log_callback(polyattn_log_fn fn, void *user_data);
POLYATTN_API void polyattn_set_log_mask(unsigned mask);

/* ---- enums --------------------------------------------------------------- */

typedef enum polyattn_dtype {
    POLYATTN_DTYPE_F32 = 0,
    POLYATTN_DTYPE_F16 = 1,
    POLYATTN_DTYPE_BF16 = 2,
    POLYATTN_DTYPE_U8 = 3, /* boolean masks only (attn_mask): 0 masks a pair */
    /* FP8 e4m3 (OCP "e4m3fn", torch.float8_e4m3fn): 1 sign, 4 exponent bits (bias 7), 3
     * mantissa bits; no infinities, S.1111.111 is NaN, largest finite value 448.  Inputs
     * only (q, k, v together, forward only), each scaled by its descale factor
     * (polyattn_attention_desc.q_descale ...); O is f16, bf16 or f32.  The host backend
     * runs it; GPU backends refuse it (UNSUPPORTED) for now. */
    POLYATTN_DTYPE_E4M3 = 4
} polyattn_dtype;

typedef enum polyattn_mask {
    POLYATTN_MASK_NONE = 0,
    /* query i sees keys j <= i */
    POLYATTN_MASK_CAUSAL_TOP_LEFT = 1,
    /* query i sees keys j <= i + (seq_kv - seq_q): the last query sees every key */
    POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT = 2
} polyattn_mask;

/* ALiBi slopes (f32): none, one per query head [heads_q], or per sequence [batch, heads_q]. */
typedef enum polyattn_alibi {
    POLYATTN_ALIBI_NONE = 0,
    POLYATTN_ALIBI_PER_HEAD = 1,
    POLYATTN_ALIBI_PER_BATCH_HEAD = 2
} polyattn_alibi;

/* Where each sequence's keys and values live (polyattn_attention_desc.kv_layout). */
typedef enum polyattn_kv_layout {
    /* k, v [batch, heads_kv, seq_kv, head_dim]: every sequence has seq_kv keys. */
    POLYATTN_KV_DENSE = 0,
    /* Packed along the sequence: k, v [1, heads_kv, total_kv, head_dim]; sequence b has
     * keys [cu_seqlens_kv[b], cu_seqlens_kv[b + 1]). */
    POLYATTN_KV_VARLEN = 1,
    /* A dense cache k, v [batch, heads_kv, capacity, head_dim]: sequence b uses its first
     * seqused_kv[b] rows (plus the appended ones, has_kv_append). */
    POLYATTN_KV_CACHE = 2,
    /* A paged cache: k, v [num_blocks, heads_kv, block_size, head_dim] (shape[0] counts
     * blocks, shape[2] is the block size; FlashAttention's [num_blocks, block_size, heads_kv,
     * head_dim] memory is polyattn_tensor_desc_bshd(num_blocks, heads_kv, block_size, d)).
     * Key j of sequence b is row j % block_size of block block_table[b][j / block_size];
     * sequence b uses seqused_kv[b] keys (plus the appended ones). */
    POLYATTN_KV_PAGED = 3
} polyattn_kv_layout;

typedef enum polyattn_algo {
    POLYATTN_ALGO_AUTO = 0,
    POLYATTN_ALGO_UNFUSED = 1, /* separate kernels, N x N scores in the workspace */
    POLYATTN_ALGO_FUSED = 2,   /* one kernel, still O(N^2) scratch */
    POLYATTN_ALGO_FLASH = 3    /* tiled online softmax, O(N) memory */
} polyattn_algo;
#define POLYATTN_ALGO_COUNT 4

typedef enum polyattn_backend {
    POLYATTN_BACKEND_AUTO = 0, /* the first backend, in the order below, with a device */
    POLYATTN_BACKEND_CUDA = 1,
    POLYATTN_BACKEND_HIP = 2,
    POLYATTN_BACKEND_OPENCL = 3,
    POLYATTN_BACKEND_HOST = 4 /* plain C reference, double accumulation */
} polyattn_backend;
#define POLYATTN_BACKEND_COUNT 5

POLYATTN_API const char *polyattn_dtype_name(polyattn_dtype dtype);       /* "f32" */
POLYATTN_API const char *polyattn_mask_name(polyattn_mask mask);          /* "causal-top-left" */
POLYATTN_API const char *polyattn_algo_name(polyattn_algo algo);          /* "flash" */
POLYATTN_API const char *polyattn_backend_name(polyattn_backend backend); /* "cuda" */
/* Bytes per element of a dtype, 0 for an unknown value. */
POLYATTN_API size_t polyattn_dtype_size(polyattn_dtype dtype);

/* ---- discovery ----------------------------------------------------------- */

/* Whether the backend was compiled into this build (its module may still fail to load). */
POLYATTN_API int polyattn_backend_compiled(polyattn_backend backend);

/* Number of devices the backend sees.  A backend not compiled in, or whose runtime or
 * driver is missing, reports 0 devices and SUCCESS; *reason (may be NULL) then says why. */
POLYATTN_API polyattn_status polyattn_device_count(polyattn_backend backend, int *count,
                                                   const char **reason);

typedef struct polyattn_device_info {
    size_t struct_size; /* set to sizeof(polyattn_device_info) by the caller */
    polyattn_backend backend;
    int index;
    char name[256];
    char vendor[128];
    char driver_version[128];
    char arch[64]; /* "sm_90", "gfx90a", "OpenCL C 3.0", "x86_64" */
    uint64_t global_mem_bytes;
    uint64_t local_mem_bytes; /* shared memory / LDS / local memory per work-group */
    int compute_units;
    int max_work_group_size;
    int subgroup_size;   /* warp / wavefront / subgroup size, 0 if unknown */
    int f16_storage;     /* f16 tensors accepted */
    int bf16_storage;    /* bf16 tensors accepted */
    int f16_arithmetic;  /* native half arithmetic (cl_khr_fp16, tensor cores) */
    int bf16_arithmetic; /* native bf16 matrix arithmetic */
} polyattn_device_info;

POLYATTN_API polyattn_status polyattn_device_get_info(polyattn_backend backend, int index,
                                                      polyattn_device_info *info);

/* ---- contexts ------------------------------------------------------------ */

typedef struct polyattn_context polyattn_context;

/* backend AUTO picks the first backend with a device (cuda, hip, opencl, host). */
POLYATTN_API polyattn_status polyattn_context_create(polyattn_backend backend, int device_index,
                                                     polyattn_context **context);
POLYATTN_API void polyattn_context_destroy(polyattn_context *context);
POLYATTN_API polyattn_backend polyattn_context_backend(const polyattn_context *context);
POLYATTN_API polyattn_status polyattn_context_get_device_info(const polyattn_context *context,
                                                              polyattn_device_info *info);
/* Message of the last failed call on this context (or its buffers and plans); "" if none.
 * Valid until the next call on the context. */
POLYATTN_API const char *polyattn_context_last_error(const polyattn_context *context);
/* Message of the last failure that had no context to hold it (context creation). */
POLYATTN_API const char *polyattn_last_error(void);
/* Waits for all work queued on the context's stream or queue. */
POLYATTN_API polyattn_status polyattn_context_synchronize(polyattn_context *context);

typedef struct polyattn_memory_stats {
    uint64_t current_bytes; /* device memory held by this context's buffers now */
    uint64_t peak_bytes;    /* highest value since creation or the last reset */
} polyattn_memory_stats;
POLYATTN_API polyattn_status polyattn_context_memory_stats(polyattn_context *context,
                                                           int reset_peak,
                                                           polyattn_memory_stats *stats);

/* ---- buffers ------------------------------------------------------------- */

typedef struct polyattn_buffer polyattn_buffer;

POLYATTN_API polyattn_status polyattn_buffer_alloc(polyattn_context *context, uint64_t bytes,
                                                   polyattn_buffer **buffer);
/* A view of [offset, offset + bytes) of a buffer, e.g. Q inside a packed QKV buffer.  The
 * view must be freed before its parent. */
POLYATTN_API polyattn_status polyattn_buffer_view(polyattn_buffer *parent, uint64_t offset,
                                                  uint64_t bytes, polyattn_buffer **view);
/* Host backend only: a buffer around caller-owned host memory [ptr, ptr + bytes), used in
 * place (no copy) and never freed by polyattn.  Other backends: INVALID_ARGUMENT (use their
 * interop header: polyattn_cuda.h, polyattn_hip.h, polyattn_opencl.h). */
POLYATTN_API polyattn_status polyattn_host_buffer_wrap(polyattn_context *context, void *ptr,
                                                       uint64_t bytes, polyattn_buffer **buffer);
POLYATTN_API void polyattn_buffer_free(polyattn_buffer *buffer);
POLYATTN_API uint64_t polyattn_buffer_size(const polyattn_buffer *buffer);
/* Blocking copies between host memory and the buffer. */
POLYATTN_API polyattn_status polyattn_buffer_write(polyattn_buffer *buffer, uint64_t offset,
                                                   const void *src, uint64_t bytes);
POLYATTN_API polyattn_status polyattn_buffer_read(const polyattn_buffer *buffer, uint64_t offset,
                                                  void *dst, uint64_t bytes);

/* ---- descriptors --------------------------------------------------------- */

/* Dimension order of shape[] and strides[]. */
enum {
    POLYATTN_DIM_BATCH = 0,
    POLYATTN_DIM_HEADS = 1,
    POLYATTN_DIM_SEQ = 2,
    POLYATTN_DIM_HEAD = 3
};

typedef struct polyattn_tensor_desc {
    polyattn_dtype dtype;
    int64_t shape[4];   /* batch, heads, seq, head_dim */
    int64_t strides[4]; /* in elements, for the same four dimensions */
} polyattn_tensor_desc;

/* Contiguous [batch, heads, seq, head_dim]. */
POLYATTN_API void polyattn_tensor_desc_bhsd(polyattn_tensor_desc *desc, polyattn_dtype dtype,
                                            int64_t batch, int64_t heads, int64_t seq,
                                            int64_t head_dim);
/* Contiguous [batch, seq, heads, head_dim] (the layout of most model code). */
POLYATTN_API void polyattn_tensor_desc_bshd(polyattn_tensor_desc *desc, polyattn_dtype dtype,
                                            int64_t batch, int64_t heads, int64_t seq,
                                            int64_t head_dim);
/* Bytes a buffer must hold for the tensor: (1 + sum (shape-1)*stride) elements; 0 when the
 * descriptor is malformed or the count overflows int64. */
POLYATTN_API uint64_t polyattn_tensor_desc_bytes(const polyattn_tensor_desc *desc);

typedef struct polyattn_attention_desc {
    size_t struct_size;     /* sizeof(polyattn_attention_desc): lets the struct grow */
    polyattn_tensor_desc q; /* [batch, heads_q,  seq_q,  head_dim]   */
    polyattn_tensor_desc k; /* [batch, heads_kv, seq_kv, head_dim]   */
    polyattn_tensor_desc v; /* [batch, heads_kv, seq_kv, head_dim_v] */
    polyattn_tensor_desc o; /* [batch, heads_q,  seq_q,  head_dim_v] */
    float scale;            /* 0 means 1/sqrt(head_dim) */
    polyattn_mask mask;

    /* ---- Score variants.  Appended members: a caller whose struct_size ends before a
     * member gets it off; polyattn_attention_desc_init turns every one off.  Their tensors
     * (slopes, bias, attn_mask, sinks) are passed to polyattn_forward_ex/backward_ex.
     * Every score goes s = scale * q.k, then softcap, then + ALiBi + bias, then the masks
     * (causal, window, attn_mask); FlashAttention's semantics wherever it has the feature.
     * The diagonal of query i is key d(i) = i + seq_kv - seq_q (bottom-right), or d(i) = i
     * under POLYATTN_MASK_CAUSAL_TOP_LEFT. */
    /* Sliding window: query i sees keys d(i) - window_left <= j <= d(i) + window_right;
     * -1 leaves that side unbounded.  A causal mask also keeps j <= d(i). */
    int has_window;
    int64_t window_left, window_right;
    /* Logit soft-capping (Gemma 2): s = softcap * tanh(s / softcap); 0: off. */
    float softcap;
    /* ALiBi: adds -slope * |d(i) - j| to each score (slopes f32, see polyattn_alibi). */
    polyattn_alibi alibi;
    /* Additive bias, f32/f16/bf16 (need not match q's dtype), shape
     * [batch or 1, heads_q or 1, seq_q, seq_kv]; a stride of 0 broadcasts a dimension of
     * extent 1 or more.  -inf masks a pair; NaN makes that row NaN. */
    int has_bias;
    polyattn_tensor_desc bias;
    /* Boolean mask, POLYATTN_DTYPE_U8 (0: the pair is masked), same shape rules as bias. */
    int has_attn_mask;
    polyattn_tensor_desc attn_mask;
    /* Attention sinks (gpt-oss): one f32 logit per query head [heads_q] that joins every
     * softmax denominator of that head, exp(sink - max) beside the scores, and adds
     * nothing to O.  The LSE includes it. */
    int has_sinks;

    /* ---- Serving layouts.  Appended like the variants (zero: dense tensors, every
     * sequence of length seq_q and seq_kv).  Each sequence b has its own lengths len_q(b)
     * and len_kv(b), and every mask, window, ALiBi distance and GQA group applies per
     * sequence: query i of sequence b has the diagonal d(i) = i + len_kv(b) - len_q(b)
     * (bottom-right: its last query meets its last key) or i (top-left).  Sequences of
     * length 0 are allowed: one without queries writes nothing; one without keys has
     * fully masked rows (O = 0, LSE = -inf, or the sink).  The lengths, offsets and block
     * indices live in int32 device buffers passed in polyattn_extra_tensors at forward
     * (and backward).
     * Not combinable with bias, attn_mask or want_probs (their [seq_q, seq_kv] shapes have
     * no per-sequence meaning) nor with autotune (it would time invented lengths). */
    /* Varlen queries: q and o packed [1, heads_q, total_q, head_dim(_v)], sequence b owns
     * rows [cu_seqlens_q[b], cu_seqlens_q[b + 1]) (int32 [num_seqs + 1]).  The LSE is then
     * f32 contiguous [heads_q, total_q] (FlashAttention's varlen layout).  Rows outside
     * [cu_seqlens_q[0], cu_seqlens_q[num_seqs]) are neither read nor written (nor their
     * LSE; the backward writes dq = 0 there). */
    int varlen_q;
    /* The number of sequences (batch) when varlen_q, where q.shape[0] is 1; otherwise 0 or
     * q.shape[0]. */
    int64_t num_seqs;
    /* Upper bounds of len_q(b) and len_kv(b) (FlashAttention's max_seqlen_q/k), used to
     * size GPU grids and the plan's estimates; 0: the largest the tensors allow (total_q;
     * total_kv, the cache's capacity, or max_blocks_per_seq x block_size).  With dense q,
     * max_seqlen_q is ignored (len_q = seq_q).  A sequence beyond a bound fails the
     * forward (INVALID_ARGUMENT). */
    int64_t max_seqlen_q, max_seqlen_kv;
    polyattn_kv_layout kv_layout;
    /* POLYATTN_KV_PAGED: block_table int32 [num_seqs, max_blocks_per_seq], contiguous; a
     * sequence reads (and appends into) its first ceil(len_kv(b) / block_size) entries
     * only, so the rest may hold anything.  Blocks may come in any order and be shared
     * between sequences (prefix sharing).  block_size (k.shape[2]) is a multiple of 16. */
    int64_t max_blocks_per_seq;
    /* KV append (POLYATTN_KV_CACHE or PAGED): before attending, rows j of k_new and v_new
     * [batch, heads_kv, seq_new, head_dim(_v)] (q's dtype, any strides) are written into
     * the cache at key seqused_kv[b] + j of each sequence, which then attends to
     * len_kv(b) = seqused_kv[b] + seq_new keys (FlashAttention's flash_attn_with_kvcache
     * k/v).  The forward writes the caches through the k and v buffers it is given.
     * seqused_kv is not advanced: the caller adds seq_new.  Appended rows must not land in
     * blocks another sequence of the call reads or appends to (not checked; GPUs would race;
     * the host appends every sequence first, in order). */
    int has_kv_append;
    polyattn_tensor_desc k_new, v_new;

    /* ---- FP8 inputs.  Appended like the variants.  With q, k and v POLYATTN_DTYPE_E4M3
     * (all three or none; k_new/v_new follow q), each element means descale x its e4m3
     * value: q_real = q_descale * q, likewise k and v (FlashAttention-3's per-tensor
     * descale factors; appended rows are in k's and v's scale).  0, what
     * polyattn_attention_desc_init and an older struct give, means 1; otherwise a
     * finite value > 0.  With other dtypes each is 0 or 1.  O is then f16, bf16 or f32
     * (o.dtype; it equals q.dtype otherwise), the LSE f32 as always.  Forward only: a plan
     * with want_backward is UNSUPPORTED. */
    float q_descale, k_descale, v_descale;
} polyattn_attention_desc;

/* What is checked where, for the serving layouts:
 * - At plan time (polyattn_attention_desc_validate, plan_create), INVALID_ARGUMENT naming the
 *   field: the shapes above (shape[0] of 1 for packed tensors, of num_seqs for q and a
 *   dense cache), num_seqs >= 1, block_size a multiple of 16, max_blocks_per_seq >= 1,
 *   0 <= max_seqlen_q <= total_q, 0 <= max_seqlen_kv <= the keys a sequence can address,
 *   int32-addressable totals (total_q, total_kv, num_blocks, capacities), k_new/v_new shapes
 *   and dtypes and seq_new <= the capacity, caches that do not overlap themselves when
 *   appended to, and the combinations refused above.  A plan with want_backward and a
 *   cache or append is UNSUPPORTED (inference only); varlen has a backward.
 * - At forward (and backward), where only the device holds the values, INVALID_ARGUMENT
 *   naming the tensor and the sequence, with nothing written (no O, LSE or cache row):
 *   cu_seqlens_q/kv not non-decreasing, negative, or past their tensor's rows; a length
 *   beyond max_seqlen_q/kv; seqused_kv negative; len_kv(b) beyond the dense cache's
 *   capacity or the block table's (max_blocks_per_seq x block_size), which is also an
 *   append past the cache's end; a block index that a sequence reads or appends into
 *   outside [0, num_blocks).  The host backend checks every one before any work.  GPU
 *   backends cannot read their buffers before launching without a synchronizing copy:
 *   their kernels clamp every index they load, so a bad value never makes them read or
 *   write outside the tensors (a bad sequence's rows are then left unwritten), and with
 *   the plan option check_device_inputs they run the checks above on the device first and
 *   return INVALID_ARGUMENT like the host, at the cost of one synchronization per call. */

/* Non-finite values, the same on every backend and algorithm:
 * - scale must be finite, >= 0 (0 means 1/sqrt(head_dim)) and at most FLT_MAX / log2(e)
 *   (about 2.35e38); others are refused by validation and plan_create.
 * - A query row that sees no key (causal masks) is fully masked: O = 0 and LSE = -inf.
 *   LSE = -inf marks fully masked rows only.
 * - Scores are float32: a dot product q.k beyond the float32 range, or a score scale x q.k
 *   beyond FLT_MAX / log2(e) (the exp2 domain the kernels work in), counts as +inf or -inf
 *   by its sign.
 * - A row that sees a NaN score (a NaN in its row of Q or in a visible row of K) or a +inf
 *   score, or whose visible scores are all -inf, gets NaN in every element of O and in LSE
 *   (and probabilities).  A -inf score among finite ones gets weight 0.
 * - NaN or inf in V reaches O through the weighted sum as IEEE arithmetic gives it.
 * - A row that sees no key through a window, attn_mask or -inf bias is fully masked like
 *   a causal one (O = 0, LSE = -inf; with sinks, O = 0 and LSE = the sink). */

/* Fills a descriptor for contiguous BHSD tensors of one dtype, scale 0, no mask, descales 0
 * (meaning 1).  With POLYATTN_DTYPE_E4M3, o is bf16 (set o.dtype for f16 or f32). */
POLYATTN_API void polyattn_attention_desc_init(polyattn_attention_desc *desc, polyattn_dtype dtype,
                                               int64_t batch, int64_t heads_q, int64_t heads_kv,
                                               int64_t seq_q, int64_t seq_kv, int64_t head_dim,
                                               int64_t head_dim_v);

/* Checks a descriptor without a device.  On failure, *message (may be NULL) names the
 * field, e.g. "k.shape[3] (head_dim) is 48 but q.shape[3] is 64"; it stays valid until
 * the next call from this thread. */
POLYATTN_API polyattn_status polyattn_attention_desc_validate(const polyattn_attention_desc *desc,
                                                              const char **message);

/* ---- plans --------------------------------------------------------------- */

typedef struct polyattn_plan_options {
    size_t struct_size;           /* sizeof(polyattn_plan_options) */
    polyattn_algo algo;           /* AUTO: by the selection policy */
    uint64_t memory_budget_bytes; /* 0: the device's memory; caps workspace + outputs + inputs */
    int debug;                    /* prefer the unfused path (debuggable, returns probabilities) */
    int want_lse;                 /* the forward writes the log-sum-exp, f32 [b, hq, sq] */
    int want_probs;               /* the forward writes probabilities, f32 [b, hq, sq, skv] */
    /* AUTO only: time every eligible algorithm (random inputs, a warm-up and a median of
     * three calls) and choose the fastest.  The winner is remembered per (backend, device,
     * dtype, mask, head dims, power-of-two buckets of batch*heads, seq_q and seq_kv), so
     * later plans of the bucket cost nothing.  Needs device memory for one extra set of
     * inputs and outputs while planning. */
    int autotune;
    /* Optional: a text file that keeps autotune winners across processes (read when the
     * first plan needs it, appended with each new winner).  NULL: memory only. */
    const char *autotune_cache_file;
    /* The plan also prepares the backward pass (polyattn_backward).  Implies want_lse: the
     * forward then writes the log-sum-exp the backward needs.  AUTO picks only among the
     * algorithms whose backend has a backward for them. */
    int want_backward;
    /* Bitwise-reproducible gradients: no atomics in the dQ accumulation (slower on GPUs).
     * Ignored without want_backward (the forward is deterministic anyway). */
    int deterministic;
    /* Appended.  With want_backward and a bias: the backward also writes d_bias, f32
     * contiguous [bias.shape], summed over the dimensions the bias broadcasts. */
    int want_bias_grad;
    /* Appended.  Serving layouts on GPU backends: validate the device-resident offsets,
     * lengths and block indices before each forward (see "What is checked where").  The
     * host backend always does. */
    int check_device_inputs;
    /* Appended.  Key splits of a flash forward (split-KV: blocks take disjoint key ranges
     * and a second kernel merges their partial results by log-sum-exp, as
     * polyattn_merge_states does).  0: the plan chooses from the device's compute units,
     * the grid and the key length (decode and other small grids); 1: never split; N >= 2:
     * at most N splits (capped at the key tiles and at 128).  Paths that cannot split run
     * unsplit; plan info reports the count used. */
    int num_splits;
} polyattn_plan_options;

POLYATTN_API void polyattn_plan_options_init(polyattn_plan_options *options);

typedef struct polyattn_plan polyattn_plan;

/* What the planner thought of one algorithm. */
typedef struct polyattn_candidate {
    polyattn_algo algo;
    polyattn_status status; /* SUCCESS: eligible; else why it was rejected */
    int chosen;
    uint64_t workspace_bytes;
    uint64_t device_bytes; /* inputs + outputs + workspace on the device */
    char reason[256];      /* why chosen, or why rejected */
} polyattn_candidate;

typedef struct polyattn_plan_info {
    size_t struct_size;
    polyattn_backend backend;
    polyattn_algo algo;
    uint64_t workspace_bytes; /* the caller passes a buffer at least this large */
    uint64_t device_bytes;    /* estimated device memory of a call, inputs included */
    /* 2*(head_dim + head_dim_v) per visible (query, key) pair.  Serving layouts: the
     * lengths live on the device, so flops is an upper bound, counted as num_seqs
     * sequences of max_seqlen_q queries and max_seqlen_kv keys each (give tight max_seqlen
     * hints for a tight figure), and min_bytes_moved and device_bytes count the tensors as
     * described (whole caches, every packed row, the appended rows, the LSE). */
    double flops;
    double min_bytes_moved; /* each input read once, each output written once */
    int kernel_launches;
    char reason[256]; /* why this algorithm was chosen */
    int n_candidates; /* unfused, fused, flash in that order */
    polyattn_candidate candidates[3];
    /* Plans made with want_backward: the workspace polyattn_backward needs (else 0). */
    uint64_t backward_workspace_bytes;
    /* Appended (callers built before it pass a smaller struct_size and get the members
     * above).  The key splits of the chosen path (1: none; see options.num_splits), and
     * the descriptor's serving layout as planned. */
    int num_splits;
    int varlen_q;
    polyattn_kv_layout kv_layout;
    int64_t kv_block_size; /* paged: k.shape[2]; else 0 */
} polyattn_plan_info;

/* Validates, selects an algorithm, prepares kernels.  On failure, the context's last
 * error says why (with every candidate's rejection when AUTO found none). */
POLYATTN_API polyattn_status polyattn_plan_create(polyattn_context *context,
                                                  const polyattn_attention_desc *desc,
                                                  const polyattn_plan_options *options,
                                                  polyattn_plan **plan);
POLYATTN_API void polyattn_plan_destroy(polyattn_plan *plan);
POLYATTN_API polyattn_status polyattn_plan_get_info(const polyattn_plan *plan,
                                                    polyattn_plan_info *info);

/* Runs the forward pass on the context's stream or queue (asynchronously on GPUs).
 * q, k, v, o: buffers holding the tensors at the descriptor's strides.
 * lse: f32 [batch, heads_q, seq_q] contiguous, required iff want_lse, else NULL.
 * probs: f32 [batch, heads_q, seq_q, seq_kv] contiguous, required iff want_probs.
 * workspace: at least workspace_bytes, or NULL when that is 0.
 * Rows of a query that sees no key (causal bottom-right with seq_q > seq_kv)
 * get O = 0, LSE = -inf and probabilities 0 on every backend. */
POLYATTN_API polyattn_status polyattn_forward(polyattn_plan *plan, const polyattn_buffer *q,
                                              const polyattn_buffer *k, const polyattn_buffer *v,
                                              polyattn_buffer *o, polyattn_buffer *lse,
                                              polyattn_buffer *probs, polyattn_buffer *workspace);

/* Runs the backward pass of a plan made with want_backward, on the context's stream or
 * queue (asynchronously on GPUs), for the loss gradient d_o = dL/dO:
 *   dq = dL/dQ, dk = dL/dK, dv = dL/dV (dk and dv summed over the query heads of a GQA group).
 * q, k, v, o: the forward's inputs and its output O (the backward reads O).
 * d_o: the gradient of O, laid out like o (the descriptor's o strides and dtype).
 * lse: the f32 log-sum-exp the forward wrote for these inputs (want_backward implies
 *      want_lse), contiguous [batch, heads_q, seq_q].
 * dq, dk, dv: outputs laid out like q, k and v (the same descriptor strides and dtype), so a
 *      buffer that can hold q can hold dq.  They must not overlap each other or any input
 *      (checked on byte ranges: a packed dQKV buffer is not accepted yet).
 * workspace: at least backward_workspace_bytes (plan info), or NULL when that is 0.
 * Queries that see no key (fully masked rows) get dq = 0 and add nothing to dk and dv. */
POLYATTN_API polyattn_status polyattn_backward(polyattn_plan *plan, const polyattn_buffer *q,
                                               const polyattn_buffer *k, const polyattn_buffer *v,
                                               const polyattn_buffer *o, const polyattn_buffer *d_o,
                                               const polyattn_buffer *lse, polyattn_buffer *dq,
                                               polyattn_buffer *dk, polyattn_buffer *dv,
                                               polyattn_buffer *workspace);

/* The tensors a descriptor's variants and serving layouts need, beside q, k, v and o.
 * Zero-initialise, set struct_size, and fill what the descriptor asks for (NULL for the
 * rest); checked against the plan like every other buffer.  Grows behind struct_size: a
 * struct_size that ends before a member leaves it NULL. */
typedef struct polyattn_extra_tensors {
    size_t struct_size;
    const polyattn_buffer *alibi_slopes; /* f32 [heads_q] or [batch, heads_q] */
    const polyattn_buffer *bias;         /* at the descriptor's bias strides and dtype */
    const polyattn_buffer *attn_mask;    /* u8 at the descriptor's attn_mask strides */
    const polyattn_buffer *sinks;        /* f32 [heads_q] */
    /* Backward outputs: d_bias (want_bias_grad) f32 contiguous [bias.shape], d_sinks f32
     * [heads_q] (has_sinks). */
    polyattn_buffer *d_bias;
    polyattn_buffer *d_sinks;
    /* Appended: the serving layouts' tensors (int32, contiguous; see the descriptor). */
    const polyattn_buffer *cu_seqlens_q;  /* [num_seqs + 1] with varlen_q */
    const polyattn_buffer *cu_seqlens_kv; /* [num_seqs + 1] with POLYATTN_KV_VARLEN */
    const polyattn_buffer *seqused_kv;    /* [num_seqs] with POLYATTN_KV_CACHE or PAGED */
    const polyattn_buffer *block_table;   /* [num_seqs, max_blocks_per_seq] with PAGED */
    const polyattn_buffer *k_new;         /* at the descriptor's k_new strides (append) */
    const polyattn_buffer *v_new;         /* at v_new's strides */
} polyattn_extra_tensors;

/* polyattn_forward and polyattn_backward with the variants' and serving layouts' tensors
 * (extra may be NULL when the descriptor asks for none).  The same struct serves both
 * calls: the forward ignores d_bias and d_sinks.  With varlen_q the LSE (and the
 * backward's lse) is f32 contiguous [heads_q, total_q]. */
POLYATTN_API polyattn_status polyattn_forward_ex(polyattn_plan *plan, const polyattn_buffer *q,
                                                 const polyattn_buffer *k, const polyattn_buffer *v,
                                                 polyattn_buffer *o, polyattn_buffer *lse,
                                                 polyattn_buffer *probs, polyattn_buffer *workspace,
                                                 const polyattn_extra_tensors *extra);
POLYATTN_API polyattn_status polyattn_backward_ex(
    polyattn_plan *plan, const polyattn_buffer *q, const polyattn_buffer *k,
    const polyattn_buffer *v, const polyattn_buffer *o, const polyattn_buffer *d_o,
    const polyattn_buffer *lse, polyattn_buffer *dq, polyattn_buffer *dk, polyattn_buffer *dv,
    polyattn_buffer *workspace, const polyattn_extra_tensors *extra);

/* ---- state merge ---------------------------------------------------------- */

/* Partial attention results over disjoint key sets of the same queries, stacked: part p's
 * output O_p [batch, heads, seq, head_dim_v] lies at the `part` strides, part_stride
 * elements after O_{p-1}; its log-sum-exp LSE_p is f32, contiguous [num_parts, batch, heads,
 * seq] (what polyattn_forward writes with want_lse, one forward per key set).  The merge is
 * the exact attention over the union of the key sets (split-KV decode's combine, cascade or
 * prefix attention, context parallelism):
 *   LSE = log(sum_p exp(LSE_p)),   O = sum_p exp(LSE_p - LSE) O_p.
 * Per row: a part with LSE_p = -inf saw no key and contributes nothing, whatever its O_p
 * holds (NaN included); when every part is -inf, O = 0 and LSE = -inf (a fully masked row).
 * A NaN or +inf LSE_p makes the row's O and LSE NaN.  NaN or inf in a contributing O_p
 * reaches O through the weighted sum as IEEE arithmetic gives it.  The host backend sums in
 * double; others accumulate in float32. */
typedef struct polyattn_merge_desc {
    size_t struct_size;        /* sizeof(polyattn_merge_desc): lets the struct grow */
    int64_t num_parts;         /* P >= 1 */
    polyattn_tensor_desc part; /* one O_p: [batch, heads, seq, head_dim_v], f32, f16 or bf16 */
    int64_t part_stride;       /* elements from O_p to O_{p+1}, >= 0 */
    polyattn_tensor_desc out;  /* O: the same shape, its own dtype and strides */
} polyattn_merge_desc;

/* Contiguous parts [num_parts, batch, heads, seq, head_dim_v] and a contiguous BHSD O. */
POLYATTN_API void polyattn_merge_desc_init(polyattn_merge_desc *desc, polyattn_dtype part_dtype,
                                           polyattn_dtype out_dtype, int64_t num_parts,
                                           int64_t batch, int64_t heads, int64_t seq,
                                           int64_t head_dim_v);

/* Merges on the context's stream or queue (asynchronously on GPUs).  parts: the stacked
 * O_p; parts_lse: f32 [num_parts, batch, heads, seq]; out: O at the descriptor's out
 * strides; out_lse: f32 contiguous [batch, heads, seq], or NULL when not wanted.  Outputs
 * must not overlap the inputs or each other.  Everything is checked before any work is
 * queued: a failed call writes nothing.  A backend without a merge returns UNSUPPORTED
 * with the reason in the context's last error. */
POLYATTN_API polyattn_status polyattn_merge_states(polyattn_context *context,
                                                   const polyattn_merge_desc *desc,
                                                   const polyattn_buffer *parts,
                                                   const polyattn_buffer *parts_lse,
                                                   polyattn_buffer *out, polyattn_buffer *out_lse);

/* ---- timing -------------------------------------------------------------- */

/* Device-side timestamps on the context's stream (CUDA/HIP events, OpenCL markers with
 * profiling, a monotonic clock on the host backend). */
typedef struct polyattn_event polyattn_event;
POLYATTN_API polyattn_status polyattn_event_create(polyattn_context *context,
                                                   polyattn_event **event);
POLYATTN_API void polyattn_event_destroy(polyattn_event *event);
POLYATTN_API polyattn_status polyattn_event_record(polyattn_event *event);
/* Blocks until both events completed; milliseconds from start to end. */
POLYATTN_API polyattn_status polyattn_event_elapsed_ms(polyattn_event *start, polyattn_event *end,
                                                       double *ms);

#ifdef __cplusplus
}
#endif
#endif /* POLYATTN_H */
