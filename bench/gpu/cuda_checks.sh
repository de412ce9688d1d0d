#!/bin/bash
# CUDA backend checks on a GPU machine, from the repository root:
#   build (-j16), ctest -L cuda, benchmarks of polyattn (cuda_bench) beside PyTorch SDPA
#   (flash, cudnn, efficient, math; bench/compare_torch.py --shape-lines) in the same run,
#   then compute-sanitizer memcheck (whole conformance suite) and racecheck (a reduced case set) on the conformance test.  Results land in $OUT (default ./cuda-checks-out):
#     checks.log      build tail, ctest, sanitizer summaries
#     memcheck.log    racecheck.log
#     polyattn.jsonl  torch.jsonl  summary.json  summary.md
# Environment: STAGES="build test sanitize bench" (subset), SUITES="fa2 seed unfused",
#   QUICK=1 (smoke test: STAGES default "build bench", shapes.py --quick: a few shapes per
#   suite), ARCH (CUDA architectures, default 90), BUILD (dir).
set -u
QUICK=${QUICK:-0}
OUT=${OUT:-$PWD/cuda-checks-out}
BUILD=${BUILD:-build-gpu}
ARCH=${ARCH:-90}
if [ "$QUICK" = 1 ]; then STAGES=${STAGES:-build bench}; else STAGES=${STAGES:-build test sanitize bench}; fi
SUITES=${SUITES:-fa2 seed unfused}
mkdir -p "$OUT"
LOG=$OUT/checks.log
has() { case " $STAGES " in *" $1 "*) return 0;; esac; return 1; }
say() { echo "== $*" | tee -a "$LOG"; }

COMMIT=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null)}
say "$(date -u +%FT%TZ) commit $COMMIT $(git status --porcelain 2>/dev/null | wc -l) uncommitted paths"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv >> "$LOG" 2>&1

if has build; then
  say "build (arch $ARCH)"
  start=$(date +%s)
  if ! { cmake -G Ninja -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON \
           -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_WERROR=ON \
           -DPOLYATTN_CUDA_ARCHITECTURES="$ARCH" &&
         ninja -C "$BUILD" -j16 polyattn_cuda polyattn_cuda_bench conformance test_cuda_interop test_flash_schedule \
           test_cuda_backward_determinism; } > "$OUT/build.txt" 2>&1; then
    tail -40 "$OUT/build.txt" | tee -a "$LOG"; exit 1
  fi
  grep -iE "warning|spill" "$OUT/build.txt" | head -20 >> "$LOG"
  say "build took $(( $(date +%s) - start )) s"
  rm -f "$OUT/build.txt"
fi
CONF=$BUILD/bin/conformance

if has test; then
  say "ctest -L cuda"
  (cd "$BUILD" && timeout 600 ctest -L cuda --output-on-failure) > "$OUT/ctest.txt" 2>&1
  grep -E "^(FAIL|UNSUPPORTED)|conformance cuda|PASS test|tests passed|Failed|Passed|Skipped|max \|O" "$OUT/ctest.txt" >> "$LOG"
  grep -E "Test +#" "$OUT/ctest.txt" >> "$LOG"
  mv "$OUT/ctest.txt" "$OUT/ctest.log"
fi

if has bench; then
  quick=""; [ "$QUICK" = 1 ] && quick=--quick
  say "bench: suites $SUITES $quick"
  python3 bench/gpu/shapes.py $SUITES $quick > "$OUT/shapes.txt"
  timeout 400 "$BUILD/bin/polyattn_cuda_bench" < "$OUT/shapes.txt" > "$OUT/polyattn.jsonl" 2>> "$LOG"
  echo "cuda_bench exit $?" >> "$LOG"
  # torch records on stdout, its progress and tables in the log
  PYTHONUNBUFFERED=1 timeout 400 python3 bench/compare_torch.py --shape-lines "$OUT/shapes.txt" --max-sets 16 \
    --jsonl - > "$OUT/torch.jsonl" 2>> "$LOG"
  echo "compare_torch exit $?" >> "$LOG"
  python3 bench/gpu/summarize.py "$OUT/polyattn.jsonl" "$OUT/torch.jsonl" "$OUT/summary.json" \
    "$OUT/summary.md" "$COMMIT" "$(date -u +%F)" > /dev/null
  rm -f "$OUT/shapes.txt"
  cat "$OUT/summary.md"
fi
if has sanitize; then
  say "compute-sanitizer memcheck: conformance --backend cuda (every case, algo, dtype)"
  timeout ${MEMCHECK_TIMEOUT:-300} compute-sanitizer --tool memcheck --leak-check full --error-exitcode 99 \
    "$CONF" --backend cuda > "$OUT/memcheck.log" 2>&1
  echo "memcheck exit $?" | tee -a "$LOG"
  grep -E "ERROR SUMMARY|conformance cuda" "$OUT/memcheck.log" | tail -3 >> "$LOG"
  say "compute-sanitizer racecheck: reduced case set, tensor-core and generic flash"
  : > "$OUT/racecheck.log"
  for c in ${RACE_CASES:-odd_37x53_d32 causal_tl_129_d128 d256_causal_33x65 d512_17x40 bshd_pad_gqa_47x61_d64 long_causal_br_300x257_d64}; do
    for tc in 0 1; do
      echo "### case $c POLYATTN_CUDA_NO_TC=$tc" >> "$OUT/racecheck.log"
      POLYATTN_CUDA_NO_TC=$tc timeout ${RACECHECK_TIMEOUT:-120} compute-sanitizer --tool racecheck --error-exitcode 99 \
        "$CONF" --backend cuda --case "$c" >> "$OUT/racecheck.log" 2>&1
      echo "racecheck $c no_tc=$tc exit $?" | tee -a "$LOG"
    done
  done
  grep -E "RACECHECK SUMMARY|ERROR SUMMARY" "$OUT/racecheck.log" | sort | uniq -c >> "$LOG"
fi

say "done $(date -u +%T)"
