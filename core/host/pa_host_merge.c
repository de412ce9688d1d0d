/*
 * Host merge of partial attention states (polyattn_merge_states): per row, in double,
 *   m = max_p LSE_p,  s = sum_p exp(LSE_p - m),  LSE = m + log(s),
 *   O = sum_p exp(LSE_p - LSE) O_p,
 * skipping parts with LSE_p = -inf (they saw no key; their O_p is not read).  A NaN or +inf
 * LSE_p makes the row NaN; every part -inf gives O = 0 and LSE = -inf.
 */
#include "pa_host.h"
#include "pa_host_elem.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>

static const unsigned char *merge_ptr(const pa_tensor_ref *r)
{
    return r->mem ? (const unsigned char *)r->mem + r->offset : NULL;
}

polyattn_status pa_host_merge_states(pa_device *dev, const pa_merge_problem *m,
                                     const pa_merge_io *io)
{
    const unsigned char *parts = merge_ptr(&io->parts), *parts_lse = merge_ptr(&io->parts_lse);
    unsigned char *out = (unsigned char *)merge_ptr(&io->out);
    unsigned char *out_lse = m->want_lse ? (unsigned char *)merge_ptr(&io->out_lse) : NULL;
    if (!parts || !parts_lse || !out || (m->want_lse && !out_lse))
        return pa_fail(dev, POLYATTN_STATUS_INTERNAL_ERROR, "host: merge called without a tensor");
    double *acc = (uint64_t)m->head_dim_v <= (uint64_t)(PTRDIFF_MAX / sizeof(double))
                      ? (double *)malloc((size_t)m->head_dim_v * sizeof(double))
                      : NULL;
    if (!acc)
        return pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY, "host: cannot allocate a merge row");
    const int64_t rows = m->batch * m->heads * m->seq;
    for (int64_t row = 0; row < rows; row++) {
        const int64_t b = row / (m->heads * m->seq), h = row / m->seq % m->heads, i = row % m->seq;
        double mx = -INFINITY;
        int nan_row = 0;
        for (int64_t p = 0; p < m->num_parts; p++) {
            const double l = pa_host_load(parts_lse, POLYATTN_DTYPE_F32, p * rows + row);
            if (isnan(l) || l == INFINITY) nan_row = 1;
            else if (l > mx) mx = l;
        }
        const int64_t o_base = b * m->out_stride[0] + h * m->out_stride[1] + i * m->out_stride[2];
        double lse;
        if (nan_row) {
            lse = NAN;
            for (int64_t d = 0; d < m->head_dim_v; d++)
                acc[d] = NAN;
        } else if (mx == -INFINITY) {
            lse = -INFINITY;
            for (int64_t d = 0; d < m->head_dim_v; d++)
                acc[d] = 0.0;
        } else {
            double sum = 0.0;
            for (int64_t p = 0; p < m->num_parts; p++) {
                const double l = pa_host_load(parts_lse, POLYATTN_DTYPE_F32, p * rows + row);
                if (l != -INFINITY) sum += exp(l - mx);
            }
            lse = mx + log(sum);
            for (int64_t d = 0; d < m->head_dim_v; d++)
                acc[d] = 0.0;
            for (int64_t p = 0; p < m->num_parts; p++) {
                const double l = pa_host_load(parts_lse, POLYATTN_DTYPE_F32, p * rows + row);
                if (l == -INFINITY) continue;
                const double w = exp(l - lse);
                const int64_t base = p * m->part_stride[0] + b * m->part_stride[1] +
                                     h * m->part_stride[2] + i * m->part_stride[3];
                for (int64_t d = 0; d < m->head_dim_v; d++)
                    acc[d] += w * pa_host_load(parts, m->part_dtype, base + d * m->part_stride[4]);
            }
        }
        pa_host_store_row(out, m->out_dtype, o_base, m->out_stride[3], acc, m->head_dim_v);
        if (out_lse) pa_host_store(out_lse, POLYATTN_DTYPE_F32, row, lse);
    }
    free(acc);
    return POLYATTN_STATUS_SUCCESS;
}
