/* flash for CPUs (PoCL and other CPU drivers): no local memory, no barriers.  Each
 * work-item owns ROWS query rows of one (batch, head) and streams the visible keys in
 * blocks of KB with the online softmax; K and V rows loaded once serve all ROWS rows, and
 * the head-dim loops use 8-wide vectors, which CPU compilers map onto SIMD registers.
 * Options: HEAD_DIM, HEAD_DIM_V, ROWS, KB, PA_DTYPE, PA_ODTYPE. */

#if PA_DTYPE == 0
#define LOAD8(p, i) vload8(0, (p) + (i))
#elif PA_DTYPE == 1
#define LOAD8(p, i) vload_half8(0, (p) + (i))
#elif PA_DTYPE == 2
#define LOAD8(p, i) as_float8(convert_uint8(vload8(0, (p) + (i))) << (uint8)(16))
#else
#define LOAD8(p, i) pa_e4m3x8_to_f32(vload8(0, (p) + (i)))
#endif

/* 8-wide chunks when the head-dim stride is 1 and the dims divide; scalar otherwise. */
#define VEC_D (HEAD_DIM % 8 == 0)
#define VEC_DV (HEAD_DIM_V % 8 == 0)

__kernel void flash_fwd_rows_kernel(
    __global const STORAGE *q, long q_off, long4 q_st, __global const STORAGE *k, long k_off,
    long4 k_st, __global const STORAGE *v, long v_off, long4 v_st, __global OSTORAGE *o,
    long o_off, long4 o_st, __global float *lse, long lse_off, int want_lse, int seq_q,
    int seq_kv, int group, float scale_log2, float o_scale, int causal, int causal_offset,
    int n_tiles PA_VAR_PARAMS)
{
    (void)n_tiles;
    const long h = get_global_id(1), b = get_global_id(2), hk = h / group;
    const long heads_q = get_global_size(1);
    const long row0 = (long)get_global_id(0) * ROWS;
    if (row0 >= seq_q) return;
    __global const STORAGE *qb = q + q_off + b * q_st.s0 + h * q_st.s1;
    __global const STORAGE *kb = k + k_off + b * k_st.s0 + hk * k_st.s1;
    __global const STORAGE *vb = v + v_off + b * v_st.s0 + hk * v_st.s1;
    __global OSTORAGE *ob = o + o_off + b * o_st.s0 + h * o_st.s1;
    __global float *lseb = lse + lse_off + (b * heads_q + h) * seq_q;
    const int vec_k = VEC_D && k_st.s3 == 1, vec_v = VEC_DV && v_st.s3 == 1;

    float qv[ROWS][HEAD_DIM], ov[ROWS][HEAD_DIM_V], m[ROWS], l[ROWS];
    long vis[ROWS], kv_end = 0, kv_begin = 0;
#ifdef PA_VAR
    /* Keys [lo, vis) of each row (causal + window); the walk skips keys no row sees. */
    PA_VAR_INIT(va, b, h, PA_LOG2E);
    long lo[ROWS];
    int seen[ROWS];
    kv_begin = seq_kv;
#endif
    for (int r = 0; r < ROWS; r++) {
        long row = row0 + r;
#ifdef PA_VAR
        lo[r] = seq_kv;
        vis[r] = row < seq_q ? pa_var_range(&va, row, causal, seq_kv, &lo[r]) : 0;
        if (vis[r] > lo[r]) kv_begin = min(kv_begin, lo[r]);
        seen[r] = 0;
#else
        vis[r] = row < seq_q ? pa_visible(row, causal, causal_offset, seq_kv) : 0;
#endif
        kv_end = max(kv_end, vis[r]);
        for (int d = 0; d < HEAD_DIM; d++)
            qv[r][d] = row < seq_q ? LOAD(qb, row * q_st.s2 + d * q_st.s3) * scale_log2 : 0.0f;
        for (int d = 0; d < HEAD_DIM_V; d++) ov[r][d] = 0.0f;
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }
    for (long key0 = kv_begin; key0 < kv_end; key0 += KB) {
        float s[ROWS][KB];
        for (int j = 0; j < KB; j++) {
            long key = key0 + j;
            float acc[ROWS];
            for (int r = 0; r < ROWS; r++) acc[r] = 0.0f;
            if (key < kv_end) {
                __global const STORAGE *kr = kb + key * k_st.s2;
                if (vec_k) {
                    float8 a8[ROWS];
                    for (int r = 0; r < ROWS; r++) a8[r] = (float8)(0.0f);
                    for (int d = 0; d < HEAD_DIM; d += 8) {
                        float8 kk = LOAD8(kr, d);
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
#ifdef PA_VAR
            for (int r = 0; r < ROWS; r++) {
                float dcap;
                int sn = 0;
                s[r][j] = key >= lo[r] && key < vis[r]
                              ? pa_var_score(&va, acc[r], row0 + r, key, &sn, &dcap)
                              : -INFINITY;
                seen[r] |= sn;
            }
#else
            for (int r = 0; r < ROWS; r++) s[r][j] = key < vis[r] ? acc[r] : -INFINITY;
#endif
        }
        for (int r = 0; r < ROWS; r++) {
            float bm = -INFINITY;
            for (int j = 0; j < KB; j++) bm = fmax(bm, s[r][j]);
            float m_new = fmax(m[r], bm);
            float m_use = m_new == -INFINITY ? 0.0f : m_new;
            float alpha = exp2(m[r] - m_use);
            m[r] = m_new;
            l[r] *= alpha;
            for (int d = 0; d < HEAD_DIM_V; d++) ov[r][d] *= alpha;
            for (int j = 0; j < KB; j++) {
                s[r][j] = exp2(s[r][j] - m_use);
                l[r] += s[r][j];
            }
        }
        for (int j = 0; j < KB; j++) {
            long key = key0 + j;
            if (key >= kv_end) break;
            __global const STORAGE *vr = vb + key * v_st.s2;
            if (vec_v) {
                for (int d = 0; d < HEAD_DIM_V; d += 8) {
                    float8 vv = LOAD8(vr, d);
                    for (int r = 0; r < ROWS; r++)
                        vstore8(fma((float8)(s[r][j]), vv, vload8(0, &ov[r][d])), 0, &ov[r][d]);
                }
            } else {
                for (int d = 0; d < HEAD_DIM_V; d++) {
                    float vv = LOAD(vr, d * v_st.s3);
                    for (int r = 0; r < ROWS; r++) ov[r][d] = fma(s[r][j], vv, ov[r][d]);
                }
            }
        }
    }
    for (int r = 0; r < ROWS; r++) {
        long row = row0 + r;
        if (row >= seq_q) break;
#ifdef PA_VAR
        const float fold = pa_var_sink_fold2(&va, &m[r], &l[r]);
        vis[r] = seen[r];
        float inv = pa_row_inv(l[r], vis[r]) * fold * o_scale;
#else
        float inv = pa_row_inv(l[r], vis[r]) * o_scale;
#endif
        for (int d = 0; d < HEAD_DIM_V; d++) OSTORE(ob, row * o_st.s2 + d * o_st.s3, ov[r][d] * inv);
        if (want_lse) lseb[row] = pa_row_lse(m[r] * PA_LN2 + log(l[r]), l[r], vis[r]);
    }
}
