#!/bin/bash
# session 4 call 9: load_rows pointer increments (new) vs 98c0708 (base): A/B seed + FA2 forward + FA2 backward; ctest, conformance, checks, sanitizers
set -u
R=/tmp/s4c9; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv >> $R/log 2>&1
{ python3 bench/gpu/seed_shapes.py seed; python3 bench/gpu/shapes.py fa2 | grep "^fa2 bf16" | awk '$6>=2048'; } > $R/fwd.txt
BUILD=b-new OUT=$R/ab ROUNDS=2 bash bench/gpu/ab_bench.sh .gpu-kit/base < $R/fwd.txt 2>>$R/log
t ab fwd done; cat $R/ab/ab.md; pack
B=b-new/bin
ninja -C b-new -j16 > $R/build.txt 2>&1 || tail -20 $R/build.txt
(cd b-new && timeout 150 ctest -L cuda --output-on-failure > $R/ctest.log 2>&1); grep -E "tests passed|Failed|Not Run" $R/ctest.log | tee -a $R/log
POLYATTN_CUDA_FLASH_SPLIT=1 timeout 60 $B/conformance --backend cuda --algo flash > $R/conf-split1.txt 2>&1; echo "conformance split1 exit $?" | tee -a $R/log; grep -hE "^FAIL|^conformance cuda" $R/conf-split1.txt | head -5 | tee -a $R/log
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
{ timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; POLYATTN_CUDA_FLASH_SPLIT=1 timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; } > $R/checks.jsonl 2>>$R/log
python3 -c "
import json
rows=[json.loads(l) for l in open('$R/checks.jsonl') if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks:', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok')" | tee -a $R/log
timeout 200 compute-sanitizer --tool memcheck --error-exitcode 99 $B/conformance --backend cuda > $R/memcheck.log 2>&1; echo "memcheck exit $?" | tee -a $R/log
grep -E "ERROR SUMMARY|conformance cuda" $R/memcheck.log | tee -a $R/log
for c in odd_37x53_d32 causal_tl_129_d128 d512_17x40 large_mag_br_70x150_d512; do
  timeout 100 compute-sanitizer --tool racecheck --error-exitcode 99 $B/conformance --backend cuda --case $c >> $R/racecheck.log 2>&1; echo "racecheck $c exit $?" | tee -a $R/log
done
grep -E "RACECHECK SUMMARY" $R/racecheck.log | sort | uniq -c | tee -a $R/log
t tests done; pack
python3 bench/gpu/shapes.py fa2 | grep "^fa2 bf16" | awk '$6>=2048 && $6<=8192' > $R/bwd.txt
BENCH=polyattn_cuda_bwd_bench BUILD=b-new OUT=$R/ab-bwd ROUNDS=2 bash bench/gpu/ab_bench.sh .gpu-kit/base < $R/bwd.txt 2>>$R/log
t ab bwd done; cat $R/ab-bwd/ab.md; pack
