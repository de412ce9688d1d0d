#!/usr/bin/env python3
"""Times the backward of torch.nn.functional.scaled_dot_product_attention with each SDPA
backend (flash, cudnn, efficient) on the shape lines of shapes.py (stdin), the way
cuda_bwd_bench times polyattn_backward: the forward runs once outside the timing, then
torch.autograd.grad(out, (q, k, v), d_o, retain_graph=True) is timed alone with CUDA
events (3 warm-up calls, median).  FLOPs: 2.5 x the forward's (halved when causal).
One JSON object per line on stdout."""
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def time_one(fn, max_reps=30):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(3):
        fn()
    end.record()
    torch.cuda.synchronize()
    est = start.elapsed_time(end) / 3
    reps = max(5, min(max_reps, int(300 / est) if est > 0 else max_reps))
    times = []
    for _ in range(reps):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2], reps


def main():
    only = sys.argv[1].split(",") if len(sys.argv) > 1 else list(BACKENDS)
    print(json.dumps({"impl": "torch-version", "torch": torch.__version__,
                      "cudnn": torch.backends.cudnn.version(),
                      "device": torch.cuda.get_device_name()}), flush=True)
    seen = set()
    for line in sys.stdin:
        if not line.strip() or line.startswith("#"):
            continue
        suite, dt, b, hq, hk, sq, skv, d, causal, _ = line.split()
        b, hq, hk, sq, skv, d, causal = map(int, (b, hq, hk, sq, skv, d, causal))
        key = (suite, dt, b, hq, hk, sq, skv, d, causal)
        if key in seen:
            continue
        seen.add(key)
        dtype = DTYPES[dt]
        gen = torch.Generator(device="cuda").manual_seed(1)
        mk = lambda h, s: (torch.rand(b, h, s, d, device="cuda", dtype=dtype, generator=gen) * 2 - 1)
        q, k, v = mk(hq, sq), mk(hk, skv), mk(hk, skv)
        d_o = mk(hq, sq)
        flops = 2.5 * 4.0 * b * hq * sq * skv * d * (0.5 if causal else 1.0)
        for name in only:
            rec = {"impl": "torch-" + name, "pass": "backward", "suite": suite, "dtype": dt,
                   "batch": b, "heads_q": hq, "heads_kv": hk, "seq_q": sq, "seq_kv": skv,
                   "head_dim": d, "causal": causal}
            try:
                qq, kk, vv = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
                with sdpa_kernel([BACKENDS[name]]):
                    out = F.scaled_dot_product_attention(qq, kk, vv, is_causal=bool(causal),
                                                         enable_gqa=hq != hk)
                    fn = lambda: torch.autograd.grad(out, (qq, kk, vv), d_o, retain_graph=True)
                    ms, reps = time_one(fn)
                rec.update(ok=True, ms=ms, tflops=flops / (ms * 1e-3) / 1e12, reps=reps)
                del out, qq, kk, vv
            except Exception as e:  # backend refuses the shape/dtype, or out of memory
                rec.update(ok=False, error=str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
            torch.cuda.empty_cache()
            print(json.dumps(rec), flush=True)
        del q, k, v, d_o
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
