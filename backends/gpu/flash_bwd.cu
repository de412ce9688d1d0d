/*
 * Shared SIMT flash backward (see flash_bwd.h): FlashAttention-2's recomputation scheme in
 * plain f32 FMAs, one source for nvcc and hipcc through gpu_port.h.
 *
 * Kernels (one launch each, in this order on the stream):
 *   flash_bwd_prep_kernel   delta = rowsum(dO * O); zeroes the f32 dQ accumulator (atomic mode)
 *   flash_bwd_dkdv_kernel   one block per (key tile, kv head, batch): K_j, V_j stay in shared
 *                           memory, the query tiles that can see the key tile stream past (every
 *                           query head of the GQA group in order), dK_j and dV_j stay in
 *                           registers; in atomic mode it also adds scale * dS K_j into dQ
 *   flash_bwd_dq_kernel     deterministic mode: one block per (query tile, query head, batch)
 *                           over the visible key tiles in order; no atomics anywhere
 *   flash_bwd_dq_store_kernel  atomic mode: dQ accumulator -> the caller's dtype and strides
 *   zero_rows_kernel        varlen: zeroes dK, dV (packed keys) and, deterministic, dQ first,
 *                           so rows outside every sequence read 0; zeroes d_bias before the
 *                           dK/dV kernel stores or adds into it
 *   flash_bwd_dbias_kernel  deterministic d_bias of a broadcast bias: one block per d_bias
 *                           tile sums dS over the (batch, head) pairs sharing it, in order
 *   flash_bwd_dsinks_kernel d_sinks: one block per head over its rows in a fixed order
 *
 * Score variants (window, softcap, ALiBi, bias, attn_mask) run the kVar instances: P from
 * the forward's final scores (gpu_variants.h), dS times 1 - tanh^2 under softcap for dQ and
 * dK, whole tiles outside the causal band or the window skipped.  The plain instances are
 * the variant-free code as it was (the variant branches are compile-time).
 *
 * Varlen problems (varlen q, varlen K/V: gpu_serving.h) run the kServe instances: a block
 * resolves its sequence, exits when its tile is past the sequence's rows and works on the
 * sequence's lengths; delta, the LSE and the dQ accumulator use the LSE's index space
 * ([heads_q, total_q] with varlen q).
 *
 * Tiles are chosen at run time from the head dims (one compiled instance per kernel; dtype is
 * a uniform run-time branch at loads and stores).  Shared memory stays within 64 KiB so the
 * same plan fits AMD's LDS; rows are padded to an odd stride so the column walks below hit
 * distinct banks.
 */
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

bool plan_for(int head_dim, int head_dim_v, BwdPlan *p)
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

/* delta[row] = sum_e dO[row][e] * O[row][e] (one 32-lane group per row, fixed order); zeroes
 * the dQ accumulator row when there is one. */
__global__ void __launch_bounds__(kThreads)
    flash_bwd_prep_kernel(pa_gpu_bwd_args g, float *delta, float *dq_acc)
{
    const pa_gpu_args &a = g.fwd;
    constexpr int kGroup = 32;
    const int64_t rows = bwd_rows(a);
    const int lane = threadIdx.x % kGroup;
    const int64_t step = (int64_t)gridDim.x * (kThreads / kGroup);
    /* every lane runs the same trip count: the shuffles stay convergent */
    for (int64_t base = (int64_t)blockIdx.x * (kThreads / kGroup); base < rows; base += step) {
        const int64_t row = base + threadIdx.x / kGroup;
        float acc = 0.f;
        if (row < rows) {
            const int64_t at = bwd_row_elem(a, row, a.o_stride);
            for (int d = lane; d < a.head_dim_v; d += kGroup) {
                const int64_t e = at + d * a.o_stride[3];
                acc = fmaf(load_elem(g.d_o, e, a.dtype), load_elem(a.o, e, a.dtype), acc);
            }
            if (dq_acc)
                for (int d = lane; d < a.head_dim; d += kGroup)
                    dq_acc[row * a.head_dim + d] = 0.f;
        }
        acc = gpu_group_sum<kGroup>(acc);
        if (row < rows && lane == 0) delta[row] = acc;
    }
}

/* dK, dV of key tile [key0, key0 + bk) of kv head hk in sequence b (s): a holds the
 * sequence's lengths, g.fwd the problem's. */
template <bool kServe, bool kVar>
__device__ __forceinline__ void
dkdv_tile(const pa_gpu_bwd_args &g, const pa_gpu_args &a, const BwdPlan &pl, const float *delta,
          float *dq_acc, int dbias_mode, int b, const pa_gpu_seq &s, int hk, int key0)
{
    extern __shared__ float bwd_smem[];
    float *sm = bwd_smem;
    const int nk = min(pl.bk, a.seq_kv - key0);
    const int group = a.heads_q / a.heads_kv;

    const BwdBases kx = bwd_bases<kServe>(g.fwd, b, s, hk * group, hk);
    load_key_tile(a, pl, sm, kx, key0, nk);
    const Micro mk = micro_of(pl.bk, a.head_dim), mv = micro_of(pl.bk, a.head_dim_v);
    const Micro mq = micro_of(pl.bq, a.head_dim);
    float dk[kMicro][kMicro], dv[kMicro][kMicro];
    micro_zero(dk);
    micro_zero(dv);

    /* queries outside [q_begin, q_end) see none of the tile */
    int q_begin, q_end;
    if (kVar) queries_seeing(a, key0, key0 + nk, q_begin, q_end);
    else q_begin = first_query_seeing(a, key0), q_end = a.seq_q;
    VarTile vt = {b, 0, dbias_mode, nullptr, a.seq_kv};
    float dsum[kMaxEntries] = {}; /* unused: d_bias is stored or added */
    for (int h = hk * group; h < (hk + 1) * group; ++h) {
        const BwdBases qx = bwd_bases<kServe>(g.fwd, b, s, h, hk);
        vt.head = h;
        for (int q0 = q_begin; q0 < q_end; q0 += pl.bq) {
            const int nq = min(pl.bq, q_end - q0);
            __syncthreads(); /* the previous tile's readers are done */
            load_query_tile(g, a, pl, sm, delta, qx, q0, nq);
            __syncthreads();
            if (kVar && dbias_mode != kDbiasNone) {
                /* d_bias [nb, nh, seq_q, seq_kv] (dense layouts only: no bias with varlen) */
                const int64_t slice = (int64_t)(g.d_bias_batch == 1 ? 0 : b) * g.d_bias_heads +
                                      (g.d_bias_heads == 1 ? 0 : h);
                vt.dbias = g.d_bias + (slice * a.seq_q + q0) * a.seq_kv + key0;
            }
            scores_tile<kVar>(a, pl, sm, q0, nq, key0, nk, vt, dsum);
            __syncthreads();
            /* dV += P^T dO, dK += dS^T Q (the scale is applied at the store) */
            micro_gemm(dv, mv, nq, sm + pl.p_off, pl.ps, 1, sm + pl.o_off, pl.os, 1);
            micro_gemm(dk, mk, nq, sm + pl.ds_off, pl.ps, 1, sm + pl.q_off, pl.qs, 1);
            if (dq_acc) {
                /* dQ_i += dS K_j, added atomically: other key tiles add to the same rows */
                float dq[kMicro][kMicro];
                micro_zero(dq);
                micro_gemm(dq, mq, nk, sm + pl.ds_off, 1, pl.ps, sm + pl.k_off, pl.ks, 1);
                float *base = dq_acc + (qx.row + q0) * a.head_dim;
#pragma unroll
                for (int r = 0; r < kMicro; ++r)
#pragma unroll
                    for (int c = 0; c < kMicro; ++c)
                        if (micro_valid(mq, r, c, nq, a.head_dim))
                            atomicAdd(base + (int64_t)mq.row[r] * a.head_dim + mq.col[c], dq[r][c]);
            }
        }
    }

    /* Every key of the tile is written, zeros for keys that no query sees. */
#pragma unroll
    for (int r = 0; r < kMicro; ++r)
#pragma unroll
        for (int c = 0; c < kMicro; ++c) {
            if (micro_valid(mk, r, c, nk, a.head_dim))
                store_elem(g.dk,
                           kx.k + (int64_t)(key0 + mk.row[r]) * a.k_stride[2] +
                               (int64_t)mk.col[c] * a.k_stride[3],
                           a.dtype, a.scale * dk[r][c]);
            if (micro_valid(mv, r, c, nk, a.head_dim_v))
                store_elem(g.dv,
                           kx.v + (int64_t)(key0 + mv.row[r]) * a.v_stride[2] +
                               (int64_t)mv.col[c] * a.v_stride[3],
                           a.dtype, dv[r][c]);
        }
}

template <bool kServe, bool kVar>
__global__ void __launch_bounds__(kThreads)
    flash_bwd_dkdv_kernel(pa_gpu_bwd_args g, BwdPlan pl, const float *delta, float *dq_acc,
                          int dbias_mode)
{
    const int key0 = blockIdx.x * pl.bk, hk = blockIdx.y, b = blockIdx.z;
    if (!kServe) {
        const pa_gpu_seq s = {0, g.fwd.seq_q, 0, g.fwd.seq_kv};
        dkdv_tile<false, kVar>(g, g.fwd, pl, delta, dq_acc, dbias_mode, b, s, hk, key0);
        return;
    }
    const pa_gpu_seq s = pa_gpu_seq_of(g.fwd, b);
    if (key0 >= s.len_kv) return; /* the whole block: zero_rows_kernel zeroed its rows */
    dkdv_tile<true, kVar>(g, pa_gpu_args_for_seq(g.fwd, s), pl, delta, dq_acc, dbias_mode, b, s, hk,
                          key0);
}

/* Deterministic dQ: the query tile stays, the visible key tiles stream past in order. */
template <bool kServe, bool kVar>
__device__ __forceinline__ void dq_tile(const pa_gpu_bwd_args &g, const pa_gpu_args &a,
                                        const BwdPlan &pl, const float *delta, int b,
                                        const pa_gpu_seq &s, int h, int q0)
{
    extern __shared__ float bwd_smem[];
    float *sm = bwd_smem;
    const int nq = min(pl.bq, a.seq_q - q0);
    const int hk = h / (a.heads_q / a.heads_kv);
    int key_begin = 0, key_end;
    if (kVar) keys_seen(a, q0, nq, key_begin, key_end);
    else key_end = visible_keys(a, q0 + nq - 1);
    const VarTile vt = {b, h, kDbiasNone, nullptr, 0};
    float dsum[kMaxEntries] = {}; /* unused */
    const BwdBases x = bwd_bases<kServe>(g.fwd, b, s, h, hk);

    load_query_tile(g, a, pl, sm, delta, x, q0, nq);
    const Micro mq = micro_of(pl.bq, a.head_dim);
    float dq[kMicro][kMicro];
    micro_zero(dq);
    for (int key0 = key_begin; key0 < key_end; key0 += pl.bk) {
        const int nk = min(pl.bk, a.seq_kv - key0);
        __syncthreads();
        load_key_tile(a, pl, sm, x, key0, nk);
        __syncthreads();
        scores_tile<kVar>(a, pl, sm, q0, nq, key0, nk, vt, dsum);
        __syncthreads();
        micro_gemm(dq, mq, nk, sm + pl.ds_off, 1, pl.ps, sm + pl.k_off, pl.ks, 1);
    }
#pragma unroll
    for (int r = 0; r < kMicro; ++r)
#pragma unroll
        for (int c = 0; c < kMicro; ++c)
            if (micro_valid(mq, r, c, nq, a.head_dim))
                store_elem(g.dq,
                           x.q + (int64_t)(q0 + mq.row[r]) * a.q_stride[2] +
                               (int64_t)mq.col[c] * a.q_stride[3],
                           a.dtype, a.scale * dq[r][c]);
}

template <bool kServe, bool kVar>
__global__ void __launch_bounds__(kThreads)
    flash_bwd_dq_kernel(pa_gpu_bwd_args g, BwdPlan pl, const float *delta)
{
    const int q0 = blockIdx.x * pl.bq, h = blockIdx.y, b = blockIdx.z;
    if (!kServe) {
        const pa_gpu_seq s = {0, g.fwd.seq_q, 0, g.fwd.seq_kv};
        dq_tile<false, kVar>(g, g.fwd, pl, delta, b, s, h, q0);
        return;
    }
    const pa_gpu_seq s = pa_gpu_seq_of(g.fwd, b);
    if (q0 >= s.len_q) return; /* the whole block: zero_rows_kernel zeroed its rows */
    dq_tile<true, kVar>(g, pa_gpu_args_for_seq(g.fwd, s), pl, delta, b, s, h, q0);
}

/* Deterministic d_bias of a bias shared by several (batch, head) pairs (dense layouts): a
 * block per (key tile, query tile, d_bias slice) sums dS over the pairs sharing the slice in
 * order; tiles outside the causal band or the window are zeros. */
__global__ void __launch_bounds__(kThreads)
    flash_bwd_dbias_kernel(pa_gpu_bwd_args g, BwdPlan pl, const float *delta)
{
    extern __shared__ float bwd_smem[];
    float *sm = bwd_smem;
    const pa_gpu_args &a = g.fwd;
    const int key0 = blockIdx.x * pl.bk, nk = min(pl.bk, a.seq_kv - key0);
    const int nb = g.d_bias_batch, nh = g.d_bias_heads, group = a.heads_q / a.heads_kv;
    const pa_gpu_seq s = {0, a.seq_q, 0, a.seq_kv};
    const EntryMap em = entry_map(pl);
    for (int z = blockIdx.z; z < nb * nh; z += gridDim.z)
        for (int q0 = blockIdx.y * pl.bq; q0 < a.seq_q; q0 += gridDim.y * pl.bq) {
            const int nq = min(pl.bq, a.seq_q - q0), bb = z / nh, hh = z % nh;
            float dsum[kMaxEntries];
#pragma unroll
            for (int i = 0; i < kMaxEntries; ++i)
                dsum[i] = 0.f;
            int ka, kz;
            keys_seen(a, q0, nq, ka, kz);
            if (ka < key0 + nk && kz > key0) { /* uniform over the block */
                const int b_end = nb == 1 ? a.batch : bb + 1, h_end = nh == 1 ? a.heads_q : hh + 1;
                for (int b = nb == 1 ? 0 : bb; b < b_end; ++b)
                    for (int h = nh == 1 ? 0 : hh; h < h_end; ++h) {
                        const BwdBases x = bwd_bases<false>(a, b, s, h, h / group);
                        __syncthreads(); /* the previous pair's readers are done */
                        load_query_tile(g, a, pl, sm, delta, x, q0, nq);
                        load_key_tile(a, pl, sm, x, key0, nk);
                        __syncthreads();
                        const VarTile vt = {b, h, kDbiasSum, nullptr, 0};
                        scores_tile<true>(a, pl, sm, q0, nq, key0, nk, vt, dsum);
                    }
            }
            if (em.lane != 0) continue;
            float *out = g.d_bias + ((int64_t)z * a.seq_q + q0) * a.seq_kv + key0;
#pragma unroll
            for (int i = 0; i < kMaxEntries; ++i) {
                const int q = (em.e0 + em.groups * i) / pl.bk;
                if (i < em.ne && q < nq && em.k < nk) out[(int64_t)q * a.seq_kv + em.k] = dsum[i];
            }
        }
}

/* d_sinks[h] = -sum over the head's rows of exp(sink - LSE) * delta (the sink's share of
 * the softmax times delta; rows with delta = 0, such as fully masked ones, add nothing),
 * one block per head, in a fixed order. */
__device__ __forceinline__ float sink_term(float sink, float lse, float delta)
{
    return delta == 0.f ? 0.f : expf(sink - lse) * delta;
}

__global__ void __launch_bounds__(kThreads)
    flash_bwd_dsinks_kernel(pa_gpu_bwd_args g, const float *delta)
{
    __shared__ float red[kThreads];
    const pa_gpu_args &a = g.fwd;
    const int h = blockIdx.x;
    const float sink = a.sinks[h];
    float acc = 0.f;
    if (a.varlen_q) {
        for (int b = 0; b < a.batch; ++b) {
            const pa_gpu_seq s = pa_gpu_seq_of(a, b);
            for (int i = threadIdx.x; i < s.len_q; i += kThreads) {
                const int64_t row = (int64_t)h * a.total_q + s.q0 + i;
                acc += sink_term(sink, a.lse[row], delta[row]);
            }
        }
    } else {
        const int64_t n = (int64_t)a.batch * a.seq_q;
        for (int64_t t = threadIdx.x; t < n; t += kThreads) {
            const int64_t row = ((t / a.seq_q) * a.heads_q + h) * a.seq_q + t % a.seq_q;
            acc += sink_term(sink, a.lse[row], delta[row]);
        }
    }
    const int tid = threadIdx.x;
    red[tid] = acc;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
        if (tid < w) red[tid] += red[tid + w];
        __syncthreads();
    }
    if (tid == 0) g.d_sinks[h] = 0.f - red[0]; /* +0 without rows */
}

/* Zeroes heads x rows x dim elements of a packed [1, heads, rows, dim] tensor (varlen dQ,
 * dK, dV), so that rows outside every sequence read 0. */
__global__ void __launch_bounds__(kThreads)
    zero_rows_kernel(void *dst, int dtype, int64_t s1, int64_t s2, int64_t s3, int64_t rows,
                     int64_t dim, int64_t n)
{
    const int64_t step = (int64_t)gridDim.x * kThreads;
    for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += step) {
        const int64_t d = i % dim, r = (i / dim) % rows, h = i / (dim * rows);
        store_elem(dst, h * s1 + r * s2 + d * s3, dtype, 0.f);
    }
}

/* dQ = scale * accumulator, into the caller's dtype and strides. */
__global__ void __launch_bounds__(kThreads)
    flash_bwd_dq_store_kernel(pa_gpu_bwd_args g, const float *dq_acc)
{
    const pa_gpu_args &a = g.fwd;
    const int64_t n = bwd_rows(a) * a.head_dim;
    const int64_t step = (int64_t)gridDim.x * kThreads;
    for (int64_t i = (int64_t)blockIdx.x * kThreads + threadIdx.x; i < n; i += step) {
        const int64_t d = i % a.head_dim, row = i / a.head_dim;
        store_elem(g.dq, bwd_row_elem(a, row, a.q_stride) + d * a.q_stride[3], a.dtype,
                   a.scale * dq_acc[i]);
    }
}

unsigned grid_for(int64_t n, int per_block)
{
    int64_t b = (n + per_block - 1) / per_block;
    if (b < 1) b = 1;
    return (unsigned)(b > 65535 ? 65535 : b);
}

/* The runtime's "invalid value" code, returned for a problem pa_gpu_flash_bwd_smem refuses. */
#if defined(GPU_BACKEND_HIP)
constexpr int kInvalidValue = (int)hipErrorInvalidValue;
#else
constexpr int kInvalidValue = (int)cudaErrorInvalidValue;
#endif

uint64_t align_up(uint64_t x) { return (x + 255) & ~(uint64_t)255; }

/* Rows of the LSE's index space (bwd_rows on the host). */
uint64_t host_rows(const pa_gpu_args &a)
{
    return a.varlen_q ? (uint64_t)a.heads_q * a.total_q : (uint64_t)a.batch * a.heads_q * a.seq_q;
}

uint64_t delta_bytes(const pa_gpu_args &a) { return align_up(host_rows(a) * sizeof(float)); }

bool serving(const pa_gpu_args &a) { return a.varlen_q || a.kv_layout != PA_GPU_KV_DENSE; }

/* Whether a variant changes the scores (the kVar instances); sinks alone are in the LSE. */
bool scores_vary(const pa_gpu_args &a)
{
    return a.has_window || a.softcap > 0.f || a.alibi_slopes || a.bias || a.attn_mask;
}

/* Whether several (batch, head) pairs add into one d_bias element. */
bool dbias_shared(const pa_gpu_bwd_args &g)
{
    return (g.d_bias_batch == 1 && g.fwd.batch > 1) || (g.d_bias_heads == 1 && g.fwd.heads_q > 1);
}

/* Zeroes a packed varlen tensor ([1, heads, rows, dim] at stride). */
int zero_rows(void *dst, int dtype, const int64_t stride[4], int heads, int rows, int dim,
              gpuStream_t st)
{
    const int64_t n = (int64_t)heads * rows * dim;
    if (n <= 0) return 0;
    zero_rows_kernel<<<grid_for(n, kThreads), kThreads, 0, st>>>(dst, dtype, stride[1], stride[2],
                                                                 stride[3], rows, dim, n);
    return (int)gpuGetLastError();
}

} // namespace

extern "C" uint64_t pa_gpu_flash_bwd_workspace(const pa_gpu_bwd_args *g)
{
    const pa_gpu_args &a = g->fwd;
    uint64_t bytes = delta_bytes(a);
    if (!g->deterministic) bytes += align_up(host_rows(a) * a.head_dim * sizeof(float));
    return bytes;
}

extern "C" size_t pa_gpu_flash_bwd_smem(const pa_gpu_bwd_args *g)
{
    const pa_gpu_args &a = g->fwd;
    if (a.head_dim < 1 || a.head_dim_v < 1 || a.head_dim > PA_GPU_MAX_HEAD_DIM ||
        a.head_dim_v > PA_GPU_MAX_HEAD_DIM)
        return 0;
    BwdPlan pl;
    return plan_for(a.head_dim, a.head_dim_v, &pl) ? (size_t)pl.floats * sizeof(float) : 0;
}

extern "C" int pa_gpu_flash_bwd(const pa_gpu_bwd_args *g, void *workspace, void *stream)
{
    const pa_gpu_args &a = g->fwd;
    BwdPlan pl;
    if (!plan_for(a.head_dim, a.head_dim_v, &pl)) return kInvalidValue;
    const gpuStream_t st = (gpuStream_t)stream;
    float *delta = static_cast<float *>(workspace);
    float *dq_acc =
        g->deterministic
            ? nullptr
            : reinterpret_cast<float *>(static_cast<char *>(workspace) + delta_bytes(a));
    const int64_t rows = (int64_t)host_rows(a);
    const size_t smem = (size_t)pl.floats * sizeof(float);
    const bool serve = serving(a);
    gpuError_t e;
    /* Varlen: the rows outside every sequence are zero (the kernels below skip them). */
    if (serve && a.kv_layout == PA_GPU_KV_VARLEN) {
        int z = zero_rows(g->dk, a.dtype, a.k_stride, a.heads_kv, a.kv_rows, a.head_dim, st);
        if (z == 0)
            z = zero_rows(g->dv, a.dtype, a.v_stride, a.heads_kv, a.kv_rows, a.head_dim_v, st);
        if (z != 0) return z;
    }
    if (serve && a.varlen_q && g->deterministic) {
        const int z = zero_rows(g->dq, a.dtype, a.q_stride, a.heads_q, a.total_q, a.head_dim, st);
        if (z != 0) return z;
    }
    /* d_bias: stored (or, shared, added) by the dK/dV kernel into zeros; deterministic and
     * shared, written whole by its own pass at the end. */
    const bool var = scores_vary(a);
    const bool dbias_pass = g->d_bias && g->deterministic && dbias_shared(*g);
    const int dbias_mode = !g->d_bias || dbias_pass ? kDbiasNone
                           : dbias_shared(*g)       ? kDbiasAtomic
                                                    : kDbiasStore;
    const int64_t dbias_elems =
        (int64_t)g->d_bias_batch * g->d_bias_heads * a.seq_q * (int64_t)a.seq_kv;
    if (dbias_mode != kDbiasNone && dbias_elems > 0) {
        zero_rows_kernel<<<grid_for(dbias_elems, kThreads), kThreads, 0, st>>>(
            g->d_bias, 0, 0, 0, 1, 1, dbias_elems, dbias_elems);
        if ((e = gpuGetLastError()) != gpuSuccess) return (int)e;
    }
    if (rows > 0) {
        flash_bwd_prep_kernel<<<grid_for(rows, kThreads / 32), kThreads, 0, st>>>(*g, delta,
                                                                                  dq_acc);
        if ((e = gpuGetLastError()) != gpuSuccess) return (int)e;
    }
    if (a.seq_kv > 0 && a.batch > 0) {
        auto dkdv =
            serve
                ? (var ? flash_bwd_dkdv_kernel<true, true> : flash_bwd_dkdv_kernel<true, false>)
                : (var ? flash_bwd_dkdv_kernel<false, true> : flash_bwd_dkdv_kernel<false, false>);
        e = gpuFuncSetAttribute(dkdv, 0, (int)smem);
        if (e != gpuSuccess) return (int)e;
        const dim3 grid((a.seq_kv + pl.bk - 1) / pl.bk, a.heads_kv, a.batch);
        dkdv<<<grid, kThreads, smem, st>>>(*g, pl, delta, dq_acc, dbias_mode);
        if ((e = gpuGetLastError()) != gpuSuccess) return (int)e;
    }
    if (rows > 0 && g->deterministic && a.seq_q > 0 && a.batch > 0) {
        auto dq =
            serve ? (var ? flash_bwd_dq_kernel<true, true> : flash_bwd_dq_kernel<true, false>)
                  : (var ? flash_bwd_dq_kernel<false, true> : flash_bwd_dq_kernel<false, false>);
        e = gpuFuncSetAttribute(dq, 0, (int)smem);
        if (e != gpuSuccess) return (int)e;
        const dim3 grid((a.seq_q + pl.bq - 1) / pl.bq, a.heads_q, a.batch);
        dq<<<grid, kThreads, smem, st>>>(*g, pl, delta);
    } else if (rows > 0 && !g->deterministic) {
        flash_bwd_dq_store_kernel<<<grid_for(rows * a.head_dim, kThreads), kThreads, 0, st>>>(
            *g, dq_acc);
    }
    if ((e = gpuGetLastError()) != gpuSuccess) return (int)e;
    if (dbias_pass && dbias_elems > 0) {
        auto dbias = flash_bwd_dbias_kernel;
        e = gpuFuncSetAttribute(dbias, 0, (int)smem);
        if (e != gpuSuccess) return (int)e;
        const dim3 grid((a.seq_kv + pl.bk - 1) / pl.bk, grid_for(a.seq_q, pl.bq),
                        grid_for((int64_t)g->d_bias_batch * g->d_bias_heads, 1));
        dbias<<<grid, kThreads, smem, st>>>(*g, pl, delta);
        if ((e = gpuGetLastError()) != gpuSuccess) return (int)e;
    }
    if (g->d_sinks && a.heads_q > 0) {
        flash_bwd_dsinks_kernel<<<a.heads_q, kThreads, 0, st>>>(*g, delta);
        if ((e = gpuGetLastError()) != gpuSuccess) return (int)e;
    }
    return 0;
}
