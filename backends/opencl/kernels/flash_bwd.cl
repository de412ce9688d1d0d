/* Tiled flash backward for GPU devices (FlashAttention-2 style, no atomics, deterministic).
 *
 * Both kernels use one tile shape: a work-group of BT_RG x BT_CG work-items owns BT_R output
 * rows and streams the other side in blocks of BT_C rows.  Work-item (rg, cg) owns output
 * rows rg + i*BT_RG (i < BT_TR), score columns cg + j*BT_CG (j < BT_TC) and output columns
 * cg + jv*BT_CG; neighbouring work-items then read neighbouring local addresses.
 *
 *  flash_bwd_dkdv_tiled_kernel: R keys of one (kv head, batch).  For every head of the GQA
 *    group and every block of C queries that sees one of the keys:
 *      S^T = K Q^T and dP^T = V dO^T (registers, operands staged in local memory in BT_DK
 *      chunks), P^T = exp(scale S^T - LSE) (0 where masked, past the end, or on fully
 *      masked rows), dS^T = scale P^T (dP^T - D);
 *      P^T -> local, dV += P^T dO;  dS^T -> local, dK += dS^T Q  (dO, Q staged BT_VN rows
 *      at a time).  dK, dV stay in registers until the end.
 *  flash_bwd_dq_tiled_kernel: R queries of one (head, batch), blocks of C visible keys:
 *      S = Q K^T, dP = dO V^T, dS -> local, dQ += dS K.
 * Every gradient element has a single owner: no atomics (OpenCL 1.2 has no float atomics)
 * and a fixed summation order, so results are bitwise reproducible.
 *
 * -D: HEAD_DIM, HEAD_DIM_V, BT_R, BT_C, BT_RG, BT_CG, BT_DK, BT_VN (BT_C % BT_VN == 0). */

#define BT_NT (BT_RG * BT_CG)
#define BT_TR (BT_R / BT_RG)
#define BT_TC (BT_C / BT_CG)
#define BT_TD ((HEAD_DIM + BT_CG - 1) / BT_CG)
#define BT_TDV ((HEAD_DIM_V + BT_CG - 1) / BT_CG)
#define BT_A_LD (BT_R + 1)
#define BT_B_LD (BT_C + 1)
#define BT_P_LD (BT_C + 1)
#define BT_NT_LOCAL (BT_DK * BT_A_LD + BT_DK * BT_B_LD)
#define BT_DMAX (HEAD_DIM > HEAD_DIM_V ? HEAD_DIM : HEAD_DIM_V)
#define BT_ACC_LOCAL (BT_VN * BT_DMAX)
#define BT_STAGE (BT_NT_LOCAL > BT_ACC_LOCAL ? BT_NT_LOCAL : BT_ACC_LOCAL)

/* First query that sees key j: visible(i) > j <=> i >= j - offset (causal). */
inline long pa_bt_first_query(long j, int causal, long offset)
{
    if (!causal) return 0;
    long i = j - offset;
    return i < 0 ? 0 : i;
}

/* s[i][j] = sum_d A[a0 + rg + i*RG][d] * B[b0 + cg + j*CG][d] over d < dim; rows past a_lim
 * or b_lim read as zero.  Both operands go through local memory transposed, BT_DK columns
 * at a time.  Ends with a barrier (the stage may be reused at once). */
inline void pa_bt_nt(float s[BT_TR][BT_TC], __global const STORAGE *ab, long4 a_st, long a0,
                     long a_lim, __global const STORAGE *bb, long4 b_st, long b0, long b_lim,
                     const int dim, __local float *stage, int lid, int rg, int cg)
{
    __local float *as = stage;
    __local float *bs = stage + BT_DK * BT_A_LD;
    for (int i = 0; i < BT_TR; i++)
        for (int j = 0; j < BT_TC; j++) s[i][j] = 0.0f;
    for (int d0 = 0; d0 < dim; d0 += BT_DK) {
        for (int idx = lid; idx < BT_R * BT_DK; idx += BT_NT) {
            int r = idx / BT_DK, dd = idx % BT_DK, d = d0 + dd;
            long row = a0 + r;
            as[dd * BT_A_LD + r] = row < a_lim && d < dim ? LOAD(ab, row * a_st.s2 + d * a_st.s3) : 0.0f;
        }
        for (int idx = lid; idx < BT_C * BT_DK; idx += BT_NT) {
            int r = idx / BT_DK, dd = idx % BT_DK, d = d0 + dd;
            long row = b0 + r;
            bs[dd * BT_B_LD + r] = row < b_lim && d < dim ? LOAD(bb, row * b_st.s2 + d * b_st.s3) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
#ifndef PA_POCL /* unrolling only slows PoCL's compile (the test device), not its kernels */
#pragma unroll 4
#endif
        for (int dd = 0; dd < BT_DK; dd++) {
            float a[BT_TR], bk[BT_TC];
            for (int i = 0; i < BT_TR; i++) a[i] = as[dd * BT_A_LD + rg + i * BT_RG];
            for (int j = 0; j < BT_TC; j++) bk[j] = bs[dd * BT_B_LD + cg + j * BT_CG];
            for (int i = 0; i < BT_TR; i++)
                for (int j = 0; j < BT_TC; j++) s[i][j] = fma(a[i], bk[j], s[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

/* o[i][jv] += sum_n P[(rg + i*RG) * BT_P_LD + n] * B[b0 + n][cg + jv*CG] over n < BT_C; B
 * staged BT_VN rows at a time, rows past b_lim read as zero (never garbage times 0).  The
 * first barrier also publishes P; ends with a barrier (P may be overwritten at once). */
#define PA_BT_DEFINE_ACC(NAME, DIM, TDX)                                                     \
    inline void NAME(float o[BT_TR][TDX], __local const float *P, __global const STORAGE *bb,  \
                     long4 b_st, long b0, long b_lim, __local float *stage, int lid, int rg,  \
                     int cg)                                                                  \
    {                                                                                        \
        for (int n0 = 0; n0 < BT_C; n0 += BT_VN) {                                           \
            for (int idx = lid; idx < BT_VN * DIM; idx += BT_NT) {                           \
                int nn = idx / DIM, c = idx % DIM;                                           \
                long row = b0 + n0 + nn;                                                     \
                stage[idx] = row < b_lim ? LOAD(bb, row * b_st.s2 + c * b_st.s3) : 0.0f;     \
            }                                                                                \
            barrier(CLK_LOCAL_MEM_FENCE);                                                    \
            for (int nn = 0; nn < BT_VN; nn++) {                                             \
                float p[BT_TR];                                                              \
                for (int i = 0; i < BT_TR; i++) p[i] = P[(rg + i * BT_RG) * BT_P_LD + n0 + nn]; \
                for (int jv = 0; jv < TDX; jv++) {                                           \
                    int col = cg + jv * BT_CG;                                               \
                    if (DIM % BT_CG == 0 || col < DIM) {                                     \
                        float bv = stage[nn * DIM + col];                                    \
                        for (int i = 0; i < BT_TR; i++) o[i][jv] = fma(p[i], bv, o[i][jv]);  \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
            barrier(CLK_LOCAL_MEM_FENCE);                                                    \
        }                                                                                    \
    }

PA_BT_DEFINE_ACC(pa_bt_acc_d, HEAD_DIM, BT_TD)
PA_BT_DEFINE_ACC(pa_bt_acc_dv, HEAD_DIM_V, BT_TDV)

#define PA_BT_STORE(NAME, DIM, TDX)                                                          \
    inline void NAME(float o[BT_TR][TDX], __global STORAGE *ob, long4 o_st, long r0,         \
                     long r_lim, int rg, int cg)                                             \
    {                                                                                        \
        for (int i = 0; i < BT_TR; i++) {                                                    \
            long row = r0 + rg + i * BT_RG;                                                  \
            if (row >= r_lim) continue;                                                      \
            for (int jv = 0; jv < TDX; jv++) {                                               \
                int col = cg + jv * BT_CG;                                                   \
                if (col < DIM) STORE(ob, row * o_st.s2 + col * o_st.s3, o[i][jv]);           \
            }                                                                                \
        }                                                                                    \
    }

PA_BT_STORE(pa_bt_store_d, HEAD_DIM, BT_TD)
PA_BT_STORE(pa_bt_store_dv, HEAD_DIM_V, BT_TDV)

__kernel __attribute__((reqd_work_group_size(BT_NT, 1, 1))) void flash_bwd_dkdv_tiled_kernel(
    __global const STORAGE *q, long q_off, long4 q_st, __global const STORAGE *k, long k_off,
    long4 k_st, __global const STORAGE *v, long v_off, long4 v_st,
    __global const STORAGE *dout, long do_off, long4 o_st, __global const float *lse,
    long lse_off, __global const float *delta, long delta_off, __global STORAGE *dk,
    long dk_off, __global STORAGE *dv, long dv_off, int heads_q, int seq_q, int seq_kv,
    int group, float scale, int causal, int causal_offset PA_VAR_PARAMS)
{
    __local float stage[BT_STAGE];
    __local float pt[BT_R * BT_P_LD];
    const int lid = get_local_id(0), rg = lid / BT_CG, cg = lid % BT_CG;
    const long k0 = (long)get_group_id(0) * BT_R, hk = get_global_id(1), b = get_global_id(2);
    __global const STORAGE *kb = k + k_off + b * k_st.s0 + hk * k_st.s1;
    __global const STORAGE *vb = v + v_off + b * v_st.s0 + hk * v_st.s1;

    float dka[BT_TR][BT_TD], dva[BT_TR][BT_TDV];
    for (int i = 0; i < BT_TR; i++) {
        for (int jv = 0; jv < BT_TD; jv++) dka[i][jv] = 0.0f;
        for (int jv = 0; jv < BT_TDV; jv++) dva[i][jv] = 0.0f;
    }
    /* Visibility grows with the query index: the first query seeing key k0 is the first
     * one that sees any key of the tile. */
    long q_first = pa_bt_first_query(k0, causal, causal_offset) / BT_C * BT_C, q_end = seq_q;
    for (int g = 0; g < group; g++) {
        const long h = hk * group + g, row0 = (b * heads_q + h) * seq_q;
        __global const STORAGE *qb = q + q_off + b * q_st.s0 + h * q_st.s1;
        __global const STORAGE *dob = dout + do_off + b * o_st.s0 + h * o_st.s1;
#ifdef PA_VAR
        /* The query blocks whose causal/window range holds one of the tile's keys. */
        PA_VAR_INIT(va, b, h, 1.0f);
        q_end = pa_var_queries(&va, k0, min(k0 + BT_R, (long)seq_kv) - 1, causal, seq_q, &q_first);
        q_first = q_first / BT_C * BT_C;
#endif
        for (long q0 = q_first; q0 < q_end; q0 += BT_C) {
            float s[BT_TR][BT_TC], dp[BT_TR][BT_TC];
            pa_bt_nt(s, kb, k_st, k0, seq_kv, qb, q_st, q0, seq_q, HEAD_DIM, stage, lid, rg, cg);
            pa_bt_nt(dp, vb, v_st, k0, seq_kv, dob, o_st, q0, seq_q, HEAD_DIM_V, stage, lid, rg,
                     cg);
            float l[BT_TC], di[BT_TC];
            long vis[BT_TC], lo[BT_TC];
            for (int j = 0; j < BT_TC; j++) {
                const long qi = q0 + cg + j * BT_CG;
                l[j] = qi < seq_q ? lse[lse_off + row0 + qi] : -INFINITY;
                di[j] = qi < seq_q ? delta[delta_off + row0 + qi] : 0.0f;
                /* fully masked rows (LSE -inf) see nothing */
#ifdef PA_VAR
                lo[j] = seq_kv;
                vis[j] = l[j] == -INFINITY || qi >= seq_q ? 0 : pa_var_range(&va, qi, causal, seq_kv, &lo[j]);
#else
                lo[j] = 0;
                vis[j] = l[j] == -INFINITY ? 0 : pa_visible(qi, causal, causal_offset, seq_kv);
#endif
            }
            for (int i = 0; i < BT_TR; i++) {
                const long key = k0 + rg + i * BT_RG;
                for (int j = 0; j < BT_TC; j++) {
#ifdef PA_VAR
                    float pr = 0.0f, dcap = 1.0f;
                    int sn;
                    if (key >= lo[j] && key < vis[j])
                        pr = exp(pa_var_score(&va, scale * s[i][j], q0 + cg + j * BT_CG, key, &sn, &dcap) -
                                 l[j]);
                    pt[(rg + i * BT_RG) * BT_P_LD + cg + j * BT_CG] = pr;
                    s[i][j] = pr * (dp[i][j] - di[j]) * dcap * scale;
#else
                    const float pr = key < vis[j] ? exp(scale * s[i][j] - l[j]) : 0.0f;
                    pt[(rg + i * BT_RG) * BT_P_LD + cg + j * BT_CG] = pr;
                    s[i][j] = pr * (dp[i][j] - di[j]) * scale;
#endif
                }
            }
            pa_bt_acc_dv(dva, pt, dob, o_st, q0, seq_q, stage, lid, rg, cg);
            for (int i = 0; i < BT_TR; i++)
                for (int j = 0; j < BT_TC; j++) pt[(rg + i * BT_RG) * BT_P_LD + cg + j * BT_CG] = s[i][j];
            pa_bt_acc_d(dka, pt, qb, q_st, q0, seq_q, stage, lid, rg, cg);
        }
    }
    pa_bt_store_d(dka, dk + dk_off + b * k_st.s0 + hk * k_st.s1, k_st, k0, seq_kv, rg, cg);
    pa_bt_store_dv(dva, dv + dv_off + b * v_st.s0 + hk * v_st.s1, v_st, k0, seq_kv, rg, cg);
}

__kernel __attribute__((reqd_work_group_size(BT_NT, 1, 1))) void flash_bwd_dq_tiled_kernel(
    __global const STORAGE *q, long q_off, long4 q_st, __global const STORAGE *k, long k_off,
    long4 k_st, __global const STORAGE *v, long v_off, long4 v_st,
    __global const STORAGE *dout, long do_off, long4 o_st, __global const float *lse,
    long lse_off, __global const float *delta, long delta_off, __global STORAGE *dq,
    long dq_off, int heads_q, int seq_q, int seq_kv, int group, float scale, int causal,
    int causal_offset PA_VAR_PARAMS)
{
    __local float stage[BT_STAGE];
    __local float pt[BT_R * BT_P_LD];
    const int lid = get_local_id(0), rg = lid / BT_CG, cg = lid % BT_CG;
    /* Heaviest causal tiles (the last queries) first: they would finish last otherwise. */
    const long n_tiles = get_num_groups(0);
    const long r0 = (n_tiles - 1 - (long)get_group_id(0)) * BT_R;
    const long h = get_global_id(1), b = get_global_id(2), hk = h / group;
    const long row0 = (b * heads_q + h) * seq_q;
    __global const STORAGE *qb = q + q_off + b * q_st.s0 + h * q_st.s1;
    __global const STORAGE *dob = dout + do_off + b * o_st.s0 + h * o_st.s1;
    __global const STORAGE *kb = k + k_off + b * k_st.s0 + hk * k_st.s1;
    __global const STORAGE *vb = v + v_off + b * v_st.s0 + hk * v_st.s1;

    float dqa[BT_TR][BT_TD], l[BT_TR], di[BT_TR];
    long vis[BT_TR], lo[BT_TR];
#ifdef PA_VAR
    PA_VAR_INIT(va, b, h, 1.0f);
#endif
    for (int i = 0; i < BT_TR; i++) {
        const long qi = r0 + rg + i * BT_RG;
        l[i] = qi < seq_q ? lse[lse_off + row0 + qi] : -INFINITY;
        di[i] = qi < seq_q ? delta[delta_off + row0 + qi] : 0.0f;
#ifdef PA_VAR
        lo[i] = seq_kv;
        vis[i] = l[i] == -INFINITY || qi >= seq_q ? 0 : pa_var_range(&va, qi, causal, seq_kv, &lo[i]);
#else
        lo[i] = 0;
        vis[i] = l[i] == -INFINITY ? 0 : pa_visible(qi, causal, causal_offset, seq_kv);
#endif
        for (int jv = 0; jv < BT_TD; jv++) dqa[i][jv] = 0.0f;
    }
    const long last = min(r0 + BT_R, (long)seq_q) - 1;
#ifdef PA_VAR
    /* Key blocks from the first row's window start to the last row's end. */
    long k_begin;
    const long kv_end = pa_var_range(&va, last, causal, seq_kv, &k_begin);
    pa_var_range(&va, r0, causal, seq_kv, &k_begin);
    k_begin = k_begin / BT_C * BT_C;
#else
    const long kv_end = pa_visible(last, causal, causal_offset, seq_kv), k_begin = 0;
#endif
    for (long k0 = k_begin; k0 < kv_end; k0 += BT_C) {
        float s[BT_TR][BT_TC], dp[BT_TR][BT_TC];
        pa_bt_nt(s, qb, q_st, r0, seq_q, kb, k_st, k0, seq_kv, HEAD_DIM, stage, lid, rg, cg);
        pa_bt_nt(dp, dob, o_st, r0, seq_q, vb, v_st, k0, seq_kv, HEAD_DIM_V, stage, lid, rg, cg);
        for (int i = 0; i < BT_TR; i++)
            for (int j = 0; j < BT_TC; j++) {
                const long key = k0 + cg + j * BT_CG;
#ifdef PA_VAR
                float pr = 0.0f, dcap = 1.0f;
                int sn;
                if (key >= lo[i] && key < vis[i])
                    pr = exp(pa_var_score(&va, scale * s[i][j], r0 + rg + i * BT_RG, key, &sn, &dcap) -
                             l[i]);
                pt[(rg + i * BT_RG) * BT_P_LD + cg + j * BT_CG] = pr * (dp[i][j] - di[i]) * dcap * scale;
#else
                const float pr = key < vis[i] ? exp(scale * s[i][j] - l[i]) : 0.0f;
                pt[(rg + i * BT_RG) * BT_P_LD + cg + j * BT_CG] = pr * (dp[i][j] - di[i]) * scale;
#endif
            }
        pa_bt_acc_d(dqa, pt, kb, k_st, k0, seq_kv, stage, lid, rg, cg);
    }
    pa_bt_store_d(dqa, dq + dq_off + b * q_st.s0 + h * q_st.s1, q_st, r0, seq_q, rg, cg);
}
