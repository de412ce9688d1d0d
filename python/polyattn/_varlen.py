"""Variable-length batches (FlashAttention's packed [total_tokens, heads, dim] with
cu_seqlens), run as one dense call per sequence on a strided view of the packed arrays:
no copy, one cached plan per distinct (seq_q, seq_kv) pair.  A native varlen descriptor in
the C library will replace `_sequences` and the loop of `Varlen.forward`/`backward`."""
import numpy as np

from . import _arrays, _runtime
from ._dense import check_array, check_qkv, resolve
from ._runtime import Flat, View

F32 = 0


def host_ints(x, name):
    """A 1-D int64 NumPy copy of an integer array of any library."""
    if x is None:
        raise TypeError(f"{name}: None")
    kind = _arrays.kind_of(x)
    if kind == "torch":
        a = x.detach().cpu().numpy()
    elif kind == "cupy":
        a = x.get()
    elif isinstance(x, (int, np.integer)):
        a = np.asarray([x])
    else:
        a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(f"{name}: expected 1 dimension, got shape {a.shape}")
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: dtype {a.dtype} is not an integer type")
    return a.astype(np.int64)


def check_cu_seqlens(cu, name, total, max_seqlen, max_name):
    if cu.size < 2:
        raise ValueError(f"{name}: needs batch + 1 >= 2 entries, got {cu.size}")
    if cu[0] != 0:
        raise ValueError(f"{name}: must start at 0, starts at {cu[0]}")
    lens = np.diff(cu)
    if (lens < 0).any():
        i = int(np.argmax(lens < 0))
        raise ValueError(f"{name}: decreases at index {i + 1} ({cu[i]} then {cu[i + 1]})")
    if cu[-1] > total:
        raise ValueError(f"{name}: ends at {cu[-1]}, beyond the {total} packed tokens")
    if max_seqlen is not None and lens.max() > int(max_seqlen):
        raise ValueError(f"{max_name}: {max_seqlen} is below the longest sequence "
                         f"({int(lens.max())}) in {name}")
    return lens


def _packed_view(r, start, length):
    """Rows [start, start + length) of a packed [total, heads, dim] Ref as [1, h, len, d]."""
    st = r.strides
    return View(r.ptr + start * st[0] * r.itemsize, (1, r.shape[1], length, r.shape[2]),
                (max(length, 1) * st[0], st[1], st[0], st[2]), r.itemsize)


class Varlen:
    def __init__(self, dense, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k):
        self.dense = dense
        self.cu_q_arg, self.cu_k_arg = cu_seqlens_q, cu_seqlens_k
        self.max_q, self.max_k = max_seqlen_q, max_seqlen_k

    def refs(self, q, k, v):
        qr = _arrays.ref(q, "q")
        check_array(qr, "q", 3)
        kr, vr = _arrays.ref(k, "k"), _arrays.ref(v, "v")
        check_array(kr, "k", 3, qr.dtype, qr.device)
        check_array(vr, "v", 3, qr.dtype, qr.device)
        if kr.shape[0] != vr.shape[0]:
            raise ValueError(f"k and v: {kr.shape[0]} and {vr.shape[0]} packed tokens")
        cu_q = host_ints(self.cu_q_arg, "cu_seqlens_q")
        cu_k = host_ints(self.cu_k_arg, "cu_seqlens_k")
        if cu_q.size != cu_k.size:
            raise ValueError(f"cu_seqlens_q has {cu_q.size} entries, cu_seqlens_k {cu_k.size}: "
                             "both must be batch + 1")
        lq = check_cu_seqlens(cu_q, "cu_seqlens_q", qr.shape[0], self.max_q, "max_seqlen_q")
        lk = check_cu_seqlens(cu_k, "cu_seqlens_k", kr.shape[0], self.max_k, "max_seqlen_k")
        return qr, kr, vr, cu_q, cu_k, lq, lk

    def _sequences(self, cu_q, cu_k, lq, lk, *refs_q_k_v_o):
        """Per sequence: (index, q, k, v, o views) of the packed arrays."""
        qr, kr, vr, orf = refs_q_k_v_o
        for i in range(lq.size):
            a, n, c, m = int(cu_q[i]), int(lq[i]), int(cu_k[i]), int(lk[i])
            yield i, a, n, m, (_packed_view(qr, a, n), _packed_view(kr, c, m),
                               _packed_view(vr, c, m), _packed_view(orf, a, n))

    def forward(self, q, k, v, out=None, want_lse=False, want_probs=False,
                want_backward=False):
        """(o [total_q, h, dv], lse [h, total_q] or None, probs [b, h, max_q, max_k] or None,
        lse in per-sequence blocks for backward or None)."""
        d = self.dense
        qr, kr, vr, cu_q, cu_k, lq, lk = self.refs(q, k, v)
        hq, hk, dv = qr.shape[1], kr.shape[1], vr.shape[2]
        check_qkv(View(0, (1, hq, 1, qr.shape[2]), (0, 0, 0, 1), 1),
                  View(0, (1, hk, 1, kr.shape[2]), (0, 0, 0, 1), 1),
                  View(0, (1, vr.shape[1], 1, dv), (0, 0, 0, 1), 1))
        ctx = resolve(qr, d.backend, d.device)
        total_q = qr.shape[0]
        o, orf = d.output(qr, (total_q, hq, dv), out)
        want_lse = want_lse or want_backward
        blocks = blocks_r = None
        if want_lse:  # [h, len] per sequence, one after another
            blocks, blocks_r = d.output(qr, (hq * total_q,), None, "lse", F32)
        probs = None
        if want_probs:
            mq = int(lq.max()) if self.max_q is None else int(self.max_q)
            mk = int(lk.max()) if self.max_k is None else int(self.max_k)
            probs, _ = d.output(qr, (lq.size, hq, mq, mk), None, "probs", F32)
            probs[...] = 0
        for i, a, n, m, (qv, kv, vv, ov) in self._sequences(cu_q, cu_k, lq, lk, qr, kr, vr, orf):
            if n == 0:
                continue
            if m == 0:  # no key: O = 0, LSE = -inf (the library's fully-masked rows)
                o[a:a + n] = 0
                if want_lse:
                    blocks[hq * a:hq * (a + n)] = float("-inf")
                continue
            lse_v = Flat(blocks_r.ptr + hq * a * 4, hq * n * 4) if want_lse else None
            probs_v = seq_probs = None
            if want_probs:
                seq_probs, pr = d.output(qr, (hq, n, m), None, "probs", F32)
                probs_v = Flat(pr.ptr, hq * n * m * 4)
            bound = d.bind(qr, qv, kv, i, 1, lq.size)
            p = _runtime.plan(ctx, qr.dtype, qv, kv, vv, ov, d.scale, d.mask, d.algo,
                              want_lse, want_probs, want_backward, d.deterministic, bound)
            _runtime.forward(ctx, p, qv, kv, vv, ov, lse_v, probs_v, bound)
            if want_probs:
                probs[i, :, :n, :m] = seq_probs
        lse = None
        if want_lse:
            lse, _ = d.output(qr, (hq, total_q), None, "lse", F32)
            for i in range(lq.size):
                a, n = int(cu_q[i]), int(lq[i])
                if n:
                    lse[:, a:a + n] = blocks[hq * a:hq * (a + n)].reshape(hq, n)
        return o, lse, probs, blocks

    def backward(self, q, k, v, o, blocks, d_o):
        d = self.dense
        qr, kr, vr, cu_q, cu_k, lq, lk = self.refs(q, k, v)
        orf, dor = _arrays.ref(o, "o"), _arrays.ref(d_o, "d_o")
        if tuple(dor.strides) != tuple(orf.strides):
            raise ValueError("d_o: must have o's strides")
        br = _arrays.ref(blocks, "lse")
        ctx = resolve(qr, d.backend, d.device)
        grads = [_arrays.empty_like_strided(r) for r in (qr, kr, vr)]
        for g in grads:
            g[...] = 0  # rows outside every sequence get no gradient
        grs = [_arrays.ref(g, n) for g, n in zip(grads, ("dq", "dk", "dv"))]
        hq = qr.shape[1]
        for i in range(lq.size):
            a, n, c, m = int(cu_q[i]), int(lq[i]), int(cu_k[i]), int(lk[i])
            if n == 0 or m == 0:
                continue
            qv, kv, vv, ov, dov = (_packed_view(qr, a, n), _packed_view(kr, c, m),
                                   _packed_view(vr, c, m), _packed_view(orf, a, n),
                                   _packed_view(dor, a, n))
            gq, gk, gv = (_packed_view(grs[0], a, n), _packed_view(grs[1], c, m),
                          _packed_view(grs[2], c, m))
            bound = d.bind(qr, qv, kv, i, 1, lq.size)
            p = _runtime.plan(ctx, qr.dtype, qv, kv, vv, ov, d.scale, d.mask, d.algo,
                              True, False, True, d.deterministic, bound)
            _runtime.backward(ctx, p, qv, kv, vv, ov, dov,
                              Flat(br.ptr + hq * a * 4, hq * n * 4), gq, gk, gv, bound)
        return tuple(grads)
