#!/bin/bash
# session 4 call 12: dK/dV kernels share their query walk and start (new) vs 36cdf32 (base): backward A/B; ctest -L cuda; backward sanitizers
set -u
R=/tmp/s4c12; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
{ python3 bench/gpu/shapes.py fa2 | grep "^fa2 bf16" | awk '$6>=2048 && $6<=8192'; echo "odd f16 2 4 2 77 130 64 2 flash"; echo "odd bf16 1 3 1 129 65 128 1 flash"; } > $R/bwd.txt
BENCH=polyattn_cuda_bwd_bench BUILD=b-new OUT=$R/ab-bwd ROUNDS=2 bash bench/gpu/ab_bench.sh .gpu-kit/base < $R/bwd.txt 2>>$R/log
t ab bwd done; cat $R/ab-bwd/ab.md; pack
B=b-new/bin
ninja -C b-new -j16 > $R/build.txt 2>&1 || tail -20 $R/build.txt
(cd b-new && timeout 150 ctest -L cuda --output-on-failure > $R/ctest.log 2>&1); grep -E "tests passed|Failed|Not Run|Test +#" $R/ctest.log | tee -a $R/log
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 99 $B/conformance --backend cuda --backward --algo flash > $R/memcheck.log 2>&1; echo "memcheck bwd flash exit $?" | tee -a $R/log
grep -E "ERROR SUMMARY|conformance cuda" $R/memcheck.log | tee -a $R/log
for c in odd_37x53_d32 causal_tl_129_d128 bshd_pad_gqa_47x61_d64; do
  timeout 100 compute-sanitizer --tool racecheck --error-exitcode 99 $B/conformance --backend cuda --backward --algo flash --case $c >> $R/racecheck.log 2>&1; echo "racecheck bwd $c exit $?" | tee -a $R/log
done
grep -E "RACECHECK SUMMARY" $R/racecheck.log | sort | uniq -c | tee -a $R/log
t done; pack
