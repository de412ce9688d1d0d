/* Reading Q, K, V (and appended rows) for `run`: float32 .npy, or with --dtype e4m3 also
 * uint8 .npy holding the raw e4m3 bytes (numpy has no float8). */
#include "cli.h"
#include "npy.h"

#include <math.h>
#include <stdlib.h>

int pa_cli_read_input(const char *cmd, const char *opt, const char *path, polyattn_dtype dtype,
                      pa_npy_array *a)
{
    char err[512], err_u8[512];
    if (pa_npy_read_f32(path, a, err, sizeof err) == 0) {
        if (dtype != POLYATTN_DTYPE_E4M3) return 0;
        /* float32 values round to e4m3: one beyond its range would become NaN. */
        for (uint64_t i = 0; i < a->count; i++)
            if (!isnan(a->data[i]) && isnan(pa_cli_e4m3_to_f32(pa_cli_f32_to_e4m3(a->data[i]))))
                return pa_cli_fail(cmd,
                                   "%s: element %llu is %g, beyond e4m3's range (+-448; or "
                                   "pass the raw e4m3 bytes as a uint8 .npy) (%s)",
                                   opt, (unsigned long long)i, (double)a->data[i], path);
        return 0;
    }
    if (dtype != POLYATTN_DTYPE_E4M3 || pa_npy_read_u8(path, a, err_u8, sizeof err_u8) != 0)
        return pa_cli_fail(cmd, "%s: %s%s (%s)", opt, err,
                           dtype == POLYATTN_DTYPE_E4M3 ? " or '|u1' (raw e4m3 bytes)" : "", path);
    /* Raw bytes: decoded exactly; the upload encodes them back to the same bytes. */
    a->data = malloc((a->count ? a->count : 1) * sizeof *a->data);
    if (!a->data) return pa_cli_fail_code(PA_EXIT_RUNTIME, cmd, "%s: out of host memory", opt);
    for (uint64_t i = 0; i < a->count; i++)
        a->data[i] = pa_cli_e4m3_to_f32(a->bytes[i]);
    free(a->bytes);
    a->bytes = NULL;
    return 0;
}
