"""flash_attn_with_kvcache on a dense cache [batch, seqlen_cache, heads_kv, dim]: new
keys/values are written into the cache in place (through the array's own library), then
each sequence attends to its first cache_seqlens[i] + seqlen_new keys through a view of the
cache.  Sequences of one length share one call (and one cached plan)."""
import numpy as np

from . import _arrays, _runtime
from ._dense import check_array, check_qkv, resolve, to_view
from ._runtime import Flat, View
from ._varlen import host_ints

F32 = 0


def _lengths(cache_seqlens, batch, seqlen_cache, seqlen_new, appending):
    if cache_seqlens is None:
        if appending:
            raise ValueError("cache_seqlens: needed where k and v are appended")
        return np.full(batch, seqlen_cache, dtype=np.int64)
    if isinstance(cache_seqlens, (int, np.integer)):
        lens = np.full(batch, int(cache_seqlens), dtype=np.int64)
    else:
        lens = host_ints(cache_seqlens, "cache_seqlens")
        if lens.size != batch:
            raise ValueError(f"cache_seqlens: {lens.size} entries for a batch of {batch}")
    if (lens < 0).any():
        raise ValueError(f"cache_seqlens: negative length {int(lens.min())}")
    if (lens + seqlen_new > seqlen_cache).any():
        i = int(np.argmax(lens + seqlen_new > seqlen_cache))
        raise ValueError(f"cache_seqlens[{i}] = {int(lens[i])} plus {seqlen_new} new tokens "
                         f"exceeds the cache's {seqlen_cache} positions")
    return lens


def run(dense, q, k_cache, v_cache, k, v, cache_seqlens, want_lse, out):
    qr = _arrays.ref(q, "q")
    check_array(qr, "q", 4)
    kcr, vcr = _arrays.ref(k_cache, "k_cache"), _arrays.ref(v_cache, "v_cache")
    check_array(kcr, "k_cache", 4, qr.dtype, qr.device)
    check_array(vcr, "v_cache", 4, qr.dtype, qr.device)
    batch, seqlen_q, heads_q, _ = qr.shape
    if kcr.shape[0] < batch or vcr.shape[0] != kcr.shape[0] or vcr.shape[1] != kcr.shape[1]:
        raise ValueError(f"k_cache {tuple(kcr.shape)} and v_cache {tuple(vcr.shape)}: need the "
                         f"same batch (>= q's {batch}) and seqlen")
    if (k is None) != (v is None):
        raise ValueError("k and v: give both or neither")
    seqlen_new = 0
    if k is not None:
        kr, vr = _arrays.ref(k, "k"), _arrays.ref(v, "v")
        check_array(kr, "k", 4, qr.dtype, qr.device)
        check_array(vr, "v", 4, qr.dtype, qr.device)
        seqlen_new = kr.shape[1]
        if tuple(kr.shape) != (batch, seqlen_new) + tuple(kcr.shape[2:]) or \
                tuple(vr.shape) != (batch, seqlen_new) + tuple(vcr.shape[2:]):
            raise ValueError(f"k {tuple(kr.shape)} and v {tuple(vr.shape)}: expected "
                             f"[{batch}, seqlen_new, heads_kv, dim] matching the cache")
        if kcr.read_only or vcr.read_only:
            raise ValueError("k_cache/v_cache: read-only arrays cannot take appended k and v")
    lens = _lengths(cache_seqlens, batch, kcr.shape[1], seqlen_new, k is not None)
    qv = to_view(qr, "bshd")
    check_qkv(qv, to_view(kcr, "bshd"), to_view(vcr, "bshd"), ("q", "k_cache", "v_cache"))
    if k is not None:  # the append, in place, by the cache's own library
        for i in range(batch):
            at = int(lens[i])
            k_cache[i, at:at + seqlen_new] = k[i]
            v_cache[i, at:at + seqlen_new] = v[i]
    kv_lens = lens + seqlen_new
    ctx = resolve(qr, dense.backend, dense.device)
    dv = vcr.shape[3]
    o, orf = dense.output(qr, (batch, seqlen_q, heads_q, dv), out)
    lse = lr = None
    if want_lse:
        lse, lr = dense.output(qr, (batch, heads_q, seqlen_q), None, "lse", F32)
    ov = to_view(orf, "bshd")
    for length in np.unique(kv_lens):
        rows = np.nonzero(kv_lens == length)[0]
        length = int(length)
        if length == 0:  # no key: O = 0, LSE = -inf
            for i in rows:
                o[int(i)] = 0
                if want_lse:
                    lse[int(i)] = float("-inf")
            continue
        # All of q's batch at once when every sequence has this length, else one by one.
        groups = [(0, batch)] if rows.size == batch else [(int(i), 1) for i in rows]
        for first, count in groups:
            def part(v_, n_seq=None):
                return View(v_.ptr + first * v_.strides[0] * v_.itemsize,
                            (count, v_.dims[1], v_.dims[2] if n_seq is None else n_seq,
                             v_.dims[3]), v_.strides, v_.itemsize)
            kv_, vv_ = to_view(kcr, "bshd"), to_view(vcr, "bshd")
            q_p, o_p = part(qv), part(ov)
            k_p, v_p = part(kv_, length), part(vv_, length)
            lse_v = None
            if want_lse:
                per = heads_q * seqlen_q * 4
                lse_v = Flat(lr.ptr + first * per, count * per)
            bound = dense.bind(qr, q_p, k_p, first, count, batch)
            p = _runtime.plan(ctx, qr.dtype, q_p, k_p, v_p, o_p, dense.scale, dense.mask,
                              dense.algo, want_lse, False, False, False, bound)
            _runtime.forward(ctx, p, q_p, k_p, v_p, o_p, lse_v, None, bound)
    return _arrays.finish(qr, o), (_arrays.finish(qr, lse) if want_lse else None)
