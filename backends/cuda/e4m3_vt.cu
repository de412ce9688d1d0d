/*
 * V^T for the Hopper kernel's e4m3 inputs (flash_hopper.cu).  wgmma takes 8-bit operands
 * K-major only, so P V needs V with its keys contiguous: this kernel writes
 * vt[batch][head_kv][d][key] (keys padded with zeros to a multiple of 128, whole key tiles)
 * from V [batch][key][head_kv][d] (any strides, 16-byte rows), once per forward.
 *
 * Within every 16 keys the order is that of P's A fragments: a lane's registers hold the
 * scores of accumulator keys 2 t4, + 1, + 8, + 9 of each 16, where the fragment's logical
 * keys are 4 t4 .. 4 t4 + 3, so logical key 4 t + i of a group of 16 is stored key
 * 8 (i / 2) + 2 t + (i % 2).  P then goes from the accumulator to the fragment in each
 * lane's own registers, without shuffles.
 *
 * It reads V once and writes it once (2 x batch x heads_kv x seq_kv x head_dim bytes: 33 MB
 * at batch 2, 16 heads, 8k keys, head dim 128, about 10 us at 3 TB/s, against ~1 ms for that
 * forward).
 */
#include "flash_hopper.h"

#include <stdint.h>

namespace
{

constexpr int kKeys = 64;     /* keys a block transposes */
constexpr int kThreads = 256; /* threads a block */
constexpr int kMaxD = 128;    /* the head dims the e4m3 instances have */
constexpr int kPad = 16;      /* bytes after each staged row: 16-byte rows stay aligned */

__global__ void __launch_bounds__(kThreads)
    e4m3_vt_kernel(const uint8_t *__restrict__ v, int64_t st_b, int64_t st_h, int64_t st_s,
                   int seq_kv, int d, int s_pad, uint8_t *__restrict__ vt)
{
    __shared__ __align__(16) uint8_t tile[kKeys][kMaxD + kPad];
    const int key0 = blockIdx.x * kKeys, h = blockIdx.y, b = blockIdx.z;
    const int pieces = d / 16; /* 16-byte pieces of a row */
    const uint8_t *src = v + b * st_b + h * st_h;
    for (int i = threadIdx.x; i < kKeys * pieces; i += kThreads) {
        const int key = i / pieces, piece = i % pieces;
        uint4 x = make_uint4(0, 0, 0, 0); /* zeros past the keys: P is 0 there, and 0 x NaN
                                           * would still be NaN */
        if (key0 + key < seq_kv)
            x = *reinterpret_cast<const uint4 *>(src + (key0 + key) * st_s + 16 * piece);
        *reinterpret_cast<uint4 *>(&tile[key][16 * piece]) = x;
    }
    __syncthreads();
    /* four logical keys (one 32-bit store) of row dd of V^T a thread at a time */
    uint8_t *dst = vt + ((int64_t)b * gridDim.y + h) * d * s_pad + key0;
    for (int i = threadIdx.x; i < d * (kKeys / 4); i += kThreads) {
        const int dd = i / (kKeys / 4), quad = i % (kKeys / 4);
        const int group = 16 * (quad / 4), t = quad % 4; /* logical keys group + 4t + 0..3 */
        uint32_t w = 0;
#pragma unroll
        for (int e = 0; e < 4; ++e)
            w |= (uint32_t)tile[group + 8 * (e / 2) + 2 * t + e % 2][dd] << (8 * e);
        *reinterpret_cast<uint32_t *>(dst + (int64_t)dd * s_pad + 4 * quad) = w;
    }
}

} // namespace

extern "C" int pa_cuda_e4m3_vt_keys(int seq_kv)
{
    return seq_kv > 0 ? (seq_kv + 127) / 128 * 128 : 128;
}

extern "C" size_t pa_cuda_e4m3_vt_bytes(int batch, int heads_kv, int head_dim, int seq_kv)
{
    return (size_t)batch * heads_kv * head_dim * pa_cuda_e4m3_vt_keys(seq_kv);
}

extern "C" int pa_cuda_e4m3_vt(const pa_gpu_args *a, void *vt, void *stream)
{
    if (a->head_dim > kMaxD || a->head_dim % 16 || a->v_stride[3] != 1)
        return (int)cudaErrorInvalidValue;
    const int s_pad = pa_cuda_e4m3_vt_keys(a->seq_kv);
    const dim3 grid(s_pad / kKeys, a->heads_kv, a->batch);
    if (a->batch == 0 || a->heads_kv == 0) return (int)cudaSuccess;
    e4m3_vt_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const uint8_t *>(a->v), a->v_stride[0], a->v_stride[1], a->v_stride[2],
        a->seq_kv, a->head_dim, s_pad, static_cast<uint8_t *>(vt));
    return (int)cudaGetLastError();
}
