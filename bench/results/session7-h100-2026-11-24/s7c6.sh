#!/bin/bash
# session 7 call 6: after the review (key halves always interleaved): ctest -L cuda, conformance default and
# halves forced, odd-shape checks with halves forced, 8x512 and 16x128 timed as graphs
set -u
R=/tmp/s7c6; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C" >> $R/log
STAGES="build test" BUILD=b-checks OUT=$R/checks COMMIT=$C bash bench/gpu/cuda_checks.sh > $R/checks.out 2>&1
t checks exit $?; grep -E "tests passed|Failed|FAIL" $R/checks/checks.log | head -5 | tee -a $R/log
B=b-checks/bin
timeout 90 $B/conformance --backend cuda > $R/conf.txt 2>&1; echo "conf exit $?" | tee -a $R/log
POLYATTN_CUDA_KEY_HALVES=1 timeout 90 $B/conformance --backend cuda --algo flash >> $R/conf.txt 2>&1; echo "conf halves exit $?" | tee -a $R/log
grep -h "^conformance cuda\|FAIL" $R/conf.txt | head -6 | tee -a $R/log
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
POLYATTN_CUDA_KEY_HALVES=1 timeout 90 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt > $R/checks.jsonl 2>>$R/log
python3 -c "
import json
rows=[json.loads(l) for l in open('$R/checks.jsonl') if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks (halves forced):', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok')" | tee -a $R/log
python3 bench/gpu/seed_shapes.py seed | grep -E " (512|128) " > $R/seed.txt
timeout 90 $B/polyattn_cuda_bench --reps 30 --graph 20 < $R/seed.txt 2>>$R/log > $R/seed.jsonl
python3 -c "
import json
for l in open('$R/seed.jsonl'):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if 'ms' in r: print(r['dtype'], r['batch'], r['seq_q'], r['head_dim'], r['ms'], r['ok'], r['timing'])" | tee -a $R/log
gzip $R/checks/*.log 2>/dev/null; rm -f $R/checks.txt; t done; pack
