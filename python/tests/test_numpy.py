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
