// Flash forward on CDNA matrix cores (gfx908 / gfx90a): the AMD-only fast path beside the
// shared generic kernel.  Each wavefront owns 32 query rows; per step of 32 keys it forms
// S = Q K^T with v_mfma_f32_32x32x8 (f16, or bf16_1k on gfx90a), runs the online softmax on
// the f32 accumulators, passes P through LDS (accumulator layout -> operand layout) and adds
// P V with the same instruction.  f32 accumulation throughout; P is rounded to the storage
// dtype before P V, as on the CUDA tensor-core path.
//
// MFMA 32x32x8 operand layout (one wave64): A[i][k] sits in lane i + 32*(k/4), element k%4;
// B[k][j] in lane j + 32*(k/4), element k%4; the 32x32 f32 result D[i][j] in lane
// j + 32*((i/4)%2), register 4*(i/8) + i%4.
#include "gpu_port.h"
#include "flash_mfma.h"
#include "gpu_rows.h"

#include <math.h>
#include <stdint.h>

#if defined(__gfx908__) || defined(__gfx90a__) || defined(PA_EMU_MFMA)
#define PA_MFMA_TARGET 1
#endif

namespace
{

constexpr int kWaves = 4; // wavefronts per work-group
constexpr int kWave = 64; // MFMA is a wave64 instruction (CDNA)
constexpr int kThreads = kWaves * kWave;
constexpr int kTile = 32;           // query rows per wave, keys per step: the MFMA tile
constexpr int kPStride = kTile + 2; // halfwords per P row in LDS (+2: fewer bank conflicts)

#if defined(PA_MFMA_TARGET)
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Row of result register r in a lane of half `half` (lanes 32..63 are half 1).
__device__ __forceinline__ int acc_row(int r, int half) { return (r / 4) * 8 + half * 4 + (r % 4); }

__device__ __forceinline__ uint16_t load_bits(const void *base, int64_t idx)
{
    return static_cast<const uint16_t *>(base)[idx];
}

__device__ __forceinline__ uint16_t float_to_bits(float x, int dtype)
{
    uint16_t b;
    if (dtype == 1) {
        const gpu_half h = gpu_float_to_half(x);
        __builtin_memcpy(&b, &h, sizeof b);
    } else {
        const gpu_bf16 h = gpu_float_to_bf16(x);
        __builtin_memcpy(&b, &h, sizeof b);
    }
    return b;
}

__device__ __forceinline__ int visible_keys(const pa_gpu_args &a, int query)
{
    int n = a.seq_kv;
    if (a.mask == 1) n = query + 1;
    else if (a.mask == 2) n = query + 1 + (a.seq_kv - a.seq_q);
    return n < 0 ? 0 : (n > a.seq_kv ? a.seq_kv : n);
}

#if defined(PA_EMU_MFMA)
// tests/hip/emu: the instruction emulated on the CPU from the layout above.
__device__ __forceinline__ float bits_to_float(uint16_t b, int dtype)
{
    if (dtype == 1) {
        gpu_half h;
        __builtin_memcpy(&h, &b, sizeof b);
        return gpu_half_to_float(h);
    }
    gpu_bf16 h;
    __builtin_memcpy(&h, &b, sizeof b);
    return gpu_bf16_to_float(h);
}

__device__ __forceinline__ void mfma_step(const uint16_t (&a)[4], const uint16_t (&b)[4],
                                          float (&acc)[16], int dtype)
{
    float af[4], bf[4];
    for (int t = 0; t < 4; ++t) {
        af[t] = bits_to_float(a[t], dtype);
        bf[t] = bits_to_float(b[t], dtype);
    }
    pa_emu_mfma_32x32x8(af, bf, acc);
}
#elif defined(PA_MFMA_TARGET)
typedef _Float16 pa_f16x4 __attribute__((ext_vector_type(4)));
typedef short pa_i16x4 __attribute__((ext_vector_type(4)));
typedef float pa_f32x16 __attribute__((ext_vector_type(16)));

__device__ __forceinline__ void mfma_step(const uint16_t (&a)[4], const uint16_t (&b)[4],
                                          float (&acc)[16], int dtype)
{
    pa_f32x16 c;
#pragma unroll
    for (int i = 0; i < 16; ++i)
        c[i] = acc[i];
    if (dtype == 1) {
        pa_f16x4 va, vb;
#pragma unroll
        for (int t = 0; t < 4; ++t) {
            va[t] = __builtin_bit_cast(_Float16, a[t]);
            vb[t] = __builtin_bit_cast(_Float16, b[t]);
        }
        c = __builtin_amdgcn_mfma_f32_32x32x8f16(va, vb, c, 0, 0, 0);
    }
#if defined(__gfx90a__)
    else {
        pa_i16x4 va, vb;
#pragma unroll
        for (int t = 0; t < 4; ++t) {
            va[t] = (short)a[t];
            vb[t] = (short)b[t];
        }
        c = __builtin_amdgcn_mfma_f32_32x32x8bf16_1k(va, vb, c, 0, 0, 0);
    }
#endif
#pragma unroll
    for (int i = 0; i < 16; ++i)
        acc[i] = c[i];
}
#endif
#endif // PA_MFMA_TARGET

// DMAX: head_dim and head_dim_v bound (64 or 128): sizes the register tiles.
template <int DMAX>
__global__ void __launch_bounds__(kThreads) flash_fwd_mfma_kernel(pa_gpu_args a)
{
#if defined(PA_MFMA_TARGET)
    __shared__ uint16_t p_tile[kWaves][kTile * kPStride];
    const int tid = threadIdx.x, wave = tid / kWave, lane = tid % kWave;
    const int col = lane % kTile, half = lane / kTile;
    const int head = blockIdx.y, batch = blockIdx.z;
    const int head_kv = head / (a.heads_q / a.heads_kv);
    const int64_t qb = batch * a.q_stride[0] + head * a.q_stride[1];
    const int64_t kb = batch * a.k_stride[0] + head_kv * a.k_stride[1];
    const int64_t vb = batch * a.v_stride[0] + head_kv * a.v_stride[1];
    const int64_t ob = batch * a.o_stride[0] + head * a.o_stride[1];
    const int block_row0 = blockIdx.x * (kWaves * kTile);
    const int row0 = block_row0 + wave * kTile;
    const float qscale = a.scale * kLog2e; // applied to S in f32, not to the f16 Q
    const int nk = a.head_dim / 8;         // MFMA steps over head_dim (a multiple of 8)

    // Q as the A operand of S = Q K^T, kept in registers: Q[row0 + col][8kk + 4half + t].
    uint16_t qa[DMAX / 8][4];
    const int qrow = row0 + col;
#pragma unroll
    for (int kk = 0; kk < DMAX / 8; ++kk)
#pragma unroll
        for (int t = 0; t < 4; ++t) {
            const int d = 8 * kk + 4 * half + t;
            qa[kk][t] = (kk < nk && qrow < a.seq_q)
                            ? load_bits(a.q, qb + (int64_t)qrow * a.q_stride[2] +
                                                 (int64_t)d * a.q_stride[3])
                            : (uint16_t)0;
        }

    float m[16], l[16], o[DMAX / 32][16];
#pragma unroll
    for (int r = 0; r < 16; ++r) {
        m[r] = -INFINITY;
        l[r] = 0.f;
#pragma unroll
        for (int cb = 0; cb < DMAX / 32; ++cb)
            o[cb][r] = 0.f;
    }

    // Every wave walks the same key steps (barriers stay uniform); masks do the rest.
    const int last_row = min(block_row0 + kWaves * kTile, a.seq_q) - 1;
    const int key_end = visible_keys(a, last_row);
    for (int key0 = 0; key0 < key_end; key0 += kTile) {
        float s[16];
#pragma unroll
        for (int r = 0; r < 16; ++r)
            s[r] = 0.f;
        const int key = key0 + col; // this lane's column of S
#pragma unroll
        for (int kk = 0; kk < DMAX / 8; ++kk) {
            if (kk >= nk) continue; // uniform across the wave
            uint16_t kv[4];
#pragma unroll
            for (int t = 0; t < 4; ++t) {
                const int d = 8 * kk + 4 * half + t;
                kv[t] = key < a.seq_kv ? load_bits(a.k, kb + (int64_t)key * a.k_stride[2] +
                                                            (int64_t)d * a.k_stride[3])
                                       : (uint16_t)0;
            }
            mfma_step(qa[kk], kv, s, a.dtype);
        }
        // Online softmax: row acc_row(r, half) of S lies across the 32 lanes of this half.
#pragma unroll
        for (int r = 0; r < 16; ++r) {
            const int row = row0 + acc_row(r, half);
            const float x =
                (row < a.seq_q && key < visible_keys(a, row)) ? s[r] * qscale : -INFINITY;
            const float m_new = fmaxf(m[r], gpu_group_max<kTile>(x));
            const float m_use = m_new == -INFINITY ? 0.f : m_new;
            const float alpha = exp2f(m[r] - m_use);
            const float p = exp2f(x - m_use);
            l[r] = l[r] * alpha + gpu_group_sum<kTile>(p);
            m[r] = m_new;
#pragma unroll
            for (int cb = 0; cb < DMAX / 32; ++cb)
                o[cb][r] *= alpha;
            p_tile[wave][acc_row(r, half) * kPStride + col] = float_to_bits(p, a.dtype);
        }
        __syncthreads();
        // O += P V: A = P[col][8kk + 4half + t] from LDS, B = V[key0 + 8kk + 4half + t][32cb +
        // col].
#pragma unroll
        for (int kk = 0; kk < kTile / 8; ++kk) {
            uint16_t pa[4];
#pragma unroll
            for (int t = 0; t < 4; ++t)
                pa[t] = p_tile[wave][col * kPStride + 8 * kk + 4 * half + t];
#pragma unroll
            for (int cb = 0; cb < DMAX / 32; ++cb) {
                if (32 * cb >= a.head_dim_v) continue; // uniform
                uint16_t vv[4];
                const int vcol = 32 * cb + col;
#pragma unroll
                for (int t = 0; t < 4; ++t) {
                    const int vkey = key0 + 8 * kk + 4 * half + t;
                    vv[t] = (vkey < a.seq_kv && vcol < a.head_dim_v)
                                ? load_bits(a.v, vb + (int64_t)vkey * a.v_stride[2] +
                                                     (int64_t)vcol * a.v_stride[3])
                                : (uint16_t)0;
                }
                mfma_step(pa, vv, o[cb], a.dtype);
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int r = 0; r < 16; ++r) {
        const int row = row0 + acc_row(r, half);
        if (row >= a.seq_q) continue;
        const bool seen = visible_keys(a, row) > 0;
        const float inv = pa_gpu_row_inv(l[r], seen);
#pragma unroll
        for (int cb = 0; cb < DMAX / 32; ++cb) {
            const int c = 32 * cb + col;
            if (c < a.head_dim_v)
                static_cast<uint16_t *>(
                    a.o)[ob + (int64_t)row * a.o_stride[2] + (int64_t)c * a.o_stride[3]] =
                    float_to_bits(o[cb][r] * inv, a.dtype);
        }
        if (a.lse && col == 0)
            a.lse[((int64_t)batch * a.heads_q + head) * a.seq_q + row] =
                pa_gpu_row_lse((m[r] + log2f(l[r])) * kLn2, l[r], seen);
    }
#else
    (void)a; // no matrix cores on this target: the host never launches it here
#endif
}

} // namespace

extern "C" size_t pa_hip_flash_mfma_lds(void)
{
    return sizeof(uint16_t) * kWaves * kTile * kPStride;
}

extern "C" int pa_hip_flash_mfma(const pa_gpu_args *a, void *stream)
{
    const int dmax = a->head_dim > a->head_dim_v ? a->head_dim : a->head_dim_v;
    const dim3 grid((a->seq_q + kWaves * kTile - 1) / (kWaves * kTile), a->heads_q, a->batch);
    void (*kernel)(pa_gpu_args) =
        dmax <= 64 ? flash_fwd_mfma_kernel<64> : flash_fwd_mfma_kernel<128>;
    kernel<<<grid, kThreads, 0, (gpuStream_t)stream>>>(*a);
    return (int)gpuGetLastError();
}
