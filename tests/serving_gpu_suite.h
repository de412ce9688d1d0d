/* The serving cases of the GPU backends (serving_gpu_suite.c), run on the context in the
 * fixture's `ctx`. */
#ifndef SERVING_GPU_SUITE_H
#define SERVING_GPU_SUITE_H

typedef struct serving_suite_options {
    const char *label;  /* "cuda", "hip", ... */
    int quick;          /* a subset: flash only, each dtype on a third of the cases */
    int generic_splits; /* flash runs the shared generic kernel: forced splits are checked */
    double tol_scale;   /* O tolerance x this (0: the host's) */
    int verbose;        /* a line per run, not only per failure */
    /* The context forces CUDA's tensor-core serving kernel (cuda.flash=mma): flash refuses
     * what that kernel cannot take (f32, other head dims); what it takes must pass, and at
     * least one 16-bit case at its head dims must run. */
    int tensor_cores;
} serving_suite_options;

typedef struct polyattn_context polyattn_context;

/* The context the fixture builds on and plans with. */
void serving_suite_use(polyattn_context *context);
/* Returns the failures it added. */
int serving_gpu_suite(const serving_suite_options *o);

#endif
