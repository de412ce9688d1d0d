/* Register-tiled building blocks shared by the flash and fused kernels.
 * Tile constants come from the host (-D): HEAD_DIM, HEAD_DIM_V, BM (query rows per
 * work-group), BN (keys per block), RG x CG work-items (row groups x column groups),
 * DK (head-dim chunk staged in local memory for Q K^T), VN (V rows staged per step).
 * Work-item (rg, cg) owns query rows rg + i*RG (i < TM), score columns cg + j*CG (j < TN)
 * and output columns cg + jv*CG (jv < TDV): interleaving keeps local-memory reads of
 * neighbouring work-items on neighbouring banks. */

#define NT (RG * CG)
#define TM (BM / RG)
#define TN (BN / CG)
#define TDV ((HEAD_DIM_V + CG - 1) / CG)
#define QS_LD (BM + 1)
#define KS_LD (BN + 1)
#define QK_LOCAL (DK * QS_LD + DK * KS_LD)
#define V_LOCAL (VN * HEAD_DIM_V)
#define STAGE_LOCAL (QK_LOCAL > V_LOCAL ? QK_LOCAL : V_LOCAL)

/* s[i][j] = sum_d Q[row0 + rg + i*RG][d] * K[k0 + cg + j*CG][d]; rows or keys past the
 * end read as zero.  Q and K go through local memory in DK-wide chunks, transposed so
 * that the inner loop reads consecutive addresses. */
inline void pa_qk_tile(float s[TM][TN], __global const STORAGE *qb, long4 q_st, long row0,
                       long seq_q, __global const STORAGE *kb, long4 k_st, long k0, long seq_kv,
                       __local float *stage, int lid, int rg, int cg)
{
    __local float *qs = stage;
    __local float *ks = stage + DK * QS_LD;
    for (int i = 0; i < TM; i++)
        for (int j = 0; j < TN; j++) s[i][j] = 0.0f;
    for (int d0 = 0; d0 < HEAD_DIM; d0 += DK) {
        for (int idx = lid; idx < BM * DK; idx += NT) {
            int r = idx / DK, dd = idx % DK;
            long row = row0 + r;
            int d = d0 + dd;
            float x = 0.0f;
            if (row < seq_q && d < HEAD_DIM) x = LOAD(qb, row * q_st.s2 + d * q_st.s3);
            qs[dd * QS_LD + r] = x;
        }
        for (int idx = lid; idx < BN * DK; idx += NT) {
            int c = idx / DK, dd = idx % DK;
            long key = k0 + c;
            int d = d0 + dd;
            float x = 0.0f;
            if (key < seq_kv && d < HEAD_DIM) x = LOAD(kb, key * k_st.s2 + d * k_st.s3);
            ks[dd * KS_LD + c] = x;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll 4
        for (int dd = 0; dd < DK; dd++) {
            float a[TM], bk[TN];
            for (int i = 0; i < TM; i++) a[i] = qs[dd * QS_LD + rg + i * RG];
            for (int j = 0; j < TN; j++) bk[j] = ks[dd * KS_LD + cg + j * CG];
            for (int i = 0; i < TM; i++)
                for (int j = 0; j < TN; j++) s[i][j] = fma(a[i], bk[j], s[i][j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
}

/* o[i][jv] += sum_n P[(rg + i*RG)*p_ld + pc0 + n] * V[key0 + n][cg + jv*CG] over
 * n < count (a multiple of VN); V rows past seq_kv read as zero (never garbage times 0). */
#define PA_DEFINE_PV(NAME, SPACE)                                                          \
    inline void NAME(float o[TM][TDV], SPACE const float *P, long p_ld, long pc0,           \
                     __global const STORAGE *vb, long4 v_st, long key0, long count,         \
                     long seq_kv, __local float *stage, int lid, int rg, int cg)            \
    {                                                                                      \
        for (long n0 = 0; n0 < count; n0 += VN) {                                          \
            for (int idx = lid; idx < VN * HEAD_DIM_V; idx += NT) {                         \
                int nn = idx / HEAD_DIM_V, d = idx % HEAD_DIM_V;                            \
                long key = key0 + n0 + nn;                                                 \
                stage[idx] = key < seq_kv ? LOAD(vb, key * v_st.s2 + d * v_st.s3) : 0.0f;   \
            }                                                                              \
            barrier(CLK_LOCAL_MEM_FENCE);                                                  \
            for (int nn = 0; nn < VN; nn++) {                                              \
                float p[TM];                                                               \
                for (int i = 0; i < TM; i++) p[i] = P[(rg + i * RG) * p_ld + pc0 + n0 + nn]; \
                for (int jv = 0; jv < TDV; jv++) {                                         \
                    int col = cg + jv * CG;                                                \
                    if (HEAD_DIM_V % CG == 0 || col < HEAD_DIM_V) {                        \
                        float vv = stage[nn * HEAD_DIM_V + col];                           \
                        for (int i = 0; i < TM; i++) o[i][jv] = fma(p[i], vv, o[i][jv]);   \
                    }                                                                      \
                }                                                                          \
            }                                                                              \
            barrier(CLK_LOCAL_MEM_FENCE);                                                  \
        }                                                                                  \
    }

PA_DEFINE_PV(pa_pv_local, __local)
PA_DEFINE_PV(pa_pv_global, __global)

/* Writes the normalized output rows, times o_scale (v's descale), and the log-sum-exp (m in
 * the log2 domain). */
inline void pa_store_rows(float o[TM][TDV], const float *m, const float *l, const long *vis,
                          __global OSTORAGE *ob, long4 o_st, long row0, long seq_q,
                          __global float *lse, int want_lse, int rg, int cg, float o_scale)
{
    for (int i = 0; i < TM; i++) {
        long row = row0 + rg + i * RG;
        if (row >= seq_q) continue;
        float inv = pa_row_inv(l[i], vis[i]) * o_scale;
        for (int jv = 0; jv < TDV; jv++) {
            int col = cg + jv * CG;
            if (col < HEAD_DIM_V) OSTORE(ob, row * o_st.s2 + col * o_st.s3, o[i][jv] * inv);
        }
        if (want_lse && cg == 0)
            lse[row] = pa_row_lse(m[i] * PA_LN2 + log(l[i]), l[i], vis[i]);
    }
}

/* Sum (or max) of one value per work-item across the CG work-items of each row group. */
inline void pa_row_reduce(float v[TM], __local float *red, int rg, int cg, int is_max)
{
    for (int i = 0; i < TM; i++) red[(rg + i * RG) * CG + cg] = v[i];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int i = 0; i < TM; i++) {
        __local const float *r = red + (rg + i * RG) * CG;
        float acc = r[0];
        for (int c = 1; c < CG; c++) acc = is_max ? fmax(acc, r[c]) : acc + r[c];
        v[i] = acc;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}
