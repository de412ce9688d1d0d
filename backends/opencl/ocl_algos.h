/*
 * What the OpenCL algorithm files share: the tuning table (ocl_tuning.c), the
 * POLYATTN_FORCE keys (ocl_force.c), a plan's decisions and state, and the argument and
 * launch helpers (ocl_launch.c).
 *
 * One plan, one decision: each algorithm's decide function is pure (device caps, problem,
 * forced keys); check reports it, prepare stores it in the plan state and builds its
 * kernels, forward and backward only execute it.
 */
#ifndef OCL_ALGOS_H
#define OCL_ALGOS_H

#include "ocl_internal.h"

#include <limits.h>
#include <stdint.h>

#define LOG2E 1.4426950408889634

/* ---- tuning (ocl_tuning.c) ------------------------------------------------ */

/* Forward tile of the flash and fused kernels (kernels/tile.cl): a work-group of RG x CG
 * work-items owns BM query rows and walks BN keys at a time; Q/K staged DK columns at a
 * time, V VN rows at a time. */
typedef struct ocl_tiles {
    int bm, bn, rg, cg, dk, vn;
} ocl_tiles;

/* Tile of the tiled flash backward (kernels/flash_bwd.cl): a work-group of RG x CG owns R
 * rows (keys for dK/dV, queries for dQ) and streams the other side C rows at a time. */
typedef struct ocl_bwd_tiles {
    int r, c, rg, cg, dk, vn;
} ocl_bwd_tiles;

/* One band of the head-dim table: problems with max(head_dim, head_dim_v) <= max_dim. */
typedef struct ocl_band {
    int max_dim;
    ocl_tiles fwd;
    int fwd_dk_narrow; /* the forward's DK when head_dim < 32 */
    ocl_bwd_tiles bwd;
} ocl_band;

/* Scalar tuning constants of the kernel family. */
typedef struct ocl_tuning {
    int flash_rows_kb;         /* flash_rows.cl: keys per block (KB) */
    int softmax_wg;            /* unfused.cl: work-items per softmax row (SM_WG) */
    size_t rows_group;         /* CPU row kernels: work-items per group at most ... */
    size_t rows_group_private; /* ... and their private arrays at most this many bytes */
    uint64_t local_reserve;    /* local memory the driver keeps for itself */
    size_t grid_wg;            /* grid-stride 1-D kernels: work-items per group */
    size_t grid_max_groups;    /* ... and groups at most */
} ocl_tuning;

extern const ocl_tuning ocl_tune;

/* The band of a problem's head dims; NULL above the table (unsupported). */
const ocl_band *ocl_band_of(int64_t head_dim, int64_t head_dim_v);
/* The largest head dim the table covers. */
int ocl_max_head_dim(void);
/* Rows per work-item of the CPU row kernels (flash forward and backward). */
int ocl_rows_per_item(int64_t head_dim, int64_t head_dim_v);
/* The forward tile of a band for this head_dim. */
ocl_tiles ocl_band_tiles(const ocl_band *b, int64_t head_dim);

/* Local memory a kernel may use on this device. */
uint64_t ocl_local_budget(const ocl_caps *c);
/* The 4-wide flash kernel's tile constraints (four rows per work-item, keys in fours). */
int ocl_flash_v4(const ocl_tiles *t);
uint64_t ocl_flash_local_bytes(const ocl_tiles *t, int64_t dv);
uint64_t ocl_fused_fixed_local_bytes(const ocl_tiles *t, int64_t dv);
uint64_t ocl_bwd_tiled_local_bytes(const ocl_bwd_tiles *t, int64_t d, int64_t dv);
/* Whether a tile's shape is one the kernels take (divisibility, positive sizes). */
int ocl_tiles_valid(const ocl_tiles *t);
int ocl_bwd_tiles_valid(const ocl_bwd_tiles *t);

/* -D build options of a kernel variant (device quirks are appended by ocl_get_program). */
void ocl_tile_options(const pa_problem *p, const ocl_tiles *t, char *buf, size_t size);
void ocl_rows_options(const pa_problem *p, int rows, char *buf, size_t size);
void ocl_bwd_tiled_options(const pa_problem *p, const ocl_bwd_tiles *t, char *buf, size_t size);
void ocl_bwd_rows_options(const pa_problem *p, int rows, char *buf, size_t size);
void ocl_unfused_options(const pa_problem *p, char *buf, size_t size);

/* ---- POLYATTN_FORCE keys (ocl_force.c) ------------------------------------ */

enum { OCL_FORCE_NONE = 0, OCL_FORCE_TILED, OCL_FORCE_ROWS, OCL_FORCE_COOP };
/* opencl.coop: the cooperative decode kernel's shape (ocl_serving.c). */
enum { OCL_COOP_AUTO = 0, OCL_COOP_BATCHED, OCL_COOP_SERIAL };

typedef struct ocl_force {
    int flash;     /* opencl.flash: OCL_FORCE_TILED or _ROWS */
    int bwd;       /* opencl.bwd */
    int serving;   /* opencl.serving: OCL_FORCE_COOP or _ROWS */
    int coop;      /* opencl.coop: OCL_COOP_BATCHED or _SERIAL */
    int has_tiles; /* opencl.tiles */
    ocl_tiles tiles;
    int has_bwd_tiles; /* opencl.bwd_tiles */
    ocl_bwd_tiles bwd_tiles;
    uint64_t unfused_chunk; /* opencl.unfused_chunk: 0 unless forced */
    char text[256];         /* the opencl.* pairs as given, for the dispatch log */
} ocl_force;

/* Reads the device's opencl.* keys; NULL, or a sentence (device-owned) naming
 * POLYATTN_FORCE and the key whose value is bad (unknown opencl.* keys included). */
const char *ocl_force_read(ocl_device *d, ocl_force *f);

/* ---- a plan's decisions and state ----------------------------------------- */

/* The forward of a flash or fused plan. */
typedef struct ocl_fwd_choice {
    ocl_tiles tiles;
    int rows;              /* flash: rows per work-item of the row kernel; 0: tiled */
    size_t rows_group;     /* flash rows: work-items per group */
    int v4;                /* flash tiled: the 4-wide kernel */
    int scores_local;      /* fused: the scores stay in local memory */
    uint64_t scores_bytes; /* fused: bytes of one group's scores */
    uint64_t local_bytes;  /* local memory of one work-group */
    uint64_t workspace;    /* bytes */
    char forced[160];      /* POLYATTN_FORCE keys that shaped it ("" if none) */
} ocl_fwd_choice;

/* The backward of a flash or fused plan (the flash backward kernels). */
typedef struct ocl_bwd_choice {
    int tiled;         /* the tiled GPU kernels, else the row-streaming ones */
    int fell_back;     /* rows because the tiled tile does not fit the device */
    ocl_bwd_tiles t;   /* tiled */
    int rows;          /* row kernels: rows per work-item (BR) */
    size_t rows_group; /* row kernels: work-items per group */
    uint64_t local_bytes;
    char forced[160];
} ocl_bwd_choice;

/* The forward of a serving-layout flash plan (ocl_serving.c, kernels/serving.cl and
 * serving_coop.cl). */
typedef struct ocl_srv_choice {
    int dense;         /* a plain dense decode problem on this path (ocl_dense_decode) */
    int coop;          /* the cooperative decode kernel (GPUs), else the row kernel */
    int forced;        /* opencl.serving chose the kernel */
    const char *unfit; /* opencl.serving=coop: why the coop kernel cannot take the problem */
    int rows;          /* row kernel: packed (query, head) rows per work-item */
    size_t group;      /* work-items per work-group */
    uint64_t items;    /* row kernel: work-items per (sequence, KV head, split), before rounding */
    int co_r, co_rg, co_vw; /* coop: packed rows (a power of two), row groups, V columns */
    int co_batch;           /* coop: the batched shape (else the serial one) */
    int co_kch, co_vb;      /* batched: K chunks of 8 and V rows a work-item loads at once */
    int coop_forced;        /* opencl.coop chose the shape */
    int merge_cols;         /* splits: the merge runs a work-item per (row, column) */
    uint64_t local_bytes;   /* coop: local memory of one work-group */
    int splits;             /* key splits (1: none) */
    uint64_t part_o;        /* splits: floats of the partial O (the partial LSE follows) */
    uint64_t workspace;
} ocl_srv_choice;

typedef struct ocl_plan_state {
    /* forward */
    cl_kernel kernel, pack, unpack;
    ocl_fwd_choice fwd;                        /* flash, fused */
    cl_kernel srv_append, srv_merge, srv_zero; /* serving: KV append, splits' merge, zeros */
    int on_serving; /* the forward runs ocl_serving_forward (serving layouts, dense decode) */
    ocl_srv_choice srv;
    /* unfused forward: packed inputs, workspace byte offsets, passes */
    int pack_q, pack_k, pack_v, unpack_o;
    uint64_t ws_s, ws_q, ws_k, ws_v, ws_o, ws_total;
    uint64_t chunk;        /* (batch, head) matrices per pass */
    uint64_t forced_chunk; /* POLYATTN_FORCE opencl.unfused_chunk, 0 if none */
    size_t *offs;          /* 6 arrays of batch*heads_q element offsets: A1 B1 C1 A2 B2 C2 */
    float *alphas, *betas;
    /* backward (plans with want_backward) */
    cl_kernel bwd_delta, bwd_grad, bwd_pack, bwd_unpack, bwd_dkdv, bwd_dq;
    cl_kernel bwd_sinks, bwd_bias; /* variants: d_sinks, d_bias */
    ocl_bwd_choice bwd;            /* flash, fused */
    /* unfused backward: packed inputs, staged outputs, workspace byte offsets, passes */
    int bp_q, bp_k, bp_v, bp_do, bu_dq, bu_dk, bu_dv;
    uint64_t bws_q, bws_k, bws_v, bws_do, bws_dq, bws_dk, bws_dv, bws_delta, bws_p, bws_ds,
        bws_total;
    uint64_t bchunk; /* (batch, kv head) groups per pass */
    size_t *boffs;   /* 7 arrays per (batch, head) matrix, 6 per (batch, kv head) group */
    float *bscale, *bone;
} ocl_plan_state;

/* Decisions (pure; NULL or why the plan cannot run).  The backward's also appends how it
 * runs to note (size bytes) when note is not NULL. */
const char *ocl_flash_decide(const ocl_device *d, const pa_problem *p, const ocl_force *f,
                             ocl_fwd_choice *c);
const char *ocl_fused_decide(const ocl_device *d, const pa_problem *p, const ocl_force *f,
                             ocl_fwd_choice *c);
const char *ocl_bwd_decide(const ocl_device *d, const pa_problem *p, const ocl_force *f,
                           ocl_bwd_choice *c);
void ocl_bwd_note(const pa_problem *p, const ocl_bwd_choice *c, char *note, size_t size);

/* The decisions a flash or fused check reports (ocl_flash_bwd.c): the forced keys
 * (INVALID_ARGUMENT when malformed), then decide's forward and, for a backward plan, the
 * flash backward's (UNSUPPORTED with the reason in *why_not). */
typedef const char *(*ocl_fwd_decide_fn)(const ocl_device *d, const pa_problem *p,
                                         const ocl_force *f, ocl_fwd_choice *c);
polyattn_status ocl_check_decisions(ocl_device *d, const pa_problem *p, ocl_fwd_decide_fn decide,
                                    ocl_fwd_choice *c, ocl_bwd_choice *b, const char **why_not);
/* NULL when the OpenCL kernels read the problem's dtypes: q, k, v and o share one of f32,
 * f16 and bf16, or (only where e4m3_ok: the flash kernels) q, k, v are e4m3 with o in one of
 * those; otherwise why not. */
const char *ocl_dtype_refusal(const pa_problem *p, int e4m3_ok);
/* Score scale in the exp2 domain with the e4m3 descales of q and k folded in (the kernels'
 * scale_log2 argument), and the factor of O (v's descale: o_scale); 1 and the plain scale
 * for other dtypes. */
float ocl_scale_log2(const pa_problem *p);
float ocl_o_scale(const pa_problem *p);
/* o's dtype: its own with e4m3 inputs (PA_ODTYPE), else the inputs'. */
polyattn_dtype ocl_o_dtype(const pa_problem *p);
/* Checks shared by the flash and fused forward tiles (not the dtype: ocl_dtype_refusal). */
const char *ocl_check_common(const ocl_device *d, const pa_problem *p, const ocl_tiles *t,
                             uint64_t local_bytes);

/* The flash backward (flash and fused plans): kernels and the call. */
polyattn_status ocl_flash_bwd_prepare(ocl_device *d, const pa_problem *p, ocl_plan_state *s);
uint64_t ocl_flash_bwd_workspace(pa_device *dev, const pa_problem *p);
/* d_bias recomputed from Q, K, V, dO, the LSE and D at ws[delta0 ..] (flash_bwd_dbias_kernel;
 * the unfused backward uses it too when softcap keeps dS out of its dS region). */
polyattn_status ocl_flash_bwd_dbias(ocl_device *d, cl_kernel k, const pa_problem *p,
                                    const pa_backward_io *io, const cl_long off[9], cl_mem ws,
                                    cl_long delta0);
polyattn_status ocl_flash_backward(pa_device *dev, const pa_problem *p, void *state,
                                   const pa_backward_io *io);

/* ---- helpers (ocl_launch.c) ----------------------------------------------- */

/* Kernel-argument helper: a failure names the argument (needs `ocl_device *d`). */
#define SET_ARG(k, i, v)                                                                           \
    do {                                                                                           \
        cl_int e_ = clSetKernelArg((k), (cl_uint)(i), sizeof(v), &(v));                            \
        if (e_ != CL_SUCCESS) return ocl_fail(d, e_, "clSetKernelArg " #v);                        \
    } while (0)

/* Bytes of one element (e4m3: 1). */
size_t ocl_esize(polyattn_dtype t);
int64_t ocl_round_up(int64_t x, int64_t m);
cl_long4 ocl_strides4(const int64_t s[4]);
/* Element offset of a tensor reference; 0 when the byte offset is not element-aligned. */
int ocl_elem_offset(const pa_tensor_ref *r, size_t es, cl_long *out);
/* 1 for a causal mask, with the bottom-right offset in *offset. */
int ocl_causal_of(const pa_problem *p, int *offset);

polyattn_status ocl_make_kernel(ocl_device *d, const char *const *srcs, int n, const char *opts,
                                const char *name, cl_kernel *out);
ocl_plan_state *ocl_state_new(void);
void ocl_release_state(pa_device *dev, void *state);
polyattn_status ocl_enqueue(ocl_device *d, cl_kernel k, const size_t *global, const size_t *local,
                            const char *what);
/* A grid-stride 1-D launch over n items. */
polyattn_status ocl_enqueue_1d(ocl_device *d, cl_kernel k, uint64_t n, const char *what);
/* The q/k/v/o arguments (0..11) shared by the flash and fused kernels. */
polyattn_status ocl_set_qkvo_args(ocl_device *d, cl_kernel k, const pa_problem *p, const pa_io *io);
/* A backward call's tensors as element offsets (f32 for the LSE). */
polyattn_status ocl_bwd_offsets(ocl_device *d, const pa_problem *p, const pa_backward_io *io,
                                cl_long off[9]);
/* D_i = rowsum(dO * O) into ws[delta_off ..] (one float per query row). */
polyattn_status ocl_bwd_delta(ocl_device *d, cl_kernel k, const pa_problem *p,
                              const pa_backward_io *io, const cl_long off[9], cl_mem ws,
                              cl_long delta_off);

int ocl_one_launch(pa_device *dev, const pa_problem *p);

/* ---- score variants (ocl_variants.c) -------------------------------------- */

/* Whether a plan compiles variants into its kernels (kernels/variants.cl, -DPA_VAR ...). */
int ocl_var_on(const pa_problem *p);
/* Appends the variants' -D options to buf (nothing for a plain plan). */
void ocl_var_options(const pa_problem *p, char *buf, size_t size);
/* ocl_make_kernel with the variants' source and options when the plan needs them. */
polyattn_status ocl_make_kernel_p(ocl_device *d, const pa_problem *p, const char *const *srcs,
                                  int n, const char *opts, const char *name, cl_kernel *out);
/* The same with the variants' source and -DPA_VAR even for a plain plan: the serving kernels
 * (kernels/serving*.cl) take PA_VAR_PARAMS always, dense decode plans included. */
polyattn_status ocl_make_kernel_var(ocl_device *d, const pa_problem *p, const char *const *srcs,
                                    int n, const char *opts, const char *name, cl_kernel *out);
/* The PA_VAR_PARAMS arguments (17) from index first; nothing for a plain plan. */
polyattn_status ocl_var_set_args(ocl_device *d, cl_kernel k, cl_uint first, const pa_problem *p,
                                 const pa_variant_io *var, cl_mem dummy, cl_long mat0);
/* The same for every plan (the serving kernels). */
polyattn_status ocl_var_set_args_all(ocl_device *d, cl_kernel k, cl_uint first, const pa_problem *p,
                                     const pa_variant_io *var, cl_mem dummy, cl_long mat0);
/* d_sinks from the LSE and D = rowsum(dO * O) at ws[delta_off ..] (plans with sinks). */
polyattn_status ocl_var_sinks_grad(ocl_device *d, cl_kernel k, const pa_problem *p,
                                   const pa_backward_io *io, cl_long lse_off, cl_mem ws,
                                   cl_long delta_off);

/* ---- serving layouts (ocl_serving.c) and merge_states (ocl_merge.c) ------ */

/* Whether a dense problem (no serving layout) runs the serving forward as a dense KV layout
 * on the cooperative decode kernel with key splits: decode-like (at most 16 queries and 64
 * packed rows, long keys) on a GPU whose grid the tiled flash kernel would leave mostly idle,
 * or under opencl.serving=coop on any device. */
int ocl_dense_decode(const ocl_device *d, const pa_problem *p, const ocl_force *f);
/* Whether a flash plan's forward runs on the serving path: serving layouts, dense decode. */
int ocl_on_serving(const ocl_device *d, const pa_problem *p, const ocl_force *f);
/* The serving forward's decision (pure; NULL or why the plan cannot run). */
const char *ocl_serving_decide(const ocl_device *d, const pa_problem *p, const ocl_force *f,
                               ocl_srv_choice *c);
polyattn_status ocl_serving_check(ocl_device *d, const pa_problem *p, const char **why_not);
polyattn_status ocl_serving_prepare(ocl_device *d, const pa_problem *p, ocl_plan_state *s);
polyattn_status ocl_serving_forward(ocl_device *d, const pa_problem *p, const ocl_plan_state *s,
                                    const pa_io *io);
int ocl_flash_splits(pa_device *dev, const pa_problem *p);
int ocl_flash_launches(pa_device *dev, const pa_problem *p);
/* The key splits' partials of a plan on the serving path (0 for the others). */
uint64_t ocl_serving_workspace(pa_device *dev, const pa_problem *p);
/* The varlen backward (ocl_serving_bwd.c): each sequence through the flash backward. */
const char *ocl_serving_bwd_decide(const ocl_device *d, const pa_problem *p, const ocl_force *f,
                                   ocl_bwd_choice *c);
polyattn_status ocl_serving_bwd_prepare(ocl_device *d, const pa_problem *p, ocl_plan_state *s);
uint64_t ocl_serving_bwd_workspace(const pa_problem *p);
polyattn_status ocl_serving_backward(ocl_device *d, const pa_problem *p, const ocl_plan_state *s,
                                     const pa_backward_io *io);
polyattn_status ocl_merge_states(pa_device *dev, const pa_merge_problem *m, const pa_merge_io *io);

/* ---- the algorithms' ops (ocl_flash.c, ocl_fused.c, ocl_unfused*.c) -------- */

polyattn_status ocl_flash_check(pa_device *dev, const pa_problem *p, const char **why_not);
uint64_t ocl_flash_workspace(pa_device *dev, const pa_problem *p);
polyattn_status ocl_flash_prepare(pa_device *dev, const pa_problem *p, void **state);
polyattn_status ocl_flash_forward(pa_device *dev, const pa_problem *p, void *state,
                                  const pa_io *io);
/* The flash plan's backward: dense (ocl_flash_backward) or varlen (ocl_serving_backward). */
polyattn_status ocl_flash_backward_any(pa_device *dev, const pa_problem *p, void *state,
                                       const pa_backward_io *io);

polyattn_status ocl_fused_check(pa_device *dev, const pa_problem *p, const char **why_not);
uint64_t ocl_fused_workspace(pa_device *dev, const pa_problem *p);
polyattn_status ocl_fused_prepare(pa_device *dev, const pa_problem *p, void **state);
polyattn_status ocl_fused_forward(pa_device *dev, const pa_problem *p, void *state,
                                  const pa_io *io);

/* Unfused workspace layouts (fill the state's offsets; return total bytes, 0 with a chunk
 * of 0: unsupported). */
uint64_t ocl_unfused_layout(const pa_problem *p, const ocl_force *f, ocl_plan_state *s);
uint64_t ocl_unfused_bwd_layout(const pa_problem *p, const ocl_force *f, ocl_plan_state *s);
polyattn_status ocl_unfused_check(pa_device *dev, const pa_problem *p, const char **why_not);
uint64_t ocl_unfused_workspace(pa_device *dev, const pa_problem *p);
int ocl_unfused_launches(pa_device *dev, const pa_problem *p);
polyattn_status ocl_unfused_prepare(pa_device *dev, const pa_problem *p, void **state);
polyattn_status ocl_unfused_forward(pa_device *dev, const pa_problem *p, void *state,
                                    const pa_io *io);
uint64_t ocl_unfused_bwd_workspace(pa_device *dev, const pa_problem *p);
/* The backward's kernels and per-pass arrays (opts: the forward's build options). */
polyattn_status ocl_unfused_bwd_prepare(ocl_device *d, const pa_problem *p, const char *opts,
                                        ocl_plan_state *s);
polyattn_status ocl_unfused_backward(pa_device *dev, const pa_problem *p, void *state,
                                     const pa_backward_io *io);

/* CLBlast's kernels index with 32-bit ints: every element offset a GEMM sees stays below. */
#define OCL_CLBLAST_MAX_ELEMS ((uint64_t)INT_MAX - 1024)
/* Whether CLBlast must read (or write) a tensor through a contiguous f32 copy. */
int ocl_needs_pack(const pa_problem *p, const int64_t st[4], int64_t cols);
uint64_t ocl_align256(uint64_t x);

#ifdef POLYATTN_HAVE_CLBLAST
#include <clblast_c.h>
/* A CLBlast status as a name. */
const char *ocl_clblast_name(CLBlastStatusCode c);
/* Copies a strided tensor to (or back from) a contiguous f32 region of the workspace. */
polyattn_status ocl_pack(ocl_device *d, cl_kernel k, int unpack, cl_mem user, cl_long user_off,
                         const int64_t st[4], const int64_t dims[4], cl_mem ws, cl_long ws_off);
/* Contiguous strides of dims. */
void ocl_contiguous(int64_t st[4], const int64_t dims[4]);
#endif

#endif
