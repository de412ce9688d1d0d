#!/bin/bash
# session 9 call 7: final state: seed_bench (conformance with every schedule forced, odd-shape
# checks, seed shapes beside SDPA as graph replays) and ctest -L cuda, at HEAD (wgmma default)
set -u
R=/tmp/s9c7; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C" >> $R/log
BUILD=b-seed GRAPH=20 CHUNKS=0 NCU=0 COMMIT=$C OUT=$R/seed bash bench/gpu/seed_bench.sh > $R/seed.txt 2>&1
grep -E "^conformance cuda|^exit|checks:" $R/seed/seed.log | tee -a $R/log
cat $R/seed/summary.md >> $R/log
t seed
STAGES="build test" BUILD=b-checks COMMIT=$C OUT=$R/checks bash bench/gpu/cuda_checks.sh > $R/checks.txt 2>&1
grep -E "tests passed|Failed|Passed|Test +#" $R/checks/*.log 2>/dev/null | tail -12 | tee -a $R/log
t done; pack
