/* Kernel sources embedded at build time (cmake/PolyattnEmbedKernels.cmake). */
#ifndef OCL_SOURCES_H
#define OCL_SOURCES_H

#include <stddef.h>

typedef struct pa_ocl_source {
    const char *name; /* file base name: "flash" for kernels/flash.cl */
    const char *text; /* NUL-terminated */
    size_t length;
    const char *sha256; /* of text: part of the disk-cache key */
} pa_ocl_source;

extern const pa_ocl_source pa_ocl_sources[];
extern const size_t pa_ocl_n_sources;

#endif
