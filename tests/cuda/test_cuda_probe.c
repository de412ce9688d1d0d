/*
 * The CUDA probe on a machine without the NVIDIA driver (issue #25): 0 devices, SUCCESS, and
 * a reason that says no driver was found (the static runtime alone would say "CUDA driver
 * version is insufficient").  With the driver installed the reason must not claim it is
 * missing.  Runs (and must pass) on every machine.
 */
#include "polyattn.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    int count = -1;
    const char *reason = NULL;
    const polyattn_status st = polyattn_device_count(POLYATTN_BACKEND_CUDA, &count, &reason);
    if (!reason) reason = "";
    void *lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    const int driver = lib != NULL;
    if (lib) dlclose(lib);
    printf("cuda: %d device(s), reason \"%s\"; libcuda.so.1 %s\n", count, reason,
           driver ? "loads" : "absent");
    if (st != POLYATTN_STATUS_SUCCESS) {
        printf("FAIL: polyattn_device_count: %s\n", polyattn_status_name(st));
        return 1;
    }
    const int says_no_driver = strstr(reason, "no NVIDIA driver") != NULL;
    if (!driver && (count != 0 || !says_no_driver)) {
        printf("FAIL: without the driver the reason must say no NVIDIA driver was found\n");
        return 1;
    }
    if (driver && says_no_driver) {
        printf("FAIL: the driver loads, yet the reason says none was found\n");
        return 1;
    }
    printf("pass\n");
    return 0;
}
