/* Backward pass kernels.
 * unfused (around CLBlast GEMMs): D_i = rowsum(dO * O), and the elementwise step that
 * turns recomputed scores S and dP = dO V^T into P = exp(S - LSE) and dS = P * (dP - D).
 * flash (no N x N memory): per-key dK/dV and per-query dQ kernels that rebuild P from Q, K
 * and the LSE; each output element is owned by one work-item, so no atomics and the
 * result is deterministic.  Needs HEAD_DIM and HEAD_DIM_V (-D) for the flash kernels. */

/* D_i = sum_c dO[i, c] * O[i, c] for every query row r = (b * heads_q + h) * seq_q + i;
 * dO shares O's strides. */
__kernel void bwd_delta_kernel(__global const STORAGE *o, long o_off, __global const STORAGE *dout,
                               long do_off, long4 st, int heads_q, int seq_q, int dv,
                               __global float *delta, long delta_off, long rows)
{
    for (long r = get_global_id(0); r < rows; r += get_global_size(0)) {
        long i = r % seq_q, t = r / seq_q;
        long h = t % heads_q, b = t / heads_q;
        long base = b * st.s0 + h * st.s1 + i * st.s2;
        float acc = 0.0f;
        for (int c = 0; c < dv; c++)
            acc += LOAD(o, o_off + base + c * st.s3) * LOAD(dout, do_off + base + c * st.s3);
        delta[delta_off + r] = acc;
    }
}

/* In place over n score elements of consecutive (batch, head) matrices: ws[p_off..] holds
 * S (scaled), ws[ds_off..] holds dP.  Writes P (0 where masked or on fully masked rows,
 * LSE = -inf) and dS = P * (dP - D).  Row r of the range uses lse[lse_off + r] and
 * ws[delta_off + r]. */
__kernel void bwd_softmax_grad_kernel(__global float *ws, long p_off, long ds_off, long n,
                                      int seq_q, int seq_kv, int causal, int causal_offset,
                                      __global const float *lse, long lse_off, long delta_off)
{
    for (long e = get_global_id(0); e < n; e += get_global_size(0)) {
        long row = e / seq_kv, col = e % seq_kv;
        long vis = pa_visible(row % seq_q, causal, causal_offset, seq_kv);
        float l = lse[lse_off + row];
        float pr = (col < vis && l != -INFINITY) ? exp(ws[p_off + e] - l) : 0.0f;
        ws[p_off + e] = pr;
        ws[ds_off + e] = pr * (ws[ds_off + e] - ws[delta_off + row]);
    }
}

#ifdef HEAD_DIM

/* First query that sees key j (queries see keys [0, visible(i))): visible(i) > j
 * <=> i + 1 + offset > j <=> i >= j - offset. */
inline long pa_first_query(long j, int causal, long offset)
{
    if (!causal) return 0;
    long i = j - offset;
    return i < 0 ? 0 : i;
}

/* One work-item per (key j, kv head, batch): loops over every query of every head of the
 * GQA group that sees j, rebuilding P_ij = exp(scale q_i.k_j - LSE_i) and
 * dS_ij = P_ij (dO_i.v_j - D_i); accumulates dV_j += P_ij dO_i and dK_j += scale dS_ij q_i
 * in registers. */
__kernel void flash_bwd_dkdv_kernel(__global const STORAGE *q, long q_off, long4 q_st,
                                    __global const STORAGE *k, long k_off, long4 k_st,
                                    __global const STORAGE *v, long v_off, long4 v_st,
                                    __global const STORAGE *dout, long do_off, long4 o_st,
                                    __global const float *lse, long lse_off,
                                    __global const float *delta, long delta_off,
                                    __global STORAGE *dk, long dk_off, __global STORAGE *dv,
                                    long dv_off, int heads_q, int seq_q, int seq_kv, int group,
                                    float scale, int causal, int causal_offset)
{
    const long j = get_global_id(0), hk = get_global_id(1), b = get_global_id(2);
    if (j >= seq_kv) return;
    float kj[HEAD_DIM], vj[HEAD_DIM_V], dkj[HEAD_DIM], dvj[HEAD_DIM_V];
    const long kb = k_off + b * k_st.s0 + hk * k_st.s1 + j * k_st.s2;
    const long vb = v_off + b * v_st.s0 + hk * v_st.s1 + j * v_st.s2;
    for (int c = 0; c < HEAD_DIM; c++) {
        kj[c] = LOAD(k, kb + c * k_st.s3);
        dkj[c] = 0.0f;
    }
    for (int c = 0; c < HEAD_DIM_V; c++) {
        vj[c] = LOAD(v, vb + c * v_st.s3);
        dvj[c] = 0.0f;
    }
    const long i0 = pa_first_query(j, causal, causal_offset);
    for (int g = 0; g < group; g++) {
        const long h = hk * group + g, row0 = (b * heads_q + h) * seq_q;
        for (long i = i0; i < seq_q; i++) {
            const float l = lse[lse_off + row0 + i];
            if (l == -INFINITY) continue; /* fully masked row: adds nothing */
            const long qb = q_off + b * q_st.s0 + h * q_st.s1 + i * q_st.s2;
            const long ob = do_off + b * o_st.s0 + h * o_st.s1 + i * o_st.s2;
            float s = 0.0f, dp = 0.0f;
            for (int c = 0; c < HEAD_DIM; c++) s += LOAD(q, qb + c * q_st.s3) * kj[c];
            for (int c = 0; c < HEAD_DIM_V; c++) dp += LOAD(dout, ob + c * o_st.s3) * vj[c];
            const float pr = exp(scale * s - l);
            const float ds = pr * (dp - delta[delta_off + row0 + i]) * scale;
            for (int c = 0; c < HEAD_DIM_V; c++) dvj[c] += pr * LOAD(dout, ob + c * o_st.s3);
            for (int c = 0; c < HEAD_DIM; c++) dkj[c] += ds * LOAD(q, qb + c * q_st.s3);
        }
    }
    const long dkb = dk_off + b * k_st.s0 + hk * k_st.s1 + j * k_st.s2;
    const long dvb = dv_off + b * v_st.s0 + hk * v_st.s1 + j * v_st.s2;
    for (int c = 0; c < HEAD_DIM; c++) STORE(dk, dkb + c * k_st.s3, dkj[c]);
    for (int c = 0; c < HEAD_DIM_V; c++) STORE(dv, dvb + c * v_st.s3, dvj[c]);
}

/* One work-item per (query i, head, batch): dQ_i = scale sum_j dS_ij k_j over the keys it
 * sees, P rebuilt from the LSE.  Fully masked rows write 0. */
__kernel void flash_bwd_dq_kernel(__global const STORAGE *q, long q_off, long4 q_st,
                                  __global const STORAGE *k, long k_off, long4 k_st,
                                  __global const STORAGE *v, long v_off, long4 v_st,
                                  __global const STORAGE *dout, long do_off, long4 o_st,
                                  __global const float *lse, long lse_off,
                                  __global const float *delta, long delta_off,
                                  __global STORAGE *dq, long dq_off, int heads_q, int seq_q,
                                  int seq_kv, int group, float scale, int causal,
                                  int causal_offset)
{
    const long i = get_global_id(0), h = get_global_id(1), b = get_global_id(2);
    if (i >= seq_q) return;
    float qi[HEAD_DIM], doi[HEAD_DIM_V], dqi[HEAD_DIM];
    const long hk = h / group, row = (b * heads_q + h) * seq_q + i;
    const long qb = q_off + b * q_st.s0 + h * q_st.s1 + i * q_st.s2;
    const long ob = do_off + b * o_st.s0 + h * o_st.s1 + i * o_st.s2;
    for (int c = 0; c < HEAD_DIM; c++) {
        qi[c] = LOAD(q, qb + c * q_st.s3);
        dqi[c] = 0.0f;
    }
    for (int c = 0; c < HEAD_DIM_V; c++) doi[c] = LOAD(dout, ob + c * o_st.s3);
    const float l = lse[lse_off + row], di = delta[delta_off + row];
    const long vis = l == -INFINITY ? 0 : pa_visible(i, causal, causal_offset, seq_kv);
    for (long j = 0; j < vis; j++) {
        const long kb = k_off + b * k_st.s0 + hk * k_st.s1 + j * k_st.s2;
        const long vb = v_off + b * v_st.s0 + hk * v_st.s1 + j * v_st.s2;
        float s = 0.0f, dp = 0.0f;
        for (int c = 0; c < HEAD_DIM; c++) s += qi[c] * LOAD(k, kb + c * k_st.s3);
        for (int c = 0; c < HEAD_DIM_V; c++) dp += doi[c] * LOAD(v, vb + c * v_st.s3);
        const float ds = exp(scale * s - l) * (dp - di) * scale;
        for (int c = 0; c < HEAD_DIM; c++) dqi[c] += ds * LOAD(k, kb + c * k_st.s3);
    }
    const long dqb = dq_off + b * q_st.s0 + h * q_st.s1 + i * q_st.s2;
    for (int c = 0; c < HEAD_DIM; c++) STORE(dq, dqb + c * q_st.s3, dqi[c]);
}

#endif
