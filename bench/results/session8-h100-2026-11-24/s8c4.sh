#!/bin/bash
# session 8 call 4: seed_bench at HEAD (conformance with every schedule forced, odd-shape checks,
# seed shapes beside SDPA efficient/math as graph replays, both sides rotating 16 sets at most),
# plus SDPA timed again with the old rotation (compare_torch --max-sets 4) to show what it did
set -u
R=/tmp/s8c4; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C" >> $R/log
BUILD=b-seed GRAPH=20 CHUNKS=0 NCU=0 COMMIT=$C OUT=$R/seed bash bench/gpu/seed_bench.sh > $R/seed.txt 2>&1
t seed_bench; pack
grep -E "^conformance|FAIL|^exit|checks|ok" $R/seed/seed.log | head -20 | tee -a $R/log
cat $R/seed/summary.md | tee -a $R/log
python3 bench/gpu/seed_shapes.py seed > $R/shapes.txt
PYTHONUNBUFFERED=1 timeout 200 python3 bench/compare_torch.py --torch-backends efficient,math --shape-lines $R/shapes.txt --graph 20 --max-sets 4 --jsonl - > $R/torch-sets4.jsonl 2> $R/torch-sets4.log
t "torch sets4"
python3 - $R/seed/torch.jsonl $R/torch-sets4.jsonl <<'PY' | tee $R/sets.md | tee -a $R/log
import json,sys
def load(f):
    d={}
    for l in open(f):
        if not l.startswith('{'): continue
        r=json.loads(l)
        if r.get('impl')!='torch' or 'ms' not in r: continue
        d[(r['dtype'],r['batch'],r['seq_q'],r['head_dim'],r['backend'])]=r['ms']
    return d
a=load(sys.argv[1]); b=load(sys.argv[2])
print('| SDPA backend, shape | 16 sets max (new) ms | 4 sets max (old) ms | old / new |'); print('|---|---|---|---|')
for k in sorted(a, key=lambda k:(k[4],k[0],-k[2])):
    if k in b: print('| %s %s %dx%d D%d | %.4f | %.4f | %.3f |'%(k[4],k[0],k[1],k[2],k[3],a[k],b[k],b[k]/a[k]))
PY
t done; pack
