/*
 * Serving layouts on the HIP backend against the host's double reference
 * (tests/serving_gpu_suite.c: varlen q/kv, dense and paged caches with shuffled and shared
 * blocks, KV append, GQA, both causal alignments, empty sequences, windows, softcap, ALiBi,
 * sinks; f32/f16/bf16; every algorithm whose plan accepts the case, flash with forced and
 * chosen key splits; varlen backward).  polyattn_merge_states on HIP: test_merge_states
 * hip.  Exits 77 without a HIP device.
 */
#include "serving_gpu_suite.h"

#include "polyattn.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    polyattn_context *context = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_HIP, 0, &context) != POLYATTN_STATUS_SUCCESS) {
        printf("no HIP device: skipped\n");
        return 77;
    }
    serving_suite_use(context);
    serving_suite_options o = {.label = "hip",
                               .generic_splits = 1,
                               .tol_scale = 2.0,
                               .verbose = argc > 1 && strcmp(argv[1], "-v") == 0};
    const int failed = serving_gpu_suite(&o);
    polyattn_context_destroy(context);
    return failed ? 1 : 0;
}
