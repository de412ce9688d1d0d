/*
 * Element access of the host backend, shared by its forward and backward: tensors of any
 * dtype at any stride read as double and written back through f32 (round to nearest even
 * at each step).  memcpy keeps accesses legal at any byte offset a buffer view may have.
 */
#ifndef PA_HOST_ELEM_H
#define PA_HOST_ELEM_H

#include "pa_backend.h"

#include <string.h>

static inline double pa_host_load(const unsigned char *base, polyattn_dtype dtype, int64_t index)
{
    if (dtype == POLYATTN_DTYPE_F32) {
        float f;
        memcpy(&f, base + index * 4, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, base + index * 2, 2);
    return dtype == POLYATTN_DTYPE_F16 ? pa_f16_to_f32(h) : pa_bf16_to_f32(h);
}

static inline void pa_host_store(unsigned char *base, polyattn_dtype dtype, int64_t index,
                                 double value)
{
    float f = (float)value;
    if (dtype == POLYATTN_DTYPE_F32) {
        memcpy(base + index * 4, &f, 4);
    } else {
        uint16_t h = dtype == POLYATTN_DTYPE_F16 ? pa_f32_to_f16(f) : pa_f32_to_bf16(f);
        memcpy(base + index * 2, &h, 2);
    }
}

/* n elements spaced by stride (elements) from start, as doubles. */
static inline void pa_host_load_row(double *dst, const unsigned char *base, polyattn_dtype dtype,
                                    int64_t start, int64_t stride, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = pa_host_load(base, dtype, start + i * stride);
}

static inline void pa_host_store_row(unsigned char *base, polyattn_dtype dtype, int64_t start,
                                     int64_t stride, const double *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        pa_host_store(base, dtype, start + i * stride, src[i]);
}

#endif
