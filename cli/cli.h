/*
 * Shared pieces of the polyattn command-line tool.  Exit codes: 0 success, 1 runtime
 * failure (device, driver, nothing fits), 2 bad usage or bad input.
 */
#ifndef PA_CLI_H
#define PA_CLI_H

#include "polyattn.h"

#include <stdint.h>
#include <stdio.h>

enum { PA_EXIT_OK = 0, PA_EXIT_RUNTIME = 1, PA_EXIT_USAGE = 2 };

/* ---- option parsing (cli_args.c) ----------------------------------------- */

#define PA_CLI_MAX_OPTS 48

typedef struct pa_cli_opt {
    const char *name; /* "--q" */
    int takes_value;  /* 0: a flag */
} pa_cli_opt;

typedef struct pa_cli_args {
    const char *cmd; /* "run": used in messages */
    const pa_cli_opt *spec;
    int n_spec;
    const char *value[PA_CLI_MAX_OPTS]; /* NULL when absent; "" for a present flag */
    int help;                           /* --help or -h was given */
} pa_cli_args;

/* Prints "polyattn <cmd>: <message>" as one line on stderr (newlines in the message become
 * "; ") and returns PA_EXIT_USAGE or the code given to pa_cli_fail_code. */
int pa_cli_fail(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
int pa_cli_fail_code(int code, const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Parses argv[0..argc) (the words after the command name).  Returns 0 or PA_EXIT_USAGE
 * (message printed).  "--name value" and "--name=value" are accepted. */
int pa_cli_parse(pa_cli_args *args, const char *cmd, const pa_cli_opt *spec, int n_spec, int argc,
                 char **argv);
const char *pa_cli_get(const pa_cli_args *args, const char *name);
int pa_cli_has(const pa_cli_args *args, const char *name);
/* Each returns 0, or PA_EXIT_USAGE after printing a message naming the option.  When the
 * option is absent the output keeps its value (the caller's default) unless required. */
int pa_cli_require(const pa_cli_args *args, const char *name);
int pa_cli_get_i64(const pa_cli_args *args, const char *name, int64_t min, int64_t max,
                   int64_t *out);
int pa_cli_get_double(const pa_cli_args *args, const char *name, double *out);
int pa_cli_get_choice(const pa_cli_args *args, const char *name, const char *const *choices,
                      int n_choices, int *out);
/* --scale: positive, within float range, not underflowing to 0 (absent: *out unchanged). */
int pa_cli_get_scale(const pa_cli_args *args, double *out);

/* Options shared by run, explain and bench. */
typedef struct pa_cli_common {
    polyattn_backend backend;
    int device;
    polyattn_algo algo;
    polyattn_dtype dtype;
    polyattn_mask mask;
    uint64_t memory_budget_bytes; /* 0: none */
    /* --out-dtype (O on the device: the --dtype, or bf16 for e4m3 inputs) and the e4m3
     * inputs' --q-descale/--k-descale/--v-descale (0: 1). */
    polyattn_dtype out_dtype;
    float q_descale, k_descale, v_descale;
} pa_cli_common;

/* Fills *common from --backend --device --algo --dtype --causal --memory-budget --out-dtype
 * and the descales (each may be absent from the command's spec). */
int pa_cli_get_common(const pa_cli_args *args, pa_cli_common *common);
/* O's dtype and the descales of *common into a descriptor. */
void pa_cli_common_apply(const pa_cli_common *common, polyattn_attention_desc *desc);
/* The option words of the e4m3 options, for the commands' specs. */
#define PA_CLI_FP8_OPTIONS                                                                         \
    {"--out-dtype", 1}, {"--q-descale", 1}, {"--k-descale", 1}, { "--v-descale", 1 }

/* ---- context (cli_context.c) --------------------------------------------- */

/* Exit code for a library status: INVALID_ARGUMENT is bad input (2), the rest runtime (1). */
int pa_cli_status_exit(polyattn_status status);
/* Opens the context asked for; on failure prints one line and returns the exit code. */
int pa_cli_open_context(const char *cmd, const pa_cli_common *common, polyattn_context **ctx);
/* Prints a library failure: "polyattn <cmd>: <what>: <STATUS>: <message>", returns the
 * exit code of the status.  Message from the context (or the global last error). */
int pa_cli_fail_status(const char *cmd, polyattn_context *ctx, polyattn_status status,
                       const char *what);

/* ---- dtype conversions (convert.c) --------------------------------------- */

uint16_t pa_cli_f32_to_f16(float value); /* round to nearest even */
float pa_cli_f16_to_f32(uint16_t value);
uint16_t pa_cli_f32_to_bf16(float value); /* round to nearest even */
float pa_cli_bf16_to_f32(uint16_t value);
/* Converts count floats to dtype into dst (count * polyattn_dtype_size(dtype) bytes). */
void pa_cli_from_f32(polyattn_dtype dtype, const float *src, void *dst, uint64_t count);
void pa_cli_to_f32(polyattn_dtype dtype, const void *src, float *dst, uint64_t count);
/* e4m3 (OCP e4m3fn): exact decoding; encoding rounds to nearest even, NaN beyond +-464. */
uint8_t pa_cli_f32_to_e4m3(float value);
float pa_cli_e4m3_to_f32(uint8_t value);

/* ---- inputs (inputs.c) ---------------------------------------------------- */

struct pa_npy_array;
/* Reads a float32 .npy (or, with dtype e4m3, a uint8 .npy of raw e4m3 bytes, decoded) into
 * a->data; float32 values beyond e4m3's range are refused.  Returns 0 or an exit code after
 * printing one line naming opt. */
int pa_cli_read_input(const char *cmd, const char *opt, const char *path, polyattn_dtype dtype,
                      struct pa_npy_array *a);

/* ---- JSON and text output (json_out.c) ----------------------------------- */

/* A JSON string literal, quotes included. */
void pa_json_string(FILE *out, const char *text);
/* A finite number, or null for NaN/inf (JSON has neither). */
void pa_json_number(FILE *out, double value);
/* "64.0 MiB" style; buf must hold 32 bytes. */
const char *pa_cli_bytes_human(uint64_t bytes, char *buf);

/* ---- output files written atomically (outfile.c) ------------------------- */

/* A regular file (or a new name) is written to a temporary file in the destination's
 * folder, renamed over the destination only once everything succeeded, discarded otherwise.
 * A symbolic link, a FIFO or a character device (/dev/null, /dev/stdout) is never replaced:
 * the data are staged in an anonymous temporary file and written through the path at
 * commit.  Other kinds (folders, sockets, block devices) are refused with exit 2. */
typedef struct pa_outfile {
    const char *option; /* "--out": for messages */
    const char *path;   /* final name */
    char *tmp_path;     /* NULL until opened (staged and renamed) */
    FILE *file;         /* where the command writes */
    int through;        /* 1: written through the path at commit */
    int create;         /* through a symbolic link whose target may not exist yet */
    FILE *staged;       /* through: the data, once written */
} pa_outfile;

/* 1 when the two paths name the same file (device and inode, links followed), or, for a
 * path that does not exist yet, the same name in the same folder. */
int pa_cli_same_file(const char *a, const char *b);

int pa_outfile_open(pa_outfile *of, const char *cmd, const char *option, const char *path);
/* Writes a float32 .npy into the temp file and closes it. */
int pa_outfile_write_npy(pa_outfile *of, const char *cmd, const float *data, int rank,
                         const int64_t *shape);
/* Closes a file written through of->file (text reports). */
int pa_outfile_close(pa_outfile *of, const char *cmd);
int pa_outfile_commit(pa_outfile *of, const char *cmd);
void pa_outfile_discard(pa_outfile *of);

/* ---- commands ------------------------------------------------------------ */

int pa_cmd_devices(int argc, char **argv);
int pa_cmd_run(int argc, char **argv);
int pa_cmd_explain(int argc, char **argv);

#endif /* PA_CLI_H */
