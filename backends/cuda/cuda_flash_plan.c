/*
 * CUDA flash planning: which forward kernel runs (mma.sync tensor cores for f16/bf16 at the
 * head dims of flash_tc, 3xTF32 for f32 at those of flash_f32_tile and flash_f32, warpgroup
 * MMA on sm_90 at those of flash_wgmma, else the shared generic SIMT kernel), the wide
 * kernels' schedule, the workspace and the backward.  Decided once per plan; forward never
 * chooses again.
 */
#include "cuda_flash.h"

#include "../gpu/gpu_args_host.h"
#include "flash_f32.h"
#include "flash_hopper.h"
#include "flash_tc.h"
#include "flash_wgmma.h"

#include <stdio.h>
#include <string.h>

/* Why the mma.sync kernels (flash_tc: f16/bf16; flash_f32: 3xTF32 for f32 storage) cannot
 * take p (NULL: they can). */
static const char *mma_refusal(pa_cuda_device *dev, const pa_problem *p)
{
    if (p->dtype == POLYATTN_DTYPE_E4M3)
        return "e4m3 inputs (the tensor-core kernels read f16, bf16 and f32; an FP8 tensor-core "
               "kernel is future work)";
    const int f32 = p->dtype == POLYATTN_DTYPE_F32;
    if (dev->cc_major < 8)
        return f32 ? "the device is older than sm_80 (no mma.sync tf32)"
                   : "the device is older than sm_80 (no mma.sync m16n8k16 bf16)";
    const int hd = (int)p->head_dim;
    const int f32_tile = f32 && pa_cuda_flash_f32_tile_has_head_dim(hd);
    if (p->head_dim != p->head_dim_v || !(f32 ? f32_tile || pa_cuda_flash_f32_has_head_dim(hd)
                                              : pa_cuda_flash_tc_has_head_dim(hd))) {
        snprintf(dev->why_mma, sizeof dev->why_mma,
                 "%s head_dim not among the kernels' (%s%s) or differing from head_dim_v",
                 f32 ? "f32" : "16-bit",
                 f32 ? pa_cuda_flash_f32_tile_head_dims() : pa_cuda_flash_tc_head_dims(),
                 f32 ? pa_cuda_flash_f32_head_dims() : "");
        return dev->why_mma;
    }
    const int64_t align = f32 ? 4 : 8;
    const int64_t *s[4] = {p->q_stride, p->k_stride, p->v_stride, p->o_stride};
    for (int t = 0; t < 4; t++) {
        if (s[t][3] != 1) return "a head_dim stride is not 1";
        for (int i = 0; i < 3; i++)
            if (s[t][i] % align)
                return f32 ? "a stride is not a multiple of 4 elements (16-byte rows)"
                           : "a stride is not a multiple of 8 elements (16-byte rows)";
    }
    const size_t smem = f32_tile ? pa_cuda_flash_f32_tile_smem(hd)
                        : f32    ? pa_cuda_flash_f32_smem(hd, 0)
                                 : pa_cuda_flash_tc_smem(hd, 0);
    if (smem > dev->smem_optin) return "the tile does not fit the device's shared memory";
    return NULL;
}

/* Why the warpgroup-MMA kernel cannot take p, which the mma.sync kernels can (NULL: it can):
 * sm_90 exactly (its image is sm_90a), 16-bit, its head dims, and no zero stride on a
 * dimension longer than 1 (a broadcast), which its TMA tensor maps cannot express. */
static const char *wgmma_refusal(const pa_cuda_device *dev, const pa_problem *p)
{
#ifdef POLYATTN_CUDA_HAVE_WGMMA
    if (dev->cc_major != 9 || dev->cc_minor != 0) return "the device is not sm_90";
    if (p->dtype == POLYATTN_DTYPE_F32) return "f32 storage";
    if (!pa_cuda_flash_wgmma_has_head_dim((int)p->head_dim)) return "no instance at this head_dim";
    if (pa_cuda_has_broadcast_stride(p))
        return "a broadcast (zero) stride, which TMA tensor maps cannot express";
    const int64_t *st[4] = {p->q_stride, p->k_stride, p->v_stride, p->o_stride};
    for (int t = 0; t < 4; t++)
        if (st[t][3] != 1 || st[t][0] % 8 || st[t][1] % 8 || st[t][2] % 8)
            return "a stride that is not 16-byte rows (head_dim stride 1, others multiples of 8)";
    if (pa_cuda_flash_wgmma_smem((int)p->head_dim) > dev->smem_optin)
        return "the tile does not fit the device's shared memory";
    return NULL;
#else
    (void)dev, (void)p;
    return "this build has no sm_90a image (CUDA architectures without 90)";
#endif
}

/* Why the Hopper kernel cannot take e4m3 inputs (NULL: it can): head dim 128, dense
 * layouts, O f16 or bf16, no bias; Q, K and V rows of 16 bytes (its TMA maps and the V
 * transpose).  Checked on an H100 (relative L2 0.011-0.027 against the exact forward,
 * bench/results/2026-12-07-h100-optin-correctness.txt), it replaces the generic SIMT kernel
 * unforced; its speed is not measured yet. */
static const char *hopper_e4m3_refusal(const pa_problem *p)
{
    if (p->head_dim != 128 || p->head_dim_v != 128)
        return "e4m3 inputs on the Hopper kernel: head dim 128 only";
    if (p->o_dtype != POLYATTN_DTYPE_F16 && p->o_dtype != POLYATTN_DTYPE_BF16)
        return "e4m3 inputs on the Hopper kernel: O must be f16 or bf16";
    if (p->has_bias) return "e4m3 inputs with a bias tensor";
    if (pa_problem_serving(p)) return "e4m3 inputs in serving layouts (dense only)";
    const int64_t *st[3] = {p->q_stride, p->k_stride, p->v_stride};
    for (int t = 0; t < 3; t++)
        if (st[t][0] % 16 || st[t][1] % 16 || st[t][2] % 16)
            return "e4m3 rows that are not 16 bytes (strides multiples of 16 elements)";
    return NULL;
}

/* Why the warp-specialized Hopper kernel (flash_hopper.cu) cannot take p, which the
 * mma.sync kernels can (NULL: it can): sm_90 exactly, 16-bit or e4m3, its head dims,
 * window, softcap, ALiBi, sinks and bias but no attn_mask tensor, varlen, dense and paged KV
 * caches but no key splits, and the TMA maps' rules. */
static const char *hopper_refusal(const pa_cuda_device *dev, const pa_problem *p, int forced)
{
#ifdef POLYATTN_CUDA_HAVE_WGMMA
    if (dev->cc_major != 9 || dev->cc_minor != 0) return "the device is not sm_90";
    if (p->dtype == POLYATTN_DTYPE_E4M3) {
        const char *why = hopper_e4m3_refusal(p);
        if (why) return why;
    } else if (p->dtype != POLYATTN_DTYPE_F16 && p->dtype != POLYATTN_DTYPE_BF16) {
        return "the Hopper kernel reads f16, bf16 and e4m3";
    }
    if (!pa_cuda_flash_hopper_has_head_dim((int)p->head_dim) || p->head_dim != p->head_dim_v)
        return "head_dim not among the Hopper kernel's (64, 96, 128, 192, 256) or differing "
               "from head_dim_v";
    if (p->head_dim == 96 && !forced)
        return "head dim 96 on the Hopper kernel is opt-in (cuda.flash=wgmma) until it has run on "
               "a GPU";
    if (p->num_splits > 1) return "key splits (num_splits > 1; the serving kernel has them)";
    if (p->has_attn_mask)
        return "an attn_mask tensor (it has window, softcap, ALiBi, sinks and bias)";
    if (pa_cuda_has_broadcast_stride(p))
        return "a broadcast (zero) stride, which TMA tensor maps cannot express";
    const int64_t *st[4] = {p->q_stride, p->k_stride, p->v_stride, p->o_stride};
    for (int t = 0; t < 4; t++)
        if (st[t][3] != 1 || st[t][0] % 8 || st[t][1] % 8 || st[t][2] % 8)
            return "a stride that is not 16-byte rows (head_dim stride 1, others multiples of 8)";
    if (pa_cuda_flash_hopper_smem((int)p->head_dim, p->has_bias) > dev->smem_optin)
        return "the tile does not fit the device's shared memory";
    return NULL;
#else
    (void)dev, (void)p, (void)forced;
    return "this build has no sm_90a image (CUDA architectures without 90)";
#endif
}

static int sms_of(const pa_cuda_device *dev) { return dev->sm_count > 0 ? dev->sm_count : 1; }

/* The mma.sync wide kernels' schedule (flash_split.h), or the wgmma kernel where it takes
 * over; NULL, or why the forced schedule cannot apply. */
static const char *schedule_of(const pa_cuda_device *dev, const pa_problem *p,
                               const pa_cuda_force *f, int wgmma_ok, pa_flash_split *s)
{
    memset(s, 0, sizeof *s);
    const int f32 = p->dtype == POLYATTN_DTYPE_F32, hd = (int)p->head_dim;
    const int bn = f32 ? pa_cuda_flash_f32_key_tile(hd, 0) : pa_cuda_flash_tc_key_tile(hd, 0);
    if (!bn) { /* the tile kernels (head dims up to 256): one block per query tile */
        if (f->schedule > PA_CUDA_SCHED_GRID)
            return "only the wide mma.sync kernels (head_dim 512, 768, 1024) have schedules";
        return NULL;
    }
    const int forced = f->schedule != PA_CUDA_SCHED_AUTO;
    const int sms = sms_of(dev);
    pa_gpu_args a;
    pa_gpu_args_fill(p, NULL, &a);
    const int split_force = f->schedule == PA_CUDA_SCHED_SPLIT ? f->split_chunk : forced ? 0 : -1;
    pa_flash_split_plan(&a, PA_FLASH_TILE_M, bn, sms, split_force, s);
    if (f->schedule == PA_CUDA_SCHED_SPLIT && !s->chunk)
        return "the balanced schedule does not apply (no query tile has key tiles to split)";
    s->dependent_combine = dev->cc_major >= 9; /* programmatic dependent launch: sm_90+ */
    if (!forced || f->schedule == PA_CUDA_SCHED_KEY_HALVES) {
        /* Key halves (clusters: sm_90+) instead of the plan where they pay. */
        const int force = f->schedule == PA_CUDA_SCHED_KEY_HALVES;
        if (dev->cc_major >= 9 && pa_flash_halves_fit(&a, s, dev->sm_count, force)) {
            s->chunk = s->units = s->blocks = s->slots = 0;
            s->key_halves = 1;
        } else if (force) {
            return dev->cc_major < 9 ? "key halves need clusters (sm_90+)"
                                     : "key halves need a query tile of two key tiles or more";
        }
    }
    if (!forced || f->schedule == PA_CUDA_SCHED_COL_HALVES) {
        /* Column halves (clusters: sm_90+) instead of all that where they pay. */
        const int force = f->schedule == PA_CUDA_SCHED_COL_HALVES;
        const int bn2 = f32 ? pa_cuda_flash_f32_key_tile(hd, 1) : pa_cuda_flash_tc_key_tile(hd, 1);
        const size_t smem2 = f32 ? pa_cuda_flash_f32_smem(hd, 1) : pa_cuda_flash_tc_smem(hd, 1);
        if (dev->cc_major >= 9 && smem2 <= dev->smem_optin &&
            pa_flash_col_halves_fit(&a, bn2, dev->sm_count, force)) {
            s->chunk = s->units = s->blocks = s->slots = 0;
            s->key_halves = 0;
            s->col_halves = 1;
            s->key_tile = bn2;
        } else if (force) {
            return dev->cc_major < 9 ? "column halves need clusters (sm_90+)"
                                     : "column halves do not fit this device or problem";
        }
    }
    /* The warpgroup-MMA kernel (sm_90 exactly) for the 16-bit wide head dims it has, instead
     * of all the above unless a schedule is forced: 1.03-1.99x faster at all 16 shapes
     * measured (GPU time, H100). */
    if (wgmma_ok && !forced) {
        memset(s, 0, sizeof *s);
        s->wgmma = 1;
        s->wgmma_plan = pa_cuda_flash_wgmma_plan(&a, sms, f->wgmma_plan);
    }
    return NULL;
}

/* Whether the serving kernel runs p (16-bit, its head dims; MMA already possible), with
 * the GQA group packed into one tile where seq_q x group fits it and there is no ALiBi. */
/* Whether the query heads of a GQA group share the serving kernel's tiles (decode). */
static int serving_pack(const pa_problem *p)
{
    const int64_t group = p->heads_q / p->heads_kv;
    return p->alibi == POLYATTN_ALIBI_NONE &&
           p->seq_q * group <= pa_cuda_flash_serving_rows((int)p->head_dim, 1);
}

static int serving_kernel_takes(const pa_problem *p, int *pack)
{
    if (p->dtype == POLYATTN_DTYPE_F32 || p->dtype == POLYATTN_DTYPE_E4M3 ||
        !pa_cuda_flash_serving_has_head_dim((int)p->head_dim))
        return 0;
    *pack = serving_pack(p);
    return 1;
}

/* Key splits of the serving kernel: the caller's num_splits (at most one key tile each), or
 * enough to give every SM two blocks when the grid alone cannot, keeping four key tiles or
 * more a split. */
/* The serving kernel's grid for p (query tiles x heads x batch) and its key tiles. */
static int64_t serving_blocks(const pa_problem *p, int pack)
{
    const int rows_a_tile = pa_cuda_flash_serving_rows((int)p->head_dim, pack);
    const int64_t group = p->heads_q / p->heads_kv;
    const int64_t rows = pack ? p->seq_q * group : p->seq_q;
    return (rows + rows_a_tile - 1) / rows_a_tile * (pack ? p->heads_kv : p->heads_q) * p->batch;
}
/* The serving kernel's resident blocks: two an SM (kMinBlocks in flash_tc_tile.cuh). */
static int64_t serving_slots(const pa_cuda_device *dev) { return 2 * (int64_t)sms_of(dev); }
static int64_t serving_tiles(const pa_problem *p)
{
    const int key_tile = pa_cuda_flash_serving_key_tile((int)p->head_dim);
    return (p->seq_kv + key_tile - 1) / key_tile;
}

static int serving_splits(const pa_cuda_device *dev, const pa_problem *p, int pack)
{
    const int64_t blocks = serving_blocks(p, pack), tiles = serving_tiles(p);
    int64_t most = tiles < PA_MAX_SPLITS ? tiles : PA_MAX_SPLITS;
    if (most < 1) most = 1;
    if (p->num_splits >= 1) return (int)(p->num_splits < most ? p->num_splits : most);
    const int64_t target = serving_slots(dev);
    if (blocks >= target) return 1;
    int64_t top = tiles / 4 < most ? tiles / 4 : most;
    if (top < 1) top = 1;
    /* Whole waves: a ragged last wave runs its few blocks alone at their own speed (decode,
     * H200: 64 pairs x 5 splits = 320 blocks over 264 slots ran at 63% of the copy
     * bandwidth).  The time goes as waves / splits; the fewest splits within 5% of the
     * best (each split adds a partial O and its merge). */
    double least = 1.0;
    for (int64_t n = 2; n <= top; n++) {
        const double cost = (double)((blocks * n + target - 1) / target) / (double)n;
        if (cost < least) least = cost;
    }
    for (int64_t n = 1; n <= top; n++)
        if ((double)((blocks * n + target - 1) / target) / (double)n <= least * 1.05) return (int)n;
    return 1;
}

/* Dense problems whose grid cannot fill the device (decode: a few queries against many
 * keys) run the serving kernel with key splits instead of the tile kernel. */
static int dense_wants_splits(const pa_cuda_device *dev, const pa_problem *p)
{
    /* (e4m3 too: the serving kernel's e4m3 form asks the same) */
    if (pa_problem_serving(p) || p->want_backward || p->dtype == POLYATTN_DTYPE_F32 ||
        !pa_cuda_flash_serving_has_head_dim((int)p->head_dim))
        return 0;
    const int pack = serving_pack(p);
    if (p->num_splits == 1) return 0;
    /* a grid below two blocks an SM with keys enough for two splits of four tiles: the
     * serving kernel (its GQA-packed tiles too), whatever split count serving_splits then
     * finds best, one included */
    return p->num_splits > 1 ||
           (serving_blocks(p, pack) < serving_slots(dev) && serving_tiles(p) / 4 >= 2);
}

static polyattn_status refuse(pa_cuda_device *dev, const char *key, const char *why,
                              const char **why_not)
{
    snprintf(dev->why, sizeof dev->why, "POLYATTN_FORCE %s: %s", key, why);
    *why_not = dev->why;
    return POLYATTN_STATUS_UNSUPPORTED;
}

/* The serving kernel's plan for p: its K/V ring (`stages` unless forced; with e4m3 inputs
 * the raw ring), key splits and their workspace. */
static polyattn_status plan_serving(pa_cuda_device *dev, const pa_problem *p,
                                    const pa_cuda_force *f, int pack, int stages,
                                    pa_cuda_flash_plan *fp, const char **why_not)
{
    const int e4m3 = p->dtype == POLYATTN_DTYPE_E4M3;
    fp->kernel = PA_CUDA_FWD_MMA;
    fp->serving = 1;
    fp->pack = pack;
    fp->stages = f->serving_stages ? f->serving_stages : stages;
    if (pa_cuda_flash_serving_smem((int)p->head_dim, pack, fp->stages, e4m3) > dev->smem_optin)
        return refuse(dev, "cuda.serving_stages",
                      "the serving kernel's K/V ring does not fit the device's shared memory",
                      why_not);
    fp->splits = serving_splits(dev, p, pack);
    fp->workspace = pa_gpu_split_workspace(p, fp->splits);
    fp->launches = 1 + (fp->splits > 1) + (p->has_kv_append != 0);
    return POLYATTN_STATUS_SUCCESS;
}

/* Why the serving kernel cannot take e4m3 inputs p (NULL: it can): decode shapes and serving
 * layouts at its head dims, no bias or attn_mask, 16-byte rows of bytes, O in pairs. */
static const char *e4m3_serving_refusal(const pa_cuda_device *dev, const pa_problem *p)
{
    if (dev->cc_major < 8) return "the device is older than sm_80 (no mma.sync m16n8k16)";
    if (!pa_cuda_flash_serving_has_head_dim((int)p->head_dim) || p->head_dim != p->head_dim_v)
        return "e4m3 on the serving kernel: head dims 64, 128 and 256 (head_dim_v the same)";
    if (p->has_bias || p->has_attn_mask) return "e4m3 with a bias or attn_mask tensor";
    if (!pa_problem_serving(p) && !dense_wants_splits(dev, p))
        return "e4m3 on the serving kernel: decode shapes and serving layouts only (dense "
               "prefill: the generic kernel, or the Hopper kernel with cuda.flash=wgmma)";
    const int64_t *st[3] = {p->q_stride, p->k_stride, p->v_stride};
    for (int t = 0; t < 3; t++)
        if (st[t][3] != 1 || st[t][0] % 16 || st[t][1] % 16 || st[t][2] % 16)
            return "e4m3 rows that are not 16 bytes (head_dim stride 1, others multiples of 16)";
    if (p->o_stride[3] != 1 || p->o_stride[0] % 2 || p->o_stride[1] % 2 || p->o_stride[2] % 2)
        return "an O stride that is not a multiple of 2 elements";
    return NULL;
}

static void note_forward(pa_cuda_device *dev, const pa_cuda_flash_plan *fp, const pa_problem *p,
                         const char *simt_why)
{
    char *note = dev->note[2];
    const size_t n = sizeof dev->note[2];
    const pa_flash_split *s = &fp->split;
    if (fp->kernel == PA_CUDA_FWD_SIMT) {
        snprintf(note, n, "generic SIMT kernel (tensor cores not used: %.100s)%s", simt_why,
                 fp->splits > 1 ? ", key splits" : "");
    } else if (fp->kernel == PA_CUDA_FWD_HOPPER) {
        snprintf(note, n,
                 "tensor-core kernel (warp-specialized wgmma %s, head_dim %d: %d-row query "
                 "tiles, TMA producer, 2 consumer warpgroups%s%s%s%s)",
                 polyattn_dtype_name(p->dtype), (int)p->head_dim, PA_HOPPER_TILE_M,
                 fp->pingpong  ? " taking turns"
                 : fp->overlap ? " each overlapping"
                               : "",
                 fp->bias_smem ? ", a 16-bit bias with aligned rows via shared memory" : "",
                 fp->exp2_poly ? ", half of exp2 on the FMA pipe" : "",
                 p->dtype == POLYATTN_DTYPE_E4M3 ? ", FP8 products, V^T in the workspace" : "");
    } else if (fp->kernel == PA_CUDA_FWD_WGMMA) {
        snprintf(note, n, "tensor-core kernel (wgmma %s, head_dim %d: 64 x 64 tiles, plan %s)",
                 polyattn_dtype_name(p->dtype), (int)p->head_dim,
                 pa_cuda_flash_wgmma_plan_name(s->wgmma_plan));
    } else if (fp->serving) {
        snprintf(
            note, n, "tensor-core serving kernel (mma.sync %s, head_dim %d%s, %d key split%s%s)",
            p->dtype == POLYATTN_DTYPE_E4M3 ? "f16 from e4m3 bytes" : polyattn_dtype_name(p->dtype),
            (int)p->head_dim, fp->pack ? ", GQA group packed in one tile" : "", fp->splits,
            fp->splits == 1 ? "" : "s", fp->splits > 1 ? " merged by log-sum-exp" : "");
    } else {
        char split[64] = "";
        if (s->chunk)
            snprintf(split, sizeof split, ", %d blocks of %d key tiles each", s->blocks, s->chunk);
        else if (s->key_halves)
            snprintf(split, sizeof split, ", key tiles halved across 2-block clusters");
        else if (s->col_halves)
            snprintf(split, sizeof split, ", head dim halved across 2-block clusters");
        if (p->dtype == POLYATTN_DTYPE_F32 && pa_cuda_flash_f32_tile_has_head_dim((int)p->head_dim))
            snprintf(split, sizeof split, ", tile kernel: %d-row query tiles",
                     pa_cuda_flash_f32_tile_rows((int)p->head_dim));
        snprintf(note, n, "tensor-core kernel (mma.sync %s, head_dim %d%s%s)",
                 p->dtype == POLYATTN_DTYPE_F32 ? "3xTF32 f32" : polyattn_dtype_name(p->dtype),
                 (int)p->head_dim, p->head_dim > 256 ? ", split-K across 8 warps" : "", split);
    }
}

polyattn_status pa_cuda_flash_plan_make(pa_cuda_device *dev, const pa_problem *p,
                                        pa_cuda_flash_plan *fp, const char **why_not)
{
    memset(fp, 0, sizeof *fp);
    /* e4m3 inputs: the generic kernel (mma_refusal keeps them off the tensor cores) */
    const char *why = pa_gpu_flash_generic_dtype_refusal(p);
    if (!why) why = pa_cuda_sizes_refusal(p);
    if (why) return *why_not = why, POLYATTN_STATUS_UNSUPPORTED;
    if (p->want_probs) {
        *why_not = "flash never forms the probability matrix (O(seq) memory); use unfused or fused";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    if (p->head_dim > PA_GPU_MAX_HEAD_DIM || p->head_dim_v > PA_GPU_MAX_HEAD_DIM) {
        *why_not = "head_dim and head_dim_v must be <= 1024 for the CUDA flash kernels";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    pa_cuda_force f;
    polyattn_status st = pa_cuda_force_get(dev, &f, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;

    /* e4m3 decode and serving layouts on the serving kernel, K/V read as bytes and converted
     * to f16 in shared memory (checked on an H100 at the f16 tolerance, bench/results/
     * 2026-12-07-h100-optin-correctness.txt; its speed is not measured yet, the generic
     * kernel it replaces decodes 10-80x slower than the serving kernel in bf16) */
    const char *simt_why = NULL; /* why the generic kernel runs, when it does */
    if (p->dtype == POLYATTN_DTYPE_E4M3 &&
        (f.flash == PA_CUDA_FWD_MMA || f.flash == PA_CUDA_FWD_AUTO)) {
        const char *e4_why = e4m3_serving_refusal(dev, p);
        if (!e4_why && f.schedule > PA_CUDA_SCHED_GRID)
            e4_why = "the serving kernel (varlen, KV caches, key splits) has no schedules";
        if (e4_why && f.flash == PA_CUDA_FWD_MMA)
            return refuse(dev, "cuda.flash=mma", e4_why, why_not);
        if (!e4_why) {
            /* raw tiles are half the bytes: three in the ring keep as many bytes in flight
             * as two f16 tiles, with two blocks an SM (head dim 256: two) */
            st = plan_serving(dev, p, &f, serving_pack(p), p->head_dim <= 128 ? 3 : 2, fp, why_not);
            if (st != POLYATTN_STATUS_SUCCESS) return st;
            goto planned;
        }
    }
    const char *mma_why = mma_refusal(dev, p);
    if (!mma_why && pa_gpu_has_variants(p)) {
        /* Score variants: the mma.sync tile kernel (flash_tc.cu: f16/bf16, head dims up to
         * 256) has window, softcap, ALiBi and sinks; the generic kernel has them all. */
        mma_why =
            p->dtype == POLYATTN_DTYPE_F32 ? "score variants with f32 storage"
            : p->head_dim > 256            ? "score variants at head dims above 256"
            : p->has_bias || p->has_attn_mask
                ? "bias and attn_mask (the mma.sync kernel has window, softcap, ALiBi and sinks; "
                  "the Hopper kernel bias)"
                : NULL;
    }
    simt_why = mma_why;
    int pack = 0;
    /* Serving layouts shaped like prefill (more than 16 queries a sequence; varlen, dense
     * KV caches) on the Hopper kernel where it runs; decode shapes keep the serving
     * kernel's GQA-packed tiles and key splits. */
    if (pa_problem_serving(p) && (f.flash == PA_CUDA_FWD_AUTO || f.flash == PA_CUDA_FWD_WGMMA)) {
        const char *hop_why = p->head_dim <= 256
                                  ? hopper_refusal(dev, p, f.flash == PA_CUDA_FWD_WGMMA)
                                  : "head_dim above 256";
        if (!hop_why && f.schedule != PA_CUDA_SCHED_AUTO)
            hop_why = "the Hopper kernel has no schedules";
        if (f.flash == PA_CUDA_FWD_WGMMA && hop_why)
            return refuse(dev, "cuda.flash=wgmma", hop_why, why_not);
        if (!hop_why && (p->seq_q > 16 || f.flash == PA_CUDA_FWD_WGMMA)) {
            fp->kernel = PA_CUDA_FWD_HOPPER;
            fp->launches = 1 + (p->has_kv_append != 0);
            goto planned;
        }
    }
    /* The tensor-core serving kernel for serving layouts and for dense problems that want
     * key splits (decode), f16/bf16 at its head dims: 17-20x the generic kernel's decode
     * at 32k keys (H100, bench/results/2026-12-07-h100-serving.md); cuda.flash=simt keeps
     * the generic kernel's serving copy. */
    const int tc_serving = f.flash == PA_CUDA_FWD_MMA || f.flash == PA_CUDA_FWD_AUTO;
    if (!mma_why && tc_serving &&
        (pa_problem_serving(p) ||
         (f.schedule <= PA_CUDA_SCHED_GRID && dense_wants_splits(dev, p)))) {
        if (serving_kernel_takes(p, &pack)) {
            if (f.schedule > PA_CUDA_SCHED_GRID)
                return refuse(dev, "cuda.schedule",
                              "the serving kernel (varlen, KV caches, key splits) has no "
                              "schedules",
                              why_not);
            /* two stages unless forced: 4 and 6 ran 10-13% slower in decode (H200,
             * bench/results/2026-12-07-h200-decode-kv-stages.txt), one block an SM instead
             * of two */
            st = plan_serving(dev, p, &f, pack, 2, fp, why_not);
            if (st != POLYATTN_STATUS_SUCCESS) return st;
            goto planned;
        }
        if (pa_problem_serving(p))
            mma_why = p->dtype == POLYATTN_DTYPE_F32
                          ? "serving layouts with f32 storage"
                          : "serving layouts at a head dim without a serving instance";
        simt_why = mma_why;
    } else if (!mma_why && pa_problem_serving(p)) {
        mma_why = "serving layouts (the tensor-core serving kernel has no wgmma form)";
        simt_why = mma_why;
    }
    /* Dense problems on the warp-specialized Hopper kernel where it runs (sm_90, f16/bf16,
     * head dims 64-256 with every score variant and bias, where the mma.sync kernels lack
     * head dim 192 and bias): 1.0-1.8x the mma.sync kernel on the plain FlashAttention-2
     * sweep from N = 1k (H100, bench/results/2026-12-07-h100-hopper-fa2-l2-order.json) and
     * 1.5-2.3x it with softcap, ALiBi, sinks, causal or a window (H200,
     * bench/results/2026-12-07-h200-hopper-variants.txt); cuda.flash=mma keeps the latter. */
    if (!pa_problem_serving(p) && p->head_dim <= 256 &&
        (f.flash == PA_CUDA_FWD_AUTO || f.flash == PA_CUDA_FWD_WGMMA)) {
        const int forced = f.flash == PA_CUDA_FWD_WGMMA;
        const char *hop_why = hopper_refusal(dev, p, f.flash == PA_CUDA_FWD_WGMMA);
        if (forced && hop_why) return refuse(dev, "cuda.flash=wgmma", hop_why, why_not);
        if (forced && f.schedule != PA_CUDA_SCHED_AUTO)
            return refuse(dev, "cuda.schedule", "the Hopper kernel has no schedules", why_not);
        /* Unforced, the mma.sync kernel keeps head dim 64 at N <= 512 (the Hopper kernel's
         * 128-row tiles and 4-tile key loops measured 0.87-0.97x of it, bench/results/2026-
         * 12-07-h100-hopper-fa2-l2-order.json against 2026-12-07-h100-mma-sync-fa2.json) and
         * forced schedules. */
        const int short_d64 = p->head_dim == 64 && p->seq_q <= 512 && p->seq_kv <= 512;
        const int keep = !forced && ((short_d64 && !mma_why) || f.schedule != PA_CUDA_SCHED_AUTO);
        if (!hop_why && !keep) {
            memset(&fp->split, 0, sizeof fp->split);
            fp->kernel = PA_CUDA_FWD_HOPPER;
            fp->workspace = 0;
            fp->launches = 1;
            if (p->dtype == POLYATTN_DTYPE_E4M3) { /* V^T into the workspace first */
                fp->workspace = pa_cuda_e4m3_vt_bytes((int)p->batch, (int)p->heads_kv,
                                                      (int)p->head_dim, (int)p->seq_kv);
                fp->launches = 2;
            }
            goto planned;
        }
    }
    if (f.flash == PA_CUDA_FWD_SIMT) {
        fp->kernel = PA_CUDA_FWD_SIMT;
        simt_why = "forced by POLYATTN_FORCE cuda.flash=simt";
    } else if (mma_why) {
        if (f.flash != PA_CUDA_FWD_AUTO)
            return refuse(dev, f.flash == PA_CUDA_FWD_MMA ? "cuda.flash=mma" : "cuda.flash=wgmma",
                          mma_why, why_not);
        fp->kernel = PA_CUDA_FWD_SIMT;
    } else {
        fp->kernel = PA_CUDA_FWD_MMA;
    }
    if (fp->kernel == PA_CUDA_FWD_SIMT) {
        if (f.schedule > PA_CUDA_SCHED_GRID)
            return refuse(dev, "cuda.schedule", "the generic SIMT kernel has no schedules",
                          why_not);
        pa_gpu_args a;
        pa_gpu_args_fill(p, NULL, &a);
        if (pa_problem_serving(p)) { /* the generic kernel's serving copy, key splits */
            fp->serving = 1;
            fp->splits = pa_gpu_flash_generic_splits(p, sms_of(dev));
            fp->workspace = pa_gpu_split_workspace(p, fp->splits);
        }
        const size_t smem = pa_gpu_flash_generic_smem(&a);
        if (smem > dev->smem_optin) {
            snprintf(dev->why, sizeof dev->why,
                     "the generic flash kernel needs %zu bytes of shared memory, the device "
                     "offers %zu per block",
                     smem, dev->smem_optin);
            *why_not = dev->why;
            return POLYATTN_STATUS_UNSUPPORTED;
        }
        fp->launches = 1 + (fp->splits > 1) + (p->has_kv_append != 0);
    } else {
        /* head dims above 256 (64-256 went to the Hopper kernel above where it runs) */
        const char *wg_why = wgmma_refusal(dev, p);
        if (f.flash == PA_CUDA_FWD_WGMMA && wg_why)
            return refuse(dev, "cuda.flash=wgmma", wg_why, why_not);
        if (f.flash == PA_CUDA_FWD_WGMMA && f.schedule != PA_CUDA_SCHED_AUTO)
            return refuse(dev, "cuda.schedule",
                          "the wgmma kernel has plans, not schedules "
                          "(cuda.wgmma_plan)",
                          why_not);
        const int wgmma_ok = !wg_why && f.flash != PA_CUDA_FWD_MMA;
        why = schedule_of(dev, p, &f, wgmma_ok, &fp->split);
        if (why) return refuse(dev, "cuda.schedule", why, why_not);
        if (fp->split.wgmma) fp->kernel = PA_CUDA_FWD_WGMMA;
        pa_gpu_args a;
        pa_gpu_args_fill(p, NULL, &a);
        fp->workspace = pa_flash_split_bytes(&a, &fp->split);
        fp->launches = fp->split.chunk ? 2 : 1; /* + the combine */
    }
planned:
    /* cuda.hopper_sched applies to the plans that run the Hopper kernel (so that whole
     * suites can run under it) */
    /* (e4m3 inputs have the serial loop only) */
    const int e4m3 = p->dtype == POLYATTN_DTYPE_E4M3;
    /* the consumers take turns by default at head dim 128 on dense problems without score
     * variants or a bias: 4-7% faster than their own loops on the H100 (plain and causal, N
     * 2k-16k), 2-12% slower at head dims 64 and 192 (bench/results/2026-12-07-h100-hopper-
     * defaults-ab; an H200 at an earlier commit measured head dim 128 0.4-3.6% slower) */
    const int pingpong_auto = f.hopper_sched == 0 && p->head_dim == 128 &&
                              !pa_gpu_has_variants(p) && !pa_problem_serving(p);
    fp->pingpong =
        fp->kernel == PA_CUDA_FWD_HOPPER && (f.hopper_sched == 2 || pingpong_auto) && !e4m3;
    fp->overlap = fp->kernel == PA_CUDA_FWD_HOPPER && f.hopper_sched == 3 && p->head_dim <= 192 &&
                  !p->has_bias && !e4m3;
    /* a 16-bit bias with aligned rows through shared memory unless cuda.hopper_bias=regs:
     * 2.5-3.2x the register loads (H100, bf16 bias, head dim 128, N 1k-8k) */
    fp->bias_smem = fp->kernel == PA_CUDA_FWD_HOPPER && p->has_bias && f.hopper_bias != 1;
    fp->exp2_poly = fp->kernel == PA_CUDA_FWD_HOPPER && p->softcap > 0.f && !p->has_bias &&
                    !fp->pingpong && !e4m3 && f.hopper_exp2 == 2;
    if (f.wgmma_plan && fp->kernel != PA_CUDA_FWD_WGMMA)
        return refuse(dev, "cuda.wgmma_plan",
                      "the plan does not run the wgmma kernel "
                      "(force it with cuda.flash=wgmma)",
                      why_not);
    note_forward(dev, fp, p, simt_why);
    if (p->want_backward) {
        st = pa_cuda_bwd_plan_make(dev, p, &f, &fp->bwd, why_not);
        if (st != POLYATTN_STATUS_SUCCESS) return st;
        pa_cuda_bwd_note(&fp->bwd, p, dev->note[2], sizeof dev->note[2]);
    }
    *why_not = dev->note[2];
    return POLYATTN_STATUS_SUCCESS;
}

void pa_cuda_flash_plan_log(const pa_cuda_flash_plan *fp, const pa_problem *p)
{
    const pa_flash_split *s = &fp->split;
    if (fp->serving && fp->kernel == PA_CUDA_FWD_MMA)
        pa_log(POLYATTN_LOG_DISPATCH,
               "cuda flash: serving kernel (mma.sync), head_dim %lld, %s; pack %d, %d key "
               "splits, %d-stage K/V ring, workspace %llu bytes",
               (long long)p->head_dim, polyattn_dtype_name(p->dtype), fp->pack, fp->splits,
               fp->stages, (unsigned long long)fp->workspace);
    else if (fp->kernel == PA_CUDA_FWD_SIMT)
        pa_log(POLYATTN_LOG_DISPATCH, "cuda flash: generic SIMT kernel, head_dim %lld, %s",
               (long long)p->head_dim, polyattn_dtype_name(p->dtype));
    else if (fp->kernel == PA_CUDA_FWD_HOPPER)
        pa_log(POLYATTN_LOG_DISPATCH,
               "cuda flash: tensor-core kernel (warp-specialized wgmma), head_dim %lld, %s; "
               "consumers %s",
               (long long)p->head_dim, polyattn_dtype_name(p->dtype),
               fp->pingpong  ? "take turns (ping-pong)"
               : fp->overlap ? "each overlap the next tile's products (overlap)"
                             : "run independently");
    else if (fp->kernel == PA_CUDA_FWD_WGMMA)
        pa_log(POLYATTN_LOG_DISPATCH,
               "cuda flash: tensor-core kernel (wgmma), head_dim %lld, %s; plan %s",
               (long long)p->head_dim, polyattn_dtype_name(p->dtype),
               pa_cuda_flash_wgmma_plan_name(s->wgmma_plan));
    else if (p->dtype == POLYATTN_DTYPE_F32 &&
             pa_cuda_flash_f32_tile_has_head_dim((int)p->head_dim))
        pa_log(POLYATTN_LOG_DISPATCH,
               "cuda flash: tensor-core kernel (3xTF32 tile), head_dim %lld, f32; %d-row query "
               "tiles, one block each",
               (long long)p->head_dim, pa_cuda_flash_f32_tile_rows((int)p->head_dim));
    else
        pa_log(POLYATTN_LOG_DISPATCH,
               "cuda flash: tensor-core kernel (%s), head_dim %lld, %s; balanced schedule: %d "
               "blocks of %d key tiles of %d keys (0: one block per query tile), %d partial "
               "slots; key halves %d, column halves %d; workspace %llu bytes",
               p->dtype == POLYATTN_DTYPE_F32 ? "3xTF32" : "mma.sync", (long long)p->head_dim,
               polyattn_dtype_name(p->dtype), s->blocks, s->chunk, s->key_tile, s->slots,
               s->key_halves, s->col_halves, (unsigned long long)fp->workspace);
    if (p->want_backward) pa_cuda_bwd_log("flash", &fp->bwd, p);
}
