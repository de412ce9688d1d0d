"""DLPack: reads the DLTensor inside a `__dlpack__` capsule with ctypes."""
import ctypes

KDL_CPU, KDL_CUDA, KDL_CUDA_HOST, KDL_OPENCL, KDL_ROCM, KDL_ROCM_HOST = 1, 2, 3, 4, 10, 11
KDL_CUDA_MANAGED = 13
# DLDataType code: 0 int, 1 uint, 2 float, 4 bfloat, 10 float8_e4m3fn (DLPack 1.1; what
# torch exports for torch.float8_e4m3fn).
_DTYPES = {(2, 32): 0, (2, 16): 1, (4, 16): 2, (10, 8): 4}


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32),
                ("dtype", DLDataType), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p)]


class DLPackVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32)]


class DLManagedTensorVersioned(ctypes.Structure):
    _fields_ = [("version", DLPackVersion), ("manager_ctx", ctypes.c_void_p),
                ("deleter", ctypes.c_void_p), ("flags", ctypes.c_uint64),
                ("dl_tensor", DLTensor)]


_get_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_get_pointer.restype = ctypes.c_void_p
_get_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_is_valid = ctypes.pythonapi.PyCapsule_IsValid
_is_valid.restype = ctypes.c_int
_is_valid.argtypes = [ctypes.py_object, ctypes.c_char_p]


def parse_capsule(capsule):
    """(data pointer with byte_offset applied, shape, strides in elements, polyattn dtype or
    None, itemsize, device_type, device_id, read_only).  The capsule is left unconsumed:
    its destructor calls the producer's deleter once the caller drops it, so the caller
    keeps the capsule alive while it uses the pointer."""
    read_only = False
    if _is_valid(capsule, b"dltensor_versioned"):
        managed = DLManagedTensorVersioned.from_address(_get_pointer(capsule, b"dltensor_versioned"))
        read_only = bool(managed.flags & 1)
    elif _is_valid(capsule, b"dltensor"):
        managed = DLManagedTensor.from_address(_get_pointer(capsule, b"dltensor"))
    else:
        raise TypeError("__dlpack__ did not return an unconsumed DLPack capsule")
    t = managed.dl_tensor
    ndim = t.ndim
    shape = tuple(t.shape[i] for i in range(ndim))
    if t.strides:
        strides = tuple(t.strides[i] for i in range(ndim))
    else:  # NULL strides: compact row-major
        strides, step = [], 1
        for n in reversed(shape):
            strides.append(step)
            step *= n
        strides = tuple(reversed(strides))
    if t.dtype.lanes != 1:
        raise TypeError(f"DLPack tensor with {t.dtype.lanes} lanes per element")
    dtype = _DTYPES.get((t.dtype.code, t.dtype.bits))
    ptr = (t.data or 0) + t.byte_offset
    return (ptr, shape, strides, dtype, t.dtype.bits // 8, t.device.device_type,
            t.device.device_id, read_only, f"code {t.dtype.code} bits {t.dtype.bits}")
