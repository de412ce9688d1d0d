/*
 * The core's f16 / bf16 conversions (pa_f32_to_f16 ... in core/, used by the host
 * backend) against the testkit's independent ones: every one of the 65536 half patterns
 * decoded, and f32 -> half rounding (nearest even, overflow, subnormals, NaN) on special
 * values, on every tie, and on a million random floats.
 */
#include "pa_backend.h"
#include "pa_testkit.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int failures;

static int is_nan16(uint16_t h, int bf)
{
    return bf ? ((h & 0x7F80) == 0x7F80 && (h & 0x7F)) : ((h & 0x7C00) == 0x7C00 && (h & 0x3FF));
}

static void check_encode(float x, int bf)
{
    const uint16_t got = bf ? pa_f32_to_bf16(x) : pa_f32_to_f16(x);
    const uint16_t want = bf ? pa_tk_f32_to_bf16(x) : pa_tk_f32_to_f16(x);
    if (isnan(x) ? !is_nan16(got, bf) : got != want) {
        uint32_t u;
        memcpy(&u, &x, 4);
        if (failures < 20)
            fprintf(stderr, "%s(%.9g = 0x%08x): core 0x%04x, expected 0x%04x\n",
                    bf ? "pa_f32_to_bf16" : "pa_f32_to_f16", (double)x, u, got, want);
        failures++;
    }
}

int main(void)
{
    uint32_t i;
    pa_tk_rng rng;
    /* decoding: every pattern */
    for (i = 0; i < 65536; i++) {
        const uint16_t h = (uint16_t)i;
        float a = pa_f16_to_f32(h), b = pa_tk_f16_to_f32(h);
        float c = pa_bf16_to_f32(h), d = pa_tk_bf16_to_f32(h);
        if (!(memcmp(&a, &b, 4) == 0 || (isnan(a) && isnan(b)))) {
            if (failures < 20)
                fprintf(stderr, "pa_f16_to_f32(0x%04x) = %.9g, expected %.9g\n", h, (double)a,
                        (double)b);
            failures++;
        }
        if (!(memcmp(&c, &d, 4) == 0 || (isnan(c) && isnan(d)))) {
            if (failures < 20)
                fprintf(stderr, "pa_bf16_to_f32(0x%04x) = %.9g, expected %.9g\n", h, (double)c,
                        (double)d);
            failures++;
        }
        /* round trip: every non-NaN half value encodes back to itself */
        if (!isnan(a)) check_encode(a, 0);
        if (!isnan(c)) check_encode(c, 1);
        /* ties: the midpoint between this value and the next one up */
        if (!isnan(a) && !isinf(a) && (h & 0x7FFF) < 0x7BFF) {
            float next = pa_tk_f16_to_f32((uint16_t)(h + 1));
            check_encode((float)(((double)a + (double)next) / 2), 0);
        }
        if (!isnan(c) && !isinf(c) && (h & 0x7FFF) < 0x7F7F) {
            float next = pa_tk_bf16_to_f32((uint16_t)(h + 1));
            check_encode((float)(((double)c + (double)next) / 2), 1);
        }
    }
    /* specials */
    {
        const float specials[] = {
            0.0f,     -0.0f,           65504.0f, 65519.99f, 65520.0f, 1e6f,     -1e6f,
            INFINITY, -INFINITY,       NAN,      5.96e-8f,  2.98e-8f, 2.99e-8f, 1e-10f,
            3.4e38f,  1.17549435e-38f, 1e-45f};
        for (i = 0; i < sizeof specials / sizeof specials[0]; i++) {
            check_encode(specials[i], 0);
            check_encode(specials[i], 1);
        }
    }
    /* a million random bit patterns and a million values in the range of activations */
    pa_tk_rng_seed(&rng, 12345);
    for (i = 0; i < 1000000; i++) {
        uint32_t u = (uint32_t)pa_tk_rng_next(&rng);
        float x;
        memcpy(&x, &u, 4);
        check_encode(x, 0);
        check_encode(x, 1);
        x = (float)(pa_tk_rng_uniform(&rng) * 100.0);
        check_encode(x, 0);
        check_encode(x, 1);
    }
    if (failures) {
        fprintf(stderr, "test_dtype_conversion: %d mismatches\n", failures);
        return 1;
    }
    printf("test_dtype_conversion: core and testkit conversions agree\n");
    return 0;
}
