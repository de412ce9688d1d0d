"""The repeated-call fast path of flash_attn_func and attention.

A call's signature is everything the checked path's validation and planning depend on
except the data pointers: the arguments' array types, dtypes, shapes, strides, devices
(and, for torch, requires_grad and the current CUDA stream), and the scalar options.  The
first call with a signature runs the checked path (every check) and, where it ran
zero-copy with no conversion, records here what it did: the context, the plan, each C
argument's source array, offset and bytes, and how outputs are allocated.  A later call
with an equal signature does only what depends on the data: the pointers, the wrapped-
buffer lookups keyed by pointer, the output allocation and one C call.

A signature is a tuple; an argument this module cannot describe gives NO, which no stored
signature contains, so such a call always takes the checked path."""
import ctypes
import functools

import numpy as np

from . import _arrays, _lib, _runtime
from ._lib import ExtraTensors, check

NO = object()  # "not describable": never part of a stored signature
# The scalar option types whose equal values behave alike in the checked path (a numpy
# scalar, a tensor or any other object keeps the call on the checked path).
_PLAIN = frozenset({type(None), bool, int, float, str})
NO_WINDOW = (-1, -1)  # the default window_size object (identity: the unchecked fast test)

_ndarray = np.ndarray
_numpy_data = _arrays._numpy_data


class _NotTorch:
    pass


_TENSOR = _NotTorch  # torch.Tensor from the first call with a torch q
_tensor_data = None
_compiling = None
_raw_stream = None
entries = _runtime.fast_entries  # signature -> runner (cleared with the other caches)


def _enable_torch():
    global _TENSOR, _tensor_data, _compiling, _raw_stream
    import torch
    from . import _torch
    compiler = getattr(torch, "compiler", None)
    # Bound directly (a quarter of _torch.is_compiling's cost); torch.compile's tracer
    # knows the function, not the name, so it still reads True there.
    _compiling = getattr(compiler, "is_compiling", None) or _torch.is_compiling
    raw = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    _raw_stream = raw if raw is not None else (
        lambda index: torch.cuda.current_stream(index).cuda_stream)
    _tensor_data = torch.Tensor.data_ptr
    _TENSOR = torch.Tensor


# ---- signatures -------------------------------------------------------------------------
# Equal signatures must mean equal outcomes of every check and the same plan.  numpy: the
# dtype (byte order included), shape and byte strides.  torch: dtype, shape, strides,
# device and requires_grad (a call needing autograd is never recorded); q's adds the
# current stream on a CUDA/HIP device (the context the call runs on).

def sig_q(x):
    t = type(x)
    if t is _ndarray:
        return (x.dtype, x.shape, x.strides)
    if t is _TENSOR:
        if _compiling():
            return NO
        if x.is_cuda:
            return (x.dtype, x.shape, x.stride(), x.device, x.requires_grad,
                    _raw_stream(x.get_device()))
        return (x.dtype, x.shape, x.stride(), x.device, x.requires_grad)
    if _TENSOR is _NotTorch and t.__module__ == "torch" and t.__name__ == "Tensor":
        _enable_torch()  # the first torch call
        return sig_q(x)
    return NO


def sig(x):
    """An input array's signature; None for None."""
    t = type(x)
    if t is _ndarray:
        return (x.dtype, x.shape, x.strides)
    if t is _TENSOR:
        return (x.dtype, x.shape, x.stride(), x.device, x.requires_grad)
    return None if x is None else NO


def sig_out(x):
    """An output array's signature (numpy: writeable too); None for None."""
    if x is None:
        return None
    t = type(x)
    if t is _ndarray:
        return (x.dtype, x.shape, x.strides, x.flags.writeable)
    if t is _TENSOR:
        return (x.dtype, x.shape, x.stride(), x.device, x.requires_grad)
    return NO


def window_key(w):
    """A window argument for the signature: None or a pair of ints as is; anything else
    (lists, floats that compare equal to ints but are refused, numpy integers) NO."""
    if w is None or w is NO_WINDOW:
        return w
    if type(w) is tuple and len(w) == 2 and type(w[0]) is int and type(w[1]) is int:
        return w
    return NO


def mask_key(mask):
    return mask if mask is None or type(mask) is str else sig(mask)


# ---- recording --------------------------------------------------------------------------

class Record:
    """What the checked path did, filled in by Dense.forward: inputs [(argument index,
    Ref, view)], o/lse/probs (array, Ref, view) or None, call_views the views of the C
    call's arguments in order."""

    __slots__ = ("ctx", "plan", "inputs", "o", "out_given", "lse", "probs", "bound", "qr",
                 "call_views")

    def __init__(self):
        self.plan = None


def _data_fn(x):
    if type(x) is _ndarray:
        return _numpy_data
    if _TENSOR is not _NotTorch and type(x) is _TENSOR:
        return _tensor_data
    return None


def _allocator(qr, shape, dt):
    """A call that allocates like _arrays.empty(qr, shape, dt), or None."""
    if qr.kind == "torch":
        import torch
        tdt = {_lib.DTYPE_F32: torch.float32, _lib.DTYPE_F16: torch.float16,
               _lib.DTYPE_BF16: torch.bfloat16}[dt]
        return functools.partial(torch.empty, tuple(shape), dtype=tdt, device=qr.obj.device)
    if qr.kind == "numpy":
        return functools.partial(np.empty, tuple(shape), _arrays._np_dtype(dt))
    return None


def store(key, scalars, rec, args, out, result):
    """Records rec (a checked call of signature key) as the runner of that signature, when
    the call can be repeated from pointers alone.  args: the call's input arrays (q, k, v,
    alibi_slopes, bias, mask, sinks; None where absent); result(o, lse, probs): the return
    value."""
    if key is None or rec.plan is None or _runtime.PLAN_CACHE_SIZE <= 0 or \
            not all(type(s) in _PLAIN for s in scalars):
        return
    if any(part is NO for part in key):  # identity only: a scalar's == may raise
        return
    ctx = rec.ctx
    if not ctx.zero_copy:
        return
    if any(type(a) is not _ndarray for a in (*args, out) if a is not None):
        for a in (*args, out):
            if a is None or type(a) is _ndarray:
                continue
            if type(a) is not _TENSOR or a.requires_grad:
                return
    # Each C argument: (index into args + (o, lse, probs), data function, offset, bytes).
    slots = []
    sources = list(rec.inputs)  # (argument index, Ref, view)
    o_index, lse_index, probs_index = len(args), len(args) + 1, len(args) + 2
    o_arr, orf, ov = rec.o
    sources.append((o_index, orf, ov))
    lse_arr = probs_arr = None
    if rec.lse is not None:
        lse_arr, lr, lv = rec.lse
        sources.append((lse_index, lr, lv))
    if rec.probs is not None:
        probs_arr, pr, pv = rec.probs
        sources.append((probs_index, pr, pv))
    every = (*args, o_arr, lse_arr, probs_arr)
    by_slot = {}
    for index, r, view in sources:
        if r.obj is not every[index]:
            return  # converted or copied on the way: only the checked path is right
        fn = _data_fn(r.obj)
        if fn is None:
            return
        nbytes = view.nbytes()
        by_slot[id(view)] = (index, fn, view.ptr - r.ptr, nbytes) if nbytes else None
    qr = rec.qr
    alloc_o = None if rec.out_given else _allocator(qr, o_arr.shape, orf.dtype)
    alloc_lse = None if lse_arr is None else _allocator(qr, lse_arr.shape, _lib.DTYPE_F32)
    alloc_probs = None if probs_arr is None else _allocator(qr, probs_arr.shape, _lib.DTYPE_F32)
    if (not rec.out_given and alloc_o is None) or (lse_arr is not None and alloc_lse is None) \
            or (probs_arr is not None and alloc_probs is None):
        return
    for view in rec.call_views:
        slots.append(None if view is None else by_slot[id(view)])
    extra = rec.bound is not None
    runner = _runner(ctx, rec.plan, slots, extra, alloc_o, alloc_lse, alloc_probs, result)
    with _runtime.fast_entries_lock:
        while entries and len(entries) >= _runtime.PLAN_CACHE_SIZE:
            entries.pop(next(iter(entries)))
        entries[key] = runner


def _runner(ctx, plan, slots, extra, alloc_o, alloc_lse, alloc_probs, result):
    """The repeat of one recorded call: slots are the C arguments q, k, v, o, lse, probs
    (and with variants alibi_slopes, bias, attn_mask, sinks) as (source index, data
    function, byte offset, bytes) or None."""
    lock, wrapped, handle = ctx.lock, ctx.wrapped, plan.handle
    ws_bytes = plan.info.workspace_bytes
    forward, forward_ex = _lib.lib.polyattn_forward, _lib.lib.polyattn_forward_ex
    simple = (not extra and alloc_lse is None and alloc_probs is None and
              all(s is not None and s[2] == 0 for s in slots[:4]) and
              slots[3][0] == 7 and slots[4] is None and slots[5] is None and result is None)
    if simple:
        (_, qf, _, nq), (_, kf, _, nk), (_, vf, _, nv), (_, of, _, no) = slots[:4]

        def run(q, k, v, out, slopes=None, bias=None, mask=None, sinks=None):
            o = alloc_o() if out is None else out
            with lock:
                status = forward(handle, wrapped(qf(q), nq), wrapped(kf(k), nk),
                                 wrapped(vf(v), nv), wrapped(of(o), no), None, None,
                                 ctx.workspace_for(ws_bytes))
            if status:
                check(status, ctx.handle, "polyattn_forward")
            return o

        # What bench/python_overhead.py times part by part.
        run.parts = dict(ctx=ctx, plan=plan, handle=handle, ws_bytes=ws_bytes,
                         data=(qf, kf, vf, of), nbytes=(nq, nk, nv, no), alloc=alloc_o,
                         forward=forward)
        return run

    extra_struct = ExtraTensors()
    extra_struct.struct_size = ctypes.sizeof(ExtraTensors)
    extra_ref = ctypes.byref(extra_struct)

    def run(q, k, v, out, slopes=None, bias=None, mask=None, sinks=None):
        o = alloc_o() if out is None else out
        lse = alloc_lse() if alloc_lse is not None else None
        probs = alloc_probs() if alloc_probs is not None else None
        every = (q, k, v, slopes, bias, mask, sinks, o, lse, probs)
        with lock:
            h = [None if s is None else wrapped(s[1](every[s[0]]) + s[2], s[3]) for s in slots]
            ws = ctx.workspace_for(ws_bytes)
            if extra:
                (extra_struct.alibi_slopes, extra_struct.bias, extra_struct.attn_mask,
                 extra_struct.sinks) = h[6:10]
                status = forward_ex(handle, h[0], h[1], h[2], h[3], h[4], h[5], ws, extra_ref)
            else:
                status = forward(handle, h[0], h[1], h[2], h[3], h[4], h[5], ws)
        if status:
            check(status, ctx.handle, "polyattn_forward_ex" if extra else "polyattn_forward")
        return o if result is None else result(o, lse, probs)

    run.parts = None
    return run
