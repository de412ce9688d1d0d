/* Backward pass kernels.
 * unfused (around CLBlast GEMMs): D_i = rowsum(dO * O), and the elementwise step that
 * turns recomputed scores S and dP = dO V^T into P = exp(S - LSE) and dS = P * (dP - D).
 * flash (no N x N memory): per-key dK/dV and per-query dQ kernels that rebuild P from Q, K
 * and the LSE; each output element is owned by one work-item, so no atomics and the
 * result is deterministic.  Needs HEAD_DIM and HEAD_DIM_V (-D) for the flash kernels.
 * These flash kernels stream rows with no local memory (made for CPU devices); GPUs get
 * the tiled ones in flash_bwd.cl. */

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
                                      __global const float *lse, long lse_off, long delta_off
                                      PA_VAR_PARAMS)
{
    for (long e = get_global_id(0); e < n; e += get_global_size(0)) {
        long row = e / seq_kv, col = e % seq_kv;
        float l = lse[lse_off + row];
#ifdef PA_VAR
        /* The variants' final score.  dS goes to the GEMMs times the softcap's derivative;
         * d_bias sums dS itself, so a plan with both is refused (check). */
        const long mat = va_mat0 + row / seq_q, qi = row % seq_q;
        PA_VAR_INIT(va, mat / va_heads_q, mat % va_heads_q, 1.0f);
        long lo;
        const long vis = pa_var_range(&va, qi, causal, seq_kv, &lo);
        float pr = 0.0f, dcap = 1.0f;
        if (col >= lo && col < vis && l != -INFINITY) {
            int sn;
            float x = ws[p_off + e];
            if (fabs(x) > PA_SCORE_MAX) x = copysign(INFINITY, x);
            pr = exp(pa_var_score(&va, x, qi, col, &sn, &dcap) - l);
        }
        (void)causal_offset;
        const float ds = pr * (ws[ds_off + e] - ws[delta_off + row]);
        ws[p_off + e] = pr;
        ws[ds_off + e] = ds * dcap;
#else
        long vis = pa_visible(row % seq_q, causal, causal_offset, seq_kv);
        float pr = (col < vis && l != -INFINITY) ? exp(ws[p_off + e] - l) : 0.0f;
        ws[p_off + e] = pr;
        ws[ds_off + e] = pr * (ws[ds_off + e] - ws[delta_off + row]);
#endif
    }
}

#ifdef PA_SINKS
/* d_sinks[h] = -sum over (b, i) of exp(sink_h - LSE_bhi) D_bhi: one work-item per head, a
 * fixed order (deterministic). */
__kernel void bwd_sinks_kernel(__global const float *sinks, long sinks_off,
                               __global const float *lse, long lse_off,
                               __global const float *delta, long delta_off,
                               __global float *dsinks, long dsinks_off, int batch, int heads_q,
                               int seq_q)
{
    for (long h = get_global_id(0); h < heads_q; h += get_global_size(0)) {
        const float sink = sinks[sinks_off + h];
        float acc = 0.0f;
        for (long b = 0; b < batch; b++)
            for (long i = 0; i < seq_q; i++) {
                const long r = (b * heads_q + h) * seq_q + i;
                acc += exp(sink - lse[lse_off + r]) * delta[delta_off + r];
            }
        dsinks[dsinks_off + h] = -acc;
    }
}
#endif

#ifdef PA_BIAS_GRAD
/* d_bias (f32 contiguous [bshape]) from the dS of matrices [mat0, mat0 + count) (consecutive
 * (batch, head) matrices of seq_q x seq_kv at ds_off): each element sums the matrices that
 * map onto it (broadcast dimensions), written on the first pass and added on later ones. */
__kernel void bwd_bias_grad_kernel(__global const float *ws, long ds_off, long mat0, long count,
                                   __global float *dbias, long dbias_off, long4 bshape,
                                   int heads_q, long plane, int accumulate)
{
    const long n = bshape.s0 * bshape.s1 * plane;
    for (long e = get_global_id(0); e < n; e += get_global_size(0)) {
        const long bh = e / plane, ij = e % plane, bb = bh / bshape.s1, hh = bh % bshape.s1;
        float acc = accumulate ? dbias[dbias_off + e] : 0.0f;
        for (long m = mat0; m < mat0 + count; m++) {
            const long b = m / heads_q, h = m % heads_q;
            if ((bshape.s0 == 1 || b == bb) && (bshape.s1 == 1 || h == hh))
                acc += ws[ds_off + (m - mat0) * plane + ij];
        }
        dbias[dbias_off + e] = acc;
    }
}
#endif

#if defined(PA_BIAS_GRAD) && defined(HEAD_DIM)
/* The flash backward's d_bias (f32 contiguous [bshape]): one work-item per row (bb, hh, i)
 * of the bias shape rebuilds dS_ij = P_ij (dO_i . v_j - D_i) of every (batch, head) that
 * maps onto it and sums them in a fixed order (broadcast dimensions, no atomics); pairs
 * outside every range get 0.  The same O(N^2 d) work as the dQ pass, no N x N memory. */
__kernel void flash_bwd_dbias_kernel(__global const STORAGE *q, long q_off, long4 q_st,
                                     __global const STORAGE *k, long k_off, long4 k_st,
                                     __global const STORAGE *v, long v_off, long4 v_st,
                                     __global const STORAGE *dout, long do_off, long4 o_st,
                                     __global const float *lse, long lse_off,
                                     __global const float *delta, long delta_off,
                                     __global float *dbias, long dbias_off, long4 bshape,
                                     int batch, int heads_q, int seq_q, int seq_kv, int group,
                                     float scale, int causal PA_VAR_PARAMS)
{
    const long rows = bshape.s0 * bshape.s1 * seq_q;
    float qi[HEAD_DIM], doi[HEAD_DIM_V];
    for (long r = get_global_id(0); r < rows; r += get_global_size(0)) {
        const long i = r % seq_q, bh = r / seq_q, bb = bh / bshape.s1, hh = bh % bshape.s1;
        __global float *out = dbias + dbias_off + r * seq_kv;
        for (long j = 0; j < seq_kv; j++) out[j] = 0.0f;
        const long b0 = bshape.s0 == 1 ? 0 : bb, b1 = bshape.s0 == 1 ? batch : bb + 1;
        const long h0 = bshape.s1 == 1 ? 0 : hh, h1 = bshape.s1 == 1 ? heads_q : hh + 1;
        for (long b = b0; b < b1; b++)
            for (long h = h0; h < h1; h++) {
                const long row = (b * heads_q + h) * seq_q + i, hk = h / group;
                const float l = lse[lse_off + row], di = delta[delta_off + row];
                if (l == -INFINITY) continue;
                PA_VAR_INIT(va, b, h, 1.0f);
                long lo;
                const long hi = pa_var_range(&va, i, causal, seq_kv, &lo);
                const long qb = q_off + b * q_st.s0 + h * q_st.s1 + i * q_st.s2;
                const long ob = do_off + b * o_st.s0 + h * o_st.s1 + i * o_st.s2;
                for (int c = 0; c < HEAD_DIM; c++) qi[c] = LOAD(q, qb + c * q_st.s3);
                for (int c = 0; c < HEAD_DIM_V; c++) doi[c] = LOAD(dout, ob + c * o_st.s3);
                for (long j = lo; j < hi; j++) {
                    const long kb = k_off + b * k_st.s0 + hk * k_st.s1 + j * k_st.s2;
                    const long vb = v_off + b * v_st.s0 + hk * v_st.s1 + j * v_st.s2;
                    float sc = 0.0f, dp = 0.0f, dcap;
                    int sn;
                    for (int c = 0; c < HEAD_DIM; c++) sc = fma(qi[c], LOAD(k, kb + c * k_st.s3), sc);
                    for (int c = 0; c < HEAD_DIM_V; c++) dp = fma(doi[c], LOAD(v, vb + c * v_st.s3), dp);
                    const float pr = exp(pa_var_score(&va, scale * sc, i, j, &sn, &dcap) - l);
                    out[j] += pr * (dp - di);
                }
            }
    }
}
#endif

/* The row kernels below are the CPU flavour; the tiled (GPU) program includes this file
 * for bwd_delta_kernel only (-DPA_BWD_TILED). */
#if defined(HEAD_DIM) && !defined(PA_BWD_TILED)

/* First query that sees key j (queries see keys [0, visible(i))): visible(i) > j
 * <=> i + 1 + offset > j <=> i >= j - offset. */
inline long pa_first_query(long j, int causal, long offset)
{
    if (!causal) return 0;
    long i = j - offset;
    return i < 0 ? 0 : i;
}

#ifndef BR
#define BR 1
#endif

/* 8-wide dot product and axpy over private rows (CPU drivers map float8 to SIMD). */
inline float pa_dot(const float *a, const float *b, const int n)
{
    float8 acc = (float8)(0.0f);
    int c = 0;
    for (; c + 8 <= n; c += 8) acc = fma(vload8(0, a + c), vload8(0, b + c), acc);
    float4 t4 = acc.lo + acc.hi;
    float2 t2 = t4.lo + t4.hi;
    float s = t2.x + t2.y;
    for (; c < n; c++) s = fma(a[c], b[c], s);
    return s;
}

inline void pa_axpy(const float x, const float *a, float *y, const int n)
{
    const float8 x8 = (float8)(x);
    int c = 0;
    for (; c + 8 <= n; c += 8) vstore8(fma(x8, vload8(0, a + c), vload8(0, y + c)), 0, y + c);
    for (; c < n; c++) y[c] = fma(x, a[c], y[c]);
}

/* One work-item per BR consecutive keys of a (kv head, batch): loops over every query of
 * every head of the GQA group that sees one of them, rebuilding
 * P_ij = exp(scale q_i.k_j - LSE_i) and dS_ij = P_ij (dO_i.v_j - D_i); accumulates
 * dV_j += P_ij dO_i and dK_j += scale dS_ij q_i in registers.  Each query row loaded serves
 * all BR keys. */
__kernel void flash_bwd_dkdv_kernel(__global const STORAGE *q, long q_off, long4 q_st,
                                    __global const STORAGE *k, long k_off, long4 k_st,
                                    __global const STORAGE *v, long v_off, long4 v_st,
                                    __global const STORAGE *dout, long do_off, long4 o_st,
                                    __global const float *lse, long lse_off,
                                    __global const float *delta, long delta_off,
                                    __global STORAGE *dk, long dk_off, __global STORAGE *dv,
                                    long dv_off, int heads_q, int seq_q, int seq_kv, int group,
                                    float scale, int causal, int causal_offset PA_VAR_PARAMS)
{
    const long j0 = get_global_id(0) * BR, hk = get_global_id(1), b = get_global_id(2);
    if (j0 >= seq_kv) return;
    float kj[BR][HEAD_DIM], vj[BR][HEAD_DIM_V], dkj[BR][HEAD_DIM], dvj[BR][HEAD_DIM_V];
    float qi[HEAD_DIM], doi[HEAD_DIM_V];
    long first[BR];
    for (int r = 0; r < BR; r++) {
        /* keys past the end duplicate the last one and are never stored */
        const long j = j0 + r < seq_kv ? j0 + r : seq_kv - 1;
        const long kb = k_off + b * k_st.s0 + hk * k_st.s1 + j * k_st.s2;
        const long vb = v_off + b * v_st.s0 + hk * v_st.s1 + j * v_st.s2;
        for (int c = 0; c < HEAD_DIM; c++) {
            kj[r][c] = LOAD(k, kb + c * k_st.s3);
            dkj[r][c] = 0.0f;
        }
        for (int c = 0; c < HEAD_DIM_V; c++) {
            vj[r][c] = LOAD(v, vb + c * v_st.s3);
            dvj[r][c] = 0.0f;
        }
        first[r] = pa_first_query(j0 + r, causal, causal_offset);
    }
    long i0 = first[0]; /* the first key is seen first */
    long i_end = seq_q;
    for (int g = 0; g < group; g++) {
        const long h = hk * group + g, row0 = (b * heads_q + h) * seq_q;
#ifdef PA_VAR
        /* Only the queries whose causal/window range holds one of the keys. */
        PA_VAR_INIT(va, b, h, 1.0f);
        i_end = pa_var_queries(&va, j0, min(j0 + BR, (long)seq_kv) - 1, causal, seq_q, &i0);
#endif
        for (long i = i0; i < i_end; i++) {
            const float l = lse[lse_off + row0 + i];
            if (l == -INFINITY) continue; /* fully masked row: adds nothing */
            const long qb = q_off + b * q_st.s0 + h * q_st.s1 + i * q_st.s2;
            const long ob = do_off + b * o_st.s0 + h * o_st.s1 + i * o_st.s2;
            for (int c = 0; c < HEAD_DIM; c++) qi[c] = LOAD(q, qb + c * q_st.s3);
            for (int c = 0; c < HEAD_DIM_V; c++) doi[c] = LOAD(dout, ob + c * o_st.s3);
            const float di = delta[delta_off + row0 + i];
            float pr[BR], ds[BR];
#ifdef PA_VAR
            long lo_i;
            const long hi_i = pa_var_range(&va, i, causal, seq_kv, &lo_i);
#endif
            for (int r = 0; r < BR; r++) {
                const float sc = pa_dot(qi, kj[r], HEAD_DIM), dp = pa_dot(doi, vj[r], HEAD_DIM_V);
#ifdef PA_VAR
                float dcap = 1.0f;
                int sn;
                pr[r] = j0 + r >= lo_i && j0 + r < hi_i
                            ? exp(pa_var_score(&va, scale * sc, i, j0 + r, &sn, &dcap) - l)
                            : 0.0f;
                ds[r] = pr[r] * (dp - di) * dcap * scale;
#else
                pr[r] = i >= first[r] ? exp(scale * sc - l) : 0.0f;
                ds[r] = pr[r] * (dp - di) * scale;
#endif
            }
            for (int r = 0; r < BR; r++) {
                pa_axpy(pr[r], doi, dvj[r], HEAD_DIM_V);
                pa_axpy(ds[r], qi, dkj[r], HEAD_DIM);
            }
        }
    }
    for (int r = 0; r < BR; r++) {
        const long j = j0 + r;
        if (j >= seq_kv) break;
        const long dkb = dk_off + b * k_st.s0 + hk * k_st.s1 + j * k_st.s2;
        const long dvb = dv_off + b * v_st.s0 + hk * v_st.s1 + j * v_st.s2;
        for (int c = 0; c < HEAD_DIM; c++) STORE(dk, dkb + c * k_st.s3, dkj[r][c]);
        for (int c = 0; c < HEAD_DIM_V; c++) STORE(dv, dvb + c * v_st.s3, dvj[r][c]);
    }
}

/* One work-item per BR consecutive queries of a (head, batch):
 * dQ_i = scale sum_j dS_ij k_j over the keys each sees, P rebuilt from the LSE; each key
 * row loaded serves all BR queries.  Fully masked rows write 0. */
__kernel void flash_bwd_dq_kernel(__global const STORAGE *q, long q_off, long4 q_st,
                                  __global const STORAGE *k, long k_off, long4 k_st,
                                  __global const STORAGE *v, long v_off, long4 v_st,
                                  __global const STORAGE *dout, long do_off, long4 o_st,
                                  __global const float *lse, long lse_off,
                                  __global const float *delta, long delta_off,
                                  __global STORAGE *dq, long dq_off, int heads_q, int seq_q,
                                  int seq_kv, int group, float scale, int causal,
                                  int causal_offset PA_VAR_PARAMS)
{
    const long i0 = get_global_id(0) * BR, h = get_global_id(1), b = get_global_id(2);
    if (i0 >= seq_q) return;
#ifdef PA_VAR
    PA_VAR_INIT(va, b, h, 1.0f);
    long lo[BR], j_begin = seq_kv;
#endif
    float qi[BR][HEAD_DIM], doi[BR][HEAD_DIM_V], dqi[BR][HEAD_DIM];
    float kj[HEAD_DIM], vj[HEAD_DIM_V], l[BR], di[BR];
    long vis[BR], vis_max = 0;
    const long hk = h / group;
#ifndef PA_VAR
    const long j_begin = 0;
#endif
    for (int r = 0; r < BR; r++) {
        const long i = i0 + r < seq_q ? i0 + r : seq_q - 1;
        const long row = (b * heads_q + h) * seq_q + i;
        const long qb = q_off + b * q_st.s0 + h * q_st.s1 + i * q_st.s2;
        const long ob = do_off + b * o_st.s0 + h * o_st.s1 + i * o_st.s2;
        for (int c = 0; c < HEAD_DIM; c++) {
            qi[r][c] = LOAD(q, qb + c * q_st.s3);
            dqi[r][c] = 0.0f;
        }
        for (int c = 0; c < HEAD_DIM_V; c++) doi[r][c] = LOAD(dout, ob + c * o_st.s3);
        l[r] = lse[lse_off + row];
        di[r] = delta[delta_off + row];
#ifdef PA_VAR
        lo[r] = seq_kv;
        vis[r] = l[r] == -INFINITY || i0 + r >= seq_q ? 0 : pa_var_range(&va, i, causal, seq_kv, &lo[r]);
        if (vis[r] > lo[r]) j_begin = min(j_begin, lo[r]);
#else
        vis[r] = l[r] == -INFINITY ? 0 : pa_visible(i, causal, causal_offset, seq_kv);
#endif
        vis_max = vis[r] > vis_max ? vis[r] : vis_max;
    }
    for (long j = j_begin; j < vis_max; j++) {
        const long kb = k_off + b * k_st.s0 + hk * k_st.s1 + j * k_st.s2;
        const long vb = v_off + b * v_st.s0 + hk * v_st.s1 + j * v_st.s2;
        for (int c = 0; c < HEAD_DIM; c++) kj[c] = LOAD(k, kb + c * k_st.s3);
        for (int c = 0; c < HEAD_DIM_V; c++) vj[c] = LOAD(v, vb + c * v_st.s3);
        for (int r = 0; r < BR; r++) {
            const float sc = pa_dot(qi[r], kj, HEAD_DIM), dp = pa_dot(doi[r], vj, HEAD_DIM_V);
#ifdef PA_VAR
            float ds = 0.0f, dcap = 1.0f;
            int sn;
            if (j >= lo[r] && j < vis[r])
                ds = exp(pa_var_score(&va, scale * sc, i0 + r, j, &sn, &dcap) - l[r]) * (dp - di[r]) *
                     dcap * scale;
#else
            const float ds = j < vis[r] ? exp(scale * sc - l[r]) * (dp - di[r]) * scale : 0.0f;
#endif
            pa_axpy(ds, kj, dqi[r], HEAD_DIM);
        }
    }
    for (int r = 0; r < BR; r++) {
        const long i = i0 + r;
        if (i >= seq_q) break;
        const long dqb = dq_off + b * q_st.s0 + h * q_st.s1 + i * q_st.s2;
        for (int c = 0; c < HEAD_DIM; c++) STORE(dq, dqb + c * q_st.s3, dqi[r][c]);
    }
}

#endif
