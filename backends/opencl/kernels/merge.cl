/* Merging partial attention states (polyattn_merge_states, and the key splits of the serving
 * forward): per row, over the parts p with LSE_p > -inf,
 *   m = max LSE_p,  LSE = m + log(sum exp(LSE_p - m)),  O = sum exp(LSE_p - LSE) O_p.
 * A NaN or +inf LSE_p makes the row NaN; no part with a finite LSE gives O = 0, LSE = -inf.
 * Options: PART_DTYPE (0 f32, 1 f16, 2 bf16; default f32), PA_DTYPE (the output's, or
 * PA_ODTYPE where that is given). */

#ifndef PART_DTYPE
#define PART_DTYPE 0
#endif
#if PART_DTYPE == 0
#define PART_STORAGE float
#define PART_LOAD(p, i) ((p)[(i)])
#elif PART_DTYPE == 1
#define PART_STORAGE half
#define PART_LOAD(p, i) vload_half((size_t)(i), (p))
#else
#define PART_STORAGE ushort
#define PART_LOAD(p, i) as_float(((uint)(p)[(i)]) << 16)
#endif

/* One row: part p's element x at parts[base + p * part_stride + x * dx], its LSE at
 * lses[lbase + p * lse_stride]; extra is one more part's LSE whose O is zero (a sink, or
 * -inf).  Writes dv elements at out[x * ox] and the row's LSE to *lse_out. */
inline void pa_merge_row(__global const PART_STORAGE *parts, long base, long part_stride, long dx,
                         __global const float *lses, long lbase, long lse_stride, long n_parts,
                         float extra, __global OSTORAGE *out, long ox, long dv, float *lse_out)
{
    float mx = extra;
    int nan_row = isnan(extra) || extra == INFINITY;
    for (long p = 0; p < n_parts; p++) {
        const float lp = lses[lbase + p * lse_stride];
        if (isnan(lp) || lp == INFINITY) nan_row = 1;
        else mx = fmax(mx, lp);
    }
    if (nan_row || mx == -INFINITY) {
        const float fill = nan_row ? NAN : 0.0f;
        for (long x = 0; x < dv; x++) OSTORE(out, x * ox, fill);
        *lse_out = nan_row ? NAN : -INFINITY;
        return;
    }
    float sum = exp(extra - mx);
    for (long p = 0; p < n_parts; p++) {
        const float lp = lses[lbase + p * lse_stride];
        if (lp != -INFINITY) sum += exp(lp - mx);
    }
    const float lse = mx + log(sum);
    for (long x = 0; x < dv; x++) {
        float acc = 0.0f;
        for (long p = 0; p < n_parts; p++) {
            const float lp = lses[lbase + p * lse_stride];
            if (lp == -INFINITY) continue;
            acc = fma(exp(lp - lse), PART_LOAD(parts, base + p * part_stride + x * dx), acc);
        }
        OSTORE(out, x * ox, acc);
    }
    *lse_out = lse;
}

/* Element x of pa_merge_row's row (base and lbase as there, base + x * dx given): for one
 * work-item per element, so a row's columns are read side by side and every part's load of
 * the element can be in flight at once.  Returns O[x]; *lse_out as pa_merge_row's. */
inline float pa_merge_elem(__global const PART_STORAGE *parts, long base, long part_stride,
                           __global const float *lses, long lbase, long lse_stride, long n_parts,
                           float extra, float *lse_out)
{
    float mx = extra;
    int nan_row = isnan(extra) || extra == INFINITY;
    for (long p = 0; p < n_parts; p++) {
        const float lp = lses[lbase + p * lse_stride];
        if (isnan(lp) || lp == INFINITY) nan_row = 1;
        else mx = fmax(mx, lp);
    }
    if (nan_row || mx == -INFINITY) {
        *lse_out = nan_row ? NAN : -INFINITY;
        return nan_row ? NAN : 0.0f;
    }
    float sum = exp(extra - mx);
    for (long p = 0; p < n_parts; p++) {
        const float lp = lses[lbase + p * lse_stride];
        if (lp != -INFINITY) sum += exp(lp - mx);
    }
    const float lse = mx + log(sum);
    float acc = 0.0f;
    for (long p = 0; p < n_parts; p++) { /* the load unguarded: a part with no keys (LSE */
        const float lp = lses[lbase + p * lse_stride]; /* -inf) is selected away */
        const float o = PART_LOAD(parts, base + p * part_stride);
        acc = lp == -INFINITY ? acc : fma(exp(lp - lse), o, acc);
    }
    *lse_out = lse;
    return acc;
}

/* polyattn_merge_states: parts [P][batch, heads, seq, dv] at pst (b, h, s, d) and part_stride,
 * LSE f32 contiguous [P][batch, heads, seq]; one work-item per (row, column), grid-stride
 * (pa_merge_elem): a row's columns are neighbouring work-items, so each part's load is one
 * coalesced access across them (unit column strides) and all P loads of an element can be in
 * flight at once; a work-item per row walked the columns serially, ~0.3 ms at 256 rows x 128
 * columns x 9 parts on an H100 (the serving merge's measurement).  Every work-item derives its
 * row's max and sum from the P LSEs itself: those are the same P addresses for the whole row
 * (one cached broadcast each), where a first pass would cost a second launch and a workspace
 * this API does not take.  No 4-wide vector loads: neighbouring work-items' scalar loads
 * already share the memory transactions, and vectors would need aligned strides and a
 * scalar path for every other layout and head dim.  The row's LSE is written by column 0. */
__kernel void merge_states_kernel(__global const PART_STORAGE *parts, long parts_off, long4 pst,
                                  long part_stride, __global const float *plse, long plse_off,
                                  long n_parts, __global OSTORAGE *out, long out_off, long4 ost,
                                  __global float *out_lse, long out_lse_off, int want_lse,
                                  long heads, long seq, long dv, long rows)
{
    for (long e = get_global_id(0); e < rows * dv; e += get_global_size(0)) {
        const long t = e / dv, x = e - t * dv;
        const long i = t % seq, h = t / seq % heads, b = t / seq / heads;
        float row_lse;
        const float val = pa_merge_elem(
            parts, parts_off + b * pst.s0 + h * pst.s1 + i * pst.s2 + x * pst.s3, part_stride,
            plse, plse_off + t, rows, n_parts, -INFINITY, &row_lse);
        OSTORE(out, out_off + b * ost.s0 + h * ost.s1 + i * ost.s2 + x * ost.s3, val);
        if (want_lse && x == 0) out_lse[out_lse_off + t] = row_lse;
    }
}
