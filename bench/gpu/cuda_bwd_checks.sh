#!/bin/bash
# CUDA flash/fused backward checks on a GPU machine, from the repository root (CUDA-only build):
#   build; conformance --backend cuda --backward (every algo); test_cuda_backward_determinism;
#   the FA2-sweep backward benchmark (polyattn flash, atomic and deterministic dQ) beside
#   PyTorch SDPA backward (flash, cudnn, efficient; bench/compare_torch.py --backward
#   --shape-lines, gradients checked before timing) in the same run; then compute-sanitizer
#   memcheck of the backward conformance (flash, fused) and racecheck on a few cases, in the
#   time that is left before DEADLINE seconds.
# Results in $OUT (default ./cuda-bwd-out), at most 8 files:
#   checks.log conformance.log determinism.log sanitizer.log polyattn.jsonl torch.jsonl
#   summary.json summary.md
# Environment: STAGES="build test bench sanitize", DTYPES="bf16 f16", SEQS (default
#   "512 1024 2048 4096 8192 16384"), DIMS ("64 128"), BUILD (dir), ARCH (default 90),
#   DEADLINE (seconds from the start for the sanitizer to stop, default 400), DET_DTYPES
#   (dtypes whose deterministic mode is timed too, default bf16), ALT_TILES (other dK/dV
#   configurations, e.g. "a f": conformance and determinism after the default's, and after
#   the sanitizer a bf16 bench on ALT_SEQS; ALT_RESERVE seconds are kept for it).
#   QUICK=1: smoke test, defaults STAGES="build bench", DTYPES=bf16, DIMS=64, SEQS=1024
#   (two shapes, causal and not, atomic and deterministic dQ); each can still be set.
set -u
START=$(date +%s)
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  STAGES=${STAGES:-build bench} DTYPES=${DTYPES:-bf16} DIMS=${DIMS:-64} SEQS=${SEQS:-1024}
fi
OUT=${OUT:-$PWD/cuda-bwd-out}
BUILD=${BUILD:-b-cuda-bwd}
ARCH=${ARCH:-90}
STAGES=${STAGES:-build test bench sanitize}
DTYPES=${DTYPES:-bf16 f16}
SEQS=${SEQS:-512 1024 2048 4096 8192 16384}
DIMS=${DIMS:-64 128}
DEADLINE=${DEADLINE:-400}
DET_DTYPES=${DET_DTYPES:-bf16}
ALT_TILES=${ALT_TILES:-}
ALT_SEQS=${ALT_SEQS:-1024 4096 16384}
mkdir -p "$OUT"
LOG=$OUT/checks.log
has() { case " $STAGES " in *" $1 "*) return 0;; esac; return 1; }
say() { echo "== [$(( $(date +%s) - START ))s] $*" | tee -a "$LOG"; }
left() { echo $(( DEADLINE - ($(date +%s) - START) )); }

COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}
say "$(date -u +%FT%TZ) commit $COMMIT"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv >> "$LOG" 2>&1

if has build; then
  say "build (arch $ARCH)"
  if ! { cmake -G Ninja -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON \
           -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_WERROR=ON \
           -DPOLYATTN_CUDA_ARCHITECTURES="$ARCH" > /dev/null &&
         ninja -C "$BUILD" -j16 polyattn_cuda polyattn_cuda_bwd_bench conformance \
           test_cuda_backward_determinism; } > "$OUT/build.txt" 2>&1; then
    tail -40 "$OUT/build.txt" | tee -a "$LOG"; exit 1
  fi
  grep -iE "warning|spill" "$OUT/build.txt" | head -20 >> "$LOG"
  rm -f "$OUT/build.txt"
  say "built"
fi
BIN=$BUILD/bin

if has test; then
  : > "$OUT/conformance.log"; : > "$OUT/determinism.log"
  for tile in default $ALT_TILES; do
    if [ "$tile" = default ]; then unset POLYATTN_CUDA_BWD_TILE; algo=""; else export POLYATTN_CUDA_BWD_TILE=$tile; algo="--algo flash"; fi
    say "conformance --backend cuda --backward ${algo:-(every algo)} (dK/dV tile $tile)"
    echo "### conformance --backward $algo tile $tile" >> "$OUT/conformance.log"
    timeout 240 "$BIN/conformance" --backend cuda --backward $algo > "$OUT/conf.txt" 2>&1
    echo "conformance exit $? (tile $tile)" | tee -a "$LOG"
    echo "  PASS $(grep -c '^PASS' "$OUT/conf.txt") FAIL $(grep -c '^FAIL' "$OUT/conf.txt") UNSUPPORTED $(grep -c '^UNSUPPORTED' "$OUT/conf.txt")" | tee -a "$LOG"
    for a in unfused fused flash; do
      echo "  $a: PASS $(grep '^PASS' "$OUT/conf.txt" | grep -c " $a ") FAIL $(grep '^FAIL' "$OUT/conf.txt" | grep -c " $a ")" >> "$LOG"
    done
    grep -E "^FAIL" "$OUT/conf.txt" | head -20 >> "$LOG"
    tail -1 "$OUT/conf.txt" >> "$LOG"
    cat "$OUT/conf.txt" >> "$OUT/conformance.log"; rm -f "$OUT/conf.txt"
    say "test_cuda_backward_determinism (tile $tile)"
    echo "### determinism tile $tile" >> "$OUT/determinism.log"
    timeout 200 "$BIN/test_cuda_backward_determinism" >> "$OUT/determinism.log" 2>&1
    echo "determinism exit $? (tile $tile)" | tee -a "$LOG"
  done
  unset POLYATTN_CUDA_BWD_TILE
  grep -E "^FAIL|^determinism|^reference:|^###" "$OUT/determinism.log" | head -40 >> "$LOG"
fi

if has bench; then
  say "bench: FA2 sweep backward, dtypes $DTYPES, dims $DIMS, seqs $SEQS (deterministic too: $DET_DTYPES)"
  : > "$OUT/shapes.txt"; : > "$OUT/det.txt"
  for dt in $DTYPES; do for d in $DIMS; do for c in 0 1; do for n in $SEQS; do
    line="fa2 $dt $((16384 / n)) $((2048 / d)) $((2048 / d)) $n $n $d $c flash"
    echo "$line" >> "$OUT/shapes.txt"
    case " $DET_DTYPES " in *" $dt "*) echo "$line" >> "$OUT/det.txt";; esac
  done; done; done; done
  : > "$OUT/polyattn.jsonl"
  # deterministic dtypes first (both modes), then the others (atomic only)
  grep -vxF -f "$OUT/det.txt" "$OUT/shapes.txt" > "$OUT/nodet.txt"
  timeout 200 "$BIN/polyattn_cuda_bwd_bench" --det < "$OUT/det.txt" >> "$OUT/polyattn.jsonl" 2>> "$LOG"
  echo "cuda_bwd_bench (atomic + deterministic) exit $?" >> "$LOG"
  timeout 150 "$BIN/polyattn_cuda_bwd_bench" < "$OUT/nodet.txt" >> "$OUT/polyattn.jsonl" 2>> "$LOG"
  echo "cuda_bwd_bench exit $?" >> "$LOG"
  say "torch"
  # torch records on stdout, its progress and tables in the log
  PYTHONUNBUFFERED=1 timeout 200 python3 bench/compare_torch.py --backward \
    --torch-backends flash,cudnn,efficient --shape-lines "$OUT/shapes.txt" --jsonl - \
    > "$OUT/torch.jsonl" 2>> "$LOG"
  echo "compare_torch --backward exit $?" >> "$LOG"
  python3 bench/gpu/summarize_bwd.py "$OUT/polyattn.jsonl" "$OUT/torch.jsonl" "$OUT/summary.json" \
    "$OUT/summary.md" "$COMMIT" "$(date -u +%F)" > /dev/null
  rm -f "$OUT/shapes.txt" "$OUT/det.txt" "$OUT/nodet.txt"
  cat "$OUT/summary.md"
fi

if has sanitize; then
  : > "$OUT/sanitizer.log"
  t=$(( $(left) - 60 - ${ALT_RESERVE:-0} ))
  if [ "$t" -gt 20 ]; then
    say "compute-sanitizer memcheck: conformance --backward --algo flash, fused (${t}s)"
    for a in flash fused; do
      echo "### memcheck --algo $a" >> "$OUT/sanitizer.log"
      timeout $(( t / 2 )) compute-sanitizer --tool memcheck --error-exitcode 99 \
        "$BIN/conformance" --backend cuda --backward --algo $a >> "$OUT/sanitizer.log" 2>&1
      echo "memcheck $a exit $?" | tee -a "$LOG"
    done
  fi
  for c in ${RACE_CASES:-causal_tl_129_d128 bshd_pad_gqa_47x61_d64}; do
    t=$(( $(left) - 5 - ${ALT_RESERVE:-0} ))
    [ "$t" -gt 10 ] || break
    echo "### racecheck --case $c" >> "$OUT/sanitizer.log"
    timeout $(( t < 60 ? t : 60 )) compute-sanitizer --tool racecheck --error-exitcode 99 \
      "$BIN/conformance" --backend cuda --backward --algo flash --case "$c" >> "$OUT/sanitizer.log" 2>&1
    echo "racecheck $c exit $?" | tee -a "$LOG"
  done
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^conformance|### " "$OUT/sanitizer.log" >> "$LOG"
fi
if has bench && [ -n "$ALT_TILES" ]; then
  for d in $DIMS; do for c in 0 1; do for n in $ALT_SEQS; do
    echo "fa2 bf16 $((16384 / n)) $((2048 / d)) $((2048 / d)) $n $n $d $c flash"
  done; done; done > "$OUT/alt.txt"
  for tile in $ALT_TILES; do
    t=$(( $(left) - 10 ))
    [ "$t" -gt 15 ] || break
    say "bench: dK/dV tile $tile (bf16, seqs $ALT_SEQS, ${t}s)"
    POLYATTN_CUDA_BWD_TILE=$tile timeout $t "$BIN/polyattn_cuda_bwd_bench" < "$OUT/alt.txt" >> "$OUT/polyattn.jsonl" 2>> "$LOG"
    echo "cuda_bwd_bench tile $tile exit $?" >> "$LOG"
  done
  rm -f "$OUT/alt.txt"
  python3 bench/gpu/summarize_bwd.py "$OUT/polyattn.jsonl" "$OUT/torch.jsonl" "$OUT/summary.json" \
    "$OUT/summary.md" "$COMMIT" "$(date -u +%F)" | tail -20
fi
say "done"
