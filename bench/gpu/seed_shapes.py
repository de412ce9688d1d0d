#!/usr/bin/env python3
"""Shape lines (cuda_bench / compare_torch.py --shape-lines format) for the seed-shape work of issue #4:
    seed:  the seed article's five shapes (one head, causal top-left), f16, bf16, f32
    check: odd shapes through the wide flash kernels and their split-key schedule
           (GQA, bottom-right with fully masked rows, seq_q != seq_kv, no mask)
    chunks: "<chunk> <seed line>" for the balanced schedule of backends/cuda/flash_split.cu
            at a seed shape: no split (0), its automatic chunk on 132 SMs (key tiles per
            block), half and twice that (run each line with POLYATTN_CUDA_FLASH_SPLIT=<chunk>)
usage: seed_shapes.py seed|check|chunks [dtype,...]"""
import sys

what = sys.argv[1] if len(sys.argv) > 1 else "seed"
dtypes = sys.argv[2].split(",") if len(sys.argv) > 2 else ["f16", "bf16", "f32"]

SEED = [(4096, 1024, 1), (2048, 1024, 2), (1024, 1024, 4), (512, 768, 8), (128, 512, 16)]


def key_tile(dt, d):
    """keys per key tile of the wide kernels (flash_tc.cu, flash_f32.cu)"""
    if dt != "f32":
        return 32
    return 8 if d >= 1024 else 16 if d >= 768 else 32


if what == "seed":
    for dt in dtypes:
        for n, d, b in SEED:
            print(f"seed {dt} {b} 1 1 {n} {n} {d} 1 flash")
elif what == "chunks":
    sms = 132  # H100 SXM
    for dt in dtypes:
        for n, d, b in SEED:
            kt = key_tile(dt, d)
            # causal top-left: query tile i (32 rows) sees 32 * (i + 1) keys
            units = b * sum(-(-min(32 * (i + 1), n) // kt) for i in range(-(-n // 32)))
            c = -(-units // sms)  # one wave of equal blocks: the planner's automatic choice
            for chunk in sorted({0, max(1, c // 2), c, 2 * c}):
                print(f"{chunk} seed-c{chunk} {dt} {b} 1 1 {n} {n} {d} 1 flash")
else:
    # batch heads_q heads_kv seq_q seq_kv head_dim mask(0 none, 1 top-left, 2 bottom-right)
    checks = [(2, 2, 1, 1000, 1000, 1024, 1), (1, 1, 1, 777, 1301, 768, 2),
              (1, 2, 2, 555, 300, 512, 2), (3, 1, 1, 97, 1000, 1024, 0),
              (1, 1, 1, 33, 33, 512, 1), (2, 1, 1, 1500, 1500, 768, 1)]
    for dt in dtypes:
        for b, hq, hk, sq, skv, d, m in checks:
            print(f"check {dt} {b} {hq} {hk} {sq} {skv} {d} {m} flash")
