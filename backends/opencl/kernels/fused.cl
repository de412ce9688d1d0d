/* fused: one launch computes exact attention for BM query rows of one (batch, head):
 * pass 1 writes the scaled, masked scores of every visible key (local memory when they
 * fit, FUSED_SCORES_LOCAL=1, else this work-group's slice of the workspace), pass 2 turns
 * them into exp(s - max) with the row sums (and writes the probabilities when asked),
 * pass 3 multiplies by V. */

#if FUSED_SCORES_LOCAL
#define SC_SPACE __local
#define PA_PV pa_pv_local
#else
#define SC_SPACE __global
#define PA_PV pa_pv_global
#endif

__kernel __attribute__((reqd_work_group_size(NT, 1, 1))) void fused_fwd_tiled_kernel(
    __global const STORAGE *q, long q_off, long4 q_st, __global const STORAGE *k, long k_off,
    long4 k_st, __global const STORAGE *v, long v_off, long4 v_st, __global OSTORAGE *o,
    long o_off, long4 o_st, __global float *lse, long lse_off, int want_lse,
    __global float *probs, long probs_off, int want_probs, __local float *sc_local,
    __global float *sc_global, long sc_off, int seq_q, int seq_kv, int group,
    float scale_log2, int causal, int causal_offset, int n_tiles PA_VAR_PARAMS)
{
    __local float stage[STAGE_LOCAL];
    __local float red[BM * CG];

    const int lid = get_local_id(0);
    const int rg = lid / CG, cg = lid % CG;
    const long tile = n_tiles - 1 - (long)get_group_id(0);
    const long h = get_global_id(1), b = get_global_id(2), hk = h / group;
    const long heads_q = get_global_size(1);
    const long row0 = tile * BM;
    /* Score rows span the visible keys rounded up to whole blocks. */
    const long sc_ld = ((seq_kv + BN - 1) / BN) * BN;
#if FUSED_SCORES_LOCAL
    SC_SPACE float *sc = sc_local;
    (void)sc_global;
    (void)sc_off;
#else
    SC_SPACE float *sc = sc_global + sc_off +
                         ((b * heads_q + h) * (long)n_tiles + tile) * (long)BM * sc_ld;
    (void)sc_local;
#endif

    __global const STORAGE *qb = q + q_off + b * q_st.s0 + h * q_st.s1;
    __global const STORAGE *kb = k + k_off + b * k_st.s0 + hk * k_st.s1;
    __global const STORAGE *vb = v + v_off + b * v_st.s0 + hk * v_st.s1;
    __global OSTORAGE *ob = o + o_off + b * o_st.s0 + h * o_st.s1;
    __global float *lseb = lse + lse_off + (b * heads_q + h) * seq_q;
    __global float *pb = probs + probs_off + (b * heads_q + h) * seq_q * seq_kv;

    long last_row = min(row0 + BM, (long)seq_q) - 1;
    long vis[TM];
    float m[TM], l[TM], oacc[TM][TDV];
#ifdef PA_VAR
    /* Keys [lo, vis) per row; the tile's scores cover blocks [k_begin, kv_blocks_end). */
    PA_VAR_INIT(va, b, h, PA_LOG2E);
    long lo[TM], k_begin;
    float seen[TM];
    long kv_end = pa_var_range(&va, last_row, causal, seq_kv, &k_begin);
    pa_var_range(&va, row0, causal, seq_kv, &k_begin);
    k_begin = min(k_begin, kv_end) / BN * BN;
#else
    long kv_end = pa_visible(last_row, causal, causal_offset, seq_kv), k_begin = 0;
#endif
    long kv_blocks_end = ((kv_end + BN - 1) / BN) * BN;
    for (int i = 0; i < TM; i++) {
        long row = row0 + rg + i * RG;
#ifdef PA_VAR
        lo[i] = seq_kv;
        vis[i] = row < seq_q ? pa_var_range(&va, row, causal, seq_kv, &lo[i]) : 0;
        seen[i] = 0.0f;
#else
        vis[i] = row < seq_q ? pa_visible(row, causal, causal_offset, seq_kv) : 0;
#endif
        m[i] = -INFINITY;
        l[i] = 0.0f;
        for (int jv = 0; jv < TDV; jv++) oacc[i][jv] = 0.0f;
    }

    /* Pass 1: scores and the exact row max. */
    for (long k0 = k_begin; k0 < kv_end; k0 += BN) {
        float s[TM][TN];
        pa_qk_tile(s, qb, q_st, row0, seq_q, kb, k_st, k0, seq_kv, stage, lid, rg, cg);
        for (int i = 0; i < TM; i++)
            for (int j = 0; j < TN; j++) {
                long key = k0 + cg + j * CG;
#ifdef PA_VAR
                float x = -INFINITY, dcap;
                int sn = 0;
                if (key >= lo[i] && key < vis[i])
                    x = pa_var_score(&va, s[i][j] * scale_log2, row0 + rg + i * RG, key, &sn, &dcap);
                if (sn) seen[i] = 1.0f;
#else
                float x = key < vis[i] ? s[i][j] * scale_log2 : -INFINITY;
#endif
                sc[(rg + i * RG) * sc_ld + key] = x;
                m[i] = fmax(m[i], x);
            }
    }
    pa_row_reduce(m, red, rg, cg, 1);
#ifdef PA_VAR
    pa_row_reduce(seen, red, rg, cg, 1);
    for (int i = 0; i < TM; i++) {
        m[i] = fmax(m[i], va.sink); /* the sink joins the row's max and sum */
        vis[i] = seen[i] > 0.0f;
    }
#endif

    /* Pass 2: exponentials (each work-item revisits the entries it wrote) and sums. */
    for (int i = 0; i < TM; i++) {
        float m_use = m[i] == -INFINITY ? 0.0f : m[i];
        for (long key = k_begin + cg; key < kv_blocks_end; key += CG) {
            long at = (rg + i * RG) * sc_ld + key;
            float p = exp2(sc[at] - m_use);
            sc[at] = p;
            l[i] += p;
        }
    }
    pa_row_reduce(l, red, rg, cg, 0);
#ifdef PA_VAR
    for (int i = 0; i < TM; i++) l[i] += exp2(va.sink - (m[i] == -INFINITY ? 0.0f : m[i]));
#endif
    if (want_probs) {
        for (int i = 0; i < TM; i++) {
            long row = row0 + rg + i * RG;
            if (row >= seq_q) continue;
            float inv = pa_row_inv(l[i], vis[i]);
            for (long key = cg; key < seq_kv; key += CG)
                pb[row * seq_kv + key] =
                    key >= k_begin && key < kv_blocks_end ? sc[(rg + i * RG) * sc_ld + key] * inv
                                                          : 0.0f;
        }
    }
    barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE);

    /* Pass 3: O = P V over the visible blocks. */
    PA_PV(oacc, sc, sc_ld, k_begin, vb, v_st, k_begin, kv_blocks_end - k_begin, seq_kv, stage,
          lid, rg, cg);
    pa_store_rows(oacc, m, l, vis, ob, o_st, row0, seq_q, lseb, want_lse, rg, cg, 1.0f);
}
