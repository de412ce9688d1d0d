/*
 * flash_bwd_tile.cuh: the tile machinery of the shared SIMT flash backward (flash_bwd.h),
 * included by the .cu files that hold its kernels (flash_bwd.cu, flash_bwd_dbias.cu): the
 * tile plan from the head dims, loads of Q/dO/K/V tiles into shared memory as f32, the
 * micro-tiled GEMMs, the visibility of key and query ranges under the causal mask and the
 * window, and scores_tile, which rebuilds P and dS of a (query tile, key tile) pair from
 * the forward's LSE with every score variant.  Device code only, no launches (those stay in
 * the .cu files, which the HIP emulation rewrites).
 */
#ifndef POLYATTN_GPU_FLASH_BWD_TILE_CUH
#define POLYATTN_GPU_FLASH_BWD_TILE_CUH

#include "gpu_port.h"
#include "flash_bwd.h"
#include "gpu_serving.h"
#include "gpu_variants.h"

#include <math.h>

namespace
{

constexpr int kThreads = 256;
constexpr int kMaxSmemBytes = 65536;
constexpr int kMicro = 4;      /* a thread owns up to kMicro x kMicro outputs of a GEMM tile */
constexpr int kMaxEntries = 4; /* score entries per thread when a tile has >= 256 of them */
constexpr float kLog2e = 1.4426950408889634f;

/* Tile plan, computed on the host from the head dims; smem offsets and strides in floats. */
struct BwdPlan {
    int bk, bq;             /* keys per key tile, queries per query tile */
    int ks, vs, qs, os, ps; /* row strides of K, V, Q, dO, P/dS tiles */
    int k_off, v_off, q_off, o_off, p_off, ds_off, lse_off, delta_off;
    int floats; /* total */
};

__host__ __device__ inline int pow2_ceil(int x)
{
    int p = 1;
    while (p < x)
        p *= 2;
    return p;
}

/* Micro-tile ownership of a rows x cols output tile over kThreads threads: a grid of
 * cpp column-threads x (kThreads / cpp) row-threads; thread (c0, r0) owns columns
 * c0 + cpp * cc (cc < kMicro) and rows r0 + R * rr (rr < nr). */
__host__ __device__ inline int micro_cpp(int cols)
{
    const int c = pow2_ceil((cols + kMicro - 1) / kMicro);
    return c > kThreads ? kThreads : c;
}
__host__ __device__ inline int micro_rows_per_thread(int rows, int cols)
{
    const int r = kThreads / micro_cpp(cols);
    return (rows + r - 1) / r;
}

inline bool plan_for(int head_dim, int head_dim_v, BwdPlan *p)
{
    /* Key tile first (fewer passes over Q and dO), then query tile; the last one takes any
     * head dim up to 1024 within 64 KiB. */
    static const int cand[][2] = {{64, 16}, {32, 16}, {16, 8}, {8, 4}, {4, 2}};
    for (const auto &c : cand) {
        BwdPlan t;
        t.bk = c[0];
        t.bq = c[1];
        if (micro_rows_per_thread(t.bk, head_dim) > kMicro ||
            micro_rows_per_thread(t.bk, head_dim_v) > kMicro ||
            micro_rows_per_thread(t.bq, head_dim) > kMicro || t.bk * t.bq > kThreads * kMaxEntries)
            continue;
        t.ks = head_dim | 1;
        t.vs = head_dim_v | 1;
        t.qs = head_dim | 1;
        t.os = head_dim_v | 1;
        t.ps = t.bk | 1;
        int at = 0;
        t.k_off = at, at += t.bk * t.ks;
        t.v_off = at, at += t.bk * t.vs;
        t.q_off = at, at += t.bq * t.qs;
        t.o_off = at, at += t.bq * t.os;
        t.p_off = at, at += t.bq * t.ps;
        t.ds_off = at, at += t.bq * t.ps;
        t.lse_off = at, at += t.bq;
        t.delta_off = at, at += t.bq;
        t.floats = at;
        if ((size_t)at * sizeof(float) > (size_t)kMaxSmemBytes) continue;
        *p = t;
        return true;
    }
    return false;
}

__device__ __forceinline__ float load_elem(const void *base, int64_t idx, int dtype)
{
    if (dtype == 0) return static_cast<const float *>(base)[idx];
    if (dtype == 1) return gpu_half_to_float(static_cast<const gpu_half *>(base)[idx]);
    return gpu_bf16_to_float(static_cast<const gpu_bf16 *>(base)[idx]);
}

__device__ __forceinline__ void store_elem(void *base, int64_t idx, int dtype, float v)
{
    if (dtype == 0) static_cast<float *>(base)[idx] = v;
    else if (dtype == 1) static_cast<gpu_half *>(base)[idx] = gpu_float_to_half(v);
    else static_cast<gpu_bf16 *>(base)[idx] = gpu_float_to_bf16(v);
}

/* Keys [0, n) are visible to `query` (pa_visible_keys). */
__device__ __forceinline__ int visible_keys(const pa_gpu_args &a, int query)
{
    int64_t n = a.seq_kv;
    if (a.mask == 1) n = (int64_t)query + 1;
    else if (a.mask == 2) n = (int64_t)query + 1 + ((int64_t)a.seq_kv - a.seq_q);
    return (int)(n < 0 ? 0 : (n > a.seq_kv ? a.seq_kv : n));
}

/* The first query that sees key `key` (seq_q if none): visibility grows with the query. */
__device__ __forceinline__ int first_query_seeing(const pa_gpu_args &a, int key)
{
    if (a.mask == 0) return 0;
    int64_t q = (int64_t)key - (a.mask == 2 ? ((int64_t)a.seq_kv - a.seq_q) : 0);
    if (q < 0) q = 0;
    return (int)(q > a.seq_q ? a.seq_q : q);
}

/* Queries [*qa, *qz) that can see a key of [key0, key1) under the causal mask and the window
 * (pa_gpu_visible_range: lo and hi grow with the query, so they are a range). */
__device__ __forceinline__ void queries_seeing(const pa_gpu_args &a, int key0, int key1, int &qa,
                                               int &qz)
{
    const int64_t off = a.mask == 1 ? 0 : (int64_t)a.seq_kv - a.seq_q; /* d(i) = i + off */
    int64_t lo = 0, hi = a.seq_q;
    if (a.mask != 0 && key0 - off > lo) lo = key0 - off; /* d(i) + 1 > key0 */
    if (a.has_window && a.window_right >= 0 && key0 - a.window_right - off > lo)
        lo = key0 - a.window_right - off; /* d(i) + right + 1 > key0 */
    if (a.has_window && a.window_left >= 0 && (int64_t)key1 + a.window_left - off < hi)
        hi = (int64_t)key1 + a.window_left - off; /* d(i) - left < key1 */
    qa = (int)(lo > a.seq_q ? a.seq_q : lo);
    qz = (int)(hi < qa ? qa : hi);
}

/* Keys [*ka, *kz) that some query of [q0, q0 + nq) can see (the same band). */
__device__ __forceinline__ void keys_seen(const pa_gpu_args &a, int q0, int nq, int &ka, int &kz)
{
    int hi0, lo1;
    pa_gpu_visible_range(a, q0, ka, hi0);
    pa_gpu_visible_range(a, q0 + nq - 1, lo1, kz);
}

/* rows x cols of a [.., seq, dim] tensor at base (element strides s2, s3) into shared
 * memory as f32 with row stride ld; rows >= n are zero (never NaN: they meet P = 0). */
__device__ void load_tile(float *dst, int ld, const void *src, int64_t base, int64_t s2, int64_t s3,
                          int row0, int n, int rows, int cols, int dtype)
{
    /* tcols consecutive threads walk a row (coalesced when s3 is 1), no division per element */
    const int tcols = min(kThreads, pow2_ceil(cols)), trows = kThreads / tcols;
    const int c0 = threadIdx.x % tcols;
    for (int r = threadIdx.x / tcols; r < rows; r += trows) {
        const int64_t at = base + (int64_t)(row0 + r) * s2;
        for (int c = c0; c < cols; c += tcols)
            dst[r * ld + c] = r < n ? load_elem(src, at + (int64_t)c * s3, dtype) : 0.f;
    }
}

/* acc[rr][cc] += sum_{j < n} A(j, row_rr) * B(j, col_cc) with A(j, r) = A[j*aj + r*ar] and
 * B(j, c) = B[j*bj + c*bc], over this thread's micro tile of a rows x cols output. */
struct Micro {
    int row[kMicro], col[kMicro]; /* clamped into the tile: reads stay in bounds */
    int nr;                       /* rows per thread in use */
    bool active;                  /* r0 < rows */
};

__device__ __forceinline__ Micro micro_of(int rows, int cols)
{
    Micro m;
    const int cpp = micro_cpp(cols), rstep = kThreads / cpp;
    const int c0 = threadIdx.x % cpp, r0 = threadIdx.x / cpp;
    m.nr = (rows + rstep - 1) / rstep;
    m.active = r0 < rows;
#pragma unroll
    for (int i = 0; i < kMicro; ++i) {
        m.row[i] = min(r0 + rstep * i, rows - 1);
        m.col[i] = min(c0 + cpp * i, cols - 1);
    }
    return m;
}
__device__ __forceinline__ bool micro_valid(const Micro &m, int rr, int cc, int rows, int cols)
{
    const int cpp = micro_cpp(cols), rstep = kThreads / cpp;
    const int c0 = threadIdx.x % cpp, r0 = threadIdx.x / cpp;
    return m.active && rr < m.nr && r0 + rstep * rr < rows && c0 + cpp * cc < cols;
}

__device__ __forceinline__ void micro_zero(float acc[kMicro][kMicro])
{
#pragma unroll
    for (int r = 0; r < kMicro; ++r)
#pragma unroll
        for (int c = 0; c < kMicro; ++c)
            acc[r][c] = 0.f;
}

__device__ __forceinline__ void micro_gemm(float acc[kMicro][kMicro], const Micro &m, int n,
                                           const float *A, int aj, int ar, const float *B, int bj,
                                           int bc)
{
    int ao[kMicro], bo[kMicro];
#pragma unroll
    for (int i = 0; i < kMicro; ++i) {
        ao[i] = m.row[i] * ar;
        bo[i] = m.col[i] * bc;
    }
    for (int j = 0; j < n; ++j) {
        const float *aj_ = A + j * aj;
        const float *bj_ = B + j * bj;
        float bv[kMicro];
#pragma unroll
        for (int c = 0; c < kMicro; ++c)
            bv[c] = bj_[bo[c]];
#pragma unroll
        for (int r = 0; r < kMicro; ++r) {
            if (r < m.nr) {
                const float av = aj_[ao[r]];
#pragma unroll
                for (int c = 0; c < kMicro; ++c)
                    acc[r][c] = fmaf(av, bv[c], acc[r][c]);
            }
        }
    }
}

/* Where dS of the final scores goes for d_bias (variants only). */
enum DbiasMode { kDbiasNone = 0, kDbiasStore, kDbiasAtomic, kDbiasSum };

/* What the variant scores of a tile need: its (batch, head) and the d_bias output; dbias
 * points at element (q0, key0) of the tile's d_bias slice, rows dbias_ld apart. */
struct VarTile {
    int batch, head;
    int dbias_mode;
    float *dbias;
    int64_t dbias_ld;
};

/* The tile entries a thread owns in scores_tile: tpe lanes per entry, ne entries per
 * thread, all with key k; entry i's query row is (e0 + groups * i) / bk. */
struct EntryMap {
    int tpe, ne, e0, lane, groups, k;
};
__device__ __forceinline__ EntryMap entry_map(const BwdPlan &pl)
{
    EntryMap m;
    const int entries = pl.bq * pl.bk; /* powers of two: tpe and ne divide exactly */
    m.tpe = entries >= kThreads ? 1 : kThreads / entries;
    m.ne = entries >= kThreads ? entries / kThreads : 1;
    m.e0 = threadIdx.x / m.tpe, m.lane = threadIdx.x % m.tpe;
    m.groups = kThreads / m.tpe;
    m.k = m.e0 % pl.bk;
    return m;
}

/* P and dS of the staged query tile (nq rows from q0, head's lse/delta in smem) against the
 * staged key tile (nk keys from key0): S and dP dot products over the head dims, split over
 * tpe lanes when the tile has fewer than kThreads entries.  Every thread calls it (shuffles).
 * kVar: the final scores of the variants; dS of each entry (before softcap's factor) goes to
 * vt's d_bias, or is added to dsum (kDbiasSum) by the thread that owns the entry. */
template <bool kVar>
__device__ void scores_tile(const pa_gpu_args &a, const BwdPlan &pl, float *sm, int q0, int nq,
                            int key0, int nk, const VarTile &vt, float (&dsum)[kMaxEntries])
{
    const float *ks = sm + pl.k_off, *vs = sm + pl.v_off, *qs = sm + pl.q_off, *os = sm + pl.o_off,
                *lse = sm + pl.lse_off, *delta = sm + pl.delta_off;
    float *ps = sm + pl.p_off, *ds = sm + pl.ds_off;
    const int entries = pl.bq * pl.bk; /* powers of two: tpe and ne divide exactly */
    const int tpe = entries >= kThreads ? 1 : kThreads / entries;
    const int ne = entries >= kThreads ? entries / kThreads : 1;
    const int e0 = threadIdx.x / tpe, lane = threadIdx.x % tpe;
    const int groups = kThreads / tpe;
    const int k = e0 % pl.bk; /* the same key for each of this thread's entries */
    int qrow[kMaxEntries];
#pragma unroll
    for (int i = 0; i < kMaxEntries; ++i)
        qrow[i] = i < ne ? (e0 + groups * i) / pl.bk : 0;
    float s[kMaxEntries], dp[kMaxEntries];
#pragma unroll
    for (int i = 0; i < kMaxEntries; ++i)
        s[i] = dp[i] = 0.f;
    const float *krow = ks + k * pl.ks, *vrow = vs + k * pl.vs;
    for (int d = lane; d < a.head_dim; d += tpe) {
        const float kv = krow[d];
#pragma unroll
        for (int i = 0; i < kMaxEntries; ++i)
            if (i < ne) s[i] = fmaf(qs[qrow[i] * pl.qs + d], kv, s[i]);
    }
    for (int d = lane; d < a.head_dim_v; d += tpe) {
        const float vv = vrow[d];
#pragma unroll
        for (int i = 0; i < kMaxEntries; ++i)
            if (i < ne) dp[i] = fmaf(os[qrow[i] * pl.os + d], vv, dp[i]);
    }
    /* tpe <= 32 lanes per entry (entries >= 8): an aligned group of a 32-lane width. */
    for (int mask = tpe / 2; mask > 0; mask /= 2) {
        s[0] += gpu_shfl_xor(s[0], mask, 32);
        dp[0] += gpu_shfl_xor(dp[0], mask, 32);
    }
    if (lane != 0) return;
    const float scale2 = a.scale * kLog2e;
#pragma unroll
    for (int i = 0; i < kMaxEntries; ++i) {
        if (i >= ne) continue;
        const int q = qrow[i];
        const float l = lse[q];
        float p = 0.f;
        /* masked entries, padding, and fully masked rows (lse = -inf) give exactly 0 */
        if (!kVar) {
            if (q < nq && k < nk && key0 + k < visible_keys(a, q0 + q) && l != -INFINITY)
                p = exp2f(s[i] * scale2 - l * kLog2e);
            ps[q * pl.ps + k] = p;
            ds[q * pl.ps + k] = p == 0.f ? 0.f : p * (dp[i] - delta[q]);
            continue;
        }
        float dcap = 1.f; /* d final score / d scaled q.k */
        if (q < nq && k < nk && l != -INFINITY) {
            const pa_gpu_var_row r = pa_gpu_var_row_of(a, vt.batch, vt.head, q0 + q);
            const int key = key0 + k;
            float x;
            if (key >= r.lo && key < r.hi && pa_gpu_var_score(a, r, key, s[i] * a.scale, x)) {
                p = exp2f(x * kLog2e - l * kLog2e);
                if (a.softcap > 0.f) {
                    const float t = tanhf(pa_gpu_score_range(s[i] * a.scale) / a.softcap);
                    dcap = 1.f - t * t;
                }
            }
        }
        const float dsv = p == 0.f ? 0.f : p * (dp[i] - delta[q]);
        ps[q * pl.ps + k] = p;
        ds[q * pl.ps + k] = dsv * dcap;
        if (vt.dbias_mode == kDbiasStore) {
            if (dsv != 0.f) vt.dbias[(int64_t)q * vt.dbias_ld + k] = dsv; /* zeroed before */
        } else if (vt.dbias_mode == kDbiasAtomic) {
            if (dsv != 0.f) atomicAdd(vt.dbias + (int64_t)q * vt.dbias_ld + k, dsv);
        } else if (vt.dbias_mode == kDbiasSum) {
            dsum[i] += dsv;
        }
    }
}

/* Where a (batch, head) pair's rows start: Q, dO/O, K, V elements and the LSE/delta row. */
struct BwdBases {
    int64_t q, o, k, v, row;
};

template <bool kServe>
__device__ __forceinline__ BwdBases bwd_bases(const pa_gpu_args &a, int b, const pa_gpu_seq &s,
                                              int h, int hk)
{
    BwdBases x;
    if (kServe) {
        x.q = pa_gpu_q_offset(a, b, s, h, 0, a.q_stride);
        x.o = pa_gpu_q_offset(a, b, s, h, 0, a.o_stride);
        x.k = pa_gpu_kv_offset(a, b, s, hk, 0, a.k_stride);
        x.v = pa_gpu_kv_offset(a, b, s, hk, 0, a.v_stride);
        x.row = pa_gpu_lse_index(a, b, s, h, 0);
    } else {
        x.q = b * a.q_stride[0] + h * a.q_stride[1];
        x.o = b * a.o_stride[0] + h * a.o_stride[1];
        x.k = b * a.k_stride[0] + hk * a.k_stride[1];
        x.v = b * a.v_stride[0] + hk * a.v_stride[1];
        x.row = ((int64_t)b * a.heads_q + h) * a.seq_q;
    }
    return x;
}

/* Q, dO, lse and delta of query rows [q0, q0 + nq) (bases of their head) into shared
 * memory. */
__device__ void load_query_tile(const pa_gpu_bwd_args &g, const pa_gpu_args &a, const BwdPlan &pl,
                                float *sm, const float *delta_ws, const BwdBases &x, int q0, int nq)
{
    load_tile(sm + pl.q_off, pl.qs, a.q, x.q, a.q_stride[2], a.q_stride[3], q0, nq, pl.bq,
              a.head_dim, a.dtype);
    load_tile(sm + pl.o_off, pl.os, g.d_o, x.o, a.o_stride[2], a.o_stride[3], q0, nq, pl.bq,
              a.head_dim_v, a.dtype);
    const int64_t row = x.row + q0;
    for (int i = threadIdx.x; i < pl.bq; i += kThreads) {
        sm[pl.lse_off + i] = i < nq ? a.lse[row + i] : -INFINITY;
        sm[pl.delta_off + i] = i < nq ? delta_ws[row + i] : 0.f;
    }
}

__device__ void load_key_tile(const pa_gpu_args &a, const BwdPlan &pl, float *sm, const BwdBases &x,
                              int key0, int nk)
{
    load_tile(sm + pl.k_off, pl.ks, a.k, x.k, a.k_stride[2], a.k_stride[3], key0, nk, pl.bk,
              a.head_dim, a.dtype);
    load_tile(sm + pl.v_off, pl.vs, a.v, x.v, a.v_stride[2], a.v_stride[3], key0, nk, pl.bk,
              a.head_dim_v, a.dtype);
}

/* Rows of the LSE's index space ([heads_q, total_q] with varlen q) and the O element of
 * row r. */
__device__ __forceinline__ int64_t bwd_rows(const pa_gpu_args &a)
{
    return a.varlen_q ? (int64_t)a.heads_q * a.total_q : (int64_t)a.batch * a.heads_q * a.seq_q;
}
__device__ __forceinline__ int64_t bwd_row_elem(const pa_gpu_args &a, int64_t row,
                                                const int64_t stride[4])
{
    if (a.varlen_q) return (row / a.total_q) * stride[1] + (row % a.total_q) * stride[2];
    const int64_t i = row % a.seq_q, h = (row / a.seq_q) % a.heads_q,
                  b = row / ((int64_t)a.seq_q * a.heads_q);
    return b * stride[0] + h * stride[1] + i * stride[2];
}

inline unsigned grid_for(int64_t n, int per_block)
{
    int64_t b = (n + per_block - 1) / per_block;
    if (b < 1) b = 1;
    return (unsigned)(b > 65535 ? 65535 : b);
}

} // namespace

/* The deterministic d_bias pass of a bias that several (batch, head) pairs share
 * (flash_bwd_dbias.cu): writes every element of g->d_bias; returns the launch error. */
int pa_gpu_flash_bwd_dbias_pass(const pa_gpu_bwd_args *g, const float *delta, gpuStream_t st);

#endif
