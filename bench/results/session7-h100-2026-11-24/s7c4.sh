#!/bin/bash
# session 7 call 4: interleaved key halves (block r: key tiles r, r+2, ...) against contiguous halves:
# correctness (conformance flash and odd-shape checks with halves forced, interleaved), then A/B in one
# binary (POLYATTN_CUDA_KEY_HALVES_INTERLEAVE=0/1 alternating, 3 rounds, CUDA-graph timing)
set -u
R=/tmp/s7c4; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
echo "commit $(cat .gpu-kit/commit)" >> $R/log
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DPOLYATTN_WERROR=ON"
{ cmake $CM -B b-new && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench conformance; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
t build
B=b-new/bin
export POLYATTN_CUDA_KEY_HALVES_INTERLEAVE=1
POLYATTN_CUDA_KEY_HALVES=1 timeout 90 $B/conformance --backend cuda --algo flash > $R/conf.txt 2>&1; echo "conf halves interleaved exit $?" | tee -a $R/log
timeout 90 $B/conformance --backend cuda --algo flash >> $R/conf.txt 2>&1; echo "conf default interleaved exit $?" | tee -a $R/log
grep -h "^conformance cuda\|FAIL" $R/conf.txt | head -6 | tee -a $R/log
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
{ POLYATTN_CUDA_KEY_HALVES=1 timeout 90 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; timeout 90 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; } > $R/checks.jsonl 2>>$R/log
unset POLYATTN_CUDA_KEY_HALVES_INTERLEAVE
python3 -c "
import json
rows=[json.loads(l) for l in open('$R/checks.jsonl') if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks (interleaved):', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok')" | tee -a $R/log
t checks; pack
python3 bench/gpu/seed_shapes.py seed > $R/shapes.txt
cat >> $R/shapes.txt <<'SH'
sw f16 4 1 1 512 512 768 1 flash
sw f32 32 1 1 512 512 768 1 flash
sw f16 16 1 1 512 512 768 1 flash
SH
for r in 1 2 3; do for il in 0 1; do
  POLYATTN_CUDA_KEY_HALVES_INTERLEAVE=$il timeout 100 $B/polyattn_cuda_bench --reps 30 --graph 20 < $R/shapes.txt 2>>$R/log | sed "s/^{\"impl\":\"polyattn\"/{\"il\":$il,\"round\":$r,\"impl\":\"polyattn\"/" >> $R/ab.jsonl
done; done
python3 - $R/ab.jsonl <<'PY' | tee $R/ab.md | tee -a $R/log
import json,sys
d={}; ok={}
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if 'ms' not in r: continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim']); d.setdefault(k,{}).setdefault(r['il'],[]).append(r['ms']); ok[k]=ok.get(k,True) and r['ok']
print('| shape | contiguous ms (3 rounds) | interleaved ms | interleaved speedup (best contiguous / best interleaved) | ok |'); print('|---|---|---|---|---|')
for k in sorted(d,key=lambda k:(k[0],-k[2])):
    a=d[k].get(0,[]); b=d[k].get(1,[])
    print('| %s %dx%d D%d | %s | %s | %.3fx | %s |'%(k+(', '.join('%.4f'%x for x in a),', '.join('%.4f'%x for x in b),min(a)/min(b),ok[k])))
PY
t done; pack
