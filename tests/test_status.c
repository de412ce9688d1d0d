/* Status strings and names, versions, enum names and dtype sizes. */
#include "polyattn.h"

#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static void check_str(const char *got, const char *want, const char *what)
{
    if (!got || strcmp(got, want) != 0) {
        fprintf(stderr, "%s: got \"%s\", want \"%s\"\n", what, got ? got : "(null)", want);
        failures++;
    }
}

int main(void)
{
    char buf[64];
    int i;

    /* Every status in the table has a distinct name and a non-empty description. */
#define CHECK_STATUS_(name, value, text)                                                           \
    check_str(polyattn_status_name(POLYATTN_STATUS_##name), #name, "status name");                 \
    check_str(polyattn_status_string(POLYATTN_STATUS_##name), text, "status string");              \
    CHECK((int)POLYATTN_STATUS_##name == value);
    POLYATTN_STATUS_TABLE(CHECK_STATUS_)
#undef CHECK_STATUS_
    CHECK(POLYATTN_STATUS_SUCCESS == 0);
    for (i = 0; i < POLYATTN_STATUS_COUNT_; i++) {
        int j;
        for (j = i + 1; j < POLYATTN_STATUS_COUNT_; j++)
            CHECK(strcmp(polyattn_status_name((polyattn_status)i),
                         polyattn_status_name((polyattn_status)j)) != 0);
    }
    /* Out-of-range values still give a string, never NULL. */
    CHECK(polyattn_status_string((polyattn_status)-1) != NULL);
    CHECK(polyattn_status_string((polyattn_status)1000) != NULL);
    CHECK(polyattn_status_name((polyattn_status)1000) != NULL);
    CHECK(polyattn_status_name((polyattn_status)POLYATTN_STATUS_COUNT_) != NULL);

    /* Versions: the loaded library matches the header this test was compiled with. */
    CHECK(polyattn_version() ==
          POLYATTN_VERSION_MAJOR * 10000 + POLYATTN_VERSION_MINOR * 100 + POLYATTN_VERSION_PATCH);
    snprintf(buf, sizeof buf, "%d.%d.%d", POLYATTN_VERSION_MAJOR, POLYATTN_VERSION_MINOR,
             POLYATTN_VERSION_PATCH);
    check_str(polyattn_version_string(), buf, "version string");
    CHECK(polyattn_abi_version() == POLYATTN_ABI_VERSION);

    /* Enum names: the spellings the CLI and docs use. */
    check_str(polyattn_dtype_name(POLYATTN_DTYPE_F32), "f32", "dtype");
    check_str(polyattn_dtype_name(POLYATTN_DTYPE_F16), "f16", "dtype");
    check_str(polyattn_dtype_name(POLYATTN_DTYPE_BF16), "bf16", "dtype");
    check_str(polyattn_dtype_name(POLYATTN_DTYPE_E4M3), "e4m3", "dtype");
    CHECK(polyattn_dtype_name((polyattn_dtype)99) != NULL);
    CHECK(polyattn_dtype_size(POLYATTN_DTYPE_F32) == 4);
    CHECK(polyattn_dtype_size(POLYATTN_DTYPE_F16) == 2);
    CHECK(polyattn_dtype_size(POLYATTN_DTYPE_BF16) == 2);
    CHECK(polyattn_dtype_size(POLYATTN_DTYPE_E4M3) == 1);
    CHECK(polyattn_dtype_size((polyattn_dtype)99) == 0);
    CHECK(polyattn_dtype_size((polyattn_dtype)-1) == 0);

    check_str(polyattn_mask_name(POLYATTN_MASK_NONE), "none", "mask");
    check_str(polyattn_mask_name(POLYATTN_MASK_CAUSAL_TOP_LEFT), "causal-top-left", "mask");
    check_str(polyattn_mask_name(POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT), "causal-bottom-right", "mask");
    CHECK(polyattn_mask_name((polyattn_mask)99) != NULL);

    check_str(polyattn_algo_name(POLYATTN_ALGO_AUTO), "auto", "algo");
    check_str(polyattn_algo_name(POLYATTN_ALGO_UNFUSED), "unfused", "algo");
    check_str(polyattn_algo_name(POLYATTN_ALGO_FUSED), "fused", "algo");
    check_str(polyattn_algo_name(POLYATTN_ALGO_FLASH), "flash", "algo");
    CHECK(polyattn_algo_name((polyattn_algo)99) != NULL);
    CHECK(POLYATTN_ALGO_COUNT == 4);

    check_str(polyattn_backend_name(POLYATTN_BACKEND_AUTO), "auto", "backend");
    check_str(polyattn_backend_name(POLYATTN_BACKEND_CUDA), "cuda", "backend");
    check_str(polyattn_backend_name(POLYATTN_BACKEND_HIP), "hip", "backend");
    check_str(polyattn_backend_name(POLYATTN_BACKEND_OPENCL), "opencl", "backend");
    check_str(polyattn_backend_name(POLYATTN_BACKEND_HOST), "host", "backend");
    CHECK(polyattn_backend_name((polyattn_backend)99) != NULL);
    CHECK(POLYATTN_BACKEND_COUNT == 5);

    /* The host backend is always compiled in and always has exactly one device. */
    {
        int count = -1;
        const char *reason = NULL;
        polyattn_device_info info;
        CHECK(polyattn_backend_compiled(POLYATTN_BACKEND_HOST));
        CHECK(polyattn_device_count(POLYATTN_BACKEND_HOST, &count, &reason) ==
              POLYATTN_STATUS_SUCCESS);
        CHECK(count == 1);
        memset(&info, 0, sizeof info);
        info.struct_size = sizeof info;
        CHECK(polyattn_device_get_info(POLYATTN_BACKEND_HOST, 0, &info) == POLYATTN_STATUS_SUCCESS);
        CHECK(info.backend == POLYATTN_BACKEND_HOST);
        CHECK(info.name[0] != '\0');
        CHECK(info.compute_units >= 1);
        CHECK(info.global_mem_bytes > 0);
        CHECK(info.f16_storage && info.bf16_storage);
        printf("host device: %s (%s, %s), %d CPUs, %.1f GiB\n", info.name, info.vendor, info.arch,
               info.compute_units, (double)info.global_mem_bytes / (1024.0 * 1024.0 * 1024.0));
        /* An index past the end is NOT_FOUND, not a crash. */
        CHECK(polyattn_device_get_info(POLYATTN_BACKEND_HOST, 1, &info) != POLYATTN_STATUS_SUCCESS);
        /* A backend value out of range is rejected. */
        CHECK(polyattn_device_count((polyattn_backend)99, &count, NULL) != POLYATTN_STATUS_SUCCESS);
        /* Every backend answers device_count with SUCCESS (0 devices when absent). */
        for (i = POLYATTN_BACKEND_CUDA; i <= POLYATTN_BACKEND_HOST; i++) {
            count = -1;
            reason = NULL;
            CHECK(polyattn_device_count((polyattn_backend)i, &count, &reason) ==
                  POLYATTN_STATUS_SUCCESS);
            CHECK(count >= 0);
            printf("%-7s compiled=%d devices=%d%s%s\n", polyattn_backend_name((polyattn_backend)i),
                   polyattn_backend_compiled((polyattn_backend)i), count, reason ? " reason: " : "",
                   reason ? reason : "");
            if (count == 0) CHECK(reason != NULL && reason[0] != '\0');
        }
    }

    if (failures) {
        fprintf(stderr, "test_status: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_status: all checks passed\n");
    return 0;
}
