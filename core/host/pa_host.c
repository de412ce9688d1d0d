/*
 * Host reference backend: one device ("host"), malloc'd memory, CLOCK_MONOTONIC events.
 *
 * Algorithms:
 *   unfused  the exact reference: per query row, every score in double, max, exp, sum,
 *            then P V; the oracle of every test.
 *   flash    a different algorithm on purpose: online softmax over key blocks of 64 with
 *            double accumulators and O(head_dim) scratch per query, so that comparing it
 *            with unfused checks the online-softmax rescaling logic the GPU kernels use;
 *            key blocks outside every row's causal/window range are skipped.
 * Both implement every score variant (pa_host_score.h), forward and backward, and the
 * serving layouts (pa_host_serving.c: varlen, KV caches, append; backward: varlen).
 *   fused    not offered: the unfused path already is the reference.
 * Both offered algorithms have a backward (pa_host_backward.c).
 * Inputs are read at arbitrary strides in f32/f16/bf16, or e4m3 decoded exactly and times
 * its descale (exact in double); O is written in o's dtype (double -> f32 -> f16/bf16, each
 * step round-to-nearest-even).  Work is split over
 * (batch, heads_q) pairs across the online CPUs.
 */
#include "pa_host.h"
#include "pa_host_score.h"

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

/* Key block of the flash path and the number of queries sharing one loaded block. */
enum { HOST_FLASH_KEY_BLOCK = 64, HOST_FLASH_QUERY_BLOCK = 16 };
/* Below this many multiply-adds a single thread is faster than starting workers. */
#define HOST_PARALLEL_MIN_WORK 2.0e6
#define HOST_MAX_THREADS 64

typedef struct host_device {
    pa_device base; /* first member: the core reaches last_error through it */
} host_device;

/* ---- device ---------------------------------------------------------------- */

static polyattn_status host_probe(int *count, const char **reason)
{
    *count = 1;
    if (reason) *reason = NULL;
    return POLYATTN_STATUS_SUCCESS;
}

/* Copies the value of the first "key : value" line of /proc/cpuinfo; 0 if absent. */
static int cpuinfo_field(const char *key, char *dst, size_t n)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    size_t klen = strlen(key);
    int found = 0;
    if (!f) return 0;
    while (!found && fgets(line, sizeof line, f)) {
        char *colon;
        if (strncmp(line, key, klen) != 0 || !(colon = strchr(line, ':'))) continue;
        colon++;
        while (*colon == ' ' || *colon == '\t')
            colon++;
        colon[strcspn(colon, "\n")] = '\0';
        if (*colon) {
            snprintf(dst, n, "%s", colon);
            found = 1;
        }
    }
    fclose(f);
    return found;
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > 4096 ? 4096 : (int)n);
}

static polyattn_status host_device_info(int index, polyattn_device_info *info)
{
    struct utsname un;
    long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGE_SIZE);
    if (index != 0) return POLYATTN_STATUS_NOT_FOUND;
    info->backend = POLYATTN_BACKEND_HOST;
    info->index = 0;
    if (!cpuinfo_field("model name", info->name, sizeof info->name))
        snprintf(info->name, sizeof info->name, "host");
    if (!cpuinfo_field("vendor_id", info->vendor, sizeof info->vendor))
        snprintf(info->vendor, sizeof info->vendor, "unknown");
    snprintf(info->driver_version, sizeof info->driver_version, "polyattn host reference");
    if (uname(&un) == 0) snprintf(info->arch, sizeof info->arch, "%.63s", un.machine);
    else snprintf(info->arch, sizeof info->arch, "unknown");
    info->global_mem_bytes =
        (pages > 0 && page_size > 0) ? (uint64_t)pages * (uint64_t)page_size : 0;
    info->local_mem_bytes = 0;
    info->compute_units = online_cpus();
    info->max_work_group_size = 1;
    info->subgroup_size = 0;
    info->f16_storage = 1;
    info->bf16_storage = 1;
    info->f16_arithmetic = 0;
    info->bf16_arithmetic = 0;
    return POLYATTN_STATUS_SUCCESS;
}

static const pa_backend_ops host_ops;

static polyattn_status host_device_open(int index, pa_device **out)
{
    host_device *dev;
    if (index != 0) return POLYATTN_STATUS_NOT_FOUND;
    dev = (host_device *)calloc(1, sizeof *dev);
    if (!dev) return POLYATTN_STATUS_OUT_OF_MEMORY;
    dev->base.ops = &host_ops;
    dev->base.index = index;
    *out = &dev->base;
    return POLYATTN_STATUS_SUCCESS;
}

static void host_device_close(pa_device *dev) { free(dev); }

/* ---- memory, synchronization, events ------------------------------------------ */

static polyattn_status host_mem_alloc(pa_device *dev, uint64_t bytes, void **mem)
{
    void *p;
    if (bytes > (uint64_t)SIZE_MAX)
        return pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY,
                       "host: %llu bytes exceed the address space", (unsigned long long)bytes);
    p = malloc(bytes ? (size_t)bytes : 1);
    if (!p)
        return pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY, "host: malloc of %llu bytes failed",
                       (unsigned long long)bytes);
    *mem = p;
    return POLYATTN_STATUS_SUCCESS;
}

static void host_mem_free(pa_device *dev, void *mem)
{
    (void)dev;
    free(mem);
}

static polyattn_status host_mem_write(pa_device *dev, void *mem, uint64_t offset, const void *src,
                                      uint64_t bytes)
{
    (void)dev;
    if (bytes) memcpy((char *)mem + offset, src, (size_t)bytes);
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status host_mem_read(pa_device *dev, void *mem, uint64_t offset, void *dst,
                                     uint64_t bytes)
{
    (void)dev;
    if (bytes) memcpy(dst, (const char *)mem + offset, (size_t)bytes);
    return POLYATTN_STATUS_SUCCESS;
}

/* Forward runs to completion before returning: nothing is ever pending. */
static polyattn_status host_synchronize(pa_device *dev)
{
    (void)dev;
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status host_event_create(pa_device *dev, void **event)
{
    struct timespec *ts = (struct timespec *)calloc(1, sizeof *ts);
    if (!ts) return pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY, "host: cannot allocate an event");
    *event = ts;
    return POLYATTN_STATUS_SUCCESS;
}

static void host_event_destroy(pa_device *dev, void *event)
{
    (void)dev;
    free(event);
}

static polyattn_status host_event_record(pa_device *dev, void *event)
{
    if (clock_gettime(CLOCK_MONOTONIC, (struct timespec *)event) != 0)
        return pa_fail(dev, POLYATTN_STATUS_DEVICE_ERROR, "host: clock_gettime failed");
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status host_event_elapsed_ms(pa_device *dev, void *start, void *end, double *ms)
{
    const struct timespec *a = (const struct timespec *)start, *b = (const struct timespec *)end;
    (void)dev;
    *ms = (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) * 1e-6;
    return POLYATTN_STATUS_SUCCESS;
}

/* ---- element access -------------------------------------------------------------- */

static void store_f32(unsigned char *base, int64_t index, double value)
{
    float f = (float)value;
    memcpy(base + index * 4, &f, 4);
}

/* ---- the per-(batch, head) work ---------------------------------------------------- */

typedef struct host_task_ctx {
    const pa_problem *p;
    const unsigned char *q, *k, *v;
    unsigned char *o, *lse, *probs; /* lse / probs NULL when not wanted */
    pa_host_variants var;
    int flash;
} host_task_ctx;

static int64_t q_index(const pa_problem *p, int64_t b, int64_t h, int64_t i)
{
    return b * p->q_stride[0] + h * p->q_stride[1] + i * p->q_stride[2];
}
static int64_t o_index(const pa_problem *p, int64_t b, int64_t h, int64_t i)
{
    return b * p->o_stride[0] + h * p->o_stride[1] + i * p->o_stride[2];
}

/* Writes O, LSE and probabilities of a query row that sees no key: O = 0, probabilities 0,
 * LSE -inf, or the sink (its only term) with sinks. */
static void write_masked_row(const host_task_ctx *t, const pa_host_row *r, int64_t b, int64_t h,
                             int64_t i)
{
    const pa_problem *p = t->p;
    int64_t d, row = (b * p->heads_q + h) * p->seq_q + i;
    for (d = 0; d < p->head_dim_v; d++)
        pa_host_store(t->o, p->o_dtype, o_index(p, b, h, i) + d * p->o_stride[3], 0.0);
    if (t->lse) store_f32(t->lse, row, r->sink);
    if (t->probs) {
        int64_t j;
        for (j = 0; j < p->seq_kv; j++)
            store_f32(t->probs, row * p->seq_kv + j, 0.0);
    }
}

/* Writes NaN to O and LSE of a row that sees keys but whose scores were not usable;
 * probabilities are NaN on the visible pairs (vis, or every pair in [lo, hi) when NULL). */
static void write_nan_row(const host_task_ctx *t, const pa_host_row *r, const unsigned char *vis,
                          int64_t b, int64_t h, int64_t i)
{
    const pa_problem *p = t->p;
    int64_t d, row = (b * p->heads_q + h) * p->seq_q + i;
    for (d = 0; d < p->head_dim_v; d++)
        pa_host_store(t->o, p->o_dtype, o_index(p, b, h, i) + d * p->o_stride[3], NAN);
    if (t->lse) store_f32(t->lse, row, NAN);
    if (t->probs) {
        int64_t j;
        for (j = 0; j < p->seq_kv; j++) {
            const int seen = j >= r->lo && j < r->hi && (!vis || vis[j]);
            store_f32(t->probs, row * p->seq_kv + j, seen ? NAN : 0.0);
        }
    }
}

static double dot(const double *a, const double *b, int64_t n)
{
    double s = 0.0;
    int64_t i;
    for (i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Scratch of one worker, sized for the problem once. */
typedef struct host_scratch {
    double *kbuf, *vbuf; /* unfused: whole kv head; flash: one key block */
    double *qbuf;        /* unfused: one row; flash: one query block */
    double *acc;         /* unfused: one row; flash: one query block */
    double *scores;      /* unfused: seq_kv; flash: one key block */
    double *m, *l;       /* flash: running max and sum per query of the block */
    unsigned char *vis;  /* pairs of the row (flash: of the block) past attn_mask and bias */
    int64_t *seen;       /* flash: visible pairs so far per query of the block */
    pa_host_row *rows;   /* flash: the rows of the query block */
} host_scratch;

static void scratch_free(host_scratch *s)
{
    free(s->kbuf);
    free(s->vbuf);
    free(s->qbuf);
    free(s->acc);
    free(s->scores);
    free(s->m);
    free(s->l);
    free(s->vis);
    free(s->seen);
    free(s->rows);
    memset(s, 0, sizeof *s);
}

/* n x m doubles (at least one); NULL when the byte count overflows or malloc fails. */
static double *alloc_doubles(int64_t n, int64_t m)
{
    uint64_t bytes = pa_size_mul(pa_size_mul4(n, m, 1, 1), sizeof(double));
    if (bytes > (uint64_t)PTRDIFF_MAX) return NULL; /* malloc's own limit */
    return (double *)malloc(bytes ? (size_t)bytes : sizeof(double));
}

static int scratch_alloc(host_scratch *s, const pa_problem *p, int flash)
{
    int64_t keys = flash ? HOST_FLASH_KEY_BLOCK : p->seq_kv;
    int64_t rows = flash ? HOST_FLASH_QUERY_BLOCK : 1;
    memset(s, 0, sizeof *s);
    s->kbuf = alloc_doubles(keys, p->head_dim);
    s->vbuf = alloc_doubles(keys, p->head_dim_v);
    s->qbuf = alloc_doubles(rows, p->head_dim);
    s->acc = alloc_doubles(rows, p->head_dim_v);
    s->scores = alloc_doubles(keys, 1);
    s->m = alloc_doubles(rows, 1);
    s->l = alloc_doubles(rows, 1);
    s->vis = (unsigned char *)alloc_doubles(keys, 1); /* a double per key: ample */
    s->seen = (int64_t *)alloc_doubles(rows, 1);
    s->rows = (pa_host_row *)malloc(sizeof(pa_host_row) * HOST_FLASH_QUERY_BLOCK);
    if (!s->kbuf || !s->vbuf || !s->qbuf || !s->acc || !s->scores || !s->m || !s->l || !s->vis ||
        !s->seen || !s->rows) {
        scratch_free(s);
        return 0;
    }
    return 1;
}

/* Loads keys [j0, j1) of kv head (b, hk) into kbuf / vbuf, one row per key. */
static void load_kv(const host_task_ctx *t, host_scratch *s, int64_t b, int64_t hk, int64_t j0,
                    int64_t j1)
{
    const pa_problem *p = t->p;
    int64_t j;
    for (j = j0; j < j1; j++) {
        int64_t kb = b * p->k_stride[0] + hk * p->k_stride[1] + j * p->k_stride[2];
        int64_t vb = b * p->v_stride[0] + hk * p->v_stride[1] + j * p->v_stride[2];
        pa_host_load_row_scaled(s->kbuf + (j - j0) * p->head_dim, t->k, p->dtype, kb,
                                p->k_stride[3], p->head_dim, p->k_descale);
        pa_host_load_row_scaled(s->vbuf + (j - j0) * p->head_dim_v, t->v, p->dtype, vb,
                                p->v_stride[3], p->head_dim_v, p->v_descale);
    }
}

/* The reference: every score of a row, then max (the sink included), exp, sum and P V,
 * all in double. */
static void unfused_head(const host_task_ctx *t, host_scratch *s, int64_t b, int64_t h)
{
    const pa_problem *p = t->p;
    const int64_t hk = h / (p->heads_q / p->heads_kv);
    int64_t i, j, d;
    load_kv(t, s, b, hk, 0, p->seq_kv);
    for (i = 0; i < p->seq_q; i++) {
        const int64_t row = (b * p->heads_q + h) * p->seq_q + i;
        pa_host_row r;
        int64_t seen = 0;
        double mx, sum = 0.0;
        pa_host_row_init(&t->var, b, h, i, &r);
        pa_host_load_row_scaled(s->qbuf, t->q, p->dtype, q_index(p, b, h, i), p->q_stride[3],
                                p->head_dim, p->q_descale);
        mx = r.sink; /* -inf without sinks */
        for (j = r.lo; j < r.hi; j++) {
            double bias;
            s->vis[j] = (unsigned char)pa_host_pair_visible(&t->var, &r, j, &bias);
            if (!s->vis[j]) continue;
            seen++;
            s->scores[j] = pa_host_pair_score(
                &t->var, &r, j, dot(s->qbuf, s->kbuf + j * p->head_dim, p->head_dim), bias, NULL);
            if (s->scores[j] > mx) mx = s->scores[j];
        }
        if (seen == 0) {
            write_masked_row(t, &r, b, h, i);
            continue;
        }
        for (j = r.lo; j < r.hi; j++) {
            if (!s->vis[j]) continue;
            s->scores[j] = exp(s->scores[j] - mx); /* NaN, +inf or all -inf: sum is NaN */
            sum += s->scores[j];
        }
        if (r.has_sink) sum += exp(r.sink - mx);
        if (!(sum > 0.0) || isinf(sum)) {
            write_nan_row(t, &r, s->vis, b, h, i);
            continue;
        }
        for (d = 0; d < p->head_dim_v; d++)
            s->acc[d] = 0.0;
        for (j = r.lo; j < r.hi; j++) {
            const double w = s->scores[j];
            const double *vrow = s->vbuf + j * p->head_dim_v;
            if (!s->vis[j]) continue;
            for (d = 0; d < p->head_dim_v; d++)
                s->acc[d] += w * vrow[d];
        }
        for (d = 0; d < p->head_dim_v; d++)
            pa_host_store(t->o, p->o_dtype, o_index(p, b, h, i) + d * p->o_stride[3],
                          s->acc[d] / sum);
        if (t->lse) store_f32(t->lse, row, mx + log(sum));
        if (t->probs) {
            for (j = 0; j < p->seq_kv; j++) {
                const int vis = j >= r.lo && j < r.hi && s->vis[j];
                store_f32(t->probs, row * p->seq_kv + j, vis ? s->scores[j] / sum : 0.0);
            }
        }
    }
}

/* Online softmax: a block of queries walks the keys 64 at a time, rescaling its running
 * sum and accumulator whenever the running maximum grows.  Only the key blocks that meet
 * some row's visible range [lo, hi) are loaded (a window or causal band skips the rest). */
static void flash_head(const host_task_ctx *t, host_scratch *s, int64_t b, int64_t h)
{
    const pa_problem *p = t->p;
    const int64_t hk = h / (p->heads_q / p->heads_kv);
    const int64_t dq = p->head_dim, dv = p->head_dim_v;
    int64_t i0, j0, r, j, d;
    for (i0 = 0; i0 < p->seq_q; i0 += HOST_FLASH_QUERY_BLOCK) {
        const int64_t rows =
            p->seq_q - i0 < HOST_FLASH_QUERY_BLOCK ? p->seq_q - i0 : HOST_FLASH_QUERY_BLOCK;
        int64_t keys_lo = p->seq_kv, keys_hi = 0;
        for (r = 0; r < rows; r++) {
            pa_host_row *row = &s->rows[r];
            pa_host_row_init(&t->var, b, h, i0 + r, row);
            pa_host_load_row_scaled(s->qbuf + r * dq, t->q, p->dtype, q_index(p, b, h, i0 + r),
                                    p->q_stride[3], dq, p->q_descale);
            /* The sink starts the running max and sum: exp(sink - sink) = 1. */
            s->m[r] = row->sink;
            s->l[r] =
                row->has_sink && row->sink != -INFINITY ? (isnan(row->sink) ? NAN : 1.0) : 0.0;
            s->seen[r] = 0;
            for (d = 0; d < dv; d++)
                s->acc[r * dv + d] = 0.0;
            if (row->lo < row->hi) {
                if (row->lo < keys_lo) keys_lo = row->lo;
                if (row->hi > keys_hi) keys_hi = row->hi;
            }
        }
        for (j0 = keys_lo - keys_lo % HOST_FLASH_KEY_BLOCK; j0 < keys_hi;
             j0 += HOST_FLASH_KEY_BLOCK) {
            const int64_t j1 =
                j0 + HOST_FLASH_KEY_BLOCK < keys_hi ? j0 + HOST_FLASH_KEY_BLOCK : keys_hi;
            load_kv(t, s, b, hk, j0, j1);
            for (r = 0; r < rows; r++) {
                const pa_host_row *row = &s->rows[r];
                const int64_t jbeg = j0 > row->lo ? j0 : row->lo;
                const int64_t jend = j1 < row->hi ? j1 : row->hi;
                double block_max = -INFINITY, m_new, alpha;
                double *acc = s->acc + r * dv;
                int64_t block_seen = 0;
                if (jend <= jbeg) continue; /* this query sees none of the block */
                for (j = jbeg; j < jend; j++) {
                    double bias, sc;
                    s->vis[j - j0] = (unsigned char)pa_host_pair_visible(&t->var, row, j, &bias);
                    if (!s->vis[j - j0]) continue;
                    block_seen++;
                    sc = pa_host_pair_score(&t->var, row, j,
                                            dot(s->qbuf + r * dq, s->kbuf + (j - j0) * dq, dq),
                                            bias, NULL);
                    s->scores[j - j0] = sc;
                    if (sc > block_max) block_max = sc;
                    if (isnan(sc) || sc == INFINITY) s->l[r] = NAN; /* sticky: the row is NaN */
                }
                s->seen[r] += block_seen;
                if (block_max == -INFINITY && s->m[r] == -INFINITY)
                    continue; /* every score so far is -inf: nothing to add yet */
                m_new = s->m[r] > block_max ? s->m[r] : block_max;
                alpha = exp(s->m[r] - m_new); /* exp(-inf) = 0 on the first block */
                s->l[r] *= alpha;
                for (d = 0; d < dv; d++)
                    acc[d] *= alpha;
                for (j = jbeg; j < jend; j++) {
                    const double *vrow = s->vbuf + (j - j0) * dv;
                    double w;
                    if (!s->vis[j - j0])
                        continue; /* masked pairs add nothing (not even NaN from V) */
                    w = exp(s->scores[j - j0] - m_new);
                    s->l[r] += w;
                    for (d = 0; d < dv; d++)
                        acc[d] += w * vrow[d];
                }
                s->m[r] = m_new;
            }
        }
        for (r = 0; r < rows; r++) {
            const int64_t i = i0 + r, row = (b * p->heads_q + h) * p->seq_q + i;
            if (s->seen[r] == 0) {
                write_masked_row(t, &s->rows[r], b, h, i);
                continue;
            }
            if (!(s->l[r] > 0.0) || isinf(s->l[r])) {
                write_nan_row(t, &s->rows[r], NULL, b, h, i);
                continue;
            }
            for (d = 0; d < dv; d++)
                pa_host_store(t->o, p->o_dtype, o_index(p, b, h, i) + d * p->o_stride[3],
                              s->acc[r * dv + d] / s->l[r]);
            if (t->lse) store_f32(t->lse, row, s->m[r] + log(s->l[r]));
        }
    }
}

typedef struct host_worker {
    const host_task_ctx *t;
    int64_t first, step, count; /* tasks first, first + step, ... below count */
    int failed;
    pthread_t thread;
} host_worker;

static void *host_worker_main(void *arg)
{
    host_worker *w = (host_worker *)arg;
    const pa_problem *p = w->t->p;
    host_scratch s;
    int64_t task;
    if (!scratch_alloc(&s, p, w->t->flash)) {
        w->failed = 1;
        return NULL;
    }
    for (task = w->first; task < w->count; task += w->step) {
        const int64_t b = task / p->heads_q, h = task % p->heads_q;
        if (w->t->flash) flash_head(w->t, &s, b, h);
        else unfused_head(w->t, &s, b, h);
    }
    scratch_free(&s);
    return NULL;
}

static unsigned char *ref_ptr(const pa_tensor_ref *r)
{
    return r->mem ? (unsigned char *)r->mem + r->offset : NULL;
}

polyattn_status pa_host_run(pa_device *dev, const pa_problem *p, const pa_io *io, int flash)
{
    host_task_ctx t;
    host_worker workers[HOST_MAX_THREADS];
    const int64_t tasks = p->batch * p->heads_q;
    const double work = (double)tasks * (double)p->seq_q * (double)p->seq_kv *
                        (double)(p->head_dim + p->head_dim_v);
    int64_t nthreads = work < HOST_PARALLEL_MIN_WORK ? 1 : online_cpus();
    int64_t i, started = 0;
    int failed = 0;
    if (nthreads > tasks) nthreads = tasks;
    if (nthreads > HOST_MAX_THREADS) nthreads = HOST_MAX_THREADS;
    if (nthreads < 1) nthreads = 1;
    t.p = p;
    t.q = ref_ptr(&io->q);
    t.k = ref_ptr(&io->k);
    t.v = ref_ptr(&io->v);
    t.o = ref_ptr(&io->o);
    t.lse = p->want_lse ? ref_ptr(&io->lse) : NULL;
    t.probs = p->want_probs ? ref_ptr(&io->probs) : NULL;
    t.flash = flash;
    pa_host_variants_init(&t.var, p, &io->var);
    if (!t.q || !t.k || !t.v || !t.o || (p->want_lse && !t.lse) || (p->want_probs && !t.probs) ||
        !pa_host_variants_complete(&t.var))
        return pa_fail(dev, POLYATTN_STATUS_INTERNAL_ERROR,
                       "host: forward called without a tensor");
    for (i = 0; i < nthreads; i++) {
        workers[i].t = &t;
        workers[i].first = i;
        workers[i].step = nthreads;
        workers[i].count = tasks;
        workers[i].failed = 0;
    }
    /* Worker 0 runs on the calling thread; a worker that cannot start runs there too. */
    for (i = 1; i < nthreads; i++) {
        if (pthread_create(&workers[i].thread, NULL, host_worker_main, &workers[i]) != 0) break;
        started = i;
    }
    for (i = started + 1; i < nthreads; i++)
        host_worker_main(&workers[i]);
    host_worker_main(&workers[0]);
    for (i = 1; i <= started; i++)
        pthread_join(workers[i].thread, NULL);
    for (i = 0; i < nthreads; i++)
        failed |= workers[i].failed;
    if (failed)
        return pa_fail(dev, POLYATTN_STATUS_OUT_OF_MEMORY,
                       "host: cannot allocate the scratch rows of the %s path",
                       flash ? "flash" : "unfused");
    return POLYATTN_STATUS_SUCCESS;
}

/* ---- algorithms -------------------------------------------------------------------- */

static int dtype_ok(polyattn_dtype dtype)
{
    return dtype == POLYATTN_DTYPE_F32 || dtype == POLYATTN_DTYPE_F16 ||
           dtype == POLYATTN_DTYPE_BF16 || dtype == POLYATTN_DTYPE_E4M3;
}

static polyattn_status unfused_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
    (void)dev;
    if (!dtype_ok(p->dtype) || !dtype_ok(p->o_dtype) || p->o_dtype == POLYATTN_DTYPE_E4M3) {
        *why_not = "the host backend reads f32, f16, bf16 and e4m3 and writes f32, f16 and bf16";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status fused_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
    (void)dev;
    (void)p;
    *why_not = "the host backend has no fused kernel; its unfused path is the reference";
    return POLYATTN_STATUS_UNSUPPORTED;
}

static polyattn_status flash_check(pa_device *dev, const pa_problem *p, const char **why_not)
{
    polyattn_status st = unfused_check(dev, p, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    if (p->want_probs) {
        *why_not = "flash never forms the probability matrix (O(seq) memory); "
                   "use unfused to get probabilities";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    return POLYATTN_STATUS_SUCCESS;
}

static uint64_t host_workspace_size(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    (void)p;
    return 0;
}

static int host_kernel_launches(pa_device *dev, const pa_problem *p)
{
    (void)dev;
    (void)p;
    return 1;
}

static polyattn_status unfused_forward(pa_device *dev, const pa_problem *p, void *state,
                                       const pa_io *io)
{
    (void)state;
    if (pa_problem_serving(p)) return pa_host_serving_forward(dev, p, io, 0);
    return pa_host_run(dev, p, io, 0);
}

static polyattn_status fused_forward(pa_device *dev, const pa_problem *p, void *state,
                                     const pa_io *io)
{
    (void)p;
    (void)state;
    (void)io;
    return pa_fail(dev, POLYATTN_STATUS_UNSUPPORTED,
                   "the host backend has no fused kernel; its unfused path is the reference");
}

static polyattn_status flash_forward(pa_device *dev, const pa_problem *p, void *state,
                                     const pa_io *io)
{
    (void)state;
    if (pa_problem_serving(p)) return pa_host_serving_forward(dev, p, io, 1);
    return pa_host_run(dev, p, io, 1);
}

static const pa_algo_ops host_algos[] = {
    {.algo = POLYATTN_ALGO_UNFUSED,
     .check = unfused_check,
     .workspace_size = host_workspace_size,
     .kernel_launches = host_kernel_launches,
     .prepare = NULL,
     .release = NULL,
     .forward = unfused_forward,
     .backward_workspace_size = pa_host_backward_workspace_size,
     .backward = pa_host_backward_unfused,
     .features = PA_FEATURE_ALL_VARIANTS | PA_FEATURE_ALL_SERVING | PA_FEATURE_E4M3,
     .backward_features = PA_FEATURE_ALL_VARIANTS | PA_FEATURE_VARLEN_Q | PA_FEATURE_VARLEN_KV},
    {.algo = POLYATTN_ALGO_FUSED,
     .check = fused_check,
     .workspace_size = host_workspace_size,
     .kernel_launches = host_kernel_launches,
     .prepare = NULL,
     .release = NULL,
     .forward = fused_forward},
    {.algo = POLYATTN_ALGO_FLASH,
     .check = flash_check,
     .workspace_size = host_workspace_size,
     .kernel_launches = host_kernel_launches,
     .prepare = NULL,
     .release = NULL,
     .forward = flash_forward,
     .backward_workspace_size = pa_host_backward_workspace_size,
     .backward = pa_host_backward_flash,
     .features = PA_FEATURE_ALL_VARIANTS | PA_FEATURE_ALL_SERVING | PA_FEATURE_E4M3,
     .backward_features = PA_FEATURE_ALL_VARIANTS | PA_FEATURE_VARLEN_Q | PA_FEATURE_VARLEN_KV},
};

/* The unfused reference first: faster than the host's flash when measured. */
static void host_auto_order(const char *arch, const pa_problem *p, polyattn_algo order[3],
                            const char **why)
{
    (void)arch, (void)p;
    order[0] = POLYATTN_ALGO_UNFUSED, order[1] = POLYATTN_ALGO_FLASH;
    order[2] = POLYATTN_ALGO_FUSED;
    *why = "host: the unfused reference first (faster than host flash when measured)";
}

static const pa_backend_ops host_ops = {
    .abi_version = PA_BACKEND_ABI_VERSION,
    .kind = POLYATTN_BACKEND_HOST,
    .name = "host",
    .probe = host_probe,
    .device_info = host_device_info,
    .device_open = host_device_open,
    .device_close = host_device_close,
    .mem_alloc = host_mem_alloc,
    .mem_free = host_mem_free,
    .mem_write = host_mem_write,
    .mem_read = host_mem_read,
    .synchronize = host_synchronize,
    .event_create = host_event_create,
    .event_destroy = host_event_destroy,
    .event_record = host_event_record,
    .event_elapsed_ms = host_event_elapsed_ms,
    .algos = host_algos,
    .n_algos = sizeof host_algos / sizeof host_algos[0],
    .auto_order = host_auto_order,
    .merge_states = pa_host_merge_states,
};

const pa_backend_ops *pa_host_backend_ops(void) { return &host_ops; }
