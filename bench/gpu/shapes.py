#!/usr/bin/env python3
"""Shape lines for cuda_bench and compare_torch.py --shape-lines (one source for both):
    suite dtype batch heads_q heads_kv seq_q seq_kv head_dim causal algos
usage: shapes.py [fa2] [seed] [unfused] [--quick]"""
import sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
quick = "--quick" in sys.argv
suites = args or ["fa2", "seed", "unfused"]

if "fa2" in suites:
    # FlashAttention-2 paper sweep: 16k tokens per batch, hidden 2048.
    seqs = [4096] if quick else [512, 1024, 2048, 4096, 8192, 16384]
    for dtype in ["bf16"] if quick else ["f16", "bf16"]:
        for dim in [64, 128]:
            for causal in [0, 1]:
                for n in seqs:
                    b, h = 16384 // n, 2048 // dim
                    print(f"fa2 {dtype} {b} {h} {h} {n} {n} {dim} {causal} flash")

if "seed" in suites:
    # The seed article's shapes: (seq, d_model, batch), one head, causal.
    shapes = [(128, 512, 16), (512, 768, 8), (1024, 1024, 4), (2048, 1024, 2), (4096, 1024, 1)]
    if quick:
        shapes = shapes[-1:]
    for dtype in ["f32", "f16"]:
        for n, d, b in shapes:
            print(f"seed {dtype} {b} 1 1 {n} {n} {d} 1 flash,fused,unfused")

if "unfused" in suites:
    seqs = [2048] if quick else [512, 1024, 2048, 4096]
    for dtype in ["f16"] if quick else ["f16", "f32"]:
        for dim in [64, 128]:
            for causal in [0, 1]:
                for n in seqs:
                    b, h = max(1, 8192 // n), 2048 // dim
                    print(f"unfused {dtype} {b} {h} {h} {n} {n} {dim} {causal} unfused,fused")
