"""The public functions: FlashAttention's interface and the native call."""
import ctypes

from . import _arrays, _fast, _features, _fp8, _kvcache, _lib, _runtime
from ._dense import Dense, check_qkv, default_out_dtype, resolve, to_view
from ._fast import NO, NO_WINDOW, Record, mask_key, sig, sig_out, sig_q, window_key
from ._lib import DeviceInfo, check, lib
from ._runtime import View
from ._variants import Variants
from ._varlen import Varlen

_MASKS = {None: 0, "none": 0, "causal-top-left": 1, "causal-bottom-right": 2}
_entries = _fast.entries


def _torch():
    from . import _torch as t
    return t


def _is_torch(x):
    return type(x).__module__.split(".")[0] == "torch"


def _run(problem, q, k, v, out, want_lse, want_probs, varlen=False, algo="auto", record=None):
    """Forward through autograd (torch tensors needing gradients), the custom op (inside
    torch.compile), or directly (filling `record`, a _fast.Record, when given).  Returns
    (o, lse, probs)."""
    if _is_torch(q):
        t = _torch()
        dense = problem.dense if varlen else problem
        var = dense.variants
        if t.is_compiling() and not varlen:
            if want_probs or out is not None:
                raise NotImplementedError("return_probs and out= are not traceable by "
                                          "torch.compile")
            if var is not None:
                raise NotImplementedError("window, softcap, alibi_slopes, bias, mask and "
                                          "sinks are not traceable by torch.compile yet")
            if dense.descales is not None or str(q.dtype) == "torch.float8_e4m3fn":
                raise NotImplementedError("float8_e4m3fn inputs and descales are not "
                                          "traceable by torch.compile yet")
            o, lse = t.op_call(problem, q, k, v, algo)
            return o, (lse if want_lse else None), None
        bias = var.bias if var is not None else None
        sinks = var.sinks if var is not None else None
        if t.needs_autograd(q, k, v, bias, sinks):
            if out is not None:
                raise ValueError("out=: not allowed where gradients are needed")
            return t.apply(t.Runner(problem, varlen), q, k, v, want_lse, want_probs, bias,
                           sinks)
    if record is not None:
        return problem.forward(q, k, v, out, want_lse, want_probs, record=record)
    res = problem.forward(q, k, v, out, want_lse, want_probs)
    return res[0], res[1], res[2]


def _mask(causal):
    return 2 if causal else 0  # FlashAttention's causal is aligned bottom-right


def _triple(o, lse, probs):
    return o, lse, probs


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False,
                    window_size=NO_WINDOW, softcap=0.0, alibi_slopes=None, deterministic=False,
                    return_attn_probs=False, *, backend=None, device=None, algo="auto",
                    out=None, q_descale=None, k_descale=None, v_descale=None):
    """FlashAttention's flash_attn_func: q [batch, seqlen_q, nheads, headdim], k and v
    [batch, seqlen_k, nheads_k, headdim].  Returns out, or (out, softmax_lse [batch, nheads,
    seqlen_q] float32, probabilities [batch, nheads, seqlen_q, seqlen_k]) with
    return_attn_probs.

    FP8 (FlashAttention-3's): q, k and v torch.float8_e4m3fn tensors (or polyattn.e4m3
    bytes), with per-tensor factors q_descale, k_descale, v_descale (a number or a
    1-element array; None: 1); out is bfloat16 unless out= is float32/float16/bfloat16
    (NumPy: float32 by default).  Forward only."""
    key = run = None
    try:  # a repeated signature runs from the data pointers alone (_fast.py)
        qs = sig_q(q)
        if qs is not NO:
            key = ("flash", qs, sig(k), sig(v), out if out is None else sig_out(out),
                   alibi_slopes if alibi_slopes is None else sig(alibi_slopes),
                   window_key(window_size), dropout_p, softmax_scale, causal, softcap,
                   deterministic, return_attn_probs, backend, device, algo,
                   _fp8.key(q_descale), _fp8.key(k_descale), _fp8.key(v_descale))
            run = _entries.get(key)
    except Exception:  # noqa: BLE001 - unhashable or odd arguments: the checked path
        key = run = None  # says what is wrong with them
    if run is not None:
        return run(q, k, v, out, alibi_slopes)
    _features.check(dropout_p=dropout_p)
    var = Variants(window_size, softcap, alibi_slopes, window_name="window_size")
    dense = Dense("bshd", _mask(causal), softmax_scale, backend, device, algo, deterministic,
                  var, _fp8.descales(q_descale, k_descale, v_descale))
    rec = None if key is None else Record()
    o, lse, probs = _run(dense, q, k, v, out, return_attn_probs, return_attn_probs, algo=algo,
                         record=rec)
    if rec is not None:
        _fast.store(key, key[7:], rec, (q, k, v, alibi_slopes, None, None, None), out,
                    _triple if return_attn_probs else None)
    return (o, lse, probs) if return_attn_probs else o


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                           dropout_p=0.0, softmax_scale=None, causal=False,
                           window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                           deterministic=False, return_attn_probs=False, block_table=None, *,
                           backend=None, device=None, algo="auto", out=None, q_descale=None,
                           k_descale=None, v_descale=None):
    """FlashAttention's flash_attn_varlen_func, one native call: q [total_q, nheads,
    headdim], k and v [total_k, nheads_k, headdim], sequence i at rows cu_seqlens[i] to
    cu_seqlens[i + 1] (int32 [batch + 1]); with block_table (int32 [batch, max_blocks]), k
    and v are a paged cache [num_blocks, block_size, nheads_k, headdim] and sequence i has
    cu_seqlens_k[i + 1] - cu_seqlens_k[i] keys.  causal aligns each sequence's last query
    with its last key.  Returns out, or (out, softmax_lse float32 [nheads, total_q], None)
    with return_attn_probs (the library has no probabilities for packed sequences).  Rows
    of q past cu_seqlens_q[-1] are not written.  torch tensors that require gradients get
    them through polyattn_backward (not with block_table).  FP8 inputs and q_descale,
    k_descale, v_descale: as flash_attn_func."""
    _features.check(dropout_p=dropout_p)
    var = Variants(window_size, softcap, alibi_slopes, window_name="window_size")
    dense = Dense("bshd", _mask(causal), softmax_scale, backend, device, algo, deterministic,
                  var, _fp8.descales(q_descale, k_descale, v_descale))
    problem = Varlen(dense, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                     block_table)
    o, lse, _ = _run(problem, q, k, v, out, return_attn_probs, False, varlen=True)
    return (o, lse, None) if return_attn_probs else o


def _seqlens_key(x):
    """cache_seqlens in a signature: None or a plain int as is, an array by its signature."""
    return x if x is None or type(x) is int else sig(x)


def flash_attn_with_kvcache(q, k_cache, v_cache, k=None, v=None, rotary_cos=None,
                            rotary_sin=None, cache_seqlens=None, cache_batch_idx=None,
                            cache_leftpad=None, block_table=None, softmax_scale=None,
                            causal=False, window_size=(-1, -1), softcap=0.0,
                            rotary_interleaved=True, alibi_slopes=None, num_splits=0,
                            return_softmax_lse=False, *, backend=None, device=None,
                            algo="auto", out=None, q_descale=None, k_descale=None,
                            v_descale=None):
    """FlashAttention's flash_attn_with_kvcache, one native call.  q [batch, seqlen_q,
    nheads, headdim]; k_cache, v_cache [batch_cache >= batch, capacity, nheads_k, headdim]
    (a dense cache) or, with block_table (int32 [batch, max_blocks]), [num_blocks,
    block_size, nheads_k, headdim] (a paged cache, block_size a multiple of 16).  k and v
    [batch, seqlen_new, nheads_k, headdim], when given, are written into the cache in place
    at cache_seqlens (int32 [batch] or an int; not advanced) before attending; sequence i
    attends to its first cache_seqlens[i] + seqlen_new keys (all of the cache without
    cache_seqlens).  causal aligns the last query with the last key.  num_splits: the key
    splits of the plan (0: the plan chooses; 1: none).  Returns out, or (out, softmax_lse
    float32 [batch, nheads, seqlen_q]) with return_softmax_lse.  FP8 inputs and q_descale,
    k_descale, v_descale: as flash_attn_func (appended k and v are in k_descale's and
    v_descale's scale)."""
    key = run = None
    try:  # a repeated signature (decode steps) runs from the data pointers alone
        qs = sig_q(q)
        if qs is not NO and rotary_cos is None and rotary_sin is None and \
                cache_batch_idx is None and cache_leftpad is None:
            key = ("kvcache", qs, sig(k_cache), sig(v_cache), sig(k), sig(v),
                   _seqlens_key(cache_seqlens), sig(block_table), sig(alibi_slopes),
                   window_key(window_size), sig_out(out), softmax_scale, causal, softcap,
                   num_splits, return_softmax_lse, backend, device, algo,
                   _fp8.key(q_descale), _fp8.key(k_descale), _fp8.key(v_descale))
            if any(part is NO for part in key):
                key = None
            else:
                run = _entries.get(key)
    except Exception:  # noqa: BLE001 - unhashable or odd arguments: the checked path
        key = run = None  # says what is wrong with them
    if run is not None:
        o, lse = run((q, k_cache, v_cache, k, v, cache_seqlens, block_table, alibi_slopes),
                     out)
        return (o, lse) if return_softmax_lse else o
    _features.check(rotary_cos=rotary_cos, rotary_sin=rotary_sin,
                    cache_batch_idx=cache_batch_idx, cache_leftpad=cache_leftpad)
    var = Variants(window_size, softcap, alibi_slopes, window_name="window_size")
    if type(num_splits) is not int and not hasattr(num_splits, "__index__"):
        raise TypeError(f"num_splits: {num_splits!r} is not an integer")
    if int(num_splits) < 0:
        raise ValueError(f"num_splits: {num_splits} is negative (0: the plan chooses)")
    dense = Dense("bshd", _mask(causal), softmax_scale, backend, device, algo, variants=var,
                  descales=_fp8.descales(q_descale, k_descale, v_descale))
    if key is not None and not all(type(x) in _fast._PLAIN for x in key[11:]):
        key = None
    o, lse = _kvcache.run(dense, q, k_cache, v_cache, k, v, cache_seqlens, block_table,
                          return_softmax_lse, out, int(num_splits), alibi_slopes, key)
    return (o, lse) if return_softmax_lse else o


def _native_mask(mask):
    """(mask kind, boolean mask array or None): mask is None, a causal name, or an array."""
    if mask is None or isinstance(mask, str):
        if mask not in _MASKS:
            raise ValueError(f"mask: {mask!r} is not None, 'causal-top-left', "
                             "'causal-bottom-right' or a boolean array")
        return _MASKS[mask], None
    return 0, mask


def attention(q, k, v, *, layout="bhsd", mask=None, scale=None, bias=None, sinks=None,
              window=None, softcap=0.0, alibi_slopes=None, return_lse=False,
              return_probs=False, backend=None, device=None, algo="auto", out=None,
              deterministic=False, q_descale=None, k_descale=None, v_descale=None):
    """softmax(q k^T * scale + mask) v on [batch, heads, seq, dim] ("bhsd") or [batch, seq,
    heads, dim] ("bshd") arrays.  Returns o, or a tuple (o, lse?, probs?) of what was asked:
    lse float32 [batch, heads_q, seq_q], probs float32 [batch, heads_q, seq_q, seq_kv].

    Score variants (FlashAttention's semantics; s = scale * q.k, then softcap, then + ALiBi
    + bias, then the masks; the diagonal of query i is key i + seq_kv - seq_q, or i under
    'causal-top-left'):
      mask: None, 'causal-top-left', 'causal-bottom-right', or a bool/uint8 array that
        broadcasts to [batch, heads_q, seq_q, seq_kv] (False masks the pair);
      bias: float32/float16/bfloat16, broadcasting to [batch, heads_q, seq_q, seq_kv]
        (torch: gets a gradient when it requires one);
      window: (left, right) keys around the diagonal, -1 unbounded;
      softcap: s = softcap * tanh(s / softcap), 0 off;
      alibi_slopes: float32 [heads_q] or [batch, heads_q], s -= slope * |diagonal - j|;
      sinks: float32 [heads_q], a logit per head joining each softmax denominator (torch:
        gets a gradient when it requires one).

    FP8: q, k and v torch.float8_e4m3fn tensors (or polyattn.e4m3 bytes) with per-tensor
    factors q_descale, k_descale, v_descale (element x of q means q_descale * x); o is
    bfloat16 unless out= is float32/float16/bfloat16 (NumPy: float32 by default)."""
    key = run = None
    try:  # a repeated signature runs from the data pointers alone (_fast.py)
        qs = sig_q(q)
        if qs is not NO:
            key = ("attention", qs, sig(k), sig(v), sig_out(out), sig(alibi_slopes), sig(bias),
                   mask_key(mask), sig(sinks), window_key(window), layout, scale, softcap,
                   return_lse, return_probs, backend, device, algo, deterministic,
                   _fp8.key(q_descale), _fp8.key(k_descale), _fp8.key(v_descale))
            run = _entries.get(key)
    except Exception:  # noqa: BLE001 - unhashable or odd arguments: the checked path
        key = run = None  # says what is wrong with them
    if run is not None:
        return run(q, k, v, out, alibi_slopes, bias, None if type(mask) is str else mask,
                   sinks)
    mask_kind, mask_array = _native_mask(mask)
    var = Variants(window, softcap, alibi_slopes, bias, mask_array, sinks)
    dense = Dense(layout, mask_kind, scale, backend, device, algo, deterministic, var,
                  _fp8.descales(q_descale, k_descale, v_descale))
    rec = None if key is None else Record()
    o, lse, probs = _run(dense, q, k, v, out, return_lse, return_probs, algo=algo, record=rec)
    result = None
    if return_lse or return_probs:
        def result(o, lse, probs, want_lse=bool(return_lse), want_probs=bool(return_probs)):
            return (o,) + ((lse,) if want_lse else ()) + ((probs,) if want_probs else ())
    if rec is not None:
        scalars = key[10:] + ((mask,) if mask is None or type(mask) is str else ())
        _fast.store(key, scalars, rec, (q, k, v, alibi_slopes, bias, mask_array, sinks), out,
                    result)
    return o if result is None else result(o, lse, probs)


def _shape_view(shape, layout, itemsize, name):
    shape = tuple(int(n) for n in shape)
    if len(shape) != 4:
        raise ValueError(f"{name}: expected 4 dimensions, got {shape}")
    strides, step = [], 1
    for n in reversed(shape):
        strides.append(step)
        step *= n
    r = _arrays.Ref(None, "shape", 0, shape, tuple(reversed(strides)), 0, itemsize, ("cpu", 0))
    return to_view(r, layout)


def explain(q, k, v, *, layout="bhsd", mask=None, scale=None, return_lse=False,
            return_probs=False, backward=False, deterministic=False, dtype="f32",
            backend=None, device=None, algo="auto", bias=None, sinks=None, window=None,
            softcap=0.0, alibi_slopes=None, q_descale=None, k_descale=None, v_descale=None):
    """The plan for these arguments as a dict: backend, device, chosen algo and reason,
    workspace bytes, device bytes, FLOPs, bytes moved, kernel launches, and every candidate
    (algo, status, chosen, workspace, reason).  q, k, v are arrays, or shapes in `layout`
    (then `dtype`: "f32", "f16", "bf16" or "e4m3", whose o is bf16; backend None is the
    library's AUTO)."""
    mask_kind, mask_array = _native_mask(mask)
    var = Variants(window, softcap, alibi_slopes, bias, mask_array, sinks)
    dense = Dense(layout, mask_kind, scale, backend, device, algo, deterministic, var,
                  _fp8.descales(q_descale, k_descale, v_descale))
    if all(isinstance(x, (tuple, list)) for x in (q, k, v)):
        codes = {n: c for c, n in _lib.DTYPE_NAMES.items()}
        if dtype not in codes:
            raise ValueError(f"dtype: {dtype!r} is not one of {sorted(codes)}")
        dt = codes[dtype]
        size = _arrays.itemsize(dt)
        qv, kv, vv = (_shape_view(s, layout, size, n) for s, n in ((q, "q"), (k, "k"), (v, "v")))
        ctx = _runtime.context(backend or "auto", 0 if device is None else int(device))
        qr = _arrays.Ref(None, "shape", 0, qv.dims, qv.strides, dt, size, ("cpu", 0))
    else:
        qr, kr, vr = dense.refs(q, k, v)
        dt = qr.dtype
        qv, kv, vv = (to_view(r, layout) for r in (qr, kr, vr))
        ctx = resolve(qr, backend, device)
    check_qkv(qv, kv, vv)
    b, hq, sq, _ = qv.dims
    dv = vv.dims[3]
    od = (b, sq, hq, dv) if layout == "bshd" else (b, hq, sq, dv)
    out_dt = default_out_dtype(qr)
    ov = _shape_view(od, layout, _arrays.itemsize(out_dt), "out")
    return dense.explain(ctx, dt, qv, kv, vv, ov, return_lse, return_probs, backward,
                         dense.bind(qr, qv, kv), out_dt)


def devices():
    """Every device of every backend: a list of dicts (backend, index, name, vendor, driver,
    arch, memory, compute units, f16/bf16 support)."""
    found = []
    for name in ("cuda", "hip", "opencl", "host"):
        code = _lib.BACKENDS[name]
        count, reason = ctypes.c_int(0), ctypes.c_char_p()
        if lib.polyattn_device_count(code, ctypes.byref(count), ctypes.byref(reason)) != 0:
            continue
        for i in range(count.value):
            info = DeviceInfo()
            info.struct_size = ctypes.sizeof(DeviceInfo)
            check(lib.polyattn_device_get_info(code, i, ctypes.byref(info)), None,
                  "polyattn_device_get_info")
            found.append({
                "backend": name, "index": i, "name": info.name.decode(errors="replace"),
                "vendor": info.vendor.decode(errors="replace"),
                "driver_version": info.driver_version.decode(errors="replace"),
                "arch": info.arch.decode(errors="replace"),
                "global_mem_bytes": info.global_mem_bytes,
                "local_mem_bytes": info.local_mem_bytes, "compute_units": info.compute_units,
                "subgroup_size": info.subgroup_size, "f16": bool(info.f16_storage),
                "bf16": bool(info.bf16_storage)})
    return found


__all__ = ["flash_attn_func", "flash_attn_varlen_func", "flash_attn_with_kvcache", "attention",
           "explain", "devices", "View"]
