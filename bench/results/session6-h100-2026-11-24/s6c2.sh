#!/bin/bash
# session 6 call 2: pair kernel with two K/V stages: conformance, checks, A/B mma vs pair (D 512/768), phase profile
set -u
R=/tmp/s6c2; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90"
{ cmake $CM -B b-new -DPOLYATTN_WERROR=ON && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench conformance; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
{ cmake $CM -B b-prof -DCMAKE_CUDA_FLAGS=-DPA_PAIR_PROFILE && ninja -C b-prof -j16 polyattn_cuda polyattn_cuda_bench; } > $R/build-prof.txt 2>&1 || { tail -30 $R/build-prof.txt | tee -a $R/log; }
t build
B=b-new/bin
summ(){ python3 - "$1" <<'PY' | tee -a $R/log
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks:', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok; failing:', [(r['dtype'],r['batch'],r['seq_q'],r['seq_kv'],r['head_dim'],r['causal'],r.get('rel_err'),r.get('unwritten'),r.get('error')) for r in rows if not r.get('ok')])
PY
}
POLYATTN_CUDA_WIDE=pair timeout 90 $B/conformance --backend cuda --algo flash > $R/conf-pair.txt 2>&1; echo "conf pair exit $?" | tee -a $R/log
grep -h "^conformance cuda\|FAIL" $R/conf-pair.txt | head -12 | tee -a $R/log
python3 bench/gpu/seed_shapes.py check | grep -v f32 > $R/checks.txt
POLYATTN_CUDA_WIDE=pair timeout 90 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt > $R/checks.jsonl 2>>$R/log
summ $R/checks.jsonl
pack; t tests
cat > $R/shapes.txt <<'X'
seed f16 8 1 1 512 512 768 1 flash
seed bf16 8 1 1 512 512 768 1 flash
seed f16 16 1 1 128 128 512 1 flash
seed f16 1 1 1 512 512 768 1 flash
seed f16 2 1 1 2048 2048 768 1 flash
seed f16 4 1 1 1024 1024 512 1 flash
X
for r in 1 2; do for k in mma pair; do
  POLYATTN_CUDA_WIDE=$k timeout 90 $B/polyattn_cuda_bench --reps 30 < $R/shapes.txt 2>>$R/log | grep -v '"device"' | sed "s/^{/{\"wide\":\"$k\",\"round\":$r,/" >> $R/ab.jsonl
done; done
python3 - $R/ab.jsonl <<'PY' | tee $R/ab.md | tee -a $R/log
import json,sys
best={}; ok={}
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if r.get('impl')!='polyattn' or 'ms' not in r: continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim'],r['wide'])
    ok[k]=ok.get(k,True) and bool(r.get('ok'))
    best[k]=min(best.get(k,9e9),r['ms'])
print('| dtype | shape | mma ms | pair ms | pair speedup | ok |')
print('|---|---|---|---|---|---|')
for k in sorted({k[:4] for k in best}):
    m=best.get(k+('mma',)); p=best.get(k+('pair',))
    print('| %s | %dx%d D%d | %.4f | %.4f | %.2fx | %s |'%(k[0],k[1],k[2],k[3],m,p,m/p,ok.get(k+('mma',)) and ok.get(k+('pair',))))
PY
pack; t ab
if [ -x b-prof/bin/polyattn_cuda_bench ]; then
  for sh in "seed f16 1 1 1 512 512 768 1 flash" "seed f16 8 1 1 512 512 768 1 flash" "seed f16 1 1 1 2048 2048 768 1 flash"; do
    echo "### $sh" >> $R/profile.txt
    echo "$sh" | POLYATTN_CUDA_WIDE=pair timeout 60 b-prof/bin/polyattn_cuda_bench --reps 5 2>&1 | grep pair-profile | tail -3 >> $R/profile.txt
  done
  cat $R/profile.txt | tee -a $R/log
fi
pack; t done
