/*
 * Portable tiled GEMM for the unfused path (see gemm_tiled.h): 64x64 output tiles, k-steps
 * of 16 staged in shared memory as f32, 256 threads each owning a 4x4 grid of outputs, f32
 * accumulation.  Dtypes and strides are run-time arguments (one compiled instance), like
 * gpu_attn.cu; no warp-level operations, so the wavefront width does not matter.
 */
#include "gpu_port.h"
#include "gemm_tiled.h"

namespace
{

constexpr int kTileM = 64;
constexpr int kTileN = 64;
constexpr int kTileK = 16;
constexpr int kGemmThreads = 256;
static_assert(kTileM * kTileN == kGemmThreads * 16, "each thread owns 4x4 outputs");

/* C[m][n] = alpha * sum_k A[m][k] * B[k][n] for one (batch, head) per grid (y, z).  The
 * head of A and of B is head / group (group = heads_q / heads_kv for K and V, else 1). */
struct GemmParams {
    const void *a;
    const void *b;
    void *c;
    int64_t a_batch, a_head, a_row, a_col; /* A[m][k] */
    int64_t b_batch, b_head, b_row, b_col; /* B[k][n] */
    int64_t c_batch, c_head, c_row, c_col; /* C[m][n] */
    int a_group, b_group;
    int m, n, k;
    int a_dtype, b_dtype, c_dtype; /* 0 f32, 1 f16, 2 bf16 */
    int n_tiles;                   /* tiles along n: blockIdx.x = m_tile * n_tiles + n_tile */
    float alpha;
};

__device__ __forceinline__ float gemm_load(const void *base, int64_t idx, int dtype)
{
    if (dtype == 0) return static_cast<const float *>(base)[idx];
    if (dtype == 1) return gpu_half_to_float(static_cast<const gpu_half *>(base)[idx]);
    return gpu_bf16_to_float(static_cast<const gpu_bf16 *>(base)[idx]);
}

__device__ __forceinline__ void gemm_store(void *base, int64_t idx, int dtype, float v)
{
    if (dtype == 0) static_cast<float *>(base)[idx] = v;
    else if (dtype == 1) static_cast<gpu_half *>(base)[idx] = gpu_float_to_half(v);
    else static_cast<gpu_bf16 *>(base)[idx] = gpu_float_to_bf16(v);
}

__global__ void __launch_bounds__(kGemmThreads) gemm_tiled_kernel(GemmParams p)
{
    /* +1 column: the 4x4 register tiles read columns ty + 16r, tx + 16c without conflicts. */
    __shared__ float as[kTileK][kTileM + 1];
    __shared__ float bs[kTileK][kTileN + 1];

    const int head = blockIdx.y, batch = blockIdx.z;
    const int m0 = (blockIdx.x / p.n_tiles) * kTileM;
    const int n0 = (blockIdx.x % p.n_tiles) * kTileN;
    const int64_t a_base = batch * p.a_batch + (int64_t)(head / p.a_group) * p.a_head;
    const int64_t b_base = batch * p.b_batch + (int64_t)(head / p.b_group) * p.b_head;
    const int64_t c_base = batch * p.c_batch + (int64_t)head * p.c_head;
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    /* Load order follows the unit stride so consecutive threads read consecutive elements. */
    const bool a_k_fast = p.a_col == 1;
    const bool b_n_fast = p.b_col == 1;

    float acc[4][4];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int c = 0; c < 4; ++c)
            acc[r][c] = 0.f;

    for (int k0 = 0; k0 < p.k; k0 += kTileK) {
        for (int i = tid; i < kTileM * kTileK; i += kGemmThreads) {
            const int mm = a_k_fast ? i / kTileK : i % kTileM;
            const int kk = a_k_fast ? i % kTileK : i / kTileM;
            const int m = m0 + mm, k = k0 + kk;
            as[kk][mm] = (m < p.m && k < p.k)
                             ? gemm_load(p.a, a_base + m * p.a_row + k * p.a_col, p.a_dtype)
                             : 0.f;
        }
        for (int i = tid; i < kTileK * kTileN; i += kGemmThreads) {
            const int kk = b_n_fast ? i / kTileN : i % kTileK;
            const int nn = b_n_fast ? i % kTileN : i / kTileK;
            const int k = k0 + kk, n = n0 + nn;
            bs[kk][nn] = (k < p.k && n < p.n)
                             ? gemm_load(p.b, b_base + k * p.b_row + n * p.b_col, p.b_dtype)
                             : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kTileK; ++kk) {
            float ar[4], bc[4];
#pragma unroll
            for (int r = 0; r < 4; ++r)
                ar[r] = as[kk][ty + 16 * r];
#pragma unroll
            for (int c = 0; c < 4; ++c)
                bc[c] = bs[kk][tx + 16 * c];
#pragma unroll
            for (int r = 0; r < 4; ++r)
#pragma unroll
                for (int c = 0; c < 4; ++c)
                    acc[r][c] = fmaf(ar[r], bc[c], acc[r][c]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int m = m0 + ty + 16 * r;
        if (m >= p.m) continue;
#pragma unroll
        for (int c = 0; c < 4; ++c) {
            const int n = n0 + tx + 16 * c;
            if (n < p.n)
                gemm_store(p.c, c_base + m * p.c_row + n * p.c_col, p.c_dtype, p.alpha * acc[r][c]);
        }
    }
}

int launch(GemmParams &p, int batch, int heads, void *stream)
{
    if (p.m == 0 || p.n == 0 || batch == 0 || heads == 0) return 0;
    p.n_tiles = (p.n + kTileN - 1) / kTileN;
    const int m_tiles = (p.m + kTileM - 1) / kTileM;
    const dim3 grid((unsigned)m_tiles * (unsigned)p.n_tiles, heads, batch);
    gemm_tiled_kernel<<<grid, kGemmThreads, 0, (gpuStream_t)stream>>>(p);
    return (int)gpuGetLastError();
}

} // namespace

extern "C" int pa_gpu_gemm_qk(const pa_gpu_args *a, float *scores, void *stream)
{
    GemmParams p{};
    p.a = a->q;
    p.a_batch = a->q_stride[0];
    p.a_head = a->q_stride[1];
    p.a_row = a->q_stride[2];
    p.a_col = a->q_stride[3];
    p.a_group = 1;
    /* B[k = d][n = j] = K[j][d] */
    p.b = a->k;
    p.b_batch = a->k_stride[0];
    p.b_head = a->k_stride[1];
    p.b_row = a->k_stride[3];
    p.b_col = a->k_stride[2];
    p.b_group = a->heads_q / a->heads_kv;
    p.c = scores;
    p.c_col = 1;
    p.c_row = a->seq_kv;
    p.c_head = (int64_t)a->seq_q * a->seq_kv;
    p.c_batch = p.c_head * a->heads_q;
    p.m = a->seq_q;
    p.n = a->seq_kv;
    p.k = a->head_dim;
    p.a_dtype = p.b_dtype = a->dtype;
    p.c_dtype = 0;
    p.alpha = a->scale;
    return launch(p, a->batch, a->heads_q, stream);
}

extern "C" int pa_gpu_gemm_pv(const pa_gpu_args *a, const void *probs, int64_t p_row_stride,
                              void *stream)
{
    GemmParams p{};
    p.a = probs;
    p.a_col = 1;
    p.a_row = p_row_stride;
    p.a_head = p_row_stride * a->seq_q;
    p.a_batch = p.a_head * a->heads_q;
    p.a_group = 1;
    p.b = a->v;
    p.b_batch = a->v_stride[0];
    p.b_head = a->v_stride[1];
    p.b_row = a->v_stride[2];
    p.b_col = a->v_stride[3];
    p.b_group = a->heads_q / a->heads_kv;
    p.c = a->o;
    p.c_batch = a->o_stride[0];
    p.c_head = a->o_stride[1];
    p.c_row = a->o_stride[2];
    p.c_col = a->o_stride[3];
    p.m = a->seq_q;
    p.n = a->head_dim_v;
    p.k = a->seq_kv;
    p.a_dtype = p.b_dtype = p.c_dtype = a->dtype;
    p.alpha = 1.f;
    return launch(p, a->batch, a->heads_q, stream);
}

extern "C" int pa_gpu_gemm(const pa_gpu_gemm_desc *d, void *stream)
{
    GemmParams p{};
    p.a = d->a;
    p.b = d->b;
    p.c = d->c;
    p.a_batch = d->a_batch, p.a_head = d->a_head, p.a_row = d->a_row, p.a_col = d->a_col;
    p.b_batch = d->b_batch, p.b_head = d->b_head, p.b_row = d->b_row, p.b_col = d->b_col;
    p.c_batch = d->c_batch, p.c_head = d->c_head, p.c_row = d->c_row, p.c_col = d->c_col;
    p.a_group = d->a_group;
    p.b_group = d->b_group;
    p.m = d->m, p.n = d->n, p.k = d->k;
    p.a_dtype = d->a_dtype, p.b_dtype = d->b_dtype, p.c_dtype = d->c_dtype;
    p.alpha = d->alpha;
    return launch(p, d->batch, d->heads, stream);
}
