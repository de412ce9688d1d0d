#!/usr/bin/env python3
"""Pairs cuda_bwd_bench records with compare_torch.py --backward --jsonl records (same
shape) and writes a JSON summary and a markdown table.  Ratio = torch ms / polyattn ms (1.0: as fast; above
1: polyattn faster).
usage: summarize_bwd.py polyattn.jsonl torch.jsonl summary.json summary.md COMMIT DATE"""
import json
import sys


def load(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    except OSError:
        pass
    return out


def key(r):
    return (r.get("dtype"), r.get("batch"), r.get("heads_q"), r.get("heads_kv"), r.get("seq_q"),
            r.get("seq_kv"), r.get("head_dim"), r.get("causal"))


def main():
    pa, th, js, md, commit, date = sys.argv[1:7]
    pa_recs, th_recs = load(pa), load(th)
    device = next((r for r in pa_recs if r.get("impl") == "device"), {})
    tver = next((r for r in th_recs if r.get("impl") == "torch-version"), {})
    torch_by = {}
    for r in th_recs:
        if r.get("pass") == "backward" and r.get("ok"):
            torch_by[(r["impl"],) + key(r)] = r
    default = [r for r in pa_recs if r.get("tile", "default") == "default"]
    det_by = {key(r): r for r in default if r.get("mode") == "deterministic" and r.get("ok") is not None}
    tiles = {}
    for r in pa_recs:
        if r.get("impl") == "polyattn" and r.get("mode") == "atomic" and r.get("ms"):
            tiles.setdefault(key(r), {})[r.get("tile", "default")] = (r["ms"], r.get("ok"))
    rows = []
    for r in default:
        if r.get("impl") != "polyattn" or r.get("mode") != "atomic":
            continue
        row = {"shape": {k: r.get(k) for k in ("dtype", "batch", "heads_q", "heads_kv", "seq_q",
                                                 "seq_kv", "head_dim", "causal")},
               "algo": r.get("algo"), "ok": r.get("ok"), "ms": r.get("ms"),
               "tflops": r.get("tflops"), "error": r.get("error"),
               "dq_rel": r.get("dq_rel"), "dk_rel": r.get("dk_rel"), "dv_rel": r.get("dv_rel")}
        row["tiles_ms"] = {t: v[0] for t, v in tiles.get(key(r), {}).items()}
        row["tiles_ok"] = {t: v[1] for t, v in tiles.get(key(r), {}).items()}
        d = det_by.get(key(r))
        if d and d.get("ms"):
            row["deterministic_ms"] = d["ms"]
            row["deterministic_ok"] = d.get("ok")
        for name in ("flash", "cudnn", "efficient"):
            t = torch_by.get(("torch-" + name,) + key(r))
            if t:
                row["torch_" + name + "_ms"] = t["ms"]
                row["torch_" + name + "_tflops"] = t["tflops"]
                if r.get("ms"):
                    row["ratio_" + name] = t["ms"] / r["ms"]
        rows.append(row)
    summary = {"what": "backward pass (dQ, dK, dV) of the FA2 sweep: polyattn flash vs PyTorch SDPA",
               "device": device.get("name"), "torch": tver, "commit": commit, "date": date,
               "flops": "2.5 x 4*batch*heads*seq^2*head_dim (halved when causal)",
               "ratio": "torch ms / polyattn ms", "rows": rows}
    with open(js, "w") as f:
        json.dump(summary, f, indent=1)
    lines = [f"# CUDA flash backward vs PyTorch SDPA backward ({device.get('name')}, {date}, commit {commit})",
             "",
             f"torch {tver.get('torch')}, cuDNN {tver.get('cudnn')}.  Backward only (dQ, dK, dV; the "
             "forward runs outside the timing), median of CUDA-event timings.  TFLOP/s = 2.5 x "
             "4*b*h*N^2*d / time (halved when causal).  ratio = torch ms / polyattn ms.",
             "",
             "| dtype | d | causal | N | batch x heads | polyattn ms | TFLOP/s | check | det. ms | "
             "flash ms | ratio flash | cudnn ms | ratio cudnn | efficient ms | ratio eff. |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda x, p=3: "-" if x is None else f"{x:.{p}f}"
    worst = {}
    for row in rows:
        s = row["shape"]
        chk = ("ok" if row["ok"] else "FAIL") if row.get("ms") else "error"
        lines.append(
            f"| {s['dtype']} | {s['head_dim']} | {s['causal']} | {s['seq_q']} | {s['batch']}x{s['heads_q']} | "
            f"{fmt(row.get('ms'))} | {fmt(row.get('tflops'), 1)} | {chk} | {fmt(row.get('deterministic_ms'))} | "
            f"{fmt(row.get('torch_flash_ms'))} | {fmt(row.get('ratio_flash'), 2)} | "
            f"{fmt(row.get('torch_cudnn_ms'))} | {fmt(row.get('ratio_cudnn'), 2)} | "
            f"{fmt(row.get('torch_efficient_ms'))} | {fmt(row.get('ratio_efficient'), 2)} |")
        if s["seq_q"] >= 2048 and row.get("ratio_flash") is not None:
            k = s["dtype"]
            worst[k] = min(worst.get(k, 9e9), row["ratio_flash"])
    lines.append("")
    for k, v in sorted(worst.items()):
        lines.append(f"- {k}: lowest ratio to torch flash at N >= 2048: {v:.2f} (target 0.7)")
    alt = [r for r in rows if len(r["tiles_ms"]) > 1]
    if alt:
        names = sorted({t for r in alt for t in r["tiles_ms"]})
        lines += ["", "dK/dV kernel configurations (POLYATTN_CUDA_BWD_TILE; default: B at d 64, F at d 128), ms:", "",
                  "| dtype | d | causal | N | " + " | ".join(names) + " |",
                  "|---|---|---|---|" + "---|" * len(names)]
        for r in alt:
            s = r["shape"]
            cells = []
            for t in names:
                ms = r["tiles_ms"].get(t)
                okt = r["tiles_ok"].get(t)
                cells.append("-" if ms is None else f"{ms:.3f}{'' if okt else ' (FAIL)'}")
            lines.append(f"| {s['dtype']} | {s['head_dim']} | {s['causal']} | {s['seq_q']} | " + " | ".join(cells) + " |")
        lines.append("")
    bad = [r for r in rows if not r.get("ok")]
    lines.append(f"- sampled-row checks: {len(rows) - len(bad)} of {len(rows)} shapes within tolerance")
    with open(md, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
