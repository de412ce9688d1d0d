"""Loads libpolyattn and declares the C API (include/polyattn.h) for ctypes.

Lookup order: $POLYATTN_LIBRARY; next to the package as `cmake --install` lays it out
(<prefix>/lib/python/polyattn beside <prefix>/lib/libpolyattn.so); the build tree
(<repo>/build/lib); then the system loader's search path.
"""
import ctypes
import ctypes.util
import os
from pathlib import Path

from ._errors import error_for

c_int64_4 = ctypes.c_int64 * 4

# Enum values of polyattn.h.
BACKENDS = {"auto": 0, "cuda": 1, "hip": 2, "opencl": 3, "host": 4}
BACKEND_NAMES = {v: k for k, v in BACKENDS.items()}
ALGOS = {"auto": 0, "unfused": 1, "fused": 2, "flash": 3}
ALGO_NAMES = {v: k for k, v in ALGOS.items()}
MASKS = {None: 0, "none": 0, "causal-top-left": 1, "causal-bottom-right": 2}
MASK_NAMES = {0: "none", 1: "causal-top-left", 2: "causal-bottom-right"}
DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_U8, DTYPE_E4M3 = 0, 1, 2, 3, 4
ALIBI_NONE, ALIBI_PER_HEAD, ALIBI_PER_BATCH_HEAD = 0, 1, 2
KV_DENSE, KV_VARLEN, KV_CACHE, KV_PAGED = 0, 1, 2, 3
KV_LAYOUT_NAMES = {0: "dense", 1: "varlen", 2: "cache", 3: "paged"}
DTYPE_NAMES = {0: "f32", 1: "f16", 2: "bf16", 4: "e4m3"}
STATUS_NAMES = {0: "SUCCESS", 1: "INVALID_ARGUMENT", 2: "UNSUPPORTED", 3: "OUT_OF_MEMORY",
                4: "OVER_BUDGET", 5: "NOT_FOUND", 6: "DEVICE_ERROR",
                7: "KERNEL_BUILD_FAILED", 8: "INTERNAL_ERROR"}


class TensorDesc(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int), ("shape", c_int64_4), ("strides", c_int64_4)]


class AttentionDesc(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("q", TensorDesc), ("k", TensorDesc),
                ("v", TensorDesc), ("o", TensorDesc), ("scale", ctypes.c_float),
                ("mask", ctypes.c_int),
                # score variants (appended behind struct_size)
                ("has_window", ctypes.c_int), ("window_left", ctypes.c_int64),
                ("window_right", ctypes.c_int64), ("softcap", ctypes.c_float),
                ("alibi", ctypes.c_int), ("has_bias", ctypes.c_int), ("bias", TensorDesc),
                ("has_attn_mask", ctypes.c_int), ("attn_mask", TensorDesc),
                ("has_sinks", ctypes.c_int),
                # serving layouts (appended behind struct_size)
                ("varlen_q", ctypes.c_int), ("num_seqs", ctypes.c_int64),
                ("max_seqlen_q", ctypes.c_int64), ("max_seqlen_kv", ctypes.c_int64),
                ("kv_layout", ctypes.c_int), ("max_blocks_per_seq", ctypes.c_int64),
                ("has_kv_append", ctypes.c_int), ("k_new", TensorDesc), ("v_new", TensorDesc),
                # e4m3 inputs' descales (appended; 0 means 1)
                ("q_descale", ctypes.c_float), ("k_descale", ctypes.c_float),
                ("v_descale", ctypes.c_float)]


class ExtraTensors(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("alibi_slopes", ctypes.c_void_p),
                ("bias", ctypes.c_void_p), ("attn_mask", ctypes.c_void_p),
                ("sinks", ctypes.c_void_p), ("d_bias", ctypes.c_void_p),
                ("d_sinks", ctypes.c_void_p),
                # serving layouts (int32 offsets, lengths and block indices; appended rows)
                ("cu_seqlens_q", ctypes.c_void_p), ("cu_seqlens_kv", ctypes.c_void_p),
                ("seqused_kv", ctypes.c_void_p), ("block_table", ctypes.c_void_p),
                ("k_new", ctypes.c_void_p), ("v_new", ctypes.c_void_p)]


class PlanOptions(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("algo", ctypes.c_int),
                ("memory_budget_bytes", ctypes.c_uint64), ("debug", ctypes.c_int),
                ("want_lse", ctypes.c_int), ("want_probs", ctypes.c_int),
                ("autotune", ctypes.c_int), ("autotune_cache_file", ctypes.c_char_p),
                ("want_backward", ctypes.c_int), ("deterministic", ctypes.c_int),
                ("want_bias_grad", ctypes.c_int), ("check_device_inputs", ctypes.c_int),
                ("num_splits", ctypes.c_int)]


class Candidate(ctypes.Structure):
    _fields_ = [("algo", ctypes.c_int), ("status", ctypes.c_int), ("chosen", ctypes.c_int),
                ("workspace_bytes", ctypes.c_uint64), ("device_bytes", ctypes.c_uint64),
                ("reason", ctypes.c_char * 256)]


class PlanInfo(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("backend", ctypes.c_int),
                ("algo", ctypes.c_int), ("workspace_bytes", ctypes.c_uint64),
                ("device_bytes", ctypes.c_uint64), ("flops", ctypes.c_double),
                ("min_bytes_moved", ctypes.c_double), ("kernel_launches", ctypes.c_int),
                ("reason", ctypes.c_char * 256), ("n_candidates", ctypes.c_int),
                ("candidates", Candidate * 3), ("backward_workspace_bytes", ctypes.c_uint64),
                ("num_splits", ctypes.c_int), ("varlen_q", ctypes.c_int),
                ("kv_layout", ctypes.c_int), ("kv_block_size", ctypes.c_int64)]


class DeviceInfo(ctypes.Structure):
    _fields_ = [("struct_size", ctypes.c_size_t), ("backend", ctypes.c_int),
                ("index", ctypes.c_int), ("name", ctypes.c_char * 256),
                ("vendor", ctypes.c_char * 128), ("driver_version", ctypes.c_char * 128),
                ("arch", ctypes.c_char * 64), ("global_mem_bytes", ctypes.c_uint64),
                ("local_mem_bytes", ctypes.c_uint64), ("compute_units", ctypes.c_int),
                ("max_work_group_size", ctypes.c_int), ("subgroup_size", ctypes.c_int),
                ("f16_storage", ctypes.c_int), ("bf16_storage", ctypes.c_int),
                ("f16_arithmetic", ctypes.c_int), ("bf16_arithmetic", ctypes.c_int)]


_p = ctypes.c_void_p
_st = ctypes.c_int
_PROTOTYPES = {
    "polyattn_version": (ctypes.c_int, []),
    "polyattn_version_string": (ctypes.c_char_p, []),
    "polyattn_abi_version": (ctypes.c_int, []),
    "polyattn_status_string": (ctypes.c_char_p, [ctypes.c_int]),
    "polyattn_backend_compiled": (ctypes.c_int, [ctypes.c_int]),
    "polyattn_device_count": (_st, [ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                    ctypes.POINTER(ctypes.c_char_p)]),
    "polyattn_device_get_info": (_st, [ctypes.c_int, ctypes.c_int, ctypes.POINTER(DeviceInfo)]),
    "polyattn_context_create": (_st, [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_p)]),
    "polyattn_context_destroy": (None, [_p]),
    "polyattn_context_last_error": (ctypes.c_char_p, [_p]),
    "polyattn_last_error": (ctypes.c_char_p, []),
    "polyattn_context_synchronize": (_st, [_p]),
    "polyattn_buffer_alloc": (_st, [_p, ctypes.c_uint64, ctypes.POINTER(_p)]),
    "polyattn_buffer_free": (None, [_p]),
    "polyattn_buffer_write": (_st, [_p, ctypes.c_uint64, _p, ctypes.c_uint64]),
    "polyattn_buffer_read": (_st, [_p, ctypes.c_uint64, _p, ctypes.c_uint64]),
    "polyattn_attention_desc_validate": (_st, [ctypes.POINTER(AttentionDesc),
                                               ctypes.POINTER(ctypes.c_char_p)]),
    "polyattn_plan_options_init": (None, [ctypes.POINTER(PlanOptions)]),
    "polyattn_plan_create": (_st, [_p, ctypes.POINTER(AttentionDesc),
                                   ctypes.POINTER(PlanOptions), ctypes.POINTER(_p)]),
    "polyattn_plan_destroy": (None, [_p]),
    "polyattn_plan_get_info": (_st, [_p, ctypes.POINTER(PlanInfo)]),
    "polyattn_forward": (_st, [_p] * 8),
    "polyattn_backward": (_st, [_p] * 11),
    "polyattn_forward_ex": (_st, [_p] * 8 + [ctypes.POINTER(ExtraTensors)]),
    "polyattn_backward_ex": (_st, [_p] * 11 + [ctypes.POINTER(ExtraTensors)]),
    # A buffer around caller host memory: NumPy and torch CPU tensors run without a copy.
    "polyattn_host_buffer_wrap": (_st, [_p, _p, ctypes.c_uint64, ctypes.POINTER(_p)]),
}
# Interop entry points, in the backend modules (libpolyattn_<backend>.so).
_INTEROP = {
    "cuda": {
        "polyattn_cuda_context_create": (_st, [ctypes.c_int, _p, ctypes.POINTER(_p)]),
        "polyattn_cuda_buffer_wrap": (_st, [_p, _p, ctypes.c_uint64, ctypes.POINTER(_p)]),
    },
    "hip": {
        "polyattn_hip_context_create": (_st, [ctypes.c_int, _p, ctypes.POINTER(_p)]),
        "polyattn_hip_buffer_wrap": (_st, [_p, _p, ctypes.c_uint64, ctypes.POINTER(_p)]),
    },
}


def _candidates():
    env = os.environ.get("POLYATTN_LIBRARY")
    if env:
        yield Path(env)
        return
    here = Path(__file__).resolve().parent
    for folder in (here, here.parent, here.parent.parent):   # cmake --install layout
        yield folder / "libpolyattn.so"
    yield here.parent.parent / "build" / "lib" / "libpolyattn.so"  # python/ of a build tree
    found = ctypes.util.find_library("polyattn")
    if found:
        yield Path(found)


def _load():
    tried = []
    for path in _candidates():
        if path.is_absolute() and not path.exists():
            tried.append(f"{path} (absent)")
            continue
        try:
            return ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL), path
        except OSError as e:
            tried.append(f"{path} ({e})")
    raise ImportError("polyattn: cannot load libpolyattn.so; set POLYATTN_LIBRARY to its path. "
                      "Tried: " + "; ".join(tried or ["nothing: no candidate"]))


lib, library_path = _load()
for _name, (_res, _args) in _PROTOTYPES.items():
    _fn = getattr(lib, _name, None)
    if _fn is None:
        continue
    _fn.restype, _fn.argtypes = _res, _args

has_host_wrap = hasattr(lib, "polyattn_host_buffer_wrap")
_interop_libs = {}


def interop(backend):
    """The interop functions of a backend module, loaded from beside libpolyattn (or
    $POLYATTN_MODULE_PATH); None when that module is absent."""
    if backend in _interop_libs:
        return _interop_libs[backend]
    folder = Path(os.environ.get("POLYATTN_MODULE_PATH") or library_path.resolve().parent)
    module = None
    try:
        module = ctypes.CDLL(str(folder / f"libpolyattn_{backend}.so"))
        for name, (res, args) in _INTEROP.get(backend, {}).items():
            fn = getattr(module, name)
            fn.restype, fn.argtypes = res, args
    except (OSError, AttributeError):
        module = None
    _interop_libs[backend] = module
    return module


def check(status, context=None, function=None):
    """Raises the Error subclass of a failed status with the library's message."""
    if status == 0:
        return
    msg = lib.polyattn_context_last_error(context) if context else lib.polyattn_last_error()
    msg = (msg or b"").decode(errors="replace")
    if not msg:
        msg = (lib.polyattn_status_string(status) or b"").decode()
    raise error_for(status, msg, function)
