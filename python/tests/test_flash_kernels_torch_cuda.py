"""The dense flash forward on torch CUDA tensors against a float64 reference, at the head dims
the tensor-core kernels have (64, 96, 128, 192, 256), f16 and bf16: odd lengths that leave
partial query and key tiles, several key tiles (so that the load ring wraps), both causal
alignments (including rows that see no key), GQA, bshd and bhsd layouts, large magnitudes,
the LSE.  Skipped without a CUDA device.  On sm_90 the warp-specialized Hopper kernel runs
them by default; POLYATTN_FORCE=cuda.flash=mma runs the mma.sync kernel instead."""
import itertools
import math
import os
import random

import pytest

torch = pytest.importorskip("torch", reason="torch is not installed")
if not torch.cuda.is_available():
    pytest.skip("torch.cuda is not available (no CUDA device or a CPU-only torch)",
                allow_module_level=True)

import polyattn  # noqa: E402

TOL = {torch.float16: 4e-3, torch.bfloat16: 2e-2}


def reference(q, k, v, mask, scale):
    """[b, h, s, d] float64; returns (o, lse) with O = 0, LSE = -inf for rows seeing no key."""
    q, k, v = q.double(), k.double(), v.double()
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, 1), v.repeat_interleave(g, 1)
    s = torch.einsum("bhqd,bhkd->bhqk", q, k) * scale
    sq, skv = q.shape[2], k.shape[2]
    i = torch.arange(sq, device=q.device)[:, None]
    j = torch.arange(skv, device=q.device)[None, :]
    if mask == "causal-top-left":
        s = s.masked_fill(j > i, float("-inf"))
    elif mask == "causal-bottom-right":
        s = s.masked_fill(j > i + skv - sq, float("-inf"))
    lse = torch.logsumexp(s, -1)
    p = torch.exp(s - torch.where(torch.isinf(lse), torch.zeros_like(lse), lse)[..., None])
    return torch.einsum("bhqk,bhkd->bhqd", p, v), lse


GRID = list(itertools.product((torch.bfloat16, torch.float16), (64, 96, 128, 192, 256),
                              ((1, 4, 4, 200, 1000), (2, 8, 2, 129, 129), (1, 2, 2, 1031, 517),
                               (1, 2, 1, 64, 2048), (2, 3, 3, 777, 777)),
                              (None, "causal-top-left", "causal-bottom-right"),
                              ("bhsd", "bshd")))
CASES = random.Random(11).sample(GRID, 60)


@pytest.mark.parametrize("dtype,d,shape,mask,layout", CASES)
def test_dense_forward(dtype, d, shape, mask, layout):
    b, hq, hk, sq, skv = shape
    torch.manual_seed(hash((d, shape, mask, layout)) % 2**31)
    mag = 4.0 if d == 128 else 1.0  # large scores: the online softmax's rescaling
    q = torch.randn(b, hq, sq, d, device="cuda", dtype=dtype) * mag
    k = torch.randn(b, hk, skv, d, device="cuda", dtype=dtype)
    v = torch.randn(b, hk, skv, d, device="cuda", dtype=dtype)
    scale = 1.0 / math.sqrt(d)
    ref_o, ref_lse = reference(q, k, v, mask, scale)
    args = (q, k, v)
    if layout == "bshd":
        args = tuple(x.transpose(1, 2).contiguous() for x in args)
    out = torch.full_like(args[0], float("nan"))  # poisoned: every element must be written
    try:
        o, lse = polyattn.attention(*args, layout=layout, mask=mask, scale=scale, algo="flash",
                                    return_lse=True, out=out)
    except polyattn.UnsupportedError as e:
        if not os.environ.get("POLYATTN_FORCE"):
            raise
        pytest.skip(f"the forced kernel does not take it: {e}")
    if layout == "bshd":
        o = o.transpose(1, 2)
    err = (o.double() - ref_o).abs().max().item()
    assert math.isfinite(err) and err <= TOL[dtype] * (1 + mag / 4), f"O max error {err:.3g}"
    finite = torch.isfinite(ref_lse)
    assert torch.equal(torch.isfinite(lse), finite), "LSE -inf exactly on rows seeing no key"
    lerr = (lse.double() - ref_lse)[finite].abs().max().item() if finite.any() else 0.0
    assert lerr <= 1e-3 * max(1.0, mag), f"LSE max error {lerr:.3g}"
