"""Arrays of NumPy, torch, CuPy, JAX or any DLPack producer as (pointer, shape, strides,
dtype, device), and outputs allocated by the library q came from."""
import sys

import numpy as np

from . import _dlpack
from ._lib import DTYPE_BF16, DTYPE_E4M3, DTYPE_F16, DTYPE_F32, DTYPE_NAMES

_NP_DTYPES = {np.dtype(np.float32): DTYPE_F32, np.dtype(np.float16): DTYPE_F16}
_ITEMSIZE = {DTYPE_F32: 4, DTYPE_F16: 2, DTYPE_BF16: 2, DTYPE_E4M3: 1}
_FLOATS = "float32, float16, bfloat16 or float8_e4m3fn"


class E4M3:
    """Raw e4m3 bytes (OCP FP8, torch.float8_e4m3fn's encoding) in a uint8 array: what
    `polyattn.e4m3(a)` returns, for array libraries without a float8 dtype (NumPy)."""

    __slots__ = ("data",)

    def __init__(self, data):
        self.data = data

    @property
    def shape(self):
        return tuple(self.data.shape) if hasattr(self.data, "shape") else None

    def __repr__(self):
        return f"polyattn.e4m3({self.data!r})"


def e4m3(a):
    """Marks the uint8 array `a` (NumPy, or any array library's) as e4m3 bytes: q, k and v
    of the attention functions.  torch.float8_e4m3fn tensors (and ml_dtypes' float8_e4m3fn
    NumPy arrays) need no marking."""
    if isinstance(a, E4M3):
        return a
    if not hasattr(a, "dtype") and hasattr(a, "__dlpack__"):
        return E4M3(a)  # a DLPack producer: its dtype is read from the capsule
    if isinstance(a, (list, tuple)) or not (hasattr(a, "dtype") and hasattr(a, "shape")):
        raise TypeError(f"e4m3: expected a uint8 array, got {type(a).__name__}")
    name = str(a.dtype).rsplit(".", 1)[-1]
    if name not in ("uint8", "float8_e4m3fn"):
        raise TypeError(f"e4m3: dtype {a.dtype} is not uint8 (the raw e4m3 bytes); convert "
                        "floats with torch's .to(torch.float8_e4m3fn) or ml_dtypes")
    return E4M3(a)


class Ref:
    """What the library needs of an array.  `obj` keeps the array (and a DLPack capsule)
    alive while the pointer is in use; `kind` is the library ("numpy", "torch", "cupy",
    "jax", "dlpack"); `device` is ("cpu"|"cuda"|"rocm", index)."""

    __slots__ = ("obj", "kind", "ptr", "shape", "strides", "dtype", "itemsize", "device",
                 "capsule", "read_only")

    def __init__(self, obj, kind, ptr, shape, strides, dtype, itemsize, device,
                 capsule=None, read_only=False):
        self.obj, self.kind, self.ptr = obj, kind, ptr
        self.shape, self.strides = shape, strides
        self.dtype, self.itemsize, self.device = dtype, itemsize, device
        self.capsule, self.read_only = capsule, read_only

    @property
    def ndim(self):
        return len(self.shape)

    def extent_bytes(self):
        """Bytes from the pointer to one past the last element."""
        if any(n == 0 for n in self.shape):
            return 0
        return (1 + sum((n - 1) * s for n, s in zip(self.shape, self.strides))) * self.itemsize


def _torch_ref(t, name, raw_e4m3=False):
    import torch
    dt = {torch.float32: DTYPE_F32, torch.float16: DTYPE_F16,
          torch.bfloat16: DTYPE_BF16}.get(t.dtype)
    if dt is None:
        if t.dtype == getattr(torch, "float8_e4m3fn", None) or raw_e4m3 and t.dtype == torch.uint8:
            dt = DTYPE_E4M3
        else:
            raise TypeError(f"{name}: dtype {t.dtype} is not {_FLOATS}")
    dev = t.device
    kind = dev.type
    if kind == "cuda" and getattr(torch.version, "hip", None):
        kind = "rocm"
    if kind not in ("cpu", "cuda", "rocm"):
        raise ValueError(f"{name}: torch device {dev} is not supported (cpu, cuda, rocm)")
    return Ref(t, "torch", t.data_ptr(), tuple(t.shape), tuple(t.stride()), dt,
               t.element_size(), (kind, dev.index or 0))


def _numpy_ref(a, name, raw_e4m3=False):
    dt = _NP_DTYPES.get(a.dtype)
    if dt is None:
        if a.dtype.name == "bfloat16":  # ml_dtypes
            dt = DTYPE_BF16
        elif a.dtype.name == "float8_e4m3fn" or raw_e4m3 and a.dtype == np.uint8:
            dt = DTYPE_E4M3
        elif a.dtype == np.uint8:
            raise TypeError(f"{name}: dtype uint8: e4m3 bytes are passed as polyattn.e4m3(a)")
        else:
            raise TypeError(f"{name}: dtype {a.dtype} is not {_FLOATS}")
    size = a.itemsize
    byte_strides = a.strides
    strides = tuple([s // size for s in byte_strides])
    for s in byte_strides:
        if s % size:
            raise ValueError(f"{name}: strides {byte_strides} are not multiples of the element "
                             "size")
    return Ref(a, "numpy", _numpy_data(a), a.shape, strides, dt, size,
               _CPU0, read_only=not a.flags.writeable)


_CPU0 = ("cpu", 0)


def _interface_data(a):
    return a.__array_interface__["data"][0]


def _make_numpy_data():
    """The data pointer of an ndarray: the `data` field right after the object header of
    NumPy's public PyArrayObject (0.1 us instead of 1.5 us for __array_interface__), used
    only when it agrees with __array_interface__ on probe arrays."""
    import ctypes
    offset = object.__basicsize__
    read = ctypes.c_void_p.from_address

    def fast(a):
        return read(id(a) + offset).value or 0

    try:
        probes = [np.zeros(3, np.float32), np.zeros((4, 5), np.float16)[1:, 2:]]
        if all(fast(p) == _interface_data(p) for p in probes):
            return fast
    except Exception:  # noqa: BLE001 - any surprise: the documented path
        pass
    return _interface_data


_numpy_data = _make_numpy_data()
_DL_DEVICES = {_dlpack.KDL_CPU: "cpu", _dlpack.KDL_CUDA_HOST: "cpu", _dlpack.KDL_ROCM_HOST: "cpu",
               _dlpack.KDL_CUDA: "cuda", _dlpack.KDL_CUDA_MANAGED: "cuda",
               _dlpack.KDL_ROCM: "rocm"}


def _dlpack_ref(x, name, kind, stream=None, raw_e4m3=False):
    try:
        dev_type, dev_id = x.__dlpack_device__()
    except AttributeError:
        dev_type, dev_id = _dlpack.KDL_CPU, 0
    dev = _DL_DEVICES.get(int(dev_type))
    if dev is None:
        raise ValueError(f"{name}: DLPack device type {int(dev_type)} is not supported")
    # The consumer's stream: the producer makes the data ready on it (None: CPU).
    capsule = x.__dlpack__(stream=stream) if dev != "cpu" else x.__dlpack__()
    ptr, shape, strides, dt, size, _, _, ro, dtname = _dlpack.parse_capsule(capsule)
    if dt is None and raw_e4m3 and dtname == "code 1 bits 8":
        dt = DTYPE_E4M3
    if dt is None:
        raise TypeError(f"{name}: DLPack dtype ({dtname}) is not {_FLOATS}")
    return Ref(x, kind, ptr, shape, strides, dt, size, (dev, int(dev_id)), capsule, ro)


def kind_of(x):
    mod = type(x).__module__.split(".")[0]
    if mod in ("torch", "numpy", "cupy"):
        return mod
    if mod in ("jax", "jaxlib"):
        return "jax"
    return "dlpack"


def ref(x, name, stream=None):
    """A Ref for array `x` (argument `name` in messages)."""
    if x is None:
        raise TypeError(f"{name}: None is not an array")
    raw_e4m3 = type(x) is E4M3
    if raw_e4m3:  # uint8 bytes marked as e4m3: the array inside stands for itself
        x = x.data
    kind = kind_of(x)
    if kind == "numpy" and isinstance(x, np.ndarray):
        return _numpy_ref(x, name, raw_e4m3)
    if kind == "torch":
        return _torch_ref(x, name, raw_e4m3)
    if not hasattr(x, "__dlpack__"):
        if isinstance(x, (list, tuple)):
            raise TypeError(f"{name}: a {type(x).__name__}, not an array (NumPy, torch, CuPy, "
                            "JAX or any object with __dlpack__)")
        raise TypeError(f"{name}: {type(x).__name__} has no __dlpack__")
    return _dlpack_ref(x, name, kind, stream, raw_e4m3)


def current_stream(r):
    """The producer's current stream on a CUDA/HIP device, as an integer (0: default)."""
    if r.kind == "torch":
        import torch
        return torch.cuda.current_stream(r.device[1]).cuda_stream
    if r.kind == "cupy":
        import cupy
        with cupy.cuda.Device(r.device[1]):
            return cupy.cuda.get_current_stream().ptr
    return 0


def _np_dtype(dt):
    if dt == DTYPE_BF16:
        try:
            import ml_dtypes
            return np.dtype(ml_dtypes.bfloat16)
        except ImportError as e:
            raise TypeError("bfloat16 NumPy arrays need the ml_dtypes package") from e
    return np.dtype(np.float32 if dt == DTYPE_F32 else np.float16)


def empty(like, shape, dt):
    """A new C-contiguous array of `shape` and polyattn dtype `dt`, of the library and on
    the device of Ref `like`."""
    kind, (dev, index) = like.kind, like.device
    if kind == "torch":
        import torch
        tdt = {DTYPE_F32: torch.float32, DTYPE_F16: torch.float16, DTYPE_BF16: torch.bfloat16}[dt]
        return torch.empty(shape, dtype=tdt, device=like.obj.device)
    if kind == "cupy":
        import cupy
        with cupy.cuda.Device(index):
            return cupy.empty(shape, dtype=cupy.float32 if dt == DTYPE_F32 else cupy.float16)
    if kind == "jax" and dev != "cpu":
        import jax.numpy as jnp
        jdt = {DTYPE_F32: jnp.float32, DTYPE_F16: jnp.float16, DTYPE_BF16: jnp.bfloat16}[dt]
        # A fresh device buffer, written once through its pointer before anyone reads it.
        return jnp.zeros(shape, dtype=jdt, device=like.obj.device)
    if dev != "cpu":
        raise TypeError(f"cannot allocate an output like a {type(like.obj).__name__} on {dev}: "
                        "pass out=")
    return np.empty(shape, dtype=_np_dtype(dt))


def finish(like, array):
    """Converts a host NumPy output to q's library where that library's arrays cannot be
    written in place (JAX on the CPU, other DLPack producers)."""
    if like.kind == "jax" and isinstance(array, np.ndarray):
        import jax.numpy as jnp
        return jnp.asarray(array)
    if like.kind == "dlpack" and isinstance(array, np.ndarray):
        mod = sys.modules.get(type(like.obj).__module__.split(".")[0])
        from_dlpack = getattr(mod, "from_dlpack", None)
        if from_dlpack is not None:
            return from_dlpack(array)
    return array


def dtype_name(dt):
    return DTYPE_NAMES.get(dt, str(dt))


def itemsize(dt):
    return _ITEMSIZE[dt]


def empty_like_strided(r):
    """A new array of r's library, device, dtype, shape and element strides (gradients are
    laid out like their inputs)."""
    shape, strides = tuple(r.shape), tuple(r.strides)
    if r.kind == "torch":
        import torch
        return torch.empty_strided(shape, strides, dtype=r.obj.dtype, device=r.obj.device)
    extent = r.extent_bytes() // r.itemsize
    base = empty(r, (extent,), r.dtype)
    byte_strides = tuple(s * r.itemsize for s in strides)
    if r.kind == "cupy":
        import cupy
        return cupy.lib.stride_tricks.as_strided(base, shape, byte_strides)
    if isinstance(base, np.ndarray):
        return np.lib.stride_tricks.as_strided(base, shape, byte_strides)
    raise TypeError(f"cannot allocate gradients for a {type(r.obj).__name__}")
