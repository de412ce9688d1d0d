/* Shared by every polyattn OpenCL kernel: storage types and the tile helpers.
 * The host prepends this file to each kernel source and defines, with -D:
 *   PA_DTYPE   0 f32, 1 f16 (vload_half/vstore_half: no cl_khr_fp16 needed), 2 bf16
 * Arithmetic is always float. */

#ifndef PA_DTYPE
#define PA_DTYPE 0
#endif

#if PA_DTYPE == 0
#define STORAGE float
#define LOAD(p, i) ((p)[(i)])
#define STORE(p, i, x) ((p)[(i)] = (x))
#elif PA_DTYPE == 1
#define STORAGE half
#define LOAD(p, i) vload_half((size_t)(i), (p))
#define STORE(p, i, x) vstore_half_rte((x), (size_t)(i), (p))
#else
#define STORAGE ushort
#define LOAD(p, i) as_float(((uint)(p)[(i)]) << 16)
#define STORE(p, i, x) ((p)[(i)] = pa_f32_to_bf16(x))
#endif

/* bf16 = upper half of an f32, rounded to nearest even; NaN stays NaN. */
inline ushort pa_f32_to_bf16(float x)
{
    uint u = as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (ushort)(u >> 16);
}

#define PA_LOG2E 1.4426950408889634f
#define PA_LN2 0.6931471805599453f

/* The largest score whose exp2-domain value (score x log2(e)) is a finite float. */
#define PA_SCORE_MAX 2.3587511e38f

/* Row results (polyattn.h, "Non-finite values"): a row that sees no key gets O = 0 and
 * LSE = -inf; a row that sees keys but whose sum is not positive (a NaN or +inf score made it
 * NaN, or every score was -inf) gets NaN in O and LSE. */
inline float pa_row_inv(float l, long visible)
{
    return l > 0.0f ? 1.0f / l : (visible > 0 ? NAN : 0.0f);
}
inline float pa_row_lse(float lse, float l, long visible)
{
    return l > 0.0f ? lse : (visible > 0 ? NAN : -INFINITY);
}

/* Keys visible to a query: [0, pa_visible(...)).  causal 0: all; else i + 1 + offset
 * (offset 0 top-left, seq_kv - seq_q bottom-right), clamped to [0, seq_kv]. */
inline long pa_visible(long query, int causal, long offset, long seq_kv)
{
    if (!causal) return seq_kv;
    long n = query + 1 + offset;
    return n < 0 ? 0 : (n > seq_kv ? seq_kv : n);
}

/* Kernel parameters of the score variants (variants.cl); none in plain builds. */
#ifndef PA_VAR
#define PA_VAR_PARAMS
#endif
