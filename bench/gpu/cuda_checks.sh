#!/bin/bash
# CUDA backend checks on a GPU machine, from the repository root:
#   build (-j16), ctest -L cuda, compute-sanitizer memcheck (whole conformance suite) and
#   racecheck (a reduced case set), then `polyattn bench` beside PyTorch SDPA (flash, cudnn,
#   efficient, math) in the same run through bench/compare_torch.py: the FlashAttention-2
#   sweep forward and backward, and the article's five shapes as CUDA-graph replays (GPU
#   time, without the host's launch cost) rotating among the same input sets on both sides.
# Results in $OUT (default ./cuda-checks-out):
#   checks.log   build tail, ctest, sanitizer summaries, the tables
#   memcheck.log racecheck.log   compare_torch_<suite>.{csv,json,txt}, polyattn_<suite>.*
# Environment: STAGES="build test sanitize bench" (subset), ARCH (CUDA architectures,
#   default 90), BUILD (dir), GRAPH (calls per graph for the article suite, default 20; 0:
#   per-call events), ROTATE (input sets, default 16), REPS (default 20).
#   POLYATTN_FORCE=... (the library's documented override) forces a kernel for A/B runs.
set -u
OUT=${OUT:-$PWD/cuda-checks-out}
BUILD=${BUILD:-build-gpu}
ARCH=${ARCH:-90}
STAGES=${STAGES:-build test sanitize bench}
GRAPH=${GRAPH:-20}
ROTATE=${ROTATE:-16}
REPS=${REPS:-20}
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
         ninja -C "$BUILD" -j16; } > "$OUT/build.txt" 2>&1; then
    tail -40 "$OUT/build.txt" | tee -a "$LOG"; exit 1
  fi
  grep -iE "warning|spill" "$OUT/build.txt" | head -20 >> "$LOG"
  say "build took $(( $(date +%s) - start )) s"
  rm -f "$OUT/build.txt"
fi
CONF=$BUILD/bin/conformance
POLYATTN=$BUILD/bin/polyattn

if has test; then
  say "ctest -L cuda"
  (cd "$BUILD" && timeout 600 ctest -L cuda --output-on-failure) > "$OUT/ctest.txt" 2>&1
  grep -E "^(FAIL|UNSUPPORTED)|conformance cuda|PASS test|tests passed|Failed|Passed|Skipped|max \|O" "$OUT/ctest.txt" >> "$LOG"
  grep -E "Test +#" "$OUT/ctest.txt" >> "$LOG"
  mv "$OUT/ctest.txt" "$OUT/ctest.log"
fi

if has sanitize; then
  say "compute-sanitizer memcheck: conformance --backend cuda (every case, algo, dtype)"
  timeout ${MEMCHECK_TIMEOUT:-300} compute-sanitizer --tool memcheck --leak-check full --error-exitcode 99 \
    "$CONF" --backend cuda > "$OUT/memcheck.log" 2>&1
  echo "memcheck exit $?" | tee -a "$LOG"
  grep -E "ERROR SUMMARY|conformance cuda" "$OUT/memcheck.log" | tail -3 >> "$LOG"
  say "compute-sanitizer racecheck: reduced case set"
  : > "$OUT/racecheck.log"
  for c in ${RACE_CASES:-odd_37x53_d32 causal_tl_129_d128 d256_causal_33x65 d512_17x40 bshd_pad_gqa_47x61_d64 long_causal_br_300x257_d64}; do
    echo "### case $c" >> "$OUT/racecheck.log"
    timeout ${RACECHECK_TIMEOUT:-120} compute-sanitizer --tool racecheck --error-exitcode 99 \
      "$CONF" --backend cuda --case "$c" >> "$OUT/racecheck.log" 2>&1
    echo "racecheck $c exit $?" | tee -a "$LOG"
  done
  grep -E "RACECHECK SUMMARY|ERROR SUMMARY" "$OUT/racecheck.log" | sort | uniq -c >> "$LOG"
fi

if has bench; then
  cmp() { PYTHONUNBUFFERED=1 timeout 1200 python3 bench/compare_torch.py --polyattn "$POLYATTN" \
            --backends cuda --reps "$REPS" "$@" >> "$LOG" 2>&1; echo "compare_torch $* exit $?" | tee -a "$LOG"; }
  say "bench: FlashAttention-2 sweep, forward and backward"
  cmp --suite fa2 --dtype f16,bf16 --out "$OUT/fa2"
  cmp --suite fa2 --dtype f16,bf16 --algo flash --backward --out "$OUT/fa2-backward"
  say "bench: the article's five shapes (graph $GRAPH, $ROTATE input sets)"
  gopt=""; [ "$GRAPH" != 0 ] && gopt="--graph $GRAPH"
  # shellcheck disable=SC2086
  cmp --suite article --dtype f16,bf16,f32 --torch-backends efficient,math,cudnn $gopt \
    --rotate "$ROTATE" --out "$OUT/article"
fi

say "done $(date -u +%T)"
