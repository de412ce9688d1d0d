/* polyattn: the command-line tool.  Dispatches to one command per file (cmd_*.c). */
#include "bench.h"

#include <string.h>

static const char usage[] =
    "usage: polyattn <command> [options]\n"
    "\n"
    "commands:\n"
    "  devices   list backends and devices (--json)\n"
    "  run       attention over .npy inputs (dense, varlen, KV cache, paged), outputs as .npy\n"
    "  explain   the planner's choice and every candidate's rejection for a shape\n"
    "  bench     validated timings of suites (article, fa2, decode, serving, custom)\n"
    "\n"
    "  polyattn <command> --help   options of a command\n"
    "  polyattn --version          library and tool versions\n"
    "\n"
    "Exit status: 0 success, 1 device or library failure, 2 bad usage or bad input.\n"
    "Logs: POLYATTN_LOG=dispatch,build,profile (or all) prints them on stderr.\n";

int main(int argc, char **argv)
{
    if (argc < 2) return pa_cli_fail(NULL, "missing command (see polyattn --help)");
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage, stdout);
        return PA_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("polyattn %s (library ABI %d; tool built against %d.%d.%d, ABI %d)\n",
               polyattn_version_string(), polyattn_abi_version(), POLYATTN_VERSION_MAJOR,
               POLYATTN_VERSION_MINOR, POLYATTN_VERSION_PATCH, POLYATTN_ABI_VERSION);
        return PA_EXIT_OK;
    }
    if (polyattn_abi_version() != POLYATTN_ABI_VERSION)
        return pa_cli_fail_code(PA_EXIT_RUNTIME, NULL,
                                "library ABI %d does not match the tool's ABI %d",
                                polyattn_abi_version(), POLYATTN_ABI_VERSION);
    if (strcmp(cmd, "devices") == 0) return pa_cmd_devices(argc - 2, argv + 2);
    if (strcmp(cmd, "run") == 0) return pa_cmd_run(argc - 2, argv + 2);
    if (strcmp(cmd, "explain") == 0) return pa_cmd_explain(argc - 2, argv + 2);
    if (strcmp(cmd, "bench") == 0) return pa_cmd_bench(argc - 2, argv + 2);
    return pa_cli_fail(NULL, "unknown command '%s' (see polyattn --help)", cmd);
}
