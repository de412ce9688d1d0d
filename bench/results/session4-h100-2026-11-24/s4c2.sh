#!/bin/bash
# session 4 call 2: schedule sweep at every seed shape (line-order walk), ncu at the small shapes, sanitizers with the split forced
set -u
R=/tmp/s4c2; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv >> $R/log 2>&1
cmake -G Ninja -S . -B b-new -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 > /dev/null && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench conformance > $R/build.txt 2>&1 || { tail -20 $R/build.txt; exit 1; }
B=b-new/bin
t built
for r in 1 2; do
for spec in "f16 4 1024 1024 0,8,12,16,20" "bf16 4 1024 1024 0,12,16" "f16 8 512 768 0,5,7,9,12" "bf16 8 512 768 0,7,9" "f16 16 128 512 0,1,2,3" "f32 1 4096 1024 0,251" "f32 8 512 768 0,9,13,17,22" "f32 16 128 512 0,1,2,3"; do
  set -- $spec; dt=$1; b=$2; n=$3; d=$4
  for ch in ${5//,/ }; do
    echo "seed-c$ch $dt $b 1 1 $n $n $d 1 flash" | POLYATTN_CUDA_FLASH_SPLIT=$ch timeout 30 $B/polyattn_cuda_bench --reps 40 | grep -v device | sed "s/^{/{\"chunk\":$ch,\"round\":$r,/" >> $R/sweep.jsonl
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
for spec in "f16 8 512 768 0" "f16 8 512 768 9" "f16 16 128 512 0" "f32 16 128 512 0"; do
  set -- $spec
  echo "### $spec" >> $R/ncu.txt
  echo "seed $1 $2 1 1 $3 $3 $4 1 flash" | POLYATTN_CUDA_FLASH_SPLIT=$5 timeout 60 ncu -k regex:wide --launch-skip 2 --launch-count 1 --section SpeedOfLight --section WarpStateStats --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis $B/polyattn_cuda_bench --reps 5 >> $R/ncu.txt 2>&1
done
t ncu; pack
POLYATTN_CUDA_FLASH_SPLIT=3 timeout 200 compute-sanitizer --tool memcheck --error-exitcode 99 $B/conformance --backend cuda --algo flash > $R/memcheck.log 2>&1; echo "memcheck split3 exit $?" | tee -a $R/log
grep -E "ERROR SUMMARY|conformance cuda" $R/memcheck.log | tail -2 | tee -a $R/log
for c in d512_17x40 large_mag_br_70x150_d512; do
 for sp in 0 1 3; do
  POLYATTN_CUDA_FLASH_SPLIT=$sp timeout 100 compute-sanitizer --tool racecheck --error-exitcode 99 $B/conformance --backend cuda --algo flash --case $c >> $R/racecheck.log 2>&1; echo "racecheck $c split$sp exit $?" | tee -a $R/log
 done
done
grep -E "RACECHECK SUMMARY|ERROR SUMMARY" $R/racecheck.log | sort | uniq -c | tee -a $R/log
t done; pack
