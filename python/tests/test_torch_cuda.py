"""torch CUDA tensors against torch.nn.functional.scaled_dot_product_attention, forward and
backward, for every function (skipped without a CUDA device)."""
import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
if not torch.cuda.is_available():
    pytest.skip("torch.cuda is not available (no CUDA device or a CPU-only torch)",
                allow_module_level=True)

import torch.nn.functional as F  # noqa: E402

import polyattn  # noqa: E402

TOL = {torch.float16: 2e-2, torch.bfloat16: 4e-2, torch.float32: 2e-3}


def sdpa_bshd(q, k, v, causal, scale=None):
    """SDPA on [b, s, h, d] with GQA and FlashAttention's bottom-right causal mask."""
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    group = qt.shape[1] // kt.shape[1]
    kt, vt = kt.repeat_interleave(group, 1), vt.repeat_interleave(group, 1)
    mask = None
    if causal:
        sq, sk = qt.shape[2], kt.shape[2]
        mask = torch.ones(sq, sk, dtype=torch.bool, device=q.device).tril(sk - sq)
    return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, scale=scale).transpose(1, 2)


def leaf(*shape, dtype):
    return torch.randn(*shape, dtype=dtype, device="cuda", requires_grad=True)


def serving(fn, *args, **kwargs):
    """A serving-layout call; skips where the CUDA backend does not have them yet."""
    try:
        return fn(*args, **kwargs)
    except polyattn.UnsupportedError as e:
        pytest.skip(f"serving layouts: {e}")


def grads(fn, q, k, v, d_o):
    for x in (q, k, v):
        x.grad = None
    o = fn(q, k, v)
    o.backward(d_o)
    return o.detach(), q.grad.clone(), k.grad.clone(), v.grad.clone()


def assert_close(a, b, dtype):
    torch.testing.assert_close(a.float(), b.float(), atol=TOL[dtype], rtol=TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", [(2, 128, 128, 8, 8, 64), (1, 77, 200, 8, 2, 128)])
def test_flash_attn_func(dtype, causal, shape):
    b, sq, sk, hq, hk, d = shape
    q, k, v = leaf(b, sq, hq, d, dtype=dtype), leaf(b, sk, hk, d, dtype=dtype), \
        leaf(b, sk, hk, d, dtype=dtype)
    d_o = torch.randn(b, sq, hq, d, dtype=dtype, device="cuda")
    got = grads(lambda *a: polyattn.flash_attn_func(*a, causal=causal), q, k, v, d_o)
    want = grads(lambda *a: sdpa_bshd(*a, causal), q, k, v, d_o)
    for g, w in zip(got, want):
        assert_close(g, w, dtype)


@pytest.mark.parametrize("mask", [None, "causal-top-left", "causal-bottom-right"])
def test_attention_bhsd(mask):
    dtype = torch.float16
    q, k, v = leaf(2, 4, 64, 64, dtype=dtype), leaf(2, 4, 96, 64, dtype=dtype), \
        leaf(2, 4, 96, 64, dtype=dtype)
    d_o = torch.randn(2, 4, 64, 64, dtype=dtype, device="cuda")

    def ref(q, k, v):
        m = None
        if mask:
            m = torch.ones(64, 96, dtype=torch.bool, device="cuda")
            m = m.tril(0) if mask == "causal-top-left" else m.tril(96 - 64)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.1)

    got = grads(lambda *a: polyattn.attention(*a, mask=mask, scale=0.1), q, k, v, d_o)
    want = grads(ref, q, k, v, d_o)
    for g, w in zip(got, want):
        assert_close(g, w, dtype)


def test_varlen():
    dtype = torch.float16
    lens = [17, 64, 5]
    cu = torch.tensor([0, 17, 81, 86], dtype=torch.int32, device="cuda")
    q, k, v = (leaf(86, 4, 64, dtype=dtype) for _ in range(3))
    d_o = torch.randn(86, 4, 64, dtype=dtype, device="cuda")
    o, dq, dk, dv = serving(grads, lambda *a: polyattn.flash_attn_varlen_func(
        *a, cu, cu, 64, 64, causal=True), q, k, v, d_o)
    for i, n in enumerate(lens):
        s = slice(int(cu[i]), int(cu[i]) + n)
        parts = [x.detach()[s][None].requires_grad_() for x in (q, k, v)]
        w = grads(lambda *a: sdpa_bshd(*a, True), *parts, d_o[s][None])
        for g, ww in zip((o[s], dq[s], dk[s], dv[s]), w):
            assert_close(g, ww[0], dtype)


def test_kvcache():
    dtype = torch.float16
    q = torch.randn(3, 1, 8, 128, dtype=dtype, device="cuda")
    kc, vc = (torch.randn(3, 512, 2, 128, dtype=dtype, device="cuda") for _ in range(2))
    kn, vn = (torch.randn(3, 1, 2, 128, dtype=dtype, device="cuda") for _ in range(2))
    lens = torch.tensor([100, 511, 7], dtype=torch.int32, device="cuda")
    o = serving(polyattn.flash_attn_with_kvcache, q, kc, vc, kn, vn, cache_seqlens=lens,
                causal=True)
    for i, n in enumerate([101, 512, 8]):
        assert torch.equal(kc[i, n - 1], kn[i, 0])
        w = sdpa_bshd(q[i:i + 1], kc[i:i + 1, :n], vc[i:i + 1, :n], True)
        assert_close(o[i:i + 1], w, dtype)


@pytest.mark.parametrize("block_size", [16, 64])
def test_kvcache_paged(block_size):
    dtype = torch.float16
    b, cap = 3, 256
    q = torch.randn(b, 2, 8, 128, dtype=dtype, device="cuda")
    kc, vc = (torch.randn(b, cap, 2, 128, dtype=dtype, device="cuda") for _ in range(2))
    per = cap // block_size
    table = torch.randperm(b * per + 2, device="cuda")[:b * per].view(b, per).to(torch.int32)
    kp, vp = (torch.zeros(b * per + 2, block_size, 2, 128, dtype=dtype, device="cuda")
              for _ in range(2))
    for i in range(b):
        for j in range(per):
            kp[table[i, j]] = kc[i, j * block_size:(j + 1) * block_size]
            vp[table[i, j]] = vc[i, j * block_size:(j + 1) * block_size]
    lens = torch.tensor([200, 0, 31], dtype=torch.int32, device="cuda")
    o = serving(polyattn.flash_attn_with_kvcache, q, kp, vp, cache_seqlens=lens,
                block_table=table, causal=True)
    for i, n in enumerate([200, 0, 31]):
        if n == 0:
            assert (o[i] == 0).all()
            continue
        assert_close(o[i:i + 1], sdpa_bshd(q[i:i + 1], kc[i:i + 1, :n], vc[i:i + 1, :n], True),
                     dtype)


def test_stream_and_compile():
    dtype = torch.float16
    q, k, v = (torch.randn(1, 256, 8, 64, dtype=dtype, device="cuda") for _ in range(3))
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        o = polyattn.flash_attn_func(q, k, v, causal=True)
    s.synchronize()
    assert_close(o, sdpa_bshd(q, k, v, True), dtype)
    f = torch.compile(lambda a, b, c: polyattn.flash_attn_func(a, b, c, causal=True),
                      backend="aot_eager", fullgraph=True)
    assert_close(f(q, k, v), o, dtype)


# ---- score variants against SDPA with an explicit float attn_mask --------------------------

def variant_mask(sq, sk, hq, causal, window, slopes, bias, device):
    """The additive float mask [b|1, hq, sq, sk] SDPA needs for the same scores: -inf
    outside the causal band and the window, -slope * |d(i) - j| (bottom-right diagonal),
    plus the bias."""
    i = torch.arange(sq, device=device)[:, None]
    j = torch.arange(sk, device=device)[None, :]
    diag = i + sk - sq
    visible = torch.ones(sq, sk, dtype=torch.bool, device=device)
    if causal:
        visible &= j <= diag
    if window is not None:
        if window[0] >= 0:
            visible &= j >= diag - window[0]
        if window[1] >= 0:
            visible &= j <= diag + window[1]
    m = torch.zeros(1, hq, sq, sk, device=device).masked_fill(~visible, float("-inf"))
    if slopes is not None:
        m = m - slopes.float().view(-1, hq, 1, 1) * (diag - j).abs().float()
    if bias is not None:
        m = m + bias.float()
    return m


def run_or_skip(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except polyattn.UnsupportedError as e:
        pytest.skip(f"the CUDA backend lacks this variant: {e}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("variant", ["window", "alibi", "bias", "window+alibi+bias"])
def test_variants_vs_sdpa(dtype, causal, variant):
    b, sq, sk, hq, hk, d = 2, 200, 256, 8, 2, 64
    torch.manual_seed(0)
    q, k, v = leaf(b, sq, hq, d, dtype=dtype), leaf(b, sk, hk, d, dtype=dtype), \
        leaf(b, sk, hk, d, dtype=dtype)
    d_o = torch.randn(b, sq, hq, d, dtype=dtype, device="cuda")
    window = (64, 16) if "window" in variant else None
    slopes = (2.0 ** -torch.arange(1, hq + 1, device="cuda", dtype=torch.float32)
              if "alibi" in variant else None)
    bias = (torch.randn(1, hq, sq, sk, device="cuda", dtype=torch.float32,
                        requires_grad=True) if "bias" in variant else None)

    def ours(q_, k_, v_):
        if window is None and bias is None:
            return polyattn.flash_attn_func(q_, k_, v_, causal=causal, alibi_slopes=slopes)
        return polyattn.attention(q_, k_, v_, layout="bshd",
                                  mask="causal-bottom-right" if causal else None,
                                  window=window, alibi_slopes=slopes, bias=bias)

    def theirs(q_, k_, v_):
        qt, kt, vt = (x.transpose(1, 2) for x in (q_, k_, v_))
        g = hq // hk
        kt, vt = kt.repeat_interleave(g, 1), vt.repeat_interleave(g, 1)
        m = variant_mask(sq, sk, hq, causal, window, slopes, bias, q_.device).to(dtype)
        return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=m).transpose(1, 2)

    got = run_or_skip(grads, ours, q, k, v, d_o)
    got_bias = bias.grad.clone() if bias is not None else None
    if bias is not None:
        bias.grad = None
    want = grads(theirs, q, k, v, d_o)
    for g_, w_ in zip(got, want):
        assert_close(g_, w_, dtype)
    if bias is not None:
        assert_close(got_bias, bias.grad, dtype)
