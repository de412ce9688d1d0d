/* The serving-layout test cases of the host backend: a case's data built through the public
 * API and a double reference written from include/polyattn.h (serving_fixture.c), shared by
 * test_serving_host.c (results) and test_serving_errors.c (bad inputs). */
#ifndef SERVING_FIXTURE_H
#define SERVING_FIXTURE_H

#include "pa_testkit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int failures, checks;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

enum { MAXB = 8, Q_LEAD = 2, Q_TAIL = 3, KV_LEAD = 1, KV_TAIL = 2 };

extern polyattn_context *ctx;

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

/* The reference's row: its diagonal key, LSE (with the sink) and sink (-inf without). */
typedef struct ref_row {
    int64_t diag;
    double lse;  /* with the sink */
    double sink; /* -inf without */
} ref_row;

polyattn_buffer *upload(const void *data, size_t bytes);
void put(unsigned char *img, polyattn_dtype dt, int64_t index, float x);
float *rand_block(pa_tk_rng *r, int64_t n, polyattn_dtype dt);
int64_t at(const polyattn_tensor_desc *t, int64_t a, int64_t b, int64_t c, int64_t d);
void kv_pos(const built *w, int64_t b, int64_t j, int64_t *a, int64_t *row);
void build(built *w, const scase *c, uint64_t seed);
void unbuild(built *w);
int visible(const scase *c, int64_t diag, int64_t j);
double score(const built *w, int64_t b, int64_t h, int64_t i, int64_t j, int64_t diag,
             double *dcap);
void ref_row_init(const built *w, int64_t b, int64_t h, int64_t i, ref_row *rr);
void ref_o(const built *w, int64_t b, int64_t h, int64_t i, const ref_row *rr, double *o);
int64_t lse_index(const built *w, int64_t b, int64_t h, int64_t i);
polyattn_status plan_for(const built *w, polyattn_algo algo, int backward, polyattn_plan **plan);
int64_t rnd(pa_tk_rng *r, int64_t n);

/* How a check plans and judges a case (serving_checks.c). */
typedef struct serving_run {
    polyattn_algo algo;
    int num_splits;          /* plan option (0: the plan chooses) */
    int deterministic;       /* backward plan option */
    int check_device_inputs; /* plan option */
    double tol_scale;        /* O tolerance x this (0: 1, the host's) */
    int allow_unsupported;   /* an UNSUPPORTED plan is no failure: the check returns 2 */
} serving_run;

polyattn_status serving_plan(const built *w, const serving_run *run, int backward,
                             polyattn_plan **plan);
/* 0: planned and right, 1: failed (counted in failures), 2: the plan was refused as allowed.
 * info_out (may be NULL) receives the plan's info. */
int serving_check_forward(const scase *c, const serving_run *run, uint64_t seed,
                          polyattn_plan_info *info_out);
int serving_check_backward(const scase *c, const serving_run *run, uint64_t seed);

#endif
