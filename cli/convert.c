/* float32 <-> f16 / bf16 / e4m3 storage conversions, round to nearest even (the project's
 * rule). */
#include "cli.h"

#include <math.h>
#include <string.h>

static uint32_t bits_of(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    return x;
}

static float float_of(uint32_t x)
{
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* Rounds m >> shift to nearest even. */
static uint32_t shift_rne(uint32_t m, int shift)
{
    uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) r++;
    return r;
}

uint16_t pa_cli_f32_to_f16(float value)
{
    uint32_t x = bits_of(value);
    uint32_t sign = (x >> 16) & 0x8000u, a = x & 0x7fffffffu;
    if (a > 0x7f800000u)
        return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN stays NaN */
    if (a >= 0x477ff000u)                                         /* >= 65520: inf */
        return (uint16_t)(sign | 0x7c00u);
    if (a < 0x38800000u) {   /* below 2^-14: subnormal half (unit 2^-24) or zero */
        if (a < 0x33000000u) /* <= 2^-25 rounds to zero (the tie goes to even 0) */
            return (uint16_t)sign;
        uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
        return (uint16_t)(sign | shift_rne(m, (int)(126 - e)));
    }
    /* Normal: rebias 127 -> 15; a carry out of the mantissa bumps the exponent correctly. */
    uint32_t h = ((a >> 23) - 112u) << 10 | ((a >> 13) & 0x3ffu);
    uint32_t rem = a & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++;
    return (uint16_t)(sign | h);
}

float pa_cli_f16_to_f32(uint16_t value)
{
    uint32_t sign = (uint32_t)(value & 0x8000u) << 16, e = (value >> 10) & 0x1fu,
             m = value & 0x3ffu;
    if (e == 0x1f) return float_of(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        if (m == 0) return float_of(sign);
        /* Subnormal: m * 2^-24, exact in float. */
        float f = (float)m * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    return float_of(sign | ((e + 112u) << 23) | (m << 13));
}

uint16_t pa_cli_f32_to_bf16(float value)
{
    uint32_t x = bits_of(value);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

float pa_cli_bf16_to_f32(uint16_t value) { return float_of((uint32_t)value << 16); }

/* e4m3: bias 7, subnormals m x 2^-9, S.1111.111 NaN, largest finite 448. */
float pa_cli_e4m3_to_f32(uint8_t value)
{
    const unsigned e = (value >> 3) & 15u, m = value & 7u;
    const float mag = e == 15u && m == 7u ? NAN
                      : e == 0            ? ldexpf((float)m, -9)
                                          : ldexpf((float)(8u + m), (int)e - 10);
    return (value & 0x80u) ? -mag : mag;
}

uint8_t pa_cli_f32_to_e4m3(float value)
{
    const uint8_t sign = signbit(value) ? 0x80u : 0u;
    const double a = fabs((double)value);
    if (isnan(value) || a > 464.0) return (uint8_t)(sign | 0x7fu);
    if (a < 0.015625) return (uint8_t)(sign | (uint8_t)nearbyint(a * 512.0));
    int e;
    frexp(a, &e);
    double n = nearbyint(ldexp(a, 4 - e)); /* 8 .. 16 steps of 2^(e - 4) */
    if (n == 16.0) n = 8.0, e++;
    return (uint8_t)(sign | (uint8_t)((e + 6) << 3) | (uint8_t)(n - 8.0));
}

void pa_cli_from_f32(polyattn_dtype dtype, const float *src, void *dst, uint64_t count)
{
    uint16_t *h = dst;
    switch (dtype) {
    case POLYATTN_DTYPE_E4M3:
        for (uint64_t i = 0; i < count; i++)
            ((uint8_t *)dst)[i] = pa_cli_f32_to_e4m3(src[i]);
        break;
    case POLYATTN_DTYPE_F16:
        for (uint64_t i = 0; i < count; i++)
            h[i] = pa_cli_f32_to_f16(src[i]);
        break;
    case POLYATTN_DTYPE_BF16:
        for (uint64_t i = 0; i < count; i++)
            h[i] = pa_cli_f32_to_bf16(src[i]);
        break;
    default: memcpy(dst, src, count * 4); break;
    }
}

void pa_cli_to_f32(polyattn_dtype dtype, const void *src, float *dst, uint64_t count)
{
    const uint16_t *h = src;
    switch (dtype) {
    case POLYATTN_DTYPE_E4M3:
        for (uint64_t i = 0; i < count; i++)
            dst[i] = pa_cli_e4m3_to_f32(((const uint8_t *)src)[i]);
        break;
    case POLYATTN_DTYPE_F16:
        for (uint64_t i = 0; i < count; i++)
            dst[i] = pa_cli_f16_to_f32(h[i]);
        break;
    case POLYATTN_DTYPE_BF16:
        for (uint64_t i = 0; i < count; i++)
            dst[i] = pa_cli_bf16_to_f32(h[i]);
        break;
    default: memcpy(dst, src, count * 4); break;
    }
}
