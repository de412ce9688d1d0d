/*
 * Host reference backward: gradients of O = softmax(scale Q K^T + mask) V in double.
 *
 * With S = scale Q K^T (masked), P = softmax(S) row-wise and dO = dL/dO:
 *   dV = P^T dO,  dP = dO V^T,  D_i = sum_j P_ij dP_ij (= rowsum(dO * O)),
 *   dS = P * (dP - D),  dQ = scale dS K,  dK = scale dS^T Q.
 * Two algorithms, different on purpose so that comparing them checks both:
 *   unfused  the oracle: per query row, every score in double, its own max and log-sum
 *            (the caller's f32 LSE and stored O are not used, so the oracle carries no
 *            rounding of theirs), D from P and dP.
 *   flash    FlashAttention-2's recomputation: key blocks of 64 in the outer loop, P
 *            rebuilt from the caller's LSE, D = rowsum(dO * O) from the caller's O, dK and
 *            dV of the block accumulated while every query of the GQA group passes over it,
 *            dQ accumulated across key blocks.  Exactly what a GPU kernel does, minus the
 *            atomics: one worker owns a (batch, kv head) and all of its query heads, so the
 *            result is deterministic by construction.
 * Work is split over (batch, kv head) pairs: dK and dV of a kv head sum over the query heads
 * of its group in one worker, in a fixed order.  Fully masked rows get dQ = 0 and add
 * nothing; keys no query sees get dK = dV = 0.
 */
#include "pa_host.h"
#include "pa_host_elem.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { BWD_KEY_BLOCK = 64 };
#define BWD_PARALLEL_MIN_WORK 2.0e6
#define BWD_MAX_THREADS 64

static double bwd_dot(const double *a, const double *b, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static unsigned char *bwd_ptr(const pa_tensor_ref *r)
{
    return r->mem ? (unsigned char *)r->mem + r->offset : NULL;
}

/* ---- shared state of one call ---- */

typedef struct bwd_ctx {
    const pa_problem *p;
    const unsigned char *q, *k, *v, *o, *d_o, *lse;
    unsigned char *dq, *dk, *dv;
    int flash;
} bwd_ctx;

/* Element offsets of row (b, head, i) of each tensor; dq/dk/dv share q/k/v's strides and
 * d_o shares o's. */
static int64_t q_row(const pa_problem *p, int64_t b, int64_t h, int64_t i)
{
    return b * p->q_stride[0] + h * p->q_stride[1] + i * p->q_stride[2];
}
static int64_t k_row(const pa_problem *p, int64_t b, int64_t h, int64_t j)
{
    return b * p->k_stride[0] + h * p->k_stride[1] + j * p->k_stride[2];
}
static int64_t v_row(const pa_problem *p, int64_t b, int64_t h, int64_t j)
{
    return b * p->v_stride[0] + h * p->v_stride[1] + j * p->v_stride[2];
}
static int64_t o_row(const pa_problem *p, int64_t b, int64_t h, int64_t i)
{
    return b * p->o_stride[0] + h * p->o_stride[1] + i * p->o_stride[2];
}

/* Scratch of one worker, sized for the problem once. */
typedef struct bwd_scratch {
    double *kbuf, *vbuf;   /* keys and values of the kv head (flash: one block) */
    double *dk_acc, *dv_acc; /* gradients of those keys and values */
    double *qrow, *dorow, *orow, *dqrow;
    double *prob, *dprob;  /* one row of P and dP (flash: over one block) */
    double *dq_acc;        /* flash: dQ of every query of the group, [group][seq_q][head_dim] */
    double *delta;         /* flash: D_i of every query of the group */
} bwd_scratch;

/* Bytes of a x b x c doubles (checked: PA_SIZE_OVERFLOW when not representable). */
static uint64_t doubles_bytes(int64_t a, int64_t b, int64_t c)
{
    return pa_size_mul(pa_size_mul4(a, b, c, 1), sizeof(double));
}

/* a x b x c doubles (at least one); NULL when the byte count overflows or malloc fails. */
static double *bwd_alloc3(int64_t a, int64_t b, int64_t c)
{
    uint64_t bytes = doubles_bytes(a, b, c);
    if (bytes > (uint64_t)PTRDIFF_MAX) return NULL; /* malloc's own limit */
    return (double *)malloc(bytes ? (size_t)bytes : sizeof(double));
}

static void bwd_scratch_free(bwd_scratch *s)
{
    free(s->kbuf), free(s->vbuf), free(s->dk_acc), free(s->dv_acc);
    free(s->qrow), free(s->dorow), free(s->orow), free(s->dqrow);
    free(s->prob), free(s->dprob), free(s->dq_acc), free(s->delta);
    memset(s, 0, sizeof *s);
}

static int bwd_scratch_alloc(bwd_scratch *s, const pa_problem *p, int flash)
{
    const int64_t keys = flash ? BWD_KEY_BLOCK : p->seq_kv;
    const int64_t group = p->heads_q / p->heads_kv;
    memset(s, 0, sizeof *s);
    s->kbuf = bwd_alloc3(keys, p->head_dim, 1);
    s->vbuf = bwd_alloc3(keys, p->head_dim_v, 1);
    s->dk_acc = bwd_alloc3(keys, p->head_dim, 1);
    s->dv_acc = bwd_alloc3(keys, p->head_dim_v, 1);
    s->qrow = bwd_alloc3(p->head_dim, 1, 1);
    s->dorow = bwd_alloc3(p->head_dim_v, 1, 1);
    s->orow = bwd_alloc3(p->head_dim_v, 1, 1);
    s->dqrow = bwd_alloc3(p->head_dim, 1, 1);
    s->prob = bwd_alloc3(keys, 1, 1);
    s->dprob = bwd_alloc3(keys, 1, 1);
    if (flash) {
        s->dq_acc = bwd_alloc3(group, p->seq_q, p->head_dim);
        s->delta = bwd_alloc3(group, p->seq_q, 1);
    }
    if (!s->kbuf || !s->vbuf || !s->dk_acc || !s->dv_acc || !s->qrow || !s->dorow || !s->orow ||
        !s->dqrow || !s->prob || !s->dprob || (flash && (!s->dq_acc || !s->delta))) {
        bwd_scratch_free(s);
        return 0;
    }
    return 1;
}

/* Loads keys and values [j0, j1) of kv head (b, hk), one row per key. */
static void bwd_load_kv(const bwd_ctx *t, bwd_scratch *s, int64_t b, int64_t hk, int64_t j0,
                        int64_t j1)
{
    const pa_problem *p = t->p;
    for (int64_t j = j0; j < j1; j++) {
        pa_host_load_row(s->kbuf + (j - j0) * p->head_dim, t->k, p->dtype, k_row(p, b, hk, j),
                     p->k_stride[3], p->head_dim);
        pa_host_load_row(s->vbuf + (j - j0) * p->head_dim_v, t->v, p->dtype, v_row(p, b, hk, j),
                     p->v_stride[3], p->head_dim_v);
    }
}

/* Stores dK and dV of keys [j0, j1) from the accumulators. */
static void bwd_store_dkdv(const bwd_ctx *t, const bwd_scratch *s, int64_t b, int64_t hk,
                           int64_t j0, int64_t j1)
{
    const pa_problem *p = t->p;
    for (int64_t j = j0; j < j1; j++) {
        pa_host_store_row(t->dk, p->dtype, k_row(p, b, hk, j), p->k_stride[3],
                      s->dk_acc + (j - j0) * p->head_dim, p->head_dim);
        pa_host_store_row(t->dv, p->dtype, v_row(p, b, hk, j), p->v_stride[3],
                      s->dv_acc + (j - j0) * p->head_dim_v, p->head_dim_v);
    }
}

/* ---- unfused: the exact oracle ---- */

static void unfused_kv_head(const bwd_ctx *t, bwd_scratch *s, int64_t b, int64_t hk)
{
    const pa_problem *p = t->p;
    const int64_t group = p->heads_q / p->heads_kv, dqk = p->head_dim, dv = p->head_dim_v;
    const double scale = (double)p->scale;
    bwd_load_kv(t, s, b, hk, 0, p->seq_kv);
    memset(s->dk_acc, 0, (size_t)doubles_bytes(p->seq_kv, dqk, 1));
    memset(s->dv_acc, 0, (size_t)doubles_bytes(p->seq_kv, dv, 1));
    for (int64_t h = hk * group; h < (hk + 1) * group; h++) {
        for (int64_t i = 0; i < p->seq_q; i++) {
            const int64_t n = pa_visible_keys(p, i);
            double mx = -INFINITY, sum = 0.0, delta = 0.0;
            for (int64_t d = 0; d < dqk; d++)
                s->dqrow[d] = 0.0;
            if (n > 0) {
                pa_host_load_row(s->qrow, t->q, p->dtype, q_row(p, b, h, i), p->q_stride[3], dqk);
                pa_host_load_row(s->dorow, t->d_o, p->dtype, o_row(p, b, h, i), p->o_stride[3], dv);
                for (int64_t j = 0; j < n; j++) {
                    s->prob[j] = scale * bwd_dot(s->qrow, s->kbuf + j * dqk, dqk);
                    if (s->prob[j] > mx)
                        mx = s->prob[j];
                }
                for (int64_t j = 0; j < n; j++)
                    sum += (s->prob[j] = exp(s->prob[j] - mx));
                for (int64_t j = 0; j < n; j++) {
                    s->prob[j] /= sum;
                    s->dprob[j] = bwd_dot(s->dorow, s->vbuf + j * dv, dv);
                    delta += s->prob[j] * s->dprob[j];
                }
                for (int64_t j = 0; j < n; j++) {
                    const double pj = s->prob[j], ds = pj * (s->dprob[j] - delta) * scale;
                    double *dkj = s->dk_acc + j * dqk, *dvj = s->dv_acc + j * dv;
                    const double *kj = s->kbuf + j * dqk;
                    for (int64_t d = 0; d < dv; d++)
                        dvj[d] += pj * s->dorow[d];
                    for (int64_t d = 0; d < dqk; d++) {
                        s->dqrow[d] += ds * kj[d];
                        dkj[d] += ds * s->qrow[d];
                    }
                }
            }
            pa_host_store_row(t->dq, p->dtype, q_row(p, b, h, i), p->q_stride[3], s->dqrow, dqk);
        }
    }
    bwd_store_dkdv(t, s, b, hk, 0, p->seq_kv);
}

/* ---- flash: FlashAttention-2 recomputation from the LSE ---- */

static void flash_kv_head(const bwd_ctx *t, bwd_scratch *s, int64_t b, int64_t hk)
{
    const pa_problem *p = t->p;
    const int64_t group = p->heads_q / p->heads_kv, dqk = p->head_dim, dv = p->head_dim_v;
    const double scale = (double)p->scale;
    /* D_i = rowsum(dO * O) once per query, as FA2's preprocessing kernel does. */
    for (int64_t g = 0; g < group; g++)
        for (int64_t i = 0; i < p->seq_q; i++) {
            const int64_t h = hk * group + g;
            pa_host_load_row(s->dorow, t->d_o, p->dtype, o_row(p, b, h, i), p->o_stride[3], dv);
            pa_host_load_row(s->orow, t->o, p->dtype, o_row(p, b, h, i), p->o_stride[3], dv);
            s->delta[g * p->seq_q + i] = bwd_dot(s->dorow, s->orow, dv);
        }
    memset(s->dq_acc, 0, (size_t)doubles_bytes(group, p->seq_q, dqk));
    for (int64_t j0 = 0; j0 < p->seq_kv; j0 += BWD_KEY_BLOCK) {
        const int64_t j1 = j0 + BWD_KEY_BLOCK < p->seq_kv ? j0 + BWD_KEY_BLOCK : p->seq_kv;
        bwd_load_kv(t, s, b, hk, j0, j1);
        memset(s->dk_acc, 0, (size_t)doubles_bytes(j1 - j0, dqk, 1));
        memset(s->dv_acc, 0, (size_t)doubles_bytes(j1 - j0, dv, 1));
        for (int64_t g = 0; g < group; g++) {
            const int64_t h = hk * group + g;
            for (int64_t i = 0; i < p->seq_q; i++) {
                const int64_t n = pa_visible_keys(p, i), jend = j1 < n ? j1 : n;
                const int64_t row = (b * p->heads_q + h) * p->seq_q + i;
                double *dqi = s->dq_acc + (g * p->seq_q + i) * dqk;
                float lse_f;
                double lse, delta = s->delta[g * p->seq_q + i];
                if (jend <= j0)
                    continue; /* sees none of this block (or nothing at all) */
                memcpy(&lse_f, t->lse + row * 4, 4);
                lse = lse_f;
                pa_host_load_row(s->qrow, t->q, p->dtype, q_row(p, b, h, i), p->q_stride[3], dqk);
                pa_host_load_row(s->dorow, t->d_o, p->dtype, o_row(p, b, h, i), p->o_stride[3], dv);
                for (int64_t j = j0; j < jend; j++) {
                    const double *kj = s->kbuf + (j - j0) * dqk;
                    const double pj = exp(scale * bwd_dot(s->qrow, kj, dqk) - lse);
                    const double dpj = bwd_dot(s->dorow, s->vbuf + (j - j0) * dv, dv);
                    const double ds = pj * (dpj - delta) * scale;
                    double *dkj = s->dk_acc + (j - j0) * dqk, *dvj = s->dv_acc + (j - j0) * dv;
                    for (int64_t d = 0; d < dv; d++)
                        dvj[d] += pj * s->dorow[d];
                    for (int64_t d = 0; d < dqk; d++) {
                        dqi[d] += ds * kj[d];
                        dkj[d] += ds * s->qrow[d];
                    }
                }
            }
        }
        bwd_store_dkdv(t, s, b, hk, j0, j1);
    }
    for (int64_t g = 0; g < group; g++)
        for (int64_t i = 0; i < p->seq_q; i++)
            pa_host_store_row(t->dq, p->dtype, q_row(p, b, hk * group + g, i), p->q_stride[3],
                          s->dq_acc + (g * p->seq_q + i) * dqk, dqk);
}

/* ---- workers ---- */

typedef struct bwd_worker {
    const bwd_ctx *t;
    int64_t first, step, count;
    int failed;
    pthread_t thread;
} bwd_worker;

static void *bwd_worker_main(void *arg)
{
    bwd_worker *w = (bwd_worker *)arg;
    const pa_problem *p = w->t->p;
    bwd_scratch s;
    if (!bwd_scratch_alloc(&s, p, w->t->flash)) {
        w->failed = 1;
        return NULL;
    }
    for (int64_t task = w->first; task < w->count; task += w->step) {
        const int64_t b = task / p->heads_kv, hk = task % p->heads_kv;
        if (w->t->flash)
            flash_kv_head(w->t, &s, b, hk);
        else
            unfused_kv_head(w->t, &s, b, hk);
    }
    bwd_scratch_free(&s);
    return NULL;
}

static polyattn_status bwd_run(pa_device *dev, const pa_problem *p, const pa_backward_io *io,
                               int flash)
{
    bwd_ctx t;
    bwd_worker workers[BWD_MAX_THREADS];
    const int64_t tasks = p->batch * p->heads_kv;
    const double work = (double)p->batch * (double)p->heads_q * (double)p->seq_q *
                        (double)p->seq_kv * (double)(p->head_dim + p->head_dim_v);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int64_t nthreads = work < BWD_PARALLEL_MIN_WORK || cpus < 1 ? 1 : (int64_t)cpus;
    int64_t started = 0;
    int failed = 0;
    if (nthreads > tasks)
        nthreads = tasks;
    if (nthreads > BWD_MAX_THREADS)
        nthreads = BWD_MAX_THREADS;
    if (nthreads < 1)
        nthreads = 1;
    t.p = p;
    t.q = bwd_ptr(&io->q), t.k = bwd_ptr(&io->k), t.v = bwd_ptr(&io->v);
    t.o = bwd_ptr(&io->o), t.d_o = bwd_ptr(&io->d_o), t.lse = bwd_ptr(&io->lse);
    t.dq = bwd_ptr(&io->dq), t.dk = bwd_ptr(&io->dk), t.dv = bwd_ptr(&io->dv);
    t.flash = flash;
    if (!t.q || !t.k || !t.v || !t.o || !t.d_o || !t.lse || !t.dq || !t.dk || !t.dv)
        return pa_fail(dev, POLYATTN_STATUS_INTERNAL_ERROR, "host: backward called without a tensor");
    for (int64_t i = 0; i < nthreads; i++) {
        workers[i].t = &t;
        workers[i].first = i;
        workers[i].step = nthreads;
        workers[i].count = tasks;
        workers[i].failed = 0;
    }
    /* Worker 0 runs on the calling thread; a worker that cannot start runs there too. */
    for (int64_t i = 1; i < nthreads; i++) {
        if (pthread_create(&workers[i].thread, NULL, bwd_worker_main, &workers[i]) != 0)
            break;
        started = i;
    }
    for (int64_t i = started + 1; i < nthreads; i++)
        bwd_worker_main(&workers[i]);
    bwd_worker_main(&workers[0]);
    for (int64_t i = 1; i <= started; i++)
        pthread_join(workers[i].thread, NULL);
    for (int64_t i = 0; i < nthreads; i++)
        failed |= workers[i].failed;
    if (failed)
        return pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY,
                       "host: cannot allocate the scratch of the %s backward",
                       flash ? "flash" : "unfused");
    return POLYATTN_STATUS_SUCCESS;
}

uint64_t pa_host_backward_workspace_size(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    (void)p;
    return 0; /* scratch is per worker, in host memory */
}

polyattn_status pa_host_backward_unfused(pa_device *dev, const pa_problem *p, void *state,
                                         const pa_backward_io *io)
{
    (void)state;
    return bwd_run(dev, p, io, 0);
}

polyattn_status pa_host_backward_flash(pa_device *dev, const pa_problem *p, void *state,
                                       const pa_backward_io *io)
{
    (void)state;
    return bwd_run(dev, p, io, 1);
}
