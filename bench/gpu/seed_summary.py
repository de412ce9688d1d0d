#!/usr/bin/env python3
"""Seed-shape table: polyattn flash (each variant: suite 'seed' is the default plan,
'seed-<name>' a run with POLYATTN_CUDA_FLASH_SPLIT set) beside PyTorch SDPA efficient and
math from the same run (compare_torch.py --jsonl records), the ratio torch_ms / polyattn_ms
for each and for the faster of the two (issue #4's target: >= 2 against PyTorch's fastest
backend that runs the shape; math is the faster one for f32 at N >= 1024).
usage: seed_summary.py polyattn.jsonl torch.jsonl summary.json summary.md commit date"""
import json
import sys

pa_path, torch_path, json_out, md_out, commit, date = sys.argv[1:7]


def rows(path):
    out = []
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


pa, th = rows(pa_path), rows(torch_path)
device = next((r.get("name") for r in pa if r.get("impl") == "device"), "?")
tver = next((r.get("torch") for r in th if r.get("impl") == "torch-version"), "?")
key = lambda r: (r["dtype"], r["batch"], r["seq_q"], r["head_dim"])
torch_ms = {}
for r in th:
    if r.get("suite") == "seed" and r.get("ok"):
        torch_ms[(r["impl"][6:],) + key(r)] = r["ms"]
records, lines = [], []
lines.append(f"# polyattn CUDA flash forward on the seed shapes ({device}, {date}, commit {commit})\n")
timing = sorted({r.get("timing", "events") for r in pa + th if "ms" in r})
lines.append(f"PyTorch {tver} SDPA in the same run, timing {', '.join(timing)}. Ratio = torch ms / "
             "polyattn ms (target: >= 2 against the fastest SDPA backend).\n")
variants = ["seed"] + (["seed-cluster"] if any(r.get("suite") == "seed-cluster" for r in pa) else [])
# (seed-cluster: runs of the 2-block cluster kernel, removed after commit f59f14d)
for v in variants:
    lines.append(f"\n## {v}\n")
    lines.append("| dtype | batch x heads | N | D | polyattn flash ms | TFLOP/s | rel err | workspace MiB | launches | efficient ms (ratio) | math ms (ratio) | fastest SDPA ratio |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in pa:
        if r.get("suite") != v:
            continue
        rec = dict(variant=v, dtype=r["dtype"], batch=r["batch"], seq=r["seq_q"], head_dim=r["head_dim"],
                   ok=r.get("ok", False))
        if not r.get("ok"):
            rec["error"] = r.get("error", "rel_err %s unwritten %s" % (r.get("rel_err"), r.get("unwritten")))
        ms = r.get("ms")
        cells = []
        for b in ("efficient", "math"):
            t = torch_ms.get((b,) + key(r))
            rec["torch_" + b + "_ms"] = t
            rec["ratio_" + b] = t / ms if t and ms else None
            cells.append(f"{t:.3f} ({t / ms:.2f}x)" if t and ms else "n/a")
        best = min((t for t in (rec["torch_efficient_ms"], rec["torch_math_ms"]) if t), default=None)
        rec["ratio_fastest"] = best / ms if best and ms else None
        cells.append(f"{best / ms:.2f}x" if best and ms else "n/a")
        rec.update(ms=ms, tflops=r.get("tflops"), rel_err=r.get("rel_err"),
                   workspace_bytes=r.get("workspace_bytes"), launches=r.get("launches"))
        records.append(rec)
        status = "" if r.get("ok") else " FAILED"
        lines.append(f"| {r['dtype']} | {r['batch']}x1 | {r['seq_q']} | {r['head_dim']} | "
                     f"{ms if ms is None else f'{ms:.3f}'}{status} | {r.get('tflops', 0) or 0:.0f} | "
                     f"{r.get('rel_err', float('nan')):.1e} | {(r.get('workspace_bytes') or 0) / 2**20:.1f} | "
                     f"{r.get('launches')} | {cells[0]} | {cells[1]} | {cells[2]} |")
# schedule sweep: ms per forced chunk (key tiles per block; c0: one block per query tile);
# * marks the default plan's chunk
# (the run with the same workspace size and launch count)
sweep = {}
for r in pa:
    suite = r.get("suite", "")
    if suite.startswith("seed-c") and suite[6:].isdigit() and r.get("impl") == "polyattn":
        sweep.setdefault(key(r), []).append((int(suite[6:]), r))
if sweep:
    lines.append("\n## Schedule sweep (POLYATTN_CUDA_FLASH_SPLIT=c key tiles per block; c0 = one block per query tile; * = the default plan)\n")
    lines.append("| dtype | batch | N | D | ms per chunk |")
    lines.append("|---|---|---|---|---|")
    default = {key(r): r for r in pa if r.get("suite") == "seed" and r.get("impl") == "polyattn"}
    for k in sorted(sweep, key=lambda k: (k[0], -k[2])):
        d = default.get(k, {})
        cells = []
        for c, r in sorted(sweep[k], key=lambda x: x[0]):
            mark = "*" if d and r.get("workspace_bytes") == d.get("workspace_bytes") and \
                r.get("launches") == d.get("launches") else ""
            ms = f"{r['ms']:.3f}" if r.get("ok") else "FAIL"
            cells.append(f"c{c}{mark} {ms}")
            records.append(dict(variant=f"chunk{c}", dtype=r["dtype"], batch=r["batch"], seq=r["seq_q"],
                                head_dim=r["head_dim"], ok=r.get("ok", False), ms=r.get("ms"),
                                rel_err=r.get("rel_err"), workspace_bytes=r.get("workspace_bytes"),
                                default=bool(mark)))
        lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {', '.join(cells)} |")
json.dump({"device": device, "date": date, "commit": commit, "torch": tver, "rows": records},
          open(json_out, "w"), indent=1)
open(md_out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
