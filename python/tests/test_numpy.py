"""NumPy arrays on the host and OpenCL backends against the float64 reference."""
import numpy as np
import pytest

import polyattn
import reference as ref
from conftest import randn, tol


def close(actual, expected, dtype=np.float32):
    t = tol(dtype)
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, atol=t, rtol=t)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(2, 13, 17, 4, 2, 32), (1, 19, 7, 2, 2, 64), (1, 1, 33, 4, 1, 16)])
def test_flash_attn_func(backend, rng, causal, dtype, shape):
    b, sq, skv, hq, hkv, d = shape
    q, k, v = randn(rng, b, sq, hq, d, dtype=dtype), randn(rng, b, skv, hkv, d, dtype=dtype), \
        randn(rng, b, skv, hkv, d, dtype=dtype)
    o = polyattn.flash_attn_func(q, k, v, causal=causal, backend=backend)
    assert isinstance(o, np.ndarray) and o.dtype == dtype and o.shape == (b, sq, hq, d)
    mask = "causal-bottom-right" if causal else None
    expect, _, _ = ref.forward(ref.bshd(q), ref.bshd(k), ref.bshd(v), mask)
    close(o, ref.bshd(expect), dtype)


def test_flash_attn_func_probs_scale_out(backend, rng):
    q, k, v = randn(rng, 2, 9, 4, 16), randn(rng, 2, 12, 2, 16), randn(rng, 2, 12, 2, 16)
    out = np.full((2, 9, 4, 16), np.nan, dtype=np.float32)
    o, lse, probs = polyattn.flash_attn_func(q, k, v, softmax_scale=0.3, causal=True,
                                             return_attn_probs=True, backend=backend, out=out)
    assert o is out
    eo, lse_ref, ep = ref.forward(ref.bshd(q), ref.bshd(k), ref.bshd(v), "causal-bottom-right", 0.3)
    close(o, ref.bshd(eo))
    close(lse, lse_ref)
    close(probs, ep)
    assert lse.shape == (2, 4, 9) and lse.dtype == np.float32 and probs.shape == (2, 4, 9, 12)


@pytest.mark.parametrize("algo", ["unfused", "fused", "flash"])
def test_algo(backend, rng, algo):
    q, k, v = randn(rng, 1, 2, 11, 32), randn(rng, 1, 2, 15, 32), randn(rng, 1, 2, 15, 32)
    if backend == "host" and algo == "fused":
        with pytest.raises(polyattn.UnsupportedError, match="fused"):
            polyattn.attention(q, k, v, backend=backend, algo=algo)
        return
    o = polyattn.attention(q, k, v, mask="causal-top-left", backend=backend, algo=algo)
    close(o, ref.forward(q, k, v, "causal-top-left")[0])
    assert polyattn.explain(q, k, v, mask="causal-top-left", backend=backend, algo=algo)["algo"] == algo


@pytest.mark.parametrize("layout", ["bhsd", "bshd"])
@pytest.mark.parametrize("mask", [None, "causal-top-left", "causal-bottom-right"])
def test_attention(backend, rng, layout, mask):
    b, hq, hkv, sq, skv, d, dv = 2, 4, 2, 10, 6, 16, 24
    q, k, v = randn(rng, b, hq, sq, d), randn(rng, b, hkv, skv, d), randn(rng, b, hkv, skv, dv)
    eo, lse_ref, ep = ref.forward(q, k, v, mask, 0.5)
    if layout == "bshd":
        q, k, v = (np.ascontiguousarray(ref.bshd(x)) for x in (q, k, v))
        eo = ref.bshd(eo)
    o, lse, probs = polyattn.attention(q, k, v, layout=layout, mask=mask, scale=0.5,
                                       return_lse=True, return_probs=True, backend=backend)
    close(o, eo)
    close(lse, lse_ref)  # -inf rows (bottom-right, sq > skv) compare equal
    close(probs, ep)
    o2, lse2 = polyattn.attention(q, k, v, layout=layout, mask=mask, scale=0.5, return_lse=True,
                                  backend=backend)
    close(o2, eo)
    close(lse2, lse_ref)


def test_strided_views(backend, rng):
    """q, k, v inside one packed [b, s, 3, h, d] array, out inside a wider one: no copy."""
    qkv = randn(rng, 2, 14, 3, 4, 32)
    q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    wide = np.full((2, 14, 4, 40), 7.0, dtype=np.float32)
    out = wide[..., 4:36]
    o = polyattn.flash_attn_func(q, k, v, causal=True, backend=backend, out=out)
    assert o is out
    eo = ref.bshd(ref.forward(ref.bshd(q), ref.bshd(k), ref.bshd(v), "causal-bottom-right")[0])
    close(out, eo)
    assert (wide[..., :4] == 7).all() and (wide[..., 36:] == 7).all()


@pytest.mark.parametrize("causal", [False, True])
def test_varlen(backend, rng, causal):
    lq, lk = [5, 1, 9, 3], [7, 4, 9, 2]
    cu_q, cu_k = np.cumsum([0] + lq).astype(np.int32), np.cumsum([0] + lk).astype(np.int32)
    hq, hkv, d = 4, 2, 16
    q, k, v = randn(rng, sum(lq), hq, d), randn(rng, sum(lk), hkv, d), randn(rng, sum(lk), hkv, d)
    o, lse, probs = polyattn.flash_attn_varlen_func(
        q, k, v, cu_q, cu_k, max(lq), max(lk), causal=causal, return_attn_probs=True,
        backend=backend)
    assert o.shape == q.shape and lse.shape == (hq, sum(lq)) and probs.shape == (4, hq, 9, 9)
    mask = "causal-bottom-right" if causal else None
    for i in range(4):
        a, c = cu_q[i], cu_k[i]
        qi, ki, vi = (x[None].swapaxes(1, 2) for x in (q[a:a + lq[i]], k[c:c + lk[i]], v[c:c + lk[i]]))
        eo, lse_ref, ep = ref.forward(qi, ki, vi, mask)
        close(o[a:a + lq[i]], eo[0].swapaxes(0, 1))
        close(lse[:, a:a + lq[i]], lse_ref[0])
        close(probs[i, :, :lq[i], :lk[i]], ep[0])
        assert (probs[i, :, lq[i]:] == 0).all() and (probs[i, :, :, lk[i]:] == 0).all()
    plain = polyattn.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 9, 9, causal=causal,
                                            backend=backend)
    close(plain, np.asarray(o, dtype=np.float64))


def test_varlen_empty_sequences(rng):
    cu_q, cu_k = np.array([0, 3, 3, 5], np.int32), np.array([0, 0, 4, 6], np.int32)
    q, k, v = randn(rng, 5, 2, 8), randn(rng, 6, 2, 8), randn(rng, 6, 2, 8)
    o, lse, _ = polyattn.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 3, 4, return_attn_probs=True)
    assert (o[:3] == 0).all() and np.isneginf(lse[:, :3]).all()
    eo = ref.forward(q[None, 3:5].swapaxes(1, 2), k[None, 4:6].swapaxes(1, 2),
                     v[None, 4:6].swapaxes(1, 2))[0]
    close(o[3:5], eo[0].swapaxes(0, 1))


@pytest.mark.parametrize("append", [False, True])
def test_kvcache(backend, rng, append):
    b, sq, hq, hkv, d, cache = 3, 1, 4, 2, 16, 20
    q = randn(rng, b, sq, hq, d)
    k_cache, v_cache = randn(rng, b, cache, hkv, d), randn(rng, b, cache, hkv, d)
    lens = np.array([5, 12, 5], np.int32)
    k_new = randn(rng, b, 2, hkv, d) if append else None
    v_new = randn(rng, b, 2, hkv, d) if append else None
    kc0, vc0 = k_cache.copy(), v_cache.copy()
    o, lse = polyattn.flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens=lens,
                                              causal=True, return_softmax_lse=True, backend=backend)
    n_new = 2 if append else 0
    for i in range(b):
        if append:
            kc0[i, lens[i]:lens[i] + 2], vc0[i, lens[i]:lens[i] + 2] = k_new[i], v_new[i]
        L = lens[i] + n_new
        eo, lse_ref, _ = ref.forward(q[i:i + 1].swapaxes(1, 2), kc0[i:i + 1, :L].swapaxes(1, 2),
                                  vc0[i:i + 1, :L].swapaxes(1, 2), "causal-bottom-right")
        close(o[i], eo[0].swapaxes(0, 1))
        close(lse[i], lse_ref[0])
    np.testing.assert_array_equal(k_cache, kc0)
    np.testing.assert_array_equal(v_cache, vc0)


def test_kvcache_whole_cache_and_int_lengths(rng):
    q, kc, vc = randn(rng, 2, 3, 2, 8), randn(rng, 2, 6, 2, 8), randn(rng, 2, 6, 2, 8)
    o = polyattn.flash_attn_with_kvcache(q, kc, vc)
    close(o, ref.bshd(ref.forward(ref.bshd(q), ref.bshd(kc), ref.bshd(vc))[0]))
    o4 = polyattn.flash_attn_with_kvcache(q, kc, vc, cache_seqlens=4, num_splits=2)
    close(o4, ref.bshd(ref.forward(ref.bshd(q), ref.bshd(kc[:, :4]), ref.bshd(vc[:, :4]))[0]))


class OnlyDLPack:
    """An array seen only through the DLPack protocol."""

    def __init__(self, a):
        self.a = a

    def __dlpack__(self, stream=None):
        return self.a.__dlpack__()

    def __dlpack_device__(self):
        return self.a.__dlpack_device__()


def test_dlpack_producer(rng):
    q, k, v = randn(rng, 1, 2, 5, 8), randn(rng, 1, 2, 6, 8), randn(rng, 1, 2, 6, 8)
    o = polyattn.attention(OnlyDLPack(q), OnlyDLPack(k[:, :, :]), OnlyDLPack(v))
    assert isinstance(o, np.ndarray)
    close(o, ref.forward(q, k, v)[0])


def test_explain_and_devices():
    info = polyattn.explain((1, 32, 1, 128), (1, 32, 4096, 128), (1, 32, 4096, 128),
                            backend="host", return_lse=True)
    assert info["backend"] == "host" and info["algo"] in ("unfused", "flash")
    assert {c["algo"] for c in info["candidates"]} == {"unfused", "fused", "flash"}
    assert all(c["reason"] for c in info["candidates"])
    assert info["flops"] == 2 * (128 + 128) * 32 * 4096 and info["workspace_bytes"] >= 0
    assert any(d["backend"] == "host" for d in polyattn.devices())


def test_plan_cache_reuse_and_bound(rng, monkeypatch):
    from polyattn import _runtime
    polyattn.clear_caches()
    q = randn(rng, 1, 2, 4, 8)
    polyattn.attention(q, q, q)
    polyattn.attention(q, q, q)
    assert polyattn.cache_info()["plans"] == 1
    monkeypatch.setattr(_runtime, "PLAN_CACHE_SIZE", 3)
    for n in range(2, 8):
        x = randn(rng, 1, 2, n, 8)
        polyattn.attention(x, x, x)
    assert polyattn.cache_info()["plans"] == 3
