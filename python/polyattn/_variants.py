"""The score variants of a call: sliding window, softcap, ALiBi slopes, additive bias,
boolean mask and sinks.  Checked here (each error names the argument), then given to the
descriptor (polyattn_attention_desc's members after `mask`) and to polyattn_forward_ex /
polyattn_backward_ex as polyattn_extra_tensors."""
import math

import numpy as np

from . import _arrays, _dlpack, _lib
from ._runtime import Flat, View

F32, U8 = _lib.DTYPE_F32, _lib.DTYPE_U8
_FLT_MAX = 3.4028234663852886e38


def window_pair(name, window):
    """(left, right), or None for no window (None or (-1, -1))."""
    if window is None:
        return None
    try:
        left, right = window
        if isinstance(left, float) or isinstance(right, float):
            raise TypeError
        left, right = int(left), int(right)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: expected a pair of integers (left, right), got "
                         f"{window!r}") from e
    if left < -1 or right < -1:
        raise ValueError(f"{name}: {window!r} has a negative size (each side is a key count "
                         ">= 0, or -1 for unbounded)")
    return None if (left, right) == (-1, -1) else (left, right)


def softcap_value(name, softcap):
    try:
        c = float(softcap)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: {softcap!r} is not a number") from e
    if not (math.isfinite(c) and 0.0 <= c <= _FLT_MAX):
        raise ValueError(f"{name}: {softcap!r} is not a finite number >= 0 (0: off)")
    return c


def _float_array(x, name, keep_half=False):
    """x as float32 (or, keep_half, any of float32/float16/bfloat16) in its own library:
    other float types are converted (torch keeps autograd through the conversion);
    integer and boolean arrays are refused."""
    kind = _arrays.kind_of(x)
    if kind == "torch":
        import torch
        if not x.is_floating_point():
            raise TypeError(f"{name}: dtype {x.dtype} is not a floating type")
        ok = (torch.float32, torch.float16, torch.bfloat16) if keep_half else (torch.float32,)
        return x if x.dtype in ok else x.float()
    if isinstance(x, (np.ndarray, list, tuple, float, int)):
        a = np.asarray(x)
        if a.dtype.kind != "f" and a.dtype.name != "bfloat16":
            raise TypeError(f"{name}: dtype {a.dtype} is not a floating type")
        if a.dtype == np.float32 or keep_half and (a.dtype == np.float16 or
                                                   a.dtype.name == "bfloat16"):
            return a
        return a.astype(np.float32)
    return x  # another DLPack producer: its dtype is checked by the reference


def _bool_ref(x, name):
    """A Ref to a bool or uint8 array (the attention mask)."""
    kind = _arrays.kind_of(x)
    if kind == "torch":
        import torch
        if x.dtype not in (torch.bool, torch.uint8):
            raise TypeError(f"{name}: dtype {x.dtype} is not bool or uint8")
        dev = x.device
        kind_dev = "rocm" if dev.type == "cuda" and getattr(torch.version, "hip", None) \
            else dev.type
        return _arrays.Ref(x, "torch", x.data_ptr(), tuple(x.shape), tuple(x.stride()), U8, 1,
                           (kind_dev, dev.index or 0))
    if isinstance(x, (np.ndarray, list, tuple)):
        a = np.asarray(x)
        if a.dtype not in (np.bool_, np.uint8):
            raise TypeError(f"{name}: dtype {a.dtype} is not bool or uint8")
        return _arrays.Ref(a, "numpy", a.__array_interface__["data"][0], a.shape, a.strides,
                           U8, 1, ("cpu", 0))
    if not hasattr(x, "__dlpack__"):
        raise TypeError(f"{name}: {type(x).__name__} is not an array")
    dev_type, dev_id = x.__dlpack_device__()
    capsule = x.__dlpack__()
    ptr, shape, strides, _, size, _, _, ro, dtname = _dlpack.parse_capsule(capsule)
    if dtname not in ("code 1 bits 8", "code 6 bits 8"):
        raise TypeError(f"{name}: DLPack dtype ({dtname}) is not bool or uint8")
    dev = {_dlpack.KDL_CUDA: "cuda", _dlpack.KDL_ROCM: "rocm"}.get(int(dev_type), "cpu")
    return _arrays.Ref(x, kind, ptr, shape, strides, U8, 1, (dev, int(dev_id)), capsule, ro)


def _same_device(r, name, qr):
    if r.device != qr.device:
        raise ValueError(f"{name}: on device {r.device[0]}:{r.device[1]}, q on "
                         f"{qr.device[0]}:{qr.device[1]}")


def _score_view(r, name, want):
    """The [batch, heads_q, seq_q, seq_kv] view of a bias or mask Ref of rank 2 to 4
    (NumPy broadcasting: missing or size-1 dimensions broadcast with stride 0)."""
    if not 2 <= r.ndim <= 4:
        raise ValueError(f"{name}: shape {tuple(r.shape)} has {r.ndim} dimensions; expected 2 "
                         f"to 4 that broadcast to [batch, heads_q, seq_q, seq_kv] = {list(want)}")
    if min(r.strides, default=0) < 0:
        raise ValueError(f"{name}: negative strides {r.strides} are not supported")
    pad = 4 - r.ndim
    shape = (1,) * pad + tuple(r.shape)
    strides = (0,) * pad + tuple(r.strides)
    dims, st = [], []
    for d in range(4):
        n = shape[d]
        if n == want[d]:
            dims.append(n)
            st.append(strides[d] if n > 1 else 0)
        elif n == 1:  # batch/heads keep extent 1; the sequence dimensions broadcast
            dims.append(1 if d < 2 else want[d])
            st.append(0)
        else:
            raise ValueError(f"{name}: shape {tuple(r.shape)} does not broadcast to [batch, "
                             f"heads_q, seq_q, seq_kv] = {list(want)}")
    return View(r.ptr, tuple(dims), tuple(st), r.itemsize), shape


class Bound:
    """The variants of one C call: the descriptor's members (key, fill) and the extra
    tensors (views of the caller's arrays)."""

    __slots__ = ("key", "window", "softcap", "alibi", "slopes", "bias", "bias_dtype", "mask",
                 "sinks", "refs", "ref_of", "bias_shape", "bias_user_shape")

    def fill(self, d):
        d.has_window = int(self.window is not None)
        d.window_left, d.window_right = self.window or (-1, -1)
        d.softcap = self.softcap
        d.alibi = self.alibi
        for has, member, view, dtype in (("has_bias", "bias", self.bias, self.bias_dtype),
                                         ("has_attn_mask", "attn_mask", self.mask, U8)):
            setattr(d, has, int(view is not None))
            if view is not None:
                t = getattr(d, member)
                t.dtype = dtype
                t.shape[:] = view.dims
                t.strides[:] = view.strides
        d.has_sinks = int(self.sinks is not None)

    def inputs(self):
        return {"alibi_slopes": self.slopes, "bias": self.bias, "attn_mask": self.mask,
                "sinks": self.sinks}

    def reduce_bias_grad(self, d_bias):
        """d_bias of the descriptor's shape summed back to the caller's bias shape (over the
        sequence dimensions it broadcast)."""
        dims, shape = self.bias.dims, self.bias_shape
        axes = tuple(d for d in range(4) if shape[d] == 1 and dims[d] > 1)
        if axes:
            d_bias = d_bias.sum(axes, keepdims=True) if _arrays.kind_of(d_bias) != "torch" \
                else d_bias.sum(dim=axes, keepdim=True)
        return d_bias.reshape(self.bias_user_shape)


class Variants:
    """The variant arguments of a call, checked on their own; bind() checks them against
    q and the problem's dimensions."""

    def __init__(self, window=None, softcap=0.0, alibi_slopes=None, bias=None, mask=None,
                 sinks=None, window_name="window"):
        self.window = window_pair(window_name, window)
        self.softcap = softcap_value("softcap", softcap)
        self.slopes = None if alibi_slopes is None else _float_array(alibi_slopes,
                                                                     "alibi_slopes")
        self.bias = None if bias is None else _float_array(bias, "bias", keep_half=True)
        self.mask = mask
        self.sinks = None if sinks is None else _float_array(sinks, "sinks")

    def active(self):
        return (self.window is not None or self.softcap > 0 or self.slopes is not None or
                self.bias is not None or self.mask is not None or self.sinks is not None)

    def bind(self, qr, batch, heads_q, seq_q, seq_kv, first=0, count=None):
        """The Bound variants of q's problem, or None when there are none.  first/count:
        the batch entries a call covers (per-sequence calls of varlen and KV-cache)."""
        if not self.active():
            return None
        count = batch if count is None else count
        b = Bound()
        b.window, b.softcap, b.refs, b.ref_of = self.window, self.softcap, [], {}
        b.alibi, b.slopes = _lib.ALIBI_NONE, None
        if self.slopes is not None:
            r = self._float_ref(self.slopes, "alibi_slopes", qr)
            if tuple(r.shape) == (heads_q,):
                if heads_q > 1 and r.strides[0] != 1:
                    raise ValueError(f"alibi_slopes: strides {r.strides} are not contiguous")
                b.alibi, b.slopes = _lib.ALIBI_PER_HEAD, Flat(r.ptr, heads_q * 4)
            elif tuple(r.shape) == (batch, heads_q):
                if heads_q > 1 and r.strides[1] != 1 or batch > 1 and r.strides[0] != heads_q:
                    raise ValueError(f"alibi_slopes: strides {r.strides} are not contiguous")
                b.alibi = _lib.ALIBI_PER_BATCH_HEAD
                b.slopes = Flat(r.ptr + first * heads_q * 4, count * heads_q * 4)
            else:
                raise ValueError(f"alibi_slopes: shape {tuple(r.shape)}, expected [nheads] = "
                                 f"[{heads_q}] or [batch, nheads] = [{batch}, {heads_q}]")
            b.refs.append(r)
            b.ref_of["alibi_slopes"] = r
        b.bias = b.mask = b.bias_dtype = b.bias_shape = None
        want = (count, heads_q, seq_q, seq_kv)
        if self.bias is not None:
            r = _arrays.ref(self.bias, "bias")
            _same_device(r, "bias", qr)
            b.bias, b.bias_shape = _score_view(r, "bias", want)
            b.bias_dtype = r.dtype
            b.bias_user_shape = tuple(r.shape)
            b.refs.append(r)
            b.ref_of["bias"] = r
        if self.mask is not None:
            r = _bool_ref(self.mask, "mask")
            _same_device(r, "mask", qr)
            b.mask, _ = _score_view(r, "mask", want)
            b.refs.append(r)
            b.ref_of["attn_mask"] = r
        b.sinks = None
        if self.sinks is not None:
            r = self._float_ref(self.sinks, "sinks", qr)
            if tuple(r.shape) != (heads_q,) or (heads_q > 1 and r.strides[0] != 1):
                raise ValueError(f"sinks: shape {tuple(r.shape)} strides {r.strides}, expected "
                                 f"a contiguous [nheads] = [{heads_q}]")
            b.sinks = Flat(r.ptr, heads_q * 4)
            b.refs.append(r)
            b.ref_of["sinks"] = r
        bias_key = None if b.bias is None else (b.bias_dtype, b.bias.dims, b.bias.strides)
        mask_key = None if b.mask is None else (b.mask.dims, b.mask.strides)
        b.key = (b.window, b.softcap, b.alibi, bias_key, mask_key, b.sinks is not None)
        return b

    @staticmethod
    def _float_ref(x, name, qr):
        r = _arrays.ref(x, name)
        if r.dtype != F32:
            raise TypeError(f"{name}: dtype {_arrays.dtype_name(r.dtype)}, expected float32")
        _same_device(r, name, qr)
        return r
