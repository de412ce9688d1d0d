/*
 * Serving layouts on the host backend (the oracle of every other backend), checked against
 * a straightforward double reference written here from include/polyattn.h, one sequence at
 * a time (nothing of the library's host code is called for the reference):
 *   varlen q (packed rows with padding before and after), varlen k/v, a dense KV cache with
 *   seqused_kv, a paged cache (block sizes 16, 64, 256; blocks shuffled, shared between
 *   sequences, unused table entries -1), KV append into dense and paged caches; odd and
 *   empty sequences, GQA 1/4/8, both causal alignments, windows, softcap, ALiBi, sinks;
 *   f32, f16, bf16; unfused and flash.  Outputs are poisoned and every element is checked,
 *   rows outside every sequence must stay poisoned, caches must hold exactly the appended
 *   rows afterwards.  Backward of varlen: dQ, dK, dV and d_sinks against the reference's
 *   own gradients (rows outside the sequences: 0).  Bad inputs: every plan-time and
 *   forward-time check names its field and writes nothing.
 */
#include "pa_testkit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures, checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

enum { MAXB = 8, Q_LEAD = 2, Q_TAIL = 3, KV_LEAD = 1, KV_TAIL = 2 };

static polyattn_context *ctx;

typedef struct scase {
    const char *name;
    polyattn_dtype dtype;
    int64_t batch, hq, hkv, d, dv;
    int varlen_q;
    int64_t seq_q; /* dense q: every sequence's length; varlen: the longest drawn */
    polyattn_kv_layout kv;
    int64_t seq_kv; /* dense kv: every sequence's keys; else the most drawn (before append) */
    int64_t block_size;
    int shuffle, share;
    int64_t seq_new; /* > 0: append */
    polyattn_mask mask;
    int has_window;
    int64_t wl, wr;
    float softcap;
    polyattn_alibi alibi;
    int sinks;
    int hints; /* tight max_seqlen hints */
} scase;

/* Everything a case builds: lengths, logical per-sequence data, physical images. */
typedef struct built {
    const scase *c;
    int64_t lq[MAXB], lk[MAXB], used[MAXB], q0[MAXB], kv0[MAXB];
    int64_t total_q, total_kv, cap, max_blocks, num_blocks;
    float *Q[MAXB], *K[MAXB], *V[MAXB]; /* [h][len][d], rounded to the dtype */
    float *slopes, *sinks;
    polyattn_attention_desc desc;
    int32_t cu_q[MAXB + 1], cu_kv[MAXB + 1], seqused[MAXB], *table;
    unsigned char *q_img, *k_img, *v_img, *kn_img, *vn_img, *o_img; /* physical, dtype */
    unsigned char *k_after, *v_after; /* the caches as the forward must leave them */
    size_t q_bytes, k_bytes, v_bytes, kn_bytes, vn_bytes, o_bytes, lse_elems;
    polyattn_buffer *bq, *bk, *bv, *bo, *blse, *bcu_q, *bcu_kv, *bused, *btable, *bkn, *bvn;
    polyattn_buffer *bslopes, *bsinks;
    polyattn_extra_tensors extra;
} built;

static polyattn_buffer *upload(const void *data, size_t bytes)
{
    polyattn_buffer *b = NULL;
    if (polyattn_buffer_alloc(ctx, bytes ? bytes : 4, &b) != POLYATTN_STATUS_SUCCESS) return NULL;
    if (data && bytes) polyattn_buffer_write(b, 0, data, bytes);
    return b;
}

static int64_t rnd(pa_tk_rng *r, int64_t n) { return (int64_t)(pa_tk_rng_next(r) % (uint64_t)n); }

static void put(unsigned char *img, polyattn_dtype dt, int64_t index, float x)
{
    pa_tk_encode(img + (size_t)index * polyattn_dtype_size(dt), &x, 1, dt);
}

static float *rand_block(pa_tk_rng *r, int64_t n, polyattn_dtype dt)
{
    float *x = malloc((size_t)(n ? n : 1) * sizeof *x);
    for (int64_t i = 0; i < n; i++)
        x[i] = pa_tk_round((float)pa_tk_rng_uniform(r), dt);
    return x;
}

/* Element of a tensor at its strides. */
static int64_t at(const polyattn_tensor_desc *t, int64_t a, int64_t b, int64_t c, int64_t d)
{
    return a * t->strides[0] + b * t->strides[1] + c * t->strides[2] + d * t->strides[3];
}

/* Physical position (tensor index a, row) of key j of sequence b. */
static void kv_pos(const built *w, int64_t b, int64_t j, int64_t *a, int64_t *row)
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

static void build(built *w, const scase *c, uint64_t seed)
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

static void unbuild(built *w)
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

typedef struct ref_row {
    int64_t diag;
    double lse;  /* with the sink */
    double sink; /* -inf without */
} ref_row;

static int visible(const scase *c, int64_t diag, int64_t j)
{
    if (c->mask != POLYATTN_MASK_NONE && j > diag) return 0;
    if (c->has_window && c->wl >= 0 && j < diag - c->wl) return 0;
    if (c->has_window && c->wr >= 0 && j > diag + c->wr) return 0;
    return 1;
}

/* Score of (query i, key j) of sequence b, head h; *dcap: d score / d (scale q.k). */
static double score(const built *w, int64_t b, int64_t h, int64_t i, int64_t j, int64_t diag,
                    double *dcap)
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

static void ref_row_init(const built *w, int64_t b, int64_t h, int64_t i, ref_row *rr)
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
static void ref_o(const built *w, int64_t b, int64_t h, int64_t i, const ref_row *rr, double *o)
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

static int64_t lse_index(const built *w, int64_t b, int64_t h, int64_t i)
{
    return w->c->varlen_q ? h * w->total_q + w->q0[b] + i : (b * w->c->hq + h) * w->c->seq_q + i;
}

static polyattn_status plan_for(const built *w, polyattn_algo algo, int backward,
                                polyattn_plan **plan)
{
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = algo;
    opt.want_lse = 1;
    opt.want_backward = backward;
    return polyattn_plan_create(ctx, &w->desc, &opt, plan);
}

/* ---- forward: every element of O, LSE and the caches ---- */

static void check_forward(const scase *c, polyattn_algo algo, uint64_t seed)
{
    built w;
    build(&w, c, seed);
    const polyattn_dtype dt = c->dtype;
    const size_t es = polyattn_dtype_size(dt);
    polyattn_plan *plan = NULL;
    polyattn_status st = plan_for(&w, algo, 0, &plan);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "  %s (%s): plan: %s\n", c->name, polyattn_algo_name(algo),
                polyattn_context_last_error(ctx));
        unbuild(&w);
        return;
    }
    st = polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, &w.extra);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS)
        fprintf(stderr, "  %s (%s): forward: %s\n", c->name, polyattn_algo_name(algo),
                polyattn_context_last_error(ctx));
    unsigned char *o = malloc(w.o_bytes), *k = malloc(w.k_bytes), *v = malloc(w.v_bytes);
    float *lse = malloc(w.lse_elems * 4);
    unsigned char *written = calloc(w.o_bytes / es, 1), *lse_written = calloc(w.lse_elems, 1);
    polyattn_buffer_read(w.bo, 0, o, w.o_bytes),
        polyattn_buffer_read(w.blse, 0, lse, w.lse_elems * 4);
    polyattn_buffer_read(w.bk, 0, k, w.k_bytes), polyattn_buffer_read(w.bv, 0, v, w.v_bytes);
    const double o_tol = dt == POLYATTN_DTYPE_F32 ? 2e-5 : dt == POLYATTN_DTYPE_F16 ? 2e-3 : 1.6e-2;
    double *ro = malloc((size_t)c->dv * sizeof *ro);
    long long bad = 0;
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->hq; h++)
            for (int64_t i = 0; i < w.lq[b]; i++) {
                ref_row rr;
                ref_row_init(&w, b, h, i, &rr);
                ref_o(&w, b, h, i, &rr, ro);
                for (int64_t x = 0; x < c->dv; x++) {
                    int64_t e = at(&w.desc.o, c->varlen_q ? 0 : b, h, w.q0[b] + i, x);
                    float got;
                    pa_tk_decode(&got, o + (size_t)e * es, 1, dt);
                    written[e] = 1;
                    if (!(fabs(got - ro[x]) <= o_tol) && bad++ < 4)
                        fprintf(stderr,
                                "  %s (%s): seq %lld head %lld query %lld O[%lld] = %g, want %g\n",
                                c->name, polyattn_algo_name(algo), (long long)b, (long long)h,
                                (long long)i, (long long)x, got, ro[x]);
                }
                int64_t li = lse_index(&w, b, h, i);
                lse_written[li] = 1;
                double want = rr.lse, got = lse[li];
                int ok = isinf(want) ? got == want : fabs(got - want) <= 2e-5 * (1.0 + fabs(want));
                if (!ok && bad++ < 4)
                    fprintf(stderr, "  %s (%s): seq %lld head %lld query %lld LSE %g, want %g\n",
                            c->name, polyattn_algo_name(algo), (long long)b, (long long)h,
                            (long long)i, got, want);
            }
    /* Rows outside every sequence keep their poison. */
    long long touched = 0;
    for (size_t e = 0; e < w.o_bytes / es; e++)
        if (!written[e] && memcmp(o + e * es, w.o_img + e * es, es) != 0) touched++;
    float poison;
    pa_tk_poison(&poison, 1, POLYATTN_DTYPE_F32);
    for (size_t e = 0; e < w.lse_elems; e++)
        if (!lse_written[e] && memcmp(&lse[e], &poison, 4) != 0) touched++;
    /* Caches: exactly the appended rows written (or nothing without append). */
    const unsigned char *k_want = c->seq_new ? w.k_after : w.k_img,
                        *v_want = c->seq_new ? w.v_after : w.v_img;
    long long cache_bad = memcmp(k, k_want, w.k_bytes) != 0 || memcmp(v, v_want, w.v_bytes) != 0;
    CHECK(bad == 0);
    CHECK(touched == 0);
    CHECK(cache_bad == 0);
    if (bad || touched || cache_bad)
        fprintf(stderr, "  %s (%s): %lld bad, %lld padding elements written, caches %s\n", c->name,
                polyattn_algo_name(algo), bad, touched, cache_bad ? "wrong" : "right");
    free(o), free(k), free(v), free(lse), free(written), free(lse_written), free(ro);
    polyattn_plan_destroy(plan);
    unbuild(&w);
}

/* ---- backward of varlen: dQ, dK, dV, d_sinks against the reference's gradients ---- */

static void check_backward(const scase *c, polyattn_algo algo, uint64_t seed)
{
    built w;
    build(&w, c, seed);
    const size_t es = 4; /* f32 only */
    polyattn_plan *plan = NULL;
    polyattn_status st = plan_for(&w, algo, 1, &plan);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "  %s backward (%s): plan: %s\n", c->name, polyattn_algo_name(algo),
                polyattn_context_last_error(ctx));
        unbuild(&w);
        return;
    }
    pa_tk_rng r;
    pa_tk_rng_seed(&r, seed ^ 0x5eed);
    const size_t on = w.o_bytes / es, qn = w.q_bytes / es, kn = w.k_bytes / es, vn = w.v_bytes / es;
    float *d_o = malloc(on * 4);
    for (size_t e = 0; e < on; e++)
        d_o[e] = (float)pa_tk_rng_uniform(&r);
    polyattn_buffer *bdo = upload(d_o, on * 4), *bdq = upload(NULL, qn * 4);
    polyattn_buffer *bdk = upload(NULL, kn * 4), *bdv = upload(NULL, vn * 4);
    polyattn_buffer *bds = c->sinks ? upload(NULL, (size_t)c->hq * 4) : NULL;
    float *poison = malloc((qn > kn ? (qn > vn ? qn : vn) : (kn > vn ? kn : vn)) * 4);
    pa_tk_poison(poison, qn > kn ? (qn > vn ? qn : vn) : (kn > vn ? kn : vn), POLYATTN_DTYPE_F32);
    polyattn_buffer_write(bdq, 0, poison, qn * 4), polyattn_buffer_write(bdk, 0, poison, kn * 4);
    polyattn_buffer_write(bdv, 0, poison, vn * 4);
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, &w.extra) ==
          POLYATTN_STATUS_SUCCESS);
    polyattn_extra_tensors ex = w.extra;
    ex.d_sinks = bds;
    st = polyattn_backward_ex(plan, w.bq, w.bk, w.bv, w.bo, bdo, w.blse, bdq, bdk, bdv, NULL, &ex);
    CHECK(st == POLYATTN_STATUS_SUCCESS);
    if (st != POLYATTN_STATUS_SUCCESS)
        fprintf(stderr, "  backward: %s\n", polyattn_context_last_error(ctx));
    float *dq = malloc(qn * 4), *dk = malloc(kn * 4), *dv = malloc(vn * 4),
          *ds = malloc((size_t)c->hq * 4);
    polyattn_buffer_read(bdq, 0, dq, qn * 4), polyattn_buffer_read(bdk, 0, dk, kn * 4);
    polyattn_buffer_read(bdv, 0, dv, vn * 4);
    if (bds) polyattn_buffer_read(bds, 0, ds, (size_t)c->hq * 4);
    /* Reference gradients in the physical layouts (zeros outside the sequences). */
    double *rq = calloc(qn, sizeof *rq), *rk = calloc(kn, sizeof *rk), *rv = calloc(vn, sizeof *rv);
    double *rs = calloc((size_t)c->hq, sizeof *rs);
    double *ro = malloc((size_t)c->dv * sizeof *ro),
           *dp = malloc((size_t)(w.total_kv + 64) * sizeof *dp);
    const double scale = 1.0 / sqrt((double)c->d);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->hq; h++)
            for (int64_t i = 0; i < w.lq[b]; i++) {
                const int64_t hk = h / (c->hq / c->hkv), qa = c->varlen_q ? 0 : b;
                ref_row rr;
                ref_row_init(&w, b, h, i, &rr);
                if (rr.lse == -INFINITY) continue;
                ref_o(&w, b, h, i, &rr, ro);
                const float *g = d_o; /* dO of the row at o's strides */
                double D = 0.0, dc;
                for (int64_t x = 0; x < c->dv; x++)
                    D += (double)g[at(&w.desc.o, qa, h, w.q0[b] + i, x)] * ro[x];
                for (int64_t j = 0; j < w.lk[b]; j++) {
                    if (!visible(c, rr.diag, j)) continue;
                    const double p = exp(score(&w, b, h, i, j, rr.diag, &dc) - rr.lse);
                    int64_t a, row;
                    kv_pos(&w, b, j, &a, &row);
                    double dpj = 0.0;
                    for (int64_t x = 0; x < c->dv; x++) {
                        const double gx = g[at(&w.desc.o, qa, h, w.q0[b] + i, x)];
                        dpj += gx * w.V[b][(hk * w.lk[b] + j) * c->dv + x];
                        rv[at(&w.desc.v, a, hk, row, x)] += p * gx;
                    }
                    const double dsj = p * (dpj - D) * dc * scale;
                    for (int64_t x = 0; x < c->d; x++) {
                        rq[at(&w.desc.q, qa, h, w.q0[b] + i, x)] +=
                            dsj * w.K[b][(hk * w.lk[b] + j) * c->d + x];
                        rk[at(&w.desc.k, a, hk, row, x)] +=
                            dsj * w.Q[b][(h * w.lq[b] + i) * c->d + x];
                    }
                }
                if (c->sinks) rs[h] -= exp(rr.sink - rr.lse) * D;
            }
    double mq = 1e-30, mk = 1e-30, mv = 1e-30;
    for (size_t e = 0; e < qn; e++)
        mq = fmax(mq, fabs(rq[e]));
    for (size_t e = 0; e < kn; e++)
        mk = fmax(mk, fabs(rk[e]));
    for (size_t e = 0; e < vn; e++)
        mv = fmax(mv, fabs(rv[e]));
    long long bad = 0;
    const double tol = 1e-4;
    for (size_t e = 0; e < qn; e++)
        bad += !(fabs(dq[e] - rq[e]) <= tol * mq);
    for (size_t e = 0; e < kn; e++)
        bad += !(fabs(dk[e] - rk[e]) <= tol * mk);
    for (size_t e = 0; e < vn; e++)
        bad += !(fabs(dv[e] - rv[e]) <= tol * mv);
    for (int64_t h = 0; c->sinks && h < c->hq; h++)
        bad += !(fabs(ds[h] - rs[h]) <= 1e-4 * (1.0 + fabs(rs[h])));
    CHECK(bad == 0);
    if (bad)
        fprintf(stderr, "  %s backward (%s): %lld bad gradient elements\n", c->name,
                polyattn_algo_name(algo), bad);
    free(d_o), free(poison), free(dq), free(dk), free(dv), free(ds), free(rq), free(rk), free(rv),
        free(rs);
    free(ro), free(dp);
    polyattn_buffer_free(bdo), polyattn_buffer_free(bdq), polyattn_buffer_free(bdk);
    polyattn_buffer_free(bdv), polyattn_buffer_free(bds);
    polyattn_plan_destroy(plan);
    unbuild(&w);
}

/* ---- bad inputs ---- */

/* A forward whose device data is bad: INVALID_ARGUMENT naming `field`, nothing written. */
static void expect_forward_fails(built *w, const char *field)
{
    polyattn_plan *plan = NULL;
    if (plan_for(w, POLYATTN_ALGO_UNFUSED, 0, &plan) != POLYATTN_STATUS_SUCCESS) {
        CHECK(!"plan of a bad-data case");
        return;
    }
    /* Fresh poison and caches, so that any write shows. */
    polyattn_buffer_write(w->bo, 0, w->o_img, w->o_bytes);
    polyattn_buffer_write(w->bk, 0, w->k_img, w->k_bytes);
    polyattn_buffer_write(w->bv, 0, w->v_img, w->v_bytes);
    float *lse0 = malloc(w->lse_elems * 4), *lse1 = malloc(w->lse_elems * 4);
    pa_tk_poison(lse0, w->lse_elems, POLYATTN_DTYPE_F32);
    polyattn_buffer_write(w->blse, 0, lse0, w->lse_elems * 4);
    polyattn_status st =
        polyattn_forward_ex(plan, w->bq, w->bk, w->bv, w->bo, w->blse, NULL, NULL, &w->extra);
    const char *err = polyattn_context_last_error(ctx);
    CHECK(st == POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(err, field) != NULL);
    if (st != POLYATTN_STATUS_INVALID_ARGUMENT || !strstr(err, field))
        fprintf(stderr, "  expected a forward error naming %s, got %s: %s\n", field,
                polyattn_status_name(st), err);
    unsigned char *o = malloc(w->o_bytes), *k = malloc(w->k_bytes), *v = malloc(w->v_bytes);
    polyattn_buffer_read(w->bo, 0, o, w->o_bytes), polyattn_buffer_read(w->bk, 0, k, w->k_bytes);
    polyattn_buffer_read(w->bv, 0, v, w->v_bytes),
        polyattn_buffer_read(w->blse, 0, lse1, w->lse_elems * 4);
    CHECK(memcmp(o, w->o_img, w->o_bytes) == 0);
    CHECK(memcmp(k, w->k_img, w->k_bytes) == 0 && memcmp(v, w->v_img, w->v_bytes) == 0);
    CHECK(memcmp(lse0, lse1, w->lse_elems * 4) == 0);
    free(o), free(k), free(v), free(lse0), free(lse1);
    polyattn_plan_destroy(plan);
}

static void bad_device_data(void)
{
    const scase paged = {"bad paged",
                         POLYATTN_DTYPE_F32,
                         3,
                         4,
                         2,
                         8,
                         8,
                         1,
                         5,
                         POLYATTN_KV_PAGED,
                         40,
                         16,
                         1,
                         0,
                         2,
                         POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT,
                         0,
                         -1,
                         -1,
                         0,
                         0,
                         0,
                         1};
    built w;
    build(&w, &paged, 99);
    const int32_t cu_q[MAXB + 1] = {w.cu_q[0], w.cu_q[1], w.cu_q[2], w.cu_q[3]};
    int32_t *cu = w.cu_q;
#define UPLOAD_CU() polyattn_buffer_write(w.bcu_q, 0, cu, 4 * 4)
    cu[2] = cu[1] - 1, UPLOAD_CU();
    expect_forward_fails(&w, "extra.cu_seqlens_q[2]");
    memcpy(cu, cu_q, sizeof cu_q), cu[0] = -1, UPLOAD_CU();
    expect_forward_fails(&w, "extra.cu_seqlens_q[0]");
    memcpy(cu, cu_q, sizeof cu_q), cu[3] = (int32_t)w.total_q + 1, UPLOAD_CU();
    expect_forward_fails(&w, "extra.cu_seqlens_q[3]");
    memcpy(cu, cu_q, sizeof cu_q), cu[3] = cu[2] + (int32_t)w.desc.max_seqlen_q + 1, UPLOAD_CU();
    expect_forward_fails(&w, "max_seqlen_q");
    memcpy(cu, cu_q, sizeof cu_q), UPLOAD_CU();
    int32_t used[MAXB];
    memcpy(used, w.seqused, sizeof used);
    w.seqused[1] = -1, polyattn_buffer_write(w.bused, 0, w.seqused, 3 * 4);
    expect_forward_fails(&w, "extra.seqused_kv[1]");
    w.seqused[1] = (int32_t)(w.cap - paged.seq_new + 1),
    polyattn_buffer_write(w.bused, 0, w.seqused, 3 * 4);
    expect_forward_fails(&w, "past the cache's end");
    w.seqused[1] = (int32_t)(w.desc.max_seqlen_kv - paged.seq_new + 1);
    polyattn_buffer_write(w.bused, 0, w.seqused, 3 * 4);
    expect_forward_fails(&w, "max_seqlen_kv");
    memcpy(w.seqused, used, sizeof used), polyattn_buffer_write(w.bused, 0, w.seqused, 3 * 4);
    const size_t tb = (size_t)(3 * w.max_blocks) * 4;
    int32_t first = w.table[0];
    w.table[0] = (int32_t)w.num_blocks, polyattn_buffer_write(w.btable, 0, w.table, tb);
    expect_forward_fails(&w, "extra.block_table[0][0]");
    w.table[0] = -5, polyattn_buffer_write(w.btable, 0, w.table, tb);
    expect_forward_fails(&w, "extra.block_table[0][0]");
    w.table[0] = first;
    /* The block sequence 0 appends into (its last one). */
    const int64_t last = (w.lk[0] - 1) / paged.block_size;
    int32_t keep = w.table[last];
    w.table[last] = INT32_MAX, polyattn_buffer_write(w.btable, 0, w.table, tb);
    char field[64];
    snprintf(field, sizeof field, "extra.block_table[0][%lld]", (long long)last);
    expect_forward_fails(&w, field);
    w.table[last] = keep, polyattn_buffer_write(w.btable, 0, w.table, tb);
    /* Entries past a sequence's need are not read: -1 there is fine (build wrote them). */
    polyattn_plan *plan = NULL;
    CHECK(plan_for(&w, POLYATTN_ALGO_FLASH, 0, &plan) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, &w.extra) ==
          POLYATTN_STATUS_SUCCESS);
    /* Extra tensors: missing, not asked for, short, old struct_size, aliasing an output. */
    polyattn_extra_tensors ex = w.extra;
    ex.cu_seqlens_q = NULL;
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, &ex) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(polyattn_context_last_error(ctx), "extra.cu_seqlens_q") != NULL);
    ex = w.extra, ex.cu_seqlens_kv = w.bcu_q;
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, &ex) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(polyattn_context_last_error(ctx), "extra.cu_seqlens_kv") != NULL);
    polyattn_buffer *short_used = upload(NULL, 8);
    ex = w.extra, ex.seqused_kv = short_used;
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, &ex) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(polyattn_context_last_error(ctx), "extra.seqused_kv") != NULL);
    ex = w.extra, ex.struct_size = offsetof(polyattn_extra_tensors, d_sinks) + sizeof(void *);
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, &ex) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(polyattn_context_last_error(ctx), "extra.cu_seqlens_q: NULL") != NULL);
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, NULL) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    polyattn_buffer *o_view = NULL;
    polyattn_buffer_view(w.bo, 0, 16, &o_view);
    ex = w.extra, ex.seqused_kv = o_view;
    CHECK(polyattn_forward_ex(plan, w.bq, w.bk, w.bv, w.bo, w.blse, NULL, NULL, &ex) ==
          POLYATTN_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(polyattn_context_last_error(ctx), "overlaps") != NULL);
    polyattn_buffer_free(o_view), polyattn_buffer_free(short_used);
    polyattn_plan_destroy(plan);
    unbuild(&w);
#undef UPLOAD_CU

    /* A dense cache without append: a length beyond its capacity. */
    const scase dense = {
        "bad cache", POLYATTN_DTYPE_F32, 2, 2,  2,  8, 8, 0, 3, POLYATTN_KV_CACHE, 20, 0, 0, 0,
        0,           POLYATTN_MASK_NONE, 0, -1, -1, 0, 0, 0, 0};
    build(&w, &dense, 7);
    w.seqused[1] = (int32_t)w.cap + 1, polyattn_buffer_write(w.bused, 0, w.seqused, 2 * 4);
    expect_forward_fails(&w, "beyond the cache's capacity");
    unbuild(&w);
    /* Varlen keys: offsets decreasing, past the rows. */
    const scase vk = {"bad varlen kv",
                      POLYATTN_DTYPE_F32,
                      3,
                      2,
                      1,
                      8,
                      8,
                      0,
                      4,
                      POLYATTN_KV_VARLEN,
                      12,
                      0,
                      0,
                      0,
                      0,
                      POLYATTN_MASK_CAUSAL_TOP_LEFT,
                      0,
                      -1,
                      -1,
                      0,
                      0,
                      0,
                      0};
    build(&w, &vk, 8);
    int32_t cu_kv[MAXB + 1];
    memcpy(cu_kv, w.cu_kv, sizeof cu_kv);
    w.cu_kv[1] = w.cu_kv[2] + 1, polyattn_buffer_write(w.bcu_kv, 0, w.cu_kv, 4 * 4);
    expect_forward_fails(&w, "extra.cu_seqlens_kv[2]");
    memcpy(w.cu_kv, cu_kv, sizeof cu_kv), w.cu_kv[3] = (int32_t)w.total_kv + 1;
    polyattn_buffer_write(w.bcu_kv, 0, w.cu_kv, 4 * 4);
    expect_forward_fails(&w, "extra.cu_seqlens_kv[3]");
    unbuild(&w);
}

/* A descriptor (or plan) refused at plan time with `status`, naming `field`. */
static void expect_plan_fails(const polyattn_attention_desc *d, const polyattn_plan_options *opt,
                              polyattn_status status, const char *field)
{
    polyattn_plan *plan = NULL;
    polyattn_status st = polyattn_plan_create(ctx, d, opt, &plan);
    const char *err = polyattn_context_last_error(ctx);
    CHECK(st == status && plan == NULL);
    CHECK(strstr(err, field) != NULL);
    if (st != status || !strstr(err, field))
        fprintf(stderr, "  expected %s naming %s, got %s: %s\n", polyattn_status_name(status),
                field, polyattn_status_name(st), err);
    if (status == POLYATTN_STATUS_INVALID_ARGUMENT && !opt) {
        const char *msg = NULL;
        CHECK(polyattn_attention_desc_validate(d, &msg) == POLYATTN_STATUS_INVALID_ARGUMENT);
    }
    polyattn_plan_destroy(plan);
}

static void bad_descriptors(void)
{
    const scase paged = {
        "desc", POLYATTN_DTYPE_F32, 3, 4,  2,  8, 8, 1, 5, POLYATTN_KV_PAGED, 40, 16, 1, 0,
        2,      POLYATTN_MASK_NONE, 0, -1, -1, 0, 0, 0, 0};
    built w;
    build(&w, &paged, 5);
    const polyattn_attention_desc good = w.desc;
    polyattn_attention_desc d;
    const polyattn_dtype f32 = POLYATTN_DTYPE_F32;
    const char *msg = NULL;
    CHECK(polyattn_attention_desc_validate(&good, &msg) == POLYATTN_STATUS_SUCCESS);
    d = good, polyattn_tensor_desc_bshd(&d.k, f32, w.num_blocks, 2, 24, 8);
    polyattn_tensor_desc_bshd(&d.v, f32, w.num_blocks, 2, 24, 8);
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "block_size");
    d = good, d.max_blocks_per_seq = 0;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "max_blocks_per_seq");
    d = good, polyattn_tensor_desc_bshd(&d.q, f32, 2, 4, w.total_q, 8);
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "q.shape[0]");
    d = good, d.num_seqs = 0;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "num_seqs");
    d = good, d.max_seqlen_q = w.total_q + 1;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "max_seqlen_q");
    d = good, d.max_seqlen_kv = w.max_blocks * 16 + 1;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "max_seqlen_kv");
    d = good, polyattn_tensor_desc_bhsd(&d.k_new, f32, 3, 1, 2, 8);
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "k_new.shape[1]");
    d = good, d.v_new.dtype = POLYATTN_DTYPE_F16;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "v_new.dtype");
    d = good, polyattn_tensor_desc_bhsd(&d.k_new, f32, 3, 2, w.max_blocks * 16 + 1, 8);
    polyattn_tensor_desc_bhsd(&d.v_new, f32, 3, 2, w.max_blocks * 16 + 1, 8);
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "k_new.shape[2]");
    d = good, d.kv_layout = (polyattn_kv_layout)7;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "kv_layout");
    d = good, d.kv_layout = POLYATTN_KV_VARLEN, d.max_blocks_per_seq = 0;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "has_kv_append");
    d = good, d.kv_layout = POLYATTN_KV_CACHE;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "max_blocks_per_seq");
    d = good, d.has_bias = 1, pa_tk_tensor_desc(&d.bias, f32, PA_TK_BHSD, 1, 1, w.total_q, 5);
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "has_bias");
    d = good, d.q.shape[2] = (int64_t)INT32_MAX + 1, d.o.shape[2] = d.q.shape[2];
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "q.shape[2]");
    /* A k cache that overlaps itself cannot be appended to. */
    d = good, d.k.strides[2] = 0;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "k.strides");
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.want_probs = 1;
    expect_plan_fails(&good, &opt, POLYATTN_STATUS_INVALID_ARGUMENT, "options.want_probs");
    polyattn_plan_options_init(&opt);
    opt.want_backward = 1;
    expect_plan_fails(&good, &opt, POLYATTN_STATUS_UNSUPPORTED, "inference-only");
    /* Dense q: num_seqs is 0 or the batch. */
    polyattn_attention_desc_init(&d, f32, 2, 2, 2, 3, 5, 8, 8);
    d.num_seqs = 3;
    expect_plan_fails(&d, NULL, POLYATTN_STATUS_INVALID_ARGUMENT, "num_seqs");
    d.num_seqs = 2;
    CHECK(polyattn_attention_desc_validate(&d, &msg) == POLYATTN_STATUS_SUCCESS);
    /* Plan info: upper bounds from max_seqlen (no mask: every pair of the bounds). */
    d = good, d.mask = POLYATTN_MASK_NONE, d.max_seqlen_q = 5, d.max_seqlen_kv = 30;
    polyattn_plan *plan = NULL;
    polyattn_plan_options_init(&opt);
    CHECK(polyattn_plan_create(ctx, &d, &opt, &plan) == POLYATTN_STATUS_SUCCESS);
    polyattn_plan_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    CHECK(polyattn_plan_get_info(plan, &info) == POLYATTN_STATUS_SUCCESS);
    CHECK(fabs(info.flops - 2.0 * 3 * 4 * 5 * 30 * 16) < 1e-6);
    CHECK(info.min_bytes_moved >= (double)(w.q_bytes + w.k_bytes + w.v_bytes + w.o_bytes));
    polyattn_plan_destroy(plan);
    unbuild(&w);
}

int main(void)
{
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        printf("no host device: skipped\n");
        return 77;
    }
    const polyattn_dtype F32 = POLYATTN_DTYPE_F32, F16 = POLYATTN_DTYPE_F16,
                         BF16 = POLYATTN_DTYPE_BF16;
    const polyattn_mask NONE = POLYATTN_MASK_NONE, TL = POLYATTN_MASK_CAUSAL_TOP_LEFT,
                        BR = POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT;
    const polyattn_kv_layout DENSE = POLYATTN_KV_DENSE, VARLEN = POLYATTN_KV_VARLEN,
                             CACHE = POLYATTN_KV_CACHE, PAGED = POLYATTN_KV_PAGED;
    const polyattn_alibi AH = POLYATTN_ALIBI_PER_HEAD, ABH = POLYATTN_ALIBI_PER_BATCH_HEAD;
    /* name, dtype, batch, hq, hkv, d, dv, varlen_q, seq_q, kv, seq_kv, block_size, shuffle,
     * share, seq_new, mask, window (on, left, right), softcap, alibi, sinks, hints */
    // clang-format off
    const scase cases[] = {
        {"varlen q+kv, none", F32, 5, 2, 2, 16, 16, 1, 9, VARLEN, 23, 0, 0, 0, 0, NONE, 0, -1, -1, 0, 0, 0, 0},
        {"varlen q+kv, bottom-right, gqa 4", F32, 6, 8, 2, 32, 16, 1, 13, VARLEN, 31, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 1},
        {"varlen q+kv, top-left, gqa 8", F32, 4, 8, 1, 8, 8, 1, 11, VARLEN, 17, 0, 0, 0, 0, TL, 0, -1, -1, 0, 0, 0, 0},
        {"varlen q, dense kv, window+softcap", F32, 4, 4, 4, 16, 16, 1, 7, DENSE, 19, 0, 0, 0, 0, BR, 1, 5, 2, 5.0f, 0, 0, 0},
        {"dense q, varlen kv, alibi per batch", F32, 5, 4, 2, 16, 8, 0, 3, VARLEN, 70, 0, 0, 0, 0, BR, 0, -1, -1, 0, ABH, 0, 1},
        {"varlen, sinks, window", F32, 4, 4, 1, 8, 8, 1, 9, VARLEN, 25, 0, 0, 0, 0, TL, 1, 3, -1, 0, 0, 1, 0},
        {"dense cache, decode, gqa 4", F32, 5, 8, 2, 32, 32, 0, 1, CACHE, 75, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0},
        {"dense cache, 4 queries, append 3", F32, 4, 4, 1, 16, 16, 0, 4, CACHE, 41, 0, 0, 0, 3, BR, 1, 6, 0, 0, AH, 0, 1},
        {"paged 16, shuffled", F32, 5, 4, 4, 16, 16, 0, 2, PAGED, 70, 16, 1, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0},
        {"paged 16, shared, gqa 8, top-left", F32, 3, 8, 1, 16, 16, 0, 5, PAGED, 40, 16, 1, 1, 0, TL, 0, -1, -1, 0, 0, 0, 0},
        {"paged 64, varlen q, append, softcap", F32, 4, 4, 2, 16, 16, 1, 6, PAGED, 150, 64, 1, 0, 2, BR, 0, -1, -1, 20.0f, 0, 1, 1},
        {"paged 64, shared, append, window", F32, 3, 4, 1, 8, 8, 0, 3, PAGED, 100, 64, 0, 1, 4, BR, 1, 20, -1, 0, 0, 0, 0},
        {"paged 256, decode, gqa 4, sinks", F32, 3, 4, 1, 16, 16, 0, 1, PAGED, 300, 256, 1, 0, 1, BR, 0, -1, -1, 0, AH, 1, 0},
        {"paged 256, varlen q, top-left window", F32, 3, 2, 2, 8, 8, 1, 9, PAGED, 280, 256, 1, 0, 0, TL, 1, 7, 3, 0, 0, 0, 1},
        {"varlen f16", F16, 4, 4, 2, 32, 32, 1, 10, VARLEN, 33, 0, 0, 0, 0, BR, 0, -1, -1, 0, 0, 0, 0},
        {"paged bf16, append", BF16, 3, 4, 2, 16, 16, 1, 5, PAGED, 50, 16, 1, 1, 2, BR, 0, -1, -1, 0, 0, 0, 0},
        {"dense cache f16, append, softcap+window", F16, 3, 4, 4, 16, 16, 0, 3, CACHE, 30, 0, 0, 0, 2, BR, 1, 4, 1, 10.0f, 0, 0, 0},
    };
    // clang-format on
    const size_t n_cases = sizeof cases / sizeof cases[0];
    for (size_t i = 0; i < n_cases; i++) {
        check_forward(&cases[i], POLYATTN_ALGO_UNFUSED, 1000 + i);
        check_forward(&cases[i], POLYATTN_ALGO_FLASH, 2000 + i);
    }
    const scase bwd_cases[] = {
        {"bwd varlen q+kv, bottom-right, gqa 4",
         F32,
         5,
         8,
         2,
         16,
         16,
         1,
         9,
         VARLEN,
         21,
         0,
         0,
         0,
         0,
         BR,
         0,
         -1,
         -1,
         0,
         0,
         0,
         0},
        {"bwd varlen q, dense kv, top-left, window, softcap, sinks",
         F32,
         4,
         4,
         1,
         8,
         16,
         1,
         7,
         DENSE,
         11,
         0,
         0,
         0,
         0,
         TL,
         1,
         3,
         1,
         4.0f,
         0,
         1,
         0},
        {"bwd dense q, varlen kv, alibi per batch",
         F32,
         4,
         2,
         2,
         8,
         8,
         0,
         4,
         VARLEN,
         15,
         0,
         0,
         0,
         0,
         NONE,
         0,
         -1,
         -1,
         0,
         ABH,
         0,
         1},
    };
    for (size_t i = 0; i < sizeof bwd_cases / sizeof bwd_cases[0]; i++) {
        check_backward(&bwd_cases[i], POLYATTN_ALGO_UNFUSED, 3000 + i);
        check_backward(&bwd_cases[i], POLYATTN_ALGO_FLASH, 4000 + i);
    }
    bad_device_data();
    bad_descriptors();
    polyattn_context_destroy(ctx);
    pa_tk_shutdown();
    printf("test_serving_host: %zu forward cases x 2 algorithms, %d checks, %d failures\n", n_cases,
           checks, failures);
    return failures ? 1 : 0;
}
