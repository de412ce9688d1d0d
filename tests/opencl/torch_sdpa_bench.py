"""PyTorch SDPA (efficient-attention backend) on the shapes ocl_bench times, for comparison.

Same method: random inputs (never zeros), rotated input sets, warm-up, CUDA events, median.
TFLOP/s counts 4*batch*heads*N*N*D, halved for causal.  Writes JSON to argv[1].
"""
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def shapes():
    for seq, d, batch in [(128, 512, 16), (512, 768, 8), (1024, 1024, 4), (2048, 1024, 2), (4096, 1024, 1)]:
        yield ("seed", batch, 1, seq, d, torch.float32, True)
    for dt in (torch.float32, torch.float16):
        for causal in (False, True):
            for d in (64, 128):
                for seq in (1024, 2048, 4096, 8192):
                    yield ("grid", 4, 16, seq, d, dt, causal)


def bench(batch, heads, seq, d, dt, causal, max_seconds=1.0):
    n_sets = 3
    sets = [[torch.rand(batch, heads, seq, d, device="cuda", dtype=dt) * 2 - 1 for _ in range(3)]
            for _ in range(n_sets)]
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
        F.scaled_dot_product_attention(*sets[0], is_causal=causal)
        torch.cuda.synchronize()
        times = []
        import time
        t_start = time.time()
        while len(times) < 3 or (time.time() - t_start < max_seconds and len(times) < 25):
            q, k, v = sets[len(times) % n_sets]
            e0 = torch.cuda.Event(enable_timing=True)
            e1 = torch.cuda.Event(enable_timing=True)
            e0.record()
            F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            e1.record()
            e1.synchronize()
            times.append(e0.elapsed_time(e1))
    times.sort()
    return times[len(times) // 2], len(times)


def main():
    out = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
           "backend": "pytorch-sdpa-efficient", "results": []}
    print("device:", out["device"], "torch", torch.__version__)
    for suite, batch, heads, seq, d, dt, causal in shapes():
        dname = "f32" if dt == torch.float32 else "f16"
        try:
            ms, reps = bench(batch, heads, seq, d, dt, causal)
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"{suite} {batch} {heads} {seq} {d} {dname} {int(causal)}: {e}")
            continue
        flops = 4.0 * batch * heads * seq * seq * d / (2.0 if causal else 1.0)
        tf = flops / (ms * 1e-3) / 1e12
        print(f"{suite:5s} {batch:5d} {heads:3d} {seq:5d} {d:5d} {dname:4s} {int(causal):3d} | efficient {ms:10.3f} {tf:8.3f}")
        sys.stdout.flush()
        out["results"].append({"suite": suite, "batch": batch, "heads": heads, "seq": seq, "head_dim": d,
                               "dtype": dname, "causal": int(causal), "algo": "sdpa-efficient",
                               "ms": ms, "tflops": tf, "reps": reps})
        torch.cuda.empty_cache()
    with open(sys.argv[1], "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
