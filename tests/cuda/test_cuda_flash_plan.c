/*
 * Which kernel the CUDA flash planner (backends/cuda/cuda_flash_plan.c) picks, on made-up
 * H100 and A100 devices, with no GPU: the planner and cuda_force.c are compiled into this
 * test with stand-ins for the kernels' capability queries (cuda_flash_plan_stubs.c).  A GPU
 * run showed head dim 192 never reaching the Hopper kernel; decisions like that fail here, in
 * CI, instead.
 */
#include "cuda_flash.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int failures = 0, checks = 0;
static pa_cuda_device h100, a100;

static const char *kernel_name(pa_cuda_fwd_kernel k)
{
    static const char *const names[] = {"auto", "generic SIMT", "mma.sync", "wgmma", "Hopper"};
    return (int)k >= 0 && (int)k <= (int)PA_CUDA_FWD_HOPPER ? names[k] : "?";
}

static void device_init(pa_cuda_device *dev, int cc_major, int cc_minor, int sm_count,
                        size_t smem_optin_kib)
{
    memset(dev, 0, sizeof *dev);
    dev->cc_major = cc_major, dev->cc_minor = cc_minor, dev->sm_count = sm_count;
    dev->smem_optin = smem_optin_kib * 1024;
}

/* The core copies POLYATTN_FORCE into every device once, when a context is made
 * (core/force.c); cuda_force.c reads that copy at plan time, never the environment. */
static void set_force(const char *keys)
{
    snprintf(h100.base.force, sizeof h100.base.force, "%s", keys);
    snprintf(a100.base.force, sizeof a100.base.force, "%s", keys);
}

static void contiguous(int64_t stride[4], int64_t heads, int64_t rows, int64_t head_dim)
{
    stride[0] = heads * rows * head_dim, stride[1] = rows * head_dim;
    stride[2] = head_dim, stride[3] = 1;
}

/* A dense problem, contiguous BHSD, no mask, as the core hands it to a backend. */
static pa_problem dense(polyattn_dtype dtype, int64_t batch, int64_t heads_q, int64_t heads_kv,
                        int64_t seq_q, int64_t seq_kv, int64_t head_dim)
{
    pa_problem p;
    memset(&p, 0, sizeof p);
    p.dtype = p.o_dtype = dtype;
    p.batch = batch, p.heads_q = heads_q, p.heads_kv = heads_kv;
    p.seq_q = seq_q, p.seq_kv = seq_kv, p.head_dim = p.head_dim_v = head_dim;
    p.scale = 1.f;
    p.window_left = p.window_right = -1;
    p.total_q = seq_q, p.kv_count = batch, p.kv_rows = seq_kv;
    p.q_descale = p.k_descale = p.v_descale = 1.f;
    contiguous(p.q_stride, heads_q, seq_q, head_dim);
    contiguous(p.o_stride, heads_q, seq_q, head_dim);
    contiguous(p.k_stride, heads_kv, seq_kv, head_dim);
    contiguous(p.v_stride, heads_kv, seq_kv, head_dim);
    return p;
}

/* An additive bias [batch, heads_q, seq_q, seq_kv] in the inputs' dtype. */
static void add_bias(pa_problem *p)
{
    p->has_bias = 1;
    p->bias_dtype = p->dtype;
    p->bias_shape[0] = p->batch, p->bias_shape[1] = p->heads_q;
    p->bias_shape[2] = p->seq_q, p->bias_shape[3] = p->seq_kv;
    contiguous(p->bias_stride, p->heads_q, p->seq_q, p->seq_kv);
    p->bias_stride[0] = p->heads_q * p->bias_stride[1];
}

/* Varlen q and K/V: `batch` sequences of up to seq tokens packed into [1, heads, total, d]. */
static pa_problem varlen(int64_t batch, int64_t heads, int64_t seq, int64_t head_dim)
{
    pa_problem p = dense(POLYATTN_DTYPE_BF16, batch, heads, heads, seq, seq, head_dim);
    p.varlen_q = 1, p.kv_layout = POLYATTN_KV_VARLEN;
    p.total_q = batch * seq, p.kv_count = 1, p.kv_rows = batch * seq;
    contiguous(p.q_stride, heads, p.total_q, head_dim);
    contiguous(p.o_stride, heads, p.total_q, head_dim);
    contiguous(p.k_stride, heads, p.kv_rows, head_dim);
    contiguous(p.v_stride, heads, p.kv_rows, head_dim);
    return p;
}

/* Decode over a paged KV cache: one query a sequence, blocks of 64 keys. */
static pa_problem paged_decode(int64_t batch, int64_t heads_q, int64_t heads_kv, int64_t seq_kv,
                               int64_t head_dim)
{
    pa_problem p = dense(POLYATTN_DTYPE_BF16, batch, heads_q, heads_kv, 1, seq_kv, head_dim);
    p.kv_layout = POLYATTN_KV_PAGED;
    p.max_blocks_per_seq = seq_kv / 64;
    p.kv_count = batch * p.max_blocks_per_seq, p.kv_rows = 64;
    contiguous(p.k_stride, heads_kv, 64, head_dim);
    contiguous(p.v_stride, heads_kv, 64, head_dim);
    return p;
}

/* Reports a failed check: the case, the expectation (printf format) and the planner's note. */
static void fail(const char *what, const char *why, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    printf("FAIL %s: ", what);
    vprintf(fmt, args);
    printf(" (planner: %s)\n", why ? why : "no reason");
    va_end(args);
    ++failures;
}

/* Plans p; on success *fp holds the plan.  Returns whether planning succeeded. */
static int planned(const char *what, pa_cuda_device *dev, const pa_problem *p,
                   pa_cuda_flash_plan *fp, const char **why)
{
    *why = NULL;
    const polyattn_status st = pa_cuda_flash_plan_make(dev, p, fp, why);
    ++checks;
    if (st == POLYATTN_STATUS_SUCCESS) return 1;
    fail(what, *why, "planning failed with %s", polyattn_status_string(st));
    return 0;
}

/* Expects p planned on `kernel`, the serving kernel or not. */
static void expect(const char *what, pa_cuda_device *dev, const pa_problem *p,
                   pa_cuda_fwd_kernel kernel, int serving)
{
    pa_cuda_flash_plan fp;
    const char *why;
    if (!planned(what, dev, p, &fp, &why)) return;
    if (fp.kernel != kernel || fp.serving != serving) {
        char got[64], want[64];
        snprintf(got, sizeof got, "%s%s", kernel_name(fp.kernel), fp.serving ? " (serving)" : "");
        snprintf(want, sizeof want, "%s%s", kernel_name(kernel), serving ? " (serving)" : "");
        fail(what, why, "planned %s, expected %s", got, want);
    }
}

/* Expects planning refused with `status` and a reason containing `reason`. */
static void expect_refused(const char *what, pa_cuda_device *dev, const pa_problem *p,
                           polyattn_status status, const char *reason)
{
    pa_cuda_flash_plan fp;
    const char *why = NULL;
    const polyattn_status st = pa_cuda_flash_plan_make(dev, p, &fp, &why);
    ++checks;
    if (st != status || !why || !strstr(why, reason))
        fail(what, why, "got %s, expected a refusal naming \"%s\"", polyattn_status_string(st),
             reason);
}

static void check(const char *what, int ok, const char *expected, const char *why)
{
    ++checks;
    if (!ok) fail(what, why, "expected %s", expected);
}

static void sm90_dense(void)
{
    const polyattn_dtype bf16 = POLYATTN_DTYPE_BF16;
    pa_cuda_flash_plan fp;
    const char *why;
    pa_problem p = dense(bf16, 2, 16, 16, 4096, 4096, 128);
    expect("sm_90 bf16 D128 N4096", &h100, &p, PA_CUDA_FWD_HOPPER, 0);
    /* the consumers take turns at head dim 128 (dense, no variants: measured faster on the
     * H100), not at 64, not with softcap, not where cuda.hopper_sched=serial says so */
    if (planned("sm_90 bf16 D128 consumers", &h100, &p, &fp, &why))
        check("sm_90 bf16 D128 consumers", fp.pingpong && !fp.overlap, "ping-pong consumers", why);
    set_force("cuda.hopper_sched=serial");
    if (planned("sm_90 bf16 D128 serial consumers", &h100, &p, &fp, &why))
        check("sm_90 bf16 D128 serial consumers", !fp.pingpong && !fp.overlap,
              "independent consumers under cuda.hopper_sched=serial", why);
    set_force("");
    p.softcap = 30.f;
    if (planned("sm_90 bf16 D128 softcap consumers", &h100, &p, &fp, &why))
        check("sm_90 bf16 D128 softcap consumers", !fp.pingpong,
              "independent consumers with softcap", why);
    p = dense(bf16, 2, 16, 16, 8192, 8192, 64);
    if (planned("sm_90 bf16 D64 consumers", &h100, &p, &fp, &why))
        check("sm_90 bf16 D64 consumers", !fp.pingpong, "independent consumers at head dim 64",
              why);
    /* the bug this test was written for: mma.sync has no 192, the Hopper kernel has */
    p = dense(bf16, 2, 16, 16, 4096, 4096, 192);
    expect("sm_90 bf16 D192 N4096", &h100, &p, PA_CUDA_FWD_HOPPER, 0);
    p = dense(POLYATTN_DTYPE_F16, 2, 16, 16, 4096, 4096, 256);
    expect("sm_90 f16 D256 N4096", &h100, &p, PA_CUDA_FWD_HOPPER, 0);
    /* head dim 64 at N <= 512 stays on mma.sync (measured faster there) */
    p = dense(bf16, 4, 16, 16, 256, 256, 64);
    expect("sm_90 bf16 D64 N256", &h100, &p, PA_CUDA_FWD_MMA, 0);
    p = dense(bf16, 4, 16, 16, 2048, 2048, 64);
    expect("sm_90 bf16 D64 N2048", &h100, &p, PA_CUDA_FWD_HOPPER, 0);
    /* head dim 96: the Hopper kernel's padded instance only when forced (opt-in) */
    p = dense(bf16, 2, 16, 16, 4096, 4096, 96);
    expect("sm_90 bf16 D96", &h100, &p, PA_CUDA_FWD_MMA, 0);
    set_force("cuda.flash=wgmma");
    expect("sm_90 bf16 D96, cuda.flash=wgmma", &h100, &p, PA_CUDA_FWD_HOPPER, 0);
    set_force("");

    p = dense(bf16, 2, 16, 16, 4096, 4096, 128);
    p.softcap = 30.f;
    expect("sm_90 bf16 D128 softcap", &h100, &p, PA_CUDA_FWD_HOPPER, 0);
    p = dense(bf16, 2, 16, 16, 4096, 4096, 128);
    p.alibi = POLYATTN_ALIBI_PER_HEAD;
    expect("sm_90 bf16 D128 ALiBi", &h100, &p, PA_CUDA_FWD_HOPPER, 0);
    p = dense(bf16, 2, 16, 16, 4096, 4096, 128);
    p.has_sinks = 1;
    expect("sm_90 bf16 D128 sinks", &h100, &p, PA_CUDA_FWD_HOPPER, 0);
    p = dense(bf16, 2, 16, 16, 4096, 4096, 128);
    p.has_window = 1, p.window_left = 256, p.window_right = 0;
    expect("sm_90 bf16 D128 window", &h100, &p, PA_CUDA_FWD_HOPPER, 0);
    p = dense(bf16, 2, 16, 16, 333, 4096, 128);
    add_bias(&p);
    expect("sm_90 bf16 D128 bias seq_q 333", &h100, &p, PA_CUDA_FWD_HOPPER, 0);
    p.has_attn_mask = 1;
    contiguous(p.attn_mask_stride, 16, 333, 4096);
    expect("sm_90 bf16 D128 bias and attn_mask", &h100, &p, PA_CUDA_FWD_SIMT, 0);

    /* decode: a grid too small for the device takes the serving kernel's key splits */
    p = dense(bf16, 8, 32, 8, 1, 32768, 128);
    expect("sm_90 bf16 decode D128 32k keys", &h100, &p, PA_CUDA_FWD_MMA, 1);
    if (planned("sm_90 bf16 decode key splits", &h100, &p, &fp, &why))
        check("sm_90 bf16 decode key splits", fp.splits > 1 && fp.pack,
              "key splits and GQA-packed tiles", why);
    /* in whole waves: 64 (sequence, KV head) pairs x 4 splits = 256 blocks in the 264 slots
     * of 132 SMs at two blocks each (5 splits: 320 blocks, a ragged second wave) */
    if (planned("sm_90 bf16 decode split count", &h100, &p, &fp, &why))
        check("sm_90 bf16 decode split count", fp.splits == 4, "4 key splits", why);

    /* a decode grid just short of two blocks an SM (32 x 8 KV heads = 256 of 264 slots):
     * the serving kernel's packed tiles still, with no split (one wave already) */
    p = dense(bf16, 32, 32, 8, 1, 32768, 128);
    expect("sm_90 bf16 decode 256 pairs", &h100, &p, PA_CUDA_FWD_MMA, 1);
    if (planned("sm_90 bf16 decode 256 pairs split count", &h100, &p, &fp, &why))
        check("sm_90 bf16 decode 256 pairs split count", fp.splits == 1 && fp.pack,
              "packed tiles, no split", why);

    /* strides that are not 16-byte rows: neither tensor-core kernel (TMA maps and cp.async
     * need them); the generic kernel */
    p = dense(bf16, 1, 4, 2, 47, 61, 64);
    p.q_stride[2] = p.o_stride[2] = 4 * 64 + 3, p.q_stride[1] = p.o_stride[1] = 64;
    p.q_stride[0] = p.o_stride[0] = 47 * p.q_stride[2];
    expect("sm_90 bf16 D64 padded rows", &h100, &p, PA_CUDA_FWD_SIMT, 0);

    /* head dims above 256: the wgmma kernel on sm_90 */
    p = dense(bf16, 4, 16, 16, 1024, 1024, 512);
    expect("sm_90 bf16 D512", &h100, &p, PA_CUDA_FWD_WGMMA, 0);
    p = dense(POLYATTN_DTYPE_F32, 2, 16, 16, 4096, 4096, 128);
    expect("sm_90 f32 D128", &h100, &p, PA_CUDA_FWD_MMA, 0);
    if (planned("sm_90 f32 D128 tile kernel", &h100, &p, &fp, &why))
        check("sm_90 f32 D128 tile kernel", strstr(why, "3xTF32") && strstr(why, "tile kernel"),
              "the 3xTF32 tile kernel", why);
    p = dense(POLYATTN_DTYPE_F32, 2, 16, 16, 4096, 4096, 96);
    expect("sm_90 f32 D96", &h100, &p, PA_CUDA_FWD_SIMT, 0);
}

/* Serving layouts shaped like prefill (more than 16 queries a sequence) take the Hopper
 * kernel; decode shapes keep the mma.sync serving kernel's packed tiles and key splits
 * unless the Hopper kernel is forced. */
static void sm90_serving(void)
{
    pa_problem p = varlen(4, 16, 1024, 128);
    expect("sm_90 varlen D128", &h100, &p, PA_CUDA_FWD_HOPPER, 0);
    set_force("cuda.flash=mma");
    expect("sm_90 varlen D128, cuda.flash=mma", &h100, &p, PA_CUDA_FWD_MMA, 1);
    set_force("cuda.flash=wgmma");
    expect("sm_90 varlen D128, cuda.flash=wgmma", &h100, &p, PA_CUDA_FWD_HOPPER, 0);
    set_force("");
    p = paged_decode(8, 32, 8, 4096, 128);
    expect("sm_90 paged decode D128", &h100, &p, PA_CUDA_FWD_MMA, 1);
    set_force("cuda.flash=wgmma");
    expect("sm_90 paged decode D128, cuda.flash=wgmma", &h100, &p, PA_CUDA_FWD_HOPPER, 0);
    set_force("");
}

static void sm80(void)
{
    pa_problem p = dense(POLYATTN_DTYPE_BF16, 2, 16, 16, 4096, 4096, 192);
    expect("sm_80 bf16 D192", &a100, &p, PA_CUDA_FWD_SIMT, 0);
    p = dense(POLYATTN_DTYPE_BF16, 2, 16, 16, 4096, 4096, 128);
    expect("sm_80 bf16 D128", &a100, &p, PA_CUDA_FWD_MMA, 0);
    add_bias(&p);
    expect("sm_80 bf16 D128 bias", &a100, &p, PA_CUDA_FWD_SIMT, 0);
    p = dense(POLYATTN_DTYPE_BF16, 4, 16, 16, 1024, 1024, 512);
    expect("sm_80 bf16 D512 (wide mma.sync)", &a100, &p, PA_CUDA_FWD_MMA, 0);
    p = dense(POLYATTN_DTYPE_BF16, 8, 32, 8, 1, 32768, 128);
    expect("sm_80 bf16 decode D128 32k keys", &a100, &p, PA_CUDA_FWD_MMA, 1);
}

static void forced(void)
{
    pa_cuda_flash_plan fp;
    const char *why;
    pa_problem p = dense(POLYATTN_DTYPE_BF16, 2, 16, 16, 4096, 4096, 128);
    set_force("cuda.flash=mma");
    expect("sm_90 D128, cuda.flash=mma", &h100, &p, PA_CUDA_FWD_MMA, 0);
    add_bias(&p);
    expect_refused("sm_90 D128 bias, cuda.flash=mma", &h100, &p, POLYATTN_STATUS_UNSUPPORTED,
                   "cuda.flash=mma: bias");
    p = dense(POLYATTN_DTYPE_BF16, 2, 16, 16, 4096, 4096, 128);
    set_force("cuda.flash=simt");
    expect("sm_90 D128, cuda.flash=simt", &h100, &p, PA_CUDA_FWD_SIMT, 0);
    set_force("cuda.flash=wgmma");
    expect_refused("sm_80 D128, cuda.flash=wgmma", &a100, &p, POLYATTN_STATUS_UNSUPPORTED,
                   "not sm_90");
    set_force("cuda.hopper_sched=pingpong");
    if (planned("sm_90 D128, cuda.hopper_sched=pingpong", &h100, &p, &fp, &why))
        check("sm_90 D128, cuda.hopper_sched=pingpong",
              fp.kernel == PA_CUDA_FWD_HOPPER && fp.pingpong,
              "the Hopper kernel with its consumers taking turns", why);
    set_force("cuda.hopper_sched=overlap");
    if (planned("sm_90 D128, cuda.hopper_sched=overlap", &h100, &p, &fp, &why))
        check("sm_90 D128, cuda.hopper_sched=overlap",
              fp.kernel == PA_CUDA_FWD_HOPPER && fp.overlap && !fp.pingpong,
              "the Hopper kernel with each consumer overlapping its products", why);
    set_force("cuda.hopper_exp2=poly");
    if (planned("sm_90 D128, cuda.hopper_exp2=poly", &h100, &p, &fp, &why))
        check("sm_90 D128, cuda.hopper_exp2=poly", fp.kernel == PA_CUDA_FWD_HOPPER && !fp.exp2_poly,
              "no polynomial exponentials without softcap", why);
    pa_problem capped = p;
    capped.softcap = 30.f;
    if (planned("sm_90 D128 softcap, cuda.hopper_exp2=poly", &h100, &capped, &fp, &why))
        check("sm_90 D128 softcap, cuda.hopper_exp2=poly",
              fp.kernel == PA_CUDA_FWD_HOPPER && fp.exp2_poly && strstr(why, "FMA pipe"),
              "half the exponentials on the FMA pipe", why);
    set_force("cuda.hopper_exp2=poly,cuda.hopper_sched=pingpong");
    if (planned("sm_90 D128 softcap, poly with pingpong", &h100, &capped, &fp, &why))
        check("sm_90 D128 softcap, poly with pingpong", fp.pingpong && !fp.exp2_poly,
              "ping-pong keeps MUFU's exponentials", why);
    set_force("cuda.hopper_exp2=bogus");
    expect_refused("cuda.hopper_exp2=bogus", &h100, &p, POLYATTN_STATUS_INVALID_ARGUMENT,
                   "cuda.hopper_exp2=bogus");
    set_force("cuda.hopper_sched=overlap");
    pa_problem wide = dense(POLYATTN_DTYPE_BF16, 2, 16, 16, 4096, 4096, 256);
    if (planned("sm_90 D256, cuda.hopper_sched=overlap", &h100, &wide, &fp, &why))
        check("sm_90 D256, cuda.hopper_sched=overlap",
              fp.kernel == PA_CUDA_FWD_HOPPER && !fp.overlap,
              "head dim 256 keeps the independent loop", why);
    set_force("cuda.flash=bogus");
    expect_refused("cuda.flash=bogus", &h100, &p, POLYATTN_STATUS_INVALID_ARGUMENT,
                   "cuda.flash=bogus");
    set_force("");
}

/* e4m3 inputs: dense head dim 128 with 16-bit O on the Hopper kernel's FP8 products (V
 * transposed into the workspace first), decode shapes on the serving kernel (bytes converted
 * to f16), the rest on the generic kernel. */
static void e4m3(void)
{
    pa_cuda_flash_plan fp;
    const char *why;
    pa_problem p = dense(POLYATTN_DTYPE_E4M3, 2, 16, 4, 1000, 1000, 128);
    p.o_dtype = POLYATTN_DTYPE_BF16;
    pa_problem big = dense(POLYATTN_DTYPE_E4M3, 4, 16, 4, 2048, 2048, 128);
    big.o_dtype = POLYATTN_DTYPE_F16;
    set_force("");
    expect("sm_90 e4m3 D128 prefill", &h100, &big, PA_CUDA_FWD_HOPPER, 0);
    expect("sm_80 e4m3 D128 prefill", &a100, &big, PA_CUDA_FWD_SIMT, 0);
    set_force("cuda.flash=wgmma");
    if (planned("sm_90 e4m3 D128, cuda.flash=wgmma", &h100, &p, &fp, &why))
        check("sm_90 e4m3 D128, cuda.flash=wgmma",
              fp.kernel == PA_CUDA_FWD_HOPPER && fp.workspace == 2ull * 4 * 128 * 1024 &&
                  fp.launches == 2 && strstr(why, "FP8"),
              "the Hopper kernel with V^T (keys padded to 1024) in the workspace", why);
    set_force("cuda.flash=wgmma,cuda.hopper_sched=pingpong");
    if (planned("sm_90 e4m3 D128, pingpong", &h100, &p, &fp, &why))
        check("sm_90 e4m3 D128, pingpong", fp.kernel == PA_CUDA_FWD_HOPPER && !fp.pingpong,
              "the serial loop (e4m3 has no other)", why);
    set_force("cuda.flash=wgmma");
    p.o_dtype = POLYATTN_DTYPE_F32;
    expect_refused("sm_90 e4m3 f32 O, cuda.flash=wgmma", &h100, &p, POLYATTN_STATUS_UNSUPPORTED,
                   "O must be f16 or bf16");
    pa_problem d64 = dense(POLYATTN_DTYPE_E4M3, 2, 16, 4, 1000, 1000, 64);
    d64.o_dtype = POLYATTN_DTYPE_F16;
    expect_refused("sm_90 e4m3 D64, cuda.flash=wgmma", &h100, &d64, POLYATTN_STATUS_UNSUPPORTED,
                   "head dim 128 only");
    /* decode on the serving kernel, K/V read as bytes: forced with cuda.flash=mma (opt-in) */
    pa_problem dec = dense(POLYATTN_DTYPE_E4M3, 8, 32, 8, 1, 32768, 128);
    dec.o_dtype = POLYATTN_DTYPE_BF16;
    set_force("");
    expect("sm_90 e4m3 decode", &h100, &dec, PA_CUDA_FWD_MMA, 1);
    set_force("cuda.flash=simt");
    expect("sm_90 e4m3 decode, cuda.flash=simt", &h100, &dec, PA_CUDA_FWD_SIMT, 0);
    set_force("cuda.flash=mma");
    if (planned("sm_90 e4m3 decode, cuda.flash=mma", &h100, &dec, &fp, &why))
        check("sm_90 e4m3 decode, cuda.flash=mma",
              fp.kernel == PA_CUDA_FWD_MMA && fp.serving && fp.pack && fp.stages == 3 &&
                  fp.splits > 1 && strstr(why, "e4m3 bytes"),
              "the serving kernel, GQA packed, a 3-deep raw ring, key splits", why);
    if (planned("sm_80 e4m3 decode, cuda.flash=mma", &a100, &dec, &fp, &why))
        check("sm_80 e4m3 decode, cuda.flash=mma", fp.kernel == PA_CUDA_FWD_MMA && fp.serving,
              "the serving kernel", why);
    pa_problem pg = paged_decode(4, 32, 8, 8192, 128);
    pg.dtype = POLYATTN_DTYPE_E4M3;
    expect("sm_90 e4m3 paged decode, cuda.flash=mma", &h100, &pg, PA_CUDA_FWD_MMA, 1);
    pa_problem pre = dense(POLYATTN_DTYPE_E4M3, 4, 16, 4, 2048, 2048, 128);
    pre.o_dtype = POLYATTN_DTYPE_BF16;
    expect_refused("sm_90 e4m3 prefill, cuda.flash=mma", &h100, &pre, POLYATTN_STATUS_UNSUPPORTED,
                   "decode shapes and serving layouts only");
    set_force("");
}

int main(void)
{
    device_init(&h100, 9, 0, 132, 227);
    device_init(&a100, 8, 0, 108, 163);
    sm90_dense();
    sm90_serving();
    sm80();
    forced();
    e4m3();
    printf("test_cuda_flash_plan: %d checks, %d failures\n", checks, failures);
    return failures || !checks ? 1 : 0;
}
