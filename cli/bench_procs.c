/*
 * polyattn bench's processes.  Each target (backend:device) is measured in a child
 * process: a crash inside a device library or kernel (a segfault in a driver, say) costs
 * the measurement under way, which is reported as an error, and a new child goes on with
 * the next one.  The parent never touches a device (no driver is initialized before a
 * fork); it collects the results over a pipe and prints the rows.  Device discovery for
 * --compare-backends runs in a child too, for the same reason.
 */
#include "bench.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Input sets without --rotate: enough to exceed the caches, at most this many. */
#define AUTO_MAX_SETS 4

static void format_duration(double seconds, char *buf, size_t size)
{
    if (seconds < 60) snprintf(buf, size, "%.0fs", seconds);
    else if (seconds < 3600)
        snprintf(buf, size, "%.0fm%02.0fs", floor(seconds / 60), fmod(seconds, 60));
    else snprintf(buf, size, "%.0fh%02.0fm", floor(seconds / 3600), fmod(seconds / 60, 60));
}

/* SIGINT/SIGTERM: finish the measurement under way, then write what was measured.  The
 * parent forwards the signal to the child measuring; a second signal to the parent kills
 * both.  A child only notes the request (it may get the signal twice: from the terminal
 * and forwarded). */
static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t in_child;
static volatile pid_t measuring_pid;

static void on_stop_signal(int sig)
{
    if (in_child) {
        stop_requested = 1;
        return;
    }
    if (stop_requested) {
        if (measuring_pid > 0) kill(measuring_pid, SIGKILL);
        signal(sig, SIG_DFL);
        raise(sig);
        return;
    }
    stop_requested = 1;
    if (measuring_pid > 0) kill(measuring_pid, SIGTERM);
}

enum { MSG_DEVICE = 1, MSG_RESULT = 2, MSG_TARGET = 3 };

typedef struct child_msg {
    int kind;
    int index;
    pa_bench_target target;
    pa_bench_result result;
} child_msg;

static int write_full(int fd, const void *data, size_t size)
{
    const char *p = data;
    while (size > 0) {
        ssize_t k = write(fd, p, size);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        size -= (size_t)k;
    }
    return 0;
}

/* 1: a whole message, 0: end of file (or a partial message from a dying child). */
static int read_full(int fd, void *data, size_t size)
{
    char *p = data;
    size_t got = 0;
    while (got < size) {
        ssize_t k = read(fd, p + got, size - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return 0;
        got += (size_t)k;
    }
    return 1;
}

/* Runs fn(arg, fd) in a child; the parent reads messages through on_msg.  Returns the
 * child's wait status, or -1 when no child could be started. */
typedef int (*child_fn)(void *arg, int fd);
typedef void (*msg_fn)(void *arg, const child_msg *m);

static int run_child(child_fn fn, void *arg, msg_fn on_msg, void *msg_arg)
{
    int fds[2];
    if (pipe(fds) != 0) return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        in_child = 1;
        measuring_pid = 0;
        close(fds[0]);
        /* The parent's crash handler would delete the parent's staged report files. */
        static const int fatal[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGHUP};
        for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) {
            struct sigaction old;
            if (sigaction(fatal[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
                signal(fatal[i], SIG_DFL);
        }
        int rc = fn(arg, fds[1]);
        fflush(stdout);
        fflush(stderr);
        close(fds[1]);
        _exit(rc);
    }
    measuring_pid = pid;
    if (stop_requested) /* a signal between fork and here was not forwarded */
        kill(pid, SIGTERM);
    close(fds[1]);
    child_msg m;
    while (read_full(fds[0], &m, sizeof m))
        on_msg(msg_arg, &m);
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    measuring_pid = 0;
    return status;
}

void pa_bench_measurement_of(const pa_bench_job *job, int index, const pa_bench_shape **sh,
                             polyattn_dtype *dtype, polyattn_algo *algo)
{
    int ai = index % job->n_algos, rest = index / job->n_algos;
    *algo = (polyattn_algo)job->algos[ai];
    *dtype = (polyattn_dtype)job->dtypes[rest % job->n_dtypes];
    *sh = &job->shapes[rest / job->n_dtypes];
}

static int send_result(int fd, pa_bench_result *r)
{
    child_msg m;
    memset(&m, 0, sizeof m);
    m.kind = MSG_RESULT;
    m.index = r->index;
    m.result = *r;
    return write_full(fd, &m, sizeof m);
}

/* The child: opens the target's device and measures job->start .. n_per_target - 1. */
static int measure_target(void *arg, int fd)
{
    pa_bench_job *job = arg;
    pa_bench_run b = job->params;
    pa_cli_common common = job->common;
    common.backend = job->target->backend;
    common.device = job->target->device;
    int rc = PA_EXIT_OK;
    float *scratch = NULL;
    pa_bench_sets sets;
    memset(&sets, 0, sizeof sets);
    child_msg msg;
    memset(&msg, 0, sizeof msg);
    polyattn_device_info dev_info;
    memset(&dev_info, 0, sizeof dev_info);
    polyattn_device_info *dev = &dev_info;
    dev->struct_size = sizeof *dev;
    if (b.graph_calls) {
        /* --graph: a CUDA context on a stream of ours, which the graphs capture. */
        const char *why = NULL;
        polyattn_status gst = pa_bench_graph_context(common.device, &b.ctx, &b.graph_stream, &why);
        if (gst != POLYATTN_STATUS_SUCCESS) {
            rc = why ? pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "--graph: %s", why)
                     : pa_cli_fail_status("bench", NULL, gst, "--graph: CUDA context");
            goto finish;
        }
    } else {
        rc = pa_cli_open_context("bench", &common, &b.ctx);
        if (rc) goto finish;
    }
    polyattn_status st;
    if ((st = polyattn_context_create(POLYATTN_BACKEND_HOST, 0, &b.host)) !=
        POLYATTN_STATUS_SUCCESS) {
        b.host = NULL;
        rc = pa_cli_fail_status("bench", NULL, st, "host reference context");
        goto finish;
    }
    if ((st = polyattn_context_get_device_info(b.ctx, dev)) != POLYATTN_STATUS_SUCCESS) {
        rc = pa_cli_fail_status("bench", b.ctx, st, "device info");
        goto finish;
    }
    msg.kind = MSG_DEVICE;
    msg.target = *job->target;
    msg.target.backend = dev->backend;
    msg.target.device = dev->index;
    msg.target.opened = 1;
    msg.target.info = dev_info;
    if (write_full(fd, &msg, sizeof msg)) {
        rc = PA_EXIT_RUNTIME;
        goto finish;
    }
    /* Staging holds the largest input or output of the suite in f32. */
    uint64_t max_count = 0;
    for (int i = 0; i < job->n_shapes; i++) {
        const pa_bench_shape *s = &job->shapes[i];
        uint64_t c[3] = {(uint64_t)(s->batch * s->heads_q * s->seq_q *
                                    (s->head_dim > s->head_dim_v ? s->head_dim : s->head_dim_v)),
                         (uint64_t)(s->batch * s->heads_kv * s->seq_kv * s->head_dim),
                         (uint64_t)(s->batch * s->heads_kv * s->seq_kv * s->head_dim_v)};
        for (int t = 0; t < 3; t++)
            max_count = c[t] > max_count ? c[t] : max_count;
    }
    b.staging = malloc(max_count * 4);
    scratch = malloc(max_count * 4);
    if (!b.staging || !scratch) {
        rc = pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "out of host memory");
        goto finish;
    }

    int tty = isatty(2);
    if (job->start == 0) {
        char timing[64] = "";
        if (b.graph_calls)
            snprintf(timing, sizeof timing, ", CUDA graphs of %d calls", b.graph_calls);
        char vars[256], with[272] = "";
        pa_bench_variants_describe(&b.var, vars, sizeof vars);
        if (vars[0]) snprintf(with, sizeof with, ", with %s", vars);
        printf("%spolyattn bench: suite %s, %s:%d (%s), reps %d, warmup %d%s%s%s\n",
               job->target_no ? "\n" : "", job->suite->name, polyattn_backend_name(dev->backend),
               dev->index, dev->name, b.reps, b.warmup, timing, with,
               !b.backward ? ""
               : b.deterministic
                   ? ", backward pass (dQ, dK, dV; deterministic), TFLOP/s at 2.5x "
                     "the forward FLOPs"
                   : ", backward pass (dQ, dK, dV), TFLOP/s at 2.5x the forward FLOPs");
        pa_bench_print_header(stdout);
    } else {
        printf("(%s:%d: going on in a new process)\n", polyattn_backend_name(dev->backend),
               dev->index);
    }
    fflush(stdout);
    int n_total = job->n_targets * job->n_per_target;
    const pa_bench_shape *sets_shape = NULL;
    polyattn_dtype sets_dtype = POLYATTN_DTYPE_F32;
    polyattn_status sets_status = POLYATTN_STATUS_SUCCESS;
    for (int index = job->start; index < job->n_per_target && !stop_requested; index++) {
        const pa_bench_shape *sh;
        polyattn_dtype dtype;
        polyattn_algo algo;
        pa_bench_measurement_of(job, index, &sh, &dtype, &algo);
        /* The serving rows make their own inputs (bench_serving.c). */
        if (sh->layout == PA_BENCH_DENSE && (sh != sets_shape || dtype != sets_dtype)) {
            pa_bench_free_sets(&sets);
            /* Enough input sets to exceed the last-level cache (~256 MiB), at most 4, within
             * a quarter of the device's memory; one on the host backend. */
            size_t esize = polyattn_dtype_size(dtype);
            uint64_t set_bytes = (uint64_t)(sh->batch * sh->heads_q * sh->seq_q * sh->head_dim +
                                            sh->batch * sh->heads_kv * sh->seq_kv *
                                                (sh->head_dim + sh->head_dim_v)) *
                                 esize;
            if (b.backward) /* each set also holds dO, O and the LSE */
                set_bytes += (uint64_t)(sh->batch * sh->heads_q * sh->seq_q) *
                             (2 * (uint64_t)sh->head_dim_v * esize + 4);
            int n_sets = job->n_sets_opt;
            if (n_sets == 0) {
                n_sets = (int)((256ull << 20) / (set_bytes ? set_bytes : 1)) + 1;
                if (n_sets > AUTO_MAX_SETS) n_sets = AUTO_MAX_SETS;
                while (n_sets > 1 && (uint64_t)n_sets * set_bytes > dev->global_mem_bytes / 4)
                    n_sets--;
                if (dev->backend == POLYATTN_BACKEND_HOST) n_sets = 1;
            }
            sets_status =
                pa_bench_make_sets(b.ctx, sh, dtype, n_sets, b.backward, &sets, b.staging, scratch);
            sets_shape = sh;
            sets_dtype = dtype;
        }
        int done = job->target_no * job->n_per_target + index;
        if (tty) {
            char el[32], eta[32] = "?";
            double elapsed = pa_bench_now_seconds() - job->t_start;
            format_duration(elapsed, el, sizeof el);
            if (done > 0) format_duration(elapsed / done * (n_total - done), eta, sizeof eta);
            fprintf(stderr,
                    "\r\033[K[%d/%d] %s:%d b %lld hq %lld sq %lld skv %lld d %lld %s %s%s  "
                    "elapsed %s, ETA %s",
                    done + 1, n_total, polyattn_backend_name(dev->backend), dev->index,
                    (long long)sh->batch, (long long)sh->heads_q, (long long)sh->seq_q,
                    (long long)sh->seq_kv, (long long)sh->head_dim, polyattn_dtype_name(dtype),
                    polyattn_algo_name(algo), b.backward ? " backward" : "", el, eta);
            fflush(stderr);
        }
        pa_bench_result r;
        if (sets_status != POLYATTN_STATUS_SUCCESS && sh->layout == PA_BENCH_DENSE) {
            memset(&r, 0, sizeof r);
            r.shape = *sh;
            r.dtype = dtype;
            r.algo_asked = r.algo = algo;
            r.backward = b.backward;
            r.deterministic = b.deterministic;
            r.status =
                sets_status == POLYATTN_STATUS_OUT_OF_MEMORY ? PA_BENCH_SKIPPED : PA_BENCH_ERROR;
            pa_bench_lib_reason(&r, b.ctx, sets_status, "inputs");
        } else if (sh->layout != PA_BENCH_DENSE && !job->measure) {
            pa_bench_measure_serving(&b, sh, dtype, algo, &r);
        } else if (job->measure) {
            job->measure(&b, index, sh, dtype, algo, &sets, &r);
        } else {
            pa_bench_measure(&b, sh, dtype, algo, &sets, &r);
        }
        r.target = job->target_no;
        r.index = index;
        if (tty) fprintf(stderr, "\r\033[K");
        /* The row is printed by the parent, which knows speedups against unfused. */
        if (send_result(fd, &r)) {
            rc = PA_EXIT_RUNTIME;
            break;
        }
    }
    if (tty) fprintf(stderr, "\r\033[K");
finish:
    pa_bench_free_sets(&sets);
    free(scratch);
    free(b.staging);
    polyattn_context_destroy(b.host);
    if (b.graph_calls) pa_bench_graph_context_destroy(b.ctx, b.graph_stream);
    else polyattn_context_destroy(b.ctx);
    return rc;
}

/* The parent's side of one target. */
typedef struct target_state {
    pa_bench_job *job;
    pa_bench_result *results; /* n_per_target slots of this target */
    unsigned char *have;
    int next; /* first index not received */
} target_state;

static void on_target_msg(void *arg, const child_msg *m)
{
    target_state *ts = arg;
    if (m->kind == MSG_DEVICE) {
        pa_bench_target *t = ts->job->target;
        t->info = m->target.info;
        t->backend = m->target.backend;
        t->device = m->target.device;
        t->opened = 1;
        snprintf(t->label, sizeof t->label, "%s:%d", polyattn_backend_name(t->backend), t->device);
    } else if (m->kind == MSG_RESULT && m->index >= 0 && m->index < ts->job->n_per_target) {
        ts->results[m->index] = m->result;
        ts->have[m->index] = 1;
        ts->next = m->index + 1;
        /* Speedups against unfused need the unfused row of the same shape, measured first. */
        pa_bench_result row = m->result;
        int lo = m->index - m->index % ts->job->n_algos;
        for (int j = lo; j <= m->index; j++)
            if (ts->have[j] && ts->results[j].status == PA_BENCH_OK &&
                ts->results[j].algo == POLYATTN_ALGO_UNFUSED && row.status == PA_BENCH_OK &&
                row.ms > 0) {
                row.speedup_vs_unfused = ts->results[j].ms / row.ms;
                row.mem_saved_vs_unfused =
                    ts->results[j].mem_bytes
                        ? 1.0 - (double)row.mem_bytes / (double)ts->results[j].mem_bytes
                        : 0;
            }
        pa_bench_print_row(stdout, &row);
        fflush(stdout);
    }
}

/* Measures one target, in as many children as crashes require.  Returns 0, or the exit
 * code of a child that failed before measuring (its message printed). */
int pa_bench_run_target(pa_bench_job *job, pa_bench_result *results, unsigned char *have)
{
    target_state ts = {job, results, have, 0};
    job->start = 0;
    while (job->start < job->n_per_target && !stop_requested) {
        ts.next = job->start;
        int status = run_child(measure_target, job, on_target_msg, &ts);
        if (status == -1)
            return pa_cli_fail_code(PA_EXIT_RUNTIME, "bench", "cannot start a process: %s",
                                    strerror(errno));
        if (WIFEXITED(status) && !job->target->opened)
            return WEXITSTATUS(status) ? WEXITSTATUS(status) : PA_EXIT_RUNTIME;
        if (WIFEXITED(status)) break; /* done, or stopped by a signal, or could not report */
        int sig = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
        if (!job->target->opened) {
            return pa_cli_fail_code(PA_EXIT_RUNTIME, "bench",
                                    "%s: the process opening the "
                                    "device died of signal %d (%s)",
                                    job->target->label, sig, strsignal(sig));
        }
        if (ts.next >= job->n_per_target) {
            pa_cli_fail_code(PA_EXIT_RUNTIME, "bench",
                             "%s: the measuring process died of "
                             "signal %d (%s) after its last measurement",
                             job->target->label, sig, strsignal(sig));
            return PA_EXIT_RUNTIME;
        }
        if (stop_requested && sig == SIGKILL) break;
        /* The measurement under way crashed the process: report it, go on after it. */
        pa_bench_result *r = &results[ts.next];
        const pa_bench_shape *sh;
        polyattn_dtype dtype;
        polyattn_algo algo;
        pa_bench_measurement_of(job, ts.next, &sh, &dtype, &algo);
        memset(r, 0, sizeof *r);
        r->target = job->target_no;
        r->index = ts.next;
        r->shape = *sh;
        r->dtype = dtype;
        r->algo_asked = r->algo = algo;
        r->backward = job->params.backward;
        r->deterministic = job->params.deterministic;
        r->status = PA_BENCH_ERROR;
        snprintf(r->reason, sizeof r->reason, "crashed: the process died of signal %d (%s)", sig,
                 strsignal(sig));
        have[ts.next] = 1;
        pa_bench_print_row(stdout, r);
        fflush(stdout);
        job->start = ts.next + 1;
    }
    return 0;
}

/* Device discovery for --compare-backends, in a child (see above). */
typedef struct discovery {
    const pa_bench_backend_item *items;
    int n_items;
    int include_host;
} discovery;

static int send_target(int fd, polyattn_backend backend, int device)
{
    child_msg m;
    memset(&m, 0, sizeof m);
    m.kind = MSG_TARGET;
    m.target.backend = backend;
    m.target.device = device;
    snprintf(m.target.label, sizeof m.target.label, "%s:%d", polyattn_backend_name(backend),
             device);
    return write_full(fd, &m, sizeof m);
}

static int discover_targets(void *arg, int fd)
{
    const discovery *d = arg;
    pa_bench_backend_item list[16];
    int n = 0;
    for (int i = 0; i < d->n_items && n < 12; i++) {
        if (d->items[i].backend == POLYATTN_BACKEND_AUTO) {
            /* auto: every GPU-style backend (the host reference only when asked). */
            for (int b = POLYATTN_BACKEND_CUDA; b <= POLYATTN_BACKEND_OPENCL; b++)
                list[n++] = (pa_bench_backend_item){(polyattn_backend)b, -1};
        } else {
            list[n++] = d->items[i];
        }
    }
    if (d->include_host) list[n++] = (pa_bench_backend_item){POLYATTN_BACKEND_HOST, -1};
    int sent = 0;
    for (int i = 0; i < n; i++) {
        polyattn_backend backend = list[i].backend;
        const char *name = polyattn_backend_name(backend);
        /* An item seen before (auto and cuda, say) is measured once. */
        int dup = 0;
        for (int j = 0; j < i; j++)
            dup |= list[j].backend == backend &&
                   (list[j].device == list[i].device || list[j].device < 0);
        if (dup) continue;
        int count = 0;
        const char *reason = NULL;
        polyattn_status st = polyattn_backend_compiled(backend)
                                 ? polyattn_device_count(backend, &count, &reason)
                                 : POLYATTN_STATUS_SUCCESS;
        if (!polyattn_backend_compiled(backend)) reason = "not compiled into this build";
        if (st != POLYATTN_STATUS_SUCCESS || count == 0) {
            const char *why = reason && reason[0]             ? reason
                              : st != POLYATTN_STATUS_SUCCESS ? polyattn_status_string(st)
                                                              : "none found";
            if (list[i].device >= 0)
                return pa_cli_fail_code(PA_EXIT_RUNTIME, "bench",
                                        "--backend: %s has no "
                                        "device (%s)",
                                        name, why);
            printf("polyattn bench: compare-backends: %s: no device (%s)\n", name, why);
            continue;
        }
        if (list[i].device >= count)
            return pa_cli_fail("bench", "--backend: %s:%d: %s has %d device%s", name,
                               list[i].device, name, count, count == 1 ? "" : "s");
        for (int k = 0; k < count; k++) {
            if (list[i].device >= 0 && k != list[i].device) continue;
            int dup_dev = 0;
            for (int j = 0; j < i; j++)
                dup_dev |= list[j].backend == backend && list[j].device == k;
            if (dup_dev) continue;
            if (sent >= PA_BENCH_MAX_TARGETS || send_target(fd, backend, k)) return PA_EXIT_RUNTIME;
            sent++;
        }
    }
    return PA_EXIT_OK;
}

typedef struct target_list {
    pa_bench_target *targets;
    int n;
} target_list;

static void on_discovery_msg(void *arg, const child_msg *m)
{
    target_list *tl = arg;
    if (m->kind == MSG_TARGET && tl->n < PA_BENCH_MAX_TARGETS) tl->targets[tl->n++] = m->target;
}

int pa_bench_discover(const pa_bench_backend_item *items, int n_items, int include_host,
                      pa_bench_target *targets, int *n)
{
    discovery d = {items, n_items, include_host};
    target_list tl = {targets, 0};
    *n = 0;
    int status = run_child(discover_targets, &d, on_discovery_msg, &tl);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        int rc = status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : PA_EXIT_RUNTIME;
        if (status == -1 || !WIFEXITED(status))
            pa_cli_fail_code(rc, "bench", "device discovery failed%s",
                             status == -1 ? ": cannot start a process" : " (the process crashed)");
        return rc;
    }
    *n = tl.n;
    return PA_EXIT_OK;
}

void pa_bench_catch_stop_signals(int on)
{
    if (on) stop_requested = 0;
    signal(SIGINT, on ? on_stop_signal : SIG_DFL);
    signal(SIGTERM, on ? on_stop_signal : SIG_DFL);
}

int pa_bench_stop_requested(void) { return stop_requested != 0; }
