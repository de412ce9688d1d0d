#!/bin/bash
# session 8 call 13: 16-bit column halves (fence-free exchange) against the default plans on
# short-sequence shapes, one binary, POLYATTN_CUDA_COL_HALVES=0/1 alternating, 3 rounds (graph)
set -u
R=/tmp/s8c13; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C" >> $R/log
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DPOLYATTN_WERROR=ON"
{ cmake $CM -B b-seed && ninja -C b-seed -j16 polyattn_cuda polyattn_cuda_bench; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
t build
cat > $R/shapes.txt <<'SH'
c f16 16 1 1 128 128 512 1 flash
c f16 32 1 1 128 128 512 1 flash
c f16 16 1 1 256 256 512 1 flash
c f16 4 1 1 128 128 512 1 flash
c f16 8 1 1 128 128 768 1 flash
c f16 16 1 1 128 128 1024 1 flash
c f16 16 1 1 128 128 512 0 flash
c f16 8 1 1 256 256 768 1 flash
SH
for r in 1 2 3; do for c in 0 1; do
  POLYATTN_CUDA_COL_HALVES=$c timeout 100 b-seed/bin/polyattn_cuda_bench --reps 30 --graph 20 < $R/shapes.txt 2>>$R/log | sed "s/^{\"impl\":\"polyattn\"/{\"c\":$c,\"round\":$r,\"impl\":\"polyattn\"/" >> $R/ab.jsonl
done; done
t rounds
python3 - $R/ab.jsonl <<'PY' | tee $R/ab.md | tee -a $R/log
import json,sys
d={}; ok={}
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if 'ms' not in r: continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim'],r['causal']); d.setdefault(k,{}).setdefault(r['c'],[]).append(r['ms']); ok[k]=ok.get(k,True) and r['ok']
print('| shape | default ms (3 rounds) | column halves ms | speedup (best default / best cols) | ok |'); print('|---|---|---|---|---|')
for k in sorted(d):
    a=d[k].get(0,[]); b=d[k].get(1,[])
    print('| %s %dx%d D%d causal %d | %s | %s | %.3fx | %s |'%(k+(', '.join('%.4f'%x for x in a),', '.join('%.4f'%x for x in b),min(a)/min(b),ok[k])))
PY
pack
