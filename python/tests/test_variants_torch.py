"""Score variants on torch CPU tensors: forward and autograd gradients for q, k, v, the
bias (when it requires grad) and the sinks, against the float64 NumPy reference, a float64
torch autograd reference and finite differences."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")

import polyattn  # noqa: E402
import reference as ref  # noqa: E402

B, HQ, HKV, SQ, SKV, D = 2, 4, 2, 6, 9, 8


def leaf(*shape, scale=1.0):
    return (torch.randn(*shape, dtype=torch.float32) * scale).requires_grad_(True)


def np64(t):
    return t.detach().double().numpy()


def close(actual, expected, t=1e-4):
    np.testing.assert_allclose(np64(actual), expected, atol=t, rtol=t)


def torch_reference(q, k, v, mask, scale, softcap, slopes, bias, window, sinks):
    """The same definition written with torch ops in float64: autograd gives the gradients
    (independent of reference.backward_variants)."""
    q, k, v = q.double(), k.double(), v.double()
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    s = torch.einsum("bhid,bhjd->bhij", q, k) * scale
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    i = torch.arange(SQ)[:, None]
    j = torch.arange(SKV)[None, :]
    diag = i if mask == "causal-top-left" else i + SKV - SQ
    if slopes is not None:
        s = s - slopes.double()[None, :, None, None] * (diag - j).abs()
    if bias is not None:
        s = s + bias.double()
    vis = torch.ones(SQ, SKV, dtype=torch.bool)
    if mask is not None:
        vis &= j <= diag
    if window is not None:
        if window[0] >= 0:
            vis &= j >= diag - window[0]
        if window[1] >= 0:
            vis &= j <= diag + window[1]
    s = s.masked_fill(~vis, float("-inf"))
    sink = sinks.double()[None, :, None, None].expand(s.shape[0], -1, SQ, 1)
    p = torch.softmax(torch.cat([s, sink], -1), -1)[..., :-1]
    return torch.einsum("bhij,bhjd->bhid", p, v)


@pytest.mark.parametrize("mask", [None, "causal-top-left", "causal-bottom-right"])
@pytest.mark.parametrize("bias_shape", [(B, HQ, SQ, SKV), (1, HQ, SQ, SKV), (SQ, SKV)])
@pytest.mark.parametrize("algo", ["unfused", "flash"])
def test_gradients_every_variant(mask, bias_shape, algo):
    torch.manual_seed(3)
    q, k, v = leaf(B, HQ, SQ, D), leaf(B, HKV, SKV, D), leaf(B, HKV, SKV, D)
    bias, sinks = leaf(*bias_shape), leaf(HQ)
    slopes = torch.tensor(2.0 ** -np.arange(1, HQ + 1), dtype=torch.float32)
    window, softcap, scale = (3, 1), 1.5, 0.6
    o = polyattn.attention(q, k, v, mask=mask, scale=scale, window=window, softcap=softcap,
                           alibi_slopes=slopes, bias=bias, sinks=sinks, algo=algo)
    d_o = torch.randn_like(o)
    o.backward(d_o)
    args = dict(mask=mask, scale=scale, softcap=softcap, alibi_slopes=np64(slopes),
                bias=np64(bias), window=window, sinks=np64(sinks))
    want_o, _, _ = ref.forward_variants(np64(q), np64(k), np64(v), **args)
    close(o, want_o, 2e-5)
    dq, dk, dv, db, ds = ref.backward_variants(np64(q), np64(k), np64(v), np64(d_o), **args)
    for got, want in ((q.grad, dq), (k.grad, dk), (v.grad, dv), (bias.grad, db),
                      (sinks.grad, ds)):
        assert got is not None and tuple(got.shape) == want.shape
        close(got, want)
    # The same gradients from torch's own autograd of the definition, in float64.
    leaves = [x.detach().double().requires_grad_(True) for x in (q, k, v, bias, sinks)]
    r = torch_reference(*leaves[:3], mask, scale, softcap, slopes, leaves[3], window, leaves[4])
    close(o, np64(r), 2e-5)
    r.backward(d_o.double())
    for got, want in zip((q.grad, k.grad, v.grad, bias.grad, sinks.grad), leaves):
        close(got, np64(want.grad))


def test_reference_gradients_by_finite_differences():
    """The NumPy reference's d_bias and d_sinks are the derivatives of sum(O * dO)."""
    rng = np.random.default_rng(5)
    q, k, v = rng.standard_normal((1, 2, 3, 4)), rng.standard_normal((1, 1, 5, 4)), \
        rng.standard_normal((1, 1, 5, 4))
    d_o, bias, sinks = rng.standard_normal((1, 2, 3, 4)), rng.standard_normal((3, 5)), \
        rng.standard_normal(2)
    args = dict(softcap=2.0, window=(1, 1), alibi_slopes=np.array([0.3, 0.1]))

    def loss(b, s):
        return (ref.forward_variants(q, k, v, bias=b, sinks=s, **args)[0] * d_o).sum()

    _, _, _, db, ds = ref.backward_variants(q, k, v, d_o, bias=bias, sinks=sinks, **args)
    h = 1e-6
    for idx in np.ndindex(bias.shape):
        e = np.zeros_like(bias)
        e[idx] = h
        assert abs((loss(bias + e, sinks) - loss(bias - e, sinks)) / (2 * h) - db[idx]) < 1e-6
    for i in range(2):
        e = np.zeros(2)
        e[i] = h
        assert abs((loss(bias, sinks + e) - loss(bias, sinks - e)) / (2 * h) - ds[i]) < 1e-6


def test_no_bias_grad_unless_asked():
    torch.manual_seed(4)
    q, k, v = leaf(1, 2, 5, 8), leaf(1, 2, 5, 8), leaf(1, 2, 5, 8)
    bias = torch.randn(5, 5)  # no requires_grad
    sinks = torch.randn(2)
    o = polyattn.attention(q, k, v, bias=bias, sinks=sinks)
    o.sum().backward()
    assert bias.grad is None and sinks.grad is None and q.grad is not None
    want = ref.backward_variants(np64(q), np64(k), np64(v), np.ones((1, 2, 5, 8)),
                                 bias=bias.numpy(), sinks=sinks.numpy())
    close(q.grad, want[0])


@pytest.mark.parametrize("causal", [False, True])
def test_flash_attn_func_gradients(causal):
    torch.manual_seed(6)
    q, k, v = leaf(2, SQ, HQ, D), leaf(2, SKV, HKV, D), leaf(2, SKV, HKV, D)
    slopes = torch.rand(2, HQ)
    o = polyattn.flash_attn_func(q, k, v, causal=causal, window_size=(2, 3), softcap=2.5,
                                 alibi_slopes=slopes)
    d_o = torch.randn_like(o)
    o.backward(d_o)
    t = lambda x: np64(x).swapaxes(1, 2)  # noqa: E731
    args = dict(mask="causal-bottom-right" if causal else None, softcap=2.5,
                alibi_slopes=slopes.numpy(), window=(2, 3))
    close(o, ref.forward_variants(t(q), t(k), t(v), **args)[0].swapaxes(1, 2), 2e-5)
    dq, dk, dv, _, _ = ref.backward_variants(t(q), t(k), t(v), t(d_o), **args)
    close(q.grad, dq.swapaxes(1, 2))
    close(k.grad, dk.swapaxes(1, 2))
    close(v.grad, dv.swapaxes(1, 2))


def test_sinks_gradient_float64_conversion():
    """float64 sinks are converted to float32 inside autograd: their gradient comes back
    float64."""
    torch.manual_seed(7)
    q, k, v = leaf(1, 2, 3, 4), leaf(1, 2, 3, 4), leaf(1, 2, 3, 4)
    sinks = torch.randn(2, dtype=torch.float64, requires_grad=True)
    polyattn.attention(q, k, v, sinks=sinks).sum().backward()
    assert sinks.grad is not None and sinks.grad.dtype == torch.float64
    want = ref.backward_variants(np64(q), np64(k), np64(v), np.ones((1, 2, 3, 4)),
                                 sinks=np64(sinks))[4]
    close(sinks.grad, want)


def test_torch_mask_and_bad_device_free_errors():
    q = torch.randn(1, 2, 3, 4)
    m = torch.ones(3, 3, dtype=torch.bool)
    m[1] = False
    o, lse = polyattn.attention(q, q, q, mask=m, return_lse=True)
    assert torch.all(o[:, :, 1] == 0) and torch.all(lse[:, :, 1] == float("-inf"))
    with pytest.raises(TypeError, match="mask: dtype torch.float32 is not bool or uint8"):
        polyattn.attention(q, q, q, mask=torch.ones(3, 3))
    with pytest.raises(TypeError, match="sinks: dtype torch.int64 is not a floating type"):
        polyattn.attention(q, q, q, sinks=torch.zeros(2, dtype=torch.int64))
