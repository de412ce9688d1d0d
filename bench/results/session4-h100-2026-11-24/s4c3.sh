#!/bin/bash
# session 4 call 3: combine per cut tile + PDL (new) vs 38c28b5 (base): A/B seed shapes, correctness, schedule sweep, ncu kernel durations
set -u
R=/tmp/s4c3; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv >> $R/log 2>&1
python3 bench/gpu/seed_shapes.py seed | BUILD=b-new OUT=$R/ab ROUNDS=2 bash bench/gpu/ab_bench.sh .gpu-kit/base 2>>$R/log
t ab done; cat $R/ab/ab.md; pack
d=b-new; B=$d/bin
ninja -C $d -j16 conformance > $R/build.txt 2>&1 || tail -20 $R/build.txt
for sp in -1 1 2 3; do
  if [ $sp = -1 ]; then timeout 60 $B/conformance --backend cuda > $R/conf$sp.txt 2>&1; else
  POLYATTN_CUDA_FLASH_SPLIT=$sp timeout 60 $B/conformance --backend cuda --algo flash > $R/conf$sp.txt 2>&1; fi
  echo "conformance split$sp exit $?" | tee -a $R/log; grep -hE "^FAIL|^conformance cuda" $R/conf$sp.txt | head -5
done
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
{ timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; POLYATTN_CUDA_FLASH_SPLIT=1 timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; POLYATTN_CUDA_FLASH_SPLIT=2 timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; } > $R/checks.jsonl 2>>$R/log
python3 -c "
import json
rows=[json.loads(l) for l in open('$R/checks.jsonl') if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks:', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok')" | tee -a $R/log
POLYATTN_CUDA_FLASH_SPLIT=2 timeout 200 compute-sanitizer --tool memcheck --error-exitcode 99 $B/conformance --backend cuda --algo flash > $R/memcheck.log 2>&1; echo "memcheck split2 exit $?" | tee -a $R/log
grep -E "ERROR SUMMARY|conformance cuda" $R/memcheck.log | tail -2 | tee -a $R/log
POLYATTN_CUDA_FLASH_SPLIT=1 timeout 100 compute-sanitizer --tool racecheck --error-exitcode 99 $B/conformance --backend cuda --algo flash --case large_mag_br_70x150_d512 > $R/racecheck.log 2>&1; echo "racecheck exit $?" | tee -a $R/log
t tests done; pack
for r in 1 2; do
for spec in "f16 2 2048 1024 0,32" "f16 4 1024 1024 0,16" "f16 8 512 768 0,9" "bf16 8 512 768 0,9" "f16 16 128 512 0,1,2" "f32 8 512 768 0,17" "f32 16 128 512 0,1,2"; do
  set -- $spec; dt=$1; b=$2; n=$3; dd=$4
  for ch in ${5//,/ }; do
    echo "seed-c$ch $dt $b 1 1 $n $n $dd 1 flash" | POLYATTN_CUDA_FLASH_SPLIT=$ch timeout 30 $B/polyattn_cuda_bench --reps 40 | grep -v device | sed "s/^{/{\"chunk\":$ch,\"round\":$r,/" >> $R/sweep.jsonl
  done
done; t sweep round $r; done
python3 -c "
import json
best={}
for l in open('$R/sweep.jsonl'):
    r=json.loads(l)
    if 'ms' not in r or not r.get('ok'): continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['chunk'])
    best.setdefault(k,[]).append(r['ms'])
for k in sorted(best): print(k, ' '.join('%.4f'%x for x in best[k]), 'min %.4f'%min(best[k]))
" | tee $R/sweep.txt
pack
for spec in "f16 8 512 768 9" "f16 16 128 512 2" "f16 1 4096 1024 63"; do
  set -- $spec
  for bd in b-ab-base-base b-new; do
  echo "### $spec $bd" >> $R/ncu.txt
  echo "seed $1 $2 1 1 $3 $3 $4 1 flash" | POLYATTN_CUDA_FLASH_SPLIT=$5 timeout 60 ncu --clock-control none -k regex:"wide|combine" --launch-skip 4 --launch-count 2 --section SpeedOfLight $bd/bin/polyattn_cuda_bench --reps 5 >> $R/ncu.txt 2>&1
  done
done
grep -E "^###|flash_fwd|Duration" $R/ncu.txt | tee -a $R/log
t done; pack
