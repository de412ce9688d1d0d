"""The serving layouts of one C call (polyattn_attention_desc's varlen_q ... v_new members
and polyattn_extra_tensors' cu_seqlens_q ... v_new), and the int32 tensors they read:
offsets, lengths and block tables, on q's device, as the library's arrays or converted
there when they are not int32, contiguous and on that device already."""
import numpy as np

from . import _arrays, _lib
from ._runtime import Flat

_INT32_MAX = 2**31 - 1


class Serving:
    """The serving members of a descriptor (fill, key) and their tensors (inputs: Flat or
    View per polyattn_extra_tensors member, None where absent)."""

    __slots__ = ("varlen_q", "num_seqs", "max_seqlen_q", "max_seqlen_kv", "kv_layout",
                 "max_blocks_per_seq", "k_new", "v_new", "tensors", "keep", "key", "appends")

    def __init__(self, varlen_q=False, num_seqs=0, max_seqlen_q=0, max_seqlen_kv=0,
                 kv_layout=_lib.KV_DENSE, max_blocks_per_seq=0, k_new=None, v_new=None,
                 tensors=None, keep=()):
        self.varlen_q, self.num_seqs = bool(varlen_q), int(num_seqs)
        self.max_seqlen_q, self.max_seqlen_kv = int(max_seqlen_q), int(max_seqlen_kv)
        self.kv_layout, self.max_blocks_per_seq = kv_layout, int(max_blocks_per_seq)
        self.k_new, self.v_new = k_new, v_new
        self.appends = k_new is not None
        self.tensors = dict(tensors or {})
        if self.appends:
            self.tensors["k_new"], self.tensors["v_new"] = k_new, v_new
        self.keep = keep  # the arrays behind the tensors' pointers
        new_key = None if not self.appends else (k_new.dims, k_new.strides, v_new.dims,
                                                 v_new.strides)
        self.key = (self.varlen_q, self.num_seqs, self.max_seqlen_q, self.max_seqlen_kv,
                    kv_layout, self.max_blocks_per_seq, new_key)

    def fill(self, d):
        d.varlen_q = int(self.varlen_q)
        d.num_seqs = self.num_seqs
        d.max_seqlen_q, d.max_seqlen_kv = self.max_seqlen_q, self.max_seqlen_kv
        d.kv_layout = self.kv_layout
        d.max_blocks_per_seq = self.max_blocks_per_seq
        d.has_kv_append = int(self.appends)
        if self.appends:
            for t, view in ((d.k_new, self.k_new), (d.v_new, self.v_new)):
                t.dtype = d.q.dtype
                t.shape[:] = view.dims
                t.strides[:] = view.strides

    def inputs(self):
        return self.tensors

    def backward_inputs(self):
        """The tensors a backward reads (the offsets; caches have no backward)."""
        return {n: t for n, t in self.tensors.items() if n in ("cu_seqlens_q", "cu_seqlens_kv")}


class BackwardView:
    """A Serving seen by polyattn_backward_ex: the same descriptor, the offsets only."""

    __slots__ = ("serving",)

    def __init__(self, serving):
        self.serving = serving

    def inputs(self):
        return self.serving.backward_inputs()


# ---- int32 tensors --------------------------------------------------------------------

class Ints:
    """An int32 contiguous array on q's device: `obj` (keeps it alive), `flat` (pointer and
    bytes), `shape`, and `host`, its values as NumPy when they live in host memory (checked
    there; device values are checked by the library)."""

    __slots__ = ("obj", "flat", "shape", "host")

    def __init__(self, obj, ptr, shape, host):
        self.obj, self.shape, self.host = obj, tuple(shape), host
        n = 1
        for s in self.shape:
            n *= s
        self.flat = Flat(ptr, 4 * n)


def _check_int_dtype(kind_ok, dtype, name):
    if not kind_ok:
        raise TypeError(f"{name}: dtype {dtype} is not an integer type")


def _fits_int32(a, name):
    if a.size and (a.min() < -_INT32_MAX - 1 or a.max() > _INT32_MAX):
        raise ValueError(f"{name}: values beyond the int32 range")


def _on_host(a, name, qr):
    """A NumPy int array as Ints on q's device (copied to the device of a device q)."""
    _check_int_dtype(a.dtype.kind in "iu", a.dtype, name)
    if a.dtype != np.int32 or not a.flags.c_contiguous:
        _fits_int32(a, name)
        a = np.ascontiguousarray(a, dtype=np.int32)
    kind, index = qr.device
    if kind == "cpu":
        return Ints(a, _arrays._numpy_data(a) if a.size else 0, a.shape, a)
    if qr.kind == "torch":
        import torch
        t = torch.as_tensor(a, device=qr.obj.device)
        return Ints(t, t.data_ptr(), a.shape, a)
    if qr.kind == "cupy":
        import cupy
        with cupy.cuda.Device(index):
            c = cupy.asarray(a)
        return Ints(c, c.data.ptr, a.shape, a)
    raise TypeError(f"{name}: host integers for a {type(qr.obj).__name__} on {kind}: pass a "
                    "device array")


def ints(x, name, qr, ndim):
    """Integer array (or int, or list) x as Ints of `ndim` dimensions on q's device."""
    if x is None:
        raise TypeError(f"{name}: None is not an array")
    kind = _arrays.kind_of(x)
    if kind == "torch":
        import torch
        _check_int_dtype(not x.is_floating_point() and not x.is_complex() and
                         x.dtype != torch.bool, x.dtype, name)
        if x.dim() != ndim:
            raise ValueError(f"{name}: expected {ndim} dimension{'s' if ndim > 1 else ''}, "
                             f"got shape {tuple(x.shape)}")
        if x.device.type == "cpu":
            return _torch_host(x, name) if qr.device[0] == "cpu" else \
                _on_host(x.numpy(), name, qr)
        if qr.device[0] == "cpu" or x.get_device() != qr.device[1]:
            raise ValueError(f"{name}: on {x.device}, q on {qr.device[0]}:{qr.device[1]}")
        if x.dtype != torch.int32 or not x.is_contiguous():
            x = x.to(torch.int32).contiguous()
        return Ints(x, x.data_ptr(), x.shape, None)
    if kind == "cupy":
        import cupy
        _check_int_dtype(x.dtype.kind in "iu", x.dtype, name)
        if x.ndim != ndim:
            raise ValueError(f"{name}: expected {ndim} dimensions, got shape {x.shape}")
        if qr.device[0] == "cpu" or x.device.id != qr.device[1]:
            raise ValueError(f"{name}: on cuda:{x.device.id}, q on "
                             f"{qr.device[0]}:{qr.device[1]}")
        x = cupy.ascontiguousarray(x, dtype=cupy.int32)
        return Ints(x, x.data.ptr, x.shape, None)
    a = np.asarray(x)
    if a.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimension{'s' if ndim > 1 else ''}, got "
                         f"shape {a.shape}")
    return _on_host(a, name, qr)


def _torch_host(x, name):
    import torch
    if x.dtype != torch.int32 or not x.is_contiguous():
        _fits_int32(x.numpy(), name)
        x = x.to(torch.int32).contiguous()
    return Ints(x, x.data_ptr() if x.numel() else 0, x.shape, x.numpy())


def full(value, count, qr):
    """Ints [count] filled with value on q's device."""
    return _on_host(np.full(count, value, dtype=np.int32), "lengths", qr)


def differences(cu, qr):
    """Ints of cu[1:] - cu[:-1] (sequence lengths from offsets), on cu's device."""
    if cu.host is not None:
        return _on_host(np.diff(cu.host).astype(np.int32), "lengths", qr)
    o = cu.obj
    d = (o[1:] - o[:-1])
    d = d.contiguous() if hasattr(d, "contiguous") else d
    ptr = d.data_ptr() if hasattr(d, "data_ptr") else d.data.ptr
    return Ints(d, ptr, (cu.shape[0] - 1,), None)


def check_offsets(cu, name, total, max_seqlen, max_name):
    """Host offsets: start at 0, non-decreasing, within `total` rows (None: unbounded), no
    sequence longer than max_seqlen.  Returns the lengths."""
    if cu.size < 2:
        raise ValueError(f"{name}: needs batch + 1 >= 2 entries, got {cu.size}")
    if cu[0] != 0:
        raise ValueError(f"{name}: must start at 0, starts at {cu[0]}")
    lens = np.diff(cu.astype(np.int64))
    if (lens < 0).any():
        i = int(np.argmax(lens < 0))
        raise ValueError(f"{name}: decreases at index {i + 1} ({cu[i]} then {cu[i + 1]})")
    if total is not None and cu[-1] > total:
        raise ValueError(f"{name}: ends at {cu[-1]}, beyond the {total} packed tokens")
    if max_seqlen is not None and lens.max() > max_seqlen:
        raise ValueError(f"{max_name}: {max_seqlen} is below the longest sequence "
                         f"({int(lens.max())}) in {name}")
    return lens


def max_seqlen(value, name):
    try:
        n = int(value)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: {value!r} is not an integer") from e
    if n < 0:
        raise ValueError(f"{name}: {n} is negative")
    return n
