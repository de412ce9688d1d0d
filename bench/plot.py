#!/usr/bin/env python3
"""Draws the article's 2x2 figure from `polyattn bench --csv` output.

    python3 bench/plot.py RESULTS.csv [MORE.csv ...] --out DIR

For every (backend, device, dtype, mask[, head_dim when it does not vary with the length])
group: time, memory, speedup over unfused and memory saved over unfused against the
sequence length, one line per algorithm -> DIR/<suite>_<backend>_<dtype>_....png.
When the CSVs hold more than one backend: a vendor comparison of each algorithm's time
per shape -> DIR/<suite>_backends_<dtype>.png.
"""
import argparse
import collections
import csv
import os
import re
import sys

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.stderr.write("plot.py: matplotlib is required (apt install python3-matplotlib)\n")
    sys.exit(77)

ALGOS = ("unfused", "fused", "flash")


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def load(paths):
    rows = []
    for path in paths:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                if row.get("status") != "ok" or number(row.get("ms")) is None:
                    continue
                row.setdefault("backend", "?")
                row.setdefault("device", "")
                rows.append(row)
    return rows


def slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def suite_label(row):
    """The suite, tagged when the rows time the backward pass (polyattn bench --backward)."""
    return row["suite"] + ("-backward" if row.get("pass") == "backward" else "")


def group_key(row, head_dim_varies):
    key = [suite_label(row), row["backend"], row["device"], row["dtype"], row["mask"]]
    if not head_dim_varies:
        key.append("d" + row["head_dim"])
    return tuple(key)


def draw_2x2(rows, title, path):
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    panels = [("ms", "time (ms)", True), ("mem_bytes", "device memory (MiB)", True),
              ("speedup_vs_unfused", "speedup over unfused (x)", False),
              ("mem_saved_vs_unfused", "memory saved over unfused (%)", False)]
    for ax, (field, label, log) in zip(axes.flat, panels):
        for algo in ALGOS:
            pts = sorted((int(r["seq_kv"]), number(r[field])) for r in rows
                         if r["algo"] == algo and number(r.get(field)) is not None)
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ys = [p[1] / 2**20 if field == "mem_bytes" else
                  p[1] * 100 if field == "mem_saved_vs_unfused" else p[1] for p in pts]
            ax.plot(xs, ys, marker="o", label=algo)
        ax.set_xscale("log", base=2)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("sequence length")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def draw_backends(rows, title, path):
    shapes = sorted({(int(r["seq_kv"]), int(r["head_dim"]), int(r["batch"])) for r in rows})
    series = sorted({(r["backend"], r["algo"]) for r in rows})
    fig, ax = plt.subplots(figsize=(max(8, 1.2 * len(shapes)), 5))
    width = 0.8 / max(1, len(series))
    for i, (backend, algo) in enumerate(series):
        ms = {(int(r["seq_kv"]), int(r["head_dim"]), int(r["batch"])): number(r["ms"])
              for r in rows if r["backend"] == backend and r["algo"] == algo}
        xs = [j + i * width for j, s in enumerate(shapes) if s in ms]
        ax.bar(xs, [ms[s] for s in shapes if s in ms], width, label=f"{backend} {algo}")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(shapes))])
    ax.set_xticklabels([f"N={n}\nD={d} B={b}" for n, d, b in shapes], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("time (ms)")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+", help="CSV files written by polyattn bench --csv")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    args = parser.parse_args()
    for path in args.csv:
        if not os.path.isfile(path):
            parser.exit(2, f"plot.py: {path}: no such file\n")
    rows = load(args.csv)
    if not rows:
        parser.exit(2, "plot.py: the CSV holds no successful measurement\n")
    os.makedirs(args.out, exist_ok=True)
    by_suite = collections.defaultdict(list)
    for r in rows:
        by_suite[suite_label(r)].append(r)
    written = []
    for suite, suite_rows in by_suite.items():
        # The article suite grows head_dim with the length; plot it as one line per algorithm.
        dims_per_len = collections.defaultdict(set)
        for r in suite_rows:
            dims_per_len[r["seq_kv"]].add(r["head_dim"])
        varies = len({r["head_dim"] for r in suite_rows}) > 1 and all(
            len(d) == 1 for d in dims_per_len.values())
        groups = collections.defaultdict(list)
        for r in suite_rows:
            groups[group_key(r, varies)].append(r)
        for key, group in sorted(groups.items()):
            name = slug("_".join(k for k in key if k)) + ".png"
            draw_2x2(group, " / ".join(k for k in key if k), os.path.join(args.out, name))
            written.append(name)
        if len({r["backend"] for r in suite_rows}) > 1:
            for dtype in sorted({r["dtype"] for r in suite_rows}):
                name = slug(f"{suite}_backends_{dtype}") + ".png"
                draw_backends([r for r in suite_rows if r["dtype"] == dtype],
                              f"{suite} suite, {dtype}: time by backend and algorithm",
                              os.path.join(args.out, name))
                written.append(name)
    for name in written:
        print(os.path.join(args.out, name))


if __name__ == "__main__":
    main()
