/*
 * Serving layouts on the CUDA backend against the host's double reference
 * (tests/serving_gpu_suite.c: varlen q/kv, dense and paged caches with shuffled and shared
 * blocks, KV append, GQA, both causal alignments, empty sequences, windows, softcap, ALiBi,
 * sinks; f32/f16/bf16; every algorithm whose plan accepts the case, flash with forced and
 * chosen key splits; varlen backward).  polyattn_merge_states on CUDA: test_merge_states
 * cuda.  Exits 77 without a CUDA device.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include "serving_gpu_suite.h"

#include "polyattn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* --simt: the same cases on the shared generic kernel's serving copy
 * (POLYATTN_FORCE=cuda.flash=simt), whose forced split counts are checked; --mma: on the
 * mma.sync serving kernel with a 3-stage K/V ring (cuda.flash=mma, which refuses what it
 * cannot take, and cuda.serving_stages=3); --wgmma: on the Hopper kernel (cuda.flash=wgmma:
 * sm_90, varlen and dense caches; it refuses the rest); by default flash runs the tensor-core
 * serving kernel where it takes the case (16-bit, head dims 64, 128, 256), the generic kernel
 * elsewhere. */
int main(int argc, char **argv)
{
    int simt = 0, mma = 0, wgmma = 0, verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--simt")) simt = 1;
        else if (!strcmp(argv[i], "--mma")) mma = 1;
        else if (!strcmp(argv[i], "--wgmma")) wgmma = 1;
        else if (!strcmp(argv[i], "-v")) verbose = 1;
        else {
            fprintf(stderr, "usage: test_cuda_serving [--simt | --mma | --wgmma] [-v]\n");
            return 2;
        }
    }
    /* a 3-deep K/V ring with --mma, whose stages wrap unevenly (the default: 2); keys
     * already set (cuda.hopper_sched=...) stay */
    if (simt || mma || wgmma) {
        const char *had = getenv("POLYATTN_FORCE");
        char force[256];
        snprintf(force, sizeof force, "%s%s%s",
                 simt  ? "cuda.flash=simt"
                 : mma ? "cuda.flash=mma,cuda.serving_stages=3"
                       : "cuda.flash=wgmma",
                 had && *had ? "," : "", had ? had : "");
        setenv("POLYATTN_FORCE", force, 1);
    }
    polyattn_context *context = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_CUDA, 0, &context) != POLYATTN_STATUS_SUCCESS) {
        printf("no CUDA device: skipped\n");
        return 77;
    }
    polyattn_device_info info;
    memset(&info, 0, sizeof info);
    info.struct_size = sizeof info;
    if (wgmma && (polyattn_context_get_device_info(context, &info) != POLYATTN_STATUS_SUCCESS ||
                  strcmp(info.arch, "sm_90") != 0)) {
        printf("the Hopper kernel runs on sm_90 only (this device: %s): skipped\n", info.arch);
        polyattn_context_destroy(context);
        return 77;
    }
    serving_suite_use(context);
    serving_suite_options o = {.label = simt    ? "cuda (generic kernel)"
                                        : mma   ? "cuda (mma.sync serving kernel)"
                                        : wgmma ? "cuda (Hopper kernel)"
                                                : "cuda",
                               .generic_splits = simt,
                               .tol_scale = 2.0,
                               .verbose = verbose,
                               .tensor_cores = !simt,
                               .flash_may_refuse = mma || wgmma};
    const int failed = serving_gpu_suite(&o);
    polyattn_context_destroy(context);
    return failed ? 1 : 0;
}
