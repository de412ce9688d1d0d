/*
 * CUDA unfused: cuBLAS strided-batched GEMMs around the shared mask+softmax kernel, and its
 * backward on f32 copies with plain SGEMMs.  Nothing to choose at forward time: the GEMM
 * layout follows from the problem.
 */
#include "cuda_internal.h"

#include "../gpu/gpu_backward.h"
#include "../gpu/gpu_glue.h" /* pa_gpu_args_fill, pa_gpu_bwd_args_fill */

#include <stdio.h>
#include <string.h>

static size_t dtype_size(polyattn_dtype t) { return t == POLYATTN_DTYPE_F32 ? 4 : 2; }

/* cuBLAS sees one (batch, head) pair per strided-batch entry.  Heads of a GQA group that
 * share a kv head are different calls (offset j within the group); batches fold into the
 * strided batch when every tensor's batch stride is heads * head stride (BHSD and BSHD
 * both), else each batch is its own call. */
typedef struct unfused_plan {
    int group; /* heads_q / heads_kv */
    int flat;  /* batches folded into the strided batch */
    int calls; /* GEMM calls per product */
} unfused_plan;

static unfused_plan unfused_layout(const pa_problem *p)
{
    unfused_plan u;
    u.group = (int)(p->heads_q / p->heads_kv);
    u.flat = p->q_stride[0] == p->heads_q * p->q_stride[1] &&
             p->k_stride[0] == p->heads_kv * p->k_stride[1] &&
             p->v_stride[0] == p->heads_kv * p->v_stride[1] &&
             p->o_stride[0] == p->heads_q * p->o_stride[1];
    if (p->batch == 1) u.flat = 1;
    u.calls = u.group * (u.flat ? 1 : (int)p->batch);
    return u;
}

polyattn_status pa_cuda_unfused_check(pa_device *d, const pa_problem *p, const char **why_not)
{
    const char *why = pa_cuda_int_sizes_refusal(p);
    if (why) return *why_not = why, POLYATTN_STATUS_UNSUPPORTED;
    pa_cuda_force f;
    polyattn_status st = pa_cuda_force_get(pa_cuda_dev(d), &f, why_not);
    if (st != POLYATTN_STATUS_SUCCESS) return st;
    if (p->q_stride[3] != 1 || p->k_stride[3] != 1 || p->v_stride[3] != 1 || p->o_stride[3] != 1) {
        *why_not = "cuBLAS needs a head_dim stride of 1 in q, k, v and o";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    if ((p->seq_q > 1 && (p->q_stride[2] < p->head_dim || p->o_stride[2] < p->head_dim_v)) ||
        (p->seq_kv > 1 && (p->k_stride[2] < p->head_dim || p->v_stride[2] < p->head_dim_v))) {
        *why_not = "cuBLAS needs sequence strides of at least the head dim (no overlapping rows)";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    if (p->seq_kv * 4 / (int64_t)dtype_size(p->dtype) > 0x7fffffff) {
        *why_not = "seq_kv too long for a cuBLAS leading dimension";
        return POLYATTN_STATUS_UNSUPPORTED;
    }
    const unfused_plan u = unfused_layout(p);
    snprintf(pa_cuda_dev(d)->note[0], sizeof pa_cuda_dev(d)->note[0],
             "cublasGemmStridedBatchedEx x %d per product (%d GQA offset%s, %s), f32 accumulate; "
             "mask+softmax kernel",
             u.calls, u.group, u.group > 1 ? "s" : "",
             u.flat ? "batches folded into the strided batch" : "one call per batch");
    *why_not = pa_cuda_dev(d)->note[0];
    return POLYATTN_STATUS_SUCCESS;
}

uint64_t pa_cuda_unfused_workspace(pa_device *d, const pa_problem *p)
{
    (void)d;
    /* f32 scores; the probabilities overwrite them in place in the storage dtype. */
    return (uint64_t)p->batch * p->heads_q * p->seq_q * p->seq_kv * sizeof(float);
}

int pa_cuda_unfused_launches(pa_device *d, const pa_problem *p)
{
    (void)d;
    return 2 * unfused_layout(p).calls + 1;
}

polyattn_status pa_cuda_unfused_prepare(pa_device *d, const pa_problem *p, void **state)
{
    pa_cuda_device *dev = pa_cuda_dev(d);
    PA_CU(d, cudaSetDevice(dev->ordinal));
    if (!dev->blas) {
        PA_CUBLAS(d, cublasCreate(&dev->blas));
        PA_CUBLAS(d, cublasSetStream(dev->blas, dev->stream));
    }
    unfused_plan u = unfused_layout(p);
    pa_log(POLYATTN_LOG_DISPATCH,
           "cuda unfused: cublasGemmStridedBatchedEx x %d per product (%d GQA offset%s x %s), "
           "batch count %lld, f32 accumulate; shared mask+softmax kernel",
           u.calls, u.group, u.group > 1 ? "s" : "",
           u.flat ? "batches folded" : "one call per batch",
           (long long)(u.flat ? p->batch * p->heads_kv : p->heads_kv));
    *state = NULL;
    return POLYATTN_STATUS_SUCCESS;
}

static cudaDataType_t cuda_type(polyattn_dtype t)
{
    return t == POLYATTN_DTYPE_F32   ? CUDA_R_32F
           : t == POLYATTN_DTYPE_F16 ? CUDA_R_16F
                                     : CUDA_R_16BF;
}

polyattn_status pa_cuda_unfused_forward(pa_device *d, const pa_problem *p, void *state,
                                        const pa_io *io)
{
    (void)state;
    pa_cuda_device *dev = pa_cuda_dev(d);
    if (!dev->blas) return pa_fail(d, POLYATTN_STATUS_INTERNAL_ERROR, "unfused: no cuBLAS handle");
    if (!io->workspace.mem || io->workspace_bytes < pa_cuda_unfused_workspace(d, p))
        return pa_fail(d, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "unfused: the workspace must hold %llu bytes of scores",
                       (unsigned long long)pa_cuda_unfused_workspace(d, p));
    PA_CU(d, cudaSetDevice(dev->ordinal));
    PA_CUBLAS(d, cublasSetStream(dev->blas, dev->stream));
    pa_gpu_args a;
    pa_gpu_args_fill(p, io, &a);
    const unfused_plan u = unfused_layout(p);
    const size_t es = dtype_size(p->dtype);
    const cudaDataType_t t = cuda_type(p->dtype);
    const int sq = (int)p->seq_q, skv = (int)p->seq_kv, dk = (int)p->head_dim,
              dv = (int)p->head_dim_v;
    const long long ldq = p->seq_q > 1 ? p->q_stride[2] : dk;
    const long long ldk = p->seq_kv > 1 ? p->k_stride[2] : dk;
    const long long ldv = p->seq_kv > 1 ? p->v_stride[2] : dv;
    const long long ldo = p->seq_q > 1 ? p->o_stride[2] : dv;
    const long long ldp = (long long)skv * 4 / (long long)es; /* probabilities in place */
    const long long pairs = (long long)sq * skv;
    const int batches = u.flat ? 1 : (int)p->batch;
    const int count = (int)((u.flat ? p->batch : 1) * p->heads_kv);
    float *scores = (float *)a.workspace;
    const float alpha_qk = p->scale, one = 1.f, zero = 0.f;

    /* S^T (column-major skv x sq) = K Q^T, i.e. row-major S = Q K^T * scale. */
    for (int j = 0; j < u.group; j++)
        for (int b = 0; b < batches; b++) {
            const char *qp = (const char *)a.q + (b * p->q_stride[0] + j * p->q_stride[1]) * es;
            const char *kp = (const char *)a.k + b * p->k_stride[0] * es;
            float *sp = scores + ((long long)b * p->heads_q + j) * pairs;
            PA_CUBLAS(d, cublasGemmStridedBatchedEx(dev->blas, CUBLAS_OP_T, CUBLAS_OP_N, skv, sq,
                                                    dk, &alpha_qk, kp, t, ldk, p->k_stride[1], qp,
                                                    t, ldq, u.group * p->q_stride[1], &zero, sp,
                                                    CUDA_R_32F, skv, u.group * pairs, count,
                                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        }
    PA_CU_LAUNCH(d, pa_gpu_mask_softmax(&a, scores, dev->stream));
    /* O^T (column-major dv x sq) = V^T P^T, i.e. row-major O = P V. */
    for (int j = 0; j < u.group; j++)
        for (int b = 0; b < batches; b++) {
            const char *vp = (const char *)a.v + b * p->v_stride[0] * es;
            const char *pp = (const char *)scores + ((long long)b * p->heads_q + j) * pairs * 4;
            char *op = (char *)a.o + (b * p->o_stride[0] + j * p->o_stride[1]) * es;
            PA_CUBLAS(d, cublasGemmStridedBatchedEx(dev->blas, CUBLAS_OP_N, CUBLAS_OP_N, dv, sq,
                                                    skv, &one, vp, t, ldv, p->v_stride[1], pp, t,
                                                    ldp, u.group * pairs * 4 / (long long)es, &zero,
                                                    op, t, ldo, u.group * p->o_stride[1], count,
                                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        }
    return POLYATTN_STATUS_SUCCESS;
}

/* ---- backward ---- */

/* The backward works on contiguous f32 copies (every GEMM is a plain SGEMM without TF32,
 * batches always fold, any input stride works) laid out in the workspace as below, in
 * floats.  dK and dV of a GQA group are summed by GEMMs with beta = 1 over the group's
 * query heads in sequence, so the result is bitwise reproducible (no atomics anywhere):
 * the deterministic option changes nothing here.  Score variants: the shared elementwise
 * kernels (gpu_backward.h) recompute the final scores and give d_bias and d_sinks. */
typedef struct bwd_layout {
    uint64_t q, d_o, k, v, delta, s, dp, dq, dk, dv, total; /* float offsets */
} bwd_layout;

static bwd_layout bwd_layout_of(const pa_problem *p)
{
    const uint64_t rows_q = (uint64_t)p->batch * p->heads_q * p->seq_q;
    const uint64_t rows_kv = (uint64_t)p->batch * p->heads_kv * p->seq_kv;
    const uint64_t dk = (uint64_t)p->head_dim, dv = (uint64_t)p->head_dim_v;
    bwd_layout l;
    uint64_t at = 0;
#define PA_BWD_TAKE(member, floats) (l.member = at, at += ((floats) + 63) & ~(uint64_t)63)
    PA_BWD_TAKE(q, rows_q * dk);
    PA_BWD_TAKE(d_o, rows_q * dv);
    PA_BWD_TAKE(k, rows_kv * dk);
    PA_BWD_TAKE(v, rows_kv * dv);
    PA_BWD_TAKE(delta, rows_q);
    PA_BWD_TAKE(s, rows_q * (uint64_t)p->seq_kv);
    PA_BWD_TAKE(dp, rows_q * (uint64_t)p->seq_kv);
    PA_BWD_TAKE(dq, rows_q * dk);
    PA_BWD_TAKE(dk, rows_kv * dk);
    PA_BWD_TAKE(dv, rows_kv * dv);
#undef PA_BWD_TAKE
    l.total = at;
    return l;
}

uint64_t pa_cuda_unfused_backward_workspace(pa_device *d, const pa_problem *p)
{
    (void)d;
    return bwd_layout_of(p).total * sizeof(float);
}

polyattn_status pa_cuda_unfused_backward(pa_device *d, const pa_problem *p, void *state,
                                         const pa_backward_io *io)
{
    (void)state;
    pa_cuda_device *dev = pa_cuda_dev(d);
    if (!dev->blas) return pa_fail(d, POLYATTN_STATUS_INTERNAL_ERROR, "unfused: no cuBLAS handle");
    const bwd_layout l = bwd_layout_of(p);
    if (!io->workspace.mem || io->workspace_bytes < l.total * sizeof(float))
        return pa_fail(d, POLYATTN_STATUS_INVALID_ARGUMENT,
                       "unfused backward: the workspace must hold %llu bytes",
                       (unsigned long long)(l.total * sizeof(float)));
    PA_CU(d, cudaSetDevice(dev->ordinal));
    PA_CUBLAS(d, cublasSetStream(dev->blas, dev->stream));
    pa_gpu_bwd_args ba; /* the problem, its variants' tensors and gradients, the LSE */
    pa_gpu_bwd_args_fill(p, io, &ba);
    const pa_gpu_args a = ba.fwd;
    float *ws = (float *)pa_gpu_ptr(&io->workspace);
    float *qf = ws + l.q, *dof = ws + l.d_o, *kf = ws + l.k, *vf = ws + l.v;
    float *delta = ws + l.delta, *sc = ws + l.s, *dp = ws + l.dp;
    float *dqf = ws + l.dq, *dkf = ws + l.dk, *dvf = ws + l.dv;
    void *st = dev->stream;
    const int64_t dims_q[4] = {p->batch, p->heads_q, p->seq_q, p->head_dim};
    const int64_t dims_o[4] = {p->batch, p->heads_q, p->seq_q, p->head_dim_v};
    const int64_t dims_k[4] = {p->batch, p->heads_kv, p->seq_kv, p->head_dim};
    const int64_t dims_v[4] = {p->batch, p->heads_kv, p->seq_kv, p->head_dim_v};

    PA_CU_LAUNCH(d, pa_gpu_bwd_pack(qf, a.q, a.dtype, dims_q, p->q_stride, st));
    PA_CU_LAUNCH(d, pa_gpu_bwd_pack(dof, pa_gpu_ptr(&io->d_o), a.dtype, dims_o, p->o_stride, st));
    PA_CU_LAUNCH(d, pa_gpu_bwd_pack(kf, a.k, a.dtype, dims_k, p->k_stride, st));
    PA_CU_LAUNCH(d, pa_gpu_bwd_pack(vf, a.v, a.dtype, dims_v, p->v_stride, st));
    PA_CU_LAUNCH(d, pa_gpu_bwd_rowdot(&a, pa_gpu_ptr(&io->d_o), delta, st));

    /* Row-major X [m, n] is column-major X^T with leading dimension n.  One strided batch
     * runs over (batch, kv head); query head j of each group is call j. */
    const int g = (int)(p->heads_q / p->heads_kv);
    const int count = (int)(p->batch * p->heads_kv);
    const int sq = (int)p->seq_q, skv = (int)p->seq_kv, hd = (int)p->head_dim,
              hdv = (int)p->head_dim_v;
    const long long pairs = (long long)sq * skv;
    const long long qs = (long long)sq * hd, os = (long long)sq * hdv;
    const long long ks = (long long)skv * hd, vs = (long long)skv * hdv;
    const float scale = p->scale, one = 1.f, zero = 0.f;
    for (int j = 0; j < g; j++) {
        float *sj = sc + j * pairs, *dpj = dp + j * pairs;
        const float *qj = qf + j * qs, *doj = dof + j * os;
        /* S^T (skv x sq) = K Q^T * scale */
        PA_CUBLAS(d, cublasSgemmStridedBatched(dev->blas, CUBLAS_OP_T, CUBLAS_OP_N, skv, sq, hd,
                                               &scale, kf, hd, ks, qj, hd, g * qs, &zero, sj, skv,
                                               g * pairs, count));
        /* dP^T (skv x sq) = V dO^T */
        PA_CUBLAS(d, cublasSgemmStridedBatched(dev->blas, CUBLAS_OP_T, CUBLAS_OP_N, skv, sq, hdv,
                                               &one, vf, hdv, vs, doj, hdv, g * os, &zero, dpj, skv,
                                               g * pairs, count));
    }
    /* d_bias from S and dP before they become P and dS (times softcap's derivative);
     * d_sinks from delta and the LSE. */
    if (ba.d_bias) PA_CU_LAUNCH(d, pa_gpu_bwd_dbias(&ba, sc, dp, delta, st));
    PA_CU_LAUNCH(d, pa_gpu_bwd_softmax_grad(&ba, sc, dp, delta, st));
    if (ba.d_sinks) PA_CU_LAUNCH(d, pa_gpu_bwd_dsinks(&ba, delta, st));
    for (int j = 0; j < g; j++) {
        const float *pj = sc + j * pairs, *dsj = dp + j * pairs;
        const float *qj = qf + j * qs, *doj = dof + j * os;
        float *dqj = dqf + j * qs;
        const float *beta = j ? &one : &zero;
        /* dV^T (hdv x skv) += dO^T P, summed over the group in order j = 0, 1, ... */
        PA_CUBLAS(d, cublasSgemmStridedBatched(dev->blas, CUBLAS_OP_N, CUBLAS_OP_T, hdv, skv, sq,
                                               &one, doj, hdv, g * os, pj, skv, g * pairs, beta,
                                               dvf, hdv, vs, count));
        /* dK^T (hd x skv) += scale Q^T dS */
        PA_CUBLAS(d, cublasSgemmStridedBatched(dev->blas, CUBLAS_OP_N, CUBLAS_OP_T, hd, skv, sq,
                                               &scale, qj, hd, g * qs, dsj, skv, g * pairs, beta,
                                               dkf, hd, ks, count));
        /* dQ^T (hd x sq) = scale K^T dS^T */
        PA_CUBLAS(d, cublasSgemmStridedBatched(dev->blas, CUBLAS_OP_N, CUBLAS_OP_N, hd, sq, skv,
                                               &scale, kf, hd, ks, dsj, skv, g * pairs, &zero, dqj,
                                               hd, g * qs, count));
    }
    PA_CU_LAUNCH(d, pa_gpu_bwd_unpack(pa_gpu_ptr(&io->dq), dqf, a.dtype, dims_q, p->q_stride, st));
    PA_CU_LAUNCH(d, pa_gpu_bwd_unpack(pa_gpu_ptr(&io->dk), dkf, a.dtype, dims_k, p->k_stride, st));
    PA_CU_LAUNCH(d, pa_gpu_bwd_unpack(pa_gpu_ptr(&io->dv), dvf, a.dtype, dims_v, p->v_stride, st));
    return POLYATTN_STATUS_SUCCESS;
}
