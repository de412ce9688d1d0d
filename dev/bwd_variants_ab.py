# The backward's time with score variants (plain, softcap, ALiBi, window) through the Python
# package's autograd, on whatever kernels POLYATTN_FORCE leaves the plan (run once per
# setting: cuda.flash_bwd=simt against the default), beside PyTorch SDPA's plain backward.
# Prints one JSON line per measurement: backward milliseconds (CUDA events, median of 15)
# and TFLOP/s counted on visible pairs (2.5x the forward's FLOPs).
# Usage: bwd_variants_ab.py [B,H,N,D]   (default 4,16,4096,128, bf16, causal bottom-right)
import json
import os
import sys

import polyattn
import torch
from cuda_events import median_ms

b, h, n, d = (int(x) for x in (sys.argv[1] if len(sys.argv) > 1 else "4,16,4096,128").split(","))
torch.manual_seed(0)
q, k, v = (torch.randn(b, n, h, d, device="cuda", dtype=torch.bfloat16, requires_grad=True)
           for _ in range(3))
g = torch.randn(b, n, h, d, device="cuda", dtype=torch.bfloat16)
slopes = torch.rand(h, device="cuda", dtype=torch.float32) * 0.1
variants = {"plain": {}, "softcap": {"softcap": 30.0}, "alibi": {"alibi_slopes": slopes},
            "window": {"window_size": (1024, 0)}}


def pairs(window):
    """Visible (query, key) pairs of one (batch, head): causal, and a left window."""
    left = window[0] if window else -1
    return sum(min(i + 1, left + 1 if left >= 0 else i + 1) for i in range(n))


for name, kw in variants.items():
    o = polyattn.flash_attn_func(q, k, v, causal=True, **kw)
    ms = median_ms(lambda: torch.autograd.grad(o, (q, k, v), g, retain_graph=True))
    flops = 2.5 * 4 * b * h * pairs(kw.get("window_size")) * d
    print(json.dumps(dict(impl="polyattn", force=os.environ.get("POLYATTN_FORCE", ""),
                          variant=name, ms=ms, tflops=flops / ms / 1e9)), flush=True)
if not os.environ.get("POLYATTN_FORCE"):
    qt, kt, vt = (x.detach().transpose(1, 2).requires_grad_() for x in (q, k, v))
    for be, sb in (("flash", torch.nn.attention.SDPBackend.FLASH_ATTENTION),
                   ("cudnn", torch.nn.attention.SDPBackend.CUDNN_ATTENTION)):
        with torch.nn.attention.sdpa_kernel(sb):
            o = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, is_causal=True)
            gt = g.transpose(1, 2)
            ms = median_ms(lambda: torch.autograd.grad(o, (qt, kt, vt), gt, retain_graph=True))
        print(json.dumps(dict(impl="torch-" + be, variant="plain", ms=ms,
                              tflops=2.5 * 4 * b * h * pairs(None) * d / ms / 1e9)), flush=True)
