"""A float64 NumPy attention, forward and backward, independent of the library."""
import numpy as np


def visible(sq, skv, mask):
    i = np.arange(sq)[:, None]
    j = np.arange(skv)[None, :]
    if mask in (None, "none"):
        return np.ones((sq, skv), dtype=bool)
    if mask == "causal-top-left":
        return j <= i
    if mask == "causal-bottom-right":
        return j <= i + (skv - sq)
    raise ValueError(mask)


def forward(q, k, v, mask=None, scale=None):
    """q [b, hq, sq, d], k/v [b, hkv, skv, d] (bhsd) -> o, lse [b, hq, sq], probs."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    b, hq, sq, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    group = hq // hkv
    k = np.repeat(k, group, axis=1)
    v = np.repeat(v, group, axis=1)
    s = np.einsum("bhid,bhjd->bhij", q, k) * scale
    vis = visible(sq, skv, mask)
    s = np.where(vis, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    any_key = np.isfinite(m)
    m = np.where(any_key, m, 0.0)
    e = np.where(vis, np.exp(s - m), 0.0)
    z = e.sum(axis=-1, keepdims=True)
    p = np.where(any_key, e / np.where(z > 0, z, 1.0), 0.0)
    o = np.einsum("bhij,bhjd->bhid", p, v)
    lse = np.where(any_key[..., 0], (m + np.log(np.where(z > 0, z, 1.0)))[..., 0], -np.inf)
    return o, lse, p


def backward(q, k, v, d_o, mask=None, scale=None):
    """dq, dk, dv of sum(o * d_o), all bhsd, dk/dv summed over each GQA group."""
    q, k, v, d_o = (np.asarray(x, dtype=np.float64) for x in (q, k, v, d_o))
    b, hq, sq, d = q.shape
    hkv = k.shape[1]
    group = hq // hkv
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    _, _, p = forward(q, k, v, mask, scale)
    kr, vr = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    dv = np.einsum("bhij,bhid->bhjd", p, d_o)
    dp = np.einsum("bhid,bhjd->bhij", d_o, vr)
    ds = p * (dp - (dp * p).sum(axis=-1, keepdims=True))
    dq = np.einsum("bhij,bhjd->bhid", ds, kr) * scale
    dk = np.einsum("bhij,bhid->bhjd", ds, q) * scale
    dk = dk.reshape(b, hkv, group, *dk.shape[2:]).sum(axis=2)
    dv = dv.reshape(b, hkv, group, *dv.shape[2:]).sum(axis=2)
    return dq, dk, dv


def bshd(x):
    return np.swapaxes(x, 1, 2)


# ---- score variants ---------------------------------------------------------------------
# One definition (include/polyattn.h): s = scale * q.k, then softcap, then - slope *
# |d(i) - j| and + bias, then the masks (causal, window, boolean); sinks join each row's
# denominator.  d(i) = i + seq_kv - seq_q, or i under causal top-left.

def _diagonal(sq, skv, mask):
    i = np.arange(sq)[:, None]
    return i if mask == "causal-top-left" else i + (skv - sq)


def _bshape(x, ndim=4):
    """x padded on the left with axes of extent 1 to rank ndim."""
    x = np.asarray(x)
    return x.reshape((1,) * (ndim - x.ndim) + x.shape)


def variant_scores(q, k, mask=None, scale=None, softcap=0.0, alibi_slopes=None, bias=None,
                   window=None, attn_mask=None):
    """(s [b, hq, sq, skv] with -inf where masked, raw scale*q.k, visible) in float64."""
    q, k = np.asarray(q, np.float64), np.asarray(k, np.float64)
    b, hq, sq, d = q.shape
    hkv, skv = k.shape[1], k.shape[2]
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    kr = np.repeat(k, hq // hkv, axis=1)
    raw = np.einsum("bhid,bhjd->bhij", q, kr) * scale
    s = softcap * np.tanh(raw / softcap) if softcap else raw.copy()
    diag = _diagonal(sq, skv, mask)
    j = np.arange(skv)[None, :]
    if alibi_slopes is not None:
        sl = np.asarray(alibi_slopes, np.float64)
        sl = sl[None, :, None, None] if sl.ndim == 1 else sl[:, :, None, None]
        s = s - sl * np.abs(diag - j)
    if bias is not None:
        s = s + _bshape(np.asarray(bias, np.float64))
    vis = np.ones((sq, skv), dtype=bool)
    if mask in ("causal-top-left", "causal-bottom-right"):
        vis &= j <= diag
    if window is not None:
        left, right = window
        if left >= 0:
            vis &= j >= diag - left
        if right >= 0:
            vis &= j <= diag + right
    vis = np.broadcast_to(vis, s.shape)
    if attn_mask is not None:
        vis = vis & _bshape(np.asarray(attn_mask).astype(bool))
    s = np.where(vis, s, -np.inf)
    return s, raw, vis


def forward_variants(q, k, v, mask=None, scale=None, softcap=0.0, alibi_slopes=None,
                     bias=None, window=None, attn_mask=None, sinks=None):
    """o, lse [b, hq, sq], probs: float64, every variant."""
    v = np.asarray(v, np.float64)
    s, _, _ = variant_scores(q, k, mask, scale, softcap, alibi_slopes, bias, window, attn_mask)
    hq = s.shape[1]
    vr = np.repeat(v, hq // v.shape[1], axis=1)
    m = s.max(axis=-1, keepdims=True)
    if sinks is not None:
        sink = np.asarray(sinks, np.float64)[None, :, None, None]
        m = np.maximum(m, sink)
    live = np.isfinite(m)
    m0 = np.where(live, m, 0.0)
    e = np.exp(s - m0)
    z = e.sum(axis=-1, keepdims=True)
    if sinks is not None:
        z = z + np.exp(sink - m0)
    zs = np.where(z > 0, z, 1.0)
    p = np.where(live, e / zs, 0.0)
    o = np.einsum("bhij,bhjd->bhid", p, vr)
    lse = np.where(live, m0 + np.log(zs), -np.inf)[..., 0]
    return o, lse, p


def backward_variants(q, k, v, d_o, mask=None, scale=None, softcap=0.0, alibi_slopes=None,
                      bias=None, window=None, attn_mask=None, sinks=None):
    """dq, dk, dv, d_bias (the bias's shape) or None, d_sinks [hq] or None: float64."""
    q, k, v, d_o = (np.asarray(x, np.float64) for x in (q, k, v, d_o))
    b, hq, sq, d = q.shape
    hkv = k.shape[1]
    group = hq // hkv
    scale = 1.0 / np.sqrt(d) if scale is None else scale
    _, raw, vis = variant_scores(q, k, mask, scale, softcap, alibi_slopes, bias, window,
                                 attn_mask)
    o, lse, p = forward_variants(q, k, v, mask, scale, softcap, alibi_slopes, bias, window,
                                 attn_mask, sinks)
    kr, vr = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
    dv = np.einsum("bhij,bhid->bhjd", p, d_o)
    dp = np.einsum("bhid,bhjd->bhij", d_o, vr)
    delta = (d_o * o).sum(axis=-1, keepdims=True)
    ds = p * (dp - delta)
    ds_raw = ds * (1.0 - np.tanh(raw / softcap) ** 2) if softcap else ds
    ds_raw = np.where(vis, ds_raw, 0.0)
    dq = np.einsum("bhij,bhjd->bhid", ds_raw, kr) * scale
    dk = np.einsum("bhij,bhid->bhjd", ds_raw, q) * scale
    dk = dk.reshape(b, hkv, group, *dk.shape[2:]).sum(axis=2)
    dv = dv.reshape(b, hkv, group, *dv.shape[2:]).sum(axis=2)
    d_bias = d_sinks = None
    if bias is not None:
        shape = np.asarray(bias).shape
        full = _bshape(np.zeros(shape)).shape
        axes = tuple(a for a in range(4) if full[a] == 1 and ds.shape[a] > 1)
        d_bias = ds.sum(axis=axes, keepdims=True).reshape(shape)
    if sinks is not None:
        sink = np.asarray(sinks, np.float64)[None, :, None]
        p_sink = np.exp(sink - lse)  # finite: the LSE includes the sink
        d_sinks = -(p_sink * delta[..., 0]).sum(axis=(0, 2))
    return dq, dk, dv, d_bias, d_sinks
