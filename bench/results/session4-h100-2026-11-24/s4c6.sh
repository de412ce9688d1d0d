#!/bin/bash
# session 4 call 6: cuda_checks (build, ctest -L cuda, memcheck, racecheck) at HEAD; A/B small seed shapes, 6 rounds, against 8ace4b9
set -u
R=/tmp/s4c6; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
python3 bench/gpu/seed_shapes.py seed | grep -E " (512|128) (512|128) " > $R/small.txt
cat $R/small.txt
BUILD=b-new OUT=$R/ab ROUNDS=6 bash bench/gpu/ab_bench.sh .gpu-kit/base < $R/small.txt 2>>$R/log
t ab done; cat $R/ab/ab.md; pack
STAGES="build test sanitize" BUILD=b-checks OUT=$R/checks COMMIT=$(cat .gpu-kit/commit) bash bench/gpu/cuda_checks.sh > $R/checks.out 2>&1
t checks exit $?; tail -40 $R/checks/checks.log; pack
