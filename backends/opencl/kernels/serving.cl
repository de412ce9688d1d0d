/* Serving layouts (polyattn.h): varlen q and k/v, dense and paged KV caches, KV append, and
 * the key splits of decode.  Built after common.cl and variants.cl (always -DPA_VAR).
 * Options: HEAD_DIM, HEAD_DIM_V, ROWS, KB, PA_DTYPE, PA_ODTYPE.
 *
 * Every offset, length and block index read from the device is clamped to its tensor, so
 * bad values (which check_device_inputs reports) never address memory out of bounds. */

#if PA_DTYPE == 0
#define SRV_LOAD8(p, i) vload8(0, (p) + (i))
#define RAW uint
#elif PA_DTYPE == 1
#define SRV_LOAD8(p, i) vload_half8(0, (p) + (i))
#define RAW ushort
#elif PA_DTYPE == 2
#define SRV_LOAD8(p, i) as_float8(convert_uint8(vload8(0, (p) + (i))) << (uint8)(16))
#define RAW ushort
#else
#define SRV_LOAD8(p, i) pa_e4m3x8_to_f32(vload8(0, (p) + (i)))
#define RAW uchar
#endif

#define KV_DENSE 0
#define KV_VARLEN 1
#define KV_CACHE 2
#define KV_PAGED 3

/* The layout's int32 tensors and sizes (the same argument list in every kernel here). */
#define PA_SRV_PARAMS                                                                        \
    __global const int *cu_q, long cu_q_off, __global const int *cu_kv, long cu_kv_off,     \
        __global const int *used, long used_off, __global const int *table, long table_off, \
        int varlen_q, int kv_layout, long total_q, long kv_count, long kv_rows,              \
        long max_blocks, long seq_new, long max_q, long max_kv
#define PA_SRV_ARGS                                                                          \
    cu_q, cu_q_off, cu_kv, cu_kv_off, used, used_off, table, table_off, varlen_q, kv_layout, \
        total_q, kv_count, kv_rows, max_blocks, seq_new, max_q, max_kv

/* One sequence: rows [q0, q0 + len_q) of q, keys [0, len_kv) (varlen: rows kv0 + j of k). */
typedef struct pa_seq {
    long b, q0, len_q, kv0, len_kv, used;
} pa_seq;

inline long pa_clampl(long x, long lo, long hi) { return x < lo ? lo : (x > hi ? hi : x); }

/* Keys a cache sequence can hold: the capacity, or the block table's row. */
inline long pa_capacity(int kv_layout, long kv_rows, long max_blocks)
{
    return kv_layout == KV_PAGED ? max_blocks * kv_rows : kv_rows;
}

inline pa_seq pa_seq_of(long b, PA_SRV_PARAMS)
{
    pa_seq s;
    s.b = b;
    s.q0 = 0, s.len_q = max_q, s.kv0 = 0, s.len_kv = max_kv, s.used = 0;
    if (varlen_q) {
        s.q0 = pa_clampl(cu_q[cu_q_off + b], 0, total_q);
        long e = pa_clampl(cu_q[cu_q_off + b + 1], s.q0, total_q);
        s.len_q = min(e - s.q0, max_q);
    }
    if (kv_layout == KV_VARLEN) {
        s.kv0 = pa_clampl(cu_kv[cu_kv_off + b], 0, kv_rows);
        long e = pa_clampl(cu_kv[cu_kv_off + b + 1], s.kv0, kv_rows);
        s.len_kv = min(e - s.kv0, max_kv);
    } else if (kv_layout == KV_CACHE || kv_layout == KV_PAGED) {
        const long cap = pa_capacity(kv_layout, kv_rows, max_blocks);
        s.used = pa_clampl(used[used_off + b], 0, cap);
        s.len_kv = min(min(s.used + seq_new, cap), max_kv);
    }
    return s;
}

/* Element offset of key j's row (head hk) at strides st; -1 for a paged key whose block
 * index is not a block of the cache. */
inline long pa_key_row(const pa_seq *s, long hk, long j, long4 st, PA_SRV_PARAMS)
{
    switch (kv_layout) {
    case KV_VARLEN: return hk * st.s1 + (s->kv0 + j) * st.s2;
    case KV_PAGED: {
        const long n = j / kv_rows;
        if (n >= max_blocks) return -1;
        const long blk = table[table_off + s->b * max_blocks + n];
        if (blk < 0 || blk >= kv_count) return -1;
        return blk * st.s0 + hk * st.s1 + (j % kv_rows) * st.s2;
    }
    default: return s->b * st.s0 + hk * st.s1 + j * st.s2;
    }
}

/* Element offset of query row i (head h) of sequence s in q or o. */
inline long pa_q_row(const pa_seq *s, long h, long i, long4 st, int varlen_q)
{
    return varlen_q ? h * st.s1 + (s->q0 + i) * st.s2 : s->b * st.s0 + h * st.s1 + i * st.s2;
}

/* Index of a row's LSE: [heads_q, total_q] with varlen q, else [batch, heads_q, seq_q]. */
inline long pa_lse_index(const pa_seq *s, long h, long i, long heads_q, int varlen_q, long total_q)
{
    return varlen_q ? h * total_q + s->q0 + i : (s->b * heads_q + h) * total_q + i;
}

/* ---- KV append: row j of k_new / v_new at key used + j of its sequence ---- */

__kernel void serving_append_kernel(__global RAW *k, long k_off, long4 k_st, __global RAW *v,
                                    long v_off, long4 v_st, __global const RAW *kn, long kn_off,
                                    long4 kn_st, __global const RAW *vn, long vn_off,
                                    long4 vn_st, long heads_kv, long n_items, PA_SRV_PARAMS)
{
    const long dmax = HEAD_DIM > HEAD_DIM_V ? HEAD_DIM : HEAD_DIM_V;
    for (long t = get_global_id(0); t < n_items; t += get_global_size(0)) {
        const long x = t % dmax, j = t / dmax % seq_new, hk = t / dmax / seq_new % heads_kv,
                   b = t / dmax / seq_new / heads_kv;
        const long cap = pa_capacity(kv_layout, kv_rows, max_blocks);
        const long u = pa_clampl(used[used_off + b], 0, cap), key = u + j;
        if (key >= cap) continue;
        pa_seq s;
        s.b = b, s.q0 = 0, s.len_q = 0, s.kv0 = 0, s.len_kv = 0, s.used = u;
        const long kr = pa_key_row(&s, hk, key, k_st, PA_SRV_ARGS);
        const long vr = pa_key_row(&s, hk, key, v_st, PA_SRV_ARGS);
        if (x < HEAD_DIM && kr >= 0)
            k[k_off + kr + x * k_st.s3] =
                kn[kn_off + b * kn_st.s0 + hk * kn_st.s1 + j * kn_st.s2 + x * kn_st.s3];
        if (x < HEAD_DIM_V && vr >= 0)
            v[v_off + vr + x * v_st.s3] =
                vn[vn_off + b * vn_st.s0 + hk * vn_st.s1 + j * vn_st.s2 + x * vn_st.s3];
    }
}

/* ---- the forward: online softmax over one key split ----
 * A work-item owns ROWS packed rows r of one (sequence, KV head, split): query r / group of
 * query head hk * group + r % group, so the heads of a GQA group are neighbouring rows and
 * each K and V row loaded serves all of them (decode: one work-item, one load per key).
 * grid: (items, heads_kv, batch * n_splits).  n_splits 1 writes O and the LSE (sink folded
 * in); more write each split's O (f32, normalized, times o_scale) and LSE (no sink) to part / part_lse at
 * [split][batch][heads_q][max_q], merged by flash_serving_merge_kernel. */
__kernel void flash_serving_fwd_kernel(
    __global const STORAGE *q, long q_off, long4 q_st, __global const STORAGE *k, long k_off,
    long4 k_st, __global const STORAGE *v, long v_off, long4 v_st, __global OSTORAGE *o,
    long o_off, long4 o_st, __global float *lse, long lse_off, int want_lse, int group,
    float scale_log2, float o_scale, int causal, int top_left, int n_splits, __global float *part,
    long part_off, PA_SRV_PARAMS PA_VAR_PARAMS)
{
    const long hk = get_global_id(1), b = get_global_id(2) / n_splits,
               split = get_global_id(2) % n_splits;
    const long heads_q = get_global_size(1) * group, batch = get_global_size(2) / n_splits;
    const pa_seq s = pa_seq_of(b, PA_SRV_ARGS);
    const long r0 = (long)get_global_id(0) * ROWS;
    if (r0 >= s.len_q * group) return;
    /* The split's keys, in whole KB blocks. */
    const long chunk = (s.len_kv + n_splits - 1) / n_splits;
    const long chunk_kb = (chunk + KB - 1) / KB * KB;
    const long ks0 = min(split * chunk_kb, s.len_kv), ks1 = min(ks0 + chunk_kb, s.len_kv);
    const int vec_k = HEAD_DIM % 8 == 0 && k_st.s3 == 1, vec_v = HEAD_DIM_V % 8 == 0 && v_st.s3 == 1;

    float qv[ROWS][HEAD_DIM], ov[ROWS][HEAD_DIM_V], m[ROWS], l[ROWS];
    long vis[ROWS], lo[ROWS], row_i[ROWS], row_h[ROWS], kv_begin = ks1, kv_end = ks0;
    int seen[ROWS];
    pa_var va[ROWS];
    for (int r = 0; r < ROWS; r++) {
        const long pr = r0 + r, i = pr / group, h = hk * group + pr % group;
        const int ok = pr < s.len_q * group;
        row_i[r] = i, row_h[r] = ok ? h : hk * group;
        va[r] = pa_var_make(b, row_h[r], heads_q, PA_LOG2E, va_slopes, va_slopes_off,
                            va_slopes_per_batch, va_bias, va_bias_off, va_bias_st, va_mask,
                            va_mask_off, va_mask_st, va_sinks, va_sinks_off, va_wl, va_wr,
                            va_softcap, top_left ? 0 : s.len_kv - s.len_q);
        lo[r] = ks1;
        vis[r] = ok ? pa_var_range(&va[r], i, causal, s.len_kv, &lo[r]) : 0;
        lo[r] = max(lo[r], ks0);
        vis[r] = max(min(vis[r], ks1), lo[r]);
        if (vis[r] > lo[r]) kv_begin = min(kv_begin, lo[r]), kv_end = max(kv_end, vis[r]);
        seen[r] = 0;
        __global const STORAGE *qr = q + q_off + pa_q_row(&s, row_h[r], i, q_st, varlen_q);
        for (int d = 0; d < HEAD_DIM; d++)
            qv[r][d] = ok ? LOAD(qr, d * q_st.s3) * scale_log2 : 0.0f;
        for (int d = 0; d < HEAD_DIM_V; d++) ov[r][d] = 0.0f;
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    for (long key0 = kv_begin; key0 < kv_end; key0 += KB) {
        float sc[ROWS][KB];
        for (int j = 0; j < KB; j++) {
            const long key = key0 + j;
            float acc[ROWS];
            for (int r = 0; r < ROWS; r++) acc[r] = 0.0f;
            const long kro = key < kv_end ? pa_key_row(&s, hk, key, k_st, PA_SRV_ARGS) : -1;
            if (kro >= 0) {
                __global const STORAGE *kr = k + k_off + kro;
                if (vec_k) {
                    float8 a8[ROWS];
                    for (int r = 0; r < ROWS; r++) a8[r] = (float8)(0.0f);
                    for (int d = 0; d < HEAD_DIM; d += 8) {
                        float8 kk = SRV_LOAD8(kr, d);
                        for (int r = 0; r < ROWS; r++) a8[r] = fma(vload8(0, &qv[r][d]), kk, a8[r]);
                    }
                    for (int r = 0; r < ROWS; r++) {
                        float4 t4 = a8[r].lo + a8[r].hi;
                        acc[r] = (t4.x + t4.y) + (t4.z + t4.w);
                    }
                } else {
                    for (int d = 0; d < HEAD_DIM; d++) {
                        float kk = LOAD(kr, d * k_st.s3);
                        for (int r = 0; r < ROWS; r++) acc[r] = fma(qv[r][d], kk, acc[r]);
                    }
                }
            }
            for (int r = 0; r < ROWS; r++) {
                float dcap;
                int sn = 0;
                sc[r][j] = key >= lo[r] && key < vis[r]
                               ? pa_var_score(&va[r], acc[r], row_i[r], key, &sn, &dcap)
                               : -INFINITY;
                seen[r] |= sn;
            }
        }
        for (int r = 0; r < ROWS; r++) {
            float bm = -INFINITY;
            for (int j = 0; j < KB; j++) bm = fmax(bm, sc[r][j]);
            const float m_new = fmax(m[r], bm), m_use = m_new == -INFINITY ? 0.0f : m_new;
            const float alpha = exp2(m[r] - m_use);
            m[r] = m_new;
            l[r] *= alpha;
            for (int d = 0; d < HEAD_DIM_V; d++) ov[r][d] *= alpha;
            for (int j = 0; j < KB; j++) {
                sc[r][j] = exp2(sc[r][j] - m_use);
                l[r] += sc[r][j];
            }
        }
        for (int j = 0; j < KB; j++) {
            const long key = key0 + j;
            if (key >= kv_end) break;
            const long vro = pa_key_row(&s, hk, key, v_st, PA_SRV_ARGS);
            if (vro < 0) continue;
            __global const STORAGE *vr = v + v_off + vro;
            if (vec_v) {
                for (int d = 0; d < HEAD_DIM_V; d += 8) {
                    float8 vv = SRV_LOAD8(vr, d);
                    for (int r = 0; r < ROWS; r++)
                        vstore8(fma((float8)(sc[r][j]), vv, vload8(0, &ov[r][d])), 0, &ov[r][d]);
                }
            } else {
                for (int d = 0; d < HEAD_DIM_V; d++) {
                    float vv = LOAD(vr, d * v_st.s3);
                    for (int r = 0; r < ROWS; r++) ov[r][d] = fma(sc[r][j], vv, ov[r][d]);
                }
            }
        }
    }
    for (int r = 0; r < ROWS; r++) {
        if (r0 + r >= s.len_q * group) break;
        const long i = row_i[r], h = row_h[r];
        if (n_splits > 1) {
            const long prow = ((split * batch + b) * heads_q + h) * max_q + i;
            const float inv = pa_row_inv(l[r], seen[r]) * o_scale;
            __global float *po = part + part_off + prow * HEAD_DIM_V;
            for (int d = 0; d < HEAD_DIM_V; d++) po[d] = ov[r][d] * inv;
            part[part_off + n_splits * batch * heads_q * max_q * HEAD_DIM_V + prow] =
                pa_row_lse(m[r] * PA_LN2 + log(l[r]), l[r], seen[r]);
            continue;
        }
        const float fold = pa_var_sink_fold2(&va[r], &m[r], &l[r]);
        const float inv = pa_row_inv(l[r], seen[r]) * fold * o_scale;
        __global OSTORAGE *orow = o + o_off + pa_q_row(&s, h, i, o_st, varlen_q);
        for (int d = 0; d < HEAD_DIM_V; d++) OSTORE(orow, d * o_st.s3, ov[r][d] * inv);
        if (want_lse)
            lse[lse_off + pa_lse_index(&s, h, i, heads_q, varlen_q, total_q)] =
                pa_row_lse(m[r] * PA_LN2 + log(l[r]), l[r], seen[r]);
    }
}

/* The splits of each row merged (merge.cl's pa_merge_row), the sink joined once. */
__kernel void flash_serving_merge_kernel(__global const float *part, long part_off, int n_splits,
                                         __global OSTORAGE *o, long o_off, long4 o_st,
                                         __global float *lse, long lse_off, int want_lse,
                                         long heads_q, long batch, __global const float *sinks,
                                         long sinks_off, int has_sinks, PA_SRV_PARAMS)
{
    const long rows = batch * heads_q * max_q;
    for (long t = get_global_id(0); t < rows; t += get_global_size(0)) {
        const long i = t % max_q, h = t / max_q % heads_q, b = t / max_q / heads_q;
        const pa_seq s = pa_seq_of(b, PA_SRV_ARGS);
        if (i >= s.len_q) continue;
        const float sink = has_sinks ? sinks[sinks_off + h] : -INFINITY;
        float row_lse;
        pa_merge_row(part, part_off + t * HEAD_DIM_V, rows * HEAD_DIM_V, 1,
                     part + part_off + n_splits * rows * HEAD_DIM_V, t, rows, n_splits, sink,
                     o + o_off + pa_q_row(&s, h, i, o_st, varlen_q), o_st.s3, HEAD_DIM_V,
                     &row_lse);
        if (want_lse) lse[lse_off + pa_lse_index(&s, h, i, heads_q, varlen_q, total_q)] = row_lse;
    }
}

/* The same merge with one work-item per (row, column) (merge.cl's pa_merge_elem): the row
 * kernel above walks a row's columns one after the other in one work-item, hundreds of
 * dependent loads a row on a grid of one work-item a row. */
__kernel void flash_serving_merge_cols_kernel(__global const float *part, long part_off,
                                              int n_splits, __global OSTORAGE *o, long o_off,
                                              long4 o_st, __global float *lse, long lse_off,
                                              int want_lse, long heads_q, long batch,
                                              __global const float *sinks, long sinks_off,
                                              int has_sinks, PA_SRV_PARAMS)
{
    const long rows = batch * heads_q * max_q;
    for (long e = get_global_id(0); e < rows * HEAD_DIM_V; e += get_global_size(0)) {
        const long t = e / HEAD_DIM_V, x = e % HEAD_DIM_V;
        const long i = t % max_q, h = t / max_q % heads_q, b = t / max_q / heads_q;
        const pa_seq s = pa_seq_of(b, PA_SRV_ARGS);
        if (i >= s.len_q) continue;
        const float sink = has_sinks ? sinks[sinks_off + h] : -INFINITY;
        float row_lse;
        const float val = pa_merge_elem(part, part_off + t * HEAD_DIM_V + x, rows * HEAD_DIM_V,
                                        part + part_off + n_splits * rows * HEAD_DIM_V, t, rows,
                                        n_splits, sink, &row_lse);
        OSTORE(o + o_off + pa_q_row(&s, h, i, o_st, varlen_q), x * o_st.s3, val);
        if (want_lse && x == 0)
            lse[lse_off + pa_lse_index(&s, h, i, heads_q, varlen_q, total_q)] = row_lse;
    }
}

/* Zeros a strided tensor [n0, n1, n2, n3] (the varlen backward's gradients before the
 * sequences write theirs: rows outside every sequence stay 0). */
__kernel void serving_zero_kernel(__global RAW *t, long off, long4 st, long n1, long n2, long n3,
                                  long n)
{
    for (long e = get_global_id(0); e < n; e += get_global_size(0)) {
        const long x = e % n3, r = e / n3 % n2, h = e / n3 / n2 % n1, a = e / n3 / n2 / n1;
        t[off + a * st.s0 + h * st.s1 + r * st.s2 + x * st.s3] = 0;
    }
}
