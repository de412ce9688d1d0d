/* Shared by every polyattn OpenCL kernel: storage types and the tile helpers.
 * The host prepends this file to each kernel source and defines, with -D:
 *   PA_DTYPE   the inputs' (q, k, v): 0 f32, 1 f16 (vload_half/vstore_half: no cl_khr_fp16
 *              needed), 2 bf16, 4 e4m3 (OCP e4m3fn bytes, forward only: no STORE)
 *   PA_ODTYPE  o's (0, 1 or 2); PA_DTYPE when absent.  Only e4m3 inputs make them differ.
 * Arithmetic is always float. */

#ifndef PA_DTYPE
#define PA_DTYPE 0
#endif
#ifndef PA_ODTYPE
#define PA_ODTYPE PA_DTYPE
#endif

/* bf16 = upper half of an f32, rounded to nearest even; NaN stays NaN. */
inline ushort pa_f32_to_bf16(float x)
{
    uint u = as_uint(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (ushort)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (ushort)(u >> 16);
}

/* e4m3 (bias 7) to float, exactly: exponent 1-15 rebiased into an f32 (1 + m/8) x 2^(e-7);
 * exponent 0 is m x 2^-9 (built without f32 subnormals, which some devices flush);
 * S.1111.111 is NaN (no infinities). */
inline float pa_e4m3_to_f32(uchar x)
{
    const uint mag = x & 0x7fu;
    float f = mag < 8u ? (float)mag * 0.001953125f : as_float((mag << 20) + (120u << 23));
    f = mag == 0x7fu ? NAN : f;
    return as_float(as_uint(f) | ((uint)(x & 0x80u) << 24));
}
inline float8 pa_e4m3x8_to_f32(uchar8 x)
{
    return (float8)(pa_e4m3_to_f32(x.s0), pa_e4m3_to_f32(x.s1), pa_e4m3_to_f32(x.s2),
                    pa_e4m3_to_f32(x.s3), pa_e4m3_to_f32(x.s4), pa_e4m3_to_f32(x.s5),
                    pa_e4m3_to_f32(x.s6), pa_e4m3_to_f32(x.s7));
}

#if PA_DTYPE == 0
#define STORAGE float
#define LOAD(p, i) ((p)[(i)])
#define STORE(p, i, x) ((p)[(i)] = (x))
#elif PA_DTYPE == 1
#define STORAGE half
#define LOAD(p, i) vload_half((size_t)(i), (p))
#define STORE(p, i, x) vstore_half_rte((x), (size_t)(i), (p))
#elif PA_DTYPE == 2
#define STORAGE ushort
#define LOAD(p, i) as_float(((uint)(p)[(i)]) << 16)
#define STORE(p, i, x) ((p)[(i)] = pa_f32_to_bf16(x))
#elif PA_DTYPE == 4
#define STORAGE uchar
#define LOAD(p, i) pa_e4m3_to_f32((p)[(i)])
#else
#error "PA_DTYPE: 0 f32, 1 f16, 2 bf16 or 4 e4m3"
#endif

/* o: OSTORAGE elements written with OSTORE. */
#if PA_ODTYPE == 0
#define OSTORAGE float
#define OSTORE(p, i, x) ((p)[(i)] = (x))
#elif PA_ODTYPE == 1
#define OSTORAGE half
#define OSTORE(p, i, x) vstore_half_rte((x), (size_t)(i), (p))
#elif PA_ODTYPE == 2
#define OSTORAGE ushort
#define OSTORE(p, i, x) ((p)[(i)] = pa_f32_to_bf16(x))
#else
#error "PA_ODTYPE: 0 f32, 1 f16 or 2 bf16"
#endif

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
