#!/bin/bash
# session 8 call 12: the AUTO policy's flash-or-unfused question on the seed shapes in GPU time
# (graph replays; the policy table was measured with per-call events in session 6): flash and
# unfused (cuBLAS) in one bench run, 2 rounds
set -u
R=/tmp/s8c12; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C" >> $R/log
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DPOLYATTN_WERROR=ON"
{ cmake $CM -B b-seed && ninja -C b-seed -j16 polyattn_cuda polyattn_cuda_bench; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
t build
python3 bench/gpu/seed_shapes.py seed | sed 's/ flash$/ flash,unfused/' > $R/shapes.txt
for r in 1 2; do timeout 250 b-seed/bin/polyattn_cuda_bench --reps 20 --graph 20 < $R/shapes.txt 2>>$R/log | sed "s/^{\"impl\":\"polyattn\"/{\"round\":$r,\"impl\":\"polyattn\"/" >> $R/policy.jsonl; t "round $r"; done
python3 - $R/policy.jsonl <<'PY' | tee $R/policy.md | tee -a $R/log
import json,sys
d={}; ok={}
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if 'ms' not in r: continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim']); d.setdefault(k,{}).setdefault(r['algo'],[]).append(r['ms']); ok[k]=ok.get(k,True) and r['ok']
print('| shape | flash ms (best of 2) | unfused ms | flash speed-up over unfused | validated |'); print('|---|---|---|---|---|')
for k in sorted(d,key=lambda k:(k[0],-k[2])):
    f=min(d[k].get('flash',[float('nan')])); u=min(d[k].get('unfused',[float('nan')]))
    print('| %s %dx%d D%d | %.4f | %.4f | %.2fx | %s |'%(k+(f,u,u/f,ok[k])))
PY
pack
