/*
 * Multi-GPU launcher for polyattn_cp's run-time test and bench: one process drives
 * `world` GPUs (0 .. world-1) with one thread each, over communicators made by
 * ncclCommInitAll.  (polyattn_cp itself takes any communicator: one process per GPU with
 * ncclCommInitRank works the same.)
 */
#ifndef PA_CP_LAUNCH_H
#define PA_CP_LAUNCH_H

#include "polyattn_cp.h"

#include <cuda_runtime.h>
#include <nccl.h>
#include <pthread.h>

typedef struct pa_cp_rank {
    int rank, world;
    ncclComm_t comm;
    cudaStream_t stream;
    pthread_barrier_t *barrier; /* all ranks */
    void *user;
} pa_cp_rank;

/* Runs fn(rank) on each rank's thread (its device current); returns 0 when every rank
 * returned 0, else the first non-zero result.  Needs world <= pa_cp_gpu_count(). */
int pa_cp_launch(int world, int (*fn)(pa_cp_rank *rank), void *user);
int pa_cp_gpu_count(void);

/* Host <-> device copies of one rank's rows of a global [outer, seq, width] tensor of
 * `esize`-byte elements (the rank's chunks in local order). */
int pa_cp_scatter_rows(void *dev, const void *global, const polyattn_cp_desc *d, int64_t outer,
                       int64_t width, size_t esize);
int pa_cp_gather_rows(void *global, const void *dev, const polyattn_cp_desc *d, int64_t outer,
                      int64_t width, size_t esize);

#endif
