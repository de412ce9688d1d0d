/* The ring schedule: chunks, zig-zag index maps, per-step calls and their masks. */
#include "cp_schedule.h"

void pa_cp_layout_from_desc(const polyattn_cp_desc *desc, pa_cp_layout *layout)
{
    layout->world_size = desc->world_size;
    layout->sharding = desc->sharding;
    layout->causal = desc->causal;
    layout->seq = desc->seq;
}

int pa_cp_num_chunks(const pa_cp_layout *l)
{
    return l->sharding == POLYATTN_CP_ZIGZAG ? 2 * l->world_size : l->world_size;
}

/* Chunks differ by at most one row: the first seq % n chunks take one more. */
int64_t pa_cp_chunk_len(const pa_cp_layout *l, int chunk)
{
    int n = pa_cp_num_chunks(l);
    return l->seq / n + (chunk < l->seq % n ? 1 : 0);
}

int64_t pa_cp_chunk_begin(const pa_cp_layout *l, int chunk)
{
    int n = pa_cp_num_chunks(l);
    int64_t extra = chunk < l->seq % n ? chunk : l->seq % n;
    return (int64_t)chunk * (l->seq / n) + extra;
}

int pa_cp_rank_chunks(const pa_cp_layout *l, int rank, int chunks[PA_CP_MAX_LOCAL_CHUNKS])
{
    chunks[0] = rank;
    if (l->sharding != POLYATTN_CP_ZIGZAG) return 1;
    chunks[1] = 2 * l->world_size - 1 - rank; /* balances the causal work of each rank */
    return 2;
}

int64_t pa_cp_rank_rows(const pa_cp_layout *l, int rank)
{
    int chunks[PA_CP_MAX_LOCAL_CHUNKS];
    int n = pa_cp_rank_chunks(l, rank, chunks);
    int64_t rows = 0;
    for (int k = 0; k < n; k++)
        rows += pa_cp_chunk_len(l, chunks[k]);
    return rows;
}

int64_t pa_cp_local_row0(const pa_cp_layout *l, int rank, int k)
{
    int chunks[PA_CP_MAX_LOCAL_CHUNKS];
    (void)pa_cp_rank_chunks(l, rank, chunks);
    int64_t row = 0;
    for (int i = 0; i < k; i++)
        row += pa_cp_chunk_len(l, chunks[i]);
    return row;
}

int pa_cp_block_owner(const pa_cp_layout *l, int rank, int step)
{
    int p = l->world_size;
    return ((rank - step) % p + p) % p;
}

pa_cp_pair pa_cp_pair_kind(const pa_cp_layout *l, int q_chunk, int k_chunk)
{
    if (!l->causal || k_chunk < q_chunk) return PA_CP_PAIR_FULL;
    return k_chunk == q_chunk ? PA_CP_PAIR_DIAG : PA_CP_PAIR_SKIP;
}

int pa_cp_step_calls(const pa_cp_layout *l, int rank, int step, pa_cp_call calls[PA_CP_MAX_CALLS])
{
    int q_chunks[PA_CP_MAX_LOCAL_CHUNKS], k_chunks[PA_CP_MAX_LOCAL_CHUNKS];
    int owner = pa_cp_block_owner(l, rank, step);
    int nq = pa_cp_rank_chunks(l, rank, q_chunks);
    int nk = pa_cp_rank_chunks(l, owner, k_chunks);
    int n = 0;
    for (int qi = 0; qi < nq; qi++) {
        int64_t q_len = pa_cp_chunk_len(l, q_chunks[qi]);
        int first = -1, last = -1, diag = 0;
        for (int ki = 0; ki < nk; ki++) {
            pa_cp_pair kind = pa_cp_pair_kind(l, q_chunks[qi], k_chunks[ki]);
            if (kind == PA_CP_PAIR_SKIP) continue;
            /* One call per query chunk: the visible key chunks must be adjacent in the block
             * and the diagonal one, if any, must come last (bottom-right alignment). */
            if (diag || (last >= 0 && last != ki - 1)) return -1;
            if (first < 0) first = ki;
            last = ki;
            diag = kind == PA_CP_PAIR_DIAG;
        }
        if (first < 0 || q_len == 0) continue;
        int64_t kv_row0 = pa_cp_local_row0(l, owner, first);
        int64_t kv_len =
            pa_cp_local_row0(l, owner, last) + pa_cp_chunk_len(l, k_chunks[last]) - kv_row0;
        if (kv_len == 0) continue;
        calls[n].q_chunk = qi;
        calls[n].q_row0 = pa_cp_local_row0(l, rank, qi);
        calls[n].q_len = q_len;
        calls[n].kv_row0 = kv_row0;
        calls[n].kv_len = kv_len;
        calls[n].mask = diag ? POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT : POLYATTN_MASK_NONE;
        n++;
    }
    return n;
}
