"""torch CPU tensors: forward, autograd backward (polyattn_backward), the custom op and
torch.compile tracing, against the float64 reference."""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch)")

import polyattn  # noqa: E402
import reference as ref  # noqa: E402


def close(actual, expected, t=2e-5):
    np.testing.assert_allclose(actual.detach().double().numpy(), expected, atol=t, rtol=t)


def bhsd(x):
    return x.detach().double().numpy().swapaxes(1, 2)


def leaf(*shape):
    return torch.randn(*shape, dtype=torch.float32, requires_grad=True)


@pytest.mark.parametrize("causal", [False, True])
def test_flash_attn_func_grad(causal):
    torch.manual_seed(0)
    q, k, v = leaf(2, 7, 4, 16), leaf(2, 11, 2, 16), leaf(2, 11, 2, 16)
    o = polyattn.flash_attn_func(q, k, v, causal=causal, softmax_scale=0.4)
    assert isinstance(o, torch.Tensor) and o.shape == (2, 7, 4, 16) and o.grad_fn is not None
    mask = "causal-bottom-right" if causal else None
    eo, _, _ = ref.forward(bhsd(q), bhsd(k), bhsd(v), mask, 0.4)
    close(o, eo.swapaxes(1, 2))
    d_o = torch.randn_like(o)
    o.backward(d_o)
    dq, dk, dv = ref.backward(bhsd(q), bhsd(k), bhsd(v), bhsd(d_o), mask, 0.4)
    close(q.grad, dq.swapaxes(1, 2), 1e-4)
    close(k.grad, dk.swapaxes(1, 2), 1e-4)
    close(v.grad, dv.swapaxes(1, 2), 1e-4)


def test_attention_no_grad_lse_probs_and_bf16():
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 2, 5, 8), torch.randn(1, 2, 9, 8), torch.randn(1, 2, 9, 8)
    o, lse, p = polyattn.attention(q, k, v, mask="causal-top-left", return_lse=True,
                                   return_probs=True)
    eo, el, ep = ref.forward(q.double().numpy(), k.double().numpy(), v.double().numpy(),
                             "causal-top-left")
    close(o, eo)
    close(lse, el)
    close(p, ep)
    ob = polyattn.attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert ob.dtype == torch.bfloat16
    close(ob.float(), ref.forward(q.bfloat16().double().numpy(), k.bfloat16().double().numpy(),
                                  v.bfloat16().double().numpy())[0], 2e-2)


def test_out_and_opencl():
    torch.manual_seed(2)
    q, k, v = torch.randn(2, 6, 2, 16), torch.randn(2, 6, 2, 16), torch.randn(2, 6, 2, 16)
    out = torch.empty(2, 6, 2, 16)
    assert polyattn.flash_attn_func(q, k, v, out=out) is out
    if any(d["backend"] == "opencl" for d in polyattn.devices()):
        o2 = polyattn.flash_attn_func(q, k, v, backend="opencl")
        close(o2, out.double().numpy(), 1e-5)


def test_varlen_grad():
    torch.manual_seed(3)
    lens = [3, 6, 1]
    cu = torch.tensor(np.cumsum([0] + lens), dtype=torch.int32)
    q, k, v = leaf(10, 2, 8), leaf(10, 2, 8), leaf(10, 2, 8)
    o = polyattn.flash_attn_varlen_func(q, k, v, cu, cu, 6, 6, causal=True)
    d_o = torch.randn_like(o)
    o.backward(d_o)
    for i, n in enumerate(lens):
        a = int(cu[i])
        sl = slice(a, a + n)
        view = [x.detach()[sl].double().numpy()[None].swapaxes(1, 2) for x in (q, k, v, d_o)]
        eo = ref.forward(*view[:3], "causal-bottom-right")[0]
        close(o[sl], eo[0].swapaxes(0, 1))
        dq, dk, dv = ref.backward(*view, "causal-bottom-right")
        close(q.grad[sl], dq[0].swapaxes(0, 1), 1e-4)
        close(k.grad[sl], dk[0].swapaxes(0, 1), 1e-4)
        close(v.grad[sl], dv[0].swapaxes(0, 1), 1e-4)


def test_kvcache_torch_append():
    torch.manual_seed(4)
    q, kc, vc = torch.randn(2, 1, 2, 8), torch.randn(2, 8, 2, 8), torch.randn(2, 8, 2, 8)
    kn, vn = torch.randn(2, 1, 2, 8), torch.randn(2, 1, 2, 8)
    lens = torch.tensor([2, 5], dtype=torch.int32)
    o = polyattn.flash_attn_with_kvcache(q, kc, vc, kn, vn, cache_seqlens=lens, causal=True)
    assert torch.equal(kc[1, 5], kn[1, 0]) and torch.equal(vc[0, 2], vn[0, 0])
    for i, n in enumerate([3, 6]):
        eo = ref.forward(bhsd(q[i:i + 1]), bhsd(kc[i:i + 1, :n]), bhsd(vc[i:i + 1, :n]))[0]
        close(o[i], eo[0].swapaxes(0, 1))


@pytest.mark.skipif(not hasattr(torch.library, "custom_op"), reason="torch < 2.4")
def test_custom_op_and_compile():
    torch.manual_seed(5)
    q, k, v = leaf(1, 5, 2, 16), leaf(1, 5, 1, 16), leaf(1, 5, 1, 16)
    o, lse = torch.ops.polyattn.attention(q, k, v, "bshd", 2, 0.0, "", -1, "auto", False, True)
    eo, el, _ = ref.forward(bhsd(q), bhsd(k), bhsd(v), "causal-bottom-right")
    close(o, eo.swapaxes(1, 2))
    close(lse, el)
    torch.library.opcheck(torch.ops.polyattn.attention.default,
                          (q, k, v, "bshd", 2, 0.0, "", -1, "auto", False, True))

    def f(q, k, v):
        return polyattn.flash_attn_func(q, k, v, causal=True).sum()

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    loss = compiled(q, k, v)
    loss.backward()
    d_o = np.ones((1, 2, 5, 16))
    dq, dk, dv = ref.backward(bhsd(q), bhsd(k), bhsd(v), d_o, "causal-bottom-right")
    close(loss, eo.sum(), 1e-4)
    close(q.grad, dq.swapaxes(1, 2), 1e-4)
    close(k.grad, dk.swapaxes(1, 2), 1e-4)
    close(v.grad, dv.swapaxes(1, 2), 1e-4)
