/* Score variants (polyattn.h): sliding window, softcap, ALiBi, additive bias, attn_mask and
 * sinks.  The host adds this file after common.cl, and -DPA_VAR with one flag per variant,
 * only for plans that need them: plain plans keep their exact kernels.
 *   PA_WINDOW, PA_SOFTCAP, PA_ALIBI, PA_AMASK, PA_SINKS: on when defined;
 *   PA_BIAS=0/1/2: the bias dtype (f32, f16, bf16), undefined without a bias;
 *   PA_BIAS_GRAD: the backward writes dS of each pair for the bias gradient.
 * Kernels take PA_VAR_PARAMS after their usual arguments (va_mat0: the first (batch, head)
 * matrix of a launch that covers a range of them) and call PA_VAR_INIT(va, b, h, dom) once: dom is the score domain (LOG2E for the exp2 kernels, 1 for natural logs), by which
 * softcap, slopes, bias and sinks are scaled so the kernels keep their arithmetic.
 * Score order: scale, softcap, + ALiBi + bias, then the masks (causal, window, attn_mask). */

#if defined(PA_BIAS)
#if PA_BIAS == 0
#define BIAS_STORAGE float
#define BIAS_LOAD(p, i) ((p)[(i)])
#elif PA_BIAS == 1
#define BIAS_STORAGE half
#define BIAS_LOAD(p, i) vload_half((size_t)(i), (p))
#else
#define BIAS_STORAGE ushort
#define BIAS_LOAD(p, i) as_float(((uint)(p)[(i)]) << 16)
#endif
#else
#define BIAS_STORAGE float
#endif

#define PA_VAR_PARAMS                                                                       \
    , __global const float *va_slopes, long va_slopes_off, int va_slopes_per_batch,         \
        __global const BIAS_STORAGE *va_bias, long va_bias_off, long4 va_bias_st,           \
        __global const uchar *va_mask, long va_mask_off, long4 va_mask_st,                  \
        __global const float *va_sinks, long va_sinks_off, long va_wl, long va_wr,         \
        float va_softcap, long va_diag, int va_heads_q, long va_mat0

/* One (batch, head)'s view of the variants. */
typedef struct pa_var {
    __global const BIAS_STORAGE *bias; /* at (b, h) */
    __global const uchar *mask;        /* at (b, h) */
    long bias_i, bias_j, mask_i, mask_j;
    long wl, wr, diag; /* window sides (-1 unbounded); d(i) = i + diag */
    float softcap;     /* in the kernel's domain; 0 off */
    float slope;       /* -slope x dom */
    float sink;        /* x dom; -inf without sinks */
    float dom;
} pa_var;

inline pa_var pa_var_make(long b, long h, long heads_q, float dom, __global const float *slopes,
                          long slopes_off, int per_batch, __global const BIAS_STORAGE *bias,
                          long bias_off, long4 bias_st, __global const uchar *mask,
                          long mask_off, long4 mask_st, __global const float *sinks,
                          long sinks_off, long wl, long wr, float softcap, long diag)
{
    pa_var va;
    va.bias = bias + bias_off + b * bias_st.s0 + h * bias_st.s1;
    va.mask = mask + mask_off + b * mask_st.s0 + h * mask_st.s1;
    va.bias_i = bias_st.s2;
    va.bias_j = bias_st.s3;
    va.mask_i = mask_st.s2;
    va.mask_j = mask_st.s3;
    va.wl = wl;
    va.wr = wr;
    va.diag = diag;
    va.softcap = softcap * dom;
    va.dom = dom;
#ifdef PA_ALIBI
    va.slope = -slopes[slopes_off + (per_batch ? b * heads_q : 0) + h] * dom;
#else
    va.slope = 0.0f;
#endif
#ifdef PA_SINKS
    va.sink = sinks[sinks_off + h] * dom;
#else
    va.sink = -INFINITY;
#endif
    (void)slopes;
    (void)slopes_off;
    (void)per_batch;
    (void)sinks;
    (void)sinks_off;
    return va;
}

#define PA_VAR_INIT(va, b, h, dom)                                                           \
    pa_var va = pa_var_make(b, h, va_heads_q, dom, va_slopes, va_slopes_off, va_slopes_per_batch, \
                            va_bias, va_bias_off, va_bias_st, va_mask, va_mask_off,         \
                            va_mask_st, va_sinks, va_sinks_off, va_wl, va_wr, va_softcap,   \
                            va_diag)

/* Keys [*lo, hi) that the causal mask and the window leave to query i (pa_visible_range). */
inline long pa_var_range(const pa_var *va, long i, int causal, long seq_kv, long *lo)
{
    const long d = i + va->diag;
    long a = 0, e = seq_kv;
    if (causal && d + 1 < e) e = d + 1;
#ifdef PA_WINDOW
    if (va->wl >= 0 && d - va->wl > a) a = d - va->wl;
    if (va->wr >= 0 && d + va->wr + 1 < e) e = d + va->wr + 1;
#endif
    if (e < 0) e = 0;
    if (a > seq_kv) a = seq_kv;
    *lo = a;
    return e > a ? e : a;
}

/* Queries [*q_lo, return) that see one of the keys [k_first, k_last] (causal + window):
 * a query sees key j when d(i) - wl <= j (<= d(i) + wr, <= d(i) under causal). */
inline long pa_var_queries(const pa_var *va, long k_first, long k_last, int causal, long seq_q,
                           long *q_lo)
{
    long a = 0, e = seq_q;
    if (causal) a = max(a, k_first - va->diag);
#ifdef PA_WINDOW
    if (va->wr >= 0) a = max(a, k_first - va->wr - va->diag);
    if (va->wl >= 0) e = min(e, k_last + va->wl - va->diag + 1);
#endif
    if (a > seq_q) a = seq_q;
    *q_lo = a;
    return e > a ? e : a;
}

/* Softcap of a score x (kernel domain); *dcap = its derivative (1 - tanh^2) for the backward. */
inline float pa_var_cap(const pa_var *va, float x, float *dcap)
{
#ifdef PA_SOFTCAP
    const float t = tanh(x / va->softcap);
    *dcap = 1.0f - t * t;
    return va->softcap * t;
#else
    (void)va;
    *dcap = 1.0f;
    return x;
#endif
}

/* The final score of pair (i, j) from its scaled score x (kernel domain), j inside the
 * causal/window range; -inf where attn_mask masks it.  *seen = 0 when the pair is masked
 * (attn_mask, or a bias of -inf), else 1: a row with no pair seen is fully masked. */
inline float pa_var_score(const pa_var *va, float x, long i, long j, int *seen, float *dcap)
{
    float s = pa_var_cap(va, x, dcap);
#ifdef PA_ALIBI
    const long dist = i + va->diag - j;
    s += va->slope * (float)(dist < 0 ? -dist : dist);
#endif
    *seen = 1;
#ifdef PA_BIAS
    const float bv = BIAS_LOAD(va->bias, i * va->bias_i + j * va->bias_j);
    if (bv == -INFINITY) *seen = 0;
    s += bv * va->dom;
#endif
#ifdef PA_AMASK
    if (!va->mask[i * va->mask_i + j * va->mask_j]) {
        *seen = 0;
        s = -INFINITY;
    }
#endif
    return s;
}

/* Folds the sink into a finished row (m, l in the kernel's domain, exp2 or exp by EXPF):
 * returns the factor for the output accumulators; m and l become the row's totals. */
#define PA_DEFINE_SINK_FOLD(NAME, EXPF)                                                     \
    inline float NAME(const pa_var *va, float *m, float *l)                                  \
    {                                                                                        \
        const float ms = fmax(*m, va->sink);                                                 \
        const float mu = ms == -INFINITY ? 0.0f : ms;                                        \
        const float a = EXPF(*m - mu);                                                       \
        *l = *l * a + EXPF(va->sink - mu);                                                   \
        *m = ms;                                                                             \
        return a;                                                                            \
    }
PA_DEFINE_SINK_FOLD(pa_var_sink_fold2, exp2)
PA_DEFINE_SINK_FOLD(pa_var_sink_fold, exp)
