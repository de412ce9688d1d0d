#!/usr/bin/env python3
"""Merges cuda_bench and compare_torch.py --jsonl output into one JSON document and a Markdown table.
usage: summarize.py polyattn.jsonl torch.jsonl out.json out.md [commit] [date]"""
import json
import sys


def load(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    except OSError:
        pass
    return rows


def key(r):
    return (r["suite"], r["dtype"], r["batch"], r["heads_q"], r["heads_kv"], r["seq_q"],
            r["seq_kv"], r["head_dim"], r["causal"])


def main():
    ours, theirs = load(sys.argv[1]), load(sys.argv[2])
    out_json, out_md = sys.argv[3], sys.argv[4]
    commit = sys.argv[5] if len(sys.argv) > 5 else ""
    date = sys.argv[6] if len(sys.argv) > 6 else ""
    device = next((r for r in ours if r.get("impl") == "device"), {})
    tver = next((r for r in theirs if r.get("impl") == "torch-version"), {})
    res = {}
    for r in ours:
        if "suite" in r:
            res.setdefault(key(r), {})["polyattn-" + r["algo"]] = r
    for r in theirs:
        if "suite" in r:
            res.setdefault(key(r), {})[r["impl"]] = r

    def ms(d, name):
        r = d.get(name)
        return r["ms"] if r and r.get("ok") and "ms" in r else None

    def valid(d, name):  # polyattn numbers count only when validated
        r = d.get(name)
        return r is not None and r.get("ok") is True

    md = [f"# CUDA backend benchmarks: {device.get('name', '?')} ({device.get('arch', '')})", "",
          f"date {date}, commit {commit}, {device.get('driver', '')}, torch {tver.get('torch', '?')} "
          f"(cuDNN {tver.get('cudnn', '?')}).  Forward pass, median of CUDA-event timings, inputs "
          "rotated across L2-sized sets; FLOPs = 4*batch*heads*N*N*D, halved when causal. "
          "polyattn rows are validated first (sampled rows vs a double reference; "
          "'FAIL' marks a result that did not validate). Ratio = torch time / polyattn time "
          "(> 1: polyattn faster).", ""]
    summary = {"device": device, "torch": tver, "date": date, "commit": commit, "results": []}

    def section(title, suite, ours_name, refs, cols):
        md.extend([f"## {title}", "", "| " + " | ".join(cols) + " |",
                   "|" + "---|" * len(cols)])
        for k in sorted(x for x in res if x[0] == suite):
            d = res[k]
            _, dt, b, hq, hk, sq, skv, dim, causal = k
            mine = ms(d, ours_name)
            row = [dt, f"{b}x{hq}", str(sq), str(dim), "yes" if causal else "no"]
            r = d.get(ours_name)
            if mine is None:
                row.append("error" if r is None else ("FAIL " + r.get("error", "")[:60]))
            else:
                row.append(f"{mine:.3f} ms / {r['tflops']:.0f} TF" + ("" if valid(d, ours_name) else " FAIL"))
            for ref in refs:
                t = ms(d, "torch-" + ref)
                if t is None:
                    row.append("n/a")
                else:
                    row.append(f"{t:.3f} ({t / mine:.2f}x)" if mine else f"{t:.3f}")
            md.append("| " + " | ".join(row) + " |")
            entry = {"suite": suite, "dtype": dt, "batch": b, "heads_q": hq, "heads_kv": hk,
                     "seq_q": sq, "seq_kv": skv, "head_dim": dim, "causal": causal,
                     "polyattn_algo": ours_name, "polyattn_ms": mine,
                     "polyattn_validated": valid(d, ours_name),
                     "polyattn_rel_err": (r or {}).get("rel_err")}
            for ref in refs:
                t = ms(d, "torch-" + ref)
                entry["torch_" + ref + "_ms"] = t
                entry["ratio_vs_" + ref] = (t / mine) if (t and mine) else None
            summary["results"].append(entry)
        md.append("")

    base = ["dtype", "batch x heads", "N", "D", "causal"]
    section("Flash (tensor cores for f16/bf16), FlashAttention-2 sweep", "fa2", "polyattn-flash",
            ["flash", "cudnn", "efficient"], base + ["polyattn flash", "torch flash (ratio)",
                                                      "torch cudnn (ratio)", "torch efficient (ratio)"])
    for algo in ["flash", "fused", "unfused"]:
        section(f"Seed shapes (one head, D = 512..1024, causal): polyattn {algo}", "seed",
                "polyattn-" + algo, ["efficient", "math", "flash", "cudnn"],
                base + [f"polyattn {algo}", "torch efficient (ratio)", "torch math (ratio)",
                        "torch flash (ratio)", "torch cudnn (ratio)"])
    for algo in ["unfused", "fused"]:
        section(f"polyattn {algo} vs torch math", "unfused", "polyattn-" + algo,
                ["math", "efficient"], base + [f"polyattn {algo}", "torch math (ratio)",
                                               "torch efficient (ratio)"])
    with open(out_json, "w") as f:
        json.dump(summary, f, indent=1)
    with open(out_md, "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
