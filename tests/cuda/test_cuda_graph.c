/*
 * CUDA graphs: polyattn_forward and polyattn_backward of a made plan are capturable (no
 * allocation, no synchronisation, no host read-back at call time).  For each algorithm and a
 * few shapes (tensor-core and SIMT paths, a wide head dim), both calls are captured on the
 * caller's stream in cudaStreamCaptureModeGlobal (where a cudaMalloc, a synchronising call
 * or a blocking copy would fail the capture), the graph is replayed twice over poisoned
 * outputs, and every element of O, LSE, dQ, dK and dV is compared with the host reference.
 */
#include "polyattn.h"
#include "polyattn_cuda.h"

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
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

static unsigned long long rng = 977;
/* k / 256 for k in [-256, 256]: exact in f32 and f16, so every path sees the same inputs. */
static float draw(void)
{
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((int)((rng >> 33) % 513) - 256) / 256.0f;
}

static uint16_t to_f16(float x) /* exact for the values draw() makes */
{
    uint32_t u;
    memcpy(&u, &x, 4);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    if (x == 0.0f) return sign;
    int e = (int)((u >> 23) & 0xff) - 127 + 15;
    uint32_t m = u & 0x7fffffu;
    if (e <= 0) { /* subnormal */
        m = (m | 0x800000u) >> (1 - e);
        return (uint16_t)(sign | (m >> 13));
    }
    return (uint16_t)(sign | (uint32_t)e << 10 | (m >> 13));
}

static float from_f16(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const int e = (h >> 10) & 0x1f;
    const uint32_t m = h & 0x3ffu;
    float f;
    if (e == 0) f = ldexpf((float)m, -24);
    else if (e == 31) f = m ? NAN : INFINITY;
    else f = ldexpf((float)(m | 0x400u), e - 25);
    return sign ? -f : f;
}

typedef struct shape {
    const char *name;
    polyattn_dtype dtype;
    int64_t batch, hq, hkv, sq, skv, dim;
    polyattn_mask mask;
} shape;

/* The five tensors of one problem on one side (host reference or device, f32 on the host). */
typedef struct tensors {
    float *q, *k, *v, *d_o, *o, *lse, *dq, *dk, *dv;
} tensors;

static size_t n_q(const shape *s) { return (size_t)(s->batch * s->hq * s->sq * s->dim); }
static size_t n_k(const shape *s) { return (size_t)(s->batch * s->hkv * s->skv * s->dim); }
static size_t n_l(const shape *s) { return (size_t)(s->batch * s->hq * s->sq); }

static polyattn_attention_desc desc_of(const shape *s, polyattn_dtype dtype)
{
    polyattn_attention_desc d;
    polyattn_attention_desc_init(&d, dtype, s->batch, s->hq, s->hkv, s->sq, s->skv, s->dim, s->dim);
    d.mask = s->mask;
    return d;
}

/* Host backend, f32: forward and backward. */
static int reference(const shape *s, tensors *t)
{
    polyattn_context *ctx = NULL;
    polyattn_plan *plan = NULL;
    polyattn_buffer *b[11] = {0};
    const size_t bytes[11] = {n_q(s) * 4, n_k(s) * 4, n_k(s) * 4, n_q(s) * 4,
                              n_q(s) * 4, n_l(s) * 4, n_q(s) * 4, n_k(s) * 4,
                              n_k(s) * 4, 0,          0};
    const polyattn_attention_desc d = desc_of(s, POLYATTN_DTYPE_F32);
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = POLYATTN_ALGO_UNFUSED;
    opt.want_backward = 1;
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    int bad = polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) ||
              polyattn_plan_create(ctx, &d, &opt, &plan) || polyattn_plan_get_info(plan, &info);
    for (int i = 0; i < 9 && !bad; i++)
        bad = polyattn_buffer_alloc(ctx, bytes[i], &b[i]);
    if (!bad && info.workspace_bytes) bad = polyattn_buffer_alloc(ctx, info.workspace_bytes, &b[9]);
    if (!bad && info.backward_workspace_bytes)
        bad = polyattn_buffer_alloc(ctx, info.backward_workspace_bytes, &b[10]);
    if (!bad)
        bad =
            polyattn_buffer_write(b[0], 0, t->q, bytes[0]) ||
            polyattn_buffer_write(b[1], 0, t->k, bytes[1]) ||
            polyattn_buffer_write(b[2], 0, t->v, bytes[2]) ||
            polyattn_buffer_write(b[3], 0, t->d_o, bytes[3]) ||
            polyattn_forward(plan, b[0], b[1], b[2], b[4], b[5], NULL, b[9]) ||
            polyattn_backward(plan, b[0], b[1], b[2], b[4], b[3], b[5], b[6], b[7], b[8], b[10]) ||
            polyattn_buffer_read(b[4], 0, t->o, bytes[4]) ||
            polyattn_buffer_read(b[5], 0, t->lse, bytes[5]) ||
            polyattn_buffer_read(b[6], 0, t->dq, bytes[6]) ||
            polyattn_buffer_read(b[7], 0, t->dk, bytes[7]) ||
            polyattn_buffer_read(b[8], 0, t->dv, bytes[8]);
    if (bad) fprintf(stderr, "host reference: %s\n", ctx ? polyattn_context_last_error(ctx) : "");
    for (int i = 0; i < 11; i++)
        polyattn_buffer_free(b[i]);
    polyattn_plan_destroy(plan);
    polyattn_context_destroy(ctx);
    return bad;
}

/* Largest |got - want| over n elements relative to 1 + max |want| (NaN: infinite); -inf
 * matching -inf (fully masked rows' LSE) counts as equal. */
static double error_of(const float *got, const float *want, size_t n)
{
    double worst = 0, scale = 1;
    for (size_t i = 0; i < n; i++)
        if (isfinite(want[i]) && fabs(want[i]) + 1 > scale) scale = fabs(want[i]) + 1;
    for (size_t i = 0; i < n; i++) {
        const double e = isinf(want[i]) && got[i] == want[i] ? 0 : fabs((double)got[i] - want[i]);
        if (!(e <= worst)) worst = isnan(e) ? INFINITY : e;
    }
    return worst / scale;
}

static int device_upload(void *dst, const float *src, size_t n, polyattn_dtype dtype)
{
    if (dtype == POLYATTN_DTYPE_F32) return cudaMemcpy(dst, src, n * 4, cudaMemcpyHostToDevice);
    uint16_t *h = malloc(n * 2);
    if (!h) return 1;
    for (size_t i = 0; i < n; i++)
        h[i] = to_f16(src[i]);
    const int e = cudaMemcpy(dst, h, n * 2, cudaMemcpyHostToDevice);
    free(h);
    return e;
}

static int device_download(float *dst, const void *src, size_t n, polyattn_dtype dtype)
{
    if (dtype == POLYATTN_DTYPE_F32) return cudaMemcpy(dst, src, n * 4, cudaMemcpyDeviceToHost);
    uint16_t *h = malloc(n * 2);
    if (!h) return 1;
    int e = cudaMemcpy(h, src, n * 2, cudaMemcpyDeviceToHost);
    for (size_t i = 0; i < n; i++)
        dst[i] = from_f16(h[i]);
    free(h);
    return e;
}

static int run_case(const shape *s, polyattn_algo algo, const tensors *ref, const tensors *in,
                    cudaStream_t stream, polyattn_context *ctx)
{
    const size_t es = s->dtype == POLYATTN_DTYPE_F32 ? 4 : 2;
    const size_t elems[9] = {n_q(s), n_k(s), n_k(s), n_q(s), n_q(s),
                             n_l(s), n_q(s), n_k(s), n_k(s)};
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_backward = 1;
    polyattn_plan *plan = NULL;
    const polyattn_attention_desc d = desc_of(s, s->dtype);
    const polyattn_status pst = polyattn_plan_create(ctx, &d, &opt, &plan);
    if (pst == POLYATTN_STATUS_UNSUPPORTED) {
        printf("%-22s %-7s unsupported: %s\n", s->name, polyattn_algo_name(algo),
               polyattn_context_last_error(ctx));
        return 0;
    }
    CHECK(pst == POLYATTN_STATUS_SUCCESS, "plan: %s", polyattn_context_last_error(ctx));
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK(polyattn_plan_get_info(plan, &info) == 0, "info");

    /* q k v d_o o lse dq dk dv, then the two workspaces: all allocated before the capture */
    void *mem[11] = {0};
    polyattn_buffer *b[11] = {0};
    for (int i = 0; i < 11; i++) {
        size_t bytes = i < 9    ? elems[i] * (i == 5 ? 4 : es)
                       : i == 9 ? (size_t)info.workspace_bytes
                                : (size_t)info.backward_workspace_bytes;
        if (!bytes) continue;
        CHECK(cudaMalloc(&mem[i], bytes) == cudaSuccess, "cudaMalloc");
        CHECK(polyattn_cuda_buffer_wrap(ctx, mem[i], bytes, &b[i]) == 0, "wrap: %s",
              polyattn_context_last_error(ctx));
    }
    const float *src[4] = {in->q, in->k, in->v, in->d_o};
    for (int i = 0; i < 4; i++)
        CHECK(device_upload(mem[i], src[i], elems[i], s->dtype) == 0, "upload");

    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    CHECK(cudaStreamSynchronize(stream) == cudaSuccess, "sync before the capture");
    CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal) == cudaSuccess, "begin");
    const polyattn_status fst = polyattn_forward(plan, b[0], b[1], b[2], b[4], b[5], NULL, b[9]);
    const polyattn_status bst =
        polyattn_backward(plan, b[0], b[1], b[2], b[4], b[3], b[5], b[6], b[7], b[8], b[10]);
    const cudaError_t end = cudaStreamEndCapture(stream, &graph);
    CHECK(fst == POLYATTN_STATUS_SUCCESS && bst == POLYATTN_STATUS_SUCCESS && end == cudaSuccess,
          "%s %s under capture: forward %s, backward %s, end capture %s (%s)", s->name,
          polyattn_algo_name(algo), polyattn_status_name(fst), polyattn_status_name(bst),
          cudaGetErrorString(end), polyattn_context_last_error(ctx));
    size_t nodes = 0;
    CHECK(cudaGraphGetNodes(graph, NULL, &nodes) == cudaSuccess && nodes > 0, "empty graph");
    CHECK(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess, "instantiate");

    tensors got;
    float *host = malloc((3 * n_q(s) + 2 * n_k(s) + n_l(s)) * 4);
    CHECK(host, "host memory");
    got.o = host, got.dq = got.o + n_q(s), got.lse = got.dq + n_q(s);
    got.dk = got.lse + n_l(s), got.dv = got.dk + n_k(s);
    for (int replay = 0; replay < 2; replay++) {
        for (int i = 4; i < 9; i++) /* poison every output: NaN in f32 and f16 */
            CHECK(cudaMemsetAsync(mem[i], 0xff, elems[i] * (i == 5 ? 4 : es), stream) ==
                      cudaSuccess,
                  "poison");
        CHECK(cudaGraphLaunch(exec, stream) == cudaSuccess, "launch");
        CHECK(cudaStreamSynchronize(stream) == cudaSuccess, "replay %d: %s", replay,
              cudaGetErrorString(cudaGetLastError()));
        CHECK(device_download(got.o, mem[4], n_q(s), s->dtype) == 0 &&
                  device_download(got.lse, mem[5], n_l(s), POLYATTN_DTYPE_F32) == 0 &&
                  device_download(got.dq, mem[6], n_q(s), s->dtype) == 0 &&
                  device_download(got.dk, mem[7], n_k(s), s->dtype) == 0 &&
                  device_download(got.dv, mem[8], n_k(s), s->dtype) == 0,
              "download");
        const double tol = s->dtype == POLYATTN_DTYPE_F32 ? 1e-3 : 3e-2;
        const double e[5] = {error_of(got.o, ref->o, n_q(s)), error_of(got.lse, ref->lse, n_l(s)),
                             error_of(got.dq, ref->dq, n_q(s)), error_of(got.dk, ref->dk, n_k(s)),
                             error_of(got.dv, ref->dv, n_k(s))};
        printf("%-22s %-7s replay %d (%zu graph nodes): O %.2g LSE %.2g dQ %.2g dK %.2g dV %.2g "
               "(tol %.0g)\n",
               s->name, polyattn_algo_name(algo), replay, nodes, e[0], e[1], e[2], e[3], e[4], tol);
        for (int i = 0; i < 5; i++)
            CHECK(e[i] <= tol, "%s %s replay %d differs from the host reference", s->name,
                  polyattn_algo_name(algo), replay);
    }
    free(host);
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    for (int i = 0; i < 11; i++) {
        polyattn_buffer_free(b[i]);
        if (mem[i]) cudaFree(mem[i]);
    }
    polyattn_plan_destroy(plan);
    return 0;
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
    CHECK(polyattn_cuda_context_create(0, stream, &ctx) == POLYATTN_STATUS_SUCCESS, "context: %s",
          polyattn_last_error());
    /* f16 at head dim 64: the mma.sync forward and the tensor-core backward; f16 at 512: the
     * wide (or, on sm_90, wgmma) forward and the SIMT backward; f32: the SIMT kernels. */
    const shape shapes[] = {
        {"f16_d64_gqa_br_100x130", POLYATTN_DTYPE_F16, 2, 4, 2, 100, 130, 64,
         POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT},
        {"f16_d512_64x96", POLYATTN_DTYPE_F16, 1, 2, 2, 64, 96, 512, POLYATTN_MASK_NONE},
        {"f32_d64_tl_37x53", POLYATTN_DTYPE_F32, 1, 3, 1, 37, 53, 64,
         POLYATTN_MASK_CAUSAL_TOP_LEFT},
    };
    const polyattn_algo algos[3] = {POLYATTN_ALGO_FLASH, POLYATTN_ALGO_FUSED,
                                    POLYATTN_ALGO_UNFUSED};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const shape *s = &shapes[si];
        tensors in, ref;
        float *all = malloc((6 * n_q(s) + 5 * n_k(s) + n_l(s)) * 4);
        CHECK(all, "host memory");
        in.q = all, in.d_o = in.q + n_q(s), in.k = in.d_o + n_q(s), in.v = in.k + n_k(s);
        ref.o = in.v + n_k(s), ref.dq = ref.o + n_q(s), ref.lse = ref.dq + n_q(s);
        ref.dk = ref.lse + n_l(s), ref.dv = ref.dk + n_k(s);
        for (size_t i = 0; i < n_q(s); i++)
            in.q[i] = draw(), in.d_o[i] = draw();
        for (size_t i = 0; i < n_k(s); i++)
            in.k[i] = draw(), in.v[i] = draw();
        ref.q = in.q, ref.k = in.k, ref.v = in.v, ref.d_o = in.d_o;
        CHECK(reference(s, &ref) == 0, "reference");
        for (int a = 0; a < 3; a++)
            if (run_case(s, algos[a], &ref, &in, stream, ctx)) return 1;
        free(all);
    }
    polyattn_context_destroy(ctx);
    CHECK(cudaStreamDestroy(stream) == cudaSuccess, "stream destroy");
    printf("PASS test_cuda_graph\n");
    return 0;
}
