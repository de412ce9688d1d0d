#!/usr/bin/env python3
"""Compares the a-*.json and b-*.json files that dev/ab_trees.sh writes: one row per
measurement (set, shape, dtype, algo asked) with both times and b/a, then the geometric
mean of b/a per set.  Usage: dev/ab_compare.py OUT_DIR [--md FILE]"""
import glob, json, math, os, sys


def rows(path):
    with open(path) as f:
        data = json.load(f)
    for r in data["results"]:
        key = (r["batch"], r["heads_q"], r["heads_kv"], r["seq_q"], r["seq_kv"], r["head_dim"],
               r["mask"], r["dtype"], r["algo_asked"], r["pass"])
        yield key, r


def main():
    out = sys.argv[1]
    md = sys.argv[sys.argv.index("--md") + 1] if "--md" in sys.argv else None
    lines = ["| set | shape (b,hq,hkv,sq,skv,d) | mask | dtype | algo | a ms | b ms | b/a | a TFLOP/s | b TFLOP/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    summary = []
    for a_path in sorted(glob.glob(os.path.join(out, "a-*.json"))):
        name = os.path.basename(a_path)[2:-5]
        b_path = os.path.join(out, "b-" + name + ".json")
        if not os.path.exists(b_path):
            continue
        a = dict(rows(a_path))
        b = dict(rows(b_path))
        logs = []
        for key, ra in a.items():
            rb = b.get(key)
            if not rb or ra["status"] != "ok" or rb["status"] != "ok":
                st = f'{ra["status"]}/{rb["status"] if rb else "missing"}'
                lines.append(f"| {name} | {key[:6]} | {key[6]} | {key[7]} | {key[8]} | {st} | | | | |")
                continue
            ratio = rb["ms"] / ra["ms"]
            logs.append(math.log(ratio))
            lines.append(f"| {name} | {','.join(map(str, key[:6]))} | {key[6]} | {key[7]} | "
                         f"{ra['algo']}/{rb['algo']} | {ra['ms']:.4f} | {rb['ms']:.4f} | {ratio:.3f} | "
                         f"{ra['tflops']:.1f} | {rb['tflops']:.1f} |")
        if logs:
            g = math.exp(sum(logs) / len(logs))
            summary.append(f"{name}: {len(logs)} pairs, geomean b/a time {g:.3f}, "
                           f"range {math.exp(min(logs)):.3f}-{math.exp(max(logs)):.3f}")
    text = "\n".join(lines + [""] + summary) + "\n"
    print(text)
    if md:
        with open(md, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
