#!/bin/bash
# session 4 call 10: final numbers at HEAD: FA2 sweep beside torch flash/cudnn; seed shapes beside torch (seed_bench, no sweep)
set -u
R=/tmp/s4c10; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit)
STAGES="build bench" SUITES=fa2 BUILD=b-fa2 OUT=$R/fa2 COMMIT=$C bash bench/gpu/cuda_checks.sh > $R/fa2.out 2>&1
t fa2 exit $?; tail -40 $R/fa2/summary.md 2>/dev/null | head -60; pack
BUILD=b-seed OUT=$R/seed NCU=0 CHUNKS=0 COMMIT=$C bash bench/gpu/seed_bench.sh > $R/seed_bench.out 2>&1
t seed exit $?; grep -A20 "^| dtype" $R/seed/summary.md | head -20; pack
