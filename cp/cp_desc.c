/* Descriptor helpers of polyattn_cp.h and their checks (no NCCL, no CUDA). */
#include "cp_engine.h"

#include <math.h>
#include <string.h>

void polyattn_cp_desc_init(polyattn_cp_desc *desc, polyattn_dtype dtype, int world_size, int rank,
                           int64_t batch, int64_t heads_q, int64_t heads_kv, int64_t seq,
                           int64_t head_dim, int64_t head_dim_v)
{
    if (!desc) return;
    memset(desc, 0, sizeof *desc);
    desc->struct_size = sizeof *desc;
    desc->world_size = world_size;
    desc->rank = rank;
    desc->sharding = POLYATTN_CP_ZIGZAG;
    desc->dtype = dtype;
    desc->batch = batch;
    desc->heads_q = heads_q;
    desc->heads_kv = heads_kv;
    desc->seq = seq;
    desc->head_dim = head_dim;
    desc->head_dim_v = head_dim_v;
}

void polyattn_cp_options_init(polyattn_cp_options *options)
{
    if (!options) return;
    memset(options, 0, sizeof *options);
    options->struct_size = sizeof *options;
}

polyattn_status pa_cp_desc_check(const polyattn_cp_desc *d, const char **why)
{
    const char *w = NULL;
    if (!d || d->struct_size < sizeof *d)
        w = "desc: NULL or struct_size smaller than polyattn_cp_desc";
    else if (d->world_size < 1) w = "world_size: must be at least 1";
    else if (d->rank < 0 || d->rank >= d->world_size) w = "rank: must be in [0, world_size)";
    else if (d->sharding != POLYATTN_CP_ZIGZAG && d->sharding != POLYATTN_CP_CONTIGUOUS)
        w = "sharding: not a polyattn_cp_sharding";
    else if (d->dtype != POLYATTN_DTYPE_F32 && d->dtype != POLYATTN_DTYPE_F16 &&
             d->dtype != POLYATTN_DTYPE_BF16)
        w = "dtype: must be f32, f16 or bf16";
    else if (d->batch < 1 || d->heads_q < 1 || d->heads_kv < 1 || d->head_dim < 1 ||
             d->head_dim_v < 1)
        w = "batch, heads_q, heads_kv, head_dim, head_dim_v: must be at least 1";
    else if (d->heads_q % d->heads_kv != 0) w = "heads_kv: must divide heads_q";
    else if (d->seq < (d->sharding == POLYATTN_CP_ZIGZAG ? 2 : 1) * (int64_t)d->world_size)
        w = "seq: every chunk needs a row (seq >= 2 x world_size with ZIGZAG, world_size with "
            "CONTIGUOUS)";
    else if (d->seq > INT64_C(1) << 40) w = "seq: too long";
    else if (d->causal != 0 && d->causal != 1) w = "causal: must be 0 or 1";
    else if (!(d->scale >= 0.0f) || isinf(d->scale)) w = "scale: must be finite and >= 0";
    if (why) *why = w;
    return w ? POLYATTN_STATUS_INVALID_ARGUMENT : POLYATTN_STATUS_SUCCESS;
}

int64_t polyattn_cp_local_seq(const polyattn_cp_desc *desc, int rank)
{
    if (pa_cp_desc_check(desc, NULL) != POLYATTN_STATUS_SUCCESS || rank < 0 ||
        rank >= desc->world_size)
        return 0;
    pa_cp_layout l;
    pa_cp_layout_from_desc(desc, &l);
    return pa_cp_rank_rows(&l, rank);
}

int polyattn_cp_local_chunks(const polyattn_cp_desc *desc, int rank, int64_t begin[2],
                             int64_t len[2])
{
    if (pa_cp_desc_check(desc, NULL) != POLYATTN_STATUS_SUCCESS || rank < 0 ||
        rank >= desc->world_size || !begin || !len)
        return 0;
    pa_cp_layout l;
    pa_cp_layout_from_desc(desc, &l);
    int chunks[PA_CP_MAX_LOCAL_CHUNKS];
    int n = pa_cp_rank_chunks(&l, rank, chunks);
    for (int k = 0; k < n; k++) {
        begin[k] = pa_cp_chunk_begin(&l, chunks[k]);
        len[k] = pa_cp_chunk_len(&l, chunks[k]);
    }
    return n;
}
