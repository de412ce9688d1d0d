/*
 * Element access of the host backend, shared by its forward and backward: tensors of any
 * dtype at any stride read as double (e4m3 decoded exactly) and written back through f32
 * (round to nearest even at each step).  memcpy keeps accesses legal at any byte offset a buffer view may have.
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
    if (dtype == POLYATTN_DTYPE_E4M3) return pa_e4m3_to_f32(base[index]); /* exact */
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
    } else if (dtype == POLYATTN_DTYPE_E4M3) {
        base[index] = pa_f32_to_e4m3(f);
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

/* The same, each times scale: an e4m3 value (4 significant bits) times a float descale
 * (24) is exact in double, so the dequantized inputs are exact. */
static inline void pa_host_load_row_scaled(double *dst, const unsigned char *base,
                                           polyattn_dtype dtype, int64_t start, int64_t stride,
                                           int64_t n, double scale)
{
    pa_host_load_row(dst, base, dtype, start, stride, n);
    if (scale != 1.0)
        for (int64_t i = 0; i < n; i++)
            dst[i] *= scale;
}

static inline void pa_host_store_row(unsigned char *base, polyattn_dtype dtype, int64_t start,
                                     int64_t stride, const double *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        pa_host_store(base, dtype, start + i * stride, src[i]);
}

#endif
