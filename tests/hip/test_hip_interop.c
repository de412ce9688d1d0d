/*
 * include/polyattn_hip.h: a context on the caller's hipStream_t and buffers wrapped around
 * the caller's hipMalloc'd memory.  The argument checks run everywhere; the rest needs an AMD
 * GPU and exits 77 without one.
 */
#include "pa_testkit.h"
#include "polyattn.h"
#include "polyattn_hip.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define HIP_OK(call)                                                                               \
    do {                                                                                           \
        hipError_t e_ = (call);                                                                    \
        if (e_ != hipSuccess) {                                                                    \
            printf("FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, hipGetErrorName(e_));        \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

/* Checks that need no GPU: a host context is not a hip context. */
static void argument_checks(void)
{
    EXPECT(polyattn_hip_context_stream(NULL) == NULL, "stream of NULL");
    polyattn_context *host = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &host) != POLYATTN_STATUS_SUCCESS) {
        EXPECT(0, "host context: %s", polyattn_last_error());
        return;
    }
    float x[4];
    polyattn_buffer *b = NULL;
    EXPECT(polyattn_hip_buffer_wrap(host, x, sizeof x, &b) == POLYATTN_STATUS_INVALID_ARGUMENT &&
               b == NULL,
           "wrapping into a host context must fail");
    EXPECT(polyattn_hip_context_stream(host) == NULL, "a host context has no hip stream");
    EXPECT(polyattn_hip_context_create(0, NULL, NULL) == POLYATTN_STATUS_INVALID_ARGUMENT,
           "NULL output");
    polyattn_context_destroy(host);
}

static const pa_tk_case *pick_case(void)
{
    size_t n = 0;
    const pa_tk_case *cases = pa_tk_cases(&n);
    for (size_t i = 0; i < n; i++)
        if (cases[i].layout == PA_TK_BHSD && cases[i].seq_q > 16 && cases[i].seq_q < 300 &&
            cases[i].head_dim <= 128)
            return &cases[i];
    return n ? &cases[0] : NULL;
}

static int device_part(void)
{
    hipStream_t stream = NULL;
    HIP_OK(hipSetDevice(0));
    HIP_OK(hipStreamCreateWithFlags(&stream, hipStreamNonBlocking));
    polyattn_context *ctx = NULL;
    polyattn_status st = polyattn_hip_context_create(0, stream, &ctx);
    if (st == POLYATTN_STATUS_UNSUPPORTED) {
        printf("SKIP: device 0 is not a target of this build\n");
        HIP_OK(hipStreamDestroy(stream));
        return PA_TK_SKIP;
    }
    EXPECT(st == POLYATTN_STATUS_SUCCESS, "polyattn_hip_context_create: %s",
           polyattn_status_name(st));
    if (st != POLYATTN_STATUS_SUCCESS) return 1;
    EXPECT(polyattn_hip_context_stream(ctx) == stream, "the context does not use the stream");
    EXPECT(polyattn_context_backend(ctx) == POLYATTN_BACKEND_HIP, "backend");

    const pa_tk_case *c = pick_case();
    pa_tk_problem p;
    char err[256] = "";
    if (!c || pa_tk_problem_init(&p, c, POLYATTN_DTYPE_F16, 7) != POLYATTN_STATUS_SUCCESS ||
        pa_tk_problem_reference(&p, err, sizeof err) != POLYATTN_STATUS_SUCCESS) {
        printf("FAIL: test problem: %s\n", err);
        return 1;
    }
    const size_t es = polyattn_dtype_size(POLYATTN_DTYPE_F16);
    void *dq = NULL, *dk = NULL, *dv = NULL, *dout = NULL;
    float *dlse = NULL;
    HIP_OK(hipMalloc(&dq, p.q_elems * es));
    HIP_OK(hipMalloc(&dk, p.k_elems * es));
    HIP_OK(hipMalloc(&dv, p.v_elems * es));
    HIP_OK(hipMalloc(&dout, p.o_elems * es));
    HIP_OK(hipMalloc((void **)&dlse, p.lse_elems * sizeof(float)));
    HIP_OK(hipMemcpy(dq, p.q_data, p.q_elems * es, hipMemcpyHostToDevice));
    HIP_OK(hipMemcpy(dk, p.k_data, p.k_elems * es, hipMemcpyHostToDevice));
    HIP_OK(hipMemcpy(dv, p.v_data, p.v_elems * es, hipMemcpyHostToDevice));
    HIP_OK(hipMemset(dout, 0xff, p.o_elems * es)); /* NaN poison */

    polyattn_buffer *bq = NULL, *bk = NULL, *bv = NULL, *bo = NULL, *bl = NULL;
    EXPECT(polyattn_hip_buffer_wrap(ctx, dq, p.q_elems * es, &bq) == POLYATTN_STATUS_SUCCESS,
           "wrap q");
    EXPECT(polyattn_hip_buffer_wrap(ctx, dk, p.k_elems * es, &bk) == POLYATTN_STATUS_SUCCESS,
           "wrap k");
    EXPECT(polyattn_hip_buffer_wrap(ctx, dv, p.v_elems * es, &bv) == POLYATTN_STATUS_SUCCESS,
           "wrap v");
    EXPECT(polyattn_hip_buffer_wrap(ctx, dout, p.o_elems * es, &bo) == POLYATTN_STATUS_SUCCESS,
           "wrap o");
    EXPECT(polyattn_hip_buffer_wrap(ctx, dlse, p.lse_elems * sizeof(float), &bl) ==
               POLYATTN_STATUS_SUCCESS,
           "wrap lse");

    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = POLYATTN_ALGO_FLASH;
    opt.want_lse = 1;
    polyattn_plan *plan = NULL;
    st = polyattn_plan_create(ctx, &p.desc, &opt, &plan);
    EXPECT(st == POLYATTN_STATUS_SUCCESS, "plan: %s", polyattn_context_last_error(ctx));
    if (st == POLYATTN_STATUS_SUCCESS && !failures) {
        st = polyattn_forward(plan, bq, bk, bv, bo, bl, NULL, NULL);
        EXPECT(st == POLYATTN_STATUS_SUCCESS, "forward: %s", polyattn_context_last_error(ctx));
        /* Waiting on the caller's stream alone must be enough: the work went there. */
        HIP_OK(hipStreamSynchronize(stream));
        uint16_t *o16 = malloc(p.o_elems * es);
        float *o = malloc(p.o_elems * sizeof(float));
        float *lse = malloc(p.lse_elems * sizeof(float));
        HIP_OK(hipMemcpy(o16, dout, p.o_elems * es, hipMemcpyDeviceToHost));
        HIP_OK(hipMemcpy(lse, dlse, p.lse_elems * sizeof(float), hipMemcpyDeviceToHost));
        pa_tk_decode(o, o16, p.o_elems, POLYATTN_DTYPE_F16);
        pa_tk_tolerance tol = pa_tk_tolerance_for(POLYATTN_DTYPE_F16);
        double max_ref = 0, max_abs = 0, lse_abs = 0;
        for (size_t i = 0; i < p.o_elems; i++)
            if (fabs(p.ref_o[i]) > max_ref) max_ref = fabs(p.ref_o[i]);
        long long bad =
            pa_tk_compare(o, p.ref_o, p.o_elems, tol.o_rel * (max_ref > 0 ? max_ref : 1), &max_abs);
        long long bad_lse = 0;
        for (size_t i = 0; i < p.lse_elems; i++) {
            double ref = p.ref_lse[i], d = isinf(ref) && isinf(lse[i]) ? 0 : fabs(lse[i] - ref);
            if (!(d <= tol.lse_rel * (fabs(ref) > 1 ? fabs(ref) : 1))) bad_lse++;
            if (d > lse_abs) lse_abs = d;
        }
        printf("flash f16 %s on the caller's stream: max |dO| %.3g, max |dLSE| %.3g, bad %lld + "
               "%lld\n",
               c->name, max_abs, lse_abs, bad, bad_lse);
        EXPECT(bad == 0 && bad_lse == 0, "results out of tolerance");
        free(o16);
        free(o);
        free(lse);
    }
    polyattn_plan_destroy(plan);
    polyattn_buffer_free(bq);
    polyattn_buffer_free(bk);
    polyattn_buffer_free(bv);
    polyattn_buffer_free(bo);
    polyattn_buffer_free(bl);
    polyattn_context_destroy(ctx);
    /* The memory and the stream are still the caller's: both must still be valid. */
    HIP_OK(hipFree(dq));
    HIP_OK(hipFree(dk));
    HIP_OK(hipFree(dv));
    HIP_OK(hipFree(dout));
    HIP_OK(hipFree(dlse));
    HIP_OK(hipStreamSynchronize(stream));
    HIP_OK(hipStreamDestroy(stream));
    pa_tk_problem_free(&p);
    return failures ? 1 : 0;
}

int main(void)
{
    argument_checks();
    int rc = failures ? 1 : 0;
    int n = 0;
    hipError_t e = hipGetDeviceCount(&n);
    if (rc == 0) {
        if (e != hipSuccess || n == 0) {
            printf("argument checks passed; SKIP device part: no AMD GPU (%s)\n",
                   e != hipSuccess ? hipGetErrorName(e) : "0 devices");
            rc = PA_TK_SKIP;
        } else {
            rc = device_part();
        }
    }
    pa_tk_shutdown();
    if (rc != PA_TK_SKIP) printf("%s (%d failure(s))\n", rc ? "FAIL" : "PASS", failures);
    return rc;
}
