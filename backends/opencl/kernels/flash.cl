/* flash: tiled online softmax.  One work-group owns BM query rows of one (batch, head);
 * it walks the visible keys in BN-key blocks: S = Q K^T for the block (registers), a
 * running row max and sum rescale the output accumulators, P V adds the block.  No N x N
 * memory: the only extra output is the log-sum-exp. */

__kernel __attribute__((reqd_work_group_size(NT, 1, 1))) void flash_fwd_tiled_kernel(
    __global const STORAGE *q, long q_off, long4 q_st, __global const STORAGE *k, long k_off,
    long4 k_st, __global const STORAGE *v, long v_off, long4 v_st, __global STORAGE *o,
    long o_off, long4 o_st, __global float *lse, long lse_off, int want_lse, int seq_q,
    int seq_kv, int group, float scale_log2, int causal, int causal_offset, int n_tiles)
{
    __local float stage[STAGE_LOCAL];
    __local float ps[BM * KS_LD];
    __local float red[BM * CG];

    const int lid = get_local_id(0);
    const int rg = lid / CG, cg = lid % CG;
    /* Heaviest causal tiles first: they finish last otherwise. */
    const long tile = n_tiles - 1 - (long)get_group_id(0);
    const long h = get_global_id(1), b = get_global_id(2), hk = h / group;
    const long heads_q = get_global_size(1);
    const long row0 = tile * BM;

    __global const STORAGE *qb = q + q_off + b * q_st.s0 + h * q_st.s1;
    __global const STORAGE *kb = k + k_off + b * k_st.s0 + hk * k_st.s1;
    __global const STORAGE *vb = v + v_off + b * v_st.s0 + hk * v_st.s1;
    __global STORAGE *ob = o + o_off + b * o_st.s0 + h * o_st.s1;
    __global float *lseb = lse + lse_off + (b * heads_q + h) * seq_q;

    long last_row = min(row0 + BM, (long)seq_q) - 1;
    long kv_end = pa_visible(last_row, causal, causal_offset, seq_kv);
    long vis[TM];
    float m[TM], l[TM], oacc[TM][TDV];
    for (int i = 0; i < TM; i++) {
        long row = row0 + rg + i * RG;
        vis[i] = row < seq_q ? pa_visible(row, causal, causal_offset, seq_kv) : 0;
        m[i] = -INFINITY;
        l[i] = 0.0f;
        for (int jv = 0; jv < TDV; jv++) oacc[i][jv] = 0.0f;
    }

    for (long k0 = 0; k0 < kv_end; k0 += BN) {
        float s[TM][TN];
        pa_qk_tile(s, qb, q_st, row0, seq_q, kb, k_st, k0, seq_kv, stage, lid, rg, cg);
        float bmax[TM];
        for (int i = 0; i < TM; i++) {
            bmax[i] = -INFINITY;
            for (int j = 0; j < TN; j++) {
                long key = k0 + cg + j * CG;
                float x = key < vis[i] ? s[i][j] * scale_log2 : -INFINITY;
                s[i][j] = x;
                bmax[i] = fmax(bmax[i], x);
            }
        }
        pa_row_reduce(bmax, red, rg, cg, 1);
        for (int i = 0; i < TM; i++) {
            float m_new = fmax(m[i], bmax[i]);
            /* A row that has seen no visible key yet keeps p = 0 and alpha = 0. */
            float m_use = m_new == -INFINITY ? 0.0f : m_new;
            float alpha = exp2(m[i] - m_use);
            m[i] = m_new;
            l[i] *= alpha;
            for (int jv = 0; jv < TDV; jv++) oacc[i][jv] *= alpha;
            for (int j = 0; j < TN; j++) {
                float p = exp2(s[i][j] - m_use);
                l[i] += p;
                ps[(rg + i * RG) * KS_LD + cg + j * CG] = p;
            }
        }
        /* pa_pv_local's first barrier publishes ps. */
        pa_pv_local(oacc, ps, KS_LD, 0, vb, v_st, k0, BN, seq_kv, stage, lid, rg, cg);
    }
    pa_row_reduce(l, red, rg, cg, 0);
    pa_store_rows(oacc, m, l, ob, o_st, row0, seq_q, lseb, want_lse, rg, cg);
}
