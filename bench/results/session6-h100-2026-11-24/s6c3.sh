#!/bin/bash
# session 6 call 3: pair kernel on the balanced schedule: conformance/checks (auto, split forced), chunk sweep vs mma
set -u
R=/tmp/s6c3; rm -rf $R; mkdir -p $R
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
export POLYATTN_CUDA_WIDE=pair
for sp in auto 1 3; do
  if [ $sp = auto ]; then unset POLYATTN_CUDA_FLASH_SPLIT; else export POLYATTN_CUDA_FLASH_SPLIT=$sp; fi
  timeout 90 $B/conformance --backend cuda --algo flash > $R/conf-pair-$sp.txt 2>&1; echo "conf pair split $sp exit $?" | tee -a $R/log
  grep -h "^conformance cuda\|FAIL" $R/conf-pair-$sp.txt | head -8 | tee -a $R/log
done
unset POLYATTN_CUDA_FLASH_SPLIT
python3 bench/gpu/seed_shapes.py check | grep -v f32 > $R/checks.txt
{ timeout 90 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; POLYATTN_CUDA_FLASH_SPLIT=1 timeout 90 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; POLYATTN_CUDA_FLASH_SPLIT=2 timeout 90 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; } > $R/checks.jsonl 2>>$R/log
summ $R/checks.jsonl
unset POLYATTN_CUDA_WIDE
pack; t tests
# sweep: kernel x chunk, alternating, 2 rounds
cat > $R/sweep.txt <<'X'
mma -1 f16 8 1 1 512 512 768 1 flash
pair 0 f16 8 1 1 512 512 768 1 flash
pair 8 f16 8 1 1 512 512 768 1 flash
pair 9 f16 8 1 1 512 512 768 1 flash
pair 11 f16 8 1 1 512 512 768 1 flash
pair 14 f16 8 1 1 512 512 768 1 flash
mma -1 bf16 8 1 1 512 512 768 1 flash
pair 9 bf16 8 1 1 512 512 768 1 flash
pair 11 bf16 8 1 1 512 512 768 1 flash
mma -1 f16 16 1 1 128 128 512 1 flash
pair 0 f16 16 1 1 128 128 512 1 flash
pair 1 f16 16 1 1 128 128 512 1 flash
pair 2 f16 16 1 1 128 128 512 1 flash
mma -1 f16 2 1 1 2048 2048 768 1 flash
pair -1 f16 2 1 1 2048 2048 768 1 flash
pair 32 f16 2 1 1 2048 2048 768 1 flash
pair 36 f16 2 1 1 2048 2048 768 1 flash
X
for r in 1 2; do
  while read k ch rest; do
    if [ "$ch" = -1 ]; then unset POLYATTN_CUDA_FLASH_SPLIT; else export POLYATTN_CUDA_FLASH_SPLIT=$ch; fi
    echo "seed $rest" | POLYATTN_CUDA_WIDE=$k timeout 30 $B/polyattn_cuda_bench --reps 40 2>>$R/log | grep -v '"device"' | sed "s/^{/{\"wide\":\"$k\",\"chunk\":$ch,\"round\":$r,/" >> $R/sweep.jsonl
  done < $R/sweep.txt
done
unset POLYATTN_CUDA_FLASH_SPLIT
python3 - $R/sweep.jsonl <<'PY' | tee $R/sweep.md | tee -a $R/log
import json,sys
best={}; ok={}; ws={}
for l in open(sys.argv[1]):
    if not l.startswith('{'): continue
    r=json.loads(l)
    if r.get('impl')!='polyattn' or 'ms' not in r: continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim'],r['wide'],r['chunk'])
    ok[k]=ok.get(k,True) and bool(r.get('ok')); best[k]=min(best.get(k,9e9),r['ms']); ws[k]=r.get('launches')
for k in sorted(best): print(k, '%.4f'%best[k], 'ok' if ok[k] else 'NOT OK', 'launches', ws[k])
PY
pack; t done
