/*
 * The hip backend without an AMD GPU, and with one.
 *
 *   test_hip_backend probe
 *     The module as built.  Without a GPU (CI): hip reports 0 devices, SUCCESS and a reason
 *     from the HIP runtime, and the host backend runs.  With a GPU: every device's probed
 *     properties are sane, a context opens (its self-test kernel runs) and each algorithm
 *     either runs one case within tolerance or is rejected with a reason.
 *
 *   test_hip_backend hidden MODULE
 *     A machine without the ROCm runtime: a copy of MODULE whose DT_NEEDED entry names a
 *     libamdhip64 that does not exist is put in a fresh folder named by POLYATTN_MODULE_PATH.
 *     The module then fails to load exactly as on such a machine; hip must report 0 devices
 *     with the loader's reason, creating a hip context must fail cleanly, and the host
 *     backend must still compute attention correctly.
 */
#define _POSIX_C_SOURCE 200809L
#include "pa_testkit.h"
#include "polyattn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int failures;

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                            \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

/* One case of the shared table on a context, flash and unfused, against the reference. */
static void run_case(polyattn_context *ctx, const char *label, int require_run)
{
    size_t n = 0;
    const pa_tk_case *cases = pa_tk_cases(&n);
    EXPECT(n > 0, "empty case table");
    if (n == 0) return;
    /* The first case that is not trivially small is enough here: conformance runs all. */
    const pa_tk_case *c = &cases[0];
    for (size_t i = 0; i < n; i++)
        if (cases[i].seq_q > 16 && cases[i].seq_q < 200 && cases[i].head_dim <= 128) {
            c = &cases[i];
            break;
        }
    const polyattn_algo algos[] = {POLYATTN_ALGO_UNFUSED, POLYATTN_ALGO_FUSED, POLYATTN_ALGO_FLASH};
    for (size_t a = 0; a < sizeof algos / sizeof algos[0]; a++) {
        pa_tk_problem p;
        polyattn_status st = pa_tk_problem_init(&p, c, POLYATTN_DTYPE_F32, 0x41d);
        EXPECT(st == POLYATTN_STATUS_SUCCESS, "problem init: %s", polyattn_status_name(st));
        if (st != POLYATTN_STATUS_SUCCESS) return;
        pa_tk_result r;
        st = pa_tk_run(ctx, &p, algos[a], 1, 0, &r);
        if (!r.planned && r.status == POLYATTN_STATUS_UNSUPPORTED && !require_run) {
            printf("  %s %s on %s: unsupported: %s\n", label, polyattn_algo_name(algos[a]), c->name,
                   r.message);
            EXPECT(r.message[0] != '\0', "UNSUPPORTED without a reason");
        } else {
            printf("  %s %s on %s: %s, max |dO| %.3g, bad elements %lld %s\n", label,
                   polyattn_algo_name(algos[a]), c->name, r.pass ? "pass" : "FAIL", r.o_max_abs,
                   r.bad_elements, r.message);
            EXPECT(st == POLYATTN_STATUS_SUCCESS && r.pass, "%s %s on %s: %s (%s)", label,
                   polyattn_algo_name(algos[a]), c->name, polyattn_status_name(r.status),
                   r.message);
        }
        pa_tk_problem_free(&p);
    }
}

static void host_still_works(void)
{
    polyattn_context *host = NULL;
    polyattn_status st = polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &host);
    EXPECT(st == POLYATTN_STATUS_SUCCESS, "host context: %s", polyattn_last_error());
    if (st != POLYATTN_STATUS_SUCCESS) return;
    run_case(host, "host", 0);
    polyattn_context_destroy(host);
}

static int mode_probe(void)
{
    EXPECT(polyattn_backend_compiled(POLYATTN_BACKEND_HIP), "hip is not compiled in");
    int count = -1;
    const char *reason = NULL;
    polyattn_status st = polyattn_device_count(POLYATTN_BACKEND_HIP, &count, &reason);
    EXPECT(st == POLYATTN_STATUS_SUCCESS, "device_count: %s", polyattn_status_name(st));
    printf("hip devices: %d%s%s\n", count, count ? "" : ": ", count ? "" : (reason ? reason : "?"));
    if (count == 0) {
        /* The module loaded (libamdhip64 is installed) and its probe explained itself. */
        EXPECT(reason && strstr(reason, "HIP runtime"),
               "reason does not come from the hip probe: %s", reason ? reason : "(null)");
        polyattn_context *ctx = NULL;
        st = polyattn_context_create(POLYATTN_BACKEND_HIP, 0, &ctx);
        EXPECT(st == POLYATTN_STATUS_NOT_FOUND && ctx == NULL, "hip context without a device: %s",
               polyattn_status_name(st));
        printf("hip context refused: %s\n", polyattn_last_error());
        host_still_works();
        return failures ? 1 : 0;
    }
    for (int i = 0; i < count; i++) {
        polyattn_device_info info;
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        st = polyattn_device_get_info(POLYATTN_BACKEND_HIP, i, &info);
        EXPECT(st == POLYATTN_STATUS_SUCCESS, "device_info %d: %s", i, polyattn_last_error());
        printf("hip %d: %s, %s, %d CUs, LDS %llu B, wavefront %d, %llu MiB, %s\n", i, info.name,
               info.arch, info.compute_units, (unsigned long long)info.local_mem_bytes,
               info.subgroup_size, (unsigned long long)(info.global_mem_bytes >> 20),
               info.driver_version);
        EXPECT(strncmp(info.arch, "gfx", 3) == 0, "arch %s", info.arch);
        EXPECT(info.subgroup_size == 32 || info.subgroup_size == 64, "wavefront %d",
               info.subgroup_size);
        EXPECT(info.local_mem_bytes >= 32768, "LDS %llu", (unsigned long long)info.local_mem_bytes);
        EXPECT(info.compute_units > 0 && info.global_mem_bytes > 0, "CUs / memory");
        polyattn_context *ctx = NULL;
        st = polyattn_context_create(POLYATTN_BACKEND_HIP, i, &ctx);
        if (st == POLYATTN_STATUS_UNSUPPORTED) {
            /* A GPU this build has no code object for: refused with advice, not a crash. */
            printf("hip %d refused: %s\n", i, polyattn_last_error());
            EXPECT(strstr(polyattn_last_error(), "POLYATTN_HIP_ARCHITECTURES"), "no advice");
            continue;
        }
        EXPECT(st == POLYATTN_STATUS_SUCCESS, "hip context %d: %s", i, polyattn_last_error());
        if (st != POLYATTN_STATUS_SUCCESS) continue;
        run_case(ctx, "hip", 0);
        polyattn_context_destroy(ctx);
    }
    return failures ? 1 : 0;
}

/* Copies MODULE to DIR/libpolyattn_hip.so with its libamdhip64 dependency renamed to a
 * library that does not exist (same length, so the ELF layout is untouched). */
static int write_hidden_copy(const char *module, const char *dir)
{
    FILE *in = fopen(module, "rb");
    if (!in) {
        printf("FAIL: cannot open %s\n", module);
        return -1;
    }
    fseek(in, 0, SEEK_END);
    long size = ftell(in);
    fseek(in, 0, SEEK_SET);
    unsigned char *data = malloc((size_t)size);
    if (!data || fread(data, 1, (size_t)size, in) != (size_t)size) {
        printf("FAIL: cannot read %s\n", module);
        fclose(in);
        free(data);
        return -1;
    }
    fclose(in);
    static const char from[] = "libamdhip64.so", to[] = "libamdhipXX.so";
    int replaced = 0;
    for (long i = 0; i + (long)sizeof from - 1 <= size; i++)
        if (memcmp(data + i, from, sizeof from - 1) == 0) {
            memcpy(data + i, to, sizeof to - 1);
            replaced++;
        }
    char path[1024];
    snprintf(path, sizeof path, "%s/libpolyattn_hip.so", dir);
    FILE *out = fopen(path, "wb");
    int ok = out && fwrite(data, 1, (size_t)size, out) == (size_t)size;
    if (out) ok = fclose(out) == 0 && ok;
    free(data);
    if (!ok) {
        printf("FAIL: cannot write %s\n", path);
        return -1;
    }
    printf("hidden copy: %s (%d reference(s) to libamdhip64 renamed)\n", path, replaced);
    return replaced;
}

static int mode_hidden(const char *module)
{
    char dir[] = "/tmp/polyattn_hidden_hip.XXXXXX";
    if (!mkdtemp(dir)) {
        printf("FAIL: mkdtemp\n");
        return 1;
    }
    int replaced = write_hidden_copy(module, dir);
    EXPECT(replaced >= 1, "the module names no libamdhip64: nothing to hide");
    /* Before the first polyattn call: the registry reads it when it loads modules. */
    setenv("POLYATTN_MODULE_PATH", dir, 1);

    EXPECT(polyattn_backend_compiled(POLYATTN_BACKEND_HIP), "hip is not compiled in");
    int count = -1;
    const char *reason = NULL;
    polyattn_status st = polyattn_device_count(POLYATTN_BACKEND_HIP, &count, &reason);
    printf("hip devices: %d: %s\n", count, reason ? reason : "(null)");
    EXPECT(st == POLYATTN_STATUS_SUCCESS, "device_count: %s", polyattn_status_name(st));
    EXPECT(count == 0, "hip sees %d device(s) without its runtime", count);
    EXPECT(reason && strstr(reason, "libamdhipXX"), "reason does not name the missing runtime: %s",
           reason ? reason : "(null)");

    polyattn_context *ctx = NULL;
    st = polyattn_context_create(POLYATTN_BACKEND_HIP, 0, &ctx);
    EXPECT(st == POLYATTN_STATUS_NOT_FOUND && ctx == NULL, "hip context without runtime: %s",
           polyattn_status_name(st));
    printf("hip context refused: %s\n", polyattn_last_error());

    /* AUTO must still find a backend (host at least) and never hip. */
    st = polyattn_context_create(POLYATTN_BACKEND_AUTO, 0, &ctx);
    EXPECT(st == POLYATTN_STATUS_SUCCESS, "AUTO context: %s", polyattn_last_error());
    if (st == POLYATTN_STATUS_SUCCESS) {
        EXPECT(polyattn_context_backend(ctx) != POLYATTN_BACKEND_HIP, "AUTO chose hip");
        printf("AUTO chose %s\n", polyattn_backend_name(polyattn_context_backend(ctx)));
        polyattn_context_destroy(ctx);
    }
    host_still_works();

    char path[1100];
    snprintf(path, sizeof path, "%s/libpolyattn_hip.so", dir);
    unlink(path);
    rmdir(dir);
    return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
    int rc;
    if (argc >= 2 && strcmp(argv[1], "probe") == 0) rc = mode_probe();
    else if (argc >= 3 && strcmp(argv[1], "hidden") == 0) rc = mode_hidden(argv[2]);
    else {
        fprintf(stderr, "usage: %s probe | hidden MODULE\n", argv[0]);
        return 2;
    }
    pa_tk_shutdown();
    printf("%s (%d failure(s))\n", rc ? "FAIL" : "PASS", failures);
    return rc;
}
