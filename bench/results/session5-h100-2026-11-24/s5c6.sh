#!/bin/bash
# session 5 call 6: final numbers at HEAD (segment end staged in shared memory): seed shapes beside SDPA (seed_bench, no sweep), then ctest -L cuda and sanitizers (cuda_checks build test sanitize)
set -u
R=/tmp/s5c6; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit)
BUILD=b-seed OUT=$R/seed NCU=0 CHUNKS=0 COMMIT=$C bash bench/gpu/seed_bench.sh > $R/seed_bench.out 2>&1
t seed exit $?; grep -A6 "^| dtype" $R/seed/summary.md | head -20; pack
STAGES="build test sanitize" BUILD=b-checks OUT=$R/checks COMMIT=$C bash bench/gpu/cuda_checks.sh > $R/checks.out 2>&1
t checks exit $?; cat $R/checks/checks.log | tail -30; rm -f $R/checks/memcheck.log.gz; gzip $R/checks/*.log 2>/dev/null; pack
