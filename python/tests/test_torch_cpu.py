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


def test_varlen_grad_gqa_empty_sequences():
    """Packed lengths with an empty query sequence and an empty key sequence, GQA: the
    gradients equal those of flash_attn_func per sequence; rows no sequence owns get 0."""
    torch.manual_seed(6)
    lq, lk = [4, 0, 3, 2], [5, 3, 0, 6]
    cu_q = torch.tensor(np.cumsum([0] + lq), dtype=torch.int32)
    cu_k = torch.tensor(np.cumsum([0] + lk), dtype=torch.int32)
    q, k, v = leaf(sum(lq) + 1, 4, 8), leaf(sum(lk), 2, 8), leaf(sum(lk), 2, 8)
    o, lse, _ = polyattn.flash_attn_varlen_func(q, k, v, cu_q, cu_k, 4, 6, causal=True,
                                                return_attn_probs=True)
    d_o = torch.randn_like(o)
    (o[:sum(lq)] * d_o[:sum(lq)]).sum().backward()
    assert (q.grad[sum(lq):] == 0).all()
    for i in range(4):
        a, c = int(cu_q[i]), int(cu_k[i])
        if lq[i] == 0:
            continue
        if lk[i] == 0:  # fully masked rows: O = 0, dq = 0
            assert (o[a:a + lq[i]] == 0).all() and (q.grad[a:a + lq[i]] == 0).all()
            assert torch.isneginf(lse[:, a:a + lq[i]]).all()
            continue
        qs, ks, vs = (x.detach()[None, s:s + n].clone().requires_grad_()
                      for x, s, n in ((q, a, lq[i]), (k, c, lk[i]), (v, c, lk[i])))
        os_ = polyattn.flash_attn_func(qs, ks, vs, causal=True)
        os_.backward(d_o[None, a:a + lq[i]])
        close(o[a:a + lq[i]], os_[0].detach().double().numpy())
        close(q.grad[a:a + lq[i]], qs.grad[0].double().numpy(), 1e-4)
        close(k.grad[c:c + lk[i]], ks.grad[0].double().numpy(), 1e-4)
        close(v.grad[c:c + lk[i]], vs.grad[0].double().numpy(), 1e-4)


def test_kvcache_paged_torch_decode_repeats():
    """torch int32 lengths and block table used in place; repeated decode calls (the
    recorded runner) append and attend like the dense cache."""
    torch.manual_seed(7)
    b, hkv, d, bs = 2, 1, 8, 16
    dense_k, dense_v = torch.zeros(b, 32, hkv, d), torch.zeros(b, 32, hkv, d)
    kp, vp = torch.zeros(5, bs, hkv, d), torch.zeros(5, bs, hkv, d)
    table = torch.tensor([[3, 0], [4, 1]], dtype=torch.int32)
    lens = torch.tensor([15, 2], dtype=torch.int32)
    with torch.no_grad():
        for step in range(3):
            q, kn, vn = torch.randn(b, 1, 2, d), torch.randn(b, 1, hkv, d), torch.randn(b, 1, hkv, d)
            got = polyattn.flash_attn_with_kvcache(q, kp, vp, kn, vn, cache_seqlens=lens,
                                                   block_table=table, causal=True)
            want = polyattn.flash_attn_with_kvcache(q, dense_k, dense_v, kn, vn,
                                                    cache_seqlens=lens, causal=True)
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-5, atol=2e-5)
            lens += 1
    assert torch.equal(kp[0, 0], dense_k[0, 16]) and torch.equal(vp[4, 4], dense_v[1, 4])


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
