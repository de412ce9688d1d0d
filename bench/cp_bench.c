/*
 * cp_bench: context-parallel (ring) attention over NCCL, one thread per GPU.
 *
 *   cp_bench [--world N] [--seq-per-gpu S] [--heads H] [--heads-kv HK] [--head-dim D]
 *            [--dtype bf16|f16|f32] [--causal] [--contiguous] [--backward]
 *            [--algo auto|unfused|fused|flash] [--iters N] [--baseline] [--json]
 *
 * Per rank: ms of one ring forward (or backward), its TFLOP/s over the pairs it attends,
 * the same schedule with the transfers left out (compute alone, skip_communication), the
 * transfers alone (the same NCCL rounds, no compute), and the overlap achieved:
 *   overlap = (compute + comm - ring) / min(compute, comm), clipped to [0, 1]
 * (1: the shorter of the two is wholly hidden).  --baseline also times one unsharded
 * single-GPU forward of seq-per-gpu rows on GPU 0 (the weak-scaling yardstick) and prints
 * each rank's TFLOP/s as a fraction of it.  Inputs are random; results are not checked
 * (tests/test_cp_nccl does that).
 */
#include "cp_launch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bench_args {
    int world, iters, causal, contiguous, backward, json, baseline;
    int64_t seq_per_gpu, heads, heads_kv, head_dim;
    polyattn_dtype dtype;
    polyattn_algo algo;
    double ring_ms[8], compute_ms[8], comm_ms[8], tflops[8];
    double baseline_tflops;
} bench_args;

static void make_desc(const bench_args *a, int rank, polyattn_cp_desc *d)
{
    polyattn_cp_desc_init(d, a->dtype, a->world, rank, 1, a->heads, a->heads_kv,
                          a->seq_per_gpu * a->world, a->head_dim, a->head_dim);
    d->causal = a->causal;
    d->sharding = a->contiguous ? POLYATTN_CP_CONTIGUOUS : POLYATTN_CP_ZIGZAG;
}

typedef struct rank_bufs {
    void *q, *k, *v, *o, *d_o, *dq, *dk, *dv, *lse, *peer_k, *peer_v;
} rank_bufs;

static int run_plan(const bench_args *a, polyattn_cp_plan *plan, rank_bufs *b)
{
    if (polyattn_cp_forward(plan, b->q, b->k, b->v, b->o, b->lse)) return 1;
    if (a->backward &&
        polyattn_cp_backward(plan, b->q, b->k, b->v, b->o, b->d_o, b->lse, b->dq, b->dk, b->dv))
        return 1;
    return 0;
}

/* ms per iteration of `what` (0: ring, 1: compute alone, 2: transfers alone) on this rank,
 * all ranks starting together. */
static double time_it(pa_cp_rank *r, const bench_args *a, polyattn_cp_plan *plan, rank_bufs *b,
                      int what, size_t kv_bytes)
{
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    int next = (r->rank + 1) % r->world, prev = (r->rank + r->world - 1) % r->world;
    int rounds = r->world - 1;
    double ms = NAN;
    for (int pass = 0; pass < 2; pass++) { /* warm-up, then timed */
        int n = pass ? a->iters : 2;
        pthread_barrier_wait(r->barrier);
        cudaEventRecord(e0, r->stream);
        for (int i = 0; i < n; i++) {
            if (what < 2) {
                if (run_plan(a, plan, b)) return NAN;
                continue;
            }
            for (int s = 0; s < rounds * (a->backward ? 3 : 1); s++) { /* bwd: K/V + dK/dV f32 */
                ncclGroupStart();
                ncclSend(b->k, kv_bytes, ncclUint8, next, r->comm, r->stream);
                ncclSend(b->v, kv_bytes, ncclUint8, next, r->comm, r->stream);
                ncclRecv(b->peer_k, kv_bytes, ncclUint8, prev, r->comm, r->stream);
                ncclRecv(b->peer_v, kv_bytes, ncclUint8, prev, r->comm, r->stream);
                ncclGroupEnd();
            }
        }
        cudaEventRecord(e1, r->stream);
        cudaEventSynchronize(e1);
        float t = 0;
        cudaEventElapsedTime(&t, e0, e1);
        ms = t / n;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return ms;
}

static int bench_rank(pa_cp_rank *r)
{
    bench_args *a = r->user;
    polyattn_cp_desc d;
    make_desc(a, r->rank, &d);
    size_t es = polyattn_dtype_size(d.dtype);
    int64_t rows = polyattn_cp_local_seq(&d, r->rank);
    size_t bq = (size_t)(d.heads_q * rows * d.head_dim) * es;
    size_t bk = (size_t)(d.heads_kv * rows * d.head_dim) * es;
    rank_bufs b;
    void **all[] = {&b.q,  &b.k,  &b.v,   &b.o,      &b.d_o,   &b.dq,
                    &b.dk, &b.dv, &b.lse, &b.peer_k, &b.peer_v};
    size_t sizes[] = {bq, bk, bk, bq, bq, bq, bk, bk, (size_t)(d.heads_q * rows) * 4, bk, bk};
    for (int i = 0; i < 11; i++) {
        if (cudaMalloc(all[i], sizes[i]) != cudaSuccess) return 1;
        cudaMemset(*all[i], 0x3c, sizes[i]); /* small finite values in every dtype */
    }
    polyattn_cp_options opt;
    polyattn_cp_options_init(&opt);
    opt.algo = a->algo;
    opt.want_backward = a->backward;
    polyattn_cp_plan *ring = NULL, *alone = NULL;
    if (polyattn_cp_plan_create(&d, &opt, (struct ncclComm *)r->comm,
                                (struct CUstream_st *)r->stream, &ring)) {
        fprintf(stderr, "rank %d: %s\n", r->rank, polyattn_cp_plan_last_error(NULL));
        return 1;
    }
    opt.skip_communication = 1;
    if (polyattn_cp_plan_create(&d, &opt, (struct ncclComm *)r->comm,
                                (struct CUstream_st *)r->stream, &alone)) {
        fprintf(stderr, "rank %d: %s\n", r->rank, polyattn_cp_plan_last_error(NULL));
        return 1;
    }
    polyattn_cp_plan_info info = {.struct_size = sizeof info};
    polyattn_cp_plan_get_info(ring, &info);
    int k = r->rank < 8 ? r->rank : 7;
    a->ring_ms[k] = time_it(r, a, ring, &b, 0, bk);
    a->compute_ms[k] = time_it(r, a, alone, &b, 1, bk);
    a->comm_ms[k] = r->world > 1 ? time_it(r, a, NULL, &b, 2, bk) : 0;
    double flops = info.flops * (a->backward ? 3.5 : 1.0); /* backward ~2.5x the forward */
    a->tflops[k] = flops / (a->ring_ms[k] * 1e-3) / 1e12;
    polyattn_cp_plan_destroy(alone);
    polyattn_cp_plan_destroy(ring);
    for (int i = 0; i < 11; i++)
        cudaFree(*all[i]);
    return isfinite(a->ring_ms[k]) ? 0 : 1;
}

/* One unsharded forward of seq_per_gpu rows on GPU 0 (the weak-scaling yardstick). */
static double baseline_tflops(const bench_args *a)
{
    polyattn_context *ctx = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_CUDA, 0, &ctx)) return NAN;
    polyattn_attention_desc ad;
    polyattn_attention_desc_init(&ad, a->dtype, 1, a->heads, a->heads_kv, a->seq_per_gpu,
                                 a->seq_per_gpu, a->head_dim, a->head_dim);
    ad.mask = a->causal ? POLYATTN_MASK_CAUSAL_TOP_LEFT : POLYATTN_MASK_NONE;
    polyattn_plan_options po;
    polyattn_plan_options_init(&po);
    po.algo = a->algo;
    polyattn_plan *plan = NULL;
    polyattn_plan_info info = {.struct_size = sizeof info};
    double result = NAN;
    polyattn_buffer *q = NULL, *k = NULL, *v = NULL, *o = NULL, *ws = NULL;
    if (polyattn_plan_create(ctx, &ad, &po, &plan) || polyattn_plan_get_info(plan, &info) ||
        polyattn_buffer_alloc(ctx, polyattn_tensor_desc_bytes(&ad.q), &q) ||
        polyattn_buffer_alloc(ctx, polyattn_tensor_desc_bytes(&ad.k), &k) ||
        polyattn_buffer_alloc(ctx, polyattn_tensor_desc_bytes(&ad.v), &v) ||
        polyattn_buffer_alloc(ctx, polyattn_tensor_desc_bytes(&ad.o), &o) ||
        (info.workspace_bytes && polyattn_buffer_alloc(ctx, info.workspace_bytes, &ws)))
        goto out;
    polyattn_event *e0 = NULL, *e1 = NULL;
    polyattn_event_create(ctx, &e0);
    polyattn_event_create(ctx, &e1);
    for (int i = 0; i < 2; i++)
        polyattn_forward(plan, q, k, v, o, NULL, NULL, ws);
    polyattn_event_record(e0);
    for (int i = 0; i < a->iters; i++)
        polyattn_forward(plan, q, k, v, o, NULL, NULL, ws);
    polyattn_event_record(e1);
    double ms = 0;
    if (polyattn_event_elapsed_ms(e0, e1, &ms) == POLYATTN_STATUS_SUCCESS)
        result = info.flops / (ms / a->iters * 1e-3) / 1e12;
    polyattn_event_destroy(e0);
    polyattn_event_destroy(e1);
out:
    polyattn_buffer_free(ws);
    polyattn_buffer_free(o);
    polyattn_buffer_free(v);
    polyattn_buffer_free(k);
    polyattn_buffer_free(q);
    polyattn_plan_destroy(plan);
    polyattn_context_destroy(ctx);
    return result;
}

static int usage(const char *bad)
{
    fprintf(stderr, "cp_bench: bad argument %s (see the comment at the top of bench/cp_bench.c)\n",
            bad);
    return 2;
}

int main(int argc, char **argv)
{
    bench_args a = {.world = 0,
                    .iters = 10,
                    .seq_per_gpu = 8192,
                    .heads = 16,
                    .heads_kv = 16,
                    .head_dim = 128,
                    .dtype = POLYATTN_DTYPE_BF16,
                    .algo = POLYATTN_ALGO_AUTO};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(s, "--causal")) a.causal = 1;
        else if (!strcmp(s, "--contiguous")) a.contiguous = 1;
        else if (!strcmp(s, "--backward")) a.backward = 1;
        else if (!strcmp(s, "--json")) a.json = 1;
        else if (!strcmp(s, "--baseline")) a.baseline = 1;
        else if (!v) return usage(s);
        else if (!strcmp(s, "--world")) a.world = atoi(argv[++i]);
        else if (!strcmp(s, "--iters")) a.iters = atoi(argv[++i]);
        else if (!strcmp(s, "--seq-per-gpu")) a.seq_per_gpu = atoll(argv[++i]);
        else if (!strcmp(s, "--heads")) a.heads = atoll(argv[++i]);
        else if (!strcmp(s, "--heads-kv")) a.heads_kv = atoll(argv[++i]);
        else if (!strcmp(s, "--head-dim")) a.head_dim = atoll(argv[++i]);
        else if (!strcmp(s, "--dtype")) {
            i++;
            a.dtype = !strcmp(v, "f32")    ? POLYATTN_DTYPE_F32
                      : !strcmp(v, "f16")  ? POLYATTN_DTYPE_F16
                      : !strcmp(v, "bf16") ? POLYATTN_DTYPE_BF16
                                           : (polyattn_dtype)-1;
            if ((int)a.dtype < 0) return usage(s);
        } else if (!strcmp(s, "--algo")) {
            i++;
            a.algo = !strcmp(v, "unfused") ? POLYATTN_ALGO_UNFUSED
                     : !strcmp(v, "fused") ? POLYATTN_ALGO_FUSED
                     : !strcmp(v, "flash") ? POLYATTN_ALGO_FLASH
                                           : POLYATTN_ALGO_AUTO;
        } else return usage(s);
    }
    int gpus = pa_cp_gpu_count();
    if (a.world == 0) a.world = gpus < 8 ? gpus : 8;
    if (gpus < 1 || a.world < 1 || a.world > gpus || a.world > 8 || a.iters < 1 ||
        a.heads % (a.heads_kv ? a.heads_kv : 1)) {
        fprintf(stderr, "cp_bench: needs 1 <= --world <= min(8, GPUs = %d)\n", gpus);
        return gpus < 1 ? 77 : 2;
    }
    if (pa_cp_launch(a.world, bench_rank, &a)) {
        fprintf(stderr, "cp_bench: a rank failed\n");
        return 1;
    }
    if (a.baseline) a.baseline_tflops = baseline_tflops(&a);
    for (int r = 0; r < a.world; r++) {
        double hide = fmin(a.compute_ms[r], a.comm_ms[r]);
        double overlap = hide > 0 ? (a.compute_ms[r] + a.comm_ms[r] - a.ring_ms[r]) / hide : 1.0;
        overlap = fmax(0.0, fmin(1.0, overlap));
        if (a.json)
            printf(
                "{\"rank\": %d, \"world\": %d, \"seq\": %lld, \"dtype\": \"%s\", \"causal\": %d, "
                "\"pass\": \"%s\", \"ring_ms\": %.4f, \"compute_ms\": %.4f, \"comm_ms\": %.4f, "
                "\"overlap\": %.3f, \"tflops\": %.2f, \"baseline_tflops\": %.2f}\n",
                r, a.world, (long long)(a.seq_per_gpu * a.world), polyattn_dtype_name(a.dtype),
                a.causal, a.backward ? "fwd+bwd" : "fwd", a.ring_ms[r], a.compute_ms[r],
                a.comm_ms[r], overlap, a.tflops[r], a.baseline ? a.baseline_tflops : NAN);
        else
            printf("rank %d/%d: ring %.3f ms, compute alone %.3f ms, transfers alone %.3f ms, "
                   "overlap %.0f%%, %.1f TFLOP/s%s\n",
                   r, a.world, a.ring_ms[r], a.compute_ms[r], a.comm_ms[r], 100 * overlap,
                   a.tflops[r], "");
    }
    if (a.baseline && !a.json)
        printf("single GPU, %lld rows: %.1f TFLOP/s (forward)\n", (long long)a.seq_per_gpu,
               a.baseline_tflops);
    return 0;
}
