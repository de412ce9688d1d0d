/* Output files appear whole or not at all: data go to a temporary file in the same folder
 * (so rename is atomic) and are renamed over the destination only after every step of the
 * command succeeded. */
#include "cli.h"
#include "npy.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Temp files still open, for the crash handler: a fatal signal (a crash inside a device
 * library, say) must not leave "O.npy.tmp.XXXXXX" behind.  Fixed storage: the handler may
 * only call async-signal-safe functions (unlink, raise). */
#define MAX_PENDING 8
static char pending[MAX_PENDING][4096];
static volatile sig_atomic_t pending_used[MAX_PENDING];

static void on_fatal_signal(int sig)
{
    for (int i = 0; i < MAX_PENDING; i++)
        if (pending_used[i])
            unlink(pending[i]);
    /* SA_RESETHAND restored the default action: re-raise to die as we would have. */
    raise(sig);
}

static void install_crash_cleanup(void)
{
    static int installed;
    if (installed)
        return;
    installed = 1;
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGINT, SIGTERM,
                               SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa, old;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal_signal;
        sa.sa_flags = (int)SA_RESETHAND;
        sigemptyset(&sa.sa_mask);
        /* Leave a signal alone when the parent asked us to ignore it (nohup). */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
            continue;
        sigaction(sigs[i], &sa, NULL);
    }
}

static void pending_set(const char *tmp, int add)
{
    for (int i = 0; i < MAX_PENDING; i++) {
        if (add && !pending_used[i] && strlen(tmp) < sizeof pending[i]) {
            strcpy(pending[i], tmp);
            pending_used[i] = 1;
            return;
        }
        if (!add && pending_used[i] && strcmp(pending[i], tmp) == 0) {
            pending_used[i] = 0;
            return;
        }
    }
}

int pa_outfile_open(pa_outfile *of, const char *cmd, const char *option, const char *path)
{
    of->option = option;
    of->path = path;
    of->file = NULL;
    of->tmp_path = NULL;
    size_t n = strlen(path);
    if (n == 0 || path[n - 1] == '/')
        return pa_cli_fail(cmd, "%s: '%s' is a folder, expected a file name", option, path);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return pa_cli_fail(cmd, "%s: '%s' is a folder, expected a file name", option, path);
    of->tmp_path = malloc(n + 16);
    if (!of->tmp_path)
        return pa_cli_fail_code(PA_EXIT_RUNTIME, cmd, "%s: out of host memory", option);
    snprintf(of->tmp_path, n + 16, "%s.tmp.XXXXXX", path);
    install_crash_cleanup();
    int fd = mkstemp(of->tmp_path);
    if (fd < 0) {
        int e = errno;
        free(of->tmp_path);
        of->tmp_path = NULL;
        return pa_cli_fail(cmd, "%s: cannot create '%s': %s", option, path, strerror(e));
    }
    pending_set(of->tmp_path, 1);
    /* mkstemp makes 0600; give the file the usual 0666 & ~umask. */
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
    of->file = fdopen(fd, "wb");
    if (!of->file) {
        int e = errno;
        close(fd);
        pa_outfile_discard(of);
        return pa_cli_fail_code(PA_EXIT_RUNTIME, cmd, "%s: %s", option, strerror(e));
    }
    return 0;
}

int pa_outfile_write_npy(pa_outfile *of, const char *cmd, const float *data, int rank,
                         const int64_t *shape)
{
    int bad = pa_npy_write_f32(of->file, data, rank, shape);
    int e = errno;
    if (fclose(of->file) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    of->file = NULL;
    if (bad)
        return pa_cli_fail_code(PA_EXIT_RUNTIME, cmd, "%s: cannot write '%s': %s", of->option,
                                of->path, strerror(e));
    return 0;
}

int pa_outfile_commit(pa_outfile *of, const char *cmd)
{
    if (!of->tmp_path || of->file)
        return pa_cli_fail_code(PA_EXIT_RUNTIME, cmd, "%s: internal error: nothing written",
                                of->option);
    pending_set(of->tmp_path, 0);
    if (rename(of->tmp_path, of->path) != 0) {
        int e = errno;
        pa_outfile_discard(of);
        return pa_cli_fail_code(PA_EXIT_RUNTIME, cmd, "%s: cannot rename onto '%s': %s",
                                of->option, of->path, strerror(e));
    }
    free(of->tmp_path);
    of->tmp_path = NULL;
    return 0;
}

void pa_outfile_discard(pa_outfile *of)
{
    if (of->file) {
        fclose(of->file);
        of->file = NULL;
    }
    if (of->tmp_path) {
        pending_set(of->tmp_path, 0);
        unlink(of->tmp_path);
        free(of->tmp_path);
        of->tmp_path = NULL;
    }
}

int pa_outfile_close(pa_outfile *of, const char *cmd)
{
    int bad = ferror(of->file);
    if (fclose(of->file) != 0)
        bad = 1;
    of->file = NULL;
    if (bad)
        return pa_cli_fail_code(PA_EXIT_RUNTIME, cmd, "%s: cannot write '%s'", of->option,
                                of->path);
    return 0;
}
