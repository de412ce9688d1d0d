"""FP8 (e4m3) inputs: torch.float8_e4m3fn tensors and polyattn.e4m3 NumPy bytes with
q_descale/k_descale/v_descale, against a float64 reference on the dequantized inputs (the
host backend computes in double and rounds O once, so float32 O is within 1e-6)."""
import numpy as np
import pytest

import polyattn
import reference

try:
    import torch
    HAS_FP8 = hasattr(torch, "float8_e4m3fn")
except ImportError:
    torch = None
    HAS_FP8 = False

needs_fp8 = pytest.mark.skipif(not HAS_FP8, reason="torch with float8_e4m3fn is not installed")
F32_TOL = 2e-6
BF16_TOL = 2.0 ** -8  # one rounding of the exact result to bf16 (8 significant bits)


def decode(b):
    """e4m3 bytes to float64 by the OCP formula (independent of torch and the library)."""
    b = np.asarray(b, dtype=np.uint8).astype(np.int64)
    sign = np.where(b >> 7, -1.0, 1.0)
    e, m = (b >> 3) & 15, b & 7
    mag = np.where(e == 0, m / 8.0 * 2.0 ** -6, (1 + m / 8.0) * 2.0 ** (e - 7.0))
    mag = np.where((b & 0x7F) == 0x7F, np.nan, mag)
    return sign * mag


def random_bytes(rng, *shape, max_exponent=8):
    """e4m3 bytes of magnitude below 2^(max_exponent - 6), subnormals and both zeros
    included (no NaN)."""
    sign = rng.integers(0, 2, shape)
    e = rng.integers(0, max_exponent + 1, shape)
    m = rng.integers(0, 8, shape)
    return ((sign << 7) | (e << 3) | m).astype(np.uint8)


def expected(qb, kb, vb, causal=False, descales=(1.0, 1.0, 1.0), scale=None, layout="bshd",
             mask=None):
    """The float64 attention of the decoded, descaled bytes, in `layout`."""
    q, k, v = (decode(x) * s for x, s in zip((qb, kb, vb), descales))
    if layout == "bshd":
        q, k, v = (reference.bshd(x) for x in (q, k, v))
    mask = mask or ("causal-bottom-right" if causal else None)
    o, lse, _ = reference.forward(q, k, v, mask, scale)
    return (reference.bshd(o) if layout == "bshd" else o), lse


def close(got, want, tol):
    got = np.asarray(got, dtype=np.float64)
    finite = np.abs(want[np.isfinite(want)])  # the LSE of a row without keys is -inf
    big = finite.max() if finite.size else 1.0
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * max(1.0, big))


def fp8(b):
    """A torch.float8_e4m3fn tensor of bytes b."""
    return torch.from_numpy(np.ascontiguousarray(b)).view(torch.float8_e4m3fn)


def to_np(t):
    return t.detach().to(torch.float64).numpy()


SHAPES = [  # (batch, seq_q, seq_kv, heads_q, heads_kv, head_dim)
    (2, 17, 23, 4, 2, 32),
    (1, 5, 5, 3, 1, 24),
    (3, 1, 37, 2, 2, 40),
    (1, 33, 9, 2, 1, 8),
]


def qkv_bytes(rng, shape, max_exponent=8):
    b, sq, sk, hq, hk, d = shape
    return (random_bytes(rng, b, sq, hq, d, max_exponent=max_exponent),
            random_bytes(rng, b, sk, hk, d, max_exponent=max_exponent),
            random_bytes(rng, b, sk, hk, d, max_exponent=max_exponent))


def test_decoder_agrees_with_torch_on_every_code():
    codes = np.arange(256, dtype=np.uint8)
    mine = decode(codes)
    assert mine[0x7E] == 448 and mine[0x01] == 2.0 ** -9 and mine[0x08] == 2.0 ** -6
    assert np.isnan(mine[0x7F]) and np.isnan(mine[0xFF]) and mine[0x80] == 0
    if HAS_FP8:
        np.testing.assert_array_equal(to_np(fp8(codes)), mine)


# ---- torch ---------------------------------------------------------------------------------

@needs_fp8
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("descales", [(1.0, 1.0, 1.0), (0.5, 3.0, 0.125)])
def test_torch_flash_attn_func(rng, shape, causal, descales):
    qb, kb, vb = qkv_bytes(rng, shape)
    q, k, v = fp8(qb), fp8(kb), fp8(vb)
    kwargs = dict(causal=causal, backend="host")
    if descales != (1.0, 1.0, 1.0):
        kwargs.update(q_descale=descales[0], k_descale=descales[1], v_descale=descales[2])
    want, lse_want = expected(qb, kb, vb, causal, descales)
    o = polyattn.flash_attn_func(q, k, v, **kwargs)
    assert o.dtype == torch.bfloat16 and tuple(o.shape) == want.shape
    close(to_np(o), want, BF16_TOL)
    for dt in (torch.float32, torch.float16):
        out = torch.full(want.shape, float("nan"), dtype=dt)
        o, lse, _ = polyattn.flash_attn_func(q, k, v, out=out, return_attn_probs=True, **kwargs)
        assert o is out
        close(to_np(o), want, F32_TOL if dt == torch.float32 else 2.0 ** -10)
        close(lse.numpy(), lse_want, F32_TOL)


@needs_fp8
@pytest.mark.parametrize("mask", [None, "causal-top-left"])
def test_torch_attention_bhsd_tensor_descales(rng, mask):
    qb, kb, vb = (random_bytes(rng, 2, 4, 11, 16), random_bytes(rng, 2, 2, 13, 16),
                  random_bytes(rng, 2, 2, 13, 16))
    ds = (torch.tensor([0.25]), torch.tensor(2.0, dtype=torch.float64), np.float32(1.5))
    out = torch.empty(2, 4, 11, 16)
    o, lse = polyattn.attention(fp8(qb), fp8(kb), fp8(vb), layout="bhsd", mask=mask,
                                scale=0.3, q_descale=ds[0], k_descale=ds[1], v_descale=ds[2],
                                return_lse=True, out=out, backend="host")
    want, lse_want = expected(qb, kb, vb, descales=(0.25, 2.0, 1.5), scale=0.3,
                              layout="bhsd", mask=mask)
    close(to_np(o), want, F32_TOL)
    close(lse.numpy(), lse_want, F32_TOL)


@needs_fp8
def test_torch_strided_and_large_values(rng):
    """Non-contiguous views, and the whole finite range (up to 448, softmax near one-hot)."""
    shape = (2, 9, 14, 4, 2, 16)
    qb, kb, vb = qkv_bytes(rng, shape, max_exponent=15)
    qb[qb & 0x7F == 0x7F] = 0x7E  # no NaN
    kb[kb & 0x7F == 0x7F] = 0x7E
    vb[vb & 0x7F == 0x7F] = 0x7E
    big = np.zeros((2, 14, 2, 48), np.uint8)
    big[..., 5:21] = kb
    k = fp8(big)[..., 5:21]
    assert not k.is_contiguous()
    out = torch.empty(2, 9, 4, 16)
    o = polyattn.flash_attn_func(fp8(qb), k, fp8(vb), causal=True, out=out,
                                 q_descale=2.0 ** -8, k_descale=2.0 ** -4, backend="host")
    close(to_np(o), expected(qb, kb, vb, True, (2.0 ** -8, 2.0 ** -4, 1.0))[0], F32_TOL)


@needs_fp8
def test_torch_varlen(rng):
    heads_q, heads_kv, d = 4, 2, 16
    lens_q, lens_k = [3, 0, 7], [5, 4, 9]
    cu_q = torch.tensor(np.concatenate([[0], np.cumsum(lens_q)]), dtype=torch.int32)
    cu_k = torch.tensor(np.concatenate([[0], np.cumsum(lens_k)]), dtype=torch.int32)
    qb = random_bytes(rng, sum(lens_q), heads_q, d)
    kb, vb = (random_bytes(rng, sum(lens_k), heads_kv, d) for _ in range(2))
    ds = (1.25, 0.5, 2.0)
    o = polyattn.flash_attn_varlen_func(fp8(qb), fp8(kb), fp8(vb), cu_q, cu_k, 7, 9,
                                        causal=True, q_descale=ds[0], k_descale=ds[1],
                                        v_descale=ds[2], out=torch.empty(10, heads_q, d),
                                        backend="host")
    for i in range(3):
        q0, q1, k0, k1 = int(cu_q[i]), int(cu_q[i + 1]), int(cu_k[i]), int(cu_k[i + 1])
        if q1 == q0:
            continue
        want, _ = expected(qb[None, q0:q1], kb[None, k0:k1], vb[None, k0:k1], True, ds)
        close(to_np(o[q0:q1]), want[0], F32_TOL)


@needs_fp8
@pytest.mark.parametrize("paged", [False, True])
def test_torch_kvcache_append(rng, paged):
    """Appended e4m3 rows land in the cache as bytes and are read in k's/v's scale."""
    b, sq, hq, hk, d, cap = 2, 2, 4, 2, 16, 32
    kc_b, vc_b = (random_bytes(rng, b, cap, hk, d) for _ in range(2))
    kn_b, vn_b = (random_bytes(rng, b, sq, hk, d) for _ in range(2))
    qb = random_bytes(rng, b, sq, hq, d)
    lens = np.array([5, 17], np.int32)
    ds = (0.75, 1.5, 0.25)
    kc, vc = fp8(kc_b.copy()), fp8(vc_b.copy())
    kwargs = dict(cache_seqlens=torch.from_numpy(lens), causal=True, q_descale=ds[0],
                  k_descale=ds[1], v_descale=ds[2], backend="host")
    if paged:  # blocks of 16 rows, sequence i in blocks table[i]
        table = torch.tensor([[3, 0], [1, 2]], dtype=torch.int32)
        kp = torch.zeros(4, 16, hk, d, dtype=torch.float8_e4m3fn)
        vp = torch.zeros(4, 16, hk, d, dtype=torch.float8_e4m3fn)
        for i in range(b):
            for j in range(2):
                kp[table[i, j]] = kc[i, 16 * j:16 * (j + 1)]
                vp[table[i, j]] = vc[i, 16 * j:16 * (j + 1)]
        kc, vc = kp, vp
        kwargs["block_table"] = table
    out = torch.empty(b, sq, hq, d)
    o = polyattn.flash_attn_with_kvcache(fp8(qb), kc, vc, fp8(kn_b), fp8(vn_b), out=out,
                                         **kwargs)
    for i in range(b):
        n = int(lens[i])
        k_all = np.concatenate([kc_b[i:i + 1, :n], kn_b[i:i + 1]], axis=1)
        v_all = np.concatenate([vc_b[i:i + 1, :n], vn_b[i:i + 1]], axis=1)
        want, _ = expected(qb[i:i + 1], k_all, v_all, True, ds)
        close(to_np(o[i:i + 1]), want, F32_TOL)
    if not paged:  # the appended bytes are in the cache, unchanged
        got = kc.view(torch.uint8).numpy()
        for i in range(b):
            np.testing.assert_array_equal(got[i, lens[i]:lens[i] + sq], kn_b[i])


# ---- NumPy and DLPack ------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES[:2])
@pytest.mark.parametrize("causal", [False, True])
def test_numpy_bytes(rng, shape, causal):
    qb, kb, vb = qkv_bytes(rng, shape)
    ds = (0.5, 1.0, 4.0)
    q, k, v = (polyattn.e4m3(x) for x in (qb, kb, vb))
    o = polyattn.flash_attn_func(q, k, v, causal=causal, q_descale=ds[0], v_descale=ds[2])
    assert isinstance(o, np.ndarray) and o.dtype == np.float32  # NumPy: float32 by default
    want, _ = expected(qb, kb, vb, causal, ds)
    close(o, want, F32_TOL)
    out = np.full(want.shape, np.nan, np.float16)
    assert polyattn.flash_attn_func(q, k, v, causal=causal, q_descale=ds[0],
                                    v_descale=ds[2], out=out) is out
    close(out, want, 2.0 ** -10)


def test_numpy_bytes_attention_and_explain(rng):
    qb, kb, vb = (random_bytes(rng, 1, 2, 7, 8) for _ in range(3))
    o = polyattn.attention(polyattn.e4m3(qb), polyattn.e4m3(kb), polyattn.e4m3(vb),
                           mask="causal-top-left", k_descale=np.array([0.5], np.float32))
    close(o, expected(qb, kb, vb, descales=(1, 0.5, 1), layout="bhsd",
                      mask="causal-top-left")[0], F32_TOL)
    info = polyattn.explain(polyattn.e4m3(qb), polyattn.e4m3(kb), polyattn.e4m3(vb),
                            backend="host")
    assert info["backend"] == "host"
    info = polyattn.explain((1, 2, 7, 8), (1, 2, 7, 8), (1, 2, 7, 8), dtype="e4m3",
                            backend="host", algo="flash")
    assert info["algo"] == "flash"


class _Producer:
    """Any DLPack producer (here around a torch tensor): float8_e4m3fn is DLPack code 10."""

    def __init__(self, t):
        self.t = t

    def __dlpack__(self, stream=None):
        return self.t.__dlpack__()

    def __dlpack_device__(self):
        return self.t.__dlpack_device__()


@needs_fp8
def test_dlpack_float8(rng):
    qb, kb, vb = qkv_bytes(rng, SHAPES[1])
    o = polyattn.flash_attn_func(*(_Producer(fp8(x)) for x in (qb, kb, vb)), k_descale=0.5)
    close(np.asarray(o), expected(qb, kb, vb, descales=(1, 0.5, 1))[0], F32_TOL)
    # uint8 bytes from any producer, marked as e4m3
    o = polyattn.flash_attn_func(*(polyattn.e4m3(_Producer(torch.from_numpy(x)))
                                   for x in (qb, kb, vb)), k_descale=0.5)
    close(np.asarray(o), expected(qb, kb, vb, descales=(1, 0.5, 1))[0], F32_TOL)


# ---- the repeated-call fast path -------------------------------------------------------------

@needs_fp8
@pytest.mark.parametrize("fn", ["flash", "attention", "kvcache"])
def test_fast_path_keys_descales(rng, fn):
    polyattn.clear_caches()
    qb, kb, vb = qkv_bytes(rng, SHAPES[0])
    q, k, v = fp8(qb), fp8(kb), fp8(vb)

    def call(**ds):
        if fn == "flash":
            return polyattn.flash_attn_func(q, k, v, causal=True, **ds)
        if fn == "attention":
            return polyattn.attention(q, k, v, layout="bshd", mask="causal-bottom-right", **ds)
        return polyattn.flash_attn_with_kvcache(q, k, v, causal=True, **ds)

    results = {}
    for ds in [(1.0, 1.0, 1.0), (0.5, 2.0, 3.0), (1.0, 1.0, 1.0), (0.5, 2.0, 3.0),
               (0.5, 2.0, 0.25)]:
        o = call(q_descale=ds[0], k_descale=ds[1], v_descale=ds[2])
        assert o.dtype == torch.bfloat16
        close(to_np(o), expected(qb, kb, vb, True, ds)[0], BF16_TOL)
        results[ds] = to_np(o)
    assert polyattn.cache_info()["fast_calls"] == 3  # one runner per distinct descales
    # A float out= of another dtype is another signature too.
    out = torch.empty(q.shape[:3] + (v.shape[3],))
    o = call(q_descale=0.5, k_descale=2.0, v_descale=3.0, out=out) if fn != "kvcache" else \
        polyattn.flash_attn_with_kvcache(q, k, v, causal=True, q_descale=0.5, k_descale=2.0,
                                         v_descale=3.0, out=out)
    assert o is out
    close(to_np(o), expected(qb, kb, vb, True, (0.5, 2.0, 3.0))[0], F32_TOL)
    # A descale tensor changed in place between calls is read again.
    t = torch.tensor([0.5])
    first = to_np(call(q_descale=t))
    t.fill_(2.0)
    second = to_np(call(q_descale=t))
    close(first, expected(qb, kb, vb, True, (0.5, 1, 1))[0], BF16_TOL)
    close(second, expected(qb, kb, vb, True, (2.0, 1, 1))[0], BF16_TOL)


# ---- errors ------------------------------------------------------------------------------

@needs_fp8
def test_errors(rng):
    qb, kb, vb = qkv_bytes(rng, SHAPES[1])
    q, k, v = fp8(qb), fp8(kb), fp8(vb)
    with pytest.raises(TypeError, match="k: dtype bf16 differs from q's e4m3"):
        polyattn.flash_attn_func(q, k.to(torch.bfloat16), v)
    with pytest.raises(TypeError, match="v: dtype f32 differs"):
        polyattn.flash_attn_func(q, k, v.float())
    with pytest.raises(TypeError, match="out: dtype e4m3"):
        polyattn.flash_attn_func(q, k, v, out=torch.empty_like(q))
    for name in ("q_descale", "k_descale", "v_descale"):
        for bad in (-1.0, 0.0, float("nan"), float("inf"), "2", True, [1.0],
                    torch.ones(2, 1), np.ones(3, np.float32), torch.tensor([1], dtype=torch.int32)):
            with pytest.raises(ValueError, match=name):
                polyattn.flash_attn_func(q, k, v, **{name: bad})
            with pytest.raises(ValueError, match=name):
                polyattn.attention(q, k, v, **{name: bad})
    with pytest.raises(ValueError, match="q_descale.*e4m3"):
        polyattn.flash_attn_func(q.float(), k.float(), v.float(), q_descale=0.5)
    # 1 (or None) is allowed with any dtype
    polyattn.flash_attn_func(q.float(), k.float(), v.float(), q_descale=1.0)
    # Forward only: no gradients.
    qg = q.clone().requires_grad_()
    with pytest.raises(polyattn.UnsupportedError, match="e4m3|backward"):
        polyattn.flash_attn_func(qg, k, v, backend="host")
    with pytest.raises(polyattn.UnsupportedError):
        polyattn.explain(q, k, v, layout="bshd", backward=True, backend="host")


def test_numpy_errors(rng):
    qb, kb, vb = qkv_bytes(rng, SHAPES[1])
    with pytest.raises(TypeError, match="polyattn.e4m3"):
        polyattn.flash_attn_func(qb, kb, vb)
    with pytest.raises(TypeError, match="e4m3: dtype float32"):
        polyattn.e4m3(qb.astype(np.float32))
    with pytest.raises(TypeError, match="e4m3: expected a uint8 array"):
        polyattn.e4m3([1, 2, 3])
    with pytest.raises(TypeError, match="k: dtype f32 differs from q's e4m3"):
        polyattn.flash_attn_func(polyattn.e4m3(qb), kb.astype(np.float32), polyattn.e4m3(vb))


def test_opencl(rng):
    """The OpenCL flash kernels take e4m3 (host arrays are copied there): O within f32
    compute of the float64 reference, descales applied; unfused and fused refuse it."""
    if not any(d["backend"] == "opencl" for d in polyattn.devices()):
        pytest.skip("no OpenCL device")
    qb, kb, vb = qkv_bytes(rng, SHAPES[0])
    descales = (0.5, 0.25, 1.5)
    o, lse = polyattn.attention(*(polyattn.e4m3(x) for x in (qb, kb, vb)), layout="bshd",
                                mask="causal-bottom-right", q_descale=descales[0],
                                k_descale=descales[1], v_descale=descales[2], return_lse=True,
                                backend="opencl")
    want_o, want_lse = expected(qb, kb, vb, causal=True, descales=descales)
    close(o, want_o, 1e-4)
    close(lse, want_lse, 1e-5)
    for algo in ("unfused", "fused"):
        with pytest.raises(polyattn.UnsupportedError, match="e4m3"):
            polyattn.flash_attn_func(*(polyattn.e4m3(x) for x in (qb, kb, vb)),
                                     backend="opencl", algo=algo)


@needs_fp8
def test_cuda_runs():
    """CUDA's flash reads e4m3 (the shared generic kernel): it agrees with the host."""
    if not torch.cuda.is_available():
        pytest.skip("torch.cuda is not available")
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 37, 2, 64).to(torch.float8_e4m3fn) for _ in range(3))
    kw = dict(causal=True, q_descale=0.5, k_descale=0.25, v_descale=2.0)
    want = polyattn.flash_attn_func(q, k, v, **kw)
    got = polyattn.flash_attn_func(q.cuda(), k.cuda(), v.cuda(), **kw)
    assert got.device.type == "cuda" and got.dtype == torch.bfloat16
    torch.testing.assert_close(got.cpu().float(), want.float(), rtol=1e-2, atol=1e-2)


@needs_fp8
def test_cuda_tensor_cores():
    """CUDA's tensor-core e4m3 paths (the defaults where they apply) against the exact forward
    on the host: dense head dim 128 on sm_90 (the Hopper kernel's FP8 products, P rounded to
    e4m3: within 5e-2 relative L2, the Hopper issue's bound) and decode over a KV cache
    (the serving kernel, bytes converted to f16: within f16's rounding)."""
    if not torch.cuda.is_available():
        pytest.skip("torch.cuda is not available")
    torch.manual_seed(1)
    kw = dict(causal=True, q_descale=0.5, k_descale=0.25, v_descale=2.0)

    def rel_l2(got, want):
        got, want = got.cpu().double(), want.double()
        return float((got - want).norm() / want.norm())

    q, k, v = (torch.randn(2, 300, 4, 128).to(torch.float8_e4m3fn) for _ in range(3))
    want = polyattn.flash_attn_func(q, k, v, **kw)
    got = polyattn.flash_attn_func(q.cuda(), k.cuda(), v.cuda(), **kw)
    assert got.device.type == "cuda" and torch.isfinite(got.float()).all()
    assert rel_l2(got, want) < 5e-2
    # decode: one query of 8 heads against 2000 cached keys of 2 KV heads a sequence
    q = torch.randn(3, 1, 8, 128).to(torch.float8_e4m3fn)
    kc, vc = (torch.randn(3, 2000, 2, 128).to(torch.float8_e4m3fn) for _ in range(2))
    lens = torch.tensor([2000, 1, 777], dtype=torch.int32)
    want = polyattn.flash_attn_with_kvcache(q, kc, vc, cache_seqlens=lens, **kw)
    got = polyattn.flash_attn_with_kvcache(q.cuda(), kc.cuda(), vc.cuda(),
                                           cache_seqlens=lens.cuda(), **kw)
    assert rel_l2(got, want) < 5e-3
