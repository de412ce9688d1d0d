/*
 * Context-parallel attention simulated on the host backend: P ranks in one process run the
 * ring engine of polyattn_cp (cp/cp_engine.c, the code the NCCL driver runs), the K/V
 * blocks and the dK/dV accumulators passed to the next rank by memcpy as the ring would,
 * partial results merged with polyattn_merge_states.  Forward (O, LSE) and backward (dQ,
 * dK, dV) are compared, element by element, with one unsharded host forward and backward
 * over the whole sequence.  P = 1, 2, 3, 4, 8; zig-zag and contiguous sharding; causal and
 * not; GQA; chunk lengths that differ by one.  Also checks the schedule itself: every
 * (query, key) pair a mask keeps is attended exactly once over the P steps.
 */
#include "cp_engine.h"
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

static polyattn_context *ctx;

/* ---- host device ops: native pointers are host memory ---- */

static polyattn_status host_alloc(void *user, uint64_t bytes, pa_cp_mem *m)
{
    (void)user;
    m->ptr = malloc(bytes);
    if (!m->ptr) return POLYATTN_STATUS_OUT_OF_MEMORY;
    pa_tk_poison(m->ptr, bytes / 4, POLYATTN_DTYPE_F32);
    polyattn_status st = polyattn_host_buffer_wrap(ctx, m->ptr, bytes, &m->buf);
    if (st) free(m->ptr);
    return st;
}

static void host_free(void *user, pa_cp_mem *m)
{
    (void)user;
    polyattn_buffer_free(m->buf);
    free(m->ptr);
}

static polyattn_status host_zero(void *user, void *ptr, uint64_t bytes)
{
    (void)user;
    memset(ptr, 0, bytes);
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status host_accumulate(void *user, float *acc, int64_t acc_rows, int64_t acc_row0,
                                       const void *src, polyattn_dtype dt, int64_t src_rows,
                                       int64_t src_row0, int64_t outer, int64_t rows, int64_t width)
{
    (void)user;
    size_t es = polyattn_dtype_size(dt);
    float *tmp = malloc(sizeof(float) * (size_t)width);
    if (!tmp) return POLYATTN_STATUS_OUT_OF_MEMORY;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t i = 0; i < rows; i++) {
            const char *s = (const char *)src + ((o * src_rows + src_row0 + i) * width) * es;
            pa_tk_decode(tmp, s, (size_t)width, dt);
            float *a = acc + (o * acc_rows + acc_row0 + i) * width;
            for (int64_t x = 0; x < width; x++)
                a[x] += tmp[x];
        }
    free(tmp);
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status host_store(void *user, void *dst, polyattn_dtype dt, const float *src,
                                  int64_t count)
{
    (void)user;
    pa_tk_encode(dst, src, (size_t)count, dt);
    return POLYATTN_STATUS_SUCCESS;
}

static const pa_cp_device_ops host_ops = {
    .alloc = host_alloc,
    .free = host_free,
    .zero = host_zero,
    .accumulate = host_accumulate,
    .store = host_store,
};

/* ---- the schedule alone ---- */

/* Over the P steps, every visible (query, key) pair of the global sequence is covered by
 * exactly one call, with the mask each call declares. */
static void check_schedule(int P, polyattn_cp_sharding sh, int causal, int64_t seq)
{
    pa_cp_layout l = {P, sh, causal, seq};
    unsigned char *seen = calloc((size_t)(seq * seq), 1);
    int64_t rows = 0;
    for (int r = 0; r < P; r++)
        rows += pa_cp_rank_rows(&l, r);
    CHECK(rows == seq);
    for (int r = 0; r < P; r++) {
        int qc[PA_CP_MAX_LOCAL_CHUNKS];
        int nq = pa_cp_rank_chunks(&l, r, qc);
        for (int s = 0; s < P; s++) {
            pa_cp_call calls[PA_CP_MAX_CALLS];
            int n = pa_cp_step_calls(&l, r, s, calls);
            CHECK(n >= 0);
            int owner = pa_cp_block_owner(&l, r, s);
            int kc[PA_CP_MAX_LOCAL_CHUNKS];
            int nk = pa_cp_rank_chunks(&l, owner, kc);
            for (int c = 0; c < n; c++) {
                CHECK(calls[c].q_chunk < nq);
                for (int64_t i = 0; i < calls[c].q_len; i++) {
                    int64_t gi = pa_cp_chunk_begin(&l, qc[calls[c].q_chunk]) + i;
                    for (int64_t j = 0; j < calls[c].kv_len; j++) {
                        if (calls[c].mask != POLYATTN_MASK_NONE &&
                            j > i + calls[c].kv_len - calls[c].q_len)
                            continue;
                        /* local row of the block -> global row */
                        int64_t lr = calls[c].kv_row0 + j, gj = -1;
                        for (int k = 0; k < nk; k++) {
                            int64_t len = pa_cp_chunk_len(&l, kc[k]);
                            if (lr < len) {
                                gj = pa_cp_chunk_begin(&l, kc[k]) + lr;
                                break;
                            }
                            lr -= len;
                        }
                        CHECK(gj >= 0);
                        if (gj >= 0) seen[gi * seq + gj]++;
                    }
                }
            }
        }
    }
    long long bad = 0;
    for (int64_t i = 0; i < seq; i++)
        for (int64_t j = 0; j < seq; j++)
            bad += seen[i * seq + j] != ((!causal || j <= i) ? 1 : 0);
    CHECK(bad == 0);
    if (bad)
        fprintf(stderr, "schedule P=%d sharding=%d causal=%d seq=%lld: %lld pairs wrong\n", P,
                (int)sh, causal, (long long)seq, bad);
    free(seen);
}

/* ---- the ring simulation ---- */

typedef struct rank_state {
    pa_cp_engine *eng;
    int64_t rows;
    int64_t begin[2], len[2];
    int nchunks;
    pa_cp_mem q, k, v, o, lse, d_o, dq, ring_k[2], ring_v[2], acc_k[2], acc_v[2];
} rank_state;

/* Global tensor [batch, heads, seq, width] rows -> the rank's local rows (and back). */
static void shard_rows(float *local, const float *global, const rank_state *r, int64_t outer,
                       int64_t seq, int64_t width, int to_global)
{
    for (int64_t o = 0; o < outer; o++) {
        int64_t lrow = 0;
        for (int k = 0; k < r->nchunks; k++)
            for (int64_t i = 0; i < r->len[k]; i++, lrow++) {
                float *l = local + (o * r->rows + lrow) * width;
                float *g = (float *)global + (o * seq + r->begin[k] + i) * width;
                if (to_global) memcpy(g, l, sizeof(float) * (size_t)width);
                else memcpy(l, g, sizeof(float) * (size_t)width);
            }
    }
}

static int mem_new(uint64_t bytes, pa_cp_mem *m) { return host_alloc(NULL, bytes, m) != 0; }

static void fill(float *x, size_t n, pa_tk_rng *rng, double scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(scale * pa_tk_rng_uniform(rng));
}

typedef struct cp_case {
    int P;
    polyattn_cp_sharding sharding;
    int causal;
    int64_t batch, hq, hkv, seq, d, dv;
} cp_case;

static long long compare(const char *what, const cp_case *c, const float *out, const float *ref,
                         size_t n, double rel)
{
    double ref_max = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(ref[i]) && fabs(ref[i]) > ref_max) ref_max = fabs(ref[i]);
    double max_abs = 0;
    long long bad = pa_tk_compare(out, ref, n, rel * (ref_max > 1 ? ref_max : 1), &max_abs);
    CHECK(bad == 0);
    if (bad)
        fprintf(stderr,
                "P=%d %s causal=%d seq=%lld hq=%lld hkv=%lld: %s: %lld of %zu bad, max "
                "|diff| %g\n",
                c->P, c->sharding == POLYATTN_CP_ZIGZAG ? "zigzag" : "contiguous", c->causal,
                (long long)c->seq, (long long)c->hq, (long long)c->hkv, what, bad, n, max_abs);
    return bad;
}

static void run_case(const cp_case *c)
{
    const int P = c->P;
    const int64_t B = c->batch, N = c->seq;
    const size_t nq = (size_t)(B * c->hq * N * c->d), nk = (size_t)(B * c->hkv * N * c->d);
    const size_t nv = (size_t)(B * c->hkv * N * c->dv), no = (size_t)(B * c->hq * N * c->dv);
    const size_t nl = (size_t)(B * c->hq * N);
    float *q = malloc(nq * 4), *k = malloc(nk * 4), *v = malloc(nv * 4), *d_o = malloc(no * 4);
    float *o_ref = malloc(no * 4), *lse_ref = malloc(nl * 4), *dq_ref = malloc(nq * 4);
    float *dk_ref = malloc(nk * 4), *dv_ref = malloc(nv * 4);
    float *o_cp = malloc(no * 4), *lse_cp = malloc(nl * 4), *dq_cp = malloc(nq * 4);
    float *dk_cp = malloc(nk * 4), *dv_cp = malloc(nv * 4);
    pa_tk_rng rng;
    pa_tk_rng_seed(&rng, (uint64_t)(P * 1000 + c->causal * 100 + c->sharding * 10) + (uint64_t)N);
    fill(q, nq, &rng, 1.5);
    fill(k, nk, &rng, 1.5);
    fill(v, nv, &rng, 1.0);
    fill(d_o, no, &rng, 1.0);

    /* The unsharded reference: one host forward and backward over the whole sequence. */
    polyattn_attention_desc ad;
    polyattn_attention_desc_init(&ad, POLYATTN_DTYPE_F32, B, c->hq, c->hkv, N, N, c->d, c->dv);
    ad.mask = c->causal ? POLYATTN_MASK_CAUSAL_TOP_LEFT : POLYATTN_MASK_NONE;
    polyattn_plan_options po;
    polyattn_plan_options_init(&po);
    po.want_backward = 1;
    polyattn_plan *plan = NULL;
    polyattn_buffer *bq, *bk, *bv, *bo, *bl, *bdo, *bdq, *bdk, *bdv;
    CHECK(polyattn_plan_create(ctx, &ad, &po, &plan) == POLYATTN_STATUS_SUCCESS);
    polyattn_host_buffer_wrap(ctx, q, nq * 4, &bq);
    polyattn_host_buffer_wrap(ctx, k, nk * 4, &bk);
    polyattn_host_buffer_wrap(ctx, v, nv * 4, &bv);
    polyattn_host_buffer_wrap(ctx, o_ref, no * 4, &bo);
    polyattn_host_buffer_wrap(ctx, lse_ref, nl * 4, &bl);
    polyattn_host_buffer_wrap(ctx, d_o, no * 4, &bdo);
    polyattn_host_buffer_wrap(ctx, dq_ref, nq * 4, &bdq);
    polyattn_host_buffer_wrap(ctx, dk_ref, nk * 4, &bdk);
    polyattn_host_buffer_wrap(ctx, dv_ref, nv * 4, &bdv);
    CHECK(polyattn_forward(plan, bq, bk, bv, bo, bl, NULL, NULL) == POLYATTN_STATUS_SUCCESS);
    CHECK(polyattn_backward(plan, bq, bk, bv, bo, bdo, bl, bdq, bdk, bdv, NULL) ==
          POLYATTN_STATUS_SUCCESS);
    polyattn_buffer *all[] = {bq, bk, bv, bo, bl, bdo, bdq, bdk, bdv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        polyattn_buffer_free(all[i]);
    polyattn_plan_destroy(plan);

    /* P ranks. */
    rank_state *rs = calloc((size_t)P, sizeof *rs);
    polyattn_cp_options opt;
    polyattn_cp_options_init(&opt);
    opt.want_backward = 1;
    int64_t max_rows = 0;
    int ok = 1;
    for (int r = 0; r < P && ok; r++) {
        polyattn_cp_desc cd;
        polyattn_cp_desc_init(&cd, POLYATTN_DTYPE_F32, P, r, B, c->hq, c->hkv, N, c->d, c->dv);
        cd.sharding = c->sharding;
        cd.causal = c->causal;
        rank_state *x = &rs[r];
        x->rows = polyattn_cp_local_seq(&cd, r);
        x->nchunks = polyattn_cp_local_chunks(&cd, r, x->begin, x->len);
        CHECK(x->rows > 0 && x->nchunks == (c->sharding == POLYATTN_CP_ZIGZAG ? 2 : 1));
        if (x->rows > max_rows) max_rows = x->rows;
        char err[512];
        polyattn_status st =
            pa_cp_engine_create(ctx, &cd, &opt, &host_ops, NULL, &x->eng, err, sizeof err);
        CHECK(st == POLYATTN_STATUS_SUCCESS);
        if (st) {
            fprintf(stderr, "rank %d: %s\n", r, err);
            ok = 0;
        }
    }
    for (int r = 0; r < P && ok; r++) {
        rank_state *x = &rs[r];
        uint64_t R = (uint64_t)x->rows, M = (uint64_t)max_rows;
        ok &= !mem_new(R * (uint64_t)(B * c->hq * c->d) * 4, &x->q);
        ok &= !mem_new(R * (uint64_t)(B * c->hkv * c->d) * 4, &x->k);
        ok &= !mem_new(R * (uint64_t)(B * c->hkv * c->dv) * 4, &x->v);
        ok &= !mem_new(R * (uint64_t)(B * c->hq * c->dv) * 4, &x->o);
        ok &= !mem_new(R * (uint64_t)(B * c->hq * c->dv) * 4, &x->d_o);
        ok &= !mem_new(R * (uint64_t)(B * c->hq) * 4, &x->lse);
        ok &= !mem_new(R * (uint64_t)(B * c->hq * c->d) * 4, &x->dq);
        for (int i = 0; i < 2; i++) {
            ok &= !mem_new(M * (uint64_t)(B * c->hkv * c->d) * 4, &x->ring_k[i]);
            ok &= !mem_new(M * (uint64_t)(B * c->hkv * c->dv) * 4, &x->ring_v[i]);
            ok &= !mem_new(M * (uint64_t)(B * c->hkv * c->d) * 4, &x->acc_k[i]);
            ok &= !mem_new(M * (uint64_t)(B * c->hkv * c->dv) * 4, &x->acc_v[i]);
        }
        shard_rows(x->q.ptr, q, x, B * c->hq, N, c->d, 0);
        shard_rows(x->k.ptr, k, x, B * c->hkv, N, c->d, 0);
        shard_rows(x->v.ptr, v, x, B * c->hkv, N, c->dv, 0);
        shard_rows(x->d_o.ptr, d_o, x, B * c->hq, N, c->dv, 0);
    }
    CHECK(ok);

    /* Forward ring: at step s rank r holds in ring[s % 2] the block of rank r - s. */
    for (int r = 0; r < P && ok; r++) {
        memcpy(rs[r].ring_k[0].ptr, rs[r].k.ptr, pa_cp_engine_kv_bytes(rs[r].eng, r, 0, 0));
        memcpy(rs[r].ring_v[0].ptr, rs[r].v.ptr, pa_cp_engine_kv_bytes(rs[r].eng, r, 1, 0));
    }
    for (int s = 0; s < P && ok; s++) {
        for (int r = 0; r < P; r++) {
            polyattn_status st =
                pa_cp_fwd_step(rs[r].eng, s, &rs[r].q, &rs[r].ring_k[s % 2], &rs[r].ring_v[s % 2]);
            CHECK(st == POLYATTN_STATUS_SUCCESS);
            if (st) fprintf(stderr, "rank %d step %d: %s\n", r, s, pa_cp_engine_error(rs[r].eng));
        }
        for (int r = 0; r < P && s + 1 < P; r++) { /* send to r + 1 */
            rank_state *to = &rs[(r + 1) % P];
            int owner = pa_cp_block_owner(pa_cp_engine_layout(rs[r].eng), r, s);
            memcpy(to->ring_k[(s + 1) % 2].ptr, rs[r].ring_k[s % 2].ptr,
                   pa_cp_engine_kv_bytes(rs[r].eng, owner, 0, 0));
            memcpy(to->ring_v[(s + 1) % 2].ptr, rs[r].ring_v[s % 2].ptr,
                   pa_cp_engine_kv_bytes(rs[r].eng, owner, 1, 0));
        }
    }
    for (int r = 0; r < P && ok; r++) {
        CHECK(pa_cp_fwd_finish(rs[r].eng, &rs[r].o, &rs[r].lse) == POLYATTN_STATUS_SUCCESS);
        shard_rows(rs[r].o.ptr, o_cp, &rs[r], B * c->hq, N, c->dv, 1);
        /* LSE chunk by chunk: chunk k is [B, hq, len_k] */
        const float *l = rs[r].lse.ptr;
        for (int kk = 0; kk < rs[r].nchunks; kk++)
            for (int64_t bh = 0; bh < B * c->hq; bh++)
                for (int64_t i = 0; i < rs[r].len[kk]; i++)
                    lse_cp[bh * N + rs[r].begin[kk] + i] = *l++;
    }
    if (ok) {
        compare("O", c, o_cp, o_ref, no, 2e-5);
        compare("LSE", c, lse_cp, lse_ref, nl, 2e-5);
    }

    /* Backward ring: the dK/dV accumulators travel with the blocks and come home after P
     * steps (one more transfer than the blocks). */
    for (int r = 0; r < P && ok; r++) {
        CHECK(pa_cp_bwd_begin(rs[r].eng) == POLYATTN_STATUS_SUCCESS);
        memcpy(rs[r].ring_k[0].ptr, rs[r].k.ptr, pa_cp_engine_kv_bytes(rs[r].eng, r, 0, 0));
        memcpy(rs[r].ring_v[0].ptr, rs[r].v.ptr, pa_cp_engine_kv_bytes(rs[r].eng, r, 1, 0));
        memset(rs[r].acc_k[0].ptr, 0, pa_cp_engine_kv_bytes(rs[r].eng, r, 0, 1));
        memset(rs[r].acc_v[0].ptr, 0, pa_cp_engine_kv_bytes(rs[r].eng, r, 1, 1));
    }
    for (int s = 0; s < P && ok; s++) {
        for (int r = 0; r < P; r++) {
            rank_state *x = &rs[r];
            polyattn_status st = pa_cp_bwd_step(x->eng, s, &x->q, &x->ring_k[s % 2],
                                                &x->ring_v[s % 2], &x->o, &x->d_o, &x->lse);
            if (!st) st = pa_cp_bwd_accumulate(x->eng, s, &x->acc_k[s % 2], &x->acc_v[s % 2]);
            CHECK(st == POLYATTN_STATUS_SUCCESS);
            if (st) fprintf(stderr, "rank %d step %d: %s\n", r, s, pa_cp_engine_error(x->eng));
        }
        for (int r = 0; r < P; r++) {
            rank_state *to = &rs[(r + 1) % P];
            const pa_cp_engine *e = rs[r].eng;
            int owner = pa_cp_block_owner(pa_cp_engine_layout(e), r, s);
            int nx = (s + 1) % 2;
            memcpy(to->acc_k[nx].ptr, rs[r].acc_k[s % 2].ptr,
                   pa_cp_engine_kv_bytes(e, owner, 0, 1));
            memcpy(to->acc_v[nx].ptr, rs[r].acc_v[s % 2].ptr,
                   pa_cp_engine_kv_bytes(e, owner, 1, 1));
            if (s + 1 < P) {
                memcpy(to->ring_k[nx].ptr, rs[r].ring_k[s % 2].ptr,
                       pa_cp_engine_kv_bytes(e, owner, 0, 0));
                memcpy(to->ring_v[nx].ptr, rs[r].ring_v[s % 2].ptr,
                       pa_cp_engine_kv_bytes(e, owner, 1, 0));
            }
        }
    }
    for (int r = 0; r < P && ok; r++) {
        rank_state *x = &rs[r];
        CHECK(pa_cp_bwd_finish(x->eng, &x->dq) == POLYATTN_STATUS_SUCCESS);
        shard_rows(x->dq.ptr, dq_cp, x, B * c->hq, N, c->d, 1);
        shard_rows(x->acc_k[P % 2].ptr, dk_cp, x, B * c->hkv, N, c->d, 1);
        shard_rows(x->acc_v[P % 2].ptr, dv_cp, x, B * c->hkv, N, c->dv, 1);
    }
    if (ok) {
        compare("dQ", c, dq_cp, dq_ref, nq, 5e-5);
        compare("dK", c, dk_cp, dk_ref, nk, 5e-5);
        compare("dV", c, dv_cp, dv_ref, nv, 5e-5);
    }

    for (int r = 0; r < P; r++) {
        rank_state *x = &rs[r];
        pa_cp_engine_destroy(x->eng);
        pa_cp_mem *m[] = {&x->q,         &x->k,        &x->v,         &x->o,         &x->lse,
                          &x->d_o,       &x->dq,       &x->ring_k[0], &x->ring_k[1], &x->ring_v[0],
                          &x->ring_v[1], &x->acc_k[0], &x->acc_k[1],  &x->acc_v[0],  &x->acc_v[1]};
        for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
            if (m[i]->buf) host_free(NULL, m[i]);
    }
    free(rs);
    float *bufs[] = {q,      k,      v,    d_o,    o_ref, lse_ref, dq_ref,
                     dk_ref, dv_ref, o_cp, lse_cp, dq_cp, dk_cp,   dv_cp};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        free(bufs[i]);
}

static void check_desc_errors(void)
{
    polyattn_cp_desc d;
    polyattn_cp_desc_init(&d, POLYATTN_DTYPE_F32, 4, 0, 1, 4, 2, 7, 16, 16);
    const char *why = NULL;
    CHECK(pa_cp_desc_check(&d, &why) == POLYATTN_STATUS_INVALID_ARGUMENT); /* 7 < 8 chunks */
    CHECK(why && strstr(why, "seq"));
    CHECK(polyattn_cp_local_seq(&d, 0) == 0);
    d.seq = 8;
    CHECK(pa_cp_desc_check(&d, &why) == POLYATTN_STATUS_SUCCESS);
    d.rank = 4;
    CHECK(pa_cp_desc_check(&d, &why) == POLYATTN_STATUS_INVALID_ARGUMENT);
    d.rank = 0;
    d.heads_kv = 3;
    CHECK(pa_cp_desc_check(&d, &why) == POLYATTN_STATUS_INVALID_ARGUMENT);
    /* zig-zag maps: rank 1 of 4 holds chunks 1 and 6 of 8 */
    polyattn_cp_desc_init(&d, POLYATTN_DTYPE_F32, 4, 1, 1, 4, 2, 19, 16, 16);
    int64_t b[2], l[2];
    CHECK(polyattn_cp_local_chunks(&d, 1, b, l) == 2);
    CHECK(b[0] == 3 && l[0] == 3 && b[1] == 15 && l[1] == 2); /* 19 = 3,3,3,2,2,2,2,2 */
    CHECK(polyattn_cp_local_seq(&d, 1) == 5);
}

int main(void)
{
    if (polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "no host context: %s\n", polyattn_last_error());
        return 1;
    }
    check_desc_errors();
    static const int worlds[] = {1, 2, 3, 4, 8};
    for (size_t w = 0; w < sizeof worlds / sizeof worlds[0]; w++)
        for (int causal = 0; causal < 2; causal++)
            for (int sh = 0; sh < 2; sh++)
                for (int64_t seq = 2 * worlds[w]; seq <= 2 * worlds[w] * 4 + 3; seq += 5)
                    check_schedule(worlds[w], (polyattn_cp_sharding)sh, causal, seq);
    for (size_t w = 0; w < sizeof worlds / sizeof worlds[0]; w++)
        for (int causal = 0; causal < 2; causal++)
            for (int sh = 0; sh < 2; sh++) {
                int P = worlds[w];
                /* seq leaves chunks of two lengths; GQA 4:2; head_dim_v != head_dim */
                cp_case c = {P, (polyattn_cp_sharding)sh, causal, 2, 4, 2, 2 * P * 3 + 5, 16, 8};
                if (P == 8 && sh == 1) c.hkv = 1; /* multi-query */
                run_case(&c);
            }
    polyattn_context_destroy(ctx);
    pa_tk_shutdown();
    printf("test_cp_host: %d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
