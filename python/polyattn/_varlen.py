"""Variable-length batches (FlashAttention's packed [total_tokens, heads, dim] with
cu_seqlens), one native call: varlen queries, and keys packed the same way (kv_layout
varlen) or in a paged cache addressed by a block table (kv_layout paged, FlashAttention's
varlen block_table).  The LSE is FlashAttention's [heads, total_q]."""
from . import _arrays, _fp8, _lib, _runtime, _serving
from ._dense import check_array, resolve, to_view
from ._runtime import Flat, View

F32 = _lib.DTYPE_F32


def packed_view(r):
    """A packed [total, heads, dim] Ref as the library's [1, heads, total, dim]."""
    (total, heads, dim), (st, sh, sd) = r.shape, r.strides
    return View(r.ptr, (1, heads, total, dim), (max(total, 1) * st, sh, st, sd), r.itemsize)


class Varlen:
    def __init__(self, dense, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                 block_table=None):
        self.dense = dense
        self.cu_q_arg, self.cu_k_arg, self.table_arg = cu_seqlens_q, cu_seqlens_k, block_table
        self.max_q = _serving.max_seqlen(max_seqlen_q, "max_seqlen_q")
        self.max_k = _serving.max_seqlen(max_seqlen_k, "max_seqlen_k")

    def prepare(self, q, k, v):
        """(q, k, v Refs, their views, Serving, context) of a call, every argument checked."""
        qr = _arrays.ref(q, "q")
        check_array(qr, "q", 3)
        paged = self.table_arg is not None
        kr, vr = _arrays.ref(k, "k"), _arrays.ref(v, "v")
        rank = 4 if paged else 3
        check_array(kr, "k", rank, qr.dtype, qr.device)
        check_array(vr, "v", rank, qr.dtype, qr.device)
        if tuple(kr.shape[:-1]) != tuple(vr.shape[:-1]):
            raise ValueError(f"k {tuple(kr.shape)} and v {tuple(vr.shape)}: differ before the "
                             "head dimension")
        total_q, hq, d = qr.shape
        hk = kr.shape[-2]
        if kr.shape[-1] != d:
            raise ValueError(f"head_dim: q has {d}, k {kr.shape[-1]}")
        if hq % hk:
            raise ValueError(f"heads: q has {hq}, not a multiple of k's {hk} (GQA)")
        cu_q = _serving.ints(self.cu_q_arg, "cu_seqlens_q", qr, 1)
        cu_k = _serving.ints(self.cu_k_arg, "cu_seqlens_k", qr, 1)
        if cu_q.shape != cu_k.shape:
            raise ValueError(f"cu_seqlens_q has {cu_q.shape[0]} entries, cu_seqlens_k "
                             f"{cu_k.shape[0]}: both must be batch + 1")
        num_seqs = cu_q.shape[0] - 1
        if num_seqs < 1:
            raise ValueError(f"cu_seqlens_q: needs batch + 1 >= 2 entries, got {num_seqs + 1}")
        if paged:
            kv = to_view(kr, "bshd")  # [num_blocks, heads_kv, block_size, dim]
            vv = to_view(vr, "bshd")
            table = _serving.ints(self.table_arg, "block_table", qr, 2)
            if table.shape[0] != num_seqs:
                raise ValueError(f"block_table: {table.shape[0]} rows for {num_seqs} "
                                 "sequences (cu_seqlens_k has batch + 1 entries)")
            max_blocks = table.shape[1]
            addressable = max_blocks * kr.shape[1]
            total_k = None
        else:
            kv, vv = packed_view(kr), packed_view(vr)
            max_blocks, addressable = 0, kr.shape[0]
            total_k = kr.shape[0]
        if cu_q.host is not None:
            _serving.check_offsets(cu_q.host, "cu_seqlens_q", total_q, self.max_q,
                                   "max_seqlen_q")
        if cu_k.host is not None:
            lens = _serving.check_offsets(cu_k.host, "cu_seqlens_k", total_k, self.max_k,
                                          "max_seqlen_k")
            if paged and lens.size and lens.max() > addressable:
                raise ValueError(f"cu_seqlens_k: a sequence of {int(lens.max())} keys exceeds "
                                 f"the block table's {max_blocks} blocks of {kr.shape[1]}")
        tensors = {"cu_seqlens_q": cu_q.flat}
        keep = [cu_q, cu_k]
        if paged:
            used = _serving.differences(cu_k, qr)
            tensors["seqused_kv"], tensors["block_table"] = used.flat, table.flat
            keep += [used, table]
        else:
            tensors["cu_seqlens_kv"] = cu_k.flat
        serving = _serving.Serving(
            varlen_q=True, num_seqs=num_seqs, max_seqlen_q=min(self.max_q, total_q),
            max_seqlen_kv=min(self.max_k, addressable),
            kv_layout=_lib.KV_PAGED if paged else _lib.KV_VARLEN, max_blocks_per_seq=max_blocks,
            tensors=tensors, keep=keep)
        _fp8.check(qr.dtype, self.dense.descales)
        ctx = resolve(qr, self.dense.backend, self.dense.device)
        return qr, kr, vr, packed_view(qr), kv, vv, serving, ctx

    def _bind(self, qr, serving):
        var = self.dense.variants
        if var is None:
            return None
        return var.bind(qr, serving.num_seqs, qr.shape[1], serving.max_seqlen_q or 1,
                        serving.max_seqlen_kv or 1)

    def _plan(self, ctx, qr, qv, kv, vv, ov, serving, bound, want_lse, want_backward,
              out_dtype):
        d = self.dense
        return _runtime.plan(ctx, qr.dtype, qv, kv, vv, ov, d.scale, d.mask, d.algo, want_lse,
                             False, want_backward, d.deterministic, bound, serving=serving,
                             out_dtype=out_dtype, descales=d.descales)

    def forward(self, q, k, v, out=None, want_lse=False, want_probs=False,
                want_backward=False):
        """(o [total_q, heads, dv], lse [heads, total_q] or None, None, the lse again (what
        the backward reads) or None).  The library has no probabilities for varlen."""
        d = self.dense
        qr, kr, vr, qv, kv, vv, serving, ctx = self.prepare(q, k, v)
        total_q, hq, _ = qr.shape
        dv = vr.shape[-1]
        o, orf = d.output(qr, (total_q, hq, dv), out)
        ov = packed_view(orf)
        want_lse = want_lse or want_backward
        lse = lse_v = None
        if want_lse:
            lse, lr = d.output(qr, (hq, total_q), None, "lse", F32)
            lse_v = Flat(lr.ptr, hq * total_q * 4)
        bound = self._bind(qr, serving)
        p = self._plan(ctx, qr, qv, kv, vv, ov, serving, bound, want_lse, want_backward,
                       orf.dtype)
        _runtime.forward(ctx, p, qv, kv, vv, ov, lse_v, None, bound, serving)
        fin = _arrays.finish
        lse = fin(qr, lse) if lse is not None else None
        return fin(qr, o), lse, None, lse

    def backward(self, q, k, v, o, lse, d_o):
        """(dq, dk, dv) laid out like q, k and v; rows outside every sequence get 0."""
        qr, kr, vr, qv, kv, vv, serving, ctx = self.prepare(q, k, v)
        orf, dor = _arrays.ref(o, "o"), _arrays.ref(d_o, "d_o")
        if tuple(dor.strides) != tuple(orf.strides) or tuple(dor.shape) != tuple(orf.shape):
            raise ValueError("d_o: must have o's shape and strides")
        lr = _arrays.ref(lse, "lse")
        grads = [_arrays.empty_like_strided(r) for r in (qr, kr, vr)]
        gq, gk, gv = (_arrays.ref(g, n) for g, n in zip(grads, ("dq", "dk", "dv")))
        bound = self._bind(qr, serving)
        p = self._plan(ctx, qr, qv, kv, vv, packed_view(orf), serving, bound, True, True,
                       orf.dtype)
        hq, total_q = qr.shape[1], qr.shape[0]
        _runtime.backward(ctx, p, qv, kv, vv, packed_view(orf), packed_view(dor),
                          Flat(lr.ptr, hq * total_q * 4), packed_view(gq), packed_view(gk),
                          packed_view(gv), variants=bound,
                          serving=_serving.BackwardView(serving))
        return tuple(_arrays.finish(qr, g) for g in grads)
