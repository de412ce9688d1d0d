"""Contexts, the plan cache and the execution of forward and backward calls.

Every call is one polyattn_forward (or _backward, or their _ex forms with the variants' and
serving layouts' tensors) on views of the caller's arrays.
"""
import ctypes
import os
import threading
from collections import OrderedDict

from . import _lib
from ._lib import AttentionDesc, ExtraTensors, PlanInfo, PlanOptions, check, lib

PLAN_CACHE_SIZE = int(os.environ.get("POLYATTN_PLAN_CACHE_SIZE", "256"))
WRAP_CACHE_SIZE = 64
_NULL = None


class View:
    """One tensor as the C library sees it: a pointer and [batch, heads, seq, dim] with
    element strides."""

    __slots__ = ("ptr", "dims", "strides", "itemsize")

    def __init__(self, ptr, dims, strides, itemsize):
        self.ptr, self.dims, self.strides, self.itemsize = ptr, dims, strides, itemsize

    def nbytes(self):
        (b, h, s, d), (sb, sh, ss, sd) = self.dims, self.strides
        if not (b and h and s and d):
            return 0
        return (1 + (b - 1) * sb + (h - 1) * sh + (s - 1) * ss + (d - 1) * sd) * self.itemsize


class Flat:
    """A contiguous float32 output (log-sum-exp, probabilities): pointer and bytes."""

    __slots__ = ("ptr", "bytes")

    def __init__(self, ptr, nbytes):
        self.ptr, self.bytes = ptr, nbytes

    def nbytes(self):
        return self.bytes


class Context:
    """One device of one backend; zero_copy says whether arrays are wrapped in place (host
    backend with host arrays, CUDA/HIP with device arrays) or copied there and back."""

    def __init__(self, backend, device, stream=None):
        self.backend, self.device, self.stream = backend, device, stream
        handle = ctypes.c_void_p()
        code = _lib.BACKENDS[backend]
        if stream is not None:
            mod = _lib.interop(backend)
            if mod is None:
                raise _lib.error_for(5, f"the {backend} interop module libpolyattn_{backend}.so "
                                        f"was not found beside {_lib.library_path}",
                                     "polyattn_context_create")
            create = getattr(mod, f"polyattn_{backend}_context_create")
            check(create(device, stream, ctypes.byref(handle)), None,
                  f"polyattn_{backend}_context_create")
            self.wrap = getattr(mod, f"polyattn_{backend}_buffer_wrap")
        else:
            check(lib.polyattn_context_create(code, device, ctypes.byref(handle)), None,
                  "polyattn_context_create")
            self.wrap = lib.polyattn_host_buffer_wrap if (backend == "host" and _lib.has_host_wrap) else None
        self.handle = handle.value
        self.zero_copy = self.wrap is not None
        self.lock = threading.RLock()
        self.workspace = None
        self.workspace_bytes = 0
        # Wrapped caller memory, by (pointer, bytes): a wrapper owns nothing, so it stays
        # valid for any later array at that address; bounded, least recently used out.
        self.wraps = OrderedDict()

    def wrapped(self, ptr, nbytes):
        key = (ptr, nbytes)
        handle = self.wraps.get(key)
        if handle is not None:
            self.wraps.move_to_end(key)
            return handle
        buf = ctypes.c_void_p()
        check(self.wrap(self.handle, ptr, nbytes, ctypes.byref(buf)), self.handle,
              "buffer wrap")
        self.wraps[key] = buf.value
        if len(self.wraps) > WRAP_CACHE_SIZE:
            lib.polyattn_buffer_free(self.wraps.popitem(last=False)[1])
        return buf.value

    def workspace_for(self, nbytes):
        """A grow-only workspace (freed with the context)."""
        if nbytes == 0:
            return _NULL
        if nbytes > self.workspace_bytes:
            if self.workspace:
                lib.polyattn_buffer_free(self.workspace)
                self.workspace, self.workspace_bytes = None, 0
            buf = ctypes.c_void_p()
            check(lib.polyattn_buffer_alloc(self.handle, nbytes, ctypes.byref(buf)), self.handle,
                  "polyattn_buffer_alloc")
            self.workspace, self.workspace_bytes = buf.value, nbytes
        return self.workspace

    def close(self):
        if self.handle:
            if self.workspace:
                lib.polyattn_buffer_free(self.workspace)
            for handle in self.wraps.values():
                lib.polyattn_buffer_free(handle)
            self.wraps.clear()
            lib.polyattn_context_destroy(self.handle)
            self.handle = None


_contexts = {}
_contexts_lock = threading.Lock()


def context(backend, device, stream=None):
    key = (backend, device, stream)
    ctx = _contexts.get(key)
    if ctx is None:
        with _contexts_lock:
            ctx = _contexts.get(key)
            if ctx is None:
                ctx = _contexts[key] = Context(backend, device, stream)
    return ctx


# ---- plans ------------------------------------------------------------------------------

class Plan:
    __slots__ = ("handle", "info", "ctx")

    def __init__(self, handle, info, ctx):
        self.handle, self.info, self.ctx = handle, info, ctx

    def __del__(self):
        if self.handle and lib is not None:
            lib.polyattn_plan_destroy(self.handle)
            self.handle = None


_plans = OrderedDict()
_plans_lock = threading.Lock()
# The repeated-call fast path's runners by call signature (_fast.py); they hold plans and
# contexts, so they are cleared with them.
fast_entries = {}
fast_entries_lock = threading.Lock()


def _tensor_desc(t, dtype, view):
    t.dtype = dtype
    t.shape[:] = view.dims
    t.strides[:] = view.strides


def make_desc(dtype, q, k, v, o, scale, mask, variants=None, serving=None, out_dtype=None,
              descales=None):
    """out_dtype: o's dtype (None: q's); descales: (q, k, v) of e4m3 inputs (0: 1)."""
    d = AttentionDesc()
    d.struct_size = ctypes.sizeof(AttentionDesc)
    _tensor_desc(d.q, dtype, q)
    _tensor_desc(d.k, dtype, k)
    _tensor_desc(d.v, dtype, v)
    _tensor_desc(d.o, dtype if out_dtype is None else out_dtype, o)
    d.scale = scale
    d.mask = mask
    if descales is not None:
        d.q_descale, d.k_descale, d.v_descale = descales
    d.window_left = d.window_right = -1
    if variants is not None:
        variants.fill(d)
    if serving is not None:
        serving.fill(d)
    return d


def make_options(algo, want_lse, want_probs, want_backward, deterministic,
                 want_bias_grad=False, num_splits=0):
    opt = PlanOptions()
    lib.polyattn_plan_options_init(ctypes.byref(opt))
    opt.algo = algo
    opt.want_lse, opt.want_probs = int(want_lse), int(want_probs)
    opt.want_backward, opt.deterministic = int(want_backward), int(deterministic)
    opt.want_bias_grad = int(want_bias_grad)
    opt.num_splits = int(num_splits)
    return opt


def plan(ctx, dtype, q, k, v, o, scale, mask, algo, want_lse=False, want_probs=False,
         want_backward=False, deterministic=False, variants=None, want_bias_grad=False,
         serving=None, num_splits=0, out_dtype=None, descales=None):
    """The cached plan for these descriptors and options on ctx (LRU, PLAN_CACHE_SIZE).
    variants: a _variants.Bound (window, softcap, ALiBi, bias, mask, sinks) or None;
    serving: a _serving.Serving (varlen, KV cache, paged, append) or None; out_dtype: o's
    dtype (None: q's); descales: the e4m3 inputs' (q, k, v) descale factors or None."""
    if out_dtype == dtype:
        out_dtype = None
    key = (ctx.handle, dtype, q.dims, q.strides, k.dims, k.strides, v.dims, v.strides,
           o.dims, o.strides, scale, mask, algo, want_lse, want_probs, want_backward,
           deterministic, None if variants is None else variants.key, want_bias_grad,
           None if serving is None else serving.key, num_splits, out_dtype, descales)
    p = _plans.get(key)
    if p is not None:
        _plans.move_to_end(key)
        return p
    desc = make_desc(dtype, q, k, v, o, scale, mask, variants, serving, out_dtype, descales)
    opt = make_options(algo, want_lse, want_probs, want_backward, deterministic,
                       want_bias_grad, num_splits)
    handle = ctypes.c_void_p()
    check(lib.polyattn_plan_create(ctx.handle, ctypes.byref(desc), ctypes.byref(opt),
                                   ctypes.byref(handle)), ctx.handle, "polyattn_plan_create")
    info = PlanInfo()
    info.struct_size = ctypes.sizeof(PlanInfo)
    p = Plan(handle.value, info, ctx)
    check(lib.polyattn_plan_get_info(p.handle, ctypes.byref(info)), ctx.handle,
          "polyattn_plan_get_info")
    with _plans_lock:
        _plans[key] = p
        while len(_plans) > PLAN_CACHE_SIZE:
            _plans.popitem(last=False)
    return p


def clear_caches():
    """Destroys every cached plan and context (tests; freeing device memory)."""
    with fast_entries_lock:
        fast_entries.clear()
    with _plans_lock:
        _plans.clear()
    with _contexts_lock:
        for ctx in _contexts.values():
            ctx.close()
        _contexts.clear()


def cache_info():
    return {"plans": len(_plans), "plan_cache_size": PLAN_CACHE_SIZE, "contexts": len(_contexts),
            "fast_calls": len(fast_entries)}


def info_dict(p):
    info = p.info
    cands = []
    for i in range(info.n_candidates):
        c = info.candidates[i]
        cands.append({"algo": _lib.ALGO_NAMES.get(c.algo, str(c.algo)),
                      "status": _lib.STATUS_NAMES.get(c.status, str(c.status)),
                      "eligible": c.status == 0, "chosen": bool(c.chosen),
                      "workspace_bytes": c.workspace_bytes, "device_bytes": c.device_bytes,
                      "reason": c.reason.decode(errors="replace")})
    return {"backend": _lib.BACKEND_NAMES.get(info.backend, str(info.backend)),
            "device": p.ctx.device,
            "algo": _lib.ALGO_NAMES.get(info.algo, str(info.algo)),
            "reason": info.reason.decode(errors="replace"),
            "workspace_bytes": info.workspace_bytes,
            "backward_workspace_bytes": info.backward_workspace_bytes,
            "device_bytes": info.device_bytes, "flops": info.flops,
            "min_bytes_moved": info.min_bytes_moved,
            "kernel_launches": info.kernel_launches, "num_splits": info.num_splits,
            "varlen_q": bool(info.varlen_q),
            "kv_layout": _lib.KV_LAYOUT_NAMES.get(info.kv_layout, str(info.kv_layout)),
            "kv_block_size": info.kv_block_size, "candidates": cands}


# ---- buffers ----------------------------------------------------------------------------

class _Buffers:
    """The buffers of one C call: wrapped in place, or device copies of host memory (inputs
    written before, outputs read back after)."""

    __slots__ = ("ctx", "handles", "readback")

    def __init__(self, ctx):
        self.ctx, self.handles, self.readback = ctx, [], []

    def get(self, t, output):
        if t is None:
            return _NULL
        nbytes = t.nbytes()
        if nbytes == 0:
            return _NULL
        ctx, buf = self.ctx, ctypes.c_void_p()
        if ctx.zero_copy:
            return ctx.wrapped(t.ptr, nbytes)
        else:
            check(lib.polyattn_buffer_alloc(ctx.handle, nbytes, ctypes.byref(buf)), ctx.handle,
                  "polyattn_buffer_alloc")
            self.handles.append(buf.value)
            # Outputs too: a strided output's gaps must come back unchanged.
            check(lib.polyattn_buffer_write(buf.value, 0, t.ptr, nbytes), ctx.handle,
                  "polyattn_buffer_write")
            if output:
                self.readback.append((buf.value, t.ptr, nbytes))
            return buf.value

    def finish(self):
        for handle, ptr, nbytes in self.readback:
            check(lib.polyattn_buffer_read(handle, 0, ptr, nbytes), self.ctx.handle,
                  "polyattn_buffer_read")

    def free(self):
        for h in self.handles:
            lib.polyattn_buffer_free(h)
        self.handles = []


def _extra(bufs, variants, serving, d_bias=None, d_sinks=None):
    """The polyattn_extra_tensors of a call: the variants' inputs, the serving layouts'
    int32 tensors and appended rows, the variants' gradients out."""
    extra = ExtraTensors()
    extra.struct_size = ctypes.sizeof(ExtraTensors)
    for part in (variants, serving):
        if part is not None:
            for name, view in part.inputs().items():
                setattr(extra, name, bufs.get(view, False))
    extra.d_bias = bufs.get(d_bias, True)
    extra.d_sinks = bufs.get(d_sinks, True)
    return extra


def forward(ctx, p, q, k, v, o, lse=None, probs=None, variants=None, serving=None):
    """polyattn_forward of plan p on views q, k, v (inputs) and o, lse, probs (outputs);
    polyattn_forward_ex with the tensors of variants (a _variants.Bound) and serving (a
    _serving.Serving) when given.  A KV append writes the caches k and v."""
    written = serving is not None and serving.appends
    with ctx.lock:
        bufs = _Buffers(ctx)
        try:
            args = (bufs.get(q, False), bufs.get(k, written), bufs.get(v, written),
                    bufs.get(o, True), bufs.get(lse, True), bufs.get(probs, True),
                    ctx.workspace_for(p.info.workspace_bytes))
            if variants is None and serving is None:
                check(lib.polyattn_forward(p.handle, *args), ctx.handle, "polyattn_forward")
            else:
                extra = _extra(bufs, variants, serving)
                check(lib.polyattn_forward_ex(p.handle, *args, ctypes.byref(extra)),
                      ctx.handle, "polyattn_forward_ex")
            bufs.finish()
        finally:
            bufs.free()


def backward(ctx, p, q, k, v, o, d_o, lse, dq, dk, dv, variants=None, d_bias=None,
             d_sinks=None, serving=None):
    """polyattn_backward (polyattn_backward_ex with variants: d_bias and d_sinks are Flat
    float32 outputs, or None)."""
    with ctx.lock:
        bufs = _Buffers(ctx)
        try:
            args = (bufs.get(q, False), bufs.get(k, False), bufs.get(v, False),
                    bufs.get(o, False), bufs.get(d_o, False), bufs.get(lse, False),
                    bufs.get(dq, True), bufs.get(dk, True), bufs.get(dv, True),
                    ctx.workspace_for(p.info.backward_workspace_bytes))
            if variants is None and serving is None:
                check(lib.polyattn_backward(p.handle, *args), ctx.handle, "polyattn_backward")
            else:
                extra = _extra(bufs, variants, serving, d_bias, d_sinks)
                check(lib.polyattn_backward_ex(p.handle, *args, ctypes.byref(extra)),
                      ctx.handle, "polyattn_backward_ex")
            bufs.finish()
        finally:
            bufs.free()
