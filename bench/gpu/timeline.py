#!/usr/bin/env python3
"""Summarises the block timeline of a -DPA_FLASH_TIMELINE build (backends/cuda/flash_split.h).

    polyattn_cuda_bench --reps 5 < one_shape.txt > tl.txt; python3 bench/gpu/timeline.py tl.txt

Reads the `TL ...` lines of one shape (every launch in the file must have the same grid:
tickets are numbered across launches, ticket // blocks is the launch) and prints, for the
last complete launch: the span from the first block's start to the last block's end, how
busy the SMs were, the fit block time = F + T * key tiles (least squares over the blocks),
and the blocks grouped by key tiles.  The device printf at each block's end delays the
blocks of a second wave (session 7 saw a 40 us launch stretched to 500 us): trust the
numbers of one-wave grids only.  For clusters (key halves) both blocks end together.
"""
import sys


def main(path):
    rows = []
    for line in open(path, errors="replace"):
        if not line.startswith("TL "):
            continue
        f = line.split()
        if len(f) != 12:
            continue
        ticket, blocks, sm, block, bh, qt, t0, t1, segs, start, end = map(int, f[1:])
        rows.append(dict(launch=ticket // blocks, blocks=blocks, sm=sm, block=block, bh=bh,
                         qt=qt, tiles=t1 - t0, segs=segs, start=start, end=end))
    if not rows:
        sys.exit("%s: no TL lines" % path)
    blocks = rows[0]["blocks"]
    if any(r["blocks"] != blocks for r in rows):
        sys.exit("%s: launches of different grids in one file" % path)
    launches = {}
    for r in rows:
        launches.setdefault(r["launch"], []).append(r)
    full = [k for k, v in launches.items() if len(v) == blocks]
    if not full:
        sys.exit("%s: no complete launch (printf buffer overflow?)" % path)
    last = launches[max(full)]
    t_first = min(r["start"] for r in last)
    span = max(r["end"] for r in last) - t_first
    sms = {}
    for r in last:
        sms.setdefault(r["sm"], []).append(r)
    busy = sum(r["end"] - r["start"] for r in last)
    print("launches %d (complete %d), blocks %d on %d SMs, span %.1f us, SM busy %.0f%% of "
          "span x SMs used, most blocks on one SM %d"
          % (len(launches), len(full), blocks, len(sms), span / 1e3,
             100.0 * busy / (span * len(sms)), max(len(v) for v in sms.values())))
    # least-squares fit duration = F + T * tiles
    n = len(last)
    xs = [r["tiles"] for r in last]
    ys = [(r["end"] - r["start"]) / 1e3 for r in last]
    mx, my = sum(xs) / n, sum(ys) / n
    vx = sum((x - mx) ** 2 for x in xs)
    if vx > 0:
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / vx
        print("fit: block us = %.2f + %.2f x key tiles" % (my - slope * mx, slope))
    print("| key tiles | blocks | mean us | min us | max us | mean start us | last end us |")
    print("|---|---|---|---|---|---|---|")
    by = {}
    for r in last:
        by.setdefault(r["tiles"], []).append(r)
    for t in sorted(by, reverse=True):
        v = by[t]
        d = [(r["end"] - r["start"]) / 1e3 for r in v]
        print("| %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f |"
              % (t, len(v), sum(d) / len(d), min(d), max(d),
                 sum(r["start"] - t_first for r in v) / len(v) / 1e3,
                 max(r["end"] - t_first for r in v) / 1e3))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: timeline.py FILE")
    main(sys.argv[1])
