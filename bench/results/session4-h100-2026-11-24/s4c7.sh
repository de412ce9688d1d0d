#!/bin/bash
# session 4 call 7: the segment-write refactor (new) vs 74fa837 (base): A/B, full ctest, conformance (default, split 1/2), checks, sanitizers; seed shapes flash vs unfused vs auto
set -u
R=/tmp/s4c7; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
echo "commit $(cat .gpu-kit/commit)" >> $R/log
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv >> $R/log 2>&1
python3 bench/gpu/seed_shapes.py seed | BUILD=b-new OUT=$R/ab ROUNDS=2 bash bench/gpu/ab_bench.sh .gpu-kit/base 2>>$R/log
t ab done; cat $R/ab/ab.md; pack
B=b-new/bin
ninja -C b-new -j16 > $R/build.txt 2>&1 || tail -20 $R/build.txt
(cd b-new && timeout 150 ctest -L cuda --output-on-failure > $R/ctest.log 2>&1); grep -E "tests passed|Failed|Not Run" $R/ctest.log | tee -a $R/log
for sp in 1 2; do
  POLYATTN_CUDA_FLASH_SPLIT=$sp timeout 60 $B/conformance --backend cuda --algo flash > $R/conf-split$sp.txt 2>&1
  echo "conformance split$sp exit $?" | tee -a $R/log; grep -hE "^FAIL|^conformance cuda" $R/conf-split$sp.txt | head -5 | tee -a $R/log
done
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
{ timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; POLYATTN_CUDA_FLASH_SPLIT=1 timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; } > $R/checks.jsonl 2>>$R/log
python3 -c "
import json
rows=[json.loads(l) for l in open('$R/checks.jsonl') if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks:', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok')" | tee -a $R/log
timeout 200 compute-sanitizer --tool memcheck --error-exitcode 99 $B/conformance --backend cuda --algo flash > $R/memcheck.log 2>&1; echo "memcheck exit $?" | tee -a $R/log
POLYATTN_CUDA_FLASH_SPLIT=2 timeout 200 compute-sanitizer --tool memcheck --error-exitcode 99 $B/conformance --backend cuda --algo flash >> $R/memcheck.log 2>&1; echo "memcheck split2 exit $?" | tee -a $R/log
grep -E "ERROR SUMMARY|conformance cuda" $R/memcheck.log | tee -a $R/log
for c in d512_17x40 large_mag_br_70x150_d512; do for sp in 0 1; do
  POLYATTN_CUDA_FLASH_SPLIT=$sp timeout 100 compute-sanitizer --tool racecheck --error-exitcode 99 $B/conformance --backend cuda --algo flash --case $c >> $R/racecheck.log 2>&1; echo "racecheck $c split$sp exit $?" | tee -a $R/log
done; done
grep -E "RACECHECK SUMMARY" $R/racecheck.log | sort | uniq -c | tee -a $R/log
t tests done; pack
python3 bench/gpu/seed_shapes.py seed | sed 's/ flash$/ flash,unfused,auto/' > $R/uf.txt
timeout 150 $B/polyattn_cuda_bench < $R/uf.txt > $R/seed_uf.jsonl 2>>$R/log
python3 -c "
import json
for l in open('$R/seed_uf.jsonl'):
    r=json.loads(l)
    if 'ms' in r: print(r['dtype'],r['batch'],r['seq_q'],r['head_dim'],r['algo'],r.get('chosen'),r['ms'],r.get('ok'))
" | tee $R/seed_uf.txt
t done; pack
