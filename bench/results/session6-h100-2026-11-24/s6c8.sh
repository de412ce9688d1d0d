#!/bin/bash
# session 6 call 8: key halves in waves (1-D grid, longest first): conformance/checks forced, A/B off / forced / auto
set -u
R=/tmp/s6c8; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90"
{ cmake $CM -B b-new -DPOLYATTN_WERROR=ON && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench conformance; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
t build
B=b-new/bin
summ(){ python3 - "$1" <<'PY' | tee -a $R/log
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks:', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok; failing:', [(r['dtype'],r['batch'],r['seq_q'],r['seq_kv'],r['head_dim'],r['causal'],r.get('rel_err'),r.get('unwritten'),r.get('error')) for r in rows if not r.get('ok')])
PY
}
for k in 1 auto; do
  if [ $k = auto ]; then unset POLYATTN_CUDA_KEY_HALVES; else export POLYATTN_CUDA_KEY_HALVES=$k; fi
  timeout 90 $B/conformance --backend cuda --algo flash > $R/conf-halves-$k.txt 2>&1; echo "conf halves $k exit $?" | tee -a $R/log
  grep -h "^conformance cuda\|FAIL" $R/conf-halves-$k.txt | head -6 | tee -a $R/log
done
POLYATTN_CUDA_KEY_HALVES=1 POLYATTN_CUDA_FLASH_SPLIT=0 timeout 90 $B/conformance --backend cuda --algo flash > $R/conf-halves-1-split0.txt 2>&1; echo "conf halves 1 split 0 exit $?" | tee -a $R/log
grep -h "^conformance cuda\|FAIL" $R/conf-halves-1-split0.txt | head -6 | tee -a $R/log
POLYATTN_LOG=dispatch POLYATTN_CUDA_KEY_HALVES=1 POLYATTN_CUDA_FLASH_SPLIT=0 timeout 30 $B/conformance --backend cuda --algo flash 2>&1 | grep -c "key halves 1" | sed 's/^/plans with key halves (forced, split 0): /' | tee -a $R/log
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
{ POLYATTN_CUDA_KEY_HALVES=1 POLYATTN_CUDA_FLASH_SPLIT=0 timeout 90 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; timeout 90 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; } > $R/checks.jsonl 2>>$R/log
summ $R/checks.jsonl
pack; t tests
{ python3 bench/gpu/seed_shapes.py seed | grep -v "4096\|2048\|f32 4 1 1 1024\|f32 8 1 1 512"; printf "seed f16 1 1 1 512 512 768 1 flash\nseed f16 4 1 1 512 512 768 1 flash\nseed f32 4 1 1 512 512 768 1 flash\nseed f16 16 1 1 256 256 512 1 flash\nseed f32 16 1 1 256 256 512 1 flash\n"; } > $R/seed.txt
for r in 1 2 3; do for k in 0 1 auto; do
  if [ $k = auto ]; then unset POLYATTN_CUDA_KEY_HALVES; else export POLYATTN_CUDA_KEY_HALVES=$k; fi
  timeout 90 $B/polyattn_cuda_bench --reps 40 < $R/seed.txt 2>>$R/log | grep -v '"device"' | sed "s/^{/{\"halves\":\"$k\",\"round\":$r,/" >> $R/ab.jsonl
done; done
unset POLYATTN_CUDA_KEY_HALVES
python3 - $R/ab.jsonl <<'PY' | tee $R/ab.md | tee -a $R/log
import json,sys
best={}; ok={}
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if r.get('impl')!='polyattn' or 'ms' not in r: continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim'],r['halves'])
    ok[k]=ok.get(k,True) and bool(r.get('ok')); best[k]=min(best.get(k,9e9),r['ms'])
print('| dtype | shape | off ms | forced ms | auto ms | forced/off | ok |')
print('|---|---|---|---|---|---|---|')
for k in sorted({k[:4] for k in best}):
    o=best.get(k+('0',)); f=best.get(k+('1',)); a=best.get(k+('auto',))
    print('| %s | %dx%d D%d | %.4f | %.4f | %.4f | %.2fx | %s |'%(k[0],k[1],k[2],k[3],o,f,a,o/f,all(ok.get(k+(x,)) for x in ('0','1','auto'))))
PY
pack; t done
