#!/bin/bash
# CUDA flash/fused backward checks on a GPU machine, from the repository root (CUDA-only build):
#   build; conformance --backend cuda --backward (every algo); test_cuda_backward_determinism;
#   the FA2-sweep backward benchmark (polyattn flash, atomic and deterministic dQ) beside
#   PyTorch SDPA backward (flash, cudnn, efficient) in the same run; then compute-sanitizer
#   memcheck of the backward conformance (flash, fused) and racecheck on a few cases, in the
#   time that is left before DEADLINE seconds.
# Results in $OUT (default ./cuda-bwd-out), at most 8 files:
#   checks.log conformance.log determinism.log sanitizer.log polyattn.jsonl torch.jsonl
#   summary.json summary.md
# Environment: STAGES="build test bench sanitize", DTYPES="bf16 f16", SEQS (default
#   "512 1024 2048 4096 8192 16384"), DIMS ("64 128"), BUILD (dir), ARCH (default 90),
#   DEADLINE (seconds from the start for the sanitizer to stop, default 400), DET=1 (time
#   the deterministic mode too).
set -u
START=$(date +%s)
OUT=${OUT:-$PWD/cuda-bwd-out}
BUILD=${BUILD:-b-cuda-bwd}
ARCH=${ARCH:-90}
STAGES=${STAGES:-build test bench sanitize}
DTYPES=${DTYPES:-bf16 f16}
SEQS=${SEQS:-512 1024 2048 4096 8192 16384}
DIMS=${DIMS:-64 128}
DEADLINE=${DEADLINE:-400}
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
  say "conformance --backend cuda --backward (every algo)"
  timeout 240 "$BIN/conformance" --backend cuda --backward > "$OUT/conformance.log" 2>&1
  echo "conformance exit $?" | tee -a "$LOG"
  echo "  PASS $(grep -c '^PASS' "$OUT/conformance.log") FAIL $(grep -c '^FAIL' "$OUT/conformance.log") UNSUPPORTED $(grep -c '^UNSUPPORTED' "$OUT/conformance.log")" | tee -a "$LOG"
  for a in unfused fused flash; do
    echo "  $a: PASS $(grep '^PASS' "$OUT/conformance.log" | grep -c " $a ") FAIL $(grep '^FAIL' "$OUT/conformance.log" | grep -c " $a ")" >> "$LOG"
  done
  grep -E "^FAIL" "$OUT/conformance.log" | head -20 >> "$LOG"
  tail -2 "$OUT/conformance.log" >> "$LOG"
  say "test_cuda_backward_determinism"
  timeout 200 "$BIN/test_cuda_backward_determinism" > "$OUT/determinism.log" 2>&1
  echo "determinism exit $?" | tee -a "$LOG"
  grep -E "^FAIL|^determinism|^reference:" "$OUT/determinism.log" | head -30 >> "$LOG"
fi

if has bench; then
  say "bench: FA2 sweep backward, dtypes $DTYPES, dims $DIMS, seqs $SEQS"
  : > "$OUT/shapes.txt"
  for dt in $DTYPES; do for d in $DIMS; do for c in 0 1; do for n in $SEQS; do
    echo "fa2 $dt $((16384 / n)) $((2048 / d)) $((2048 / d)) $n $n $d $c flash" >> "$OUT/shapes.txt"
  done; done; done; done
  timeout 300 "$BIN/polyattn_cuda_bwd_bench" ${DET:+--det} < "$OUT/shapes.txt" > "$OUT/polyattn.jsonl" 2>> "$LOG"
  echo "cuda_bwd_bench exit $?" >> "$LOG"
  say "torch"
  PYTHONUNBUFFERED=1 timeout 300 python3 bench/gpu/torch_sdpa_bwd.py < "$OUT/shapes.txt" > "$OUT/torch.jsonl" 2>> "$LOG"
  echo "torch_sdpa_bwd exit $?" >> "$LOG"
  python3 bench/gpu/summarize_bwd.py "$OUT/polyattn.jsonl" "$OUT/torch.jsonl" "$OUT/summary.json" \
    "$OUT/summary.md" "$COMMIT" "$(date -u +%F)" > /dev/null
  rm -f "$OUT/shapes.txt"
  cat "$OUT/summary.md"
fi

if has sanitize; then
  : > "$OUT/sanitizer.log"
  t=$(( $(left) - 60 ))
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
    t=$(( $(left) - 5 ))
    [ "$t" -gt 10 ] || break
    echo "### racecheck --case $c" >> "$OUT/sanitizer.log"
    timeout $(( t < 60 ? t : 60 )) compute-sanitizer --tool racecheck --error-exitcode 99 \
      "$BIN/conformance" --backend cuda --backward --algo flash --case "$c" >> "$OUT/sanitizer.log" 2>&1
    echo "racecheck $c exit $?" | tee -a "$LOG"
  done
  grep -E "ERROR SUMMARY|RACECHECK SUMMARY|^conformance|### " "$OUT/sanitizer.log" >> "$LOG"
fi
say "done"
