/*
 * e4m3 inputs on a GPU backend (argv[1]: cuda, hip or opencl): flash (CUDA and HIP: the
 * shared generic kernel; OpenCL: its flash kernels) against the host backend (tests/e4m3_gpu_suite.c: codes, descales, odd sizes,
 * GQA, both causal alignments, f32/f16/bf16 O, KV append, paged and varlen layouts, key
 * splits), and the other algorithms' refusals.  Exits 77 without a device.
 */
#include "e4m3_gpu_suite.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "cuda";
    const polyattn_backend backend = strcmp(name, "hip") == 0      ? POLYATTN_BACKEND_HIP
                                     : strcmp(name, "opencl") == 0 ? POLYATTN_BACKEND_OPENCL
                                                                   : POLYATTN_BACKEND_CUDA;
    int n = 0;
    polyattn_context *ctx = NULL;
    if (polyattn_device_count(backend, &n, NULL) != POLYATTN_STATUS_SUCCESS || n == 0 ||
        polyattn_context_create(backend, 0, &ctx) != POLYATTN_STATUS_SUCCESS) {
        printf("no %s device: skipped\n", name);
        return 77;
    }
    const int failed = e4m3_gpu_suite(ctx, name, argc > 2 && strcmp(argv[2], "-v") == 0);
    polyattn_context_destroy(ctx);
    return failed ? 1 : 0;
}
