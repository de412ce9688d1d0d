#!/bin/bash
# session 10 call 7: V0 after Q,K0 landed + lane-parallel Q/K issue: seed_bench (conformance, forced schedules, odd checks, seed beside SDPA) + split-forced conformance
set -u
R=/tmp/s10c7; rm -rf $R; mkdir -p $R
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
t done; pack
