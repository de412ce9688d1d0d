"""Merges ocl_bench JSON and torch_sdpa_bench JSON into bench/results/opencl-*.json/.md.

usage: ocl_results.py OPENCL.json [TORCH.json] --device NAME --commit SHA --date YYYY-MM-DD
                      --out bench/results/opencl-h100-DATE [--note TEXT]
"""
import argparse
import json


def key(r):
    return (r["suite"], r["batch"], r["heads"], r["seq"], r["head_dim"], r["dtype"], r["causal"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("opencl")
    ap.add_argument("torch", nargs="?")
    ap.add_argument("--device", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--date", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    ocl = json.load(open(a.opencl))
    tor = json.load(open(a.torch)) if a.torch else {"results": []}
    ref = {key(r): r for r in tor["results"]}
    rows = {}
    for r in ocl["results"]:
        rows.setdefault(key(r), {})[r["algo"]] = r
    out = {"device": a.device, "date": a.date, "commit": a.commit, "note": a.note,
           "opencl_driver": ocl.get("driver"), "torch": tor.get("torch"),
           "flops_formula": "4*batch*heads*N*N*D, halved for causal",
           "timing": "median of device-event timings, rotated random inputs, after a warm-up",
           "opencl": ocl["results"], "pytorch_sdpa_efficient": tor["results"]}
    json.dump(out, open(a.out + ".json", "w"), indent=1)
    algos = ["unfused", "fused", "flash"]
    lines = [f"# OpenCL backend on {a.device}", "",
             f"date {a.date}, commit {a.commit}, OpenCL driver {ocl.get('driver')}, PyTorch {tor.get('torch')}", "",
             "ms and TFLOP/s (4*batch*heads*N*N*D, halved for causal), median of device-event timings with "
             "rotated random inputs.  `efficient` is PyTorch SDPA with SDPBackend.EFFICIENT_ATTENTION on the "
             "same shapes and dtype; `ratio` = OpenCL flash TFLOP/s / efficient TFLOP/s.  flash ws = flash "
             "workspace bytes (no N x N memory).", ""]
    if a.note:
        lines += [a.note, ""]
    lines.append("| suite | batch | heads | N | D | dtype | causal | " +
                 " | ".join(f"{x} ms | {x} TF/s" for x in algos) + " | efficient ms | efficient TF/s | ratio | flash ws |")
    lines.append("|" + "---|" * (7 + 2 * len(algos) + 4))
    for k, by in rows.items():
        cells = list(map(str, k))
        for x in algos:
            r = by.get(x)
            cells += [f"{r['ms']:.3f}", f"{r['tflops']:.3g}"] if r else ["-", "-"]
        t = ref.get(k)
        cells += [f"{t['ms']:.3f}", f"{t['tflops']:.3g}"] if t else ["-", "-"]
        fl = by.get("flash")
        cells.append(f"{fl['tflops'] / t['tflops']:.2f}" if (fl and t) else "-")
        cells.append(str(fl["workspace_bytes"]) if fl else "-")
        lines.append("| " + " | ".join(cells) + " |")
    open(a.out + ".md", "w").write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
