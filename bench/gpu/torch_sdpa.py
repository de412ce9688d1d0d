#!/usr/bin/env python3
"""PyTorch SDPA timings on bench/gpu/shapes.py lines (stdin), one JSON object per line on
stdout: now done by bench/compare_torch.py (validated first, the same timing method as
polyattn bench); this file keeps bench/gpu/cuda_checks.sh's call working:
    torch_sdpa.py [flash,cudnn,efficient,math] < shapes.txt > torch.jsonl
is  compare_torch.py --shape-lines - --jsonl - [--torch-backends LIST]."""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import compare_torch  # noqa: E402

if __name__ == "__main__":
    argv = ["--shape-lines", "-", "--jsonl", "-"]
    if len(sys.argv) > 1:
        argv += ["--torch-backends", sys.argv[1]]
    sys.exit(compare_torch.main(argv))
