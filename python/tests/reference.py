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
