#!/bin/bash
# Seed-shape check of the CUDA flash forward (issue #4) on a GPU machine, from the repo root:
# build (CUDA only), conformance --backend cuda (forward; again with the balanced schedule
# forced wherever it applies, with key halves forced, with column halves forced and with
# each wgmma plan forced), odd-shape checks of the wide kernels through cuda_bench
# (sampled rows against a double reference, every element written), then polyattn flash on
# the seed shapes (f16, bf16, f32) beside PyTorch SDPA efficient and math in the same run
# (bench/compare_torch.py --shape-lines: each SDPA output checked before it is timed), both
# timed as CUDA-graph replays of GRAPH (default 20) calls: GPU time, without the host's launch
# cost (per-call events measured Python's launch rate for SDPA at 16x128: 0.030-0.040 ms
# against 0.013 as a graph; GRAPH=0 times per call with events as before).  Both sides rotate
# among the same number of input sets (256 MiB in all, at most 16: cuda_bench's rule and
# compare_torch.py --max-sets 16), so neither reads inputs the L2 kept from the last call.
# Results in $OUT: seed.log conformance.txt checks.jsonl polyattn.jsonl torch.jsonl
# ncu.txt summary.md summary.json.
# Environment: BUILD (dir), ARCH (default 90), CHUNKS=0 (skip the schedule sweep: no split,
# the automatic chunk, half and twice it; CHUNK_DTYPES: their dtypes, default f16,f32), NCU=0 (skip the Nsight
# Compute look at the 1x4096 kernels, f16 and f32), COMMIT.  QUICK=1: smoke test: no
# conformance runs, the first odd-shape check per dtype, f16 seed shapes 1x4096 (D 1024) and
# 16x128 (D 512) only; CHUNKS and NCU default to 0.
set -u
QUICK=${QUICK:-0}
GRAPH=${GRAPH:-20}
GOPT=""
if [ "$GRAPH" != 0 ]; then GOPT="--graph $GRAPH"; fi
if [ "$QUICK" = 1 ]; then CHUNKS=${CHUNKS:-0} NCU=${NCU:-0}; fi
OUT=${OUT:-$PWD/seed-out}
BUILD=${BUILD:-b-seedperf}
ARCH=${ARCH:-90}
mkdir -p "$OUT"
LOG=$OUT/seed.log
say() { echo "== $*" | tee -a "$LOG"; }
COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
say "$(date -u +%FT%TZ) commit $COMMIT"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv >> "$LOG" 2>&1

start=$(date +%s)
if ! { cmake -G Ninja -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON \
         -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_WERROR=ON \
         -DPOLYATTN_CUDA_ARCHITECTURES="$ARCH" &&
       ninja -C "$BUILD" -j16 polyattn_cuda polyattn_cuda_bench conformance; } > "$OUT/build.txt" 2>&1; then
  tail -40 "$OUT/build.txt" | tee -a "$LOG"; exit 1
fi
grep -iE "warning|spill" "$OUT/build.txt" | head -20 >> "$LOG"
rm -f "$OUT/build.txt"
say "build took $(( $(date +%s) - start )) s"
BIN=$BUILD/bin

if [ "$QUICK" = 1 ]; then
  say "QUICK=1: conformance skipped" | tee "$OUT/conformance.txt"
else
  say "conformance --backend cuda (forward)"
  timeout 120 "$BIN/conformance" --backend cuda > "$OUT/conformance.txt" 2>&1
  echo "exit $?" >> "$OUT/conformance.txt"
  say "conformance --backend cuda --algo flash, POLYATTN_CUDA_FLASH_SPLIT=1 (split forced)"
  echo "### POLYATTN_CUDA_FLASH_SPLIT=1" >> "$OUT/conformance.txt"
  POLYATTN_CUDA_FLASH_SPLIT=1 timeout 120 "$BIN/conformance" --backend cuda --algo flash >> "$OUT/conformance.txt" 2>&1
  echo "exit $?" >> "$OUT/conformance.txt"
  say "conformance --backend cuda --algo flash, POLYATTN_CUDA_KEY_HALVES=1 POLYATTN_CUDA_FLASH_SPLIT=0 (key halves forced)"
  echo "### POLYATTN_CUDA_KEY_HALVES=1 POLYATTN_CUDA_FLASH_SPLIT=0" >> "$OUT/conformance.txt"
  POLYATTN_CUDA_KEY_HALVES=1 POLYATTN_CUDA_FLASH_SPLIT=0 timeout 120 "$BIN/conformance" --backend cuda --algo flash >> "$OUT/conformance.txt" 2>&1
  echo "exit $?" >> "$OUT/conformance.txt"
  say "conformance --backend cuda --algo flash, POLYATTN_CUDA_COL_HALVES=1 (column halves forced)"
  echo "### POLYATTN_CUDA_COL_HALVES=1" >> "$OUT/conformance.txt"
  POLYATTN_CUDA_COL_HALVES=1 timeout 120 "$BIN/conformance" --backend cuda --algo flash >> "$OUT/conformance.txt" 2>&1
  echo "exit $?" >> "$OUT/conformance.txt"
  for plan in wide narrow key-split; do
    say "conformance --backend cuda --algo flash, POLYATTN_CUDA_WGMMA_PLAN=$plan (wgmma plan forced)"
    echo "### POLYATTN_CUDA_WGMMA_PLAN=$plan" >> "$OUT/conformance.txt"
    POLYATTN_CUDA_WGMMA_PLAN=$plan timeout 120 "$BIN/conformance" --backend cuda --algo flash >> "$OUT/conformance.txt" 2>&1
    echo "exit $?" >> "$OUT/conformance.txt"
  done
  grep -E "^conformance|FAIL|^exit" "$OUT/conformance.txt" | head -40 | tee -a "$LOG"
fi

say "odd-shape checks (auto plan, split forced, key halves forced, column halves forced, each wgmma plan forced)"
if [ "$QUICK" = 1 ]; then
  python3 bench/gpu/seed_shapes.py check f16,f32 | awk '!seen[$2]++' > "$OUT/checks.txt"
else
  python3 bench/gpu/seed_shapes.py check > "$OUT/checks.txt"
fi
{ timeout 120 "$BIN/polyattn_cuda_bench" --reps 5 < "$OUT/checks.txt"
  sed 's/^check /check-split1 /' "$OUT/checks.txt" | POLYATTN_CUDA_FLASH_SPLIT=1 timeout 120 "$BIN/polyattn_cuda_bench" --reps 5
  sed 's/^check /check-halves /' "$OUT/checks.txt" |
    POLYATTN_CUDA_KEY_HALVES=1 POLYATTN_CUDA_FLASH_SPLIT=0 timeout 120 "$BIN/polyattn_cuda_bench" --reps 5
  sed 's/^check /check-cols /' "$OUT/checks.txt" |
    POLYATTN_CUDA_COL_HALVES=1 timeout 120 "$BIN/polyattn_cuda_bench" --reps 5
  for plan in wide narrow key-split; do
    grep -v " f32 " "$OUT/checks.txt" | sed "s/^check /check-$plan /" |
      POLYATTN_CUDA_WGMMA_PLAN=$plan timeout 120 "$BIN/polyattn_cuda_bench" --reps 5
  done
} > "$OUT/checks.jsonl" 2>> "$LOG"
rm -f "$OUT/checks.txt"
python3 - "$OUT/checks.jsonl" <<'PY' | tee -a "$LOG"
import json, sys
n = bad = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r.get("impl") != "polyattn": continue
    n += 1
    if not r.get("ok"):
        bad += 1
        print("CHECK FAIL", r)
print(f"checks: {n - bad} of {n} ok")
PY

say "seed shapes: polyattn flash"
if [ "$QUICK" = 1 ]; then
  python3 bench/gpu/seed_shapes.py seed f16 | sed -n '1p;$p' > "$OUT/shapes.txt"
else
  python3 bench/gpu/seed_shapes.py seed > "$OUT/shapes.txt"
fi
timeout 200 "$BIN/polyattn_cuda_bench" $GOPT < "$OUT/shapes.txt" > "$OUT/polyattn.jsonl" 2>> "$LOG"
echo "cuda_bench exit $?" >> "$LOG"
if [ "${CHUNKS:-1}" = 1 ]; then
  say "seed shapes: schedule sweep (POLYATTN_CUDA_FLASH_SPLIT=c key tiles per block; c0: none)"
  python3 bench/gpu/seed_shapes.py chunks ${CHUNK_DTYPES:-f16,f32} > "$OUT/chunks.txt"
  for c in $(cut -d' ' -f1 "$OUT/chunks.txt" | sort -un); do
    grep "^$c " "$OUT/chunks.txt" | cut -d' ' -f2- |
      POLYATTN_CUDA_FLASH_SPLIT=$c timeout 100 "$BIN/polyattn_cuda_bench" --reps 20 $GOPT | grep -v '"impl":"device"' >> "$OUT/polyattn.jsonl" 2>> "$LOG"
  done
  rm -f "$OUT/chunks.txt"
fi
say "seed shapes: torch SDPA efficient, math"
# torch records on stdout, its progress and tables in the log
PYTHONUNBUFFERED=1 timeout 150 python3 bench/compare_torch.py --torch-backends efficient,math \
  --shape-lines "$OUT/shapes.txt" $GOPT --max-sets 16 --jsonl - > "$OUT/torch.jsonl" 2>> "$LOG"
echo "compare_torch exit $?" >> "$LOG"
summary() {
  python3 bench/gpu/seed_summary.py "$OUT/polyattn.jsonl" "$OUT/torch.jsonl" "$OUT/summary.json" \
    "$OUT/summary.md" "$COMMIT" "$(date -u +%F)" > /dev/null
}
summary # early, in case a later stage runs into the time limit
say "elapsed $(( $(date +%s) - start )) s"
if [ "${NCU:-1}" = 1 ] && command -v ncu > /dev/null 2>&1; then
  say "ncu: 1x1x4096 d1024 causal flash (default plan), speed of light + memory + warp states"
  for dt in f16 f32; do
    echo "### $dt" >> "$OUT/ncu.txt"
    echo "seed $dt 1 1 1 4096 4096 1024 1 flash" |
      timeout 60 ncu --launch-skip 2 --launch-count 1 --section SpeedOfLight \
        --section MemoryWorkloadAnalysis --section WarpStateStats \
        "$BIN/polyattn_cuda_bench" --reps 5 >> "$OUT/ncu.txt" 2>&1
    echo "ncu $dt exit $?" >> "$LOG"
  done
fi
summary
cat "$OUT/summary.md"
rm -f "$OUT/shapes.txt"
say "done $(date -u +%T), $(( $(date +%s) - start )) s"
