/*
 * Interop (include/polyattn_opencl.h): polyattn runs on the caller's cl_context, device and
 * queue, on the caller's cl_mem buffers without copies.  The caller uploads with its own
 * queue, polyattn's forward runs on that queue, the caller reads back O and the LSE with
 * clEnqueueReadBuffer and compares with the host reference; the cl_mem objects stay the
 * caller's (still valid after polyattn lets go of them).
 */
#include "pa_testkit.h"
#include "polyattn_opencl.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CL_OK(x)                                                                                   \
    do {                                                                                           \
        cl_int e_ = (x);                                                                           \
        if (e_ != CL_SUCCESS) {                                                                    \
            printf("FAIL %s:%d: %s = %d\n", __FILE__, __LINE__, #x, (int)e_);                      \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)
#define PA_OK(x)                                                                                   \
    do {                                                                                           \
        polyattn_status s_ = (x);                                                                  \
        if (s_ != POLYATTN_STATUS_SUCCESS) {                                                       \
            printf("FAIL %s:%d: %s = %s (%s)\n", __FILE__, __LINE__, #x, polyattn_status_name(s_), \
                   ctx ? polyattn_context_last_error(ctx) : "");                                   \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(void)
{
    cl_platform_id plat;
    cl_device_id dev;
    cl_uint n = 0;
    if (clGetPlatformIDs(1, &plat, &n) != CL_SUCCESS || n == 0 ||
        clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, &dev, &n) != CL_SUCCESS || n == 0) {
        printf("SKIP: no OpenCL device\n");
        return PA_TK_SKIP;
    }
    cl_int err;
    cl_context clctx = clCreateContext(NULL, 1, &dev, NULL, NULL, &err);
    CL_OK(err);
    cl_command_queue queue = clCreateCommandQueue(clctx, dev, CL_QUEUE_PROFILING_ENABLE, &err);
    CL_OK(err);

    const pa_tk_case *c = pa_tk_find_case("gqa4_65x97_d64");
    if (!c) {
        printf("FAIL: case missing\n");
        return 1;
    }
    pa_tk_problem p;
    char msg[256] = "";
    polyattn_context *ctx = NULL;
    PA_OK(pa_tk_problem_init(&p, c, POLYATTN_DTYPE_F32, 7));
    PA_OK(pa_tk_problem_reference(&p, msg, sizeof msg));

    size_t qb = p.q_elems * 4, kb = p.k_elems * 4, vb = p.v_elems * 4, ob = p.o_elems * 4;
    size_t lb = p.lse_elems * 4;
    cl_mem mq = clCreateBuffer(clctx, CL_MEM_READ_WRITE, qb, NULL, &err);
    CL_OK(err);
    cl_mem mk = clCreateBuffer(clctx, CL_MEM_READ_WRITE, kb, NULL, &err);
    CL_OK(err);
    cl_mem mv = clCreateBuffer(clctx, CL_MEM_READ_WRITE, vb, NULL, &err);
    CL_OK(err);
    /* O lives at a 256-byte offset inside a bigger caller buffer: a view of a wrap. */
    cl_mem mo = clCreateBuffer(clctx, CL_MEM_READ_WRITE, ob + 256, NULL, &err);
    CL_OK(err);
    cl_mem ml = clCreateBuffer(clctx, CL_MEM_READ_WRITE, lb, NULL, &err);
    CL_OK(err);
    CL_OK(clEnqueueWriteBuffer(queue, mq, CL_TRUE, 0, qb, p.q_data, 0, NULL, NULL));
    CL_OK(clEnqueueWriteBuffer(queue, mk, CL_TRUE, 0, kb, p.k_data, 0, NULL, NULL));
    CL_OK(clEnqueueWriteBuffer(queue, mv, CL_TRUE, 0, vb, p.v_data, 0, NULL, NULL));
    float *poison = malloc(ob + 256 > lb ? ob + 256 : lb);
    pa_tk_poison(poison, (ob + 256) / 4, POLYATTN_DTYPE_F32);
    CL_OK(clEnqueueWriteBuffer(queue, mo, CL_TRUE, 0, ob + 256, poison, 0, NULL, NULL));
    CL_OK(clEnqueueWriteBuffer(queue, ml, CL_TRUE, 0, lb, poison, 0, NULL, NULL));

    /* Bad arguments are refused, not crashed on. */
    if (polyattn_context_create_opencl(clctx, dev, NULL, &ctx) !=
        POLYATTN_STATUS_INVALID_ARGUMENT) {
        printf("FAIL: a NULL queue was accepted\n");
        return 1;
    }
    PA_OK(polyattn_context_create_opencl(clctx, dev, queue, &ctx));
    if (polyattn_context_backend(ctx) != POLYATTN_BACKEND_OPENCL) {
        printf("FAIL: backend\n");
        return 1;
    }
    polyattn_buffer *bq, *bk, *bv, *bo_all, *bo, *bl;
    PA_OK(polyattn_buffer_wrap_opencl(ctx, mq, qb, &bq));
    PA_OK(polyattn_buffer_wrap_opencl(ctx, mk, kb, &bk));
    PA_OK(polyattn_buffer_wrap_opencl(ctx, mv, vb, &bv));
    PA_OK(polyattn_buffer_wrap_opencl(ctx, mo, ob + 256, &bo_all));
    PA_OK(polyattn_buffer_view(bo_all, 256, ob, &bo));
    PA_OK(polyattn_buffer_wrap_opencl(ctx, ml, lb, &bl));
    polyattn_buffer *too_big = NULL;
    if (polyattn_buffer_wrap_opencl(ctx, mq, qb + 4, &too_big) == POLYATTN_STATUS_SUCCESS) {
        printf("FAIL: wrapping more bytes than the cl_mem holds was accepted\n");
        return 1;
    }

    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = POLYATTN_ALGO_FLASH;
    opt.want_lse = 1;
    polyattn_plan *plan;
    PA_OK(polyattn_plan_create(ctx, &p.desc, &opt, &plan));
    PA_OK(polyattn_forward(plan, bq, bk, bv, bo, bl, NULL, NULL));
    /* The work went onto the caller's queue: finishing it is enough. */
    CL_OK(clFinish(queue));
    float *o = malloc(ob), *lse = malloc(lb);
    CL_OK(clEnqueueReadBuffer(queue, mo, CL_TRUE, 256, ob, o, 0, NULL, NULL));
    CL_OK(clEnqueueReadBuffer(queue, ml, CL_TRUE, 0, lb, lse, 0, NULL, NULL));
    pa_tk_tolerance tol = pa_tk_tolerance_for(POLYATTN_DTYPE_F32);
    double max_ref = 0, o_err = 0, lse_err = 0;
    for (size_t i = 0; i < p.o_elems; i++)
        if (fabs(p.ref_o[i]) > max_ref) max_ref = fabs(p.ref_o[i]);
    long long bad = pa_tk_compare(o, p.ref_o, p.o_elems, tol.o_rel * max_ref + 1e-6, &o_err);
    for (size_t i = 0; i < p.lse_elems; i++) {
        double e = fabs((double)lse[i] - (double)p.ref_lse[i]);
        if (!(e <= tol.lse_rel * fmax(1.0, fabs(p.ref_lse[i])))) bad++;
        if (e > lse_err) lse_err = e;
    }
    printf("interop flash: max |O - ref| %.3e, max |LSE - ref| %.3e, %lld bad elements\n", o_err,
           lse_err, bad);

    polyattn_plan_destroy(plan);
    polyattn_buffer_free(bo);
    polyattn_buffer_free(bo_all);
    polyattn_buffer_free(bq);
    polyattn_buffer_free(bk);
    polyattn_buffer_free(bv);
    polyattn_buffer_free(bl);
    polyattn_context_destroy(ctx);
    /* Still the caller's: the queue runs and the buffers read after polyattn is gone. */
    float first = 0;
    CL_OK(clEnqueueReadBuffer(queue, mo, CL_TRUE, 256, 4, &first, 0, NULL, NULL));
    if (first != o[0]) bad++;
    CL_OK(clReleaseMemObject(mq));
    CL_OK(clReleaseMemObject(mk));
    CL_OK(clReleaseMemObject(mv));
    CL_OK(clReleaseMemObject(mo));
    CL_OK(clReleaseMemObject(ml));
    CL_OK(clReleaseCommandQueue(queue));
    CL_OK(clReleaseContext(clctx));
    free(o);
    free(lse);
    free(poison);
    pa_tk_problem_free(&p);
    pa_tk_shutdown();
    printf("%s\n", bad ? "FAILED" : "OK");
    return bad ? 1 : 0;
}
