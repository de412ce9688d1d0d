#!/bin/bash
# Same-run A/B of two source trees of polyattn on one GPU: builds each (CUDA and OpenCL,
# sm_90), then runs the same `polyattn bench` commands on both, alternating A and B for
# each measurement set so that clock drift hits both alike.
# Usage: dev/ab_trees.sh A_DIR B_DIR OUT_DIR       (from anywhere; needs nvcc, cmake, ninja)
# Writes OUT_DIR/{a,b}-<set>.json and OUT_DIR/ab.log; compare with dev/ab_compare.py.
set -u
A=$(cd "$1" && pwd); B=$(cd "$2" && pwd); OUT=$3
mkdir -p "$OUT"
log() { echo "== $(date -u +%T) $*" | tee -a "$OUT/ab.log"; }
build() { # dir name
  cmake -G Ninja -S "$1" -B "/tmp/ab-build-$2" -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON \
    -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=ON -DPOLYATTN_CUDA_ARCHITECTURES=90 -DBUILD_TESTING=OFF ${AB_CMAKE_ARGS:-} \
    > "$OUT/build-$2.txt" 2>&1 && ninja -C "/tmp/ab-build-$2" -j8 polyattn >> "$OUT/build-$2.txt" 2>&1 &&
    ninja -C "/tmp/ab-build-$2" -j8 >> "$OUT/build-$2.txt" 2>&1 || { tail -30 "$OUT/build-$2.txt"; return 1; }
}
log "build a ($A) and b ($B)"
build "$A" a & pa=$!; build "$B" b & pb=$!
wait $pa || exit 1; wait $pb || exit 1
log "built"
article_suite() { "$1" bench --suite article --list >/dev/null 2>&1 && echo article || echo seed; }
run() { # set-name, bench args...
  local name=$1; shift
  for side in a b; do
    local bin=/tmp/ab-build-$side/bin/polyattn
    local args=("$@")
    for i in "${!args[@]}"; do [ "${args[$i]}" = ARTICLE ] && args[$i]=$(article_suite "$bin"); done
    log "$side $name: ${args[*]}"
    "$bin" bench --backend cuda "${args[@]}" --json "$OUT/$side-$name.json" > "$OUT/$side-$name.txt" 2>&1 ||
      log "$side $name: exit $?"
  done
}
run fa2-fwd --suite fa2 --algo flash --dtype f16,bf16
run fa2-bwd --suite fa2 --algo flash --dtype bf16 --backward
run article-fwd --suite ARTICLE --algo auto,flash --dtype f32,f16,bf16
log "done"
