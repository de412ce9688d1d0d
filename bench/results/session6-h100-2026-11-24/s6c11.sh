#!/bin/bash
# session 6 call 11: final numbers at HEAD (key halves replace the balanced schedule): seed shapes beside SDPA (seed_bench, no sweep), ctest -L cuda and sanitizers (cuda_checks build test sanitize), sanitizers with key halves forced
set -u
R=/tmp/s6c11; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit)
BUILD=b-seed OUT=$R/seed NCU=0 CHUNKS=0 COMMIT=$C bash bench/gpu/seed_bench.sh > $R/seed_bench.out 2>&1
t seed exit $?; grep -E "^conformance|^exit|checks:" $R/seed/seed.log | tee -a $R/log; grep -A6 "^| dtype" $R/seed/summary.md | head -20; pack
STAGES="build test sanitize" BUILD=b-checks OUT=$R/checks COMMIT=$C bash bench/gpu/cuda_checks.sh > $R/checks.out 2>&1
t checks exit $?; tail -25 $R/checks/checks.log; pack
CONF=b-checks/bin/conformance
for c in d512_17x40 large_mag_br_70x150_d512; do
  POLYATTN_CUDA_KEY_HALVES=1 POLYATTN_CUDA_FLASH_SPLIT=0 timeout 120 compute-sanitizer --tool memcheck --error-exitcode 99 $CONF --backend cuda --algo flash --case $c > $R/halves-memcheck-$c.log 2>&1; echo "halves memcheck $c exit $?" | tee -a $R/log
  POLYATTN_CUDA_KEY_HALVES=1 POLYATTN_CUDA_FLASH_SPLIT=0 timeout 120 compute-sanitizer --tool racecheck --error-exitcode 99 $CONF --backend cuda --algo flash --case $c > $R/halves-racecheck-$c.log 2>&1; echo "halves racecheck $c exit $?" | tee -a $R/log
  grep -h "SUMMARY" $R/halves-*-$c.log | tee -a $R/log
done
rm -f $R/checks/memcheck.log.gz; gzip $R/checks/*.log $R/*.log 2>/dev/null; gunzip $R/log.gz 2>/dev/null; pack; t done
