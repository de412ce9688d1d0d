/*
 * polyattn_cp over NCCL: the ring transport and the two streams around the engine
 * (cp_engine.c).  Compute runs on the caller's stream, transfers on a stream of the plan;
 * events order them:
 *   forward   round c (c = 0 .. P-2) sends the block held at step c to rank + 1 and receives
 *             the block of step c + 1 into ring buffer c % 2.  Round 0 overlaps step 0;
 *             round c waits for step c - 1 (the last reader of its receive buffer) and so
 *             overlaps step c.  Step s waits for round s - 1.
 *   backward  the same rounds for K/V, and after each step s one more transfer: its f32
 *             dK/dV accumulators go to rank + 1 (with K/V round s + 1 in one NCCL group)
 *             while step s + 1 computes its local gradients; only its accumulation waits
 *             for them.  After P steps each rank holds its own accumulators.
 * The CUDA context of polyattn and caller buffers come from the CUDA module's interop
 * entries (polyattn_cuda.h), found at run time as the core finds the module, so this
 * library links only libpolyattn, the CUDA runtime and NCCL.
 */
#include "cp_engine.h"
#include "cp_kernels.h"
#include "polyattn_cp.h"
#include "polyattn_cuda.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nccl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef polyattn_status (*ctx_create_fn)(int, struct CUstream_st *, polyattn_context **);
typedef polyattn_status (*wrap_fn)(polyattn_context *, void *, uint64_t, polyattn_buffer **);

struct polyattn_cp_plan {
    polyattn_cp_desc desc;
    polyattn_cp_options opt;
    ncclComm_t comm;
    cudaStream_t stream, comm_stream;
    int device, world, rank;
    polyattn_context *ctx;
    pa_cp_engine *eng;
    wrap_fn wrap;
    pa_cp_mem ring_k[2], ring_v[2], acc_k[2], acc_v[2];
    cudaEvent_t start, *recv, *comp, *acc;
    char err[512];
};

static char create_error[512];

static polyattn_status set_err(char *buf, polyattn_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, 512, fmt, ap);
    va_end(ap);
    return st;
}

#define CUDA_TRY(plan, expr)                                                                       \
    do {                                                                                           \
        cudaError_t e_ = (expr);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return set_err((plan)->err, POLYATTN_STATUS_DEVICE_ERROR, "%s: %s (%s:%d)", #expr,     \
                           cudaGetErrorString(e_), __FILE__, __LINE__);                            \
    } while (0)

#define NCCL_TRY(plan, expr)                                                                       \
    do {                                                                                           \
        ncclResult_t r_ = (expr);                                                                  \
        if (r_ != ncclSuccess)                                                                     \
            return set_err((plan)->err, POLYATTN_STATUS_DEVICE_ERROR, "%s: %s (%s:%d)", #expr,     \
                           ncclGetErrorString(r_), __FILE__, __LINE__);                            \
    } while (0)

/* ---- the interop entries of the CUDA module ---- */

static void *find_symbol(const char *name)
{
    static const char *const modules[] = {"libpolyattn_cuda.so", "libpolyattn_cuda.dylib"};
    void *sym = dlsym(RTLD_DEFAULT, name); /* a static build, or a module loaded globally */
    if (sym) return sym;
    int count = 0;
    (void)polyattn_device_count(POLYATTN_BACKEND_CUDA, &count, NULL); /* loads the module */
    for (size_t i = 0; i < sizeof modules / sizeof modules[0]; i++) {
        void *h = dlopen(modules[i], RTLD_NOW | RTLD_NOLOAD);
        if (!h) h = dlopen(modules[i], RTLD_NOW | RTLD_LOCAL);
        if (h && (sym = dlsym(h, name)) != NULL) return sym;
    }
    return NULL;
}

/* ---- device ops of the engine ---- */

static polyattn_status dev_alloc(void *user, uint64_t bytes, pa_cp_mem *m)
{
    polyattn_cp_plan *p = user;
    m->buf = NULL;
    m->ptr = NULL;
    if (cudaMalloc(&m->ptr, bytes) != cudaSuccess) {
        (void)cudaGetLastError();
        m->ptr = NULL;
        return POLYATTN_STATUS_OUT_OF_MEMORY;
    }
    polyattn_status st = p->wrap(p->ctx, m->ptr, bytes, &m->buf);
    if (st != POLYATTN_STATUS_SUCCESS) {
        cudaFree(m->ptr);
        m->ptr = NULL;
        m->buf = NULL;
    }
    return st;
}

static void dev_free(void *user, pa_cp_mem *m)
{
    (void)user;
    polyattn_buffer_free(m->buf);
    if (m->ptr) cudaFree(m->ptr);
    m->buf = NULL;
    m->ptr = NULL;
}

static polyattn_status dev_zero(void *user, void *ptr, uint64_t bytes)
{
    polyattn_cp_plan *p = user;
    return cudaMemsetAsync(ptr, 0, bytes, p->stream) == cudaSuccess ? POLYATTN_STATUS_SUCCESS
                                                                    : POLYATTN_STATUS_DEVICE_ERROR;
}

static polyattn_status dev_accumulate(void *user, float *acc, int64_t acc_rows, int64_t acc_row0,
                                      const void *src, polyattn_dtype dt, int64_t src_rows,
                                      int64_t src_row0, int64_t outer, int64_t rows, int64_t width)
{
    polyattn_cp_plan *p = user;
    int e = pa_cp_cuda_accumulate((struct CUstream_st *)p->stream, acc, acc_rows, acc_row0, src,
                                  (int)dt, src_rows, src_row0, outer, rows, width);
    return e == 0 ? POLYATTN_STATUS_SUCCESS : POLYATTN_STATUS_DEVICE_ERROR;
}

static polyattn_status dev_store(void *user, void *dst, polyattn_dtype dt, const float *src,
                                 int64_t count)
{
    polyattn_cp_plan *p = user;
    int e = pa_cp_cuda_store((struct CUstream_st *)p->stream, dst, (int)dt, src, count);
    return e == 0 ? POLYATTN_STATUS_SUCCESS : POLYATTN_STATUS_DEVICE_ERROR;
}

static const pa_cp_device_ops cuda_ops = {
    .alloc = dev_alloc,
    .free = dev_free,
    .zero = dev_zero,
    .accumulate = dev_accumulate,
    .store = dev_store,
};

/* ---- plans ---- */

static polyattn_status plan_setup(polyattn_cp_plan *p)
{
    int n = 0, r = 0;
    NCCL_TRY(p, ncclCommCount(p->comm, &n));
    NCCL_TRY(p, ncclCommUserRank(p->comm, &r));
    if (n != p->desc.world_size || r != p->desc.rank)
        return set_err(p->err, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "desc: world_size %d, rank %d but the communicator has %d ranks, this one "
                       "%d",
                       p->desc.world_size, p->desc.rank, n, r);
    NCCL_TRY(p, ncclCommCuDevice(p->comm, &p->device));
    CUDA_TRY(p, cudaSetDevice(p->device));
    ctx_create_fn create;
    void *sym = find_symbol("polyattn_cuda_context_create");
    void *wsym = find_symbol("polyattn_cuda_buffer_wrap");
    if (!sym || !wsym)
        return set_err(p->err, POLYATTN_STATUS_UNSUPPORTED,
                       "the CUDA backend module (libpolyattn_cuda) could not be loaded");
    memcpy(&create, &sym, sizeof create); /* object to function pointer, without a warning */
    memcpy(&p->wrap, &wsym, sizeof p->wrap);
    polyattn_status st = create(p->device, (struct CUstream_st *)p->stream, &p->ctx);
    if (st != POLYATTN_STATUS_SUCCESS)
        return set_err(p->err, st, "CUDA context on device %d: %s", p->device,
                       polyattn_last_error());
    char eerr[512];
    st = pa_cp_engine_create(p->ctx, &p->desc, &p->opt, &cuda_ops, p, &p->eng, eerr, sizeof eerr);
    if (st != POLYATTN_STATUS_SUCCESS) return set_err(p->err, st, "%s", eerr);
    CUDA_TRY(p, cudaStreamCreateWithFlags(&p->comm_stream, cudaStreamNonBlocking));
    CUDA_TRY(p, cudaEventCreateWithFlags(&p->start, cudaEventDisableTiming));
    p->recv = calloc((size_t)p->world, sizeof(cudaEvent_t));
    p->comp = calloc((size_t)p->world, sizeof(cudaEvent_t));
    p->acc = calloc((size_t)p->world, sizeof(cudaEvent_t));
    if (!p->recv || !p->comp || !p->acc)
        return set_err(p->err, POLYATTN_STATUS_OUT_OF_MEMORY, "out of host memory");
    for (int s = 0; s < p->world; s++) {
        CUDA_TRY(p, cudaEventCreateWithFlags(&p->recv[s], cudaEventDisableTiming));
        CUDA_TRY(p, cudaEventCreateWithFlags(&p->comp[s], cudaEventDisableTiming));
        CUDA_TRY(p, cudaEventCreateWithFlags(&p->acc[s], cudaEventDisableTiming));
    }
    if (p->world == 1) return POLYATTN_STATUS_SUCCESS; /* the degenerate ring moves nothing */
    uint64_t kb = 0, vb = 0, kf = 0, vf = 0;
    for (int o = 0; o < p->world; o++) {
        uint64_t x;
        if ((x = pa_cp_engine_kv_bytes(p->eng, o, 0, 0)) > kb) kb = x;
        if ((x = pa_cp_engine_kv_bytes(p->eng, o, 1, 0)) > vb) vb = x;
        if ((x = pa_cp_engine_kv_bytes(p->eng, o, 0, 1)) > kf) kf = x;
        if ((x = pa_cp_engine_kv_bytes(p->eng, o, 1, 1)) > vf) vf = x;
    }
    for (int i = 0; i < 2; i++) {
        if ((st = dev_alloc(p, kb, &p->ring_k[i])) || (st = dev_alloc(p, vb, &p->ring_v[i])))
            return set_err(p->err, st, "allocating the K/V ring buffers failed");
    }
    return POLYATTN_STATUS_SUCCESS;
}

static polyattn_status alloc_acc(polyattn_cp_plan *p)
{
    if (!p->opt.want_backward || p->acc_k[0].ptr) return POLYATTN_STATUS_SUCCESS;
    uint64_t kf = 0, vf = 0;
    for (int o = 0; o < p->world; o++) {
        uint64_t x;
        if ((x = pa_cp_engine_kv_bytes(p->eng, o, 0, 1)) > kf) kf = x;
        if ((x = pa_cp_engine_kv_bytes(p->eng, o, 1, 1)) > vf) vf = x;
    }
    polyattn_status st = POLYATTN_STATUS_SUCCESS;
    for (int i = 0; i < (p->world > 1 ? 2 : 1) && !st; i++)
        if ((st = dev_alloc(p, kf, &p->acc_k[i])) == 0) st = dev_alloc(p, vf, &p->acc_v[i]);
    return st ? set_err(p->err, st, "allocating the dK/dV accumulators failed") : st;
}

void polyattn_cp_plan_destroy(polyattn_cp_plan *p)
{
    if (!p) return;
    if (p->device >= 0) cudaSetDevice(p->device);
    if (p->stream || p->ctx) cudaStreamSynchronize(p->stream);
    if (p->comm_stream) cudaStreamSynchronize(p->comm_stream);
    for (int i = 0; i < 2; i++) {
        pa_cp_mem *m[] = {&p->ring_k[i], &p->ring_v[i], &p->acc_k[i], &p->acc_v[i]};
        for (int j = 0; j < 4; j++)
            if (m[j]->buf || m[j]->ptr) dev_free(p, m[j]);
    }
    pa_cp_engine_destroy(p->eng);
    polyattn_context_destroy(p->ctx);
    for (int s = 0; s < p->world; s++) {
        if (p->recv && p->recv[s]) cudaEventDestroy(p->recv[s]);
        if (p->comp && p->comp[s]) cudaEventDestroy(p->comp[s]);
        if (p->acc && p->acc[s]) cudaEventDestroy(p->acc[s]);
    }
    if (p->start) cudaEventDestroy(p->start);
    if (p->comm_stream) cudaStreamDestroy(p->comm_stream);
    free(p->recv);
    free(p->comp);
    free(p->acc);
    free(p);
}

polyattn_status polyattn_cp_plan_create(const polyattn_cp_desc *desc,
                                        const polyattn_cp_options *options, struct ncclComm *comm,
                                        struct CUstream_st *stream, polyattn_cp_plan **plan)
{
    create_error[0] = '\0';
    if (!plan) return POLYATTN_STATUS_INVALID_ARGUMENT;
    *plan = NULL;
    const char *why = NULL;
    if (pa_cp_desc_check(desc, &why) != POLYATTN_STATUS_SUCCESS)
        return set_err(create_error, POLYATTN_STATUS_INVALID_ARGUMENT, "%s", why);
    if (!comm) return set_err(create_error, POLYATTN_STATUS_INVALID_ARGUMENT, "comm: NULL");
    if (options && options->struct_size < sizeof *options)
        return set_err(create_error, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "options: struct_size smaller than polyattn_cp_options");
    polyattn_cp_plan *p = calloc(1, sizeof *p);
    if (!p) return POLYATTN_STATUS_OUT_OF_MEMORY;
    p->desc = *desc;
    polyattn_cp_options_init(&p->opt);
    if (options) p->opt = *options;
    p->comm = (ncclComm_t)comm;
    p->stream = (cudaStream_t)stream;
    p->device = -1;
    p->world = desc->world_size;
    p->rank = desc->rank;
    polyattn_status st = plan_setup(p);
    if (st == POLYATTN_STATUS_SUCCESS) st = alloc_acc(p);
    if (st != POLYATTN_STATUS_SUCCESS) {
        set_err(create_error, st, "%s", p->err);
        polyattn_cp_plan_destroy(p);
        return st;
    }
    *plan = p;
    return st;
}

const char *polyattn_cp_plan_last_error(const polyattn_cp_plan *plan)
{
    return plan ? plan->err : create_error;
}

polyattn_status polyattn_cp_plan_get_info(const polyattn_cp_plan *p, polyattn_cp_plan_info *info)
{
    if (!p || !info || info->struct_size < sizeof *info) return POLYATTN_STATUS_INVALID_ARGUMENT;
    pa_cp_engine_info(p->eng, info);
    for (int i = 0; i < 2; i++) {
        const pa_cp_mem *m[] = {&p->ring_k[i], &p->ring_v[i], &p->acc_k[i], &p->acc_v[i]};
        for (int j = 0; j < 4; j++)
            if (m[j]->buf) info->device_bytes += polyattn_buffer_size(m[j]->buf);
    }
    return POLYATTN_STATUS_SUCCESS;
}

/* ---- execution ---- */

typedef struct call_bufs {
    pa_cp_mem m[10];
    int n;
} call_bufs;

static polyattn_status wrap_user(polyattn_cp_plan *p, call_bufs *cb, const void *ptr,
                                 uint64_t bytes, const char *name, pa_cp_mem **out)
{
    pa_cp_mem *m = &cb->m[cb->n];
    m->ptr = (void *)ptr;
    m->buf = NULL;
    *out = m;
    if (!ptr) return set_err(p->err, POLYATTN_STATUS_INVALID_ARGUMENT, "%s: NULL", name);
    polyattn_status st = p->wrap(p->ctx, m->ptr, bytes, &m->buf);
    if (st != POLYATTN_STATUS_SUCCESS)
        return set_err(p->err, st, "%s: %s", name, polyattn_context_last_error(p->ctx));
    cb->n++;
    return st;
}

static void unwrap_all(call_bufs *cb)
{
    for (int i = 0; i < cb->n; i++)
        polyattn_buffer_free(cb->m[i].buf);
    cb->n = 0;
}

typedef struct tensor_bytes {
    uint64_t q, kv_k, kv_v, o, lse;
} tensor_bytes;

static tensor_bytes local_bytes(const polyattn_cp_plan *p)
{
    const polyattn_cp_desc *d = &p->desc;
    uint64_t rows = (uint64_t)polyattn_cp_local_seq(d, d->rank);
    uint64_t es = polyattn_dtype_size(d->dtype);
    tensor_bytes t;
    t.q = rows * (uint64_t)(d->batch * d->heads_q * d->head_dim) * es;
    t.kv_k = rows * (uint64_t)(d->batch * d->heads_kv * d->head_dim) * es;
    t.kv_v = rows * (uint64_t)(d->batch * d->heads_kv * d->head_dim_v) * es;
    t.o = rows * (uint64_t)(d->batch * d->heads_q * d->head_dim_v) * es;
    t.lse = rows * (uint64_t)(d->batch * d->heads_q) * 4u;
    return t;
}

/* One NCCL group.  K/V round kv_round (>= 0) sends the block held at that step to rank + 1
 * and receives the block of the next step into ring buffer kv_round % 2; the accumulator
 * transfer of acc_step (>= 0) sends its f32 dK/dV and receives those of the next step. */
static polyattn_status ring_round(polyattn_cp_plan *p, int kv_round, const pa_cp_mem *k_out,
                                  const pa_cp_mem *v_out, int acc_step)
{
    if (p->opt.skip_communication) return POLYATTN_STATUS_SUCCESS;
    const pa_cp_layout *l = pa_cp_engine_layout(p->eng);
    int next = (p->rank + 1) % p->world, prev = (p->rank + p->world - 1) % p->world;
    pa_cp_engine *e = p->eng;
    NCCL_TRY(p, ncclGroupStart());
    if (kv_round >= 0) {
        int out = pa_cp_block_owner(l, p->rank, kv_round);
        int in = pa_cp_block_owner(l, p->rank, kv_round + 1);
        int b = kv_round % 2;
        NCCL_TRY(p, ncclSend(k_out->ptr, pa_cp_engine_kv_bytes(e, out, 0, 0), ncclUint8, next,
                             p->comm, p->comm_stream));
        NCCL_TRY(p, ncclSend(v_out->ptr, pa_cp_engine_kv_bytes(e, out, 1, 0), ncclUint8, next,
                             p->comm, p->comm_stream));
        NCCL_TRY(p, ncclRecv(p->ring_k[b].ptr, pa_cp_engine_kv_bytes(e, in, 0, 0), ncclUint8, prev,
                             p->comm, p->comm_stream));
        NCCL_TRY(p, ncclRecv(p->ring_v[b].ptr, pa_cp_engine_kv_bytes(e, in, 1, 0), ncclUint8, prev,
                             p->comm, p->comm_stream));
    }
    if (acc_step >= 0) {
        int out = pa_cp_block_owner(l, p->rank, acc_step);
        int in = pa_cp_block_owner(l, p->rank, acc_step + 1);
        int b = acc_step % 2, nb = (acc_step + 1) % 2;
        NCCL_TRY(p, ncclSend(p->acc_k[b].ptr, pa_cp_engine_kv_bytes(e, out, 0, 1), ncclUint8, next,
                             p->comm, p->comm_stream));
        NCCL_TRY(p, ncclSend(p->acc_v[b].ptr, pa_cp_engine_kv_bytes(e, out, 1, 1), ncclUint8, next,
                             p->comm, p->comm_stream));
        NCCL_TRY(p, ncclRecv(p->acc_k[nb].ptr, pa_cp_engine_kv_bytes(e, in, 0, 1), ncclUint8, prev,
                             p->comm, p->comm_stream));
        NCCL_TRY(p, ncclRecv(p->acc_v[nb].ptr, pa_cp_engine_kv_bytes(e, in, 1, 1), ncclUint8, prev,
                             p->comm, p->comm_stream));
    }
    NCCL_TRY(p, ncclGroupEnd());
    return POLYATTN_STATUS_SUCCESS;
}

/* Ring buffer c % 2 receives in round c the block of step c + 1. */
static const pa_cp_mem *held(polyattn_cp_plan *p, int step, const pa_cp_mem *own, int v)
{
    if (step == 0) return own;
    return v ? &p->ring_v[(step - 1) % 2] : &p->ring_k[(step - 1) % 2];
}

static polyattn_status engine_st(polyattn_cp_plan *p, polyattn_status st)
{
    return st ? set_err(p->err, st, "%s", pa_cp_engine_error(p->eng)) : st;
}

polyattn_status polyattn_cp_forward(polyattn_cp_plan *p, const void *q, const void *k,
                                    const void *v, void *o, float *lse)
{
    if (!p) return POLYATTN_STATUS_INVALID_ARGUMENT;
    p->err[0] = '\0';
    CUDA_TRY(p, cudaSetDevice(p->device));
    tensor_bytes tb = local_bytes(p);
    call_bufs cb = {.n = 0};
    pa_cp_mem *mq, *mk, *mv, *mo, *ml = NULL;
    polyattn_status st;
    if ((st = wrap_user(p, &cb, q, tb.q, "q", &mq)) ||
        (st = wrap_user(p, &cb, k, tb.kv_k, "k", &mk)) ||
        (st = wrap_user(p, &cb, v, tb.kv_v, "v", &mv)) ||
        (st = wrap_user(p, &cb, o, tb.o, "o", &mo)) ||
        (lse && (st = wrap_user(p, &cb, lse, tb.lse, "lse", &ml))))
        goto done;
    if ((st = cudaEventRecord(p->start, p->stream) ? POLYATTN_STATUS_DEVICE_ERROR : 0) ||
        (st = cudaStreamWaitEvent(p->comm_stream, p->start, 0) ? POLYATTN_STATUS_DEVICE_ERROR : 0))
        goto done;
    for (int s = 0; s < p->world && !st; s++) {
        /* Round s moves the block of step s + 1 while step s computes. */
        if (s + 1 < p->world) {
            if (s > 0 && cudaStreamWaitEvent(p->comm_stream, p->comp[s - 1], 0)) goto device;
            if ((st = ring_round(p, s, held(p, s, mk, 0), held(p, s, mv, 1), -1))) goto done;
            if (cudaEventRecord(p->recv[s], p->comm_stream)) goto device;
        }
        if (s > 0 && cudaStreamWaitEvent(p->stream, p->recv[s - 1], 0)) goto device;
        st = engine_st(p, pa_cp_fwd_step(p->eng, s, mq, held(p, s, mk, 0), held(p, s, mv, 1)));
        if (!st && cudaEventRecord(p->comp[s], p->stream)) goto device;
    }
    if (!st) st = engine_st(p, pa_cp_fwd_finish(p->eng, mo, ml));
    goto done;
device:
    st = set_err(p->err, POLYATTN_STATUS_DEVICE_ERROR, "CUDA event: %s",
                 cudaGetErrorString(cudaGetLastError()));
done:
    unwrap_all(&cb);
    return st;
}

polyattn_status polyattn_cp_backward(polyattn_cp_plan *p, const void *q, const void *k,
                                     const void *v, const void *o, const void *d_o,
                                     const float *lse, void *dq, void *dk, void *dv)
{
    if (!p) return POLYATTN_STATUS_INVALID_ARGUMENT;
    p->err[0] = '\0';
    if (!p->opt.want_backward)
        return set_err(p->err, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "the plan was made without want_backward");
    CUDA_TRY(p, cudaSetDevice(p->device));
    tensor_bytes tb = local_bytes(p);
    call_bufs cb = {.n = 0};
    pa_cp_mem *mq, *mk, *mv, *mo, *mdo, *ml, *mdq, *mdk, *mdv;
    polyattn_status st;
    if ((st = wrap_user(p, &cb, q, tb.q, "q", &mq)) ||
        (st = wrap_user(p, &cb, k, tb.kv_k, "k", &mk)) ||
        (st = wrap_user(p, &cb, v, tb.kv_v, "v", &mv)) ||
        (st = wrap_user(p, &cb, o, tb.o, "o", &mo)) ||
        (st = wrap_user(p, &cb, d_o, tb.o, "d_o", &mdo)) ||
        (st = wrap_user(p, &cb, lse, tb.lse, "lse", &ml)) ||
        (st = wrap_user(p, &cb, dq, tb.q, "dq", &mdq)) ||
        (st = wrap_user(p, &cb, dk, tb.kv_k, "dk", &mdk)) ||
        (st = wrap_user(p, &cb, dv, tb.kv_v, "dv", &mdv)))
        goto done;
    if (cudaEventRecord(p->start, p->stream) || cudaStreamWaitEvent(p->comm_stream, p->start, 0))
        goto device;
    if ((st = engine_st(p, pa_cp_bwd_begin(p->eng)))) goto done;
    if (cudaMemsetAsync(p->acc_k[0].ptr, 0, pa_cp_engine_kv_bytes(p->eng, p->rank, 0, 1),
                        p->stream) ||
        cudaMemsetAsync(p->acc_v[0].ptr, 0, pa_cp_engine_kv_bytes(p->eng, p->rank, 1, 1),
                        p->stream))
        goto device;
    /* K/V round 0 overlaps step 0; after step s, its accumulators and K/V round s + 1 go
     * out together. */
    if (p->world > 1) {
        if ((st = ring_round(p, 0, mk, mv, -1))) goto done;
        if (cudaEventRecord(p->recv[0], p->comm_stream)) goto device;
    }
    for (int s = 0; s < p->world && !st; s++) {
        if (s > 0 && cudaStreamWaitEvent(p->stream, p->recv[s - 1], 0)) goto device;
        st = engine_st(
            p, pa_cp_bwd_step(p->eng, s, mq, held(p, s, mk, 0), held(p, s, mv, 1), mo, mdo, ml));
        if (st) break;
        if (s > 0 && cudaStreamWaitEvent(p->stream, p->acc[s - 1], 0)) goto device;
        st = engine_st(p, pa_cp_bwd_accumulate(p->eng, s, &p->acc_k[s % 2], &p->acc_v[s % 2]));
        if (st) break;
        if (cudaEventRecord(p->comp[s], p->stream)) goto device;
        if (p->world == 1) break;
        if (cudaStreamWaitEvent(p->comm_stream, p->comp[s], 0)) goto device;
        int kv = s + 1 < p->world - 1;
        if ((st = ring_round(p, kv ? s + 1 : -1, held(p, s + 1, mk, 0), held(p, s + 1, mv, 1), s)))
            goto done;
        if (cudaEventRecord(p->acc[s], p->comm_stream)) goto device;
        if (kv && cudaEventRecord(p->recv[s + 1], p->comm_stream)) goto device;
    }
    if (st) goto done;
    int home = p->world > 1 ? p->world % 2 : 0; /* where the own accumulators came back */
    if (p->world > 1 && cudaStreamWaitEvent(p->stream, p->acc[p->world - 1], 0)) goto device;
    int64_t nk = (int64_t)(pa_cp_engine_kv_bytes(p->eng, p->rank, 0, 1) / 4);
    int64_t nv = (int64_t)(pa_cp_engine_kv_bytes(p->eng, p->rank, 1, 1) / 4);
    if (pa_cp_cuda_store((struct CUstream_st *)p->stream, mdk->ptr, (int)p->desc.dtype,
                         p->acc_k[home].ptr, nk) ||
        pa_cp_cuda_store((struct CUstream_st *)p->stream, mdv->ptr, (int)p->desc.dtype,
                         p->acc_v[home].ptr, nv))
        goto device;
    st = engine_st(p, pa_cp_bwd_finish(p->eng, mdq));
    goto done;
device:
    st = set_err(p->err, POLYATTN_STATUS_DEVICE_ERROR, "CUDA: %s",
                 cudaGetErrorString(cudaGetLastError()));
done:
    unwrap_all(&cb);
    return st;
}
