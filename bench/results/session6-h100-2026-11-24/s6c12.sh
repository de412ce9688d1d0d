#!/bin/bash
# session 6 call 12: seed shapes again at HEAD (call 11's f16 16x128 line was an outlier: 0.046 ms against bf16 0.017 on the same path): polyattn 3 rounds (best), SDPA efficient in the same run
set -u
R=/tmp/s6c12; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv >> $R/log 2>&1
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90"
{ cmake $CM -B b-new -DPOLYATTN_WERROR=ON && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
t build
python3 bench/gpu/seed_shapes.py seed > $R/seed.txt
for r in 1 2 3; do timeout 120 b-new/bin/polyattn_cuda_bench --reps 50 < $R/seed.txt 2>>$R/log | sed "s/^{\"impl\":\"polyattn\"/{\"round\":$r,\"impl\":\"polyattn\"/" >> $R/polyattn.jsonl; done
t polyattn
PYTHONUNBUFFERED=1 timeout 150 python3 bench/compare_torch.py --torch-backends efficient --shape-lines $R/seed.txt --jsonl - > $R/torch.jsonl 2>>$R/log
t torch
python3 - $R/polyattn.jsonl $R/torch.jsonl <<'PY' | tee $R/table.md | tee -a $R/log
import json,sys
best={}; ok={}; per={}
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if r.get('impl')!='polyattn' or 'ms' not in r: continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim'])
    ok[k]=ok.get(k,True) and bool(r.get('ok')); best[k]=min(best.get(k,9e9),r['ms']); per.setdefault(k,[]).append(r['ms'])
sd={}
for l in open(sys.argv[2]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if r.get('impl')=='torch-efficient' and r.get('ok'): sd[(r['dtype'],r['batch'],r['seq_q'],r['head_dim'])]=r['ms']
print('| dtype | shape | polyattn ms (best of 3 rounds; each round) | SDPA efficient ms | ratio | ok |'); print('|---|---|---|---|---|---|')
order={'f16':0,'bf16':1,'f32':2}
for k in sorted(best, key=lambda k:(order[k[0]],-k[2])):
    e=sd.get(k)
    print('| %s | %dx%d D%d | %.4f (%s) | %s | %s | %s |'%(k[0],k[1],k[2],k[3],best[k],', '.join('%.4f'%x for x in per[k]),'%.4f'%e if e else '-','%.2fx'%(e/best[k]) if e else '-',ok[k]))
PY
pack; t done
