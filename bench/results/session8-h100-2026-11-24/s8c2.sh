#!/bin/bash
# session 8 call 2: column halves with the score exchange through st.async + mbarrier (call 1: cluster barrier; per key
# tile through DSMEM): correctness with them forced (conformance flash, odd-shape checks), then
# A/B in one binary (POLYATTN_CUDA_COL_HALVES=0/1 alternating, 3 rounds, CUDA-graph timing)
set -u
R=/tmp/s8c2; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
echo "commit $(cat .gpu-kit/commit)" >> $R/log
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DPOLYATTN_WERROR=ON"
{ cmake $CM -B b-new && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench conformance; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
t build
B=b-new/bin
POLYATTN_CUDA_COL_HALVES=1 timeout 120 $B/conformance --backend cuda --algo flash > $R/conf.txt 2>&1; echo "conf cols forced exit $?" | tee -a $R/log
grep -h "^conformance cuda\|FAIL" $R/conf.txt | head -6 | tee -a $R/log
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
POLYATTN_CUDA_COL_HALVES=1 POLYATTN_LOG=dispatch timeout 120 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt > $R/checks.jsonl 2>$R/checks.log
python3 -c "
import json
rows=[json.loads(l) for l in open('$R/checks.jsonl') if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks (cols forced):', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok')" | tee -a $R/log
grep -c "column halves 1" $R/checks.log | sed 's/^/dispatch lines with column halves: /' | tee -a $R/log
t checks; pack
python3 bench/gpu/seed_shapes.py seed | grep -v bf16 > $R/shapes.txt
cat >> $R/shapes.txt <<'SH'
sw f16 16 1 1 256 256 512 1 flash
sw f16 32 1 1 128 128 512 1 flash
sw f16 4 1 1 512 512 768 1 flash
sw f16 1 1 1 512 512 768 1 flash
sw f32 32 1 1 128 128 512 1 flash
sw f32 4 1 1 512 512 768 1 flash
sw f32 8 1 1 256 256 1024 1 flash
SH
for r in 1 2 3; do for c in 0 1; do
  POLYATTN_CUDA_COL_HALVES=$c timeout 150 $B/polyattn_cuda_bench --reps 30 --graph 20 < $R/shapes.txt 2>>$R/log | sed "s/^{\"impl\":\"polyattn\"/{\"c\":$c,\"round\":$r,\"impl\":\"polyattn\"/" >> $R/ab.jsonl
done; t "round $r"; done
python3 - $R/ab.jsonl <<'PY' | tee $R/ab.md | tee -a $R/log
import json,sys
d={}; ok={}
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if 'ms' not in r: continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim']); d.setdefault(k,{}).setdefault(r['c'],[]).append(r['ms']); ok[k]=ok.get(k,True) and r['ok']
print('| shape | auto ms (3 rounds) | column halves ms | speedup (best auto / best cols) | ok |'); print('|---|---|---|---|---|')
for k in sorted(d,key=lambda k:(k[0],-k[2])):
    a=d[k].get(0,[]); b=d[k].get(1,[])
    print('| %s %dx%d D%d | %s | %s | %.3fx | %s |'%(k+(', '.join('%.4f'%x for x in a),', '.join('%.4f'%x for x in b),min(a)/min(b),ok[k])))
PY
t done; pack
