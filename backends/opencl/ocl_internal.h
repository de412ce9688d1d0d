/* Internal declarations of the OpenCL backend module. */
#ifndef OCL_INTERNAL_H
#define OCL_INTERNAL_H

#include "pa_backend.h"

#include <CL/cl.h>

/* What discovery learned about a device; quirks and tile choices read only this. */
typedef struct ocl_caps {
    char name[256], vendor[128], driver[128], version[128], c_version[64], platform[256];
    cl_device_type type;
    cl_uint vendor_id;
    uint64_t global_mem, local_mem, max_alloc;
    int compute_units, max_wg;
    int subgroups;     /* cl_khr_subgroups or cl_intel_subgroups */
    int subgroup_size; /* best guess: Intel required sizes, NVIDIA 32, AMD 64, else 0 */
    int fp16;          /* cl_khr_fp16 */
    int is_nvidia, is_amd, is_intel, is_pocl, is_cpu;
} ocl_caps;

typedef struct ocl_program_entry {
    struct ocl_program_entry *next;
    char *key; /* sources + options */
    cl_program program;
} ocl_program_entry;

typedef struct ocl_device {
    pa_device base; /* first member */
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    int owns_context, owns_queue;
    ocl_caps caps;
    ocl_program_entry *programs; /* in-memory cache of built programs */
    double last_build_ms;        /* of the latest ocl_get_program (tests read it) */
    int last_build_from_disk;
    char note[4][400];     /* per algorithm: how an eligible check says it will run */
    char force_error[320]; /* why a POLYATTN_FORCE opencl.* value was refused */
} ocl_device;

const char *ocl_error_name(cl_int err);
/* Maps a CL error to a status and records "what: CL_NAME (code)" as the last error. */
polyattn_status ocl_fail(ocl_device *d, cl_int err, const char *what);

polyattn_status ocl_probe_caps(cl_device_id dev, ocl_caps *caps);
/* Opens a device on caller-owned (or, with NULL handles, new) context and queue. */
polyattn_status ocl_device_create(cl_device_id dev_id, cl_context ctx, cl_command_queue queue,
                                  ocl_device **out);
int ocl_device_index_of(cl_device_id dev);
extern const pa_backend_ops ocl_backend_ops;

/* Programs: sources are names of embedded files concatenated in order ("common", "tile",
 * "flash"); options are -D flags, to which the device's quirk options are appended. */
polyattn_status ocl_get_program(ocl_device *d, const char *const *sources, int n_sources,
                                const char *options, cl_program *out);
void ocl_release_programs(ocl_device *d);
/* Options every build gets on this device: all device quirks live here. */
void ocl_device_options(const ocl_caps *caps, char *buf, size_t size);

#define OCL_N_ALGOS 3
extern const pa_algo_ops ocl_algos[OCL_N_ALGOS];

#endif
