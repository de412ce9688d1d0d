#!/bin/bash
# session 6 call 10: default plan vs key halves forced over the balanced schedule (split 0) on every seed shape; flash vs unfused (AUTO's choice) on the seed shapes
set -u
R=/tmp/s6c10; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90"
{ cmake $CM -B b-new -DPOLYATTN_WERROR=ON && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
t build
B=b-new/bin
python3 bench/gpu/seed_shapes.py seed > $R/seed.txt
for r in 1 2; do for k in default halves; do
  if [ $k = halves ]; then export POLYATTN_CUDA_KEY_HALVES=1 POLYATTN_CUDA_FLASH_SPLIT=0; else unset POLYATTN_CUDA_KEY_HALVES POLYATTN_CUDA_FLASH_SPLIT; fi
  timeout 120 $B/polyattn_cuda_bench --reps 30 < $R/seed.txt 2>>$R/log | grep -v '"device"' | sed "s/^{/{\"plan\":\"$k\",\"round\":$r,/" >> $R/ab.jsonl
done; done
unset POLYATTN_CUDA_KEY_HALVES POLYATTN_CUDA_FLASH_SPLIT
pack; t ab
sed 's/ flash$/ flash,unfused/' $R/seed.txt | grep -v f32 > $R/uf.txt
for r in 1 2; do timeout 120 $B/polyattn_cuda_bench --reps 30 < $R/uf.txt 2>>$R/log | grep -v '"device"' | sed "s/^{/{\"round\":$r,/" >> $R/uf.jsonl; done
python3 - $R/ab.jsonl $R/uf.jsonl <<'PY' | tee $R/ab.md | tee -a $R/log
import json,sys
def load(p, kf):
    best={}; ok={}
    for l in open(p):
        if not l.startswith('{'): continue
        r=json.loads(l)
        if r.get('impl')!='polyattn' or 'ms' not in r: continue
        k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim'],kf(r))
        ok[k]=ok.get(k,True) and bool(r.get('ok')); best[k]=min(best.get(k,9e9),r['ms'])
    return best, ok
b,o=load(sys.argv[1], lambda r:r['plan'])
print('| dtype | shape | default ms | halves (split 0) ms | halves/default | ok |'); print('|---|---|---|---|---|---|')
for k in sorted({k[:4] for k in b}):
    d=b.get(k+('default',)); h=b.get(k+('halves',))
    print('| %s | %dx%d D%d | %.4f | %.4f | %.2fx | %s |'%(k[0],k[1],k[2],k[3],d,h,d/h,o.get(k+('default',)) and o.get(k+('halves',))))
b,o=load(sys.argv[2], lambda r:r['algo'])
print(); print('| dtype | shape | flash ms | unfused ms | unfused/flash | ok |'); print('|---|---|---|---|---|---|')
for k in sorted({k[:4] for k in b}):
    f=b.get(k+('flash',)); u=b.get(k+('unfused',))
    print('| %s | %dx%d D%d | %.4f | %.4f | %.2fx | %s |'%(k[0],k[1],k[2],k[3],f,u,u/f,o.get(k+('flash',)) and o.get(k+('unfused',))))
PY
pack; t done
