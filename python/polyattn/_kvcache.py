"""flash_attn_with_kvcache, one native call: a dense cache [batch, capacity, heads_kv, dim]
(kv_layout cache) or a paged one [num_blocks, block_size, heads_kv, dim] with a block
table (kv_layout paged), seen through strides; new rows k, v appended in place by the
library (has_kv_append) before attending; cache_seqlens are the library's seqused_kv.

A call whose arrays were all used in place is recorded like _fast.py does for the dense
functions: a later call with the same signature (decode steps) goes from the data
pointers to one polyattn_forward_ex."""
import ctypes

import numpy as np

from . import _arrays, _fast, _fp8, _lib, _runtime, _serving
from ._dense import check_array, resolve, to_view
from ._lib import ExtraTensors, check
from ._runtime import Flat, View

F32 = _lib.DTYPE_F32
# Positions of a call's arrays in the runner's argument tuple.
Q, K_CACHE, V_CACHE, K_NEW, V_NEW, SEQLENS, TABLE, SLOPES, O, LSE = range(10)


def _first(view, count):
    """The first `count` entries of a [batch, ...] view."""
    return View(view.ptr, (count,) + tuple(view.dims[1:]), view.strides, view.itemsize)


def _lengths(cache_seqlens, batch, capacity, seq_new, appending, qr):
    """cache_seqlens as Ints [batch] on q's device (None: every cache full)."""
    if cache_seqlens is None:
        if appending:
            raise ValueError("cache_seqlens: needed where k and v are appended")
        return _serving.full(capacity, batch, qr)
    if isinstance(cache_seqlens, (int, np.integer)):
        n = int(cache_seqlens)
        lens = _serving.full(n, batch, qr)
    else:
        lens = _serving.ints(cache_seqlens, "cache_seqlens", qr, 1)
        if lens.shape[0] != batch:
            raise ValueError(f"cache_seqlens: {lens.shape[0]} entries for a batch of {batch}")
    host = lens.host
    if host is not None and host.size:
        if (host < 0).any():
            raise ValueError(f"cache_seqlens: negative length {int(host.min())}")
        over = host.astype(np.int64) + seq_new > capacity
        if over.any():
            i = int(np.argmax(over))
            raise ValueError(f"cache_seqlens[{i}] = {int(host[i])} plus {seq_new} new tokens "
                             f"exceeds the cache's {capacity} positions")
    return lens


def run(dense, q, k_cache, v_cache, k, v, cache_seqlens, block_table, want_lse, out,
        num_splits, alibi_slopes=None, key=None):
    """(o, lse or None); records the call as the runner of signature `key` when it can
    (alibi_slopes: the caller's argument, which dense's variants hold checked)."""
    qr = _arrays.ref(q, "q")
    check_array(qr, "q", 4)
    kcr, vcr = _arrays.ref(k_cache, "k_cache"), _arrays.ref(v_cache, "v_cache")
    check_array(kcr, "k_cache", 4, qr.dtype, qr.device)
    check_array(vcr, "v_cache", 4, qr.dtype, qr.device)
    batch, seqlen_q, heads_q, dim = qr.shape
    paged = block_table is not None
    if tuple(kcr.shape[:3]) != tuple(vcr.shape[:3]):
        raise ValueError(f"k_cache {tuple(kcr.shape)} and v_cache {tuple(vcr.shape)}: differ "
                         "before the head dimension")
    heads_kv = kcr.shape[2]
    if kcr.shape[3] != dim:
        raise ValueError(f"head_dim: q has {dim}, k_cache {kcr.shape[3]}")
    if heads_q % heads_kv:
        raise ValueError(f"heads: q has {heads_q}, not a multiple of k_cache's {heads_kv} (GQA)")
    kv, vv = to_view(kcr, "bshd"), to_view(vcr, "bshd")
    keep = []
    if paged:
        table = _serving.ints(block_table, "block_table", qr, 2)
        if table.shape[0] != batch:
            raise ValueError(f"block_table: {table.shape[0]} rows for q's batch of {batch}")
        max_blocks = table.shape[1]
        capacity = max_blocks * kcr.shape[1]
        keep.append(table)
    else:
        if kcr.shape[0] < batch:
            raise ValueError(f"k_cache: batch {kcr.shape[0]} is below q's {batch}")
        kv, vv = _first(kv, batch), _first(vv, batch)
        max_blocks, capacity, table = 0, kcr.shape[1], None
    if (k is None) != (v is None):
        raise ValueError("k and v: give both or neither")
    seq_new, k_new = 0, None
    if k is not None:
        kr, vr = _arrays.ref(k, "k"), _arrays.ref(v, "v")
        check_array(kr, "k", 4, qr.dtype, qr.device)
        check_array(vr, "v", 4, qr.dtype, qr.device)
        seq_new = kr.shape[1]
        if tuple(kr.shape) != (batch, seq_new, heads_kv, dim) or \
                tuple(vr.shape) != (batch, seq_new, heads_kv, vcr.shape[3]):
            raise ValueError(f"k {tuple(kr.shape)} and v {tuple(vr.shape)}: expected "
                             f"[{batch}, seqlen_new, {heads_kv}, head_dim] matching the cache")
        if kcr.read_only or vcr.read_only:
            raise ValueError("k_cache/v_cache: read-only arrays cannot take appended k and v")
        k_new, v_new = to_view(kr, "bshd"), to_view(vr, "bshd")
    lens = _lengths(cache_seqlens, batch, capacity, seq_new, k is not None, qr)
    keep.append(lens)
    tensors = {"seqused_kv": lens.flat}
    if paged:
        tensors["block_table"] = table.flat
    serving = _serving.Serving(num_seqs=batch, kv_layout=_lib.KV_PAGED if paged else
                               _lib.KV_CACHE, max_blocks_per_seq=max_blocks,
                               k_new=k_new, v_new=None if k_new is None else v_new,
                               tensors=tensors, keep=keep)
    _fp8.check(qr.dtype, dense.descales)
    ctx = resolve(qr, dense.backend, dense.device)
    dv = vcr.shape[3]
    o, orf = dense.output(qr, (batch, seqlen_q, heads_q, dv), out)
    ov, qv = to_view(orf, "bshd"), to_view(qr, "bshd")
    lse = lse_v = None
    if want_lse:
        lse, lr = dense.output(qr, (batch, heads_q, seqlen_q), None, "lse", F32)
        lse_v = Flat(lr.ptr, batch * heads_q * seqlen_q * 4)
    bound = None
    if dense.variants is not None:
        bound = dense.variants.bind(qr, batch, heads_q, seqlen_q, capacity)
    p = _runtime.plan(ctx, qr.dtype, qv, kv, vv, ov, dense.scale, dense.mask, dense.algo,
                      want_lse, False, False, False, bound, serving=serving,
                      num_splits=num_splits, out_dtype=orf.dtype, descales=dense.descales)
    _runtime.forward(ctx, p, qv, kv, vv, ov, lse_v, None, bound, serving)
    if key is not None:
        args = (q, k_cache, v_cache, k, v, cache_seqlens, block_table, alibi_slopes)
        _store(key, ctx, p, qr, args, (qv, kv, vv, ov, lse_v), serving, lens, table, bound,
               out is not None, o, lse, orf.dtype)
    fin = _arrays.finish
    return fin(qr, o), (fin(qr, lse) if want_lse else None)


# ---- the repeated-call path --------------------------------------------------------------

def _store(key, ctx, p, qr, args, views, serving, lens, table, bound, out_given, o, lse,
           out_dtype):
    """Records a call as the runner of `key` when every array was used in place: each C
    argument is then (argument position, data function, byte offset, bytes), or a fixed
    (None, Ints, pointer, bytes) for lengths made here from an int or None."""
    if not ctx.zero_copy or _runtime.PLAN_CACHE_SIZE <= 0:
        return
    if bound is not None and (bound.bias is not None or bound.mask is not None or
                              bound.sinks is not None):
        return
    qv, kv, vv, ov, lse_v = views
    slots = []

    def slot(position, view, obj=None):
        obj = args[position] if obj is None else obj
        fn = _fast._data_fn(obj)
        if fn is None:
            raise LookupError
        n = view.nbytes()
        slots.append((position, fn, view.ptr - fn(obj), n) if n else None)

    try:
        slot(Q, qv)
        slot(K_CACHE, kv)
        slot(V_CACHE, vv)
        alloc_o = None if out_given else _fast._allocator(qr, o.shape, out_dtype)
        alloc_lse = None if lse is None else _fast._allocator(qr, lse.shape, F32)
        if (not out_given and alloc_o is None) or (lse is not None and alloc_lse is None):
            return
        slot(O, ov, o)
        if lse is None:
            slots.append(None)
        else:
            slot(LSE, lse_v, lse)
        if bound is not None and bound.slopes is not None:
            if bound.ref_of["alibi_slopes"].obj is not args[SLOPES]:
                return  # converted (float64 slopes, a list)
            slot(SLOPES, bound.slopes)
        else:
            slots.append(None)
        for position, ints in ((SEQLENS, lens), (TABLE, table)):
            if ints is None:
                slots.append(None)
            elif ints.obj is args[position]:
                slot(position, ints.flat)
            elif args[position] is None or type(args[position]) is int:
                slots.append((None, ints, ints.flat.ptr, ints.flat.nbytes()))
            else:
                return  # converted on the way: only the checked path is right
        if serving.appends:
            slot(K_NEW, serving.k_new)
            slot(V_NEW, serving.v_new)
        else:
            slots += [None, None]
    except LookupError:
        return
    runner = _runner(ctx, p, slots, alloc_o, alloc_lse)
    with _runtime.fast_entries_lock:
        entries = _runtime.fast_entries
        while entries and len(entries) >= _runtime.PLAN_CACHE_SIZE:
            entries.pop(next(iter(entries)))
        entries[key] = runner


def _runner(ctx, plan, slots, alloc_o, alloc_lse):
    """slots: q, k_cache, v_cache, o, lse, alibi_slopes, seqused_kv, block_table, k_new,
    v_new (the C arguments and extra tensors in this order)."""
    lock, wrapped, handle = ctx.lock, ctx.wrapped, plan.handle
    ws_bytes = plan.info.workspace_bytes
    forward_ex = _lib.lib.polyattn_forward_ex
    extra = ExtraTensors()
    extra.struct_size = ctypes.sizeof(ExtraTensors)
    extra_ref = ctypes.byref(extra)

    def run(args, out):
        o = alloc_o() if out is None else out
        lse = alloc_lse() if alloc_lse is not None else None
        every = args + (o, lse)
        with lock:
            h = [None if s is None else
                 wrapped(s[2], s[3]) if s[0] is None else
                 wrapped(s[1](every[s[0]]) + s[2], s[3]) for s in slots]
            (extra.alibi_slopes, extra.seqused_kv, extra.block_table, extra.k_new,
             extra.v_new) = h[5:10]
            status = forward_ex(handle, h[0], h[1], h[2], h[3], h[4], None,
                                ctx.workspace_for(ws_bytes), extra_ref)
        if status:
            check(status, ctx.handle, "polyattn_forward_ex")
        return o, lse

    return run
