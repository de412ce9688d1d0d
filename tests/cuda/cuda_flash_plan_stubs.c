/*
 * Stand-ins for what the CUDA flash planner (backends/cuda/cuda_flash_plan.c) asks of code it
 * cannot be compiled with on a machine without a GPU: the kernels' capability queries (.cu
 * files, built by nvcc with the CUDA runtime), the runtime-bound device file and the backward's
 * planner.  Each answers as the real one does; its comment names the table or traits it
 * copies, so that a change there is mirrored here.
 */
#include "cuda_flash.h"
#include "flash_f32.h"
#include "flash_hopper.h"
#include "flash_tc.h"
#include "flash_wgmma.h"

#include <string.h>

/* ---- flash_hopper.cu: PA_FLASH_HOPPER_TABLE X(64, 128, 2) X(96, 128, 2) X(128, 128, 2)
 * X(192, 64, 2) X(256, 64, 2): head dim, keys of a key tile, 2 stages ---- */
static int hopper_key_tile(int head_dim)
{
    return head_dim == 64 || head_dim == 96 || head_dim == 128 ? 128
           : head_dim == 192 || head_dim == 256                ? 64
                                                               : 0;
}

int pa_cuda_flash_hopper_has_head_dim(int head_dim) { return hopper_key_tile(head_dim) != 0; }

/* Layout<D, bias>::kSmem: 1024 for alignment, two consumers' 64-row Q tiles, 2 stages of K
 * and V tiles, with a bias two 16-bit 64 x kN bias tiles a consumer, 7 mbarriers. */
size_t pa_cuda_flash_hopper_smem(int head_dim, int bias)
{
    /* head dim 96 is stored as 128 columns */
    const size_t kn = (size_t)hopper_key_tile(head_dim), d = (size_t)(head_dim + 63) / 64 * 64;
    return kn ? 1024 + 2 * 64 * d * 2 + 2 * 2 * kn * d * 2 + (bias ? 2 * 2 * 64 * kn * 2 : 0) +
                    8 * 7
              : 0;
}

/* ---- e4m3_vt.cu: V^T, batch x heads_kv x head_dim rows of the keys padded to 128 ---- */
size_t pa_cuda_e4m3_vt_bytes(int batch, int heads_kv, int head_dim, int seq_kv)
{
    const size_t keys = seq_kv > 0 ? ((size_t)seq_kv + 127) / 128 * 128 : 128;
    return (size_t)batch * heads_kv * head_dim * keys;
}

/* ---- flash_tc.cu: PA_FLASH_TC_HEAD_DIMS X(32) X(64) X(96) X(128) X(256) (tile kernel)
 * W(512) W(768) W(1024) (wide kernel) ---- */
static int tc_tile_has(int d) { return d == 32 || d == 64 || d == 96 || d == 128 || d == 256; }
static int tc_wide_has(int d) { return d == 512 || d == 768 || d == 1024; }

int pa_cuda_flash_tc_has_head_dim(int head_dim)
{
    return tc_tile_has(head_dim) || tc_wide_has(head_dim);
}

const char *pa_cuda_flash_tc_head_dims(void) { return " 32 64 96 128 256 512 768 1024"; }

/* FlashTcTraits<D, BLOCK_N, MTILES>::kSmem (flash_tc_tile.cuh): query rows and `stages` K and
 * V tiles, rows padded by 8 elements. */
static size_t tc_tile_smem(int head_dim, int rows, int key_tile, int stages)
{
    return (size_t)(rows + 2 * stages * key_tile) * (size_t)(head_dim + 8) * 2;
}

/* FlashTcWideTraits<D, COL_HALVES>::smem_with (flash_tc.cu): Q, K, V tiles of 32 rows, 8
 * partial-score slots where they fit 227 KiB else 4, probabilities, row statistics; without
 * the column-halves exchange buffers (no case here plans column halves). */
static size_t tc_wide_smem(int cols)
{
    const size_t rest = 3 * (size_t)32 * (cols + 8) * 2 + 32 * 40 * 2 + 3 * 32 * 4;
    const size_t slot = 32 * 40 * 4;
    return rest + 8 * slot <= 227 * 1024 ? rest + 8 * slot : rest + 4 * slot;
}

size_t pa_cuda_flash_tc_smem(int head_dim, int col_halves)
{
    if (tc_wide_has(head_dim)) return tc_wide_smem(col_halves ? head_dim / 2 : head_dim);
    if (!tc_tile_has(head_dim) || col_halves) return 0;
    /* FlashTcTraits defaults: 2 m16 tiles a warp up to 128, 64-key tiles up to 128, 2 stages */
    return tc_tile_smem(head_dim, head_dim <= 128 ? 128 : 64, head_dim <= 128 ? 64 : 32, 2);
}

/* The wide kernel's 32-key tiles (FlashTcWideTraits::kBlockN); 0 for the tile kernel. */
int pa_cuda_flash_tc_key_tile(int head_dim, int col_halves)
{
    (void)col_halves;
    return tc_wide_has(head_dim) ? 32 : 0;
}

/* ---- flash_tc_serving.cu: PA_FLASH_SERVING_HEAD_DIMS X(64) X(128) X(256); ServingTraits is
 * FlashTcTraits with one m16 tile a warp when packed ---- */
int pa_cuda_flash_serving_has_head_dim(int head_dim)
{
    return head_dim == 64 || head_dim == 128 || head_dim == 256;
}

int pa_cuda_flash_serving_rows(int head_dim, int pack)
{
    if (!pa_cuda_flash_serving_has_head_dim(head_dim)) return 0;
    return pack || head_dim > 128 ? 64 : 128;
}

int pa_cuda_flash_serving_key_tile(int head_dim) { return head_dim <= 128 ? 64 : 32; }

/* serving_smem / serving_smem_e4m3 (flash_tc_serving.cu): e4m3 keeps one f16 K and V tile
 * and `stages` raw ones (head-dim bytes a row). */
size_t pa_cuda_flash_serving_smem(int head_dim, int pack, int stages, int e4m3)
{
    if (!pa_cuda_flash_serving_has_head_dim(head_dim)) return 0;
    const int rows = pa_cuda_flash_serving_rows(head_dim, pack);
    const int keys = pa_cuda_flash_serving_key_tile(head_dim);
    return e4m3 ? tc_tile_smem(head_dim, rows, keys, 1) + (size_t)2 * stages * keys * head_dim
                : tc_tile_smem(head_dim, rows, keys, stages);
}

/* ---- flash_f32_tile.cu: PA_FLASH_F32_TILE_HEAD_DIMS X(64) X(128); F32TileTraits ---- */
int pa_cuda_flash_f32_tile_has_head_dim(int head_dim) { return head_dim == 64 || head_dim == 128; }
const char *pa_cuda_flash_f32_tile_head_dims(void) { return " 64 128"; }
int pa_cuda_flash_f32_tile_rows(int head_dim) { return head_dim <= 64 ? 128 : 64; }

size_t pa_cuda_flash_f32_tile_smem(int head_dim)
{
    if (!pa_cuda_flash_f32_tile_has_head_dim(head_dim)) return 0;
    const size_t rows = (size_t)pa_cuda_flash_f32_tile_rows(head_dim);
    const size_t keys = head_dim <= 64 ? 64 : 32, q_row = head_dim + 4, v_row = head_dim + 8;
    return (rows * q_row + 2 * keys * (q_row + v_row)) * 4;
}

/* ---- flash_f32.cu: PA_FLASH_F32_HEAD_DIMS X(512) X(768) X(1024); F32WideTraits ---- */
int pa_cuda_flash_f32_has_head_dim(int head_dim) { return tc_wide_has(head_dim); }
const char *pa_cuda_flash_f32_head_dims(void) { return " 512 768 1024"; }

/* A plausible size under sm_90's 227 KiB, not F32WideTraits' own: no case here plans f32 at
 * those head dims. */
size_t pa_cuda_flash_f32_smem(int head_dim, int col_halves)
{
    (void)col_halves;
    return tc_wide_has(head_dim) ? 200 * 1024 : 0;
}

/* F32WideTraits::kBlockN: 8, 16 or 32 keys as the block's columns are 1024, 768 or fewer. */
int pa_cuda_flash_f32_key_tile(int head_dim, int col_halves)
{
    if (!tc_wide_has(head_dim)) return 0;
    const int cols = col_halves ? head_dim / 2 : head_dim;
    return cols >= 1024 ? 8 : cols >= 768 ? 16 : 32;
}

/* ---- flash_wgmma.cu: PA_FLASH_WGMMA_HEAD_DIMS X(512) X(768) ---- */
int pa_cuda_flash_wgmma_has_head_dim(int head_dim) { return head_dim == 512 || head_dim == 768; }

/* smem_bytes<D, kWide>: 1024 for alignment, 64-row Q and K tiles of D columns, a V tile of
 * 256 columns, an mbarrier for each 64 columns of Q and K and one for V. */
size_t pa_cuda_flash_wgmma_smem(int head_dim)
{
    if (!pa_cuda_flash_wgmma_has_head_dim(head_dim)) return 0;
    return 1024 + 2 * (size_t)64 * head_dim * 2 + (size_t)64 * PA_WGMMA_WIDE_COLS * 2 +
           8 * (size_t)(head_dim / 64 + 1);
}

/* ---- flash_wgmma_plan.cu (kPlanNames) and flash_split.cu: the measured plan and schedule
 * rules are checked by test_flash_schedule; here the plan is wide (or the forced one) and the
 * mma.sync wide kernels run one block per query tile (halves only where forced) ---- */
static const char *const wgmma_plan_names[PA_WGMMA_PLANS] = {"wide", "narrow", "key-split"};

const char *pa_cuda_flash_wgmma_plan_name(int plan)
{
    return plan >= 0 && plan < PA_WGMMA_PLANS ? wgmma_plan_names[plan] : "?";
}

int pa_cuda_flash_wgmma_plan(const pa_gpu_args *a, int sms, const char *force)
{
    (void)a, (void)sms;
    for (int p = 0; force && p < PA_WGMMA_PLANS; ++p)
        if (!strcmp(force, wgmma_plan_names[p])) return p;
    return PA_WGMMA_WIDE;
}

void pa_flash_split_plan(const pa_gpu_args *a, int tile_m, int key_tile, int sms, int force,
                         pa_flash_split *s)
{
    (void)a, (void)sms, (void)force;
    memset(s, 0, sizeof *s);
    s->tile_m = tile_m;
    s->key_tile = key_tile;
}

int pa_flash_halves_fit(const pa_gpu_args *a, const pa_flash_split *s, int sms, int force)
{
    (void)a, (void)s, (void)sms;
    return force;
}

int pa_flash_col_halves_fit(const pa_gpu_args *a, int key_tile, int sms, int force)
{
    (void)a, (void)key_tile, (void)sms;
    return force;
}

uint64_t pa_flash_split_bytes(const pa_gpu_args *a, const pa_flash_split *s)
{
    (void)a, (void)s;
    return 0;
}

/* ---- backends/gpu/gpu_attn.cu: the generic kernel's Q, K, score and V tiles (floats) ---- */
size_t pa_gpu_flash_generic_smem(const pa_gpu_args *a)
{
    const size_t q = 32 * 36, k = 64 * 36, scores = (32 * 65 + 3) & ~3;
    return sizeof(float) * (q + k + scores + 8 * (size_t)((a->head_dim_v + 3) & ~3));
}

/* ---- cuda_device.c (calls the CUDA runtime): the same limits ---- */
const char *pa_cuda_sizes_refusal(const pa_problem *p)
{
    const int64_t lim = 0x7fffffff;
    if (p->seq_q > lim || p->seq_kv > lim || p->batch > 65535 || p->heads_q > 65535)
        return "sizes beyond the CUDA kernels' limits (seq <= 2^31-1, batch and heads_q <= 65535)";
    return NULL;
}

/* ---- cuda_backward.c: no case here wants the backward; one that did would fail loudly ---- */
polyattn_status pa_cuda_bwd_plan_make(pa_cuda_device *dev, const pa_problem *p,
                                      const pa_cuda_force *f, pa_cuda_bwd_plan *b,
                                      const char **why_not)
{
    (void)dev, (void)p, (void)f;
    memset(b, 0, sizeof *b);
    *why_not = "the backward's planner is not part of this test";
    return POLYATTN_STATUS_INTERNAL_ERROR;
}

void pa_cuda_bwd_note(const pa_cuda_bwd_plan *b, const pa_problem *p, char *note, size_t n)
{
    (void)b, (void)p, (void)note, (void)n;
}

void pa_cuda_bwd_log(const char *algo, const pa_cuda_bwd_plan *b, const pa_problem *p)
{
    (void)algo, (void)b, (void)p;
}
