/* Kernel programs: device build options (every quirk in one place), an in-memory cache
 * per device and a disk cache of program binaries shared between processes. */
#include "ocl_internal.h"
#include "ocl_sources.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void ocl_device_options(const ocl_caps *c, char *buf, size_t size)
{
    /* -cl-mad-enable lets fma-contraction happen; no fast-relaxed-math: masked scores are
     * -inf and fully masked rows must stay exact. */
    int n = snprintf(buf, size, "-cl-std=CL1.2 -cl-mad-enable");
    if (c->fp16 && n > 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, " -DPA_HAVE_FP16=1");
    if (c->subgroup_size && n > 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, " -DPA_SUBGROUP_SIZE=%d", c->subgroup_size);
    if (c->is_nvidia && n > 0 && (size_t)n < size)
        /* NVIDIA: keep denormals of f32 (their default flushes only with fast math). */
        n += snprintf(buf + n, size - (size_t)n, " -DPA_NVIDIA=1");
    if (c->is_pocl && n > 0 && (size_t)n < size)
        n += snprintf(buf + n, size - (size_t)n, " -DPA_POCL=1");
    (void)n;
}

static const pa_ocl_source *find_source(const char *name)
{
    for (size_t i = 0; i < pa_ocl_n_sources; i++)
        if (strcmp(pa_ocl_sources[i].name, name) == 0) return &pa_ocl_sources[i];
    return NULL;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static uint64_t fnv1a(const void *data, size_t n, uint64_t h)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
#define FNV_SEED 0xcbf29ce484222325ull

/* ---- disk cache ---------------------------------------------------------- */

static const char cache_magic[10] = {'P', 'A', 'O', 'C', 'L', 'B', 'I', 'N', '1', '\n'};

/* Fills dir with the cache folder (created); 0 when disabled or unusable. */
static int cache_dir(char *dir, size_t size)
{
    const char *env = getenv("POLYATTN_CACHE_DIR");
    if (env && (strcmp(env, "off") == 0 || strcmp(env, "0") == 0)) return 0;
    if (env && env[0]) {
        snprintf(dir, size, "%s", env);
    } else {
        const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
        if (xdg && xdg[0]) snprintf(dir, size, "%s/polyattn", xdg);
        else if (home && home[0]) snprintf(dir, size, "%s/.cache/polyattn", home);
        else return 0;
    }
    /* mkdir -p */
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        mkdir(tmp, 0755);
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return 0;
    return 1;
}

static int read_file(const char *path, unsigned char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ok = 0;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n > 0 && fseek(f, 0, SEEK_SET) == 0) {
            *data = malloc((size_t)n);
            if (*data && fread(*data, 1, (size_t)n, f) == (size_t)n) {
                *len = (size_t)n;
                ok = 1;
            } else {
                free(*data);
                *data = NULL;
            }
        }
    }
    fclose(f);
    return ok;
}

/* Returns the binary inside a cache file if every check passes (magic, exact key, sizes,
 * checksum); NULL otherwise: such an entry is rebuilt, never trusted. */
static const unsigned char *cache_parse(const unsigned char *data, size_t len, const char *key,
                                        size_t *bin_len, const char **why)
{
    size_t key_len = strlen(key), at = 0;
    uint64_t n = 0;
    if (len < sizeof cache_magic + 24 || memcmp(data, cache_magic, sizeof cache_magic) != 0) {
        *why = "bad header";
        return NULL;
    }
    at = sizeof cache_magic;
    memcpy(&n, data + at, 8);
    at += 8;
    if (n != key_len || len - at < key_len || memcmp(data + at, key, key_len) != 0) {
        *why = "key mismatch (stale)";
        return NULL;
    }
    at += key_len;
    if (len - at < 16) {
        *why = "truncated";
        return NULL;
    }
    memcpy(&n, data + at, 8);
    at += 8;
    if (n == 0 || n != (uint64_t)(len - at - 8)) {
        *why = "truncated or oversized";
        return NULL;
    }
    uint64_t sum = 0;
    memcpy(&sum, data + len - 8, 8);
    if (sum != fnv1a(data + at, (size_t)n, FNV_SEED)) {
        *why = "checksum mismatch (corrupt)";
        return NULL;
    }
    *bin_len = (size_t)n;
    return data + at;
}

static void cache_write(const char *path, const char *key, const unsigned char *bin, size_t bin_len)
{
    static unsigned counter;
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%u", path, (long)getpid(), counter++);
    FILE *f = fopen(tmp, "wb");
    if (!f) return;
    uint64_t key_len = strlen(key), n = bin_len, sum = fnv1a(bin, bin_len, FNV_SEED);
    int ok = fwrite(cache_magic, 1, sizeof cache_magic, f) == sizeof cache_magic &&
             fwrite(&key_len, 8, 1, f) == 1 && fwrite(key, 1, key_len, f) == key_len &&
             fwrite(&n, 8, 1, f) == 1 && fwrite(bin, 1, bin_len, f) == bin_len &&
             fwrite(&sum, 8, 1, f) == 1;
    ok = (fclose(f) == 0) && ok;
    /* rename is atomic: readers see the old entry or the whole new one. */
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        pa_log(POLYATTN_LOG_BUILD, "opencl: could not write the kernel cache entry %s", path);
    }
}

static cl_int build(cl_program prog, cl_device_id dev, const char *options)
{
    return clBuildProgram(prog, 1, &dev, options, NULL, NULL);
}

static polyattn_status build_failed(ocl_device *d, cl_program prog, cl_int err, const char *names)
{
    size_t log_len = 0;
    char *log = NULL;
    if (clGetProgramBuildInfo(prog, d->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &log_len) ==
            CL_SUCCESS &&
        (log = calloc(1, log_len + 1)) != NULL)
        clGetProgramBuildInfo(prog, d->device, CL_PROGRAM_BUILD_LOG, log_len, log, NULL);
    pa_log(POLYATTN_LOG_BUILD, "opencl: build log of %s:\n%s", names, log ? log : "");
    polyattn_status st = pa_fail(&d->base, POLYATTN_STATUS_KERNEL_BUILD_FAILED,
                                 "opencl: building kernels %s failed: %s (%d); build log: %s",
                                 names, ocl_error_name(err), (int)err, log ? log : "(none)");
    free(log);
    return st;
}

static cl_program try_disk(ocl_device *d, const char *path, const char *key, const char *options)
{
    unsigned char *data = NULL;
    size_t len = 0, bin_len = 0;
    if (!read_file(path, &data, &len)) return NULL;
    const char *why = NULL;
    const unsigned char *bin = cache_parse(data, len, key, &bin_len, &why);
    cl_program prog = NULL;
    if (bin) {
        cl_int bst = CL_SUCCESS, err = CL_SUCCESS;
        prog = clCreateProgramWithBinary(d->context, 1, &d->device, &bin_len, &bin, &bst, &err);
        if (err != CL_SUCCESS || bst != CL_SUCCESS) {
            why = "the driver refused the binary";
            if (prog) clReleaseProgram(prog);
            prog = NULL;
        } else if (build(prog, d->device, options) != CL_SUCCESS) {
            why = "the binary did not build";
            clReleaseProgram(prog);
            prog = NULL;
        }
    }
    if (!prog) pa_log(POLYATTN_LOG_BUILD, "opencl: cache entry %s ignored: %s", path, why);
    free(data);
    return prog;
}

static void save_disk(ocl_device *d, cl_program prog, const char *path, const char *key)
{
    size_t bin_len = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof bin_len, &bin_len, NULL) !=
            CL_SUCCESS ||
        bin_len == 0)
        return;
    unsigned char *bin = malloc(bin_len);
    if (!bin) return;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) == CL_SUCCESS)
        cache_write(path, key, bin, bin_len);
    (void)d;
    free(bin);
}

/* ---- the one entry point ------------------------------------------------- */

polyattn_status ocl_get_program(ocl_device *d, const char *const *sources, int n_sources,
                                const char *options, cl_program *out)
{
    double t0 = now_ms();
    char names[256] = "", full_opts[1024];
    char dev_opts[512];
    ocl_device_options(&d->caps, dev_opts, sizeof dev_opts);
    snprintf(full_opts, sizeof full_opts, "%s %s", options, dev_opts);

    /* Key: every source's hash, the options, the device, driver and library versions. */
    size_t key_cap = 4096;
    char *key = malloc(key_cap);
    if (!key) return POLYATTN_STATUS_OUT_OF_MEMORY;
    int kn = snprintf(key, key_cap,
                      "polyattn-opencl-cache 1\nlibrary=%s\ndevice=%s\nvendor=%s\ndriver=%s\n"
                      "platform=%s\noptions=%s\n",
                      POLYATTN_LIBRARY_VERSION, d->caps.name, d->caps.vendor, d->caps.driver,
                      d->caps.platform, full_opts);
    const pa_ocl_source *src[8];
    if (n_sources > 8) n_sources = 8;
    for (int i = 0; i < n_sources; i++) {
        src[i] = find_source(sources[i]);
        if (!src[i]) {
            free(key);
            return pa_fail(&d->base, POLYATTN_STATUS_INTERNAL_ERROR,
                           "opencl: kernel source '%s' is not embedded", sources[i]);
        }
        if (kn > 0 && (size_t)kn < key_cap)
            kn += snprintf(key + kn, key_cap - (size_t)kn, "source=%s:%s\n", src[i]->name,
                           src[i]->sha256);
        size_t nl = strlen(names);
        snprintf(names + nl, sizeof names - nl, "%s%s.cl", i ? "+" : "", src[i]->name);
    }

    for (ocl_program_entry *e = d->programs; e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            free(key);
            *out = e->program;
            d->last_build_ms = now_ms() - t0;
            d->last_build_from_disk = 0;
            return POLYATTN_STATUS_SUCCESS;
        }

    char dir[1024], path[1100];
    int use_disk = cache_dir(dir, sizeof dir);
    if (use_disk)
        snprintf(path, sizeof path, "%s/ocl-%016llx.bin", dir,
                 (unsigned long long)fnv1a(key, strlen(key), FNV_SEED));
    cl_program prog = use_disk ? try_disk(d, path, key, full_opts) : NULL;
    int from_disk = prog != NULL;
    if (!prog) {
        const char *texts[8];
        size_t lens[8];
        for (int i = 0; i < n_sources; i++) {
            texts[i] = src[i]->text;
            lens[i] = src[i]->length;
        }
        cl_int err = CL_SUCCESS;
        prog = clCreateProgramWithSource(d->context, (cl_uint)n_sources, texts, lens, &err);
        if (err != CL_SUCCESS) {
            free(key);
            return ocl_fail(d, err, "clCreateProgramWithSource");
        }
        err = build(prog, d->device, full_opts);
        if (err != CL_SUCCESS) {
            polyattn_status st = build_failed(d, prog, err, names);
            clReleaseProgram(prog);
            free(key);
            return st;
        }
        if (use_disk) save_disk(d, prog, path, key);
    }
    ocl_program_entry *e = calloc(1, sizeof *e);
    if (!e) {
        clReleaseProgram(prog);
        free(key);
        return POLYATTN_STATUS_OUT_OF_MEMORY;
    }
    e->key = key;
    e->program = prog;
    e->next = d->programs;
    d->programs = e;
    *out = prog;
    d->last_build_ms = now_ms() - t0;
    d->last_build_from_disk = from_disk;
    pa_log(POLYATTN_LOG_BUILD, "opencl: %s %s in %.1f ms [%s]", from_disk ? "loaded" : "built",
           names, d->last_build_ms, options);
    return POLYATTN_STATUS_SUCCESS;
}

void ocl_release_programs(ocl_device *d)
{
    ocl_program_entry *e = d->programs;
    while (e) {
        ocl_program_entry *next = e->next;
        clReleaseProgram(e->program);
        free(e->key);
        free(e);
        e = next;
    }
    d->programs = NULL;
}
