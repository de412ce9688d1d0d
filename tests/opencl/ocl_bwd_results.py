"""Turns gpu_bwd_run.sh output (bench.txt, tune.txt, conformance_backward.txt) into JSON.

usage: ocl_bwd_results.py DIR --device NAME --commit SHA --date YYYY-MM-DD --out FILE.json
"""
import argparse
import json
import os
import re


def rows(path, extra=None):
    out, section = [], "tiled"
    if not os.path.exists(path):
        return out
    for line in open(path):
        if line.startswith("# the old row-streaming"):
            section = "rows"
        elif line.startswith("# unfused and fused"):
            section = "tiled"
        elif line.startswith("tiles "):
            extra = {"tiles": line.split()[1]}
        if not line.startswith("row "):
            continue
        f = line.split()
        b, h, n, d = (int(x) for x in f[1].split(","))
        r = {"batch": b, "heads": h, "seq": n, "head_dim": d, "dtype": f[2],
             "mask": f[3], "algo": f[4], "fwd_ms": float(f[5]), "bwd_ms": float(f[6]),
             "bwd_over_fwd": float(f[7]), "bwd_gflops": float(f[8])}
        if r["algo"] in ("flash", "fused"):
            r["flash_backward_kernels"] = section
        if extra:
            r.update(extra)
        out.append(r)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--device", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--date", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    conf = {}
    cpath = os.path.join(a.dir, "conformance_backward.txt")
    if os.path.exists(cpath):
        text = open(cpath).read()
        m = re.search(r"(\d+) passed, (\d+) failed, (\d+) unsupported", text)
        if m:
            conf = {"passed": int(m.group(1)), "failed": int(m.group(2)),
                    "unsupported": int(m.group(3))}
        else:
            conf = {"passed_lines": text.count("\nPASS"), "failed_lines": text.count("\nFAIL"),
                    "note": "no summary line (stopped by the time cap)"}
    doc = {
        "device": a.device, "date": a.date, "commit": a.commit, "backend": "opencl",
        "tool": "tests/opencl/ocl_bwd_bench (device events, median of --reps after 1 warm-up); "
                "GFLOP/s counts 2.5 x the forward's 4*b*h*N*N*D, halved for causal",
        "conformance_backward": conf,
        "bench": rows(os.path.join(a.dir, "bench.txt")),
        "tile_sweep": rows(os.path.join(a.dir, "tune.txt")),
    }
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
