/*
 * Minimal .npy I/O for the polyattn CLI: float32 little-endian, C order.
 * Reads header versions 1.0, 2.0 and 3.0; writes version 1.0 with a 64-byte aligned header.
 */
#ifndef PA_NPY_H
#define PA_NPY_H

#include <stdint.h>
#include <stdio.h>

#define PA_NPY_MAX_RANK 8

typedef struct pa_npy_array {
    int rank;
    int64_t shape[PA_NPY_MAX_RANK];
    uint64_t count; /* product of shape (1 for rank 0) */
    float *data;    /* count floats, malloc'd (pa_npy_read_f32) */
    uint8_t *bytes; /* count bytes, malloc'd (pa_npy_read_u8) */
    int32_t *ints;  /* count int32, malloc'd (pa_npy_read_i32) */
} pa_npy_array;

/* Reads a '<f4', C-order .npy file.  On failure returns nonzero and writes one line (no
 * newline, without the path) into err, e.g. "dtype is '<f8' (float64), expected '<f4'". */
int pa_npy_read_f32(const char *path, pa_npy_array *out, char *err, size_t err_size);
/* Reads a '|b1' (bool) or '|u1' (uint8) C-order .npy file into out->bytes. */
int pa_npy_read_u8(const char *path, pa_npy_array *out, char *err, size_t err_size);
/* Reads a '<i4' (int32) or '<i8' (int64, each value within int32) C-order .npy file into
 * out->ints. */
int pa_npy_read_i32(const char *path, pa_npy_array *out, char *err, size_t err_size);
void pa_npy_free(pa_npy_array *array);

/* Writes a version 1.0 '<f4' C-order array to an open stream.  Returns 0 on success. */
int pa_npy_write_f32(FILE *file, const float *data, int rank, const int64_t *shape);

#endif /* PA_NPY_H */
