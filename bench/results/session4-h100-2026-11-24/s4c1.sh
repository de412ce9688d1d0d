#!/bin/bash
# session 4 call 1: main (base) vs exp/line-order (new): A/B seed shapes, ctest both, split-forced conformance, torch efficient, chunk sweep
set -u
R=/tmp/s4c1; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv >> $R/log 2>&1
python3 bench/gpu/seed_shapes.py seed | BUILD=b-new OUT=$R/ab ROUNDS=2 bash bench/gpu/ab_bench.sh .gpu-kit/base 2>>$R/log
t ab done; cat $R/ab/ab.md; pack
for d in b-ab-base-base b-new; do
  ninja -C $d -j16 > $R/build-$d.txt 2>&1 || tail -20 $R/build-$d.txt
  (cd $d && timeout 120 ctest -L cuda --output-on-failure > $R/ctest-$d.log 2>&1); tail -4 $R/ctest-$d.log
  for sp in 1 3; do
    POLYATTN_CUDA_FLASH_SPLIT=$sp timeout 60 $d/bin/conformance --backend cuda --algo flash > $R/conf-$d-split$sp.txt 2>&1; echo "$d split$sp exit $?" | tee -a $R/log
    grep -hE "^FAIL|^conformance" $R/conf-$d-split$sp.txt | head -5
  done
  python3 bench/gpu/seed_shapes.py check > $R/checks.txt
  { timeout 60 $d/bin/polyattn_cuda_bench --reps 3 < $R/checks.txt; POLYATTN_CUDA_FLASH_SPLIT=1 timeout 60 $d/bin/polyattn_cuda_bench --reps 3 < $R/checks.txt; } > $R/checks-$d.jsonl 2>>$R/log
  python3 -c "
import json
rows=[json.loads(l) for l in open('$R/checks-$d.jsonl') if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('$d checks:', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok')" | tee -a $R/log
done
t tests done; pack
python3 bench/gpu/seed_shapes.py seed > $R/shapes.txt
PYTHONUNBUFFERED=1 timeout 120 python3 bench/compare_torch.py --torch-backends efficient --shape-lines $R/shapes.txt --jsonl - > $R/torch.jsonl 2>> $R/torch.log
t torch done; pack
for r in 1 2; do
for spec in "f16 1 4096 63" "f16 2 2048 32" "f16 4 1024 16" "bf16 2 2048 32" "f32 4 1024 64" "f32 2 2048 127"; do
  set -- $spec; dt=$1; b=$2; n=$3; c=$4; d=1024
  for ch in 0 $((c/4)) $((c/2)) $((3*c/4)) $c; do
   for bd in b-ab-base-base b-new; do
    echo "seed-c$ch $dt $b 1 1 $n $n $d 1 flash" | POLYATTN_CUDA_FLASH_SPLIT=$ch timeout 30 $bd/bin/polyattn_cuda_bench --reps 30 | grep -v device | sed "s/^{/{\"build\":\"$bd\",\"chunk\":$ch,\"round\":$r,/" >> $R/sweep.jsonl
   done
  done
done; t sweep round $r; pack; done
python3 -c "
import json
best={}
for l in open('$R/sweep.jsonl'):
    r=json.loads(l)
    if 'ms' not in r or not r.get('ok'): continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['chunk'],r['build'])
    best.setdefault(k,[]).append(r['ms'])
for k in sorted(best): print(k, ' '.join('%.4f'%x for x in best[k]), 'min %.4f'%min(best[k]))
" | tee $R/sweep.txt
pack; t done
