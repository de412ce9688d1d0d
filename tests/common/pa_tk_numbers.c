/*
 * Random numbers, dtype conversions and tolerances of the test kit.
 *
 * Tolerances (pa_tk_tolerance_for), relative to max|ref O| because O is a convex
 * combination of V rows, so its scale is that of V; an element-wise relative error would
 * blow up on outputs that average to ~0:
 *   f32   1e-4: devices accumulate in f32 (unit roundoff 6e-8); an exp / division /
 *         reduction-order difference stays ~1e-6, so 1e-4 passes honest kernels yet
 *         catches TF32 GEMMs (10-bit mantissa, ~1e-3) and lost terms.
 *   f16   5e-3: inputs are the same rounded values on both sides; O is rounded to f16
 *         (2^-11 = 4.9e-4 relative) and kernels may round P to f16 before P V (another
 *         ~4.9e-4); 10x margin.
 *   bf16  3e-2: the same with an 8-bit significand (2^-8 = 3.9e-3 per rounding).
 * Plus a conditioning term: the f32 scores themselves carry an error of about
 * eps_s = 2^-24 * scale * head_dim * max|q| * max|k| (a ~4x over-estimate of the random
 * walk of a length-head_dim dot product), and softmax turns a score error eps_s into at
 * most 2 * eps_s * max|V| in O.  Negligible at magnitude 1, it matters for the x30
 * cases, where scores are in the hundreds and exp() amplifies every ulp.
 */

#include "pa_tk_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- random numbers ---- */

void pa_tk_rng_seed(pa_tk_rng *rng, uint64_t seed) { rng->state = seed; }

uint64_t pa_tk_rng_next(pa_tk_rng *rng)
{
    uint64_t z = (rng->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double pa_tk_rng_uniform(pa_tk_rng *rng)
{
    /* 53 random bits -> [0, 1) -> [-1, 1) */
    return (double)(pa_tk_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0) * 2.0 - 1.0;
}

uint64_t pa_tk_hash(const char *text, uint64_t salt)
{
    uint64_t h = 1469598103934665603ull ^ (salt * 0x9E3779B97F4A7C15ull); /* FNV-1a */
    for (; text && *text; text++) {
        h ^= (unsigned char)*text;
        h *= 1099511628211ull;
    }
    return h;
}

/* ---- conversions: written with frexp/nearbyint, deliberately not with the bit tricks
 * the core uses, so that a test can compare the two ---- */

uint16_t pa_tk_f32_to_f16(float x)
{
    const uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x), mant;
    int e;
    if (isnan(x)) return sign | 0x7E00;
    if (a >= 65520.0) /* halfway between 65504 and 2^16 ties to even: infinity */
        return sign | 0x7C00;
    if (a < ldexp(1.0, -14)) /* subnormal: multiples of 2^-24; 1024 carries to 2^-14 */
        return (uint16_t)(sign | (uint16_t)nearbyint(ldexp(a, 24)));
    (void)frexp(a, &e); /* a = f * 2^e, f in [0.5, 1) */
    e -= 1;             /* a = s * 2^e, s in [1, 2) */
    mant = nearbyint((ldexp(a, -e) - 1.0) * 1024.0);
    if (mant >= 1024.0) {
        mant = 0.0;
        e += 1;
    }
    if (e + 15 >= 31) return sign | 0x7C00;
    return (uint16_t)(sign | (uint16_t)((e + 15) << 10) | (uint16_t)mant);
}

float pa_tk_f16_to_f32(uint16_t h)
{
    const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double v;
    if (e == 0) v = ldexp((double)m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexp(1.0 + m / 1024.0, e - 15);
    return (float)((h & 0x8000) ? -v : v);
}

uint16_t pa_tk_f32_to_bf16(float x)
{
    const uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x), mant;
    int e;
    if (isnan(x)) return sign | 0x7FC0;
    if (isinf(x)) return sign | 0x7F80;
    if (a < ldexp(1.0, -126)) /* f32 subnormal: multiples of 2^-133 */
        return (uint16_t)(sign | (uint16_t)nearbyint(ldexp(a, 133)));
    (void)frexp(a, &e);
    e -= 1;
    mant = nearbyint((ldexp(a, -e) - 1.0) * 128.0);
    if (mant >= 128.0) {
        mant = 0.0;
        e += 1;
    }
    if (e + 127 >= 255) return sign | 0x7F80;
    return (uint16_t)(sign | (uint16_t)((e + 127) << 7) | (uint16_t)mant);
}

float pa_tk_bf16_to_f32(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

float pa_tk_e4m3_to_f32(uint8_t x)
{
    const int s = x >> 7, e = (x >> 3) & 15, m = x & 7;
    if (e == 15 && m == 7) return NAN;
    /* (-1)^s x 2^(1 - 7) x m / 8 (subnormal) or (-1)^s x 2^(e - 7) x (1 + m / 8) */
    const double v = e == 0 ? pow(2.0, -6) * m / 8.0 : pow(2.0, e - 7) * (1.0 + m / 8.0);
    return (float)(s ? -v : v);
}

uint8_t pa_tk_f32_to_e4m3(float x)
{
    const uint8_t sign = signbit(x) ? 0x80 : 0;
    if (isnan(x) || fabs((double)x) > 464.0) return (uint8_t)(sign | 0x7f);
    int best = 0;
    double best_d = INFINITY;
    for (int c = 0; c < 0x7f; c++) { /* 0 .. 0x7e: the finite magnitudes, increasing */
        const double d = fabs(fabs((double)x) - pa_tk_e4m3_to_f32((uint8_t)c));
        if (d < best_d || (d == best_d && (c & 1) == 0)) best = c, best_d = d;
    }
    return (uint8_t)(sign | best);
}

float pa_tk_round(float x, polyattn_dtype dtype)
{
    switch (dtype) {
    case POLYATTN_DTYPE_E4M3: return pa_tk_e4m3_to_f32(pa_tk_f32_to_e4m3(x));
    case POLYATTN_DTYPE_F16: return pa_tk_f16_to_f32(pa_tk_f32_to_f16(x));
    case POLYATTN_DTYPE_BF16: return pa_tk_bf16_to_f32(pa_tk_f32_to_bf16(x));
    default: return x;
    }
}

void pa_tk_encode(void *dst, const float *src, size_t n, polyattn_dtype dtype)
{
    size_t i;
    if (dtype == POLYATTN_DTYPE_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    if (dtype == POLYATTN_DTYPE_E4M3) {
        for (i = 0; i < n; i++)
            ((unsigned char *)dst)[i] = pa_tk_f32_to_e4m3(src[i]);
        return;
    }
    for (i = 0; i < n; i++) {
        uint16_t h =
            dtype == POLYATTN_DTYPE_F16 ? pa_tk_f32_to_f16(src[i]) : pa_tk_f32_to_bf16(src[i]);
        memcpy((unsigned char *)dst + 2 * i, &h, 2);
    }
}

void pa_tk_decode(float *dst, const void *src, size_t n, polyattn_dtype dtype)
{
    size_t i;
    if (dtype == POLYATTN_DTYPE_F32) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    if (dtype == POLYATTN_DTYPE_E4M3) {
        for (i = 0; i < n; i++)
            dst[i] = pa_tk_e4m3_to_f32(((const unsigned char *)src)[i]);
        return;
    }
    for (i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, (const unsigned char *)src + 2 * i, 2);
        dst[i] = dtype == POLYATTN_DTYPE_F16 ? pa_tk_f16_to_f32(h) : pa_tk_bf16_to_f32(h);
    }
}

/* Quiet NaNs with a recognizable payload: an untouched gap still holds exactly these. */
void pa_tk_poison(void *dst, size_t n, polyattn_dtype dtype)
{
    size_t i;
    if (dtype == POLYATTN_DTYPE_F32) {
        const uint32_t pat = 0x7FC5A5A5u;
        for (i = 0; i < n; i++)
            memcpy((unsigned char *)dst + 4 * i, &pat, 4);
    } else if (dtype == POLYATTN_DTYPE_E4M3) {
        memset(dst, 0x7f, n); /* e4m3's NaN */
    } else {
        const uint16_t pat = dtype == POLYATTN_DTYPE_F16 ? 0x7E5A : 0x7FC5;
        for (i = 0; i < n; i++)
            memcpy((unsigned char *)dst + 2 * i, &pat, 2);
    }
}

pa_tk_tolerance pa_tk_tolerance_for(polyattn_dtype dtype)
{
    pa_tk_tolerance t;
    switch (dtype) {
    case POLYATTN_DTYPE_F16: t.o_rel = 5e-3, t.lse_rel = 1e-3, t.probs_abs = 1e-3; break;
    case POLYATTN_DTYPE_BF16: t.o_rel = 3e-2, t.lse_rel = 8e-3, t.probs_abs = 8e-3; break;
    default:
        /* LSE and P see only the f32 scores: no output rounding on top. */
        t.o_rel = 1e-4, t.lse_rel = 2e-5, t.probs_abs = 1e-5;
        break;
    }
    return t;
}
