/*
 * flash_serving_tc_kernel: the tensor-core flash forward (flash_tc.cu, same key-tile step
 * from flash_tc_tile.cuh) for the serving layouts and for split-KV decode.
 *
 * Grid: x = query tiles of the longest sequence, y = query heads (KV heads when packed),
 * z = sequence x split.  Each block resolves its sequence (gpu_serving.h: varlen q, and K/V
 * dense, varlen, a dense cache or a paged cache through the block table), leaves at once
 * when its tile lies past the sequence's queries, and applies masks, windows and sinks with
 * the sequence's own lengths.
 *
 * PACK (GQA decode): the G = heads_q / heads_kv query heads of a KV head share one tile,
 * row r being query r / G of head r % G, so each K/V tile is loaded once for the whole
 * group; warps whose rows are all past the sequence skip the math.
 *
 * Split-KV (a.num_splits > 1): split s of a tile walks the s-th share of its key tiles and
 * writes O (normalised over its keys, f32) and LSE into the partials; pa_gpu_merge
 * combines them (and joins the sinks, which splits leave out).
 *
 * E4M3 (FP8 e4m3 inputs, opt-in until it has run on a GPU): K and V tiles arrive as bytes
 * through a ring of `stages` raw buffers (half the bytes of f16: decode is memory-bound) and
 * each is converted, exactly, to f16 in one tile buffer before its step; Q is converted as it
 * is loaded.  The products then run in f16 (P rounded to f16 as for f16 inputs); v_descale
 * scales O, which is written in o_dtype (q_descale x k_descale are in a.scale).
 */
#include "flash_tc.h"
#include "flash_tc_tile.cuh"
#include "gpu_serving.h"

#include <type_traits>

namespace
{

using namespace pa_tc;

/* PACK: one m16 tile per warp (64 rows: 16 queries of a group of 4, or 1 query of 64). */
template <int HEAD_DIM, bool PACK>
using ServingTraits = FlashTcTraits<HEAD_DIM, (HEAD_DIM <= 128 ? 64 : 32), PACK ? 1 : 0>;

/* K/V ring depth: 2 (one tile loading while one is used) up to kMaxStages (decode, where
 * a block has little math to hide its loads behind: more tiles in flight); shared memory
 * of the query tile and `stages` K and V tiles. */
constexpr int kMaxStages = PA_CUDA_SERVING_MAX_STAGES;
template <typename Tr>
constexpr size_t serving_smem(int stages)
{
    return (size_t)(Tr::kBlockM + 2 * stages * Tr::kBlockN) * Tr::kStride * 2;
}
/* e4m3: the query tile and one f16 K and V tile, then `stages` raw K and V tiles (bytes). */
template <typename Tr>
constexpr size_t serving_smem_e4m3(int stages)
{
    return (size_t)(Tr::kBlockM + 2 * Tr::kBlockN) * Tr::kStride * 2 +
           (size_t)2 * stages * Tr::kBlockN * Tr::kHeadDim;
}

/* cp.async.wait_group with a count known at run time (the ring depth). */
__device__ __forceinline__ void cp_async_wait_dyn(int pending)
{
    switch (pending) {
    case 0: cp_async_wait<0>(); break;
    case 1: cp_async_wait<1>(); break;
    case 2: cp_async_wait<2>(); break;
    case 3: cp_async_wait<3>(); break;
    default: cp_async_wait<4>(); break;
    }
}

/* ROWS rows of the tile from per-row addresses (row_ptr(r); nullptr: zero-filled, the copy
 * then names `any`, a valid address it does not read), cp.async 16 bytes at a time: the
 * query tile, whose rows may come from several heads. */
template <typename Tr, int ROWS, typename T, typename RowPtr>
__device__ __forceinline__ void load_rows_at(T *dst, const T *any, RowPtr row_ptr)
{
    constexpr int CHUNKS = Tr::kHeadDim / 8, TOTAL = ROWS * CHUNKS;
    for (int i = threadIdx.x; i < TOTAL; i += Tr::kThreads) {
        const int r = i / CHUNKS, c = i % CHUNKS;
        const T *src = row_ptr(r);
        cp_async16(dst + r * Tr::kStride + c * 8, src ? src + c * 8 : any, src != nullptr);
    }
}

/* A paged tile is loaded 16 rows at a time: block sizes are multiples of 16, so 16 rows from
 * a multiple of 16 lie in one block, found by one (uniform) block-table lookup, and load as
 * the dense rows do.  A lookup per row (a division, a dependent load and 64-bit products
 * before every copy) held paged decode at 40% of the dense cache's bandwidth on the H100 and
 * H200; a lookup per piece made just before its copies still left 1.28-1.42x the dense time,
 * with a block size of 256 as with 16: each lookup's latency stood between two copies.  So a
 * tile's lookups (shared by K and V) are made one tile ahead, while the previous tile is
 * being used. */
template <typename Tr>
struct PageRefs {
    static constexpr int kPieces = Tr::kBlockN / 16;
    static_assert(Tr::kBlockN % 16 == 0, "whole 16-row pieces");
    int blk[kPieces]; /* the cache block of each 16-row piece (0 past the sequence) */
};

template <typename Tr>
__device__ __forceinline__ PageRefs<Tr> page_refs(const pa_gpu_args &a, int b, int len_kv, int key0)
{
    PageRefs<Tr> p;
    const int *table = a.block_table + (int64_t)b * a.max_blocks_per_seq;
#pragma unroll
    for (int sb = 0; sb < PageRefs<Tr>::kPieces; ++sb) {
        const int j0 = key0 + sb * 16;
        p.blk[sb] = j0 < len_kv ? pa_gpu_clampi(table[j0 / a.kv_rows], 0, a.kv_count - 1) : 0;
    }
    return p;
}

/* Keys [key0, key0 + BN) of a paged cache (K or V: base, stride) into dst, rows STRIDE
 * elements apart (16-bit: the padded tile rows; e4m3: the raw rows, head-dim bytes). */
template <typename Tr, int STRIDE, typename T>
__device__ __forceinline__ void load_paged(T *dst, const T *base, const int64_t stride[4],
                                           const PageRefs<Tr> &p, int kv_rows, int len_kv, int head,
                                           int key0)
{
#pragma unroll
    for (int sb = 0; sb < PageRefs<Tr>::kPieces; ++sb) {
        const int j0 = key0 + sb * 16;
        const int first = j0 % kv_rows;
        load_rows<16, Tr::kHeadDim *(int)sizeof(T) / 16, STRIDE, Tr::kThreads>(
            dst + sb * 16 * STRIDE, base + p.blk[sb] * stride[0] + head * stride[1], stride[2],
            first, j0 < len_kv ? first + (len_kv - j0) : first);
    }
}

/* e4m3: ROWS raw rows (D bytes each) into f16 tile rows (kStride elements apart). */
template <typename Tr, int ROWS>
__device__ __forceinline__ void convert_rows(__half *dst, const uint8_t *src)
{
    constexpr int D = Tr::kHeadDim, PIECES = D / 8; /* 8 codes a piece */
    for (int i = threadIdx.x; i < ROWS * PIECES; i += Tr::kThreads) {
        const int r = i / PIECES, c = i % PIECES;
        const uint2 w = *reinterpret_cast<const uint2 *>(src + r * D + 8 * c);
        *reinterpret_cast<uint4 *>(dst + r * Tr::kStride + 8 * c) =
            make_uint4(e4m3x2_to_f16x2(w.x & 0xffffu), e4m3x2_to_f16x2(w.x >> 16),
                       e4m3x2_to_f16x2(w.y & 0xffffu), e4m3x2_to_f16x2(w.y >> 16));
    }
}

/* Two values of O's row at column col in o_dtype (0 f32, 1 f16, 2 bf16): e4m3 inputs. */
__device__ __forceinline__ void store_o2(void *orow, int col, int o_dtype, float x, float y)
{
    if (o_dtype == 0)
        *reinterpret_cast<float2 *>(static_cast<float *>(orow) + col) = make_float2(x, y);
    else if (o_dtype == 1)
        *reinterpret_cast<uint32_t *>(static_cast<__half *>(orow) + col) = Dt<__half>::pack(x, y);
    else
        *reinterpret_cast<uint32_t *>(static_cast<__nv_bfloat16 *>(orow) + col) =
            Dt<__nv_bfloat16>::pack(x, y);
}

/* T: the products' type; E4M3: the inputs are e4m3 bytes (T is then __half). */
template <int HEAD_DIM, typename T, int VAR, bool PACK, bool E4M3 = false>
__global__ void __launch_bounds__(ServingTraits<HEAD_DIM, PACK>::kThreads,
                                  ServingTraits<HEAD_DIM, PACK>::kMinBlocks)
    flash_serving_tc_kernel(pa_gpu_args a, int stages)
{
    using Tr = ServingTraits<HEAD_DIM, PACK>;
    using TS = typename std::conditional<E4M3, uint8_t, T>::type; /* as stored in memory */
    static_assert(!E4M3 || std::is_same<T, __half>::value, "e4m3 converts to f16");
    constexpr int D = HEAD_DIM, BM = Tr::kBlockM, BN = Tr::kBlockN, S = Tr::kStride;
    constexpr int MT = Tr::kMTiles;
    extern __shared__ __align__(16) unsigned char smem_raw[];
    const int kv_bufs = E4M3 ? 1 : stages; /* f16 K/V tiles: one when converted from bytes */
    T *sq = reinterpret_cast<T *>(smem_raw);
    T *sk = sq + BM * S;                                              /* [kv_bufs][BN][S] */
    T *sv = sk + kv_bufs * BN * S;                                    /* [kv_bufs][BN][S] */
    uint8_t *rk = reinterpret_cast<uint8_t *>(sv + kv_bufs * BN * S); /* e4m3: [stage][BN][D] */
    uint8_t *rv = rk + stages * BN * D;

    const int splits = a.num_splits > 1 ? a.num_splits : 1;
    const int b = blockIdx.z / splits, split = blockIdx.z % splits;
    const pa_gpu_seq seq = pa_gpu_seq_of(a, b);
    const int group = a.heads_q / a.heads_kv, G = PACK ? group : 1;
    const int n_rows = seq.len_q * G; /* rows of this (sequence, head) */
    /* Causal: the last query tiles see the most keys; start them first (as flash_tc.cu). */
    const int m_block = a.mask && !PACK ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
    const int row0 = m_block * BM;
    if (row0 >= n_rows) return;
    const pa_gpu_args sa = pa_gpu_args_for_seq(a, seq); /* the sequence's own lengths */
    const int head_kv = PACK ? blockIdx.y : blockIdx.y / group;
    /* tile row r: query r / G of head head0 + r % G */
    const int head0 = PACK ? head_kv * G : blockIdx.y;

    const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
    const int g = lane / 4, t4 = lane % 4;
    const int last_row = min(row0 + BM, n_rows) - 1;
    const int q_first = row0 / G, q_last = last_row / G;

    int key_begin = 0, key_end, mask_lo = 0, mask_hi;
    {
        int lo_last, hi_first;
        pa_gpu_visible_range(sa, q_first, key_begin, hi_first);
        pa_gpu_visible_range(sa, q_last, lo_last, key_end);
        mask_lo = lo_last;
        mask_hi = hi_first;
    }
    int t_begin = key_begin / BN;
    int t_end = key_end > key_begin ? (key_end + BN - 1) / BN : t_begin;
    if (splits > 1) { /* this split's share of the tile's key tiles */
        const int per = (t_end - t_begin + splits - 1) / splits;
        t_begin = min(t_begin + split * per, t_end);
        t_end = min(t_begin + per, t_end);
    }
    const int n_tiles = t_end - t_begin;

    const TS *qg = static_cast<const TS *>(a.q);
    const TS *kg = static_cast<const TS *>(a.k);
    const TS *vg = static_cast<const TS *>(a.v);
    const bool paged = a.kv_layout == PA_GPU_KV_PAGED;
    /* Unpaged K/V: rows of one head are k_stride[2] apart from key 0's. */
    const TS *k0 = kg + pa_gpu_kv_offset(a, b, seq, head_kv, 0, a.k_stride);
    const TS *v0 = vg + pa_gpu_kv_offset(a, b, seq, head_kv, 0, a.v_stride);
    /* the block-table entries of the next tile to load (tiles load in order) */
    PageRefs<Tr> refs_next;
    if (paged) refs_next = page_refs<Tr>(a, b, seq.len_kv, t_begin * BN);
    /* a K/V tile into ring buffer `stage`: 16-bit into the tile buffers, e4m3 into the raw
     * ones (rows of D bytes) */
    constexpr int kRowElems = E4M3 ? D : S, kPieces = D * (int)sizeof(TS) / 16;
    TS *ring_k = E4M3 ? reinterpret_cast<TS *>(rk) : reinterpret_cast<TS *>(sk);
    TS *ring_v = E4M3 ? reinterpret_cast<TS *>(rv) : reinterpret_cast<TS *>(sv);
    auto load_kv = [&](int stage, int tile) {
        const int key0 = tile * BN;
        TS *dk = ring_k + stage * BN * kRowElems, *dv = ring_v + stage * BN * kRowElems;
        if (paged) {
            load_paged<Tr, kRowElems>(dk, kg, a.k_stride, refs_next, a.kv_rows, seq.len_kv, head_kv,
                                      key0);
            load_paged<Tr, kRowElems>(dv, vg, a.v_stride, refs_next, a.kv_rows, seq.len_kv, head_kv,
                                      key0);
            if (tile + 1 < t_end) refs_next = page_refs<Tr>(a, b, seq.len_kv, key0 + BN);
        } else {
            load_rows<BN, kPieces, kRowElems, Tr::kThreads>(dk, k0, a.k_stride[2], key0,
                                                            seq.len_kv);
            load_rows<BN, kPieces, kRowElems, Tr::kThreads>(dv, v0, a.v_stride[2], key0,
                                                            seq.len_kv);
        }
    };

    auto q_row = [&](int r) -> const TS * {
        const int row = row0 + r;
        if (row >= n_rows) return nullptr;
        return qg + pa_gpu_q_offset(a, b, seq, head0 + row % G, row / G, a.q_stride);
    };
    if constexpr (E4M3) { /* converted as loaded (once a tile; rows past the end: zeros) */
        for (int i = tid; i < BM * (D / 8); i += Tr::kThreads) {
            const int r = i / (D / 8), c = i % (D / 8);
            const TS *src = q_row(r);
            const uint2 w = src ? *reinterpret_cast<const uint2 *>(src + 8 * c) : make_uint2(0, 0);
            *reinterpret_cast<uint4 *>(sq + r * S + 8 * c) =
                make_uint4(e4m3x2_to_f16x2(w.x & 0xffffu), e4m3x2_to_f16x2(w.x >> 16),
                           e4m3x2_to_f16x2(w.y & 0xffffu), e4m3x2_to_f16x2(w.y >> 16));
        }
    } else {
        load_rows_at<Tr, BM>(sq, qg, q_row);
    }
    /* K/V tiles through a ring of `stages` buffers: stages - 1 in flight while one is
     * used; one commit group a tile (empty past the last), so waiting until stages - 2
     * groups are pending means tile nt has landed */
    if (n_tiles > 0) load_kv(0, t_begin);
    cp_async_commit();
    for (int st = 1; st + 1 < stages; ++st) {
        if (st < n_tiles) load_kv(st, t_begin + st);
        cp_async_commit();
    }

    const int wrow = warp * 16 * MT; /* this warp's first row in the tile */
    const bool warp_active = row0 + wrow < n_rows;
    TileRows<MT> rows;
    float sink2[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int row = row0 + wrow + mt * 16 + g + 8 * r;
            const int query = row / G, head = head0 + row % G;
            if (row < n_rows) {
                pa_gpu_visible_range(sa, query, rows.vlo[mt][r], rows.vis[mt][r]);
                rows.diag[mt][r] = pa_gpu_diagonal(sa, query);
            } else {
                rows.vlo[mt][r] = rows.vis[mt][r] = rows.diag[mt][r] = 0;
            }
            /* splits leave the sinks to the merge */
            sink2[mt][r] = splits > 1 ? -INFINITY : pa_gpu_sink(a, head) * kLog2e;
        }
    TileScore sc;
    sc.scale = a.scale;
    sc.sl2 = VAR == kVarScore ? 1.f : a.scale * kLog2e;
    /* ALiBi is per head: packed tiles never carry it (the plan does not pack then) */
    sc.slope = VAR == kVarScore && !PACK ? pa_gpu_alibi_slope(a, b, head0) : 0.f;
    sc.cap = a.softcap;
    sc.inv_cap = sc.cap > 0.f ? 1.f / sc.cap : 0.f;
    sc.mask_lo = mask_lo;
    sc.mask_hi = mask_hi;

    float acc_o[MT][D / 8][4];
    float row_max[MT][2], row_sum[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int j = 0; j < D / 8; ++j)
            acc_o[mt][j][0] = acc_o[mt][j][1] = acc_o[mt][j][2] = acc_o[mt][j][3] = 0.f;
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            row_max[mt][r] = sink2[mt][r];
            row_sum[mt][r] = (t4 == 0 && sink2[mt][r] != -INFINITY) ? 1.f : 0.f;
        }
    }

    for (int nt = 0; nt < n_tiles; ++nt) {
        cp_async_wait_dyn(stages - 2);
        __syncthreads(); /* tile nt is visible; tile nt - 1's buffer is free */
        int st = nt % stages;
        if constexpr (E4M3) { /* raw tile nt into the f16 tiles, all threads done with nt - 1 */
            convert_rows<Tr, BN>(sk, rk + st * BN * D);
            convert_rows<Tr, BN>(sv, rv + st * BN * D);
            st = 0;
        }
        const int ahead = nt + stages - 1; /* into tile nt - 1's raw buffer, converted before */
        if (ahead < n_tiles) load_kv(ahead % stages, t_begin + ahead);
        cp_async_commit();
        if constexpr (E4M3) __syncthreads(); /* the converted tile is visible */
        if (warp_active)
            tile_step<Tr, T, VAR, MT>(sq, sk + st * BN * S, sv + st * BN * S, wrow, lane,
                                      (t_begin + nt) * BN, rows, sc, acc_o, row_max, row_sum);
    }
    cp_async_wait<0>();

    const int64_t part_rows =
        a.varlen_q ? (int64_t)a.heads_q * a.total_q : (int64_t)a.batch * a.heads_q * a.seq_q;
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            float l = row_sum[mt][r];
            l += __shfl_xor_sync(0xffffffffu, l, 1);
            l += __shfl_xor_sync(0xffffffffu, l, 2);
            const int row = row0 + wrow + mt * 16 + g + 8 * r;
            if (row >= n_rows) continue;
            const int query = row / G, head = head0 + row % G;
            const bool seen = rows.vis[mt][r] > rows.vlo[mt][r];
            const int64_t li = pa_gpu_lse_index(a, b, seq, head, query);
            if (splits > 1) { /* partials: a split that saw no key writes O = 0, -inf */
                const bool any = l > 0.f;
                const float inv = any ? a.v_descale / l : 0.f; /* (v_descale: 1 unless e4m3) */
                float *po = a.part_o + ((int64_t)split * part_rows + li) * D;
#pragma unroll
                for (int j = 0; j < D / 8; ++j)
                    *reinterpret_cast<float2 *>(po + j * 8 + 2 * t4) =
                        make_float2(acc_o[mt][j][2 * r] * inv, acc_o[mt][j][2 * r + 1] * inv);
                if (t4 == 0)
                    a.part_lse[(int64_t)split * part_rows + li] =
                        any ? (row_max[mt][r] + log2f(l)) * kLn2 : -INFINITY;
                continue;
            }
            const float inv = pa_gpu_row_inv(l, seen);
            const int64_t o_off = pa_gpu_q_offset(a, b, seq, head, query, a.o_stride);
            if constexpr (E4M3) { /* O in o_dtype, scaled by v_descale */
                const float f = inv * a.v_descale;
                void *orow = static_cast<char *>(a.o) + o_off * (a.o_dtype == 0 ? 4 : 2);
#pragma unroll
                for (int j = 0; j < D / 8; ++j)
                    store_o2(orow, j * 8 + 2 * t4, a.o_dtype, acc_o[mt][j][2 * r] * f,
                             acc_o[mt][j][2 * r + 1] * f);
            } else {
                T *orow = static_cast<T *>(a.o) + o_off;
#pragma unroll
                for (int j = 0; j < D / 8; ++j)
                    *reinterpret_cast<uint32_t *>(orow + j * 8 + 2 * t4) =
                        Dt<T>::pack(acc_o[mt][j][2 * r] * inv, acc_o[mt][j][2 * r + 1] * inv);
            }
            if (a.lse && t4 == 0)
                a.lse[li] = pa_gpu_row_lse((row_max[mt][r] + log2f(l)) * kLn2, l, seen);
        }
}

template <int HEAD_DIM, typename T, int VAR, bool PACK, bool E4M3>
cudaError_t launch(const pa_gpu_args &a, int stages, cudaStream_t stream)
{
    using Tr = ServingTraits<HEAD_DIM, PACK>;
    auto kernel = flash_serving_tc_kernel<HEAD_DIM, T, VAR, PACK, E4M3>;
    const size_t smem = E4M3 ? serving_smem_e4m3<Tr>(stages) : serving_smem<Tr>(stages);
    /* the limit is set once, to the deepest ring the device holds (the plan checks that
     * `stages` fits) */
    static unsigned long long attr_done = 0;
    int dev = 0, optin = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e != cudaSuccess) return e;
    if (dev < 0 || dev >= 64 || !(__atomic_load_n(&attr_done, __ATOMIC_RELAXED) & (1ull << dev))) {
        e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
        if (e != cudaSuccess) return e;
        const size_t most = E4M3 ? serving_smem_e4m3<Tr>(kMaxStages) : serving_smem<Tr>(kMaxStages);
        e = smem_attr_once(kernel, most < (size_t)optin ? most : (size_t)optin, attr_done);
    }
    if (e != cudaSuccess) return e;
    const int group = a.heads_q / a.heads_kv;
    const int rows = PACK ? a.seq_q * group : a.seq_q;
    const int splits = a.num_splits > 1 ? a.num_splits : 1;
    const dim3 grid((rows + Tr::kBlockM - 1) / Tr::kBlockM, PACK ? a.heads_kv : a.heads_q,
                    a.batch * splits);
    kernel<<<grid, Tr::kThreads, smem, stream>>>(a, stages);
    return cudaGetLastError();
}

/* The serving kernel's head dims (the plan sends others to the generic kernel). */
#define PA_FLASH_SERVING_HEAD_DIMS(X) X(64) X(128) X(256)

template <typename T, bool PACK, bool E4M3 = false>
cudaError_t dispatch(const pa_gpu_args &a, int stages, cudaStream_t stream)
{
    const bool score = pa_gpu_args_have_variants(&a);
#define PA_TILE(d)                                                                                 \
    case d:                                                                                        \
        return score ? launch<d, T, kVarScore, PACK, E4M3>(a, stages, stream)                      \
                     : launch<d, T, kVarNone, PACK, E4M3>(a, stages, stream);
    switch (a.head_dim) {
        PA_FLASH_SERVING_HEAD_DIMS(PA_TILE)
    default: return cudaErrorInvalidValue;
    }
#undef PA_TILE
}

} // namespace

extern "C" int pa_cuda_flash_serving_has_head_dim(int head_dim)
{
#define PA_CASE(d) case d:
    switch (head_dim) {
        PA_FLASH_SERVING_HEAD_DIMS(PA_CASE) return 1;
    default: return 0;
    }
#undef PA_CASE
}

extern "C" size_t pa_cuda_flash_serving_smem(int head_dim, int pack, int stages, int e4m3)
{
#define PA_TILE(d)                                                                                 \
    case d:                                                                                        \
        return e4m3 ? (pack ? serving_smem_e4m3<ServingTraits<d, true>>(stages)                    \
                            : serving_smem_e4m3<ServingTraits<d, false>>(stages))                  \
                    : (pack ? serving_smem<ServingTraits<d, true>>(stages)                         \
                            : serving_smem<ServingTraits<d, false>>(stages));
    switch (head_dim) {
        PA_FLASH_SERVING_HEAD_DIMS(PA_TILE)
    default: return 0;
    }
#undef PA_TILE
}

extern "C" int pa_cuda_flash_serving_rows(int head_dim, int pack)
{
#define PA_TILE(d)                                                                                 \
    case d: return pack ? ServingTraits<d, true>::kBlockM : ServingTraits<d, false>::kBlockM;
    switch (head_dim) {
        PA_FLASH_SERVING_HEAD_DIMS(PA_TILE)
    default: return 0;
    }
#undef PA_TILE
}

extern "C" int pa_cuda_flash_serving_key_tile(int head_dim) { return head_dim <= 128 ? 64 : 32; }

extern "C" int pa_cuda_flash_serving(const pa_gpu_args *a, int pack, int stages, void *stream)
{
    cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (stages < 2 || stages > kMaxStages) return (int)cudaErrorInvalidValue;
    if (a->dtype == 1)
        return (int)(pack ? dispatch<__half, true>(*a, stages, s)
                          : dispatch<__half, false>(*a, stages, s));
    if (a->dtype == 2)
        return (int)(pack ? dispatch<__nv_bfloat16, true>(*a, stages, s)
                          : dispatch<__nv_bfloat16, false>(*a, stages, s));
    if (a->dtype == 4)
        return (int)(pack ? dispatch<__half, true, true>(*a, stages, s)
                          : dispatch<__half, false, true>(*a, stages, s));
    return (int)cudaErrorInvalidValue;
}
