#!/bin/bash
# session 4 call 13 (review): segment end in one helper, PDL decided at planning (new) vs 770ba43: seed A/B, ctest, conformance, checks, memcheck
set -u
R=/tmp/s4c13; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
python3 bench/gpu/seed_shapes.py seed f16,f32 | BUILD=b-new OUT=$R/ab ROUNDS=1 bash bench/gpu/ab_bench.sh .gpu-kit/base 2>>$R/log
t ab; cat $R/ab/ab.md
B=b-new/bin
ninja -C b-new -j16 > $R/build.txt 2>&1 || tail -20 $R/build.txt
(cd b-new && timeout 150 ctest -L cuda --output-on-failure > $R/ctest.log 2>&1); grep -E "tests passed|Failed|Not Run" $R/ctest.log | tee -a $R/log
for sp in 1 2; do POLYATTN_CUDA_FLASH_SPLIT=$sp timeout 60 $B/conformance --backend cuda --algo flash > $R/conf-split$sp.txt 2>&1; echo "split$sp exit $?" | tee -a $R/log; grep -h "^conformance cuda\|^FAIL" $R/conf-split$sp.txt | head -3 | tee -a $R/log; done
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
{ timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; POLYATTN_CUDA_FLASH_SPLIT=1 timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; } > $R/checks.jsonl 2>>$R/log
python3 -c "
import json
rows=[json.loads(l) for l in open('$R/checks.jsonl') if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks:', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok')" | tee -a $R/log
POLYATTN_CUDA_FLASH_SPLIT=2 timeout 100 compute-sanitizer --tool memcheck --error-exitcode 99 $B/conformance --backend cuda --algo flash > $R/memcheck.log 2>&1; echo "memcheck split2 exit $?" | tee -a $R/log
grep -E "ERROR SUMMARY" $R/memcheck.log | tee -a $R/log
t done; rm -f $R/build.txt $R/checks.txt; tar czf $OUT/results.tgz -C $R .
