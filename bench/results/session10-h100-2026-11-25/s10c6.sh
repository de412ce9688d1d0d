#!/bin/bash
# session 10 call 6: final state: seed_bench (conformance with every schedule forced, odd-shape checks, seed shapes beside SDPA as graph replays) and ctest -L cuda, at HEAD
set -u
R=/tmp/s10c6; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; tar czf $OUT/results.tgz -C $R . ; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C" >> $R/log
BUILD=b-seed GRAPH=20 CHUNKS=0 NCU=0 COMMIT=$C OUT=$R/seed bash bench/gpu/seed_bench.sh > $R/seed.txt 2>&1
grep -E "^conformance cuda|^exit|checks:" $R/seed/seed.log | tee -a $R/log
cat $R/seed/summary.md >> $R/log
t seed
POLYATTN_CUDA_WGMMA_SPLIT=1 timeout 60 b-seed/bin/conformance --backend cuda --algo flash > $R/conf_split1.txt 2>&1; echo "exit $?" >> $R/conf_split1.txt
echo "wgmma split forced: $(grep -E '^conformance cuda|^exit' $R/conf_split1.txt | tr '\n' ' ')" | tee -a $R/log
STAGES="build test" BUILD=b-checks COMMIT=$C OUT=$R/checks bash bench/gpu/cuda_checks.sh > $R/checks.txt 2>&1
grep -E "tests passed|Failed|Passed|Test +#" $R/checks/*.log 2>/dev/null | tail -12 | tee -a $R/log
t done; pack
