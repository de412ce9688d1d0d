/* Serving-layout cases on the host: their data, buffers and double reference. */
#include "serving_fixture.h"

int failures, checks;
polyattn_context *ctx;

polyattn_buffer *upload(const void *data, size_t bytes)
{
    polyattn_buffer *b = NULL;
    if (polyattn_buffer_alloc(ctx, bytes ? bytes : 4, &b) != POLYATTN_STATUS_SUCCESS) return NULL;
    if (data && bytes) polyattn_buffer_write(b, 0, data, bytes);
    return b;
}

int64_t rnd(pa_tk_rng *r, int64_t n) { return (int64_t)(pa_tk_rng_next(r) % (uint64_t)n); }

void put(unsigned char *img, polyattn_dtype dt, int64_t index, float x)
{
    pa_tk_encode(img + (size_t)index * polyattn_dtype_size(dt), &x, 1, dt);
}

float *rand_block(pa_tk_rng *r, int64_t n, polyattn_dtype dt)
{
    float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
    for (int64_t i = 0; i < n; i++)
        x[i] = pa_tk_round((float)pa_tk_rng_uniform(r), dt);
    return x;
}

/* Element of a tensor at its strides. */
int64_t at(const polyattn_tensor_desc *t, int64_t a, int64_t b, int64_t c, int64_t d)
{
    return a * t->strides[0] + b * t->strides[1] + c * t->strides[2] + d * t->strides[3];
}

/* Physical position (tensor index a, row) of key j of sequence b. */
void kv_pos(const built *w, int64_t b, int64_t j, int64_t *a, int64_t *row)
{
    const scase *c = w->c;
    switch (c->kv) {
    case POLYATTN_KV_VARLEN: *a = 0, *row = w->kv0[b] + j; break;
    case POLYATTN_KV_PAGED:
        *a = w->table[b * w->max_blocks + j / c->block_size], *row = j % c->block_size;
        break;
    default: *a = b, *row = j; break;
    }
}

void build(built *w, const scase *c, uint64_t seed)
{
    memset(w, 0, sizeof *w);
    w->c = c;
    pa_tk_rng r;
    pa_tk_rng_seed(&r, seed);
    const polyattn_dtype dt = c->dtype;
    const size_t es = polyattn_dtype_size(dt);
    const int cache = c->kv == POLYATTN_KV_CACHE || c->kv == POLYATTN_KV_PAGED;
    int64_t max_lq = 0, max_lk = 0;
    for (int64_t b = 0; b < c->batch; b++) {
        w->lq[b] = c->varlen_q ? (b % 3 == 1 ? 0 : 1 + rnd(&r, c->seq_q)) : c->seq_q;
        if (c->varlen_q && b == 0) w->lq[b] = c->seq_q; /* the longest is reached */
        int64_t keys = c->kv == POLYATTN_KV_DENSE ? c->seq_kv
                       : b % 4 == 2               ? 0
                                                  : rnd(&r, c->seq_kv + 1);
        if (c->kv != POLYATTN_KV_DENSE && b == 0) keys = c->seq_kv;
        if (c->share && b < 2 && keys < c->block_size + 1) keys = c->block_size + 1 + rnd(&r, 5);
        w->used[b] = cache ? keys : 0;
        w->lk[b] = keys + (cache ? c->seq_new : 0);
        if (w->lq[b] > max_lq) max_lq = w->lq[b];
        if (w->lk[b] > max_lk) max_lk = w->lk[b];
    }
    /* Logical data; shared blocks carry the same keys in both sequences. */
    for (int64_t b = 0; b < c->batch; b++) {
        w->Q[b] = rand_block(&r, c->hq * w->lq[b] * c->d, dt);
        w->K[b] = rand_block(&r, c->hkv * w->lk[b] * c->d, dt);
        w->V[b] = rand_block(&r, c->hkv * w->lk[b] * c->dv, dt);
    }
    if (c->share && c->batch >= 2)
        for (int64_t h = 0; h < c->hkv; h++)
            for (int64_t j = 0; j < c->block_size; j++) {
                memcpy(&w->K[1][(h * w->lk[1] + j) * c->d], &w->K[0][(h * w->lk[0] + j) * c->d],
                       (size_t)c->d * 4);
                memcpy(&w->V[1][(h * w->lk[1] + j) * c->dv], &w->V[0][(h * w->lk[0] + j) * c->dv],
                       (size_t)c->dv * 4);
            }
    if (c->alibi) {
        int64_t n = c->alibi == POLYATTN_ALIBI_PER_HEAD ? c->hq : c->batch * c->hq;
        w->slopes = malloc((size_t)n * 4);
        for (int64_t i = 0; i < n; i++)
            w->slopes[i] = (float)(0.05 + 0.2 * (pa_tk_rng_uniform(&r) + 1.0));
    }
    if (c->sinks) {
        w->sinks = malloc((size_t)c->hq * 4);
        for (int64_t h = 0; h < c->hq; h++)
            w->sinks[h] = (float)(2.0 * pa_tk_rng_uniform(&r));
    }
    /* Offsets (padding rows before the first and after the last sequence). */
    w->cu_q[0] = Q_LEAD, w->cu_kv[0] = KV_LEAD;
    for (int64_t b = 0; b < c->batch; b++) {
        w->q0[b] = c->varlen_q ? w->cu_q[b] : 0;
        w->cu_q[b + 1] = w->cu_q[b] + (int32_t)w->lq[b];
        w->kv0[b] = c->kv == POLYATTN_KV_VARLEN ? w->cu_kv[b] : 0;
        w->cu_kv[b + 1] = w->cu_kv[b] + (int32_t)w->lk[b];
        w->seqused[b] = (int32_t)w->used[b];
    }
    w->total_q = c->varlen_q ? w->cu_q[c->batch] + Q_TAIL : c->seq_q;
    w->total_kv = w->cu_kv[c->batch] + KV_TAIL;
    /* Descriptor. */
    polyattn_attention_desc *d = &w->desc;
    polyattn_attention_desc_init(d, dt, c->batch, c->hq, c->hkv, c->seq_q, c->seq_kv, c->d, c->dv);
    if (c->varlen_q) {
        d->varlen_q = 1;
        d->num_seqs = c->batch;
        polyattn_tensor_desc_bshd(&d->q, dt, 1, c->hq, w->total_q, c->d);
        polyattn_tensor_desc_bshd(&d->o, dt, 1, c->hq, w->total_q, c->dv);
        if (c->hints) d->max_seqlen_q = max_lq;
    }
    d->kv_layout = c->kv;
    if (c->kv == POLYATTN_KV_VARLEN) {
        polyattn_tensor_desc_bshd(&d->k, dt, 1, c->hkv, w->total_kv, c->d);
        polyattn_tensor_desc_bshd(&d->v, dt, 1, c->hkv, w->total_kv, c->dv);
    } else if (c->kv == POLYATTN_KV_CACHE) {
        w->cap = max_lk + 3;
        polyattn_tensor_desc_bshd(&d->k, dt, c->batch, c->hkv, w->cap, c->d);
        polyattn_tensor_desc_bshd(&d->v, dt, c->batch, c->hkv, w->cap, c->dv);
    } else if (c->kv == POLYATTN_KV_PAGED) {
        w->max_blocks = (max_lk + c->block_size - 1) / c->block_size + 1;
        w->num_blocks = c->batch * w->max_blocks + 2;
        d->max_blocks_per_seq = w->max_blocks;
        polyattn_tensor_desc_bshd(&d->k, dt, w->num_blocks, c->hkv, c->block_size, c->d);
        polyattn_tensor_desc_bshd(&d->v, dt, w->num_blocks, c->hkv, c->block_size, c->dv);
        /* Blocks: a permutation (shuffled or in order), entries past a sequence's need -1. */
        int64_t *perm = malloc((size_t)w->num_blocks * sizeof *perm);
        for (int64_t i = 0; i < w->num_blocks; i++)
            perm[i] = i;
        if (c->shuffle)
            for (int64_t i = w->num_blocks - 1; i > 0; i--) {
                int64_t j = rnd(&r, i + 1), t = perm[i];
                perm[i] = perm[j], perm[j] = t;
            }
        w->table = malloc((size_t)(c->batch * w->max_blocks) * 4);
        int64_t next = 0;
        for (int64_t b = 0; b < c->batch; b++)
            for (int64_t n = 0; n < w->max_blocks; n++)
                w->table[b * w->max_blocks + n] =
                    n * c->block_size < w->lk[b] ? (int32_t)perm[next++] : -1;
        if (c->share && c->batch >= 2) w->table[w->max_blocks] = w->table[0]; /* prefix */
        free(perm);
    }
    if (cache) w->cap = w->cap ? w->cap : w->max_blocks * c->block_size;
    if (c->kv != POLYATTN_KV_DENSE && c->hints) d->max_seqlen_kv = max_lk;
    d->mask = c->mask;
    d->has_window = c->has_window, d->window_left = c->wl, d->window_right = c->wr;
    d->softcap = c->softcap;
    d->alibi = c->alibi;
    d->has_sinks = c->sinks;
    if (c->seq_new) {
        d->has_kv_append = 1;
        polyattn_tensor_desc_bhsd(&d->k_new, dt, c->batch, c->hkv, c->seq_new, c->d);
        polyattn_tensor_desc_bshd(&d->v_new, dt, c->batch, c->hkv, c->seq_new, c->dv);
    }
    /* Physical images: poison (NaN) everywhere, then the data at its places. */
    w->q_bytes = polyattn_tensor_desc_bytes(&d->q), w->o_bytes = polyattn_tensor_desc_bytes(&d->o);
    w->k_bytes = polyattn_tensor_desc_bytes(&d->k), w->v_bytes = polyattn_tensor_desc_bytes(&d->v);
    w->q_img = malloc(w->q_bytes), w->o_img = malloc(w->o_bytes);
    w->k_img = malloc(w->k_bytes), w->v_img = malloc(w->v_bytes);
    pa_tk_poison(w->q_img, w->q_bytes / es, dt), pa_tk_poison(w->o_img, w->o_bytes / es, dt);
    pa_tk_poison(w->k_img, w->k_bytes / es, dt), pa_tk_poison(w->v_img, w->v_bytes / es, dt);
    for (int64_t b = 0; b < c->batch; b++) {
        for (int64_t h = 0; h < c->hq; h++)
            for (int64_t i = 0; i < w->lq[b]; i++)
                for (int64_t x = 0; x < c->d; x++)
                    put(w->q_img, dt, at(&d->q, c->varlen_q ? 0 : b, h, w->q0[b] + i, x),
                        w->Q[b][(h * w->lq[b] + i) * c->d + x]);
    }
    w->k_after = malloc(w->k_bytes), w->v_after = malloc(w->v_bytes);
    if (c->seq_new) {
        w->kn_bytes = polyattn_tensor_desc_bytes(&d->k_new),
        w->vn_bytes = polyattn_tensor_desc_bytes(&d->v_new);
        w->kn_img = malloc(w->kn_bytes), w->vn_img = malloc(w->vn_bytes);
    }
    /* Keys: the cache part now; the appended part into k_new and (after) the cache. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            memcpy(w->k_after, w->k_img, w->k_bytes), memcpy(w->v_after, w->v_img, w->v_bytes);
        unsigned char *kimg = pass ? w->k_after : w->k_img, *vimg = pass ? w->v_after : w->v_img;
        for (int64_t b = 0; b < c->batch; b++)
            for (int64_t h = 0; h < c->hkv; h++)
                for (int64_t j = 0; j < w->lk[b]; j++) {
                    const int appended = cache && j >= w->used[b];
                    if (appended != pass) continue;
                    int64_t a, row;
                    kv_pos(w, b, j, &a, &row);
                    for (int64_t x = 0; x < c->d; x++)
                        put(kimg, dt, at(&d->k, a, h, row, x),
                            w->K[b][(h * w->lk[b] + j) * c->d + x]);
                    for (int64_t x = 0; x < c->dv; x++)
                        put(vimg, dt, at(&d->v, a, h, row, x),
                            w->V[b][(h * w->lk[b] + j) * c->dv + x]);
                    if (!appended) continue;
                    for (int64_t x = 0; x < c->d; x++)
                        put(w->kn_img, dt, at(&d->k_new, b, h, j - w->used[b], x),
                            w->K[b][(h * w->lk[b] + j) * c->d + x]);
                    for (int64_t x = 0; x < c->dv; x++)
                        put(w->vn_img, dt, at(&d->v_new, b, h, j - w->used[b], x),
                            w->V[b][(h * w->lk[b] + j) * c->dv + x]);
                }
    }
    w->lse_elems =
        c->varlen_q ? (size_t)(c->hq * w->total_q) : (size_t)(c->batch * c->hq * c->seq_q);
    /* Buffers and extra tensors. */
    w->bq = upload(w->q_img, w->q_bytes), w->bk = upload(w->k_img, w->k_bytes);
    w->bv = upload(w->v_img, w->v_bytes), w->bo = upload(w->o_img, w->o_bytes);
    float *lse_poison = malloc(w->lse_elems * 4);
    pa_tk_poison(lse_poison, w->lse_elems, POLYATTN_DTYPE_F32);
    w->blse = upload(lse_poison, w->lse_elems * 4);
    free(lse_poison);
    memset(&w->extra, 0, sizeof w->extra);
    w->extra.struct_size = sizeof w->extra;
    if (c->varlen_q) w->extra.cu_seqlens_q = w->bcu_q = upload(w->cu_q, (size_t)(c->batch + 1) * 4);
    if (c->kv == POLYATTN_KV_VARLEN)
        w->extra.cu_seqlens_kv = w->bcu_kv = upload(w->cu_kv, (size_t)(c->batch + 1) * 4);
    if (cache) w->extra.seqused_kv = w->bused = upload(w->seqused, (size_t)c->batch * 4);
    if (w->table)
        w->extra.block_table = w->btable = upload(w->table, (size_t)(c->batch * w->max_blocks) * 4);
    if (c->seq_new) {
        w->extra.k_new = w->bkn = upload(w->kn_img, w->kn_bytes);
        w->extra.v_new = w->bvn = upload(w->vn_img, w->vn_bytes);
    }
    if (w->slopes)
        w->extra.alibi_slopes = w->bslopes =
            upload(w->slopes,
                   (size_t)(c->alibi == POLYATTN_ALIBI_PER_HEAD ? c->hq : c->batch * c->hq) * 4);
    if (w->sinks) w->extra.sinks = w->bsinks = upload(w->sinks, (size_t)c->hq * 4);
}

void unbuild(built *w)
{
    for (int64_t b = 0; b < w->c->batch; b++)
        free(w->Q[b]), free(w->K[b]), free(w->V[b]);
    free(w->slopes), free(w->sinks), free(w->table);
    free(w->q_img), free(w->k_img), free(w->v_img), free(w->kn_img), free(w->vn_img),
        free(w->o_img);
    free(w->k_after), free(w->v_after);
    polyattn_buffer *bufs[] = {w->bq,    w->bk,     w->bv,  w->bo,  w->blse,    w->bcu_q, w->bcu_kv,
                               w->bused, w->btable, w->bkn, w->bvn, w->bslopes, w->bsinks};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        polyattn_buffer_free(bufs[i]);
}

/* ---- the reference: one sequence at a time, in double ---- */

int visible(const scase *c, int64_t diag, int64_t j)
{
    if (c->mask != POLYATTN_MASK_NONE && j > diag) return 0;
    if (c->has_window && c->wl >= 0 && j < diag - c->wl) return 0;
    if (c->has_window && c->wr >= 0 && j > diag + c->wr) return 0;
    return 1;
}

/* Score of (query i, key j) of sequence b, head h; *dcap: d score / d (scale q.k). */
double score(const built *w, int64_t b, int64_t h, int64_t i, int64_t j, int64_t diag, double *dcap)
{
    const scase *c = w->c;
    const int64_t hk = h / (c->hq / c->hkv);
    const float *q = &w->Q[b][(h * w->lq[b] + i) * c->d], *k = &w->K[b][(hk * w->lk[b] + j) * c->d];
    double s = 0.0;
    for (int64_t x = 0; x < c->d; x++)
        s += (double)q[x] * k[x];
    s *= 1.0 / sqrt((double)c->d);
    *dcap = 1.0;
    if (c->softcap > 0) {
        double t = tanh(s / c->softcap);
        s = c->softcap * t, *dcap = 1.0 - t * t;
    }
    if (c->alibi) {
        double slope = w->slopes[c->alibi == POLYATTN_ALIBI_PER_HEAD ? h : b * c->hq + h];
        s -= slope * (double)(diag > j ? diag - j : j - diag);
    }
    return s;
}

void ref_row_init(const built *w, int64_t b, int64_t h, int64_t i, ref_row *rr)
{
    const scase *c = w->c;
    rr->diag = c->mask == POLYATTN_MASK_CAUSAL_TOP_LEFT ? i : i + w->lk[b] - w->lq[b];
    rr->sink = c->sinks ? (double)w->sinks[h] : -INFINITY;
    double mx = rr->sink, sum = 0.0, dc;
    for (int64_t j = 0; j < w->lk[b]; j++)
        if (visible(c, rr->diag, j)) mx = fmax(mx, score(w, b, h, i, j, rr->diag, &dc));
    if (mx == -INFINITY) {
        rr->lse = -INFINITY;
        return;
    }
    for (int64_t j = 0; j < w->lk[b]; j++)
        if (visible(c, rr->diag, j)) sum += exp(score(w, b, h, i, j, rr->diag, &dc) - mx);
    if (c->sinks) sum += exp(rr->sink - mx);
    rr->lse = mx + log(sum);
}

/* O of one row (dv doubles); a row without visible keys: 0. */
void ref_o(const built *w, int64_t b, int64_t h, int64_t i, const ref_row *rr, double *o)
{
    const scase *c = w->c;
    const int64_t hk = h / (c->hq / c->hkv);
    double dc;
    for (int64_t x = 0; x < c->dv; x++)
        o[x] = 0.0;
    for (int64_t j = 0; j < w->lk[b]; j++) {
        if (!visible(c, rr->diag, j)) continue;
        double p = exp(score(w, b, h, i, j, rr->diag, &dc) - rr->lse);
        for (int64_t x = 0; x < c->dv; x++)
            o[x] += p * w->V[b][(hk * w->lk[b] + j) * c->dv + x];
    }
}

int64_t lse_index(const built *w, int64_t b, int64_t h, int64_t i)
{
    return w->c->varlen_q ? h * w->total_q + w->q0[b] + i : (b * w->c->hq + h) * w->c->seq_q + i;
}

polyattn_status plan_for(const built *w, polyattn_algo algo, int backward, polyattn_plan **plan)
{
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_lse = 1;
    opt.want_backward = backward;
    return polyattn_plan_create(ctx, &w->desc, &opt, plan);
}
