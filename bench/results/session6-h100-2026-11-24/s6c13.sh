#!/bin/bash
# session 6 call 13: HEAD after the 16-bit key-halves rule change (one wave excluded): ctest -L cuda, conformance (default, halves forced), checks, seed shapes (polyattn, plans unchanged?)
set -u
R=/tmp/s6c13; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
echo "commit $(cat .gpu-kit/commit)" >> $R/log
STAGES="build test" BUILD=b-checks OUT=$R/checks COMMIT=$(cat .gpu-kit/commit) bash bench/gpu/cuda_checks.sh > $R/checks.out 2>&1
t checks exit $?; grep -E "tests passed|Failed|FAIL" $R/checks/checks.log | head -5 | tee -a $R/log
B=b-checks/bin
timeout 90 $B/conformance --backend cuda > $R/conf.txt 2>&1; echo "conf exit $?" | tee -a $R/log
POLYATTN_CUDA_KEY_HALVES=1 timeout 90 $B/conformance --backend cuda --algo flash >> $R/conf.txt 2>&1; echo "conf halves exit $?" | tee -a $R/log
grep -h "^conformance cuda\|FAIL" $R/conf.txt | head -6 | tee -a $R/log
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
timeout 90 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt > $R/checks.jsonl 2>>$R/log
python3 -c "
import json
rows=[json.loads(l) for l in open('$R/checks.jsonl') if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks:', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok')" | tee -a $R/log
python3 bench/gpu/seed_shapes.py seed > $R/seed.txt
POLYATTN_LOG=dispatch timeout 90 $B/polyattn_cuda_bench --reps 30 < $R/seed.txt > $R/seed.jsonl 2>$R/dispatch.txt
grep -o "key halves [01]" $R/dispatch.txt | sort | uniq -c | tee -a $R/log
python3 -c "
import json
for l in open('$R/seed.jsonl'):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if r.get('impl')=='polyattn': print(r['dtype'], r['batch'], r['seq_q'], r['head_dim'], r['ms'], r['ok'], r['launches'])" | tee -a $R/log
gzip $R/checks/*.log 2>/dev/null; rm -f $R/checks.txt; pack; t done
