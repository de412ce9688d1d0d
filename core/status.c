/* Status codes, names of enums, versions. */
#include "pa_core.h"

const char *polyattn_status_string(polyattn_status status)
{
    switch (status) {
#define PA_STATUS_TEXT_(name, value, text)                                                         \
    case POLYATTN_STATUS_##name: return text;
        POLYATTN_STATUS_TABLE(PA_STATUS_TEXT_)
#undef PA_STATUS_TEXT_
    default: return "unknown status";
    }
}

const char *polyattn_status_name(polyattn_status status)
{
    switch (status) {
#define PA_STATUS_NAME_(name, value, text)                                                         \
    case POLYATTN_STATUS_##name: return #name;
        POLYATTN_STATUS_TABLE(PA_STATUS_NAME_)
#undef PA_STATUS_NAME_
    default: return "UNKNOWN";
    }
}

int polyattn_version(void)
{
    return POLYATTN_VERSION_MAJOR * 10000 + POLYATTN_VERSION_MINOR * 100 + POLYATTN_VERSION_PATCH;
}

const char *polyattn_version_string(void) { return POLYATTN_VERSION_STRING; }

int polyattn_abi_version(void) { return POLYATTN_ABI_VERSION; }

const char *polyattn_dtype_name(polyattn_dtype dtype)
{
    switch (dtype) {
    case POLYATTN_DTYPE_F32: return "f32";
    case POLYATTN_DTYPE_F16: return "f16";
    case POLYATTN_DTYPE_BF16: return "bf16";
    case POLYATTN_DTYPE_U8: return "u8";
    case POLYATTN_DTYPE_E4M3: return "e4m3";
    }
    return "unknown";
}

size_t polyattn_dtype_size(polyattn_dtype dtype)
{
    switch (dtype) {
    case POLYATTN_DTYPE_F32: return 4;
    case POLYATTN_DTYPE_F16:
    case POLYATTN_DTYPE_BF16: return 2;
    case POLYATTN_DTYPE_U8:
    case POLYATTN_DTYPE_E4M3: return 1;
    }
    return 0;
}

const char *polyattn_mask_name(polyattn_mask mask)
{
    switch (mask) {
    case POLYATTN_MASK_NONE: return "none";
    case POLYATTN_MASK_CAUSAL_TOP_LEFT: return "causal-top-left";
    case POLYATTN_MASK_CAUSAL_BOTTOM_RIGHT: return "causal-bottom-right";
    }
    return "unknown";
}

const char *polyattn_algo_name(polyattn_algo algo)
{
    switch (algo) {
    case POLYATTN_ALGO_AUTO: return "auto";
    case POLYATTN_ALGO_UNFUSED: return "unfused";
    case POLYATTN_ALGO_FUSED: return "fused";
    case POLYATTN_ALGO_FLASH: return "flash";
    }
    return "unknown";
}

const char *polyattn_backend_name(polyattn_backend backend)
{
    switch (backend) {
    case POLYATTN_BACKEND_AUTO: return "auto";
    case POLYATTN_BACKEND_CUDA: return "cuda";
    case POLYATTN_BACKEND_HIP: return "hip";
    case POLYATTN_BACKEND_OPENCL: return "opencl";
    case POLYATTN_BACKEND_HOST: return "host";
    }
    return "unknown";
}
