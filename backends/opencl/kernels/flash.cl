/* flash: tiled online softmax.  One work-group owns BM query rows of one (batch, head);
 * it walks the visible keys in BN-key blocks: S = Q K^T for the block (registers), a
 * running row max and sum rescale the output accumulators, P V adds the block.  No N x N
 * memory: the only extra output is the log-sum-exp. */

__kernel __attribute__((reqd_work_group_size(NT, 1, 1))) void flash_fwd_tiled_kernel(
    __global const STORAGE *q, long q_off, long4 q_st, __global const STORAGE *k, long k_off,
    long4 k_st, __global const STORAGE *v, long v_off, long4 v_st, __global OSTORAGE *o,
    long o_off, long4 o_st, __global float *lse, long lse_off, int want_lse, int seq_q,
    int seq_kv, int group, float scale_log2, float o_scale, int causal, int causal_offset,
    int n_tiles PA_VAR_PARAMS)
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
    __global OSTORAGE *ob = o + o_off + b * o_st.s0 + h * o_st.s1;
    __global float *lseb = lse + lse_off + (b * heads_q + h) * seq_q;

    long last_row = min(row0 + BM, (long)seq_q) - 1;
    long vis[TM];
    float m[TM], l[TM], oacc[TM][TDV];
#ifdef PA_VAR
    /* Rows see keys [lo, vis); both bounds grow with the row, so the tile walks the key
     * blocks from its first row's lo to its last row's end and skips the rest. */
    PA_VAR_INIT(va, b, h, PA_LOG2E);
    long lo[TM], k_begin;
    float seen[TM];
    long kv_end = pa_var_range(&va, last_row, causal, seq_kv, &k_begin);
    pa_var_range(&va, row0, causal, seq_kv, &k_begin);
    k_begin = k_begin / BN * BN;
#else
    long kv_end = pa_visible(last_row, causal, causal_offset, seq_kv), k_begin = 0;
#endif
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

    for (long k0 = k_begin; k0 < kv_end; k0 += BN) {
        float s[TM][TN];
        pa_qk_tile(s, qb, q_st, row0, seq_q, kb, k_st, k0, seq_kv, stage, lid, rg, cg);
        float bmax[TM];
        for (int i = 0; i < TM; i++) {
            bmax[i] = -INFINITY;
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
#ifdef PA_VAR
    pa_row_reduce(seen, red, rg, cg, 1);
    for (int i = 0; i < TM; i++) {
        const float fold = pa_var_sink_fold2(&va, &m[i], &l[i]);
        for (int jv = 0; jv < TDV; jv++) oacc[i][jv] *= fold;
        vis[i] = seen[i] > 0.0f;
    }
#endif
    pa_store_rows(oacc, m, l, vis, ob, o_st, row0, seq_q, lseb, want_lse, rg, cg, o_scale);
}

/* ---- flash_fwd_tiled_v4_kernel: the same algorithm with 4-wide local-memory reads -------
 * Used when TM == 4 and TN % 4 == 0 (head dims up to 256).  A work-item owns the four
 * consecutive rows rg*4..rg*4+3, score columns (cg + jj*CG)*4 + e and output columns
 * (cg + jv*CG)*4 + e, so each local read is one float4: Q K^T does 1 + TN/4 reads per
 * 4*TN FMAs, P V reads P transposed (keys x rows) and V padded to DVP columns.
 * Q and K chunks are stored transposed (d x rows) with the 4-row groups XOR-swizzled by
 * d/4, so that the transposing stores of a warp hit 32 different banks.  With vec bits
 * set (f32, unit element stride, 16-byte aligned rows: the host checks) the staging reads
 * global memory as float4. */

#define TN4 (TN / 4)
#define TDV4 ((HEAD_DIM_V + 4 * CG - 1) / (4 * CG))
#define DVP (TDV4 * 4 * CG)
#define V4_PS_LD (BM + 4)
#define V4_QK_LOCAL (DK * BM + DK * BN)
#define V4_V_LOCAL (VN * DVP)
#define V4_STAGE (V4_QK_LOCAL > V4_V_LOCAL ? V4_QK_LOCAL : V4_V_LOCAL)
#define QSW_MASK (BM / 4 >= 8 ? 7 : BM / 4 - 1)
#define KSW_MASK (BN / 4 >= 8 ? 7 : BN / 4 - 1)
/* Float index of element (dd, r) in a swizzled transposed chunk with `ld` rows. */
#define SWZ(dd, r, ld, mask) ((dd) * (ld) + ((((r) >> 2) ^ (((dd) >> 2) & (mask))) << 2) + ((r) & 3))

#if TM == 4 && (TN % 4) == 0
/* One BM x DK (or BN x DK) chunk of rows [base, base + rows) into a swizzled chunk. */
inline void pa_stage_rows_t(__local float *dst, int rows, int ld, int mask,
                            __global const STORAGE *src, long4 st, long base, long limit,
                            int d0, int vec, int lid)
{
#if PA_DTYPE == 0 && (HEAD_DIM % 4) == 0
    if (vec) {
        for (int g = lid; g < rows * (DK / 4); g += NT) {
            int dd4 = g % (DK / 4), r = g / (DK / 4);
            long row = base + r;
            int d = d0 + dd4 * 4;
            float4 x = (float4)(0.0f);
            if (row < limit && d < HEAD_DIM)
                x = *(__global const float4 *)(src + row * st.s2 + d);
            dst[SWZ(dd4 * 4 + 0, r, ld, mask)] = x.x;
            dst[SWZ(dd4 * 4 + 1, r, ld, mask)] = x.y;
            dst[SWZ(dd4 * 4 + 2, r, ld, mask)] = x.z;
            dst[SWZ(dd4 * 4 + 3, r, ld, mask)] = x.w;
        }
        return;
    }
#endif
    (void)vec;
    for (int idx = lid; idx < rows * DK; idx += NT) {
        int dd = ((idx >> 2) / rows) * 4 + (idx & 3), r = (idx >> 2) % rows;
        long row = base + r;
        int d = d0 + dd;
        float x = 0.0f;
        if (row < limit && d < HEAD_DIM) x = LOAD(src, row * st.s2 + d * st.s3);
        dst[SWZ(dd, r, ld, mask)] = x;
    }
}

__kernel __attribute__((reqd_work_group_size(NT, 1, 1))) void flash_fwd_tiled_v4_kernel(
    __global const STORAGE *q, long q_off, long4 q_st, __global const STORAGE *k, long k_off,
    long4 k_st, __global const STORAGE *v, long v_off, long4 v_st, __global OSTORAGE *o,
    long o_off, long4 o_st, __global float *lse, long lse_off, int want_lse, int seq_q,
    int seq_kv, int group, float scale_log2, float o_scale, int causal, int causal_offset,
    int n_tiles, int vec PA_VAR_PARAMS)
{
    __local float4 stage4[V4_STAGE / 4];
    __local float4 ps4[BN * V4_PS_LD / 4];
    __local float red[BM * CG];
    __local float *stage = (__local float *)stage4;

    const int lid = get_local_id(0);
    const int rg = lid / CG, cg = lid % CG;
    const long tile = n_tiles - 1 - (long)get_group_id(0);
    const long h = get_global_id(1), b = get_global_id(2), hk = h / group;
    const long heads_q = get_global_size(1);
    const long row0 = tile * BM;

    __global const STORAGE *qb = q + q_off + b * q_st.s0 + h * q_st.s1;
    __global const STORAGE *kb = k + k_off + b * k_st.s0 + hk * k_st.s1;
    __global const STORAGE *vb = v + v_off + b * v_st.s0 + hk * v_st.s1;
    __global OSTORAGE *ob = o + o_off + b * o_st.s0 + h * o_st.s1;
    __global float *lseb = lse + lse_off + (b * heads_q + h) * seq_q;

    long last_row = min(row0 + BM, (long)seq_q) - 1;
    long vis[4];
    float m[4], l[4];
    float4 oacc[4][TDV4];
#ifdef PA_VAR
    PA_VAR_INIT(va, b, h, PA_LOG2E);
    long lo[4], k_begin;
    float seen[4];
    long kv_end = pa_var_range(&va, last_row, causal, seq_kv, &k_begin);
    pa_var_range(&va, row0, causal, seq_kv, &k_begin);
    k_begin = k_begin / BN * BN;
#else
    long kv_end = pa_visible(last_row, causal, causal_offset, seq_kv), k_begin = 0;
#endif
    for (int i = 0; i < 4; i++) {
        long row = row0 + rg * 4 + i;
#ifdef PA_VAR
        lo[i] = seq_kv;
        vis[i] = row < seq_q ? pa_var_range(&va, row, causal, seq_kv, &lo[i]) : 0;
        seen[i] = 0.0f;
#else
        vis[i] = row < seq_q ? pa_visible(row, causal, causal_offset, seq_kv) : 0;
#endif
        m[i] = -INFINITY;
        l[i] = 0.0f;
        for (int jv = 0; jv < TDV4; jv++) oacc[i][jv] = (float4)(0.0f);
    }

    for (long k0 = k_begin; k0 < kv_end; k0 += BN) {
        float4 s[4][TN4];
        for (int i = 0; i < 4; i++)
            for (int jj = 0; jj < TN4; jj++) s[i][jj] = (float4)(0.0f);
        for (int d0 = 0; d0 < HEAD_DIM; d0 += DK) {
            pa_stage_rows_t(stage, BM, BM, QSW_MASK, qb, q_st, row0, seq_q, d0, vec & 1, lid);
            pa_stage_rows_t(stage + DK * BM, BN, BN, KSW_MASK, kb, k_st, k0, seq_kv, d0,
                            vec & 2, lid);
            barrier(CLK_LOCAL_MEM_FENCE);
            __local const float4 *qs4 = stage4;
            __local const float4 *ks4 = stage4 + DK * BM / 4;
#pragma unroll 8
            for (int dd = 0; dd < DK; dd++) {
                float4 a = qs4[dd * (BM / 4) + (rg ^ ((dd >> 2) & QSW_MASK))];
                for (int jj = 0; jj < TN4; jj++) {
                    float4 bk = ks4[dd * (BN / 4) + ((cg + jj * CG) ^ ((dd >> 2) & KSW_MASK))];
                    s[0][jj] = fma((float4)(a.x), bk, s[0][jj]);
                    s[1][jj] = fma((float4)(a.y), bk, s[1][jj]);
                    s[2][jj] = fma((float4)(a.z), bk, s[2][jj]);
                    s[3][jj] = fma((float4)(a.w), bk, s[3][jj]);
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        /* Scale, mask, block max. */
        float bmax[4];
        for (int i = 0; i < 4; i++) {
            bmax[i] = -INFINITY;
            for (int jj = 0; jj < TN4; jj++) {
                long key = k0 + (cg + jj * CG) * 4;
                float4 x = s[i][jj] * scale_log2;
#ifdef PA_VAR
                {
                    float xe[4] = {x.x, x.y, x.z, x.w}, dcap;
                    for (int e = 0; e < 4; e++) {
                        int sn = 0;
                        xe[e] = key + e >= lo[i] && key + e < vis[i]
                                    ? pa_var_score(&va, xe[e], row0 + rg * 4 + i, key + e, &sn, &dcap)
                                    : -INFINITY;
                        if (sn) seen[i] = 1.0f;
                    }
                    x = (float4)(xe[0], xe[1], xe[2], xe[3]);
                }
#else
                x.x = key + 0 < vis[i] ? x.x : -INFINITY;
                x.y = key + 1 < vis[i] ? x.y : -INFINITY;
                x.z = key + 2 < vis[i] ? x.z : -INFINITY;
                x.w = key + 3 < vis[i] ? x.w : -INFINITY;
#endif
                s[i][jj] = x;
                bmax[i] = fmax(bmax[i], fmax(fmax(x.x, x.y), fmax(x.z, x.w)));
            }
        }
        /* Slots only: pa_row_reduce's rows are per-(rg, i) scratch, any bijection works. */
        pa_row_reduce(bmax, red, rg, cg, 1);
        float m_use[4];
        for (int i = 0; i < 4; i++) {
            float m_new = fmax(m[i], bmax[i]);
            m_use[i] = m_new == -INFINITY ? 0.0f : m_new;
            float alpha = exp2(m[i] - m_use[i]);
            m[i] = m_new;
            l[i] *= alpha;
            for (int jv = 0; jv < TDV4; jv++) oacc[i][jv] *= alpha;
        }
        for (int jj = 0; jj < TN4; jj++) {
            float4 p0 = exp2(s[0][jj] - m_use[0]), p1 = exp2(s[1][jj] - m_use[1]);
            float4 p2 = exp2(s[2][jj] - m_use[2]), p3 = exp2(s[3][jj] - m_use[3]);
            l[0] += (p0.x + p0.y) + (p0.z + p0.w);
            l[1] += (p1.x + p1.y) + (p1.z + p1.w);
            l[2] += (p2.x + p2.y) + (p2.z + p2.w);
            l[3] += (p3.x + p3.y) + (p3.z + p3.w);
            int c = (cg + jj * CG) * 4;
            ps4[((c + 0) * V4_PS_LD) / 4 + rg] = (float4)(p0.x, p1.x, p2.x, p3.x);
            ps4[((c + 1) * V4_PS_LD) / 4 + rg] = (float4)(p0.y, p1.y, p2.y, p3.y);
            ps4[((c + 2) * V4_PS_LD) / 4 + rg] = (float4)(p0.z, p1.z, p2.z, p3.z);
            ps4[((c + 3) * V4_PS_LD) / 4 + rg] = (float4)(p0.w, p1.w, p2.w, p3.w);
        }
        /* O += P V, V staged VN keys at a time (zero past seq_kv and past HEAD_DIM_V). */
        for (int n0 = 0; n0 < BN; n0 += VN) {
#if PA_DTYPE == 0 && (HEAD_DIM_V % 4) == 0
            if (vec & 4) {
                for (int g = lid; g < VN * (DVP / 4); g += NT) {
                    int nn = g / (DVP / 4), col = (g % (DVP / 4)) * 4;
                    long key = k0 + n0 + nn;
                    float4 x = (float4)(0.0f);
                    if (key < seq_kv && col < HEAD_DIM_V)
                        x = *(__global const float4 *)(vb + key * v_st.s2 + col);
                    stage4[g] = x;
                }
            } else
#endif
            {
                for (int idx = lid; idx < VN * DVP; idx += NT) {
                    int nn = idx / DVP, col = idx % DVP;
                    long key = k0 + n0 + nn;
                    stage[idx] = key < seq_kv && col < HEAD_DIM_V
                                     ? LOAD(vb, key * v_st.s2 + col * v_st.s3) : 0.0f;
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll 4
            for (int nn = 0; nn < VN; nn++) {
                float4 p = ps4[((n0 + nn) * V4_PS_LD) / 4 + rg];
                for (int jv = 0; jv < TDV4; jv++) {
                    float4 vv = stage4[nn * (DVP / 4) + cg + jv * CG];
                    oacc[0][jv] = fma((float4)(p.x), vv, oacc[0][jv]);
                    oacc[1][jv] = fma((float4)(p.y), vv, oacc[1][jv]);
                    oacc[2][jv] = fma((float4)(p.z), vv, oacc[2][jv]);
                    oacc[3][jv] = fma((float4)(p.w), vv, oacc[3][jv]);
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
        }
    }
    pa_row_reduce(l, red, rg, cg, 0);
#ifdef PA_VAR
    pa_row_reduce(seen, red, rg, cg, 1);
#endif
    for (int i = 0; i < 4; i++) {
        long row = row0 + rg * 4 + i;
        if (row >= seq_q) continue;
#ifdef PA_VAR
        const float fold = pa_var_sink_fold2(&va, &m[i], &l[i]);
        vis[i] = seen[i] > 0.0f;
        float inv = pa_row_inv(l[i], vis[i]) * fold * o_scale;
#else
        float inv = pa_row_inv(l[i], vis[i]) * o_scale;
#endif
        for (int jv = 0; jv < TDV4; jv++) {
            int col = (cg + jv * CG) * 4;
            float4 r = oacc[i][jv] * inv;
            if (col + 0 < HEAD_DIM_V) OSTORE(ob, row * o_st.s2 + (col + 0) * o_st.s3, r.x);
            if (col + 1 < HEAD_DIM_V) OSTORE(ob, row * o_st.s2 + (col + 1) * o_st.s3, r.y);
            if (col + 2 < HEAD_DIM_V) OSTORE(ob, row * o_st.s2 + (col + 2) * o_st.s3, r.z);
            if (col + 3 < HEAD_DIM_V) OSTORE(ob, row * o_st.s2 + (col + 3) * o_st.s3, r.w);
        }
        if (want_lse && cg == 0) lseb[row] = pa_row_lse(m[i] * PA_LN2 + log(l[i]), l[i], vis[i]);
    }
}
#endif
