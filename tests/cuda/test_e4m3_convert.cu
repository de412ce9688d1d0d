/*
 * The serving kernel's e4m3 -> f16 conversion (pa_tc::e4m3x2_to_f16x2, tc_common.cuh) on the
 * host, where it takes the path sm_80 devices take (sm_89+ use the hardware conversion): every
 * code in both bytes of the pair, the other byte a fixed 1.0, against the test kit's decoding
 * (NaN for S.1111.111).  Every e4m3 value is an f16 value, so equality is required.  Runs
 * wherever the CUDA backend builds, CI included.
 */
#include "pa_testkit.h"
#include "tc_common.cuh"

#include <cmath>
#include <cstdio>
#include <cstring>

int main()
{
    int bad = 0, checks = 0;
    for (int code = 0; code < 256; ++code)
        for (int high = 0; high < 2; ++high) {
            const uint32_t one = 0x38; /* 1.0 in the other byte */
            const uint32_t two = high ? (uint32_t)code << 8 | one : one << 8 | (uint32_t)code;
            const uint32_t r = pa_tc::e4m3x2_to_f16x2(two);
            const uint16_t bits[2] = {(uint16_t)(r & 0xffffu), (uint16_t)(r >> 16)};
            const float got = pa_tk_f16_to_f32(bits[high]), other = pa_tk_f16_to_f32(bits[!high]);
            const float want = pa_tk_e4m3_to_f32((uint8_t)code);
            ++checks;
            if (!(got == want || (std::isnan(got) && std::isnan(want))) || other != 1.0f) {
                if (bad++ < 8)
                    std::printf("FAIL code 0x%02x in the %s byte: %g (other %g), want %g\n", code,
                                high ? "high" : "low", got, other, want);
            }
        }
    std::printf("test_e4m3_convert: %d checks, %d failures\n", checks, bad);
    return bad || !checks ? 1 : 0;
}
