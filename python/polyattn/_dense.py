"""Dense attention on [batch, seq, heads, dim] (bshd) or [batch, heads, seq, dim] (bhsd)
arrays: checks, output allocation, and one C call per segment."""
from . import _arrays, _fp8, _lib, _runtime
from ._runtime import Flat, View

F32 = _lib.DTYPE_F32


def default_out_dtype(qr):
    """O's dtype when out= is not given: q's; for e4m3 inputs bfloat16, as FlashAttention-3
    returns, with torch and JAX, and float32 with NumPy and the others (NumPy has no
    bfloat16 without ml_dtypes)."""
    if qr.dtype != _fp8.E4M3:
        return qr.dtype
    return _lib.DTYPE_BF16 if qr.kind in ("torch", "jax", "shape") else F32


def check_array(r, name, rank, dtype=None, device=None):
    """Rank, dtype and device of one argument, and a unit-stride last dimension."""
    if r.ndim != rank:
        raise ValueError(f"{name}: expected {rank} dimensions, got shape {tuple(r.shape)}")
    if dtype is not None and r.dtype != dtype:
        raise TypeError(f"{name}: dtype {_arrays.dtype_name(r.dtype)} differs from q's "
                        f"{_arrays.dtype_name(dtype)}")
    if device is not None and r.device != device:
        raise ValueError(f"{name}: on device {r.device[0]}:{r.device[1]}, q on "
                         f"{device[0]}:{device[1]}")
    if r.shape[-1] > 1 and r.strides[-1] != 1:
        raise ValueError(f"{name}: the last dimension (head_dim) must be contiguous, its "
                         f"stride is {r.strides[-1]}")
    if min(r.strides) < 0:
        raise ValueError(f"{name}: negative strides {r.strides} are not supported")
    if 0 in r.shape:
        raise ValueError(f"{name}: empty shape {tuple(r.shape)}")


def to_view(r, layout, offset=0):
    """The [batch, heads, seq, dim] view of a rank-4 Ref in `layout`."""
    s, st = r.shape, r.strides
    if layout == "bshd":
        dims, strides = (s[0], s[2], s[1], s[3]), (st[0], st[2], st[1], st[3])
    else:
        dims, strides = tuple(s), tuple(st)
    return View(r.ptr + offset * r.itemsize, dims, strides, r.itemsize)


def check_qkv(qv, kv, vv, names=("q", "k", "v")):
    """Shape agreement of [batch, heads, seq, dim] views."""
    qn, kn, vn = names
    (b, hq, sq, d), (bk, hk, sk, dk), (bv, hv, sv, dv) = qv.dims, kv.dims, vv.dims
    if bk != b or bv != b:
        raise ValueError(f"batch: {qn} has {b}, {kn} {bk}, {vn} {bv}")
    if dk != d:
        raise ValueError(f"head_dim: {qn} has {d}, {kn} {dk}")
    if hv != hk or sv != sk:
        raise ValueError(f"{kn} and {vn}: heads/seq differ ({hk}, {sk}) vs ({hv}, {sv})")
    if hq % hk:
        raise ValueError(f"heads: {qn} has {hq}, not a multiple of {kn}'s {hk} (GQA)")


def resolve(qr, backend, device):
    """(Context, stream) for arrays on q's device: host arrays run on `backend` (default
    host; others copy there and back), CUDA/HIP arrays on their own device and the
    producer's current stream, wrapped in place."""
    if backend is not None and backend not in _lib.BACKENDS:
        raise ValueError(f"backend: {backend!r} is not one of {sorted(_lib.BACKENDS)}")
    kind, index = qr.device
    if kind == "cpu":
        backend = "host" if backend in (None, "auto") else backend
        return _runtime.context(backend, 0 if device is None else int(device))
    native = "cuda" if kind == "cuda" else "hip"
    if backend not in (None, "auto", native):
        raise ValueError(f"backend={backend!r}: q is on {kind}:{index}; device arrays run on "
                         f"the {native} backend")
    if device is not None and int(device) != index:
        raise ValueError(f"device={device}: q is on {kind}:{index}")
    return _runtime.context(native, index, _arrays.current_stream(qr))


def _record(rec, ctx, p, qr, refs, views, o, out_given, lse, probs, bound):
    rec.ctx, rec.plan, rec.qr, rec.bound = ctx, p, qr, bound
    rec.inputs = [(i, r, vw) for i, (r, vw) in enumerate(zip(refs, views))]
    rec.o, rec.out_given, rec.lse, rec.probs = o, out_given, lse, probs
    rec.call_views = list(views) + [o[2], lse and lse[2], probs and probs[2]]
    if bound is not None:
        extra = bound.inputs()
        for i, name in enumerate(("alibi_slopes", "bias", "attn_mask", "sinks")):
            if extra[name] is not None:
                rec.inputs.append((3 + i, bound.ref_of[name], extra[name]))
            rec.call_views.append(extra[name])


class Dense:
    """One dense attention problem, ready to run forward and backward on given arrays."""

    def __init__(self, layout="bshd", mask=0, scale=None, backend=None, device=None,
                 algo="auto", deterministic=False, variants=None, descales=None):
        if layout not in ("bshd", "bhsd"):
            raise ValueError(f"layout: {layout!r} is not 'bhsd' or 'bshd'")
        if algo not in _lib.ALGOS:
            raise ValueError(f"algo: {algo!r} is not one of {sorted(_lib.ALGOS)}")
        if scale is not None:
            scale = float(scale)
            if not scale > 0:
                raise ValueError(f"scale: {scale} must be positive (None: 1/sqrt(head_dim))")
        self.layout, self.mask, self.scale = layout, mask, scale or 0.0
        self.backend, self.device, self.algo = backend, device, _lib.ALGOS[algo]
        self.deterministic = bool(deterministic)
        # A _variants.Variants with something on, or None.
        self.variants = variants if variants is not None and variants.active() else None
        # The e4m3 inputs' (q, k, v) descale factors (_fp8.descales), or None.
        self.descales = descales

    def bind(self, qr, qv, kv, first=0, count=None, batch=None):
        """The variants bound to this problem (None without variants)."""
        if self.variants is None:
            return None
        b, hq, sq, _ = qv.dims
        return self.variants.bind(qr, b if batch is None else batch, hq, sq, kv.dims[2],
                                  first, count)

    def refs(self, q, k, v):
        qr = _arrays.ref(q, "q")
        check_array(qr, "q", 4)
        kr, vr = _arrays.ref(k, "k"), _arrays.ref(v, "v")
        check_array(kr, "k", 4, qr.dtype, qr.device)
        check_array(vr, "v", 4, qr.dtype, qr.device)
        return qr, kr, vr

    def out_shape(self, qv, vv):
        b, hq, sq, _ = qv.dims
        dv = vv.dims[3]
        return (b, sq, hq, dv) if self.layout == "bshd" else (b, hq, sq, dv)

    def output(self, qr, shape, out, name="out", dtype=None):
        """(array, Ref) of an output; dtype None: O's (q's, or with e4m3 inputs any of
        float32, float16 and bfloat16 in out=, bfloat16 by default)."""
        free = dtype is None and qr.dtype == _fp8.E4M3
        if dtype is None:
            dtype = default_out_dtype(qr)
        if out is None:
            arr = _arrays.empty(qr, shape, dtype)
        else:
            arr = out
        r = _arrays.ref(arr, name)
        if tuple(r.shape) != tuple(shape):
            raise ValueError(f"{name}: shape {tuple(r.shape)}, expected {tuple(shape)}")
        if free:
            if r.dtype not in _fp8.OUT_DTYPES:
                raise TypeError(f"{name}: dtype {_arrays.dtype_name(r.dtype)}; with e4m3 "
                                "inputs O is float32, float16 or bfloat16")
            dtype = r.dtype
        check_array(r, name, len(shape), dtype, qr.device)
        if r.read_only:
            raise ValueError(f"{name}: read-only array")
        return arr, r

    def forward(self, q, k, v, out=None, want_lse=False, want_probs=False,
                want_backward=False, record=None):
        """(o, lse or None, probs or None) as arrays of q's library and device.  record: a
        _fast.Record to fill with what the call did (the fast path repeats it)."""
        qr, kr, vr = self.refs(q, k, v)
        qv, kv, vv = (to_view(r, self.layout) for r in (qr, kr, vr))
        check_qkv(qv, kv, vv)
        _fp8.check(qr.dtype, self.descales)
        ctx = resolve(qr, self.backend, self.device)
        o, orf = self.output(qr, self.out_shape(qv, vv), out)
        ov = to_view(orf, self.layout)
        want_lse = want_lse or want_backward
        b, hq, sq, _ = qv.dims
        lse = lse_v = probs = probs_v = None
        if want_lse:
            lse, lr = self.output(qr, (b, hq, sq), None, "lse", F32)
            lse_v = Flat(lr.ptr, b * hq * sq * 4)
        if want_probs:
            sk = kv.dims[2]
            probs, pr = self.output(qr, (b, hq, sq, sk), None, "probs", F32)
            probs_v = Flat(pr.ptr, b * hq * sq * sk * 4)
        bound = self.bind(qr, qv, kv)
        p = _runtime.plan(ctx, qr.dtype, qv, kv, vv, ov, self.scale, self.mask, self.algo,
                          want_lse, want_probs, want_backward, self.deterministic, bound,
                          out_dtype=orf.dtype, descales=self.descales)
        _runtime.forward(ctx, p, qv, kv, vv, ov, lse_v, probs_v, bound)
        if record is not None:
            _record(record, ctx, p, qr, (qr, kr, vr), (qv, kv, vv), (o, orf, ov), out is not None,
                    (lse, lr, lse_v) if want_lse else None,
                    (probs, pr, probs_v) if want_probs else None, bound)
        fin = _arrays.finish
        return fin(qr, o), (fin(qr, lse) if lse is not None else None), \
            (fin(qr, probs) if probs is not None else None)

    def backward(self, q, k, v, o, lse, d_o, want_bias_grad=False, extra_grads=False):
        """(dq, dk, dv) laid out like q, k and v; with extra_grads also d_bias (float32, the
        bias's shape; None unless want_bias_grad) and d_sinks (float32 [heads_q] or None)."""
        qr, kr, vr = self.refs(q, k, v)
        orf = _arrays.ref(o, "o")
        dor = _arrays.ref(d_o, "d_o")
        check_array(dor, "d_o", 4, qr.dtype, qr.device)
        if tuple(dor.strides) != tuple(orf.strides) or tuple(dor.shape) != tuple(orf.shape):
            raise ValueError("d_o: must have o's shape and strides")
        lr = _arrays.ref(lse, "lse")
        qv, kv, vv, ov, dov = (to_view(r, self.layout) for r in (qr, kr, vr, orf, dor))
        ctx = resolve(qr, self.backend, self.device)
        grads = [_arrays.empty_like_strided(r) for r in (qr, kr, vr)]
        gv = [to_view(_arrays.ref(g, n), self.layout) for g, n in zip(grads, ("dq", "dk", "dv"))]
        bound = self.bind(qr, qv, kv)
        b, hq, sq, _ = qv.dims
        d_bias = d_sinks = db_v = ds_v = None
        want_bias_grad = bool(want_bias_grad and bound is not None and bound.bias is not None)
        if want_bias_grad:
            dims = bound.bias.dims
            d_bias, r = self.output(qr, dims, None, "d_bias", F32)
            db_v = Flat(r.ptr, dims[0] * dims[1] * dims[2] * dims[3] * 4)
        if bound is not None and bound.sinks is not None:
            d_sinks, r = self.output(qr, (hq,), None, "d_sinks", F32)
            ds_v = Flat(r.ptr, hq * 4)
        p = _runtime.plan(ctx, qr.dtype, qv, kv, vv, ov, self.scale, self.mask, self.algo,
                          True, False, True, self.deterministic, bound, want_bias_grad,
                          out_dtype=orf.dtype, descales=self.descales)
        _runtime.backward(ctx, p, qv, kv, vv, ov, dov, Flat(lr.ptr, b * hq * sq * 4), *gv,
                          variants=bound, d_bias=db_v, d_sinks=ds_v)
        grads = tuple(_arrays.finish(qr, g) for g in grads)
        if not extra_grads:
            return grads
        if d_bias is not None:
            d_bias = _arrays.finish(qr, bound.reduce_bias_grad(d_bias))
        if d_sinks is not None:
            d_sinks = _arrays.finish(qr, d_sinks)
        return grads + (d_bias, d_sinks)

    def explain(self, ctx, dtype, qv, kv, vv, ov, want_lse, want_probs, want_backward,
                bound=None, out_dtype=None):
        _fp8.check(dtype, self.descales)
        p = _runtime.plan(ctx, dtype, qv, kv, vv, ov, self.scale, self.mask, self.algo,
                          want_lse, want_probs, want_backward, self.deterministic, bound,
                          out_dtype=out_dtype, descales=self.descales)
        return _runtime.info_dict(p)
