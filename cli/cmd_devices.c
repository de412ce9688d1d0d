/* polyattn devices [--json]: every backend compiled in, its devices or why it has none. */
#include "cli.h"

#include <string.h>

static const char usage[] =
    "usage: polyattn devices [--json]\n"
    "\n"
    "Lists every backend compiled into this build (cuda, hip, opencl, host) with its\n"
    "devices, or the reason it has none (module or driver missing).\n"
    "\n"
    "  --json   one JSON object on stdout: {\"backends\": [{\"name\", \"compiled\",\n"
    "           \"device_count\", \"reason\", \"devices\": [...]}]}\n";

static const polyattn_backend order[] = {POLYATTN_BACKEND_CUDA, POLYATTN_BACKEND_HIP,
                                         POLYATTN_BACKEND_OPENCL, POLYATTN_BACKEND_HOST};
#define N_ORDER ((int)(sizeof order / sizeof order[0]))

static void print_info_text(const polyattn_device_info *d)
{
    char mem[32], local[32];
    printf("  [%d] %s\n", d->index, d->name);
    printf("      vendor: %s\n", d->vendor);
    printf("      driver: %s\n", d->driver_version);
    printf("      arch: %s\n", d->arch);
    printf("      memory: %s (%llu bytes), local memory: %s\n",
           pa_cli_bytes_human(d->global_mem_bytes, mem), (unsigned long long)d->global_mem_bytes,
           pa_cli_bytes_human(d->local_mem_bytes, local));
    printf("      compute units: %d, max work-group: %d, subgroup: %d\n", d->compute_units,
           d->max_work_group_size, d->subgroup_size);
    printf("      f16: storage %s, arithmetic %s; bf16: storage %s, arithmetic %s\n",
           d->f16_storage ? "yes" : "no", d->f16_arithmetic ? "yes" : "no",
           d->bf16_storage ? "yes" : "no", d->bf16_arithmetic ? "yes" : "no");
}

static void print_info_json(const polyattn_device_info *d)
{
    printf("{\"index\": %d, \"name\": ", d->index);
    pa_json_string(stdout, d->name);
    printf(", \"vendor\": ");
    pa_json_string(stdout, d->vendor);
    printf(", \"driver_version\": ");
    pa_json_string(stdout, d->driver_version);
    printf(", \"arch\": ");
    pa_json_string(stdout, d->arch);
    printf(", \"global_mem_bytes\": %llu, \"local_mem_bytes\": %llu, \"compute_units\": %d, "
           "\"max_work_group_size\": %d, \"subgroup_size\": %d, \"f16_storage\": %s, "
           "\"bf16_storage\": %s, \"f16_arithmetic\": %s, \"bf16_arithmetic\": %s}",
           (unsigned long long)d->global_mem_bytes, (unsigned long long)d->local_mem_bytes,
           d->compute_units, d->max_work_group_size, d->subgroup_size,
           d->f16_storage ? "true" : "false", d->bf16_storage ? "true" : "false",
           d->f16_arithmetic ? "true" : "false", d->bf16_arithmetic ? "true" : "false");
}

int pa_cmd_devices(int argc, char **argv)
{
    static const pa_cli_opt spec[] = {{"--json", 0}};
    pa_cli_args args;
    if (pa_cli_parse(&args, "devices", spec, 1, argc, argv)) return PA_EXIT_USAGE;
    if (args.help) {
        fputs(usage, stdout);
        return PA_EXIT_OK;
    }
    int json = pa_cli_has(&args, "--json");
    int failed = 0;
    if (json) printf("{\"version\": \"%s\", \"backends\": [", polyattn_version_string());
    int first_backend = 1;
    for (int b = 0; b < N_ORDER; b++) {
        polyattn_backend backend = order[b];
        const char *name = polyattn_backend_name(backend);
        if (!polyattn_backend_compiled(backend)) continue;
        int count = 0;
        const char *reason = NULL;
        polyattn_status st = polyattn_device_count(backend, &count, &reason);
        if (st != POLYATTN_STATUS_SUCCESS) {
            count = 0;
            reason = polyattn_last_error();
            if (!reason || !reason[0]) reason = polyattn_status_string(st);
            failed = 1;
        }
        if (json) {
            printf("%s\n  {\"name\": \"%s\", \"compiled\": true, \"device_count\": %d, "
                   "\"reason\": ",
                   first_backend ? "" : ",", name, count);
            if (count == 0)
                pa_json_string(stdout, reason && reason[0] ? reason : "no device found");
            else printf("null");
            printf(", \"devices\": [");
        } else {
            if (count == 0)
                printf("%s: 0 devices (%s)\n", name,
                       reason && reason[0] ? reason : "no device found");
            else printf("%s: %d device%s\n", name, count, count == 1 ? "" : "s");
        }
        first_backend = 0;
        for (int i = 0; i < count; i++) {
            polyattn_device_info info;
            memset(&info, 0, sizeof info);
            info.struct_size = sizeof info;
            st = polyattn_device_get_info(backend, i, &info);
            if (st != POLYATTN_STATUS_SUCCESS) {
                const char *msg = polyattn_last_error();
                failed = 1;
                if (json) {
                    printf("%s\n    {\"index\": %d, \"error\": ", i ? "," : "", i);
                    pa_json_string(stdout, msg && msg[0] ? msg : polyattn_status_string(st));
                    printf("}");
                } else {
                    printf("  [%d] error: %s: %s\n", i, polyattn_status_name(st),
                           msg && msg[0] ? msg : polyattn_status_string(st));
                }
                continue;
            }
            if (json) {
                printf("%s\n    ", i ? "," : "");
                print_info_json(&info);
            } else {
                print_info_text(&info);
            }
        }
        if (json) printf("%s]}", count ? "\n  " : "");
    }
    if (json) printf("\n]}\n");
    return failed ? PA_EXIT_RUNTIME : PA_EXIT_OK;
}
