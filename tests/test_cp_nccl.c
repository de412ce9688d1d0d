/*
 * polyattn_cp on the GPUs present: world sizes 1, 2, 4 and 8 (as many as there are GPUs),
 * one thread per GPU over ncclCommInitAll, against one unsharded forward and backward of
 * polyattn on GPU 0.  bf16 within 2e-2 relative L2 (O, dQ, dK, dV), f32 within 1e-3; the
 * LSE within 1e-3 absolute per element.  Exits 77 without a GPU.
 */
#include "cp_launch.h"
#include "pa_testkit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct shared {
    polyattn_cp_desc desc; /* rank set per thread */
    int causal;
    const void *q, *k, *v, *d_o; /* global, dtype */
    void *o, *dq, *dk, *dv;      /* global results, dtype */
    float *lse;                  /* global [b, hq, seq] */
} shared;

static int run_rank(pa_cp_rank *r)
{
    shared *sh = r->user;
    polyattn_cp_desc d = sh->desc;
    d.rank = r->rank;
    size_t es = polyattn_dtype_size(d.dtype);
    int64_t rows = polyattn_cp_local_seq(&d, r->rank);
    int64_t oq = d.batch * d.heads_q, okv = d.batch * d.heads_kv;
    size_t bq = (size_t)(oq * rows * d.head_dim) * es, bk = (size_t)(okv * rows * d.head_dim) * es;
    size_t bv = (size_t)(okv * rows * d.head_dim_v) * es,
           bo = (size_t)(oq * rows * d.head_dim_v) * es;
    size_t bl = (size_t)(oq * rows) * 4;
    void *q, *k, *v, *o, *d_o, *dq, *dk, *dv, *lse;
    void **all[] = {&q, &k, &v, &o, &d_o, &dq, &dk, &dv, &lse};
    size_t sizes[] = {bq, bk, bv, bo, bo, bq, bk, bv, bl};
    for (int i = 0; i < 9; i++)
        if (cudaMalloc(all[i], sizes[i]) != cudaSuccess) return 1;
    int bad = pa_cp_scatter_rows(q, sh->q, &d, oq, d.head_dim, es) |
              pa_cp_scatter_rows(k, sh->k, &d, okv, d.head_dim, es) |
              pa_cp_scatter_rows(v, sh->v, &d, okv, d.head_dim_v, es) |
              pa_cp_scatter_rows(d_o, sh->d_o, &d, oq, d.head_dim_v, es);
    polyattn_cp_options opt;
    polyattn_cp_options_init(&opt);
    opt.want_backward = 1;
    polyattn_cp_plan *plan = NULL;
    polyattn_status st = polyattn_cp_plan_create(&d, &opt, (struct ncclComm *)r->comm,
                                                 (struct CUstream_st *)r->stream, &plan);
    if (st) fprintf(stderr, "rank %d: plan: %s\n", r->rank, polyattn_cp_plan_last_error(NULL));
    if (!st) {
        st = polyattn_cp_forward(plan, q, k, v, o, lse);
        if (!st) st = polyattn_cp_backward(plan, q, k, v, o, d_o, lse, dq, dk, dv);
        if (st) fprintf(stderr, "rank %d: %s\n", r->rank, polyattn_cp_plan_last_error(plan));
        cudaStreamSynchronize(r->stream);
    }
    if (!st) {
        bad |= pa_cp_gather_rows(sh->o, o, &d, oq, d.head_dim_v, es) |
               pa_cp_gather_rows(sh->dq, dq, &d, oq, d.head_dim, es) |
               pa_cp_gather_rows(sh->dk, dk, &d, okv, d.head_dim, es) |
               pa_cp_gather_rows(sh->dv, dv, &d, okv, d.head_dim_v, es);
        float *l = malloc(bl);
        int64_t begin[2], len[2];
        int n = polyattn_cp_local_chunks(&d, r->rank, begin, len);
        if (l && cudaMemcpy(l, lse, bl, cudaMemcpyDeviceToHost) == cudaSuccess) {
            const float *x = l;
            for (int c = 0; c < n; c++) /* chunk by chunk, [b, hq, len] each */
                for (int64_t bh = 0; bh < oq; bh++)
                    for (int64_t i = 0; i < len[c]; i++)
                        sh->lse[bh * d.seq + begin[c] + i] = *x++;
        } else {
            bad = 1;
        }
        free(l);
    }
    polyattn_cp_plan_destroy(plan);
    for (int i = 0; i < 9; i++)
        cudaFree(*all[i]);
    return st || bad;
}

static double rel_l2(const void *a, const void *b, size_t n, polyattn_dtype dt)
{
    float *x = malloc(n * 4), *y = malloc(n * 4);
    pa_tk_decode(x, a, n, dt);
    pa_tk_decode(y, b, n, dt);
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double e = (double)x[i] - (double)y[i];
        num += e * e;
        den += (double)y[i] * (double)y[i];
    }
    free(x);
    free(y);
    return isfinite(num) ? sqrt(num / (den > 0 ? den : 1)) : INFINITY;
}

/* The unsharded result on GPU 0 through the single-GPU API. */
static int reference(const polyattn_cp_desc *d, const shared *in, void *o, float *lse, void *dq,
                     void *dk, void *dv)
{
    polyattn_context *ctx = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_CUDA, 0, &ctx)) return 1;
    polyattn_attention_desc ad;
    polyattn_attention_desc_init(&ad, d->dtype, d->batch, d->heads_q, d->heads_kv, d->seq, d->seq,
                                 d->head_dim, d->head_dim_v);
    ad.mask = in->causal ? POLYATTN_MASK_CAUSAL_TOP_LEFT : POLYATTN_MASK_NONE;
    polyattn_plan_options po;
    polyattn_plan_options_init(&po);
    po.want_backward = 1;
    polyattn_plan *plan = NULL;
    polyattn_plan_info info = {.struct_size = sizeof info};
    int bad = polyattn_plan_create(ctx, &ad, &po, &plan) || polyattn_plan_get_info(plan, &info);
    uint64_t bq = polyattn_tensor_desc_bytes(&ad.q), bk = polyattn_tensor_desc_bytes(&ad.k);
    uint64_t bv = polyattn_tensor_desc_bytes(&ad.v), bo = polyattn_tensor_desc_bytes(&ad.o);
    uint64_t bl = (uint64_t)(d->batch * d->heads_q * d->seq) * 4;
    uint64_t ws = info.workspace_bytes > info.backward_workspace_bytes
                      ? info.workspace_bytes
                      : info.backward_workspace_bytes;
    polyattn_buffer *b[11] = {0};
    uint64_t sz[11] = {bq, bk, bv, bo, bo, bl, bq, bk, bv, ws ? ws : 16, 0};
    for (int i = 0; i < 10 && !bad; i++)
        bad = polyattn_buffer_alloc(ctx, sz[i], &b[i]) != 0;
    if (!bad)
        bad = polyattn_buffer_write(b[0], 0, in->q, bq) ||
              polyattn_buffer_write(b[1], 0, in->k, bk) ||
              polyattn_buffer_write(b[2], 0, in->v, bv) ||
              polyattn_buffer_write(b[4], 0, in->d_o, bo) ||
              polyattn_forward(plan, b[0], b[1], b[2], b[3], b[5], NULL, ws ? b[9] : NULL) ||
              polyattn_backward(plan, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8],
                                ws ? b[9] : NULL) ||
              polyattn_buffer_read(b[3], 0, o, bo) || polyattn_buffer_read(b[5], 0, lse, bl) ||
              polyattn_buffer_read(b[6], 0, dq, bq) || polyattn_buffer_read(b[7], 0, dk, bk) ||
              polyattn_buffer_read(b[8], 0, dv, bv);
    if (bad) fprintf(stderr, "reference: %s\n", polyattn_context_last_error(ctx));
    for (int i = 0; i < 10; i++)
        polyattn_buffer_free(b[i]);
    polyattn_plan_destroy(plan);
    polyattn_context_destroy(ctx);
    return bad;
}

static int run_case(int world, polyattn_dtype dt, int causal, polyattn_cp_sharding sharding,
                    int64_t seq)
{
    polyattn_cp_desc d;
    polyattn_cp_desc_init(&d, dt, world, 0, 1, 8, 2, seq, 128, 128);
    d.causal = causal;
    d.sharding = sharding;
    size_t es = polyattn_dtype_size(dt);
    size_t nq = (size_t)(d.heads_q * seq * 128), nk = (size_t)(d.heads_kv * seq * 128);
    size_t nl = (size_t)(d.heads_q * seq);
    shared sh = {.desc = d, .causal = causal};
    void *buf[13];
    size_t sizes[13] = {nq, nk, nk, nq, nq, nq, nk, nk, nq, nq, nk, nk, 0};
    for (int i = 0; i < 12; i++)
        buf[i] = malloc(sizes[i] * es);
    float *lse = malloc(nl * 4), *lse_ref = malloc(nl * 4), *tmp = malloc(nq * 4);
    pa_tk_rng rng;
    pa_tk_rng_seed(&rng, (uint64_t)(world * 10 + causal));
    for (int i = 0; i < 4; i++) { /* q, k, v, d_o */
        for (size_t j = 0; j < sizes[i]; j++)
            tmp[j] = (float)pa_tk_rng_uniform(&rng);
        pa_tk_encode(buf[i], tmp, sizes[i], dt);
    }
    sh.q = buf[0];
    sh.k = buf[1];
    sh.v = buf[2];
    sh.d_o = buf[3];
    sh.o = buf[4];
    sh.dq = buf[5];
    sh.dk = buf[6];
    sh.dv = buf[7];
    sh.lse = lse;
    int bad = reference(&d, &sh, buf[8], lse_ref, buf[9], buf[10], buf[11]);
    if (!bad) bad = pa_cp_launch(world, run_rank, &sh);
    double tol = dt == POLYATTN_DTYPE_F32 ? 1e-3 : 2e-2;
    double e[4] = {INFINITY, INFINITY, INFINITY, INFINITY}, lse_err = INFINITY;
    if (!bad) {
        e[0] = rel_l2(sh.o, buf[8], nq, dt);
        e[1] = rel_l2(sh.dq, buf[9], nq, dt);
        e[2] = rel_l2(sh.dk, buf[10], nk, dt);
        e[3] = rel_l2(sh.dv, buf[11], nk, dt);
        lse_err = 0;
        for (size_t i = 0; i < nl; i++) {
            double x = fabs((double)lse[i] - (double)lse_ref[i]);
            if (!(x <= lse_err)) lse_err = x;
        }
    }
    int fail = bad || !(e[0] <= tol && e[1] <= tol && e[2] <= tol && e[3] <= tol) ||
               !(lse_err <= 1e-3 * (dt == POLYATTN_DTYPE_F32 ? 1 : 20));
    printf("%s world %d %s %s seq %lld: rel L2 O %.2e dQ %.2e dK %.2e dV %.2e, LSE max %.2e\n",
           fail ? "FAIL" : "ok  ", world, polyattn_dtype_name(dt),
           causal ? (sharding == POLYATTN_CP_ZIGZAG ? "causal zigzag" : "causal contiguous")
                  : "full",
           (long long)seq, e[0], e[1], e[2], e[3], lse_err);
    for (int i = 0; i < 12; i++)
        free(buf[i]);
    free(lse);
    free(lse_ref);
    free(tmp);
    return fail;
}

int main(void)
{
    int gpus = pa_cp_gpu_count();
    if (gpus < 1) {
        printf("test_cp_nccl: no CUDA GPU: skipped\n");
        return 77;
    }
    int failures = 0;
    static const int worlds[] = {1, 2, 4, 8};
    for (size_t w = 0; w < sizeof worlds / sizeof worlds[0]; w++) {
        int P = worlds[w];
        if (P > gpus) break;
        int64_t seq = 2 * P * 256 + 37; /* chunks of two lengths */
        failures += run_case(P, POLYATTN_DTYPE_BF16, 1, POLYATTN_CP_ZIGZAG, seq);
        failures += run_case(P, POLYATTN_DTYPE_BF16, 1, POLYATTN_CP_CONTIGUOUS, seq);
        failures += run_case(P, POLYATTN_DTYPE_BF16, 0, POLYATTN_CP_ZIGZAG, seq);
        failures += run_case(P, POLYATTN_DTYPE_F32, 1, POLYATTN_CP_ZIGZAG, seq);
    }
    if (gpus < 8) printf("test_cp_nccl: %d GPU(s): world sizes above %d not run\n", gpus, gpus);
    printf("test_cp_nccl: %d failure(s)\n", failures);
    return failures ? 1 : 0;
}
