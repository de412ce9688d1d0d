/*
 * The deterministic d_bias pass of the shared SIMT flash backward (flash_bwd.h): when several
 * (batch, head) pairs share a bias element and no atomics may run, a block per (key tile,
 * query tile, d_bias slice) rebuilds dS of each sharing pair in order (flash_bwd_tile.cuh)
 * and sums it.  pa_gpu_flash_bwd launches it last.
 */
#include "flash_bwd_tile.cuh"

namespace
{

/* Deterministic d_bias of a bias shared by several (batch, head) pairs (dense layouts): a
 * block per (key tile, query tile, d_bias slice) sums dS over the pairs sharing the slice in
 * order; tiles outside the causal band or the window are zeros. */
__global__ void __launch_bounds__(kThreads)
    flash_bwd_dbias_kernel(pa_gpu_bwd_args g, BwdPlan pl, const float *delta)
{
    extern __shared__ float bwd_smem[];
    float *sm = bwd_smem;
    const pa_gpu_args &a = g.fwd;
    const int key0 = blockIdx.x * pl.bk, nk = min(pl.bk, a.seq_kv - key0);
    const int nb = g.d_bias_batch, nh = g.d_bias_heads, group = a.heads_q / a.heads_kv;
    const pa_gpu_seq s = {0, a.seq_q, 0, a.seq_kv};
    const EntryMap em = entry_map(pl);
    for (int z = blockIdx.z; z < nb * nh; z += gridDim.z)
        for (int q0 = blockIdx.y * pl.bq; q0 < a.seq_q; q0 += gridDim.y * pl.bq) {
            const int nq = min(pl.bq, a.seq_q - q0), bb = z / nh, hh = z % nh;
            float dsum[kMaxEntries];
#pragma unroll
            for (int i = 0; i < kMaxEntries; ++i)
                dsum[i] = 0.f;
            int ka, kz;
            keys_seen(a, q0, nq, ka, kz);
            if (ka < key0 + nk && kz > key0) { /* uniform over the block */
                const int b_end = nb == 1 ? a.batch : bb + 1, h_end = nh == 1 ? a.heads_q : hh + 1;
                for (int b = nb == 1 ? 0 : bb; b < b_end; ++b)
                    for (int h = nh == 1 ? 0 : hh; h < h_end; ++h) {
                        const BwdBases x = bwd_bases<false>(a, b, s, h, h / group);
                        __syncthreads(); /* the previous pair's readers are done */
                        load_query_tile(g, a, pl, sm, delta, x, q0, nq);
                        load_key_tile(a, pl, sm, x, key0, nk);
                        __syncthreads();
                        const VarTile vt = {b, h, kDbiasSum, nullptr, 0};
                        scores_tile<true>(a, pl, sm, q0, nq, key0, nk, vt, dsum);
                    }
            }
            if (em.lane != 0) continue;
            float *out = g.d_bias + ((int64_t)z * a.seq_q + q0) * a.seq_kv + key0;
#pragma unroll
            for (int i = 0; i < kMaxEntries; ++i) {
                const int q = (em.e0 + em.groups * i) / pl.bk;
                if (i < em.ne && q < nq && em.k < nk) out[(int64_t)q * a.seq_kv + em.k] = dsum[i];
            }
        }
}

} // namespace

int pa_gpu_flash_bwd_dbias_pass(const pa_gpu_bwd_args *g, const float *delta, gpuStream_t st)
{
    const pa_gpu_args &a = g->fwd;
    BwdPlan pl;
    if (!plan_for(a.head_dim, a.head_dim_v, &pl)) return 0; /* refused before the launches */
    const size_t smem = (size_t)pl.floats * sizeof(float);
    auto dbias = flash_bwd_dbias_kernel;
    gpuError_t e = gpuFuncSetAttribute(dbias, 0, (int)smem);
    if (e != gpuSuccess) return (int)e;
    const dim3 grid((a.seq_kv + pl.bk - 1) / pl.bk, grid_for(a.seq_q, pl.bq),
                    grid_for((int64_t)g->d_bias_batch * g->d_bias_heads, 1));
    dbias<<<grid, kThreads, smem, st>>>(*g, pl, delta);
    return (int)gpuGetLastError();
}
