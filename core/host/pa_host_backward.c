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
 * Score variants (pa_host_score.h): dS is taken on the final score (after softcap, ALiBi
 * and bias), multiplied by 1 - tanh^2 through softcap; d_bias = dS summed over the
 * dimensions the bias broadcasts; d_sinks[h] = -sum over (b, i) of P_sink D_i.  Both are
 * summed per task first and reduced once at the end in a fixed order.
 */
#include "pa_host.h"
#include "pa_host_score.h"

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
    pa_host_variants var;
    /* Per-task partial sums, reduced in a fixed order once every worker is done (the
     * bias and the sinks broadcast over batch and heads, which different workers own):
     * sink_part [batch, heads_q] of d_sinks; bias_part [batch, bias_heads, seq_q, seq_kv]
     * of d_bias, where bias_heads is heads_q, or heads_kv when the bias broadcasts over
     * heads (then each worker sums its query heads into its kv head's slice). */
    double *sink_part, *bias_part;
    int64_t bias_heads;
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

/* Row i of the d_bias partial sums of query head h of batch entry b (NULL: not wanted). */
static double *bias_part_row(const bwd_ctx *t, int64_t b, int64_t h, int64_t i)
{
    const pa_problem *p = t->p;
    if (!t->bias_part) return NULL;
    const int64_t slice = t->bias_heads == p->heads_q ? h : h / (p->heads_q / p->heads_kv);
    return t->bias_part + ((b * t->bias_heads + slice) * p->seq_q + i) * p->seq_kv;
}

/* Scratch of one worker, sized for the problem once. */
typedef struct bwd_scratch {
    double *kbuf, *vbuf;     /* keys and values of the kv head (flash: one block) */
    double *dk_acc, *dv_acc; /* gradients of those keys and values */
    double *qrow, *dorow, *orow, *dqrow;
    double *prob, *dprob; /* one row of P and dP (flash: over one block) */
    double *dcap;         /* d score / d (scale q.k) of each pair of the row (softcap) */
    unsigned char *vis;   /* pairs of the row past attn_mask and bias */
    double *dq_acc;       /* flash: dQ of every query of the group, [group][seq_q][head_dim] */
    double *delta;        /* flash: D_i of every query of the group */
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

/* The same, zeroed. */
static double *bwd_calloc3(int64_t a, int64_t b, int64_t c)
{
    uint64_t bytes = doubles_bytes(a, b, c);
    if (bytes > (uint64_t)PTRDIFF_MAX) return NULL;
    return (double *)calloc(bytes ? (size_t)bytes : sizeof(double), 1);
}

static void bwd_scratch_free(bwd_scratch *s)
{
    free(s->kbuf), free(s->vbuf), free(s->dk_acc), free(s->dv_acc);
    free(s->qrow), free(s->dorow), free(s->orow), free(s->dqrow);
    free(s->prob), free(s->dprob), free(s->dcap), free(s->vis), free(s->dq_acc), free(s->delta);
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
    s->dcap = bwd_alloc3(keys, 1, 1);
    s->vis = (unsigned char *)bwd_alloc3(keys, 1, 1); /* a double per key: ample */
    if (flash) {
        s->dq_acc = bwd_alloc3(group, p->seq_q, p->head_dim);
        s->delta = bwd_alloc3(group, p->seq_q, 1);
    }
    if (!s->kbuf || !s->vbuf || !s->dk_acc || !s->dv_acc || !s->qrow || !s->dorow || !s->orow ||
        !s->dqrow || !s->prob || !s->dprob || !s->dcap || !s->vis ||
        (flash && (!s->dq_acc || !s->delta))) {
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

/* Adds the gradients of visible pair (i, j) with probability pj, dP pj_dp and row term
 * delta: dV_j += P dO, dS = P (dP - D) to d_bias, and through softcap and the scale to dQ
 * and dK.  kj, dkj, dvj: key j's rows in the caller's buffers. */
static void add_pair(const bwd_scratch *s, int64_t dqk, int64_t dv, double scale, double pj,
                     double dpj, double delta, double dcap, const double *kj, double *dkj,
                     double *dvj, double *dqi, double *bias_grad)
{
    const double ds = pj * (dpj - delta), draw = ds * dcap * scale;
    if (bias_grad) *bias_grad += ds;
    for (int64_t d = 0; d < dv; d++)
        dvj[d] += pj * s->dorow[d];
    for (int64_t d = 0; d < dqk; d++) {
        dqi[d] += draw * kj[d];
        dkj[d] += draw * s->qrow[d];
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
            pa_host_row r;
            int64_t seen = 0;
            double mx, sum = 0.0, delta = 0.0;
            double *bias_row = bias_part_row(t, b, h, i);
            pa_host_row_init(&t->var, b, h, i, &r);
            mx = r.sink;
            for (int64_t d = 0; d < dqk; d++)
                s->dqrow[d] = 0.0;
            pa_host_load_row(s->qrow, t->q, p->dtype, q_row(p, b, h, i), p->q_stride[3], dqk);
            for (int64_t j = r.lo; j < r.hi; j++) {
                double bias;
                s->vis[j] = (unsigned char)pa_host_pair_visible(&t->var, &r, j, &bias);
                if (!s->vis[j]) continue;
                seen++;
                s->prob[j] = pa_host_pair_score(
                    &t->var, &r, j, bwd_dot(s->qrow, s->kbuf + j * dqk, dqk), bias, &s->dcap[j]);
                if (s->prob[j] > mx) mx = s->prob[j];
            }
            if (seen > 0) {
                pa_host_load_row(s->dorow, t->d_o, p->dtype, o_row(p, b, h, i), p->o_stride[3], dv);
                for (int64_t j = r.lo; j < r.hi; j++)
                    if (s->vis[j]) sum += (s->prob[j] = exp(s->prob[j] - mx));
                if (r.has_sink) sum += exp(r.sink - mx);
                for (int64_t j = r.lo; j < r.hi; j++) {
                    if (!s->vis[j]) continue;
                    s->prob[j] /= sum;
                    s->dprob[j] = bwd_dot(s->dorow, s->vbuf + j * dv, dv);
                    delta += s->prob[j] * s->dprob[j];
                }
                /* d_sinks: d LSE-free loss / d sink = -P_sink D (the sink adds nothing to O). */
                if (r.has_sink) t->sink_part[b * p->heads_q + h] -= exp(r.sink - mx) / sum * delta;
                for (int64_t j = r.lo; j < r.hi; j++)
                    if (s->vis[j])
                        add_pair(s, dqk, dv, scale, s->prob[j], s->dprob[j], delta, s->dcap[j],
                                 s->kbuf + j * dqk, s->dk_acc + j * dqk, s->dv_acc + j * dv,
                                 s->dqrow, bias_row ? bias_row + j : NULL);
            }
            pa_host_store_row(t->dq, p->dtype, q_row(p, b, h, i), p->q_stride[3], s->dqrow, dqk);
        }
    }
    bwd_store_dkdv(t, s, b, hk, 0, p->seq_kv);
}

/* ---- flash: FlashAttention-2 recomputation from the LSE ---- */

static double load_lse(const bwd_ctx *t, int64_t row)
{
    float lse_f;
    memcpy(&lse_f, t->lse + row * 4, 4);
    return lse_f;
}

static void flash_kv_head(const bwd_ctx *t, bwd_scratch *s, int64_t b, int64_t hk)
{
    const pa_problem *p = t->p;
    const int64_t group = p->heads_q / p->heads_kv, dqk = p->head_dim, dv = p->head_dim_v;
    const double scale = (double)p->scale;
    /* D_i = rowsum(dO * O) once per query, as FA2's preprocessing kernel does; the sinks'
     * gradient -P_sink D_i with P_sink = exp(sink - LSE_i) comes from it too. */
    for (int64_t g = 0; g < group; g++)
        for (int64_t i = 0; i < p->seq_q; i++) {
            const int64_t h = hk * group + g, row = (b * p->heads_q + h) * p->seq_q + i;
            pa_host_load_row(s->dorow, t->d_o, p->dtype, o_row(p, b, h, i), p->o_stride[3], dv);
            pa_host_load_row(s->orow, t->o, p->dtype, o_row(p, b, h, i), p->o_stride[3], dv);
            const double delta = bwd_dot(s->dorow, s->orow, dv);
            s->delta[g * p->seq_q + i] = delta;
            if (t->sink_part && delta != 0.0) /* rows with O = 0 add nothing */
                t->sink_part[b * p->heads_q + h] -=
                    exp(pa_host_sink(&t->var, h) - load_lse(t, row)) * delta;
        }
    memset(s->dq_acc, 0, (size_t)doubles_bytes(group, p->seq_q, dqk));
    for (int64_t j0 = 0; j0 < p->seq_kv; j0 += BWD_KEY_BLOCK) {
        const int64_t j1 = j0 + BWD_KEY_BLOCK < p->seq_kv ? j0 + BWD_KEY_BLOCK : p->seq_kv;
        int loaded = 0;
        memset(s->dk_acc, 0, (size_t)doubles_bytes(j1 - j0, dqk, 1));
        memset(s->dv_acc, 0, (size_t)doubles_bytes(j1 - j0, dv, 1));
        for (int64_t g = 0; g < group; g++) {
            const int64_t h = hk * group + g;
            for (int64_t i = 0; i < p->seq_q; i++) {
                const int64_t row = (b * p->heads_q + h) * p->seq_q + i;
                double *dqi = s->dq_acc + (g * p->seq_q + i) * dqk;
                double *bias_row = bias_part_row(t, b, h, i);
                pa_host_row r;
                pa_host_row_init(&t->var, b, h, i, &r);
                const int64_t jbeg = j0 > r.lo ? j0 : r.lo, jend = j1 < r.hi ? j1 : r.hi;
                const double delta = s->delta[g * p->seq_q + i];
                if (jend <= jbeg)
                    continue; /* sees none of this block: a window or causal band skips it */
                if (!loaded) bwd_load_kv(t, s, b, hk, j0, j1), loaded = 1;
                const double lse = load_lse(t, row);
                pa_host_load_row(s->qrow, t->q, p->dtype, q_row(p, b, h, i), p->q_stride[3], dqk);
                pa_host_load_row(s->dorow, t->d_o, p->dtype, o_row(p, b, h, i), p->o_stride[3], dv);
                for (int64_t j = jbeg; j < jend; j++) {
                    const double *kj = s->kbuf + (j - j0) * dqk;
                    double bias, dcap;
                    if (!pa_host_pair_visible(&t->var, &r, j, &bias)) continue;
                    const double pj = exp(
                        pa_host_pair_score(&t->var, &r, j, bwd_dot(s->qrow, kj, dqk), bias, &dcap) -
                        lse);
                    const double dpj = bwd_dot(s->dorow, s->vbuf + (j - j0) * dv, dv);
                    add_pair(s, dqk, dv, scale, pj, dpj, delta, dcap, kj,
                             s->dk_acc + (j - j0) * dqk, s->dv_acc + (j - j0) * dv, dqi,
                             bias_row ? bias_row + j : NULL);
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
        if (w->t->flash) flash_kv_head(w->t, &s, b, hk);
        else unfused_kv_head(w->t, &s, b, hk);
    }
    bwd_scratch_free(&s);
    return NULL;
}

/* d_sinks[h] = sum over b of the partial sums; d_bias over the dimensions the bias
 * broadcasts, in a fixed order (the result does not depend on the thread count). */
static void reduce_variant_grads(const bwd_ctx *t, unsigned char *d_sinks, unsigned char *d_bias)
{
    const pa_problem *p = t->p;
    if (d_sinks)
        for (int64_t h = 0; h < p->heads_q; h++) {
            double sum = 0.0;
            for (int64_t b = 0; b < p->batch; b++)
                sum += t->sink_part[b * p->heads_q + h];
            const float f = (float)sum;
            memcpy(d_sinks + h * 4, &f, 4);
        }
    if (!d_bias) return;
    const int64_t nb = p->bias_shape[0], nh = p->bias_shape[1], plane = p->seq_q * p->seq_kv;
    const int64_t b_count = nb == 1 ? p->batch : 1, h_count = nh == 1 ? t->bias_heads : 1;
    for (int64_t bb = 0; bb < nb; bb++)
        for (int64_t hh = 0; hh < nh; hh++) {
            const int64_t out = (bb * nh + hh) * plane;
            for (int64_t e = 0; e < plane; e++) {
                double sum = 0.0;
                for (int64_t b = 0; b < b_count; b++)
                    for (int64_t hs = 0; hs < h_count; hs++) {
                        const int64_t src_b = nb == 1 ? b : bb, src_h = nh == 1 ? hs : hh;
                        sum += t->bias_part[(src_b * t->bias_heads + src_h) * plane + e];
                    }
                const float f = (float)sum;
                memcpy(d_bias + (out + e) * 4, &f, 4);
            }
        }
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
    if (nthreads > tasks) nthreads = tasks;
    if (nthreads > BWD_MAX_THREADS) nthreads = BWD_MAX_THREADS;
    if (nthreads < 1) nthreads = 1;
    t.p = p;
    t.q = bwd_ptr(&io->q), t.k = bwd_ptr(&io->k), t.v = bwd_ptr(&io->v);
    t.o = bwd_ptr(&io->o), t.d_o = bwd_ptr(&io->d_o), t.lse = bwd_ptr(&io->lse);
    t.dq = bwd_ptr(&io->dq), t.dk = bwd_ptr(&io->dk), t.dv = bwd_ptr(&io->dv);
    t.flash = flash;
    pa_host_variants_init(&t.var, p, &io->var);
    unsigned char *d_sinks = p->has_sinks ? bwd_ptr(&io->var.d_sinks) : NULL;
    unsigned char *d_bias = p->want_bias_grad ? bwd_ptr(&io->var.d_bias) : NULL;
    if (!t.q || !t.k || !t.v || !t.o || !t.d_o || !t.lse || !t.dq || !t.dk || !t.dv ||
        !pa_host_variants_complete(&t.var) || (p->has_sinks && !d_sinks) ||
        (p->want_bias_grad && !d_bias))
        return pa_fail(dev, POLYATTN_STATUS_INTERNAL_ERROR,
                       "host: backward called without a tensor");
    t.sink_part = t.bias_part = NULL;
    t.bias_heads = p->want_bias_grad && p->bias_shape[1] == 1 ? p->heads_kv : p->heads_q;
    if ((p->has_sinks && !(t.sink_part = bwd_calloc3(p->batch, p->heads_q, 1))) ||
        (p->want_bias_grad &&
         !(t.bias_part = bwd_calloc3(p->batch * t.bias_heads, p->seq_q, p->seq_kv)))) {
        free(t.sink_part), free(t.bias_part);
        return pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY,
                       "host: cannot allocate the partial sums of d_sinks / d_bias");
    }
    for (int64_t i = 0; i < nthreads; i++) {
        workers[i].t = &t;
        workers[i].first = i;
        workers[i].step = nthreads;
        workers[i].count = tasks;
        workers[i].failed = 0;
    }
    /* Worker 0 runs on the calling thread; a worker that cannot start runs there too. */
    for (int64_t i = 1; i < nthreads; i++) {
        if (pthread_create(&workers[i].thread, NULL, bwd_worker_main, &workers[i]) != 0) break;
        started = i;
    }
    for (int64_t i = started + 1; i < nthreads; i++)
        bwd_worker_main(&workers[i]);
    bwd_worker_main(&workers[0]);
    for (int64_t i = 1; i <= started; i++)
        pthread_join(workers[i].thread, NULL);
    for (int64_t i = 0; i < nthreads; i++)
        failed |= workers[i].failed;
    if (!failed) reduce_variant_grads(&t, d_sinks, d_bias);
    free(t.sink_part), free(t.bias_part);
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
    if (pa_problem_serving(p))
        return pa_host_serving_backward(dev, p, state, io, pa_host_backward_unfused);
    (void)state;
    return bwd_run(dev, p, io, 0);
}

polyattn_status pa_host_backward_flash(pa_device *dev, const pa_problem *p, void *state,
                                       const pa_backward_io *io)
{
    if (pa_problem_serving(p))
        return pa_host_serving_backward(dev, p, state, io, pa_host_backward_flash);
    (void)state;
    return bwd_run(dev, p, io, 1);
}
