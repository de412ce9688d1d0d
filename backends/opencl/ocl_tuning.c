/*
 * Tuning of the OpenCL kernel family in one place: the head-dim table (tiles per band,
 * from which "supported?", local memory and the -D build options follow), the rows per
 * work-item of the CPU kernels and the scalar constants.  Tiles were measured on NVIDIA's
 * OpenCL (H100, bench/results/opencl-h100-2026-11-24 and
 * opencl-backward-h100-2026-11-24.md); the row kernels on PoCL.
 */
#include "ocl_algos.h"

#include <stdio.h>

/* Each work-item keeps (BM/RG) x ceil(dv/CG) <= 64 forward accumulators and (R/RG) x
 * ceil(dim/CG) <= 32 per backward gradient, so the big head dims use fewer rows and more
 * column groups.  Every backward tile needs <= 33 KB of local memory (NVIDIA allows 47). */
static const ocl_band bands[] = {
    /* max  forward {bm, bn, rg, cg, dk, vn}  dk<32  backward {r, c, rg, cg, dk, vn} */
    {16, {64, 64, 16, 8, 16, 32}, 16, {64, 64, 16, 16, 16, 16}},
    {64, {64, 64, 16, 8, 32, 32}, 16, {64, 64, 16, 16, 32, 16}},
    {128, {64, 64, 16, 8, 32, 32}, 32, {64, 64, 16, 16, 32, 16}},
    {256, {32, 64, 8, 16, 32, 16}, 32, {32, 64, 8, 32, 32, 16}},
    {512, {16, 128, 4, 32, 32, 8}, 32, {16, 64, 4, 64, 32, 8}},
    {1024, {16, 256, 4, 64, 16, 4}, 16, {8, 128, 2, 128, 16, 4}},
};
#define N_BANDS (sizeof bands / sizeof bands[0])

/* Rows per work-item of the CPU row kernels by head_dim + head_dim_v: each row loaded from
 * global memory serves that many rows; fewer for big head dims (private arrays). */
static const struct {
    int max_sum, rows;
} row_bands[] = {{512, 4}, {1024, 2}, {2048, 1}};

const ocl_tuning ocl_tune = {
    .flash_rows_kb = 16,
    .softmax_wg = 128,
    .rows_group = 64,
    /* CPU drivers keep every work-item's private arrays of a group at once (PoCL: on its
     * thread's stack; the size it picks, 256, overflowed at head_dim 1024). */
    .rows_group_private = 256 * 1024,
    /* NVIDIA reports 48 KiB but refuses a launch using all of it (CL_OUT_OF_RESOURCES). */
    .local_reserve = 1024,
    .grid_wg = 256,
    .grid_max_groups = 65536,
};

const ocl_band *ocl_band_of(int64_t head_dim, int64_t head_dim_v)
{
    const int64_t m = head_dim > head_dim_v ? head_dim : head_dim_v;
    for (size_t i = 0; i < N_BANDS; i++)
        if (m <= bands[i].max_dim) return &bands[i];
    return NULL;
}

int ocl_max_head_dim(void) { return bands[N_BANDS - 1].max_dim; }

ocl_tiles ocl_band_tiles(const ocl_band *b, int64_t head_dim)
{
    ocl_tiles t = b->fwd;
    if (head_dim < 32) t.dk = b->fwd_dk_narrow;
    return t;
}

int ocl_rows_per_item(int64_t head_dim, int64_t head_dim_v)
{
    const int64_t sum = head_dim + head_dim_v;
    for (size_t i = 0; i < sizeof row_bands / sizeof row_bands[0]; i++)
        if (sum <= row_bands[i].max_sum) return row_bands[i].rows;
    return 1;
}

uint64_t ocl_local_budget(const ocl_caps *c)
{
    return c->local_mem > 8 * ocl_tune.local_reserve ? c->local_mem - ocl_tune.local_reserve
                                                     : c->local_mem;
}

static int is_pow2(int x) { return x > 0 && (x & (x - 1)) == 0; }

int ocl_flash_v4(const ocl_tiles *t)
{
    return t->bm / t->rg == 4 && t->bm % t->rg == 0 && (t->bn / t->cg) % 4 == 0 && t->dk % 4 == 0 &&
           t->vn > 0 && is_pow2(t->bm / 4) && is_pow2(t->bn / 4);
}

static uint64_t stage_floats(const ocl_tiles *t, int64_t dv)
{
    uint64_t qk = (uint64_t)t->dk * (uint64_t)(t->bm + 1) + (uint64_t)t->dk * (uint64_t)(t->bn + 1);
    uint64_t vv = (uint64_t)t->vn * (uint64_t)dv;
    return qk > vv ? qk : vv;
}

uint64_t ocl_flash_local_bytes(const ocl_tiles *t, int64_t dv)
{
    if (ocl_flash_v4(t)) {
        uint64_t tdv4 = (uint64_t)((dv + 4 * t->cg - 1) / (4 * t->cg));
        uint64_t dvp = tdv4 * 4 * (uint64_t)t->cg;
        uint64_t qk = (uint64_t)t->dk * (uint64_t)(t->bm + t->bn), vv = (uint64_t)t->vn * dvp;
        return 4 * ((qk > vv ? qk : vv) + (uint64_t)t->bn * (uint64_t)(t->bm + 4) +
                    (uint64_t)t->bm * (uint64_t)t->cg);
    }
    return 4 * (stage_floats(t, dv) + (uint64_t)t->bm * (uint64_t)(t->bn + 1) +
                (uint64_t)t->bm * (uint64_t)t->cg);
}

uint64_t ocl_fused_fixed_local_bytes(const ocl_tiles *t, int64_t dv)
{
    return 4 * (stage_floats(t, dv) + (uint64_t)t->bm * (uint64_t)t->cg);
}

uint64_t ocl_bwd_tiled_local_bytes(const ocl_bwd_tiles *t, int64_t d, int64_t dv)
{
    uint64_t m = (uint64_t)(d > dv ? d : dv);
    uint64_t nt = (uint64_t)t->dk * (uint64_t)(t->r + 1 + t->c + 1), acc = (uint64_t)t->vn * m;
    return 4 * ((nt > acc ? nt : acc) + (uint64_t)t->r * (uint64_t)(t->c + 1));
}

static int in_range(int x) { return x > 0 && x <= 4096; }

int ocl_tiles_valid(const ocl_tiles *t)
{
    return in_range(t->bm) && in_range(t->bn) && in_range(t->rg) && in_range(t->cg) &&
           in_range(t->dk) && in_range(t->vn) && t->bm % t->rg == 0 && t->bn % t->cg == 0 &&
           t->bn % t->vn == 0;
}

int ocl_bwd_tiles_valid(const ocl_bwd_tiles *t)
{
    return in_range(t->r) && in_range(t->c) && in_range(t->rg) && in_range(t->cg) &&
           in_range(t->dk) && in_range(t->vn) && t->r % t->rg == 0 && t->c % t->cg == 0 &&
           t->c % t->vn == 0;
}

/* ---- -D build options of each kernel variant ------------------------------ */

static int dims(const pa_problem *p, char *buf, size_t size)
{
    return snprintf(buf, size, "-DPA_DTYPE=%d -DPA_ODTYPE=%d -DHEAD_DIM=%lld -DHEAD_DIM_V=%lld",
                    (int)p->dtype, (int)ocl_o_dtype(p), (long long)p->head_dim,
                    (long long)p->head_dim_v);
}

void ocl_tile_options(const pa_problem *p, const ocl_tiles *t, char *buf, size_t size)
{
    int n = dims(p, buf, size);
    if (n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, " -DBM=%d -DBN=%d -DRG=%d -DCG=%d -DDK=%d -DVN=%d",
                 t->bm, t->bn, t->rg, t->cg, t->dk, t->vn);
}

void ocl_rows_options(const pa_problem *p, int rows, char *buf, size_t size)
{
    int n = dims(p, buf, size);
    if (n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, " -DROWS=%d -DKB=%d", rows, ocl_tune.flash_rows_kb);
}

void ocl_bwd_tiled_options(const pa_problem *p, const ocl_bwd_tiles *t, char *buf, size_t size)
{
    int n = dims(p, buf, size);
    if (n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n,
                 " -DPA_BWD_TILED -DBT_R=%d -DBT_C=%d -DBT_RG=%d -DBT_CG=%d -DBT_DK=%d -DBT_VN=%d",
                 t->r, t->c, t->rg, t->cg, t->dk, t->vn);
}

void ocl_bwd_rows_options(const pa_problem *p, int rows, char *buf, size_t size)
{
    int n = dims(p, buf, size);
    if (n > 0 && (size_t)n < size) snprintf(buf + n, size - (size_t)n, " -DBR=%d", rows);
}

void ocl_unfused_options(const pa_problem *p, char *buf, size_t size)
{
    snprintf(buf, size, "-DPA_DTYPE=%d -DSM_WG=%d", (int)p->dtype, ocl_tune.softmax_wg);
}
