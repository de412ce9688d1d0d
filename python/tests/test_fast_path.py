"""The repeated-call fast path (_fast.py): a second call with the same signature skips the
checked path and returns bit-identical results; any change of a signature element (array
type, dtype, shape, strides, device/backend, every option and variant argument) takes the
checked path again, so no check is ever skipped."""
import numpy as np
import pytest

import polyattn
from conftest import randn
from polyattn import _dense, _fast

B, H, HK, SQ, SK, D = 2, 4, 2, 5, 9, 16


@pytest.fixture
def checked(monkeypatch):
    """The list of checked-path calls (one entry per Dense.forward)."""
    calls = []
    real = _dense.Dense.forward

    def counting(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(_dense.Dense, "forward", counting)
    polyattn.clear_caches()
    yield calls
    polyattn.clear_caches()


def as_tuple(res):
    return res if isinstance(res, tuple) else (res,)


def same(a, b):
    a, b = as_tuple(a), as_tuple(b)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert np.array_equal(x, y, equal_nan=True)


def qkv(rng, dtype=np.float32, layout="bshd", sk=SK, hk=HK):
    if layout == "bshd":
        return randn(rng, B, SQ, H, D, dtype=dtype), randn(rng, B, sk, hk, D, dtype=dtype), \
            randn(rng, B, sk, hk, D, dtype=dtype)
    return randn(rng, B, H, SQ, D, dtype=dtype), randn(rng, B, hk, sk, D, dtype=dtype), \
        randn(rng, B, hk, sk, D, dtype=dtype)


def slopes(n=H):
    return (2.0 ** (-8.0 * np.arange(1, n + 1) / n)).astype(np.float32)


def _checked_result(fn, args, kwargs):
    """The checked path's result: the caches emptied first."""
    polyattn.clear_caches()
    return fn(*args, **kwargs)


CASES = {
    "flash": (polyattn.flash_attn_func, "bshd", {}),
    "flash causal scale": (polyattn.flash_attn_func, "bshd",
                           {"causal": True, "softmax_scale": 0.3}),
    "flash probs": (polyattn.flash_attn_func, "bshd", {"return_attn_probs": True}),
    "flash window softcap alibi": (polyattn.flash_attn_func, "bshd",
                                   {"window_size": (3, 1), "softcap": 2.0,
                                    "alibi_slopes": slopes()}),
    "flash algo": (polyattn.flash_attn_func, "bshd", {"algo": "flash"}),
    "attention": (polyattn.attention, "bhsd", {}),
    "attention lse probs": (polyattn.attention, "bhsd",
                            {"mask": "causal-top-left", "return_lse": True,
                             "return_probs": True}),
    "attention bias mask sinks": (polyattn.attention, "bhsd",
                                  {"bias": "bias", "mask": "mask", "sinks": "sinks",
                                   "return_lse": True}),
    "attention f16 bias bshd": (polyattn.attention, "bshd",
                                {"bias": "bias16", "layout": "bshd", "window": (2, 2)}),
}


def _kwargs(spec, rng):
    out = {}
    for name, value in spec.items():
        if isinstance(value, np.ndarray):
            pass
        elif value == "bias":
            value = randn(rng, 1, H, SQ, SK)
        elif value == "bias16":
            value = randn(rng, SQ, SK, dtype=np.float16)
        elif value == "mask":
            value = rng.random((B, 1, SQ, SK)) > 0.3
            value[..., 0] = True
        elif value == "sinks":
            value = randn(rng, H)
        out[name] = value
    return out


@pytest.mark.parametrize("case", CASES)
def test_fast_equals_checked(checked, rng, case):
    fn, layout, spec = CASES[case]
    args, kwargs = qkv(rng, layout=layout), _kwargs(spec, rng)
    first = fn(*args, **kwargs)
    assert len(checked) == 1 and polyattn.cache_info()["fast_calls"] == 1
    second = fn(*args, **kwargs)
    assert len(checked) == 1, "the repeated call took the checked path"
    same(first, second)
    # New data, the same signature: the fast path reads the new pointers.
    args2 = qkv(rng, layout=layout)
    kwargs2 = {n: (np.ascontiguousarray(rng.permutation(v.ravel()).reshape(v.shape))
                   if isinstance(v, np.ndarray) else v) for n, v in kwargs.items()}
    fast = fn(*args2, **kwargs2)
    assert len(checked) == 1
    want = _checked_result(fn, args2, kwargs2)
    assert len(checked) == 2
    same(fast, want)
    with pytest.raises(AssertionError):
        same(fast, first)  # the comparison can fail


def test_out_is_written_in_place(checked, rng):
    q, k, v = qkv(rng)
    out = np.full((B, SQ, H, D), np.nan, np.float32)
    want = polyattn.flash_attn_func(q, k, v)
    assert polyattn.flash_attn_func(q, k, v, out=out) is out
    same(out, want)
    out[:] = np.nan
    n = len(checked)
    assert polyattn.flash_attn_func(q, k, v, out=out) is out
    assert len(checked) == n
    same(out, want)


def _strided(x, axis=1):
    """x's values in an array whose `axis` has stride 2 (the last dimension contiguous)."""
    shape = list(x.shape)
    shape[axis] *= 2
    big = np.zeros(shape, x.dtype)
    index = [slice(None)] * x.ndim
    index[axis] = slice(None, None, 2)
    big[tuple(index)] = x
    return big[tuple(index)]


# Each changes one element of the signature of a cached base call (flash_attn_func on q, k,
# v with no keyword): the call must take the checked path.
def _changes(rng):
    q, k, v = qkv(rng)
    return {
        "dtype": ((q.astype(np.float16), k.astype(np.float16), v.astype(np.float16)), {}),
        "shape seq_kv": (qkv(rng, sk=SK + 1), {}),
        "shape heads_kv (GQA)": (qkv(rng, hk=H), {}),
        "strides k": ((q, _strided(k), v), {}),
        "strides q": ((_strided(q, 2), k, v), {}),
        "backend": ((q, k, v), {"backend": "host", "device": 0}),
        "causal": ((q, k, v), {"causal": True}),
        "scale": ((q, k, v), {"softmax_scale": 0.5}),
        "window": ((q, k, v), {"window_size": (2, 0)}),
        "window other": ((q, k, v), {"window_size": (2, 1)}),
        "softcap": ((q, k, v), {"softcap": 1.5}),
        "alibi [heads]": ((q, k, v), {"alibi_slopes": slopes()}),
        "alibi [batch, heads]": ((q, k, v), {"alibi_slopes": np.stack([slopes()] * B)}),
        "probs": ((q, k, v), {"return_attn_probs": True}),
        "algo": ((q, k, v), {"algo": "flash"}),
        "deterministic": ((q, k, v), {"deterministic": True}),
        "out": ((q, k, v), {"out": np.empty((B, SQ, H, D), np.float32)}),
        "out strides": ((q, k, v), {"out": _strided(np.empty((B, SQ, H, D), np.float32))}),
    }


@pytest.mark.parametrize("change", list(_changes(np.random.default_rng(0))))
def test_signature_change_misses(checked, rng, change):
    q, k, v = qkv(rng)
    polyattn.flash_attn_func(q, k, v)
    polyattn.flash_attn_func(q, k, v)
    assert len(checked) == 1
    args, kwargs = _changes(rng)[change]
    got = polyattn.flash_attn_func(*args, **kwargs)
    assert len(checked) == 2, f"{change}: the changed call took the fast path"
    again = polyattn.flash_attn_func(*args, **kwargs)
    assert len(checked) == 2, f"{change}: the changed call was not cached"
    same(got, again)
    same(got, _checked_result(polyattn.flash_attn_func, args, kwargs))


def _attention_changes(rng):
    """Updates of the base keywords (bias and mask arrays), each changing one element."""
    bias = randn(rng, 1, H, SQ, SK)
    return {
        "bias shape": {"bias": randn(rng, SQ, SK)},
        "bias dtype": {"bias": bias.astype(np.float16)},
        "bias strides": {"bias": _strided(bias, 2)},
        "no bias": {"bias": None},
        "mask shape": {"mask": rng.random((1, H, SQ, SK)) > 0.3},
        "mask strides": {"mask": _strided(rng.random((B, 1, SQ, SK)) > 0.3, 2)},
        "mask kind": {"mask": "causal-bottom-right"},
        "no mask": {"mask": None},
        "sinks": {"sinks": randn(rng, H)},
        "alibi": {"alibi_slopes": slopes()},
        "scale": {"scale": 0.2},
        "softcap": {"softcap": 3.0},
        "window": {"window": (1, 1)},
        "lse": {"return_lse": True},
        "probs": {"return_probs": True},
        "algo": {"algo": "unfused"},
        "deterministic": {"deterministic": True},
    }


@pytest.mark.parametrize("change", list(_attention_changes(np.random.default_rng(0))))
def test_attention_signature_change_misses(checked, rng, change):
    q, k, v = qkv(rng, layout="bhsd", hk=H)
    base = {"bias": randn(rng, 1, H, SQ, SK), "mask": rng.random((B, 1, SQ, SK)) > 0.3}
    polyattn.attention(q, k, v, **base)
    polyattn.attention(q, k, v, **base)
    assert len(checked) == 1
    kwargs = dict(base, **_attention_changes(rng)[change])
    got = polyattn.attention(q, k, v, **kwargs)
    assert len(checked) == 2, f"{change}: the changed call took the fast path"
    same(got, polyattn.attention(q, k, v, **kwargs))
    assert len(checked) == 2
    same(got, _checked_result(polyattn.attention, (q, k, v), kwargs))


def test_layout_change_misses(checked, rng):
    q, k, v = qkv(rng, layout="bhsd", hk=H)
    for _ in range(2):
        polyattn.attention(q, k, v)
    with pytest.raises(ValueError, match="heads"):  # the same arrays read as bshd
        polyattn.attention(q, k, v, layout="bshd")
    same(polyattn.attention(q.swapaxes(1, 2), k.swapaxes(1, 2), v.swapaxes(1, 2), layout="bshd"),
         polyattn.attention(q, k, v).swapaxes(1, 2))
    assert len(checked) == 3


def test_checks_after_a_cached_call(checked, rng):
    """Arguments the checked path refuses are refused after the valid signature is cached."""
    q, k, v = qkv(rng)
    out = np.empty((B, SQ, H, D), np.float32)
    for _ in range(2):
        polyattn.flash_attn_func(q, k, v, out=out)
        polyattn.flash_attn_func(q, k, v)
    assert len(checked) == 2
    with pytest.raises(ValueError, match="window_size"):
        polyattn.flash_attn_func(q, k, v, window_size=(-1.0, -1.0))
    with pytest.raises(ValueError, match="window_size"):
        polyattn.flash_attn_func(q, k, v, window_size=(np.float64(-1), -1))
    with pytest.raises(TypeError, match="dtype"):
        polyattn.flash_attn_func(q, k.astype(np.float16), v)
    with pytest.raises(TypeError, match="dtype"):
        polyattn.flash_attn_func(q, k.astype(np.float64), v)
    with pytest.raises(ValueError, match="contiguous"):
        polyattn.flash_attn_func(q, k, np.asfortranarray(v))
    with pytest.raises(ValueError, match="dimensions"):
        polyattn.flash_attn_func(q[0], k, v)
    with pytest.raises(ValueError, match="softcap"):
        polyattn.flash_attn_func(q, k, v, softcap=-1.0)
    with pytest.raises(ValueError, match="alibi_slopes"):
        polyattn.flash_attn_func(q, k, v, alibi_slopes=slopes(H + 1))
    with pytest.raises(NotImplementedError, match="dropout"):
        polyattn.flash_attn_func(q, k, v, dropout_p=0.1)
    frozen = out.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        polyattn.flash_attn_func(q, k, v, out=frozen)
    with pytest.raises(ValueError, match="shape"):
        polyattn.flash_attn_func(q, k, v, out=out[:, :-1])
    with pytest.raises(ValueError, match="alibi_slopes"):  # unhashable arguments
        polyattn.flash_attn_func(q, k, v, window_size=[2, 2], alibi_slopes=[[1.0]])


def test_not_recorded(checked, rng):
    """Calls the fast path cannot repeat from pointers alone run checked every time: scalar
    options of other types, converted variant arrays, list windows."""
    q, k, v = qkv(rng)
    want = polyattn.flash_attn_func(q, k, v, softmax_scale=0.25, window_size=(2, 2))
    cases = [({"softmax_scale": np.float32(0.25), "window_size": (2, 2)}, want),
             ({"softmax_scale": 0.25, "window_size": [2, 2]}, want),
             ({"softmax_scale": 0.25, "window_size": (np.int64(2), 2)}, want),
             ({"alibi_slopes": slopes().astype(np.float64)}, None),
             ({"alibi_slopes": list(slopes())}, None)]
    for kwargs, expected in cases:
        polyattn.clear_caches()
        n = len(checked)
        results = [polyattn.flash_attn_func(q, k, v, **kwargs) for _ in range(3)]
        assert len(checked) == n + 3, kwargs
        assert polyattn.cache_info()["fast_calls"] == 0
        for r in results[1:]:
            same(r, results[0])
        if expected is not None:
            same(results[0], expected)
    bias64 = randn(rng, SQ, SK, dtype=np.float64)
    n = len(checked)
    r = [polyattn.attention(q, k, v, layout="bshd", bias=bias64) for _ in range(2)]
    assert len(checked) == n + 2
    same(r[0], polyattn.attention(q, k, v, layout="bshd", bias=bias64.astype(np.float32)))


def test_opencl_copies_are_not_recorded(checked, rng):
    if not any(d["backend"] == "opencl" for d in polyattn.devices()):
        pytest.skip("no OpenCL device")
    q, k, v = qkv(rng)
    a = polyattn.flash_attn_func(q, k, v, backend="opencl")
    b = polyattn.flash_attn_func(q, k, v, backend="opencl")
    assert len(checked) == 2 and polyattn.cache_info()["fast_calls"] == 0
    same(a, b)


def test_cache_bound_and_clear(checked, rng, monkeypatch):
    from polyattn import _runtime
    monkeypatch.setattr(_runtime, "PLAN_CACHE_SIZE", 3)
    for n in range(2, 8):
        x = randn(rng, 1, n, 2, 8)
        polyattn.flash_attn_func(x, x, x)
        assert polyattn.cache_info()["fast_calls"] <= 3
    assert polyattn.cache_info()["fast_calls"] == 3
    polyattn.clear_caches()
    assert polyattn.cache_info()["fast_calls"] == 0


def test_signature_helpers():
    assert _fast.window_key((1, 2)) == (1, 2)
    assert _fast.window_key((1.0, 2)) is _fast.NO
    assert _fast.window_key((True, 2)) is _fast.NO
    assert _fast.window_key([1, 2]) is _fast.NO
    a = np.zeros((2, 3), np.float32)
    assert _fast.sig(a) != _fast.sig(a.astype(np.float16))
    assert _fast.sig(a) != _fast.sig(a.astype(">f4"))
    assert _fast.sig(a) != _fast.sig(np.asfortranarray(a))
    assert _fast.sig_out(a) != _fast.sig_out(np.frombuffer(a.tobytes(), np.float32).reshape(2, 3))
    assert _fast.sig([1.0]) is _fast.NO and _fast.sig(None) is None
    assert _fast.sig_q(None) is _fast.NO


# ---- torch CPU tensors --------------------------------------------------------------------

def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install torch)")


def test_torch_fast_equals_checked(checked):
    torch = _torch()
    torch.manual_seed(0)
    q, k, v = torch.randn(B, SQ, H, D), torch.randn(B, SK, HK, D), torch.randn(B, SK, HK, D)
    first = polyattn.flash_attn_func(q, k, v, causal=True)
    second = polyattn.flash_attn_func(q, k, v, causal=True)
    assert len(checked) == 1 and isinstance(second, torch.Tensor)
    assert torch.equal(first, second)
    q2 = torch.randn_like(q)
    fast = polyattn.flash_attn_func(q2, k, v, causal=True)
    assert len(checked) == 1
    assert torch.equal(fast, _checked_result(polyattn.flash_attn_func, (q2, k, v),
                                             {"causal": True}))
    assert not torch.equal(fast, first)
    # Variants and extra outputs through the general runner.
    bias, sinks = torch.randn(SQ, SK), torch.randn(H)
    kw = {"layout": "bshd", "bias": bias, "sinks": sinks, "return_lse": True,
          "alibi_slopes": torch.from_numpy(slopes())}
    a = polyattn.attention(q, k, v, **kw)
    n = len(checked)
    b = polyattn.attention(q, k, v, **kw)
    assert len(checked) == n
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_torch_signature_changes_miss(checked):
    torch = _torch()
    torch.manual_seed(1)
    q, k, v = torch.randn(B, SQ, H, D), torch.randn(B, SK, HK, D), torch.randn(B, SK, HK, D)
    polyattn.flash_attn_func(q, k, v)
    polyattn.flash_attn_func(q, k, v)
    assert len(checked) == 1
    changes = {
        "dtype": (q.bfloat16(), k.bfloat16(), v.bfloat16()),
        "shape": (q, k[:, :-1], v[:, :-1]),
        "strides": (q, torch.randn(B, HK, SK, D).transpose(1, 2), v),
        "array type": (q.numpy(), k.numpy(), v.numpy()),
    }
    for name, args in changes.items():
        n = len(checked)
        got = polyattn.flash_attn_func(*args)
        assert len(checked) == n + 1, name
        again = polyattn.flash_attn_func(*args)
        assert len(checked) == n + 1, name
        same(np.asarray(torch.as_tensor(got).float()), np.asarray(torch.as_tensor(again).float()))


def test_torch_autograd_is_never_fast(checked):
    torch = _torch()
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, SQ, H, D) for _ in range(3))
    polyattn.flash_attn_func(q, k, v)
    polyattn.flash_attn_func(q, k, v)
    assert len(checked) == 1
    qg, vg = q.clone().requires_grad_(), v.clone().requires_grad_()
    for args in ((qg, k, v), (qg, k, v), (q, k, vg), (q, k, vg)):
        o = polyattn.flash_attn_func(*args)
        assert o.grad_fn is not None
        o.sum().backward()
    with torch.no_grad():  # requires_grad under no_grad: checked each time, no graph
        for _ in range(2):
            assert polyattn.flash_attn_func(qg, k, v).grad_fn is None
    assert polyattn.cache_info()["fast_calls"] == 1
    bias = torch.randn(SQ, SQ, requires_grad=True)
    for _ in range(2):
        o = polyattn.attention(q, k, v, layout="bshd", bias=bias)
        assert o.grad_fn is not None
    assert polyattn.cache_info()["fast_calls"] == 1


def test_torch_cuda_fast_path_and_streams(checked):
    torch = _torch()
    if not torch.cuda.is_available():
        pytest.skip("torch.cuda is not available (no CUDA device or a CPU-only torch)")
    torch.manual_seed(3)
    q, k, v = (torch.randn(1, n, H, 64, dtype=torch.float16, device="cuda")
               for n in (1, 300, 300))
    a = polyattn.flash_attn_func(q, k, v, causal=True)
    b = polyattn.flash_attn_func(q, k, v, causal=True)
    assert len(checked) == 1 and b.is_cuda
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # another current stream: another context
        c = polyattn.flash_attn_func(q, k, v, causal=True)
        assert len(checked) == 2
        d = polyattn.flash_attn_func(q, k, v, causal=True)
        assert len(checked) == 2
    torch.cuda.synchronize()
    for x in (b, c, d):
        assert torch.equal(a, x)
    q2 = torch.randn_like(q)
    fast = polyattn.flash_attn_func(q2, k, v, causal=True)
    assert len(checked) == 2
    want = _checked_result(polyattn.flash_attn_func, (q2, k, v), {"causal": True})
    assert torch.equal(fast, want) and not torch.equal(fast, a)
