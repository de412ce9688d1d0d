/*
 * The OpenCL disk cache across processes.  The parent runs this program as a child with
 * POLYATTN_CACHE_DIR set to a fresh folder (and PoCL's own kernel cache off, so only
 * polyattn's cache can help):
 *   1. cold: the child builds from source; an entry appears in the folder;
 *   2. warm: a second child loads the binary: its build time must drop;
 *   3. the entry truncated to half: the child must rebuild (entry restored to full size)
 *      and still compute correct results;
 *   4. one byte of the binary flipped: rejected by the checksum, rebuilt, correct;
 *   5. POLYATTN_CACHE_DIR=off: nothing is written.
 * Each child plans flash on one case (timing polyattn_plan_create, which builds the
 * kernels), then runs it through the testkit against the host reference.
 */
#include "pa_testkit.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CASE_NAME "causal_tl_129_d128"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* Child: prints "BUILD_MS <ms> PASS <0|1>"; exit 77 without a device. */
static int child(void)
{
    polyattn_context *ctx = NULL;
    if (polyattn_context_create(POLYATTN_BACKEND_OPENCL, 0, &ctx) != POLYATTN_STATUS_SUCCESS)
        return PA_TK_SKIP;
    const pa_tk_case *c = pa_tk_find_case(CASE_NAME);
    if (!c) return 1;
    polyattn_attention_desc desc;
    pa_tk_case_desc(c, POLYATTN_DTYPE_F32, &desc);
    polyattn_plan_options opt;
    polyattn_plan_options_init(&opt);
    opt.algo = POLYATTN_ALGO_FLASH;
    opt.want_lse = 1;
    polyattn_plan *plan = NULL;
    double t0 = now_ms();
    polyattn_status st = polyattn_plan_create(ctx, &desc, &opt, &plan);
    double build_ms = now_ms() - t0;
    if (st != POLYATTN_STATUS_SUCCESS) {
        fprintf(stderr, "plan: %s: %s\n", polyattn_status_name(st),
                polyattn_context_last_error(ctx));
        return 1;
    }
    polyattn_plan_destroy(plan);
    pa_tk_problem p;
    char err[256] = "";
    pa_tk_result r;
    memset(&r, 0, sizeof r);
    if (pa_tk_problem_init(&p, c, POLYATTN_DTYPE_F32, (uint64_t)getpid()) !=
            POLYATTN_STATUS_SUCCESS ||
        pa_tk_problem_reference(&p, err, sizeof err) != POLYATTN_STATUS_SUCCESS)
        return 1;
    pa_tk_run(ctx, &p, POLYATTN_ALGO_FLASH, 1, 0, &r);
    printf("BUILD_MS %.3f PASS %d\n", build_ms, r.pass);
    if (!r.pass) fprintf(stderr, "child: %s\n", r.message);
    pa_tk_problem_free(&p);
    polyattn_context_destroy(ctx);
    pa_tk_shutdown();
    return 0;
}

/* Runs the child; returns its exit status, fills build time and pass. */
static int run_child(const char *self, double *ms, int *pass)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' --child", self);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char line[256];
    *ms = -1;
    *pass = 0;
    while (fgets(line, sizeof line, f))
        sscanf(line, "BUILD_MS %lf PASS %d", ms, pass);
    int status = pclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The cache entries (*.bin) in dir: count, and the first one's path and size. */
static int entries(const char *dir, char *first, size_t first_len, long *size)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name);
        if (l < 4 || strcmp(e->d_name + l - 4, ".bin") != 0) continue;
        if (n++ == 0) {
            snprintf(first, first_len, "%s/%s", dir, e->d_name);
            struct stat sb;
            *size = stat(first, &sb) == 0 ? (long)sb.st_size : -1;
        }
    }
    closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--child") == 0) return child();
    char dir[] = "/tmp/polyattn-cache-test-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    setenv("POLYATTN_CACHE_DIR", dir, 1);
    /* Only polyattn's cache may help: PoCL's and NVIDIA's own kernel caches are off. */
    setenv("POCL_KERNEL_CACHE", "0", 1);
    setenv("CUDA_CACHE_DISABLE", "1", 1);
    int failures = 0;
    double cold = 0, warm = 0, ms = 0;
    int pass = 0;
    char path[1200] = "";
    long full = 0, sz = 0;

    int rc = run_child(argv[0], &cold, &pass);
    if (rc == PA_TK_SKIP) {
        printf("SKIP: no OpenCL device\n");
        return PA_TK_SKIP;
    }
    int n = entries(dir, path, sizeof path, &full);
    printf("cold:      build %.1f ms, pass %d, %d cache entries (%ld bytes)\n", cold, pass, n,
           full);
    if (rc != 0 || !pass || n < 1 || full <= 0) failures++;

    rc = run_child(argv[0], &warm, &pass);
    printf("warm:      build %.1f ms, pass %d (%.1fx faster)\n", warm, pass, cold / warm);
    if (rc != 0 || !pass || !(warm < 0.8 * cold)) {
        printf("FAIL: the second process did not build faster from the disk cache\n");
        failures++;
    }

    /* Truncate the entry to half: must be rebuilt (restored to full size), results right. */
    if (truncate(path, full / 2) != 0) failures++;
    rc = run_child(argv[0], &ms, &pass);
    entries(dir, path, sizeof path, &sz);
    printf("truncated: build %.1f ms, pass %d, entry %ld bytes after (full %ld)\n", ms, pass, sz,
           full);
    if (rc != 0 || !pass || sz != full) {
        printf("FAIL: a truncated entry was not rebuilt\n");
        failures++;
    }

    /* Flip one byte in the middle of the binary: the checksum rejects it. */
    FILE *f = fopen(path, "r+b");
    if (f && fseek(f, full - full / 3, SEEK_SET) == 0) {
        int ch = fgetc(f);
        fseek(f, full - full / 3, SEEK_SET);
        fputc(ch ^ 0x5a, f);
    }
    if (f) fclose(f);
    rc = run_child(argv[0], &ms, &pass);
    printf("corrupt:   build %.1f ms, pass %d\n", ms, pass);
    if (rc != 0 || !pass || !(ms > 0.5 * cold)) {
        printf("FAIL: a corrupt entry was trusted or the result is wrong\n");
        failures++;
    }

    /* Disabled: a fresh folder stays empty. */
    char off_dir[1100];
    snprintf(off_dir, sizeof off_dir, "%s/off-check", dir);
    mkdir(off_dir, 0755);
    setenv("POLYATTN_CACHE_DIR", "off", 1);
    setenv("XDG_CACHE_HOME", off_dir, 1);
    rc = run_child(argv[0], &ms, &pass);
    char tmp[1200];
    int n_off = entries(off_dir, tmp, sizeof tmp, &sz);
    char sub[1200];
    snprintf(sub, sizeof sub, "%s/polyattn", off_dir);
    n_off += entries(sub, tmp, sizeof tmp, &sz);
    printf("off:       build %.1f ms, pass %d, %d entries written\n", ms, pass, n_off);
    if (rc != 0 || !pass || n_off != 0) failures++;

    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    printf("%s\n", failures ? "FAILED" : "OK");
    return failures ? 1 : 0;
}
