/* e4m3 inputs through a GPU backend's flash (the shared generic kernel on CUDA and HIP)
 * against the host backend: random e4m3 bytes (every finite code, subnormals, +-448, +-0),
 * descales, odd sizes, GQA, both causal alignments, BSHD, O in f32/f16/bf16, every element
 * and the LSE of poisoned outputs; the 256 codes through a one-key forward; a KV cache with
 * appended rows and key splits, a paged cache, varlen queries, a window with softcap; the
 * other algorithms' refusals.  Used by tests/test_gpu_e4m3.c (a real device) and the emulated HIP device. */
#ifndef E4M3_GPU_SUITE_H
#define E4M3_GPU_SUITE_H

#include "polyattn.h"

/* Runs every check on `gpu` (a context of the backend under test); returns the failures. */
int e4m3_gpu_suite(polyattn_context *gpu, const char *label, int verbose);

#endif
