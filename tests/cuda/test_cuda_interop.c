/*
 * CUDA interop (include/polyattn_cuda.h): a context on the caller's stream, buffers over
 * caller-owned device memory.  Checks that flash and unfused results land in the caller's
 * memory, ordered on the caller's stream, match the host reference, that a host pointer is
 * refused, and that destroying the context leaves the stream and the memory to the caller.
 */
#include "polyattn.h"
#include "polyattn_cuda.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                   \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n");                                                                 \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

static unsigned long long rng = 12345;
static float uniform(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

/* Host-backend reference on the same inputs. */
static int reference(const polyattn_attention_desc *d, const float *q, const float *k,
                     const float *v, size_t nq, size_t nk, float *o, float *lse)
{
    polyattn_context *ctx = NULL;
    polyattn_buffer *bq = NULL, *bk = NULL, *bv = NULL, *bo = NULL, *bl = NULL, *ws = NULL;
    polyattn_plan *plan = NULL;
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.want_lse = 1;
    opt.algo = POLYATTN_ALGO_UNFUSED;
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    size_t nl = (size_t)(d->q.shape[0] * d->q.shape[1] * d->q.shape[2]);
    int bad = polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) ||
              polyattn_buffer_alloc(ctx, nq * 4, &bq) || polyattn_buffer_alloc(ctx, nk * 4, &bk) ||
              polyattn_buffer_alloc(ctx, nk * 4, &bv) || polyattn_buffer_alloc(ctx, nq * 4, &bo) ||
              polyattn_buffer_alloc(ctx, nl * 4, &bl) || polyattn_buffer_write(bq, 0, q, nq * 4) ||
              polyattn_buffer_write(bk, 0, k, nk * 4) || polyattn_buffer_write(bv, 0, v, nk * 4) ||
              polyattn_plan_create(ctx, d, &opt, &plan) || polyattn_plan_get_info(plan, &info);
    if (!bad && info.workspace_bytes) bad = polyattn_buffer_alloc(ctx, info.workspace_bytes, &ws);
    if (!bad)
        bad = polyattn_forward(plan, bq, bk, bv, bo, bl, NULL, ws) ||
              polyattn_buffer_read(bo, 0, o, nq * 4) || polyattn_buffer_read(bl, 0, lse, nl * 4);
    if (bad)
        fprintf(stderr, "host reference failed: %s\n", ctx ? polyattn_context_last_error(ctx) : "");
    polyattn_plan_destroy(plan);
    polyattn_buffer_free(bq), polyattn_buffer_free(bk), polyattn_buffer_free(bv);
    polyattn_buffer_free(bo), polyattn_buffer_free(bl), polyattn_buffer_free(ws);
    polyattn_context_destroy(ctx);
    return bad;
}

int main(void)
{
    int count = 0;
    const char *reason = NULL;
    if (polyattn_device_count(POLYATTN_BACKEND_CUDA, &count, &reason) || count == 0) {
        printf("SKIP: no CUDA device (%s)\n", reason ? reason : "");
        return 77;
    }
    cudaStream_t stream;
    CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) == cudaSuccess, "stream");

    polyattn_context *ctx = NULL;
    CHECK(polyattn_cuda_context_create(0, stream, &ctx) == POLYATTN_STATUS_SUCCESS,
          "context on the caller's stream: %s", polyattn_last_error());
    struct CUstream_st *got = NULL;
    CHECK(polyattn_cuda_context_stream(ctx, &got) == POLYATTN_STATUS_SUCCESS && got == stream,
          "the context reports another stream");

    /* GQA, seq_q != seq_kv, causal bottom-right, odd sizes */
    const int64_t batch = 2, hq = 4, hkv = 2, sq = 70, skv = 91, dim = 64;
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, POLYATTN_DTYPE_F32, batch, hq, hkv, sq, skv, dim, dim);
    d.mask = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
    const size_t nq = (size_t)(batch * hq * sq * dim), nk = (size_t)(batch * hkv * skv * dim);
    const size_t nl = (size_t)(batch * hq * sq);
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nk * 4);
    float *o = malloc(nq * 4), *ref = malloc(nq * 4), *lse = malloc(nl * 4),
          *ref_lse = malloc(nl * 4);
    CHECK(q && k && v && o && ref && lse && ref_lse, "host memory");
    for (size_t i = 0; i < nq; i++)
        q[i] = uniform();
    for (size_t i = 0; i < nk; i++)
        k[i] = uniform(), v[i] = uniform();
    CHECK(reference(&d, q, k, v, nq, nk, ref, ref_lse) == 0, "reference");

    void *dq, *dk, *dv, *dout, *dlse, *dws;
    const size_t ws_cap = (size_t)(batch * hq * sq * skv) * 4;
    CHECK(cudaMalloc(&dq, nq * 4) == cudaSuccess && cudaMalloc(&dk, nk * 4) == cudaSuccess &&
              cudaMalloc(&dv, nk * 4) == cudaSuccess && cudaMalloc(&dout, nq * 4) == cudaSuccess &&
              cudaMalloc(&dlse, nl * 4) == cudaSuccess && cudaMalloc(&dws, ws_cap) == cudaSuccess,
          "cudaMalloc");
    CHECK(cudaMemcpy(dq, q, nq * 4, cudaMemcpyHostToDevice) == cudaSuccess &&
              cudaMemcpy(dk, k, nk * 4, cudaMemcpyHostToDevice) == cudaSuccess &&
              cudaMemcpy(dv, v, nk * 4, cudaMemcpyHostToDevice) == cudaSuccess,
          "upload");

    polyattn_buffer *bq, *bk, *bv, *bo, *bl, *bws, *bad = NULL;
    CHECK(polyattn_cuda_buffer_wrap(ctx, dq, nq * 4, &bq) == 0 &&
              polyattn_cuda_buffer_wrap(ctx, dk, nk * 4, &bk) == 0 &&
              polyattn_cuda_buffer_wrap(ctx, dv, nk * 4, &bv) == 0 &&
              polyattn_cuda_buffer_wrap(ctx, dout, nq * 4, &bo) == 0 &&
              polyattn_cuda_buffer_wrap(ctx, dlse, nl * 4, &bl) == 0 &&
              polyattn_cuda_buffer_wrap(ctx, dws, ws_cap, &bws) == 0,
          "wrap: %s", polyattn_context_last_error(ctx));
    CHECK(polyattn_cuda_buffer_wrap(ctx, q, nq * 4, &bad) == POLYATTN_STATUS_INVALID_ARGUMENT &&
              !bad,
          "a host pointer was accepted as device memory");

    const polyattn_algo algos[2] = {POLYATTN_ALGO_FLASH, POLYATTN_ALGO_UNFUSED};
    for (int ai = 0; ai < 2; ai++) {
        polyattn_plan_options opt;
        polyattn_plan_options_init(&opt);
        opt.algo = algos[ai];
        opt.want_lse = 1;
        polyattn_plan *plan = NULL;
        CHECK(polyattn_plan_create(ctx, &d, &opt, &plan) == 0, "plan: %s",
              polyattn_context_last_error(ctx));
        CHECK(cudaMemsetAsync(dout, 0xff, nq * 4, stream) == cudaSuccess, "poison");
        CHECK(polyattn_forward(plan, bq, bk, bv, bo, bl, NULL, bws) == 0, "forward: %s",
              polyattn_context_last_error(ctx));
        /* Synchronizing the caller's stream alone must be enough. */
        CHECK(cudaStreamSynchronize(stream) == cudaSuccess, "stream sync");
        CHECK(cudaMemcpy(o, dout, nq * 4, cudaMemcpyDeviceToHost) == cudaSuccess &&
                  cudaMemcpy(lse, dlse, nl * 4, cudaMemcpyDeviceToHost) == cudaSuccess,
              "download");
        double worst = 0, worst_lse = 0;
        for (size_t i = 0; i < nq; i++) {
            double e = fabs((double)o[i] - ref[i]);
            if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
        }
        for (size_t i = 0; i < nl; i++) {
            double e = isinf(ref_lse[i]) && isinf(lse[i]) && ref_lse[i] == lse[i]
                           ? 0
                           : fabs((double)lse[i] - ref_lse[i]);
            if (!(e <= worst_lse)) worst_lse = isnan(e) ? INFINITY : e;
        }
        printf("%s on the caller's stream: max |O - ref| = %.3g, max |LSE - ref| = %.3g\n",
               polyattn_algo_name(algos[ai]), worst, worst_lse);
        CHECK(worst < 1e-4 && worst_lse < 1e-4, "%s result differs from the host reference",
              polyattn_algo_name(algos[ai]));
        polyattn_plan_destroy(plan);
    }

    polyattn_buffer_free(bq), polyattn_buffer_free(bk), polyattn_buffer_free(bv);
    polyattn_buffer_free(bo), polyattn_buffer_free(bl), polyattn_buffer_free(bws);
    polyattn_context_destroy(ctx);
    /* The stream and the memory still belong to the caller. */
    CHECK(cudaStreamQuery(stream) == cudaSuccess, "the stream was destroyed with the context");
    CHECK(cudaFree(dq) == cudaSuccess && cudaFree(dk) == cudaSuccess &&
              cudaFree(dv) == cudaSuccess && cudaFree(dout) == cudaSuccess &&
              cudaFree(dlse) == cudaSuccess && cudaFree(dws) == cudaSuccess,
          "wrapped memory was freed by polyattn");
    CHECK(cudaStreamDestroy(stream) == cudaSuccess, "stream destroy");
    free(q), free(k), free(v), free(o), free(ref), free(lse), free(ref_lse);
    printf("PASS test_cuda_interop\n");
    return 0;
}
