/* unfused helpers around the CLBlast GEMMs: the masked row softmax over the scores,
 * and packing between strided f32/f16/bf16 tensors and contiguous f32 copies. */

#ifndef SM_WG
#define SM_WG 128
#endif

inline float pa_wg_reduce(float x, __local float *red, int is_max)
{
    const int lid = get_local_id(0);
    red[lid] = x;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int half_n = SM_WG / 2; half_n > 0; half_n >>= 1) {
        if (lid < half_n) red[lid] = is_max ? fmax(red[lid], red[lid + half_n]) : red[lid] + red[lid + half_n];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float r = red[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return r;
}

/* One work-group per score row (already scaled by the GEMM): mask, exact softmax in
 * place (masked keys become 0), log-sum-exp.  Variant builds (PA_VAR) apply softcap, ALiBi,
 * bias, window and attn_mask to the scores and put the sink in the denominator. */
__kernel __attribute__((reqd_work_group_size(SM_WG, 1, 1))) void softmax_rows_kernel(
    __global float *s, long s_off, int seq_q, int seq_kv, int causal, int causal_offset,
    __global float *lse, long lse_off, int want_lse PA_VAR_PARAMS)
{
    __local float red[SM_WG];
    const int lid = get_local_id(0);
    const long row = get_group_id(0);
    __global float *sr = s + s_off + row * seq_kv;
#ifdef PA_VAR
    const long mat = va_mat0 + row / seq_q, qi = row % seq_q;
    PA_VAR_INIT(va, mat / va_heads_q, mat % va_heads_q, 1.0f);
    long lo;
    const long vis = pa_var_range(&va, qi, causal, seq_kv, &lo);
    float seen = 0.0f;
    for (long c = lo + lid; c < vis; c += SM_WG) {
        float x = sr[c], dcap;
        int sn;
        if (fabs(x) > PA_SCORE_MAX) x = copysign(INFINITY, x);
        sr[c] = pa_var_score(&va, x, qi, c, &sn, &dcap);
        if (sn) seen = 1.0f;
    }
    (void)causal_offset;
#else
    const long lo = 0;
    const long vis = pa_visible(row % seq_q, causal, causal_offset, seq_kv);
    /* Scores beyond FLT_MAX / log2(e) count as +-inf, as in the exp2-domain kernels. */
    for (long c = lid; c < vis; c += SM_WG)
        if (fabs(sr[c]) > PA_SCORE_MAX) sr[c] = copysign(INFINITY, sr[c]);
#endif
    barrier(CLK_GLOBAL_MEM_FENCE);
    float mx = -INFINITY;
    for (long c = lo + lid; c < vis; c += SM_WG) mx = fmax(mx, sr[c]);
    mx = pa_wg_reduce(mx, red, 1);
#ifdef PA_VAR
    const long seen_keys = pa_wg_reduce(seen, red, 1) > 0.0f ? 1 : 0;
    mx = fmax(mx, va.sink);
#else
    const long seen_keys = vis;
#endif
    float m_use = mx == -INFINITY ? 0.0f : mx;
    float sum = 0.0f;
    for (long c = lo + lid; c < vis; c += SM_WG) sum += exp(sr[c] - m_use);
    sum = pa_wg_reduce(sum, red, 0);
#ifdef PA_VAR
    sum += exp(va.sink - m_use);
#endif
    float inv = pa_row_inv(sum, seen_keys);
    for (long c = lid; c < seq_kv; c += SM_WG)
        sr[c] = c >= lo && c < vis ? exp(sr[c] - m_use) * inv : 0.0f;
    if (want_lse && lid == 0) lse[lse_off + row] = pa_row_lse(mx + log(sum), sum, seen_keys);
}

/* dst (f32, contiguous [d0][d1][d2][d3]) = src (storage dtype, strided). */
__kernel void pack_f32_kernel(__global const STORAGE *src, long src_off, long4 st, long4 dims,
                              __global float *dst, long dst_off)
{
    long n = dims.s0 * dims.s1 * dims.s2 * dims.s3;
    for (long i = get_global_id(0); i < n; i += get_global_size(0)) {
        long x3 = i % dims.s3, t = i / dims.s3;
        long x2 = t % dims.s2;
        t /= dims.s2;
        long x1 = t % dims.s1, x0 = t / dims.s1;
        dst[dst_off + i] = LOAD(src, src_off + x0 * st.s0 + x1 * st.s1 + x2 * st.s2 + x3 * st.s3);
    }
}

/* dst (storage dtype, strided) = src (f32, contiguous). */
__kernel void unpack_f32_kernel(__global const float *src, long src_off, __global STORAGE *dst,
                                long dst_off, long4 st, long4 dims)
{
    long n = dims.s0 * dims.s1 * dims.s2 * dims.s3;
    for (long i = get_global_id(0); i < n; i += get_global_size(0)) {
        long x3 = i % dims.s3, t = i / dims.s3;
        long x2 = t % dims.s2;
        t /= dims.s2;
        long x1 = t % dims.s1, x0 = t / dims.s1;
        STORE(dst, dst_off + x0 * st.s0 + x1 * st.s1 + x2 * st.s2 + x3 * st.s3, src[src_off + i]);
    }
}
