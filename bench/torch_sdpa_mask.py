#!/usr/bin/env python3
"""PyTorch SDPA with an additive float attn_mask (the bias polyattn takes as `--bias`), timed
with CUDA events per backend that accepts one (efficient, cudnn, math), on the shapes
`polyattn bench --suite custom --shape ... --bias` times: one JSON line per shape and backend.

    python3 bench/torch_sdpa_mask.py --shapes 1,16,16,2048,2048,128;... [--dtype bf16]

The mask is [1, heads, seq_q, seq_kv] of uniform values in [-1, 1) in the input dtype (as
the bench's bias); median of --reps timed calls after --warmup."""
import argparse
import json

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {"efficient": SDPBackend.EFFICIENT_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
            "math": SDPBackend.MATH}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", required=True, help="B,HQ,HKV,SQ,SKV,D[;...]")
    ap.add_argument("--dtype", default="bf16", choices=["f16", "bf16", "f32"])
    ap.add_argument("--backends", default="efficient,cudnn")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()
    dt = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[args.dtype]
    for spec in args.shapes.split(";"):
        b, hq, hkv, sq, skv, d = (int(x) for x in spec.split(","))
        q = torch.randn(b, hq, sq, d, dtype=dt, device="cuda")
        k = torch.randn(b, hkv, skv, d, dtype=dt, device="cuda")
        v = torch.randn(b, hkv, skv, d, dtype=dt, device="cuda")
        if hkv != hq:
            k, v = k.repeat_interleave(hq // hkv, 1), v.repeat_interleave(hq // hkv, 1)
        mask = (torch.rand(1, hq, sq, skv, device="cuda") * 2 - 1).to(dt)
        for name in args.backends.split(","):
            row = {"shape": spec, "dtype": args.dtype, "backend": name}
            try:
                with sdpa_kernel(BACKENDS[name]):
                    for _ in range(args.warmup):
                        F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                    times = []
                    for _ in range(args.reps):
                        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                        s.record()
                        F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                        e.record()
                        torch.cuda.synchronize()
                        times.append(s.elapsed_time(e))
                times.sort()
                row["ms"] = times[len(times) // 2]
                row["tflops"] = 4 * b * hq * sq * skv * d / (row["ms"] * 1e-3) / 1e12
            except RuntimeError as err:
                row["error"] = str(err).splitlines()[0][:200]
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
