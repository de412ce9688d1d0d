"""Score variants (sliding window, softcap, ALiBi, additive bias, boolean mask, sinks) on
NumPy arrays against the float64 reference (reference.forward_variants), on every backend
that has them; bad arguments raise errors that name them."""
import numpy as np
import pytest

import polyattn
import reference as ref
from conftest import randn

B, HQ, HKV, SQ, SKV, D = 2, 4, 2, 7, 11, 16
MASKS = [None, "causal-top-left", "causal-bottom-right"]


def run_or_skip(on, fn, *args, **kwargs):
    """The host is the oracle and must have every variant; another backend without one is
    skipped with the library's reason."""
    try:
        return fn(*args, **kwargs)
    except polyattn.UnsupportedError as e:
        if on == "host":
            raise
        pytest.skip(f"{on}: {e}")


def inputs(rng, b=B, hq=HQ, hkv=HKV, sq=SQ, skv=SKV, d=D):
    return randn(rng, b, hq, sq, d), randn(rng, b, hkv, skv, d), randn(rng, b, hkv, skv, d)


def compare(got, want, t=2e-5):
    np.testing.assert_allclose(np.asarray(got, np.float64), want, atol=t, rtol=t)


def check(backend, rng, mask, algo="auto", t=2e-5, qkv=None, **variants):
    q, k, v = qkv if qkv is not None else inputs(rng)
    want_o, want_lse, want_p = ref.forward_variants(q, k, v, mask, **_ref_args(variants))
    probs = algo != "flash"
    res = run_or_skip(backend, polyattn.attention, q, k, v, mask=variants.pop("attn_mask", mask),
                      return_lse=True, return_probs=probs, backend=backend, algo=algo,
                      **variants)
    compare(res[0], want_o, t)
    compare(res[1], want_lse, t)
    if probs:
        compare(res[2], want_p, t)
    return res


def _ref_args(variants):
    out = dict(variants)
    if "window" in out:
        out["window"] = tuple(out["window"])
    return out


def slopes(n, rng=None):
    base = 2.0 ** (-8.0 * np.arange(1, n + 1) / n)
    return base.astype(np.float32)


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("algo", ["unfused", "flash"])
@pytest.mark.parametrize("variant", [
    {"window": (3, 1)}, {"window": (2, 0)}, {"window": (-1, 2)}, {"window": (0, -1)},
    {"softcap": 0.7}, {"alibi": "head"}, {"alibi": "batch-head"},
    {"bias": (B, HQ)}, {"bias": (1, HQ)}, {"bias": (B, 1)}, {"bias": "2d"},
    {"attn_mask": (B, HQ)}, {"attn_mask": (1, 1)}, {"sinks": True},
    {"window": (3, 0), "softcap": 0.7, "sinks": True},
], ids=lambda v: "-".join(f"{k}={v[k]}" for k in v))
def test_each_variant(backend, rng, mask, algo, variant):
    kw = {}
    for name, value in variant.items():
        if name == "alibi":
            kw["alibi_slopes"] = slopes(HQ) if value == "head" else \
                np.stack([slopes(HQ), 0.5 * slopes(HQ)])
        elif name == "bias":
            shape = (SQ, SKV) if value == "2d" else value + (SQ, SKV)
            kw["bias"] = randn(rng, *shape)
        elif name == "attn_mask":
            m = rng.random(value + (SQ, SKV)) > 0.3
            kw["attn_mask"] = m
            if mask is not None:  # the mask argument is the array: fold the causal part in
                i, j = np.arange(SQ)[:, None], np.arange(SKV)[None, :]
                diag = i if mask == "causal-top-left" else i + SKV - SQ
                kw["attn_mask"] = m & (j <= diag)
        elif name == "sinks":
            kw["sinks"] = randn(rng, HQ)
        else:
            kw[name] = value
    if "softcap" in kw:  # large scores, so that the cap matters
        kw["scale"] = 1.0
    check(backend, rng, mask, algo, **kw)


def test_softcap_changes_the_result(rng):
    q, k, v = inputs(rng)
    plain = polyattn.attention(q, k, v, scale=1.0)
    capped = polyattn.attention(q, k, v, scale=1.0, softcap=0.5)
    assert np.abs(plain - capped).max() > 1e-2


def test_bias_f16_and_uint8_mask(backend, rng):
    bias = randn(rng, 1, HQ, SQ, SKV).astype(np.float16)
    mask = (rng.random((B, 1, SQ, SKV)) > 0.2).astype(np.uint8)
    check(backend, rng, None, bias=bias, attn_mask=mask, t=2e-5)


def test_broadcast_bias_strides_zero(backend, rng):
    """A bias broadcast by NumPy (stride 0) over batch, heads and the query rows."""
    row = randn(rng, SKV)
    bias = np.broadcast_to(row, (B, HQ, SQ, SKV))
    assert bias.strides[0] == 0
    check(backend, rng, "causal-bottom-right", bias=bias)
    check(backend, rng, None, bias=randn(rng, 1, SKV))  # [1, seq_kv]: rows broadcast


def test_fully_masked_rows(backend, rng):
    q, k, v = inputs(rng)
    m = np.ones((B, HQ, SQ, SKV), bool)
    m[:, :, 2, :] = False
    o, lse = run_or_skip(backend, polyattn.attention, q, k, v, mask=m, return_lse=True,
                         backend=backend)
    assert np.all(o[:, :, 2] == 0) and np.all(lse[:, :, 2] == -np.inf)
    sinks = randn(rng, HQ)
    o, lse = run_or_skip(backend, polyattn.attention, q, k, v, mask=m, sinks=sinks,
                         return_lse=True, backend=backend)
    assert np.all(o[:, :, 2] == 0)
    compare(lse[:, :, 2], np.broadcast_to(sinks[None, :], (B, HQ)))
    bias = np.zeros((SQ, SKV), np.float32)
    bias[4] = -np.inf
    o, lse = polyattn.attention(q, k, v, bias=bias, return_lse=True, backend=backend)
    assert np.all(o[:, :, 4] == 0) and np.all(lse[:, :, 4] == -np.inf)


def test_sinks_by_hand():
    """1x1x1x2: q = 0, so both scores are 0; a sink of 0 is a third exp(0) in the
    denominator: O = (3 + 6) / 3 = 3, LSE = log 3."""
    q = np.zeros((1, 1, 1, 1), np.float32)
    k = np.ones((1, 1, 2, 1), np.float32)
    v = np.array([3.0, 6.0], np.float32).reshape(1, 1, 2, 1)
    o, lse = polyattn.attention(q, k, v, sinks=np.zeros(1, np.float32), return_lse=True)
    assert abs(float(o[0, 0, 0, 0]) - 3.0) < 1e-6
    assert abs(float(lse[0, 0, 0]) - np.log(3.0)) < 1e-6


@pytest.mark.parametrize("causal", [False, True])
def test_flash_attn_func_variants(backend, rng, causal):
    q, k, v = (ref.bshd(x) for x in inputs(rng))
    sl = np.stack([slopes(HQ), 2 * slopes(HQ)])
    o = run_or_skip(backend, polyattn.flash_attn_func, q, k, v, causal=causal,
                    window_size=(4, 2), softcap=3.0, alibi_slopes=sl, backend=backend)
    want, _, _ = ref.forward_variants(ref.bshd(q), ref.bshd(k), ref.bshd(v),
                                      "causal-bottom-right" if causal else None, softcap=3.0,
                                      alibi_slopes=sl, window=(4, 2))
    compare(o, ref.bshd(want))


def test_varlen_and_kvcache_variants(rng):
    lens_q, lens_k = [3, 5], [6, 4]
    cu_q, cu_k = np.cumsum([0] + lens_q), np.cumsum([0] + lens_k)
    q, k, v = randn(rng, 8, HQ, D), randn(rng, 10, HKV, D), randn(rng, 10, HKV, D)
    sl = np.stack([slopes(HQ), 3 * slopes(HQ)])
    o = polyattn.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 5, 6, causal=True,
                                        window_size=(2, 0), alibi_slopes=sl, softcap=2.0)
    for i in range(2):
        a, b, c, e = cu_q[i], cu_q[i + 1], cu_k[i], cu_k[i + 1]
        want, _, _ = ref.forward_variants(
            q[None, a:b].swapaxes(1, 2), k[None, c:e].swapaxes(1, 2),
            v[None, c:e].swapaxes(1, 2), "causal-bottom-right", softcap=2.0,
            alibi_slopes=sl[i:i + 1], window=(2, 0))
        compare(o[a:b], want[0].swapaxes(0, 1))
    qc = randn(rng, 2, 1, HQ, D)
    kc, vc = randn(rng, 2, 9, HKV, D), randn(rng, 2, 9, HKV, D)
    lens = np.array([9, 5])
    o = polyattn.flash_attn_with_kvcache(qc, kc, vc, cache_seqlens=lens, causal=True,
                                         window_size=(3, -1), alibi_slopes=sl)
    for i in range(2):
        n = int(lens[i])
        want, _, _ = ref.forward_variants(
            qc[i:i + 1].swapaxes(1, 2), kc[i:i + 1, :n].swapaxes(1, 2),
            vc[i:i + 1, :n].swapaxes(1, 2), "causal-bottom-right", alibi_slopes=sl[i:i + 1],
            window=(3, -1))
        compare(o[i:i + 1], ref.bshd(want))


def test_plan_cache_tells_variants_apart(rng):
    q, k, v = inputs(rng)
    a = polyattn.attention(q, k, v, window=(1, 1))
    b = polyattn.attention(q, k, v, window=(2, 2))
    c = polyattn.attention(q, k, v)
    assert np.abs(a - b).max() > 1e-3 and np.abs(b - c).max() > 1e-3


def test_explain_variants():
    info = polyattn.explain((1, 2, 64, 32), (1, 2, 64, 32), (1, 2, 64, 32), window=(8, 0),
                            mask="causal-bottom-right", softcap=30.0, backend="host",
                            sinks=np.zeros(2, np.float32))
    full = polyattn.explain((1, 2, 64, 32), (1, 2, 64, 32), (1, 2, 64, 32),
                            mask="causal-bottom-right", backend="host")
    assert info["flops"] < full["flops"]  # visible pairs only


# ---- bad arguments -----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    ({"window": (-2, 0)}, ValueError, r"window: \(-2, 0\) has a negative size"),
    ({"window": (3,)}, ValueError, r"window: expected a pair"),
    ({"window": (1.5, 2)}, ValueError, r"window: expected a pair of integers"),
    ({"softcap": float("nan")}, ValueError, r"softcap: nan is not a finite number"),
    ({"softcap": -1.0}, ValueError, r"softcap: -1.0 is not a finite number >= 0"),
    ({"softcap": float("inf")}, ValueError, r"softcap"),
    ({"softcap": "big"}, TypeError, r"softcap"),
    ({"alibi_slopes": np.ones(3, np.float32)}, ValueError, r"alibi_slopes: shape \(3,\)"),
    ({"alibi_slopes": np.ones((3, HQ), np.float32)}, ValueError, r"alibi_slopes: shape"),
    ({"alibi_slopes": np.ones(HQ, np.int32)}, TypeError, r"alibi_slopes: dtype int32"),
    ({"bias": np.zeros((SQ, SKV + 1), np.float32)}, ValueError, r"bias: shape \(7, 12\) does "
                                                                 r"not broadcast"),
    ({"bias": np.zeros((3, HQ, SQ, SKV), np.float32)}, ValueError, r"bias: shape"),
    ({"bias": np.zeros(SKV, np.float32)}, ValueError, r"bias: shape \(11,\) has 1 dimensions"),
    ({"bias": np.zeros((SQ, SKV), np.int64)}, TypeError, r"bias: dtype int64"),
    ({"mask": np.ones((SQ, SKV), np.float32)}, TypeError, r"mask: dtype float32 is not bool"),
    ({"mask": np.ones((SQ, 3), bool)}, ValueError, r"mask: shape \(7, 3\) does not broadcast"),
    ({"mask": "causal"}, ValueError, r"mask: 'causal'"),
    ({"sinks": np.zeros(HQ + 1, np.float32)}, ValueError, r"sinks: shape \(5,\)"),
    ({"sinks": np.zeros(HQ, bool)}, TypeError, r"sinks: dtype bool"),
])
def test_bad_variants(rng, kwargs, error, match):
    q, k, v = inputs(rng)
    with pytest.raises(error, match=match):
        polyattn.attention(q, k, v, **kwargs)


def test_bad_flash_variants(rng):
    q, k, v = (ref.bshd(x) for x in inputs(rng))
    with pytest.raises(ValueError, match=r"window_size: \(-3, -1\) has a negative size"):
        polyattn.flash_attn_func(q, k, v, window_size=(-3, -1))
    with pytest.raises(ValueError, match=r"alibi_slopes: shape \(2,\)"):
        polyattn.flash_attn_func(q, k, v, alibi_slopes=np.ones(2, np.float32))
    with pytest.raises(ValueError, match=r"softcap"):
        polyattn.flash_attn_func(q, k, v, softcap=float("nan"))
