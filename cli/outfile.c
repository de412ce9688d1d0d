/* Output files appear whole or not at all: data go to a temporary file in the same folder
 * (so rename is atomic) and are renamed over the destination only after every step of the
 * command succeeded.  Paths that are not regular files (a symbolic link, a FIFO, a
 * character device such as /dev/null or /dev/stdout) must never be replaced by a regular
 * file: their data are staged in an anonymous temporary file and written through the path
 * once everything succeeded. */
#include "cli.h"
#include "npy.h"

#include <errno.h>
#include <fcntl.h>
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
        if (pending_used[i]) unlink(pending[i]);
    /* SA_RESETHAND restored the default action: re-raise to die as we would have. */
    raise(sig);
}

static void install_crash_cleanup(void)
{
    static int installed;
    if (installed) return;
    installed = 1;
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL, SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa, old;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal_signal;
        sa.sa_flags = (int)SA_RESETHAND;
        sigemptyset(&sa.sa_mask);
        /* Leave a signal alone when the parent asked us to ignore it (nohup). */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
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

/* The folder part of path ("." when none), into buf. */
static void folder_of(const char *path, char *buf, size_t size)
{
    snprintf(buf, size, "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash) snprintf(buf, size, ".");
    else if (slash == buf) buf[1] = '\0';
    else *slash = '\0';
}

int pa_cli_same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    int ea = stat(a, &sa) == 0, eb = stat(b, &sb) == 0;
    if (ea && eb) return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    if (ea || eb) return 0;
    /* Neither exists: the same last name in the same folder. */
    const char *na = strrchr(a, '/'), *nb = strrchr(b, '/');
    na = na ? na + 1 : a;
    nb = nb ? nb + 1 : b;
    if (strcmp(na, nb) != 0) return 0;
    char fa[4096], fb[4096];
    folder_of(a, fa, sizeof fa);
    folder_of(b, fb, sizeof fb);
    return stat(fa, &sa) == 0 && stat(fb, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

static const char *kind_name(mode_t mode)
{
    return S_ISDIR(mode)    ? "a folder"
           : S_ISSOCK(mode) ? "a socket"
           : S_ISBLK(mode)  ? "a block device"
                            : "not a regular file, FIFO or character device";
}

/* Write-through: refuses what cannot be written safely, else stages in an anonymous file. */
static int open_through(pa_outfile *of, const char *cmd, const char *option, const char *path,
                        int is_link)
{
    struct stat st;
    if (stat(path, &st) == 0) { /* what the path leads to */
        if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISCHR(st.st_mode))
            return pa_cli_fail(cmd, "%s: '%s' is %s, expected a file", option, path,
                               kind_name(st.st_mode));
        if (access(path, W_OK) != 0)
            return pa_cli_fail(cmd, "%s: cannot write '%s': %s", option, path, strerror(errno));
    } else if (!is_link || errno != ENOENT) {
        return pa_cli_fail(cmd, "%s: cannot write '%s': %s", option, path, strerror(errno));
    }
    /* A link whose target does not exist yet: created at commit, as a shell would. */
    of->create = is_link;
    of->through = 1;
    of->file = tmpfile();
    if (!of->file)
        return pa_cli_fail_code(PA_EXIT_RUNTIME, cmd, "%s: cannot create a temporary file: %s",
                                option, strerror(errno));
    return 0;
}

int pa_outfile_open(pa_outfile *of, const char *cmd, const char *option, const char *path)
{
    memset(of, 0, sizeof *of);
    of->option = option;
    of->path = path;
    size_t n = strlen(path);
    if (n == 0 || path[n - 1] == '/')
        return pa_cli_fail(cmd, "%s: '%s' is a folder, expected a file name", option, path);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (S_ISLNK(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode))
            return open_through(of, cmd, option, path, S_ISLNK(st.st_mode));
        if (!S_ISREG(st.st_mode))
            return pa_cli_fail(cmd, "%s: '%s' is %s, expected a file", option, path,
                               kind_name(st.st_mode));
    }
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

/* Ends the writing into of->file: closes it, or for write-through keeps it for commit.
 * Returns 0, or errno of the failure. */
static int finish_writing(pa_outfile *of, int bad, int e)
{
    if (of->through) {
        if ((fflush(of->file) != 0 || ferror(of->file)) && !bad) bad = 1, e = errno;
        of->staged = of->file;
    } else if (fclose(of->file) != 0 && !bad) {
        bad = 1;
        e = errno;
    }
    of->file = NULL;
    return bad ? (e ? e : EIO) : 0;
}

int pa_outfile_write_npy(pa_outfile *of, const char *cmd, const float *data, int rank,
                         const int64_t *shape)
{
    int bad = pa_npy_write_f32(of->file, data, rank, shape);
    int e = finish_writing(of, bad, errno);
    if (e)
        return pa_cli_fail_code(PA_EXIT_RUNTIME, cmd, "%s: cannot write '%s': %s", of->option,
                                of->path, strerror(e));
    return 0;
}

static int write_full(int fd, const char *p, size_t size)
{
    while (size > 0) {
        ssize_t k = write(fd, p, size);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k;
        size -= (size_t)k;
    }
    return 0;
}

/* Copies the staged data through the path (following a link; a FIFO blocks until read). */
static int commit_through(pa_outfile *of, const char *cmd)
{
    int fd = open(of->path, O_WRONLY | O_NOCTTY | (of->create ? O_CREAT : 0), 0666);
    int e = 0;
    if (fd < 0) {
        e = errno;
    } else {
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && ftruncate(fd, 0) != 0) e = errno;
        char buf[1 << 16];
        size_t k;
        rewind(of->staged);
        while (!e && (k = fread(buf, 1, sizeof buf, of->staged)) > 0)
            if (write_full(fd, buf, k) != 0) e = errno ? errno : EIO;
        if (!e && ferror(of->staged)) e = EIO;
        if (close(fd) != 0 && !e) e = errno;
    }
    fclose(of->staged);
    of->staged = NULL;
    if (e)
        return pa_cli_fail_code(PA_EXIT_RUNTIME, cmd, "%s: cannot write '%s': %s", of->option,
                                of->path, strerror(e));
    return 0;
}

int pa_outfile_commit(pa_outfile *of, const char *cmd)
{
    if (of->through && of->staged && !of->file) return commit_through(of, cmd);
    if (!of->tmp_path || of->file)
        return pa_cli_fail_code(PA_EXIT_RUNTIME, cmd, "%s: internal error: nothing written",
                                of->option);
    pending_set(of->tmp_path, 0);
    if (rename(of->tmp_path, of->path) != 0) {
        int e = errno;
        pa_outfile_discard(of);
        return pa_cli_fail_code(PA_EXIT_RUNTIME, cmd, "%s: cannot rename onto '%s': %s", of->option,
                                of->path, strerror(e));
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
    if (of->staged) {
        fclose(of->staged);
        of->staged = NULL;
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
    int e = finish_writing(of, ferror(of->file) != 0, EIO);
    if (e)
        return pa_cli_fail_code(PA_EXIT_RUNTIME, cmd, "%s: cannot write '%s'", of->option,
                                of->path);
    return 0;
}
