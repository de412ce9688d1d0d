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
    /* CUDA's tensor-core serving kernel runs the 16-bit cases at its head dims: at least
     * one must run (and pass). */
    int tensor_cores;
    /* The context forces a kernel that may refuse some cases (flash UNSUPPORTED allowed). */
    int flash_may_refuse;
} serving_suite_options;

typedef struct polyattn_context polyattn_context;

/* The context the fixture builds on and plans with. */
void serving_suite_use(polyattn_context *context);
/* Returns the failures it added. */
int serving_gpu_suite(const serving_suite_options *o);

#endif
