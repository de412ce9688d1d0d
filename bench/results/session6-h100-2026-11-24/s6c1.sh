#!/bin/bash
# session 6 call 1: wgmma pair kernel: build, SASS, conformance and odd-shape checks with
# POLYATTN_CUDA_WIDE=pair, seed 16-bit shapes mma vs pair (alternating, 2 rounds), SDPA efficient
set -u
R=/tmp/s6c1; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv >> $R/log 2>&1
{ cmake -G Ninja -S . -B b-new -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_WERROR=ON -DPOLYATTN_CUDA_ARCHITECTURES=90 && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench conformance; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
t build
cuobjdump -sass b-new/backends/cuda/CMakeFiles/polyattn_cuda_sm90a.dir/flash_wgmma.cu.o > $R/sass.txt 2>&1; echo "HGMMA lines: $(grep -c HGMMA $R/sass.txt)" | tee -a $R/log; gzip $R/sass.txt
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
python3 bench/gpu/seed_shapes.py seed f16,bf16 > $R/seed.txt
for r in 1 2; do for k in mma pair; do
  POLYATTN_CUDA_WIDE=$k timeout 90 $B/polyattn_cuda_bench --reps 30 < $R/seed.txt 2>>$R/log | grep -v '"device"' | sed "s/^{/{\"wide\":\"$k\",\"round\":$r,/" >> $R/ab.jsonl
done; done
pack; t ab
PYTHONUNBUFFERED=1 timeout 150 python3 bench/compare_torch.py --torch-backends efficient --shape-lines $R/seed.txt --jsonl - > $R/torch.jsonl 2>>$R/log
t torch
python3 - $R/ab.jsonl $R/torch.jsonl <<'PY' | tee $R/ab.md | tee -a $R/log
import json,sys
best={}; ok={}
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if r.get('impl')!='polyattn' or 'ms' not in r: continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim'],r['wide'])
    ok[k]=ok.get(k,True) and bool(r.get('ok'))
    best[k]=min(best.get(k,9e9),r['ms'])
sd={}
for l in open(sys.argv[2]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if r.get('impl')=='torch-efficient' and r.get('ok'): sd[(r['dtype'],r['batch'],r['seq_q'],r['head_dim'])]=r['ms']
print('| dtype | shape | mma ms | pair ms | pair/mma speedup | SDPA eff ms | mma ratio | pair ratio | ok |')
print('|---|---|---|---|---|---|---|---|---|')
for k in sorted({k[:4] for k in best}):
    m=best.get(k+('mma',)); p=best.get(k+('pair',)); e=sd.get(k)
    f=lambda x:'%.4f'%x if x else '-'
    print('| %s | %dx%d D%d | %s | %s | %s | %s | %s | %s | %s |'%(k[0],k[1],k[2],k[3],f(m),f(p),'%.2fx'%(m/p) if m and p else '-',f(e),'%.2f'%(e/m) if e and m else '-','%.2f'%(e/p) if e and p else '-', ok.get(k+('mma',)) and ok.get(k+('pair',))))
PY
pack; t done
