/*
 * CPU emulation runtime behind the test doubles in tests/hip/emu/hip/: launches, barriers,
 * shuffles, the last-error slot, and the two hip backend services hip_algos.c calls
 * (pa_hip_use, pa_hip_fail), which the real module defines in hip_device.c.
 */
#include <hip/hip_runtime.h>

#include "pa_hip.h"

/* Fibers switch with _setjmp/_longjmp between their own stacks, which glibc's fortified
 * longjmp would take for stack corruption. */
#undef _FORTIFY_SOURCE
#include <math.h>
#include <setjmp.h>
#include <ucontext.h>
#include <stdio.h>
#include <stdlib.h>

pa_emu_uint3 threadIdx;
pa_emu_uint3 blockIdx;
dim3 gridDim, blockDim;
void *pa_emu_dynamic_smem;

/* GPU threads are fibers run by one OS thread: a block runs each fiber up to its next
 * __syncthreads, then all of them again, until every fiber has returned.  A fiber starts on
 * its own stack through makecontext/setcontext once; afterwards every switch is a
 * _setjmp/_longjmp pair (swapcontext would make a signal-mask system call per thread and
 * barrier, most of the emulation's time).  Deterministic order. */
enum { FIBER_READY, FIBER_AT_BARRIER, FIBER_DONE };
static const size_t kFiberStack = 256 * 1024;
static jmp_buf scheduler_jb;
static jmp_buf *fiber_jb;
static ucontext_t *fibers;
static int *fiber_started;
static int *fiber_state;
static unsigned current;
static void (*fiber_body)(void *);
static void *fiber_ctx;

static float exchange[2][1024];
static int *exchange_phase; /* per fiber */
static hipError_t last_error = hipSuccess;
static size_t dynamic_bytes;

void __syncthreads()
{
    fiber_state[current] = FIBER_AT_BARRIER;
    if (!_setjmp(fiber_jb[current])) _longjmp(scheduler_jb, 1);
}

/* Two buffers used in turn need one barrier per exchange: a fiber can only overwrite a
 * buffer two exchanges later, after every fiber has passed the barrier that follows its
 * read of it. */
float pa_emu_exchange(float v, int lane_xor)
{
    const unsigned t = threadIdx.x;
    float *buf = exchange[exchange_phase[t]];
    exchange_phase[t] ^= 1;
    buf[t] = v;
    __syncthreads();
    return buf[t ^ (unsigned)lane_xor];
}

/* The MFMA 32x32x8 layout, written independently of the kernel: A[i][k] in lane
 * i + 32*(k/4) element k%4, B[k][j] in lane j + 32*(k/4) element k%4, D[i][j] in lane
 * j + 32*((i/4)%2) register 4*(i/8) + i%4.  Double-buffered like the exchange. */
static float mfma_a[2][1024][4], mfma_b[2][1024][4];
static int *mfma_phase; /* per fiber */

void pa_emu_mfma_32x32x8(const float *a, const float *b, float *acc)
{
    const unsigned t = threadIdx.x, lane = t % 64, wave0 = t - lane;
    const int ph = mfma_phase[t];
    mfma_phase[t] ^= 1;
    for (int e = 0; e < 4; ++e) {
        mfma_a[ph][t][e] = a[e];
        mfma_b[ph][t][e] = b[e];
    }
    __syncthreads();
    for (int i = 0; i < 32; ++i) {
        if ((unsigned)((i / 4) % 2) != lane / 32) continue; /* rows this lane does not hold */
        const int j = (int)(lane % 32), reg = 4 * (i / 8) + i % 4;
        float sum = 0.f;
        for (int k = 0; k < 8; ++k)
            sum += mfma_a[ph][wave0 + i + 32 * (k / 4)][k % 4] *
                   mfma_b[ph][wave0 + j + 32 * (k / 4)][k % 4];
        acc[reg] += sum;
    }
}

extern "C" hipError_t hipSetDevice(int device)
{
    return device == 0 ? hipSuccess : hipErrorInvalidValue;
}

extern "C" hipError_t hipGetLastError(void)
{
    hipError_t e = last_error;
    last_error = hipSuccess;
    return e;
}

extern "C" const char *hipGetErrorName(hipError_t err)
{
    return err == hipSuccess             ? "hipSuccess"
           : err == hipErrorInvalidValue ? "hipErrorInvalidValue"
                                         : "hipErrorLaunchFailure";
}
extern "C" const char *hipGetErrorString(hipError_t err) { return hipGetErrorName(err); }

hipError_t hipFuncSetAttribute(const void *fn, int attr, int value)
{
    (void)fn;
    (void)attr;
    return value > PA_EMU_LDS_BYTES ? hipErrorInvalidValue : hipSuccess;
}

static void fiber_entry()
{
    fiber_body(fiber_ctx);
    fiber_state[current] = FIBER_DONE;
    _longjmp(scheduler_jb, 1); /* never returns: its context has no successor */
}

static void run_block(unsigned threads, char *stacks)
{
    for (unsigned t = 0; t < threads; ++t) {
        getcontext(&fibers[t]);
        fibers[t].uc_stack.ss_sp = stacks + t * kFiberStack;
        fibers[t].uc_stack.ss_size = kFiberStack;
        fibers[t].uc_link = nullptr;
        makecontext(&fibers[t], fiber_entry, 0);
        fiber_started[t] = 0;
        fiber_state[t] = FIBER_READY;
        exchange_phase[t] = 0;
        mfma_phase[t] = 0;
    }
    for (;;) {
        unsigned at_barrier = 0, done = 0;
        for (unsigned t = 0; t < threads; ++t) {
            if (fiber_state[t] == FIBER_DONE) continue;
            current = t;
            threadIdx.x = t;
            threadIdx.y = threadIdx.z = 0;
            fiber_state[t] = FIBER_READY;
            if (!_setjmp(scheduler_jb)) {
                if (fiber_started[t]) _longjmp(fiber_jb[t], 1);
                fiber_started[t] = 1;
                setcontext(&fibers[t]);
            }
        }
        for (unsigned t = 0; t < threads; ++t) {
            at_barrier += fiber_state[t] == FIBER_AT_BARRIER;
            done += fiber_state[t] == FIBER_DONE;
        }
        if (done == threads) return;
        if (done) {
            /* Some threads left while others wait at a barrier: a real GPU hangs or
             * misbehaves here; the emulation stops loudly. */
            fprintf(stderr,
                    "emulation: %u of %u threads returned while %u wait at __syncthreads "
                    "(block %u,%u,%u)\n",
                    done, threads, at_barrier, blockIdx.x, blockIdx.y, blockIdx.z);
            abort();
        }
    }
}

void pa_emu_run(void (*body)(void *), void *ctx, dim3 grid, dim3 block, size_t smem)
{
    if (block.y != 1 || block.z != 1 || block.x == 0 || block.x > 1024 || smem > PA_EMU_LDS_BYTES) {
        last_error = hipErrorLaunchFailure;
        return;
    }
    if (grid.x == 0 || grid.y == 0 || grid.z == 0) return;
    gridDim = grid;
    blockDim = block;
    fiber_body = body;
    fiber_ctx = ctx;
    dynamic_bytes = smem;
    pa_emu_dynamic_smem = smem ? malloc(smem) : NULL;
    fibers = static_cast<ucontext_t *>(malloc(block.x * sizeof(ucontext_t)));
    fiber_state = static_cast<int *>(malloc(block.x * sizeof(int)));
    fiber_started = static_cast<int *>(malloc(block.x * sizeof(int)));
    fiber_jb = static_cast<jmp_buf *>(malloc(block.x * sizeof(jmp_buf)));
    exchange_phase = static_cast<int *>(malloc(block.x * sizeof(int)));
    mfma_phase = static_cast<int *>(malloc(block.x * sizeof(int)));
    char *stacks = static_cast<char *>(malloc(block.x * kFiberStack));
    if (!fibers || !fiber_state || !fiber_started || !fiber_jb || !exchange_phase || !mfma_phase ||
        !stacks) {
        fprintf(stderr, "emulation: out of memory\n");
        abort();
    }
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                blockIdx.x = x;
                blockIdx.y = y;
                blockIdx.z = z;
                /* NaN in fresh shared memory: reading what the block did not write shows. */
                float *s = static_cast<float *>(pa_emu_dynamic_smem);
                for (size_t i = 0; i < dynamic_bytes / sizeof(float); ++i)
                    s[i] = NAN;
                run_block(block.x, stacks);
            }
    free(stacks);
    free(exchange_phase);
    free(mfma_phase);
    free(fiber_state);
    free(fiber_started);
    free(fiber_jb);
    free(fibers);
    free(pa_emu_dynamic_smem);
    pa_emu_dynamic_smem = NULL;
}

extern "C" polyattn_status pa_hip_use(pa_device *dev)
{
    (void)dev;
    return POLYATTN_STATUS_SUCCESS;
}

extern "C" polyattn_status pa_hip_fail(pa_device *dev, hipError_t err, const char *expr,
                                       const char *file, int line)
{
    return pa_fail(dev, POLYATTN_STATUS_DEVICE_ERROR, "%s failed (%s:%d): %s", expr, file, line,
                   hipGetErrorName(err));
}
