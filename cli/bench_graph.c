/*
 * polyattn bench --graph N: each timed sample is one replay of a CUDA graph holding N calls
 * back to back, ms = replay time / N.  Per-call events include the host's launch cost
 * wherever a call is shorter than its launch; a graph replay measures the GPU time alone
 * (what PyTorch users get with CUDA graphs, and what bench/compare_torch.py --graph times
 * on the PyTorch side).
 *
 * The context queues on a stream of ours (polyattn_cuda_context_create of the public
 * interop header), which the graph captures: a forward or backward of a made plan
 * allocates nothing, never synchronizes and reads nothing back, so it is capturable.
 * Built with the CUDA runtime only when the CUDA backend is built (POLYATTN_CLI_CUDA_GRAPHS);
 * otherwise --graph is refused before any work.
 *
 * polyattn_cuda_context_create lives in the CUDA backend module, which the core loads at
 * run time: the tool finds it the same way (dlopen, dlsym) instead of linking the module,
 * so that polyattn keeps starting on machines without the CUDA libraries.
 */
#include "bench.h"

#if defined(POLYATTN_CLI_CUDA_GRAPHS)

#include "polyattn_cuda.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <string.h>

typedef polyattn_status (*cuda_context_create_fn)(int, struct CUstream_st *, polyattn_context **);

int pa_bench_graph_available(void) { return 1; }

/* The interop entry of the CUDA module: the copy the core loaded (after a device query),
 * or the module found beside the tool's libraries (the executable's RUNPATH). */
static cuda_context_create_fn find_cuda_context_create(const char **why)
{
    static const char *const names[] = {"libpolyattn_cuda.so", "libpolyattn_cuda.dylib"};
    int count = 0;
    (void)polyattn_device_count(POLYATTN_BACKEND_CUDA, &count, NULL); /* loads the module */
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        void *handle = dlopen(names[i], RTLD_NOW | RTLD_NOLOAD);
        if (!handle) handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (!handle) continue;
        void *sym = dlsym(handle, "polyattn_cuda_context_create");
        if (sym) {
            cuda_context_create_fn fn;
            memcpy(&fn, &sym, sizeof fn); /* object to function pointer, without a warning */
            return fn;
        }
    }
    *why = "the CUDA backend module (libpolyattn_cuda) could not be loaded";
    return NULL;
}

polyattn_status pa_bench_graph_context(int device, polyattn_context **ctx, void **stream,
                                       const char **why)
{
    *ctx = NULL;
    *stream = NULL;
    *why = NULL;
    cuda_context_create_fn create = find_cuda_context_create(why);
    if (!create) return POLYATTN_STATUS_UNSUPPORTED;
    cudaStream_t s = NULL;
    if (cudaSetDevice(device) != cudaSuccess ||
        cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) != cudaSuccess) {
        *why = "cannot create a CUDA stream for graph capture";
        return POLYATTN_STATUS_DEVICE_ERROR;
    }
    polyattn_status st = create(device, s, ctx);
    if (st != POLYATTN_STATUS_SUCCESS) {
        cudaStreamDestroy(s);
        *ctx = NULL;
        return st;
    }
    *stream = s;
    return POLYATTN_STATUS_SUCCESS;
}

void pa_bench_graph_context_destroy(polyattn_context *ctx, void *stream)
{
    polyattn_context_destroy(ctx); /* before the stream it queues on */
    if (stream) cudaStreamDestroy((cudaStream_t)stream);
}

const char *pa_bench_graph_time(void *stream, polyattn_context *ctx, pa_bench_call_fn call,
                                void *arg, int n_calls, int reps, double *times)
{
    cudaStream_t s = (cudaStream_t)stream;
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    polyattn_event *e0 = NULL, *e1 = NULL;
    const char *fail = NULL;
    if (polyattn_event_create(ctx, &e0) != POLYATTN_STATUS_SUCCESS ||
        polyattn_event_create(ctx, &e1) != POLYATTN_STATUS_SUCCESS) {
        fail = "event";
        goto out;
    }
    if (cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed) != cudaSuccess) {
        fail = "graph capture";
        goto out;
    }
    for (int i = 0; i < n_calls && !fail; i++)
        if (call(arg, i) != POLYATTN_STATUS_SUCCESS) fail = "call under graph capture";
    if (cudaStreamEndCapture(s, &graph) != cudaSuccess && !fail) fail = "graph capture";
    if (!fail && cudaGraphInstantiate(&exec, graph, 0) != cudaSuccess) fail = "graph instantiate";
    if (!fail && cudaGraphLaunch(exec, s) != cudaSuccess) /* warm-up replay */
        fail = "graph launch";
    for (int r = 0; !fail && r < reps; r++) {
        if (polyattn_event_record(e0) != POLYATTN_STATUS_SUCCESS ||
            cudaGraphLaunch(exec, s) != cudaSuccess ||
            polyattn_event_record(e1) != POLYATTN_STATUS_SUCCESS ||
            polyattn_event_elapsed_ms(e0, e1, &times[r]) != POLYATTN_STATUS_SUCCESS)
            fail = "graph replay";
        else times[r] /= n_calls;
    }
out:
    if (exec) cudaGraphExecDestroy(exec);
    if (graph) cudaGraphDestroy(graph);
    polyattn_event_destroy(e0);
    polyattn_event_destroy(e1);
    return fail;
}

#else /* no CUDA backend in this build */

int pa_bench_graph_available(void) { return 0; }

polyattn_status pa_bench_graph_context(int device, polyattn_context **ctx, void **stream,
                                       const char **why)
{
    (void)device;
    *ctx = NULL;
    *stream = NULL;
    *why = "this polyattn was built without the CUDA backend";
    return POLYATTN_STATUS_UNSUPPORTED;
}

void pa_bench_graph_context_destroy(polyattn_context *ctx, void *stream)
{
    (void)stream;
    polyattn_context_destroy(ctx);
}

const char *pa_bench_graph_time(void *stream, polyattn_context *ctx, pa_bench_call_fn call,
                                void *arg, int n_calls, int reps, double *times)
{
    (void)stream, (void)ctx, (void)call, (void)arg, (void)n_calls, (void)reps, (void)times;
    return "CUDA graphs: this polyattn was built without the CUDA backend";
}

#endif
