/* polyattn_merge_states on OpenCL (kernels/merge.cl, whose per-element merge the serving
 * forward's key splits share): one work-item per (row, column).  The program is built once
 * per (part dtype, output dtype) and cached with the context's others; the kernel object
 * lives for one call. */
#include "ocl_algos.h"

#include <stdio.h>

polyattn_status ocl_merge_states(pa_device *dev, const pa_merge_problem *m, const pa_merge_io *io)
{
    ocl_device *d = (ocl_device *)dev;
    if (m->part_dtype == POLYATTN_DTYPE_E4M3 || m->out_dtype == POLYATTN_DTYPE_E4M3)
        return pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED,
                       "opencl merge: e4m3 states: no kernel on this backend");
    const size_t pes = ocl_esize(m->part_dtype), oes = ocl_esize(m->out_dtype);
    cl_long parts_off, lse_off, out_off, out_lse_off = 0;
    if (!ocl_elem_offset(&io->parts, pes, &parts_off) ||
        !ocl_elem_offset(&io->parts_lse, 4, &lse_off) ||
        !ocl_elem_offset(&io->out, oes, &out_off) ||
        (m->want_lse && !ocl_elem_offset(&io->out_lse, 4, &out_lse_off)))
        return pa_fail(dev, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "opencl merge: a tensor's byte offset is not a multiple of its element "
                       "size");
    const uint64_t rows = pa_size_mul4(m->batch, m->heads, m->seq, 1);
    if (rows == 0 || m->head_dim_v == 0) return POLYATTN_STATUS_SUCCESS;
    char opts[128];
    snprintf(opts, sizeof opts, "-DPA_DTYPE=%d -DPART_DTYPE=%d", (int)m->out_dtype,
             (int)m->part_dtype);
    static const char *const srcs[] = {"common", "merge"};
    cl_kernel k = NULL;
    polyattn_status st = ocl_make_kernel(d, srcs, 2, opts, "merge_states_kernel", &k);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    cl_mem parts = (cl_mem)io->parts.mem, plse = (cl_mem)io->parts_lse.mem,
           out = (cl_mem)io->out.mem,
           out_lse = m->want_lse ? (cl_mem)io->out_lse.mem : (cl_mem)io->parts_lse.mem;
    const int64_t pst[4] = {m->part_stride[1], m->part_stride[2], m->part_stride[3],
                            m->part_stride[4]};
    cl_long4 pst4 = ocl_strides4(pst), ost4 = ocl_strides4(m->out_stride);
    cl_long part_stride = m->part_stride[0], n_parts = m->num_parts, heads = m->heads, seq = m->seq,
            dv = m->head_dim_v, n_rows = (cl_long)rows;
    cl_int want_lse = m->want_lse != 0;
#define MERGE_ARG(i, v)                                                                            \
    do {                                                                                           \
        cl_int e_ = clSetKernelArg(k, (i), sizeof(v), &(v));                                       \
        if (e_ != CL_SUCCESS) {                                                                    \
            clReleaseKernel(k);                                                                    \
            return ocl_fail(d, e_, "clSetKernelArg " #v);                                          \
        }                                                                                          \
    } while (0)
    MERGE_ARG(0, parts);
    MERGE_ARG(1, parts_off);
    MERGE_ARG(2, pst4);
    MERGE_ARG(3, part_stride);
    MERGE_ARG(4, plse);
    MERGE_ARG(5, lse_off);
    MERGE_ARG(6, n_parts);
    MERGE_ARG(7, out);
    MERGE_ARG(8, out_off);
    MERGE_ARG(9, ost4);
    MERGE_ARG(10, out_lse);
    MERGE_ARG(11, out_lse_off);
    MERGE_ARG(12, want_lse);
    MERGE_ARG(13, heads);
    MERGE_ARG(14, seq);
    MERGE_ARG(15, dv);
    MERGE_ARG(16, n_rows);
#undef MERGE_ARG
    st = ocl_enqueue_1d(d, k, pa_size_mul(rows, (uint64_t)m->head_dim_v),
                        "clEnqueueNDRangeKernel(merge_states_kernel)");
    clReleaseKernel(k); /* the queue keeps what it needs */
    return st;
}
