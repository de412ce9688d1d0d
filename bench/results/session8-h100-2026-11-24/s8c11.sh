#!/bin/bash
# session 8 call 11: final checks at HEAD: cuda_checks (build, ctest -L cuda, compute-sanitizer
# memcheck on all of conformance and racecheck on the reduced set), memcheck/racecheck of flash
# with column halves forced, then seed_bench (conformance with every schedule forced, odd-shape
# checks, seed shapes beside SDPA as graph replays, both sides rotating the same input sets)
set -u
R=/tmp/s8c11; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C" >> $R/log
STAGES="build test sanitize" BUILD=b-checks OUT=$R/checks COMMIT=$C bash bench/gpu/cuda_checks.sh > $R/checks.txt 2>&1
grep -E "tests passed|exit|ERROR SUMMARY|RACECHECK SUMMARY|build took" $R/checks/checks.log | tee -a $R/log
t checks; pack
B=b-checks/bin
POLYATTN_CUDA_COL_HALVES=1 timeout 240 compute-sanitizer --tool memcheck --error-exitcode 99 $B/conformance --backend cuda --algo flash > $R/memcheck-cols.txt 2>&1; echo "memcheck flash cols forced exit $?" | tee -a $R/log
for c in d512_17x40 large_mag_br_70x150_d512; do
  POLYATTN_CUDA_COL_HALVES=1 timeout 120 compute-sanitizer --tool racecheck --error-exitcode 99 $B/conformance --backend cuda --case $c >> $R/racecheck-cols.txt 2>&1; echo "racecheck $c cols forced exit $?" | tee -a $R/log
done
t sanitize-cols; pack
BUILD=b-seed GRAPH=20 CHUNKS=0 NCU=0 COMMIT=$C OUT=$R/seed bash bench/gpu/seed_bench.sh > $R/seed.txt 2>&1
grep -E "^conformance cuda|^exit|checks:" $R/seed/seed.log | tee -a $R/log
cat $R/seed/summary.md >> $R/log
t done; pack
