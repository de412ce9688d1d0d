/* One thread per GPU over ncclCommInitAll communicators (see cp_launch.h). */
#include "cp_launch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pa_cp_gpu_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    return n;
}

typedef struct thread_arg {
    pa_cp_rank rank;
    int (*fn)(pa_cp_rank *);
    int result;
} thread_arg;

static void *rank_thread(void *p)
{
    thread_arg *a = p;
    if (cudaSetDevice(a->rank.rank) != cudaSuccess ||
        cudaStreamCreateWithFlags(&a->rank.stream, cudaStreamNonBlocking) != cudaSuccess) {
        fprintf(stderr, "rank %d: cannot use its GPU\n", a->rank.rank);
        a->result = 1;
        pthread_barrier_wait(a->rank.barrier); /* the others may wait on it once */
        return NULL;
    }
    a->result = a->fn(&a->rank);
    cudaStreamSynchronize(a->rank.stream);
    cudaStreamDestroy(a->rank.stream);
    return NULL;
}

int pa_cp_launch(int world, int (*fn)(pa_cp_rank *), void *user)
{
    if (world < 1 || world > pa_cp_gpu_count()) return 1;
    ncclComm_t *comms = calloc((size_t)world, sizeof *comms);
    int *devs = calloc((size_t)world, sizeof *devs);
    thread_arg *args = calloc((size_t)world, sizeof *args);
    pthread_t *threads = calloc((size_t)world, sizeof *threads);
    pthread_barrier_t barrier;
    int result = 1;
    if (!comms || !devs || !args || !threads) goto out;
    for (int i = 0; i < world; i++)
        devs[i] = i;
    ncclResult_t nr = ncclCommInitAll(comms, world, devs);
    if (nr != ncclSuccess) {
        fprintf(stderr, "ncclCommInitAll(%d): %s\n", world, ncclGetErrorString(nr));
        goto out;
    }
    pthread_barrier_init(&barrier, NULL, (unsigned)world);
    for (int i = 0; i < world; i++) {
        args[i].rank.rank = i;
        args[i].rank.world = world;
        args[i].rank.comm = comms[i];
        args[i].rank.barrier = &barrier;
        args[i].rank.user = user;
        args[i].fn = fn;
        pthread_create(&threads[i], NULL, rank_thread, &args[i]);
    }
    result = 0;
    for (int i = 0; i < world; i++) {
        pthread_join(threads[i], NULL);
        if (args[i].result && !result) result = args[i].result;
    }
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < world; i++)
        ncclCommDestroy(comms[i]);
out:
    free(comms);
    free(devs);
    free(args);
    free(threads);
    return result;
}

static int copy_rows(void *dev, void *host, const polyattn_cp_desc *d, int64_t outer, int64_t width,
                     size_t esize, int to_dev)
{
    int64_t begin[2], len[2];
    int n = polyattn_cp_local_chunks(d, d->rank, begin, len);
    int64_t rows = polyattn_cp_local_seq(d, d->rank);
    size_t row_bytes = (size_t)width * esize;
    for (int64_t o = 0; o < outer; o++) {
        int64_t lrow = 0;
        for (int k = 0; k < n; k++) {
            char *h = (char *)host + (size_t)(o * d->seq + begin[k]) * row_bytes;
            char *g = (char *)dev + (size_t)(o * rows + lrow) * row_bytes;
            size_t bytes = (size_t)len[k] * row_bytes;
            cudaError_t e = to_dev ? cudaMemcpy(g, h, bytes, cudaMemcpyHostToDevice)
                                   : cudaMemcpy(h, g, bytes, cudaMemcpyDeviceToHost);
            if (e != cudaSuccess) return 1;
            lrow += len[k];
        }
    }
    return 0;
}

int pa_cp_scatter_rows(void *dev, const void *global, const polyattn_cp_desc *d, int64_t outer,
                       int64_t width, size_t esize)
{
    return copy_rows(dev, (void *)global, d, outer, width, esize, 1);
}

int pa_cp_gather_rows(void *global, const void *dev, const polyattn_cp_desc *d, int64_t outer,
                      int64_t width, size_t esize)
{
    return copy_rows((void *)dev, global, d, outer, width, esize, 0);
}
