/* Test double of <hip/hip_fp16.h> (tests/hip/emu): f16 as bits, converted by the testkit. */
#ifndef PA_EMU_HIP_FP16_H
#define PA_EMU_HIP_FP16_H

#include "pa_testkit.h"

struct __half {
    uint16_t bits;
};
inline float __half2float(__half h) { return pa_tk_f16_to_f32(h.bits); }
inline __half __float2half_rn(float f)
{
    __half h;
    h.bits = pa_tk_f32_to_f16(f);
    return h;
}
#endif
