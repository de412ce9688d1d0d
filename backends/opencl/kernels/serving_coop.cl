/* Cooperative decode for GPUs (FlashDecoding style): one work-group of CO_WG work-items per
 * (sequence, KV head, key split) owns all the packed rows r = query x group + head-in-group
 * (at most CO_R) and walks the split's keys in tiles of CO_TK:
 *   1. scores: work-item (key j, row group g) loads K row j once (8-wide) and computes the
 *      scores of rows g, g + CO_RG, ... against Q staged in local memory (pre-scaled);
 *   2. softmax: CO_T work-items per row take the tile's row maximum, rescale the running
 *      state and turn the scores into probabilities (each keeps a partial row sum);
 *   3. P x V: work-item (column chunk c, key lane kl) accumulates O[r][c x CO_VW ..] for every
 *      row over the keys kl, kl + CO_KL, ...: consecutive work-items read consecutive columns
 *      of one V row (coalesced CO_VW-wide loads).
 * At the end the key lanes' accumulators are summed in local memory and O / LSE (one split)
 * or the split's partials (f32 O and LSE, sink left to the merge) are written exactly as
 * flash_serving_fwd_kernel writes them.  Built after common.cl, variants.cl, merge.cl and
 * serving.cl.  Options: CO_WG, CO_R (a power of two), CO_RG (dividing CO_R, CO_R / CO_RG <= 8
 * rows a work-item in step 1), CO_VW (1, 2, 4 or 8), CO_BATCH (below; 0 when absent).
 *
 * CO_BATCH=1 (the batched shape): with aligned unit-stride rows a work-item issues all the
 * loads of a batch before it uses any (CO_KCH 8-element K chunks in step 1; CO_VB, at most
 * 32, V rows of its key lane in step 3, the first batch issued before step 2's barriers),
 * so a group keeps a whole tile of K, then of V, in flight instead of one 16-byte load a
 * work-item.  CO_BATCH=0 (the serial shape) keeps one load a work-item in flight. */

#ifndef CO_BATCH
#define CO_BATCH 0
#endif

#define CO_TK (CO_WG / CO_RG)
#define CO_RPT (CO_R / CO_RG)
#define CO_T (CO_WG / CO_R)
#define CO_NC ((HEAD_DIM_V + CO_VW - 1) / CO_VW)
#define CO_KL (CO_WG / CO_NC)
#define CO_SP (CO_TK + CO_T) /* score row stride: step 2 reads without bank conflicts */
#define CO_QS (CO_R * HEAD_DIM)
#define CO_OB (CO_R * CO_NC * CO_VW)
#define CO_BIG (CO_QS + CO_R * CO_SP > CO_OB ? CO_QS + CO_R * CO_SP : CO_OB)

#define CO_CAT_(a, b) a##b
#define CO_CAT(a, b) CO_CAT_(a, b)

/* 8 elements at p + i as floats; al: p + i is 8-element aligned (the host checked the
 * offset and strides), so one 8-byte (e4m3), 16-byte (f16, bf16) or 32-byte (f32) load. */
inline float8 co_load8(__global const STORAGE *p, long i, int al)
{
#if PA_DTYPE == 0
    return al ? *(__global const float8 *)(p + i) : vload8(0, p + i);
#elif PA_DTYPE == 1
    if (!al) return vload_half8(0, p + i);
    const ushort8 u = *(__global const ushort8 *)((__global const ushort *)p + i);
    return vload_half8(0, (const __private half *)&u);
#elif PA_DTYPE == 2
    const ushort8 u = al ? *(__global const ushort8 *)(p + i) : vload8(0, p + i);
    return as_float8(convert_uint8(u) << (uint8)(16));
#else
    return pa_e4m3x8_to_f32(al ? *(__global const uchar8 *)(p + i) : vload8(0, p + i));
#endif
}

/* CO_VW columns of a V row as a vector (CO_FV). */
#if CO_VW == 1
#define CO_FV float
inline float co_loadv(__global const STORAGE *p, long i, int al)
{
    (void)al;
    return LOAD(p, i);
}
#define CO_LOADF(t) ((t)[0])
#define CO_STOREF(x, t) ((t)[0] = (x))
#else
#define CO_FV CO_CAT(float, CO_VW)
#define CO_LOADF(t) CO_CAT(vload, CO_VW)(0, t)
#define CO_STOREF(x, t) CO_CAT(vstore, CO_VW)(x, 0, t)
inline CO_FV co_loadv(__global const STORAGE *p, long i, int al)
{
#if PA_DTYPE == 0
    return al ? *(__global const CO_FV *)(p + i) : CO_CAT(vload, CO_VW)(0, p + i);
#elif PA_DTYPE == 1
    if (!al) return CO_CAT(vload_half, CO_VW)(0, p + i);
    const CO_CAT(ushort, CO_VW) u =
        *(__global const CO_CAT(ushort, CO_VW) *)((__global const ushort *)p + i);
    return CO_CAT(vload_half, CO_VW)(0, (const __private half *)&u);
#elif PA_DTYPE == 2
    const CO_CAT(ushort, CO_VW) u =
        al ? *(__global const CO_CAT(ushort, CO_VW) *)(p + i) : CO_CAT(vload, CO_VW)(0, p + i);
    return CO_CAT(as_float, CO_VW)(CO_CAT(convert_uint, CO_VW)(u) << (CO_CAT(uint, CO_VW))(16));
#else
    (void)al;
    float t[CO_VW];
    for (int e = 0; e < CO_VW; e++)
        t[e] = LOAD(p, i + e);
    return CO_LOADF(t);
#endif
}
#endif

/* Columns c0 .. c0 + CO_VW of a V row at any element stride (zeros past HEAD_DIM_V). */
inline CO_FV co_loadv_any(__global const STORAGE *p, long c0, long s3)
{
    float t[CO_VW];
    for (int e = 0; e < CO_VW; e++)
        t[e] = c0 + e < HEAD_DIM_V ? LOAD(p, (c0 + e) * s3) : 0.0f;
    return CO_LOADF(t);
}

#if CO_BATCH
/* Raw elements as stored (f16 as ushort: NVIDIA's OpenCL has no half arithmetic), loaded
 * as one vector from an aligned address, converted to floats once they arrive. */
#if PA_DTYPE == 0
#define CO_RAWU float
#elif PA_DTYPE == 4
#define CO_RAWU uchar
#else
#define CO_RAWU ushort
#endif
#define CO_RAW8 CO_CAT(CO_RAWU, 8)
#if CO_VW == 1
#define CO_RAWV CO_RAWU
#else
#define CO_RAWV CO_CAT(CO_RAWU, CO_VW)
#endif
#define CO_AT(T, p, i) (*(__global const T *)((__global const CO_RAWU *)(p) + (i)))

inline float8 co_cvt8(CO_RAW8 u)
{
#if PA_DTYPE == 0
    return u;
#elif PA_DTYPE == 1
    return vload_half8(0, (const __private half *)&u);
#elif PA_DTYPE == 2
    return as_float8(convert_uint8(u) << (uint8)(16));
#else
    return pa_e4m3x8_to_f32(u);
#endif
}

inline CO_FV co_cvtv(CO_RAWV u)
{
#if PA_DTYPE == 0
    return u;
#elif PA_DTYPE == 1 && CO_VW == 1
    return vload_half(0, (const __private half *)&u);
#elif PA_DTYPE == 1
    return CO_CAT(vload_half, CO_VW)(0, (const __private half *)&u);
#elif PA_DTYPE == 2 && CO_VW == 1
    return as_float((uint)u << 16);
#elif PA_DTYPE == 2
    return CO_CAT(as_float, CO_VW)(CO_CAT(convert_uint, CO_VW)(u) << (CO_CAT(uint, CO_VW))(16));
#else
    const __private uchar *e = (const __private uchar *)&u;
    float t[CO_VW];
    for (int x = 0; x < CO_VW; x++)
        t[x] = pa_e4m3_to_f32(e[x]);
    return CO_LOADF(t);
#endif
}

/* Issues the V loads of CO_VB keys j0, j0 + CO_KL, ... of the tile (columns c3 of rows at
 * vb); keys past nk or with no row (a block outside the cache) load the tensor's first row
 * and come back masked off (bit u of the result clear). */
inline uint co_vload(CO_RAWV *vraw, __local const long *vrow, int j0, int nk,
                    __global const STORAGE *vb, int c3)
{
    uint mask = 0;
#pragma unroll
    for (int u = 0; u < CO_VB; u++) {
        const int j = j0 + u * CO_KL;
        const long vro = j < nk ? vrow[j] : -1;
        mask |= (uint)(vro >= 0) << u;
        vraw[u] = CO_AT(CO_RAWV, vb + max(vro, 0L), (long)c3 * CO_VW);
    }
    return mask;
}
#endif

#if CO_BATCH
#define CO_ALIGN __attribute__((aligned(32))) /* step 1 reads Q 8 floats at a time */
#else
#define CO_ALIGN
#endif

#define CO_VAR(h)                                                                                  \
    pa_var_make(b, (h), heads_q, PA_LOG2E, va_slopes, va_slopes_off, va_slopes_per_batch, va_bias, \
                va_bias_off, va_bias_st, va_mask, va_mask_off, va_mask_st, va_sinks, va_sinks_off, \
                va_wl, va_wr, va_softcap, diag)

/* grid: (CO_WG, heads_kv, batch * n_splits), work-groups of CO_WG.  The arguments are
 * flash_serving_fwd_kernel's with k_al / v_al (8-element aligned K / V rows) after part_off. */
__kernel __attribute__((reqd_work_group_size(CO_WG, 1, 1))) void flash_serving_coop_kernel(
    __global const STORAGE *q, long q_off, long4 q_st, __global const STORAGE *k, long k_off,
    long4 k_st, __global const STORAGE *v, long v_off, long4 v_st, __global OSTORAGE *o,
    long o_off, long4 o_st, __global float *lse, long lse_off, int want_lse, int group,
    float scale_log2, float o_scale, int causal, int top_left, int n_splits, __global float *part, long part_off, int k_al, int v_al,
    PA_SRV_PARAMS PA_VAR_PARAMS)
{
    __local float big[CO_BIG] CO_ALIGN; /* Q and the scores; at the end the key lanes' O */
    __local float *qs = big, *ss = big + CO_QS;
    __local float red[CO_WG], row_f[CO_R], row_m[CO_R];
    __local long row_lo[CO_R], row_hi[CO_R];
    __local long vrow[CO_TK]; /* the tile's V row offsets (one block-table walk a key) */
    __local int row_seen[CO_R];
    const int w = (int)get_local_id(0);
    const long hk = get_group_id(1), b = get_group_id(2) / n_splits,
               split = get_group_id(2) % n_splits;
    const long heads_q = get_num_groups(1) * group, batch = get_num_groups(2) / n_splits;
    const pa_seq s = pa_seq_of(b, PA_SRV_ARGS);
    const long nrows = s.len_q * group;
    if (nrows <= 0) return; /* the whole work-group */
    const long chunk = (s.len_kv + n_splits - 1) / n_splits;
    const long chunk_kb = (chunk + KB - 1) / KB * KB;
    const long ks0 = min(split * chunk_kb, s.len_kv), ks1 = min(ks0 + chunk_kb, s.len_kv);
    const long diag = top_left ? 0 : s.len_kv - s.len_q;
    (void)va_mat0;
    (void)va_diag;
    (void)va_heads_q;

    /* The rows' key ranges (causal, window) within the split; Q scaled into local memory. */
    if (w < CO_R) {
        const int ok = w < nrows;
        const long i = w / group, h = hk * group + (ok ? w % group : 0);
        pa_var va = CO_VAR(h);
        long lo = ks1;
        long vis = ok ? pa_var_range(&va, i, causal, s.len_kv, &lo) : 0;
        lo = max(lo, ks0);
        row_lo[w] = lo;
        row_hi[w] = max(min(vis, ks1), lo);
        row_seen[w] = 0;
    }
    for (int e = w; e < CO_QS; e += CO_WG) {
        const int r = e / HEAD_DIM, x = e % HEAD_DIM;
        float val = 0.0f;
        if (r < nrows) {
            const long i = r / group, h = hk * group + r % group;
            val = LOAD(q + q_off + pa_q_row(&s, h, i, q_st, varlen_q), x * q_st.s3) * scale_log2;
        }
        qs[e] = val;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    long kv_begin = ks1, kv_end = ks0;
    for (int r = 0; r < CO_R; r++)
        if (row_hi[r] > row_lo[r])
            kv_begin = min(kv_begin, row_lo[r]), kv_end = max(kv_end, row_hi[r]);

    /* Step 1's key and rows. */
    const int j1 = w % CO_TK, g1 = w / CO_TK;
    pa_var va1[CO_RPT];
    long lo1[CO_RPT], hi1[CO_RPT], i1[CO_RPT];
    int seen1 = 0;
    for (int x = 0; x < CO_RPT; x++) {
        const int r = g1 + CO_RG * x;
        const int ok = r < nrows;
        i1[x] = r / group;
        va1[x] = CO_VAR(hk * group + (ok ? r % group : 0));
        lo1[x] = row_lo[r];
        hi1[x] = row_hi[r];
    }
    const int vec_k = HEAD_DIM % 8 == 0 && k_st.s3 == 1;
    /* Step 2's row and lane. */
    const int r2 = w / CO_T, t2 = w % CO_T;
    float m_run = -INFINITY, l_part = 0.0f;
    /* Step 3's columns and key lane. */
    const int c3 = w % CO_NC, kl = w / CO_NC, pv_on = kl < CO_KL;
    const int vec_v = HEAD_DIM_V % CO_VW == 0 && v_st.s3 == 1;
    CO_FV acc[CO_R];
    for (int r = 0; r < CO_R; r++)
        acc[r] = (CO_FV)(0.0f);
#if CO_BATCH
    /* Step 3's batched loads: aligned unit-stride V rows; the batch and which keys it holds. */
    const int vbat = pv_on && vec_v && v_al;
    CO_RAWV vraw[CO_VB];
    uint vmask = 0;
#endif

    for (long key0 = kv_begin; key0 < kv_end; key0 += CO_TK) {
        {
            const long key = key0 + j1;
            float dot[CO_RPT];
            for (int x = 0; x < CO_RPT; x++)
                dot[x] = 0.0f;
            const long kro = key < kv_end ? pa_key_row(&s, hk, key, k_st, PA_SRV_ARGS) : -1;
            if (g1 == 0) vrow[j1] = key < kv_end ? pa_key_row(&s, hk, key, v_st, PA_SRV_ARGS) : -1;
            if (kro >= 0) {
                __global const STORAGE *kr = k + k_off + kro;
#if CO_BATCH && HEAD_DIM % 8 == 0
                if (vec_k && k_al) {
                    float8 a8[CO_RPT];
                    for (int x = 0; x < CO_RPT; x++)
                        a8[x] = (float8)(0.0f);
                    for (int d0 = 0; d0 < HEAD_DIM; d0 += 8 * CO_KCH) {
                        CO_RAW8 raw[CO_KCH]; /* every load of the batch issued first */
#pragma unroll
                        for (int c = 0; c < CO_KCH; c++)
                            raw[c] = CO_AT(CO_RAW8, kr, d0 + 8 * c);
#pragma unroll
                        for (int c = 0; c < CO_KCH; c++) {
                            const float8 kk = co_cvt8(raw[c]);
                            for (int x = 0; x < CO_RPT; x++)
                                a8[x] = fma(*(__local const float8 *)(qs + (g1 + CO_RG * x) *
                                                                              HEAD_DIM +
                                                                      d0 + 8 * c),
                                            kk, a8[x]);
                        }
                    }
                    for (int x = 0; x < CO_RPT; x++) {
                        const float4 t4 = a8[x].lo + a8[x].hi;
                        dot[x] = (t4.x + t4.y) + (t4.z + t4.w);
                    }
                } else
#endif
                if (vec_k) {
                    float8 a8[CO_RPT];
                    for (int x = 0; x < CO_RPT; x++)
                        a8[x] = (float8)(0.0f);
                    for (int d = 0; d < HEAD_DIM; d += 8) {
                        const float8 kk = co_load8(kr, d, k_al);
                        for (int x = 0; x < CO_RPT; x++)
                            a8[x] = fma(vload8(0, qs + (g1 + CO_RG * x) * HEAD_DIM + d), kk, a8[x]);
                    }
                    for (int x = 0; x < CO_RPT; x++) {
                        const float4 t4 = a8[x].lo + a8[x].hi;
                        dot[x] = (t4.x + t4.y) + (t4.z + t4.w);
                    }
                } else {
                    for (int d = 0; d < HEAD_DIM; d++) {
                        const float kk = LOAD(kr, d * k_st.s3);
                        for (int x = 0; x < CO_RPT; x++)
                            dot[x] = fma(qs[(g1 + CO_RG * x) * HEAD_DIM + d], kk, dot[x]);
                    }
                }
            }
            for (int x = 0; x < CO_RPT; x++) {
                float sc = -INFINITY;
                if (key >= lo1[x] && key < hi1[x]) {
                    float dcap;
                    int sn = 0;
                    sc = pa_var_score(&va1[x], dot[x], i1[x], key, &sn, &dcap);
                    seen1 |= sn << x;
                }
                ss[(g1 + CO_RG * x) * CO_SP + j1] = sc;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        const int nk = (int)min((long)CO_TK, kv_end - key0);
#if CO_BATCH
        /* The first batch of V rows in flight while step 2 runs. */
        if (vbat) vmask = co_vload(vraw, vrow, kl, nk, v + v_off, c3);
#endif
        {
            float bm = -INFINITY;
            for (int j = t2; j < CO_TK; j += CO_T)
                bm = fmax(bm, ss[r2 * CO_SP + j]);
            red[w] = bm;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        {
            float bm = -INFINITY;
            for (int u = 0; u < CO_T; u++)
                bm = fmax(bm, red[r2 * CO_T + u]);
            const float m_new = fmax(m_run, bm), m_use = m_new == -INFINITY ? 0.0f : m_new;
            const float alpha = exp2(m_run - m_use);
            m_run = m_new;
            float sum = 0.0f;
            for (int j = t2; j < CO_TK; j += CO_T) {
                const float p = exp2(ss[r2 * CO_SP + j] - m_use);
                ss[r2 * CO_SP + j] = p;
                sum += p;
            }
            l_part = l_part * alpha + sum;
            if (t2 == 0) row_f[r2] = alpha;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        if (pv_on) {
            for (int r = 0; r < CO_R; r++)
                acc[r] *= row_f[r];
#if CO_BATCH
            if (vbat) {
                for (int j0 = kl; j0 < nk; j0 += CO_KL * CO_VB) {
                    if (j0 != kl) vmask = co_vload(vraw, vrow, j0, nk, v + v_off, c3);
#pragma unroll
                    for (int u = 0; u < CO_VB; u++) {
                        const CO_FV vv = (vmask >> u) & 1 ? co_cvtv(vraw[u]) : (CO_FV)(0.0f);
                        const int j = min(j0 + u * CO_KL, CO_TK - 1); /* masked past nk */
                        for (int r = 0; r < CO_R; r++)
                            acc[r] = fma((CO_FV)(ss[r * CO_SP + j]), vv, acc[r]);
                    }
                }
            } else
#endif
            for (int j = kl; j < nk; j += CO_KL) {
                const long vro = vrow[j];
                if (vro < 0) continue;
                __global const STORAGE *vr = v + v_off + vro;
                const CO_FV vv = vec_v ? co_loadv(vr, (long)c3 * CO_VW, v_al)
                                       : co_loadv_any(vr, (long)c3 * CO_VW, v_st.s3);
                for (int r = 0; r < CO_R; r++)
                    acc[r] = fma((CO_FV)(ss[r * CO_SP + j]), vv, acc[r]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    /* Row totals: sum of the partial sums, whether a pair was seen, the output factor. */
    for (int x = 0; x < CO_RPT; x++)
        if ((seen1 >> x) & 1) atomic_or(&row_seen[g1 + CO_RG * x], 1);
    red[w] = l_part;
    if (t2 == 0) row_m[r2] = m_run;
    barrier(CLK_LOCAL_MEM_FENCE);
    if (w < CO_R && w < nrows) {
        float l = 0.0f, m = row_m[w];
        for (int u = 0; u < CO_T; u++)
            l += red[w * CO_T + u];
        const int seen = row_seen[w];
        const long i = w / group, h = hk * group + w % group;
        if (n_splits > 1) {
            const long prow = ((split * batch + b) * heads_q + h) * max_q + i;
            row_f[w] = pa_row_inv(l, seen) * o_scale;
            part[part_off + n_splits * batch * heads_q * max_q * HEAD_DIM_V + prow] =
                pa_row_lse(m * PA_LN2 + log(l), l, seen);
        } else {
            pa_var va = CO_VAR(h);
            const float fold = pa_var_sink_fold2(&va, &m, &l);
            row_f[w] = pa_row_inv(l, seen) * fold * o_scale;
            if (want_lse)
                lse[lse_off + pa_lse_index(&s, h, i, heads_q, varlen_q, total_q)] =
                    pa_row_lse(m * PA_LN2 + log(l), l, seen);
        }
    }
    /* The key lanes' accumulators summed into lane 0 through local memory. */
    __local float *ob = big;
    for (int x = CO_KL - 1; x >= 1; x--) {
        if (pv_on && kl == x)
            for (int r = 0; r < CO_R; r++) {
                __local float *t = ob + (r * CO_NC + c3) * CO_VW;
                CO_STOREF(x == CO_KL - 1 ? acc[r] : acc[r] + CO_LOADF(t), t);
            }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (CO_KL == 1) barrier(CLK_LOCAL_MEM_FENCE);
    if (!pv_on || kl != 0) return;
    for (int r = 0; r < CO_R && r < nrows; r++) {
        CO_FV out = acc[r];
        if (CO_KL > 1) out += CO_LOADF(ob + (r * CO_NC + c3) * CO_VW);
        out *= row_f[r];
        float t[CO_VW];
        CO_STOREF(out, t);
        const long i = r / group, h = hk * group + r % group;
        if (n_splits > 1) {
            const long prow = ((split * batch + b) * heads_q + h) * max_q + i;
            __global float *po = part + part_off + prow * HEAD_DIM_V;
            for (int e = 0; e < CO_VW; e++)
                if (c3 * CO_VW + e < HEAD_DIM_V) po[c3 * CO_VW + e] = t[e];
        } else {
            __global OSTORAGE *orow = o + o_off + pa_q_row(&s, h, i, o_st, varlen_q);
            for (int e = 0; e < CO_VW; e++)
                if (c3 * CO_VW + e < HEAD_DIM_V) OSTORE(orow, (c3 * CO_VW + e) * o_st.s3, t[e]);
        }
    }
}
