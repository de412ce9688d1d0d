/*
 * gpu_serving.h: one sequence of a serving problem on the device (CUDA and HIP kernels):
 * its query rows, its key count and the address of its key rows in a dense, varlen, dense
 * cache or paged K/V, from the int32 tensors of pa_gpu_args.  Every value read from those
 * tensors is clamped to what the tensors hold, so a bad offset, length or block index
 * (which the core checks only with check_device_inputs) never addresses memory outside them.
 * Include after the runtime's header.
 */
#ifndef POLYATTN_GPU_SERVING_H
#define POLYATTN_GPU_SERVING_H

#include "gpu_attn.h"

enum { PA_GPU_KV_DENSE = 0, PA_GPU_KV_VARLEN = 1, PA_GPU_KV_CACHE = 2, PA_GPU_KV_PAGED = 3 };

__device__ __forceinline__ int pa_gpu_clampi(int x, int lo, int hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

/* Sequence b: queries [q0, q0 + len_q) of the packed q (varlen) or 0.. of batch b; keys
 * [0, len_kv), the varlen ones starting at packed row kv0. */
struct pa_gpu_seq {
    int q0, len_q, kv0, len_kv;
};

__device__ __forceinline__ pa_gpu_seq pa_gpu_seq_of(const pa_gpu_args &a, int b)
{
    pa_gpu_seq s;
    s.q0 = 0, s.len_q = a.seq_q, s.kv0 = 0, s.len_kv = a.seq_kv;
    if (a.varlen_q) {
        const int x = pa_gpu_clampi(a.cu_seqlens_q[b], 0, a.total_q);
        const int y = pa_gpu_clampi(a.cu_seqlens_q[b + 1], x, a.total_q);
        s.q0 = x, s.len_q = min(y - x, a.seq_q);
    }
    if (a.kv_layout == PA_GPU_KV_VARLEN) {
        const int x = pa_gpu_clampi(a.cu_seqlens_kv[b], 0, a.kv_rows);
        const int y = pa_gpu_clampi(a.cu_seqlens_kv[b + 1], x, a.kv_rows);
        s.kv0 = x, s.len_kv = min(y - x, a.seq_kv);
    } else if (a.kv_layout == PA_GPU_KV_CACHE || a.kv_layout == PA_GPU_KV_PAGED) {
        const int cap =
            a.kv_layout == PA_GPU_KV_PAGED ? a.max_blocks_per_seq * a.kv_rows : a.kv_rows;
        const int used = pa_gpu_clampi(a.seqused_kv[b], 0, cap);
        s.len_kv = min(min(used + a.seq_new, cap), a.seq_kv);
    }
    return s;
}

/* Element offset of key j (< the sequence's capacity) of KV head h of sequence b, for a
 * tensor of K/V's shape at `stride`. */
__device__ __forceinline__ int64_t pa_gpu_kv_offset(const pa_gpu_args &a, int b,
                                                    const pa_gpu_seq &s, int h, int j,
                                                    const int64_t stride[4])
{
    switch (a.kv_layout) {
    case PA_GPU_KV_VARLEN: return h * stride[1] + (int64_t)(s.kv0 + j) * stride[2];
    case PA_GPU_KV_PAGED: {
        const int n = j / a.kv_rows;
        const int blk =
            pa_gpu_clampi(a.block_table[(int64_t)b * a.max_blocks_per_seq + n], 0, a.kv_count - 1);
        return blk * stride[0] + h * stride[1] + (int64_t)(j - n * a.kv_rows) * stride[2];
    }
    default: return b * stride[0] + h * stride[1] + (int64_t)j * stride[2];
    }
}

/* Element offset of query i of sequence b, head h, in q or o (their strides). */
__device__ __forceinline__ int64_t pa_gpu_q_offset(const pa_gpu_args &a, int b, const pa_gpu_seq &s,
                                                   int h, int i, const int64_t stride[4])
{
    return a.varlen_q ? h * stride[1] + (int64_t)(s.q0 + i) * stride[2]
                      : b * stride[0] + h * stride[1] + (int64_t)i * stride[2];
}

/* Index of query i's LSE: [heads_q, total_q] with varlen q, else [batch, heads_q, seq_q]. */
__device__ __forceinline__ int64_t pa_gpu_lse_index(const pa_gpu_args &a, int b,
                                                    const pa_gpu_seq &s, int h, int i)
{
    return a.varlen_q ? (int64_t)h * a.total_q + s.q0 + i
                      : ((int64_t)b * a.heads_q + h) * a.seq_q + i;
}

/* a with the lengths of sequence s: the dense helpers (masks, windows, ALiBi diagonals)
 * then work per sequence. */
__device__ __forceinline__ pa_gpu_args pa_gpu_args_for_seq(const pa_gpu_args &a,
                                                           const pa_gpu_seq &s)
{
    pa_gpu_args r = a;
    r.seq_q = s.len_q;
    r.seq_kv = s.len_kv;
    return r;
}

#endif
