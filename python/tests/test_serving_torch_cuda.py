"""The serving functions on torch CUDA tensors against a float64 per-sequence reference:
flash_attn_with_kvcache on dense and paged caches (shuffled blocks of 16, 64 and 256), with
and without appended rows, GQA, 1 to 16 queries, causal or not, forced and chosen key
splits, window and softcap; flash_attn_varlen_func with empty and odd sequences.  Skipped
without a CUDA device.  POLYATTN_FORCE=cuda.flash=mma in the environment runs the same
cases on CUDA's tensor-core serving kernel."""
import itertools
import math
import random

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
if not torch.cuda.is_available():
    pytest.skip("torch.cuda is not available (no CUDA device or a CPU-only torch)",
                allow_module_level=True)

import polyattn  # noqa: E402

TOL = {torch.float16: 4e-3, torch.bfloat16: 2e-2, torch.float32: 1e-4}


def reference(q, k, v, causal, scale, window=(-1, -1), softcap=0.0):
    """One sequence in float64: q [sq, hq, d], k and v [skv, hk, d]; bottom-right diagonal."""
    sq, hq, _ = q.shape
    skv, hk, _ = k.shape
    if sq == 0 or skv == 0:  # no query, or no key: O = 0
        return torch.zeros(sq, hq, v.shape[2], dtype=q.dtype, device=q.device)
    k, v = k.repeat_interleave(hq // hk, 1), v.repeat_interleave(hq // hk, 1)
    s = torch.einsum("qhd,khd->hqk", q, k) * scale
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    i = torch.arange(sq, device=q.device)[:, None]
    j = torch.arange(skv, device=q.device)[None, :]
    diag = i + skv - sq
    keep = torch.ones(sq, skv, dtype=torch.bool, device=q.device)
    if causal:
        keep &= j <= diag
    if window[0] >= 0:
        keep &= j >= diag - window[0]
    if window[1] >= 0:
        keep &= j <= diag + window[1]
    s = s.masked_fill(~keep[None], float("-inf"))
    m = s.amax(-1, keepdim=True)
    m = torch.where(torch.isinf(m), torch.zeros_like(m), m)
    p = torch.exp(s - m)
    l = p.sum(-1, keepdim=True)
    return torch.einsum("hqk,khd->qhd", p / torch.where(l > 0, l, torch.ones_like(l)), v)


def check(out, ref, dtype):
    err = (out.double() - ref).abs().max().item() if out.numel() else 0.0
    assert math.isfinite(err) and err <= TOL[dtype], f"max error {err:.3g}"


GRID = list(itertools.product((torch.bfloat16, torch.float16, torch.float32), (64, 128, 96),
                              ((8, 8), (32, 8), (16, 2)), (1, 5, 16), (0, 16, 64, 256),
                              (True, False), (False, True)))
CASES = random.Random(7).sample(GRID, 48)


@pytest.mark.parametrize("dtype,d,heads,sq,block,causal,append", CASES)
def test_kvcache(dtype, d, heads, sq, block, causal, append):
    rng = random.Random(hash((d, sq, block, causal, append)) & 0xffff)
    torch.manual_seed(rng.randrange(1 << 30))
    b, (hq, hk) = 3, heads
    cap = 768 if block == 256 else 512
    new = sq if append else 0
    lens = [cap - new] + [rng.randint(0, cap - new) for _ in range(b - 1)]
    q = torch.randn(b, sq, hq, d, dtype=dtype, device="cuda")
    k_log = torch.randn(b, cap, hk, d, dtype=dtype, device="cuda")
    v_log = torch.randn(b, cap, hk, d, dtype=dtype, device="cuda")
    kn = torch.randn(b, new, hk, d, dtype=dtype, device="cuda") if append else None
    vn = torch.randn(b, new, hk, d, dtype=dtype, device="cuda") if append else None
    seqlens = torch.tensor(lens, dtype=torch.int32, device="cuda")
    splits = rng.choice([0, 1, 3, 7])
    if block:
        per = cap // block
        table = torch.randperm(b * per + 3, device="cuda")[: b * per].reshape(b, per)
        table = table.to(torch.int32)
        kc = torch.randn(b * per + 3, block, hk, d, dtype=dtype, device="cuda")
        vc = torch.randn_like(kc)
        for i in range(b):
            for n in range(per):
                kc[table[i, n]] = k_log[i, n * block:(n + 1) * block]
                vc[table[i, n]] = v_log[i, n * block:(n + 1) * block]
        o = polyattn.flash_attn_with_kvcache(q, kc, vc, k=kn, v=vn, cache_seqlens=seqlens,
                                             block_table=table, causal=causal,
                                             num_splits=splits)
    else:
        kc, vc = k_log.clone(), v_log.clone()
        o = polyattn.flash_attn_with_kvcache(q, kc, vc, k=kn, v=vn, cache_seqlens=seqlens,
                                             causal=causal, num_splits=splits)
    ref = torch.empty(b, sq, hq, d, dtype=torch.float64, device="cuda")
    for i in range(b):
        kk, vv = k_log[i, :lens[i]], v_log[i, :lens[i]]
        if append:
            kk, vv = torch.cat([kk, kn[i]]), torch.cat([vv, vn[i]])
        ref[i] = reference(q[i].double(), kk.double(), vv.double(), causal, d ** -0.5)
    check(o, ref, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_kvcache_window_softcap_long(dtype):
    torch.manual_seed(3)
    b, sq, hq, hk, d, cap = 2, 4, 32, 8, 128, 16384
    q = torch.randn(b, sq, hq, d, dtype=dtype, device="cuda")
    kc = torch.randn(b, cap, hk, d, dtype=dtype, device="cuda")
    vc = torch.randn_like(kc)
    lens = torch.tensor([cap, 9000], dtype=torch.int32, device="cuda")
    o = polyattn.flash_attn_with_kvcache(q, kc, vc, cache_seqlens=lens, causal=True,
                                         window_size=(700, 0), softcap=30.0)
    for i in range(b):
        n = int(lens[i])
        ref = reference(q[i].double(), kc[i, :n].double(), vc[i, :n].double(), True, d ** -0.5,
                        (700, 0), 30.0)
        check(o[i], ref, dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("heads", [(8, 8), (8, 2)])
def test_varlen(dtype, causal, heads):
    torch.manual_seed(11)
    hq, hk = heads
    d = 128
    lens_q, lens_k = [17, 0, 300, 1, 129], [17, 40, 333, 0, 500]
    cq = torch.tensor([0] + list(itertools.accumulate(lens_q)), dtype=torch.int32, device="cuda")
    ck = torch.tensor([0] + list(itertools.accumulate(lens_k)), dtype=torch.int32, device="cuda")
    q = torch.randn(sum(lens_q), hq, d, dtype=dtype, device="cuda")
    k = torch.randn(sum(lens_k), hk, d, dtype=dtype, device="cuda")
    v = torch.randn_like(k)
    o = polyattn.flash_attn_varlen_func(q, k, v, cq, ck, max(lens_q), max(lens_k), causal=causal)
    for i in range(len(lens_q)):
        a, e, x, y = int(cq[i]), int(cq[i + 1]), int(ck[i]), int(ck[i + 1])
        if e > a:
            ref = reference(q[a:e].double(), k[x:y].double(), v[x:y].double(), causal, d ** -0.5)
            check(o[a:e], ref, dtype)
