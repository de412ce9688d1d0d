/* Opening the context a command asked for, and mapping library failures to exit codes. */
#include "cli.h"

int pa_cli_status_exit(polyattn_status status)
{
    if (status == POLYATTN_STATUS_SUCCESS) return PA_EXIT_OK;
    return status == POLYATTN_STATUS_INVALID_ARGUMENT ? PA_EXIT_USAGE : PA_EXIT_RUNTIME;
}

int pa_cli_fail_status(const char *cmd, polyattn_context *ctx, polyattn_status status,
                       const char *what)
{
    const char *msg = ctx ? polyattn_context_last_error(ctx) : polyattn_last_error();
    if (!msg || !msg[0]) msg = polyattn_status_string(status);
    return pa_cli_fail_code(pa_cli_status_exit(status), cmd, "%s: %s: %s", what,
                            polyattn_status_name(status), msg);
}

int pa_cli_open_context(const char *cmd, const pa_cli_common *c, polyattn_context **ctx)
{
    *ctx = NULL;
    if (c->backend != POLYATTN_BACKEND_AUTO) {
        const char *name = polyattn_backend_name(c->backend);
        int count = 0;
        const char *reason = NULL;
        if (!polyattn_backend_compiled(c->backend))
            return pa_cli_fail_code(PA_EXIT_RUNTIME, cmd,
                                    "--backend: %s is not compiled into this build", name);
        polyattn_status st = polyattn_device_count(c->backend, &count, &reason);
        if (st != POLYATTN_STATUS_SUCCESS) return pa_cli_fail_status(cmd, NULL, st, "--backend");
        if (count == 0)
            return pa_cli_fail_code(PA_EXIT_RUNTIME, cmd, "--backend: %s has no device (%s)", name,
                                    reason && reason[0] ? reason : "none found");
        if (c->device >= count)
            return pa_cli_fail(cmd, "--device: index %d out of range: %s has %d device%s",
                               c->device, name, count, count == 1 ? "" : "s");
    }
    polyattn_status st = polyattn_context_create(c->backend, c->device, ctx);
    if (st == POLYATTN_STATUS_SUCCESS) return PA_EXIT_OK;
    *ctx = NULL;
    if (st == POLYATTN_STATUS_NOT_FOUND && c->device > 0) {
        const char *msg = polyattn_last_error();
        if (msg && msg[0]) return pa_cli_fail(cmd, "--device: %s", msg);
        return pa_cli_fail(cmd, "--device: index %d out of range", c->device);
    }
    return pa_cli_fail_status(cmd, NULL, st, "cannot open the device");
}
