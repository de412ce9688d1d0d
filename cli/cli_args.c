/* Option parsing for the polyattn CLI: a small table-driven parser and typed getters whose
 * errors name the option, one line each. */
#include "cli.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static int vfail(int code, const char *cmd, const char *fmt, va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* Scripts read one line per failure: fold any newline of a library message. */
    char line[1100];
    size_t j = 0;
    for (size_t i = 0; msg[i] && j + 3 < sizeof line; i++) {
        if (msg[i] == '\n') {
            if (msg[i + 1] == '\0') break;
            line[j++] = ';';
            line[j++] = ' ';
        } else {
            line[j++] = msg[i];
        }
    }
    line[j] = '\0';
    fflush(stdout);
    fprintf(stderr, "polyattn%s%s: %s\n", cmd ? " " : "", cmd ? cmd : "", line);
    return code;
}

int pa_cli_fail(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int code = vfail(PA_EXIT_USAGE, cmd, fmt, ap);
    va_end(ap);
    return code;
}

int pa_cli_fail_code(int code, const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(code, cmd, fmt, ap);
    va_end(ap);
    return code;
}

static int find_opt(const pa_cli_opt *spec, int n_spec, const char *name, size_t len)
{
    for (int i = 0; i < n_spec; i++)
        if (strlen(spec[i].name) == len && strncmp(spec[i].name, name, len) == 0) return i;
    return -1;
}

int pa_cli_parse(pa_cli_args *args, const char *cmd, const pa_cli_opt *spec, int n_spec, int argc,
                 char **argv)
{
    memset(args, 0, sizeof *args);
    args->cmd = cmd;
    args->spec = spec;
    args->n_spec = n_spec < PA_CLI_MAX_OPTS ? n_spec : PA_CLI_MAX_OPTS;
    /* --help wins over any other problem on the line. */
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            args->help = 1;
            return 0;
        }
    }
    for (int i = 0; i < argc; i++) {
        const char *word = argv[i];
        if (strncmp(word, "--", 2) != 0 || word[2] == '\0')
            return pa_cli_fail(cmd, "unexpected argument '%s' (see polyattn %s --help)", word, cmd);
        const char *eq = strchr(word, '=');
        size_t len = eq ? (size_t)(eq - word) : strlen(word);
        int k = find_opt(spec, args->n_spec, word, len);
        if (k < 0)
            return pa_cli_fail(cmd, "unknown option '%.*s' (see polyattn %s --help)", (int)len,
                               word, cmd);
        const char *name = spec[k].name;
        if (args->value[k]) return pa_cli_fail(cmd, "%s: given more than once", name);
        if (!spec[k].takes_value) {
            if (eq) return pa_cli_fail(cmd, "%s: takes no value (got '%s')", name, eq + 1);
            args->value[k] = "";
            continue;
        }
        if (eq) {
            args->value[k] = eq + 1;
        } else {
            /* "--q --k K.npy": the next word is an option, not --q's value. */
            if (i + 1 >= argc ||
                (strncmp(argv[i + 1], "--", 2) == 0 &&
                 find_opt(spec, args->n_spec, argv[i + 1], strcspn(argv[i + 1], "=")) >= 0))
                return pa_cli_fail(cmd, "%s: missing value", name);
            args->value[k] = argv[++i];
        }
        if (args->value[k][0] == '\0') return pa_cli_fail(cmd, "%s: empty value", name);
    }
    return 0;
}

const char *pa_cli_get(const pa_cli_args *args, const char *name)
{
    int k = find_opt(args->spec, args->n_spec, name, strlen(name));
    return k < 0 ? NULL : args->value[k];
}

int pa_cli_has(const pa_cli_args *args, const char *name) { return pa_cli_get(args, name) != NULL; }

int pa_cli_require(const pa_cli_args *args, const char *name)
{
    if (!pa_cli_has(args, name))
        return pa_cli_fail(args->cmd, "%s: required (see polyattn %s --help)", name, args->cmd);
    return 0;
}

int pa_cli_get_i64(const pa_cli_args *args, const char *name, int64_t min, int64_t max,
                   int64_t *out)
{
    const char *text = pa_cli_get(args, name);
    if (!text) return 0;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    int ok = end != text && *end == '\0' && errno == 0 && text[0] != ' ' && text[0] != '\t' &&
             text[0] != '+';
    if (!ok || v < min || v > max) {
        if (max == INT64_MAX)
            return pa_cli_fail(args->cmd, "%s: expected an integer >= %lld, got '%s'", name,
                               (long long)min, text);
        return pa_cli_fail(args->cmd, "%s: expected an integer in [%lld, %lld], got '%s'", name,
                           (long long)min, (long long)max, text);
    }
    *out = v;
    return 0;
}

int pa_cli_get_double(const pa_cli_args *args, const char *name, double *out)
{
    const char *text = pa_cli_get(args, name);
    if (!text) return 0;
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !isfinite(v) || text[0] == ' ' ||
        text[0] == '\t')
        return pa_cli_fail(args->cmd, "%s: expected a finite number, got '%s'", name, text);
    *out = v;
    return 0;
}

int pa_cli_get_scale(const pa_cli_args *args, double *out)
{
    const char *text = pa_cli_get(args, "--scale");
    if (!text) return 0;
    double v = 0;
    if (pa_cli_get_double(args, "--scale", &v)) return PA_EXIT_USAGE;
    if (!(v > 0))
        return pa_cli_fail(args->cmd,
                           "--scale: expected a positive number, got '%s' (omit it "
                           "for 1/sqrt(head_dim))",
                           text);
    /* The library takes a float: a value beyond its range would become inf. */
    if (v > FLT_MAX)
        return pa_cli_fail(args->cmd, "--scale: '%s' is out of float range (at most %g)", text,
                           (double)FLT_MAX);
    if ((float)v == 0.0f) return pa_cli_fail(args->cmd, "--scale: '%s' underflows float32", text);
    *out = v;
    return 0;
}

int pa_cli_get_choice(const pa_cli_args *args, const char *name, const char *const *choices,
                      int n_choices, int *out)
{
    const char *text = pa_cli_get(args, name);
    if (!text) return 0;
    for (int i = 0; i < n_choices; i++) {
        if (strcmp(text, choices[i]) == 0) {
            *out = i;
            return 0;
        }
    }
    char list[256];
    size_t n = 0;
    for (int i = 0; i < n_choices && n < sizeof list; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? "|" : "", choices[i]);
    return pa_cli_fail(args->cmd, "%s: unknown value '%s' (expected %s)", name, text, list);
}

int pa_cli_get_common(const pa_cli_args *args, pa_cli_common *c)
{
    static const char *const backends[] = {"auto", "cuda", "hip", "opencl", "host"};
    static const char *const algos[] = {"auto", "unfused", "fused", "flash"};
    static const char *const dtypes[] = {"f32", "f16", "bf16", "e4m3"};
    static const polyattn_dtype dtype_values[] = {POLYATTN_DTYPE_F32, POLYATTN_DTYPE_F16,
                                                  POLYATTN_DTYPE_BF16, POLYATTN_DTYPE_E4M3};
    static const char *const masks[] = {"none", "top-left", "bottom-right"};
    /* The tables follow the enums' values. */
    int backend = POLYATTN_BACKEND_AUTO, algo = POLYATTN_ALGO_AUTO;
    int dtype = 0, out_dtype = -1, mask = POLYATTN_MASK_NONE;
    int64_t device = 0;
    double budget_mib = 0;
    c->backend = POLYATTN_BACKEND_AUTO;
    c->device = 0;
    c->algo = POLYATTN_ALGO_AUTO;
    c->dtype = POLYATTN_DTYPE_F32;
    c->mask = POLYATTN_MASK_NONE;
    c->memory_budget_bytes = 0;
    c->out_dtype = POLYATTN_DTYPE_F32;
    c->q_descale = c->k_descale = c->v_descale = 0.0f;
    if (pa_cli_get_choice(args, "--backend", backends, 5, &backend) ||
        pa_cli_get_i64(args, "--device", 0, INT_MAX, &device) ||
        pa_cli_get_choice(args, "--algo", algos, 4, &algo) ||
        pa_cli_get_choice(args, "--dtype", dtypes, 4, &dtype) ||
        pa_cli_get_choice(args, "--out-dtype", dtypes, 3, &out_dtype) ||
        pa_cli_get_choice(args, "--causal", masks, 3, &mask) ||
        pa_cli_get_double(args, "--memory-budget", &budget_mib))
        return PA_EXIT_USAGE;
    if (pa_cli_has(args, "--memory-budget")) {
        /* 2^40 MiB: far beyond any device, far below uint64 overflow. */
        if (!(budget_mib > 0) || budget_mib > 1099511627776.0)
            return pa_cli_fail(args->cmd, "%s: expected a positive number of MiB, got '%s'",
                               "--memory-budget", pa_cli_get(args, "--memory-budget"));
        c->memory_budget_bytes = (uint64_t)(budget_mib * 1048576.0);
        if (c->memory_budget_bytes == 0) c->memory_budget_bytes = 1;
    }
    c->backend = (polyattn_backend)backend;
    c->device = (int)device;
    c->algo = (polyattn_algo)algo;
    c->dtype = dtype_values[dtype];
    c->mask = (polyattn_mask)mask;
    const int fp8 = c->dtype == POLYATTN_DTYPE_E4M3;
    c->out_dtype = out_dtype >= 0 ? dtype_values[out_dtype] : fp8 ? POLYATTN_DTYPE_BF16 : c->dtype;
    if (out_dtype >= 0 && !fp8 && c->out_dtype != c->dtype)
        return pa_cli_fail(args->cmd,
                           "--out-dtype: %s differs from --dtype %s; only e4m3 inputs write "
                           "another dtype",
                           dtypes[out_dtype], dtypes[dtype]);
    static const char *const descales[3] = {"--q-descale", "--k-descale", "--v-descale"};
    float *dst[3] = {&c->q_descale, &c->k_descale, &c->v_descale};
    for (int i = 0; i < 3; i++) {
        double x = 0;
        if (!pa_cli_has(args, descales[i])) continue;
        if (!fp8)
            return pa_cli_fail(args->cmd, "%s: descales apply to --dtype e4m3 only", descales[i]);
        if (pa_cli_get_double(args, descales[i], &x)) return PA_EXIT_USAGE;
        if (!(x > 0) || x > 3.4028234663852886e38 || (float)x == 0.0f)
            return pa_cli_fail(args->cmd,
                               "%s: expected a positive finite number (float range), got '%s'",
                               descales[i], pa_cli_get(args, descales[i]));
        *dst[i] = (float)x;
    }
    return 0;
}

void pa_cli_common_apply(const pa_cli_common *c, polyattn_attention_desc *desc)
{
    desc->o.dtype = c->out_dtype;
    desc->q_descale = c->q_descale, desc->k_descale = c->k_descale;
    desc->v_descale = c->v_descale;
}
