/* JSON and human-readable output helpers. */
#include "cli.h"

#include <math.h>

void pa_json_string(FILE *out, const char *text)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)(text ? text : ""); *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20) fprintf(out, "\\u%04x", *p);
            else fputc(*p, out);
        }
    }
    fputc('"', out);
}

void pa_json_number(FILE *out, double value)
{
    if (!isfinite(value)) fputs("null", out);
    else if (value == floor(value) && fabs(value) < 9.0e15) fprintf(out, "%.0f", value);
    else fprintf(out, "%.9g", value);
}

const char *pa_cli_bytes_human(uint64_t bytes, char *buf)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0) snprintf(buf, 32, "%llu B", (unsigned long long)bytes);
    else snprintf(buf, 32, "%.1f %s", v, units[u]);
    return buf;
}
