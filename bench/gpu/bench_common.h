/*
 * What bench/gpu/cuda_bench.c and cuda_bwd_bench.c share: the shape lines they read
 * (bench/gpu/shapes.py writes them), device values as f32, the device record they print
 * first, and the median's comparison.  Header-only: each bench is one C file.
 */
#ifndef POLYATTN_BENCH_COMMON_H
#define POLYATTN_BENCH_COMMON_H

#include "pa_testkit.h"
#include "polyattn.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* One line: suite dtype batch heads_q heads_kv seq_q seq_kv head_dim causal algo[,algo...] */
typedef struct shape {
    char suite[32], dtype_name[8], algos[64];
    polyattn_dtype dtype;
    int64_t batch, heads_q, heads_kv, seq_q, seq_kv, head_dim;
    int causal;
} shape;

/* 1 and *s filled for a shape line; 0 for a comment or a line that does not parse. */
static inline int bench_parse_line(const char *line, shape *s)
{
    memset(s, 0, sizeof *s);
    long long b, hq, hk, sq, skv, d;
    if (line[0] == '#' ||
        sscanf(line, "%31s %7s %lld %lld %lld %lld %lld %lld %d %63s", s->suite, s->dtype_name,
               &b, &hq, &hk, &sq, &skv, &d, &s->causal, s->algos) != 10)
        return 0;
    s->batch = b, s->heads_q = hq, s->heads_kv = hk, s->seq_q = sq, s->seq_kv = skv;
    s->head_dim = d;
    s->dtype = !strcmp(s->dtype_name, "f16")    ? POLYATTN_DTYPE_F16
               : !strcmp(s->dtype_name, "bf16") ? POLYATTN_DTYPE_BF16
                                                : POLYATTN_DTYPE_F32;
    return 1;
}

/* Element i of an array in the device dtype t, as f32. */
static inline float bench_dev_val(polyattn_dtype t, const void *p, size_t i)
{
    if (t == POLYATTN_DTYPE_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return t == POLYATTN_DTYPE_F16 ? pa_tk_f16_to_f32(h) : pa_tk_bf16_to_f32(h);
}

/* The first JSON record: which device the numbers come from. */
static inline void bench_print_device(polyattn_context *ctx)
{
    polyattn_device_info di;
    memset(&di, 0, sizeof di);
    di.struct_size = sizeof di;
    polyattn_context_get_device_info(ctx, &di);
    printf("{\"impl\":\"device\",\"name\":\"%s\",\"arch\":\"%s\",\"driver\":\"%s\",\"compute_"
           "units\":%d}\n",
           di.name, di.arch, di.driver_version, di.compute_units);
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#endif
