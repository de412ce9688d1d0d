#!/usr/bin/env python3
"""Times torch.nn.functional.scaled_dot_product_attention with each backend (flash, cudnn,
efficient, math) on the shape lines of seed_shapes.py (stdin), the same way cuda_bench does
(a fixed copy of the original torch_sdpa.py, so the seed numbers keep one method):
warm-up, CUDA events around each call, median, inputs rotated when one set fits in L2.
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
    "math": SDPBackend.MATH,
}
DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def time_one(fn, sets, max_reps=50):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for i in range(3):
        fn(*sets[i % len(sets)])
    end.record()
    torch.cuda.synchronize()
    est = start.elapsed_time(end) / 3
    reps = max(5, min(max_reps, int(300 / est) if est > 0 else max_reps))
    times = []
    for r in range(reps):
        s = sets[r % len(sets)]
        start.record()
        fn(*s)
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
        set_bytes = (2 * b * hq * sq * d + 2 * b * hk * skv * d) * dtype.itemsize
        nsets = min(8, (150 << 20) // set_bytes + 1)
        gen = torch.Generator(device="cuda").manual_seed(1)
        sets = []
        for _ in range(nsets):
            q = torch.rand(b, hq, sq, d, device="cuda", dtype=dtype, generator=gen) * 2 - 1
            k = torch.rand(b, hk, skv, d, device="cuda", dtype=dtype, generator=gen) * 2 - 1
            v = torch.rand(b, hk, skv, d, device="cuda", dtype=dtype, generator=gen) * 2 - 1
            sets.append((q, k, v))
        flops = 4.0 * b * hq * sq * skv * d * (0.5 if causal else 1.0)
        for name in only:
            rec = {"impl": "torch-" + name, "suite": suite, "dtype": dt, "batch": b,
                   "heads_q": hq, "heads_kv": hk, "seq_q": sq, "seq_kv": skv,
                   "head_dim": d, "causal": causal}
            try:
                with sdpa_kernel([BACKENDS[name]]):
                    fn = lambda q, k, v: F.scaled_dot_product_attention(
                        q, k, v, is_causal=bool(causal), enable_gqa=hq != hk)
                    ms, reps = time_one(fn, sets)
                rec.update(ok=True, ms=ms, tflops=flops / (ms * 1e-3) / 1e12, reps=reps)
            except Exception as e:  # backend refuses the shape/dtype, or out of memory
                rec.update(ok=False, error=str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
            torch.cuda.empty_cache()
            print(json.dumps(rec), flush=True)
        del sets
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
