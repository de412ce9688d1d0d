/* float <-> f16 / bf16 / e4m3 on the host, round to nearest even, NaN and infinity kept. */
#include "pa_core.h"

#include <math.h>
#include <string.h>

static uint32_t float_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static float bits_float(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

uint16_t pa_f32_to_bf16(float x)
{
    uint32_t u = float_bits(x);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

float pa_bf16_to_f32(uint16_t h) { return bits_float((uint32_t)h << 16); }

uint16_t pa_f32_to_f16(float x)
{
    uint32_t u = float_bits(x);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  /* NaN */
    if (abs >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to infinity */
    if (abs < 0x38800000u) {                                   /* subnormal or zero */
        /* Add 0.5 (as a float) so the FPU rounds the mantissa to f16's subnormal grid. */
        float f = bits_float(abs) + 0.5f;
        return (uint16_t)(sign | (float_bits(f) - 0x3f000000u));
    }
    uint32_t mant_odd = (abs >> 13) & 1u;
    abs += 0xc8000fffu + mant_odd; /* rebias exponent (-112 << 23) and round to nearest even */
    return (uint16_t)(sign | (abs >> 13));
}

float pa_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    if (exp == 0x1f) return bits_float(sign | 0x7f800000u | (mant << 13));
    if (exp == 0) {
        /* subnormal: mant * 2^-24 is exact in float */
        float f = (float)mant * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* e4m3: exponent bias 7, subnormals mant x 2^-9, S.1111.111 NaN, no infinities. */
float pa_e4m3_to_f32(uint8_t x)
{
    const unsigned exp = (x >> 3) & 15u, mant = x & 7u;
    float mag;
    if (exp == 15u && mant == 7u) mag = NAN;
    else if (exp == 0) mag = ldexpf((float)mant, -9);
    else mag = ldexpf((float)(8u + mant), (int)exp - 10);
    return (x & 0x80u) ? -mag : mag;
}

uint8_t pa_f32_to_e4m3(float x)
{
    const uint8_t sign = signbit(x) ? 0x80u : 0u;
    const double a = fabs((double)x);
    if (isnan(x) || a > 464.0) return (uint8_t)(sign | 0x7fu); /* 464 ties down to 448 */
    if (a < 0.015625) /* below 2^-6: the subnormal grid of 2^-9; 8 steps is the least normal */
        return (uint8_t)(sign | (uint8_t)nearbyint(a * 512.0));
    int e;
    frexp(a, &e); /* a = f x 2^e, f in [0.5, 1): the quantum is 2^(e - 4) */
    double n = nearbyint(ldexp(a, 4 - e));
    if (n == 16.0) n = 8.0, e++;
    return (uint8_t)(sign | (uint8_t)((e - 1 + 7) << 3) | (uint8_t)(n - 8.0));
}
