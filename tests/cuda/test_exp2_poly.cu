/*
 * The Hopper kernel's FMA-pipe exp2 (pa_wg::exp2_poly, wgmma_sm90.cuh; cuda.hopper_exp2=poly)
 * on the host, the same arithmetic as on the device: relative error at most 1.1e-4 against
 * exp2 in double where the result is a normal float, [-125, 8] (the polynomial's bound is
 * 1.0e-4, below f16's rounding of P); in [-127, -125) a result in [0, 2^-124] (MUFU's
 * ex2.approx.ftz flushes there: both are 0 beside any weight a softmax keeps); 0 below -127
 * and for -inf, NaN for NaN, exactly 1 at 0.  Runs wherever the CUDA backend builds, CI
 * included.
 */
#include "wgmma_sm90.cuh"

#include <cmath>
#include <cstdio>

int main()
{
    int bad = 0, checks = 0;
    double worst = 0;
    for (int i = 0; i <= 1350000; ++i) { /* steps of 1e-4 over [-127, 8] */
        const float x = -127.f + 1e-4f * (float)i;
        if (x > 8.f) break;
        const double want = std::exp2((double)x), got = pa_wg::exp2_poly(x);
        ++checks;
        if (x < -125.f) { /* below the normal floats' range */
            if (!(got >= 0 && got <= std::ldexp(1.0, -124)) && bad++ < 5)
                std::printf("FAIL exp2_poly(%.7g) = %.9g, want 0 .. 2^-124\n", x, got);
            continue;
        }
        const double rel = std::fabs(got - want) / want;
        worst = rel > worst ? rel : worst;
        if (!(rel <= 1.1e-4) && bad++ < 5)
            std::printf("FAIL exp2_poly(%.7g) = %.9g, want %.9g\n", x, got, want);
    }
    const float specials[4] = {-INFINITY, -1000.f, 0.f, NAN};
    const float expect[4] = {0.f, 0.f, 1.f, NAN};
    for (int i = 0; i < 4; ++i) {
        const float got = pa_wg::exp2_poly(specials[i]);
        ++checks;
        if (!(got == expect[i] || (std::isnan(got) && std::isnan(expect[i])))) {
            std::printf("FAIL exp2_poly(%g) = %g, want %g\n", specials[i], got, expect[i]);
            bad++;
        }
    }
    std::printf("test_exp2_poly: %d checks, worst relative error %.3g, %d failures\n", checks,
                worst, bad);
    return bad || !checks ? 1 : 0;
}
