#!/bin/bash
# session 6 call 7: key halves: conformance (default, halves off), checks, memcheck, A/B on/off on seed shapes, SDPA efficient
set -u
R=/tmp/s6c7; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90"
{ cmake $CM -B b-new -DPOLYATTN_WERROR=ON && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench conformance test_flash_schedule; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
t build
B=b-new/bin
summ(){ python3 - "$1" <<'PY' | tee -a $R/log
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks:', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok; failing:', [(r['dtype'],r['batch'],r['seq_q'],r['seq_kv'],r['head_dim'],r['causal'],r.get('rel_err'),r.get('unwritten'),r.get('error')) for r in rows if not r.get('ok')])
PY
}
$B/test_flash_schedule > $R/schedule.txt 2>&1; echo "test_flash_schedule exit $?" | tee -a $R/log
timeout 90 $B/conformance --backend cuda > $R/conf-all.txt 2>&1; echo "conf all exit $?" | tee -a $R/log
POLYATTN_CUDA_KEY_HALVES=0 timeout 90 $B/conformance --backend cuda --algo flash > $R/conf-halves0.txt 2>&1; echo "conf halves0 exit $?" | tee -a $R/log
grep -h "^conformance cuda\|FAIL" $R/conf-all.txt $R/conf-halves0.txt | head -12 | tee -a $R/log
POLYATTN_LOG=dispatch timeout 30 $B/conformance --backend cuda --algo flash 2>&1 | grep -c "key halves 1" | sed 's/^/conformance plans with key halves: /' | tee -a $R/log
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
timeout 90 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt > $R/checks.jsonl 2>>$R/log
summ $R/checks.jsonl
pack; t tests
python3 bench/gpu/seed_shapes.py seed > $R/seed.txt
for r in 1 2 3; do for k in 0 1; do
  POLYATTN_CUDA_KEY_HALVES=$k timeout 90 $B/polyattn_cuda_bench --reps 40 < $R/seed.txt 2>>$R/log | grep -v '"device"' | sed "s/^{/{\"halves\":$k,\"round\":$r,/" >> $R/ab.jsonl
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
    k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim'],r['halves'])
    ok[k]=ok.get(k,True) and bool(r.get('ok')); best[k]=min(best.get(k,9e9),r['ms'])
sd={}
for l in open(sys.argv[2]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if r.get('impl')=='torch-efficient' and r.get('ok'): sd[(r['dtype'],r['batch'],r['seq_q'],r['head_dim'])]=r['ms']
print('| dtype | shape | halves off ms | default ms | speedup | SDPA eff ms | ratio off | ratio default | ok |')
print('|---|---|---|---|---|---|---|---|---|')
for k in sorted({k[:4] for k in best}):
    m=best.get(k+(0,)); p=best.get(k+(1,)); e=sd.get(k)
    f=lambda x:'%.4f'%x if x else '-'
    print('| %s | %dx%d D%d | %s | %s | %s | %s | %s | %s | %s |'%(k[0],k[1],k[2],k[3],f(m),f(p),'%.2fx'%(m/p) if m and p else '-',f(e),'%.2f'%(e/m) if e and m else '-','%.2f'%(e/p) if e and p else '-', ok.get(k+(0,)) and ok.get(k+(1,))))
PY
pack; t table
timeout 200 compute-sanitizer --tool memcheck --print-limit 5 $B/conformance --backend cuda --algo flash > $R/memcheck.txt 2>&1; echo "memcheck exit $?" | tee -a $R/log; grep -h "ERROR SUMMARY\|^conformance" $R/memcheck.txt | tee -a $R/log
pack; t done
