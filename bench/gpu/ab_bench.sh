#!/bin/bash
# Before/after timing of a CUDA change in one run, on a GPU machine, from the repo root:
#   bench/gpu/ab_bench.sh BASE_SRC < shape-lines
# BASE_SRC holds the sources before the change (CMakeLists.txt, include, core, backends,
# bench, tests, cmake; e.g. `git archive <commit> | tar -x -C DIR`).  Builds it and the
# working tree (CUDA only), then times both with the same bench binary on the same shape
# lines (bench/gpu/shapes.py or seed_shapes.py format), ROUNDS times in alternation
# (base, new, base, new, ...), so clock and thermal drift hit both alike.  Each number is
# validated by the bench before it is timed.
# Environment: BENCH (default polyattn_cuda_bench; polyattn_cuda_bwd_bench for gradients),
# BENCH_ARGS (the bench's options, e.g. "--reps 30 --graph 20"),
# ROUNDS (default 2), BUILD (new tree's build dir, default b-ab-new), ARCH (default 90),
# OUT (results: ab.jsonl, ab.md).  The base builds in b-ab-base-<basename of BASE_SRC>.
set -u
BASE_SRC=${1:?usage: ab_bench.sh BASE_SRC < shape-lines}
BENCH=${BENCH:-polyattn_cuda_bench}
BENCH_ARGS=${BENCH_ARGS:-}
ROUNDS=${ROUNDS:-2}
BUILD=${BUILD:-b-ab-new}
ARCH=${ARCH:-90}
OUT=${OUT:-$PWD/ab-out}
BASE_BUILD=b-ab-base-$(basename "$BASE_SRC")
mkdir -p "$OUT"
shapes=$(mktemp)
cat > "$shapes"
start=$(date +%s)
for side in base new; do
  src=.; dir=$BUILD
  if [ "$side" = base ]; then src=$BASE_SRC; dir=$BASE_BUILD; fi
  if ! { cmake -G Ninja -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON \
           -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES="$ARCH" &&
         ninja -C "$dir" -j16 "$BENCH" polyattn_cuda; } > "$OUT/build-$side.txt" 2>&1; then
    echo "ab_bench: $side build failed" >&2; tail -30 "$OUT/build-$side.txt" >&2; exit 1
  fi
  rm -f "$OUT/build-$side.txt"
done
echo "ab_bench: builds took $(( $(date +%s) - start )) s" >&2
for r in $(seq "$ROUNDS"); do
  for side in base new; do
    dir=$BUILD; [ "$side" = base ] && dir=$BASE_BUILD
    timeout 300 "$dir/bin/$BENCH" $BENCH_ARGS < "$shapes" |
      sed "s/^{/{\"ab\":\"$side\",\"round\":$r,/" >> "$OUT/ab.jsonl"
    echo "ab_bench: round $r $side done, $(( $(date +%s) - start )) s" >&2
  done
done
rm -f "$shapes"
python3 - "$OUT/ab.jsonl" > "$OUT/ab.md" <<'PY'
import json, sys
best, ok = {}, {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    if "suite" not in r or "ms" not in r:
        continue
    k = (r["suite"], r["dtype"], r["batch"], r["heads_q"], r["seq_q"], r["seq_kv"],
         r["head_dim"], r["causal"], r["algo"] + ("/" + r["mode"] if "mode" in r else ""))
    side = r["ab"]
    ok[(k, side)] = ok.get((k, side), True) and bool(r.get("ok"))
    best[(k, side)] = min(best.get((k, side), float("inf")), r["ms"])
print("| suite | dtype | batch | heads | seq_q | seq_kv | D | causal | algo[/mode] | base ms | new ms "
      "| new speed-up | validated |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for k in sorted({k for k, _ in best}):
    b, n = best.get((k, "base")), best.get((k, "new"))
    up = f"{b / n:.2f}x" if b and n else "-"
    v = "yes" if ok.get((k, "base")) and ok.get((k, "new")) else "NO"
    print("| " + " | ".join(str(x) for x in k) +
          f" | {b if b else '-':.4} | {n if n else '-':.4} | {up} | {v} |")
PY
cat "$OUT/ab.md"
