#!/bin/bash
# session 8 call 14: seed_bench at HEAD after the 16-bit column-halves rule (conformance with
# every schedule forced, odd-shape checks, seed shapes beside SDPA as graph replays)
set -u
R=/tmp/s8c14; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C" >> $R/log
BUILD=b-seed GRAPH=20 CHUNKS=0 NCU=0 COMMIT=$C OUT=$R/seed bash bench/gpu/seed_bench.sh > $R/seed.txt 2>&1
grep -E "^conformance cuda|^exit|checks:" $R/seed/seed.log | tee -a $R/log
cat $R/seed/summary.md >> $R/log
t done; pack
