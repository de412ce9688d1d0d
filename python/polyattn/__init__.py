"""polyattn: attention on CUDA, HIP, OpenCL and the host, from NumPy, torch, CuPy and JAX.

    import numpy as np, polyattn
    q = k = v = np.random.rand(2, 128, 8, 64).astype(np.float32)   # [batch, seq, heads, dim]
    o = polyattn.flash_attn_func(q, k, v, causal=True)              # host backend
    o = polyattn.flash_attn_func(q, k, v, causal=True, backend="opencl")
"""
from ._errors import (DeviceError, Error, InternalError, InvalidArgumentError,
                      KernelBuildFailedError, NotFoundError, OutOfMemoryError, OverBudgetError,
                      UnsupportedError)
from ._arrays import e4m3
from ._lib import library_path
from ._runtime import cache_info, clear_caches
from .api import (attention, devices, explain, flash_attn_func, flash_attn_varlen_func,
                  flash_attn_with_kvcache)


def version():
    """The loaded C library's version string."""
    from ._lib import lib
    return lib.polyattn_version_string().decode()


__version__ = "0.1.0"
__all__ = ["attention", "flash_attn_func", "flash_attn_varlen_func", "flash_attn_with_kvcache",
           "explain", "devices", "version", "e4m3", "library_path", "cache_info", "clear_caches",
           "Error", "InvalidArgumentError", "UnsupportedError", "OutOfMemoryError",
           "OverBudgetError", "NotFoundError", "DeviceError", "KernelBuildFailedError",
           "InternalError"]
