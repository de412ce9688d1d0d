#!/bin/bash
# session 5 call 4: in-kernel merge of the cut tiles (cooperative launch, grid barrier) vs the combine kernel, same binary (POLYATTN_CUDA_FLASH_MERGE=0/1): correctness, chunk sweep
set -u
R=/tmp/s5c4; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
CF="-G Ninja -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90"
cmake $CF -S . -B b-new > /dev/null && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench conformance > $R/build.txt 2>&1 || { tail -20 $R/build.txt; exit 1; }
t built
B=b-new/bin
for sp in -1 1 2 3; do
  if [ $sp = -1 ]; then unset POLYATTN_CUDA_FLASH_SPLIT; else export POLYATTN_CUDA_FLASH_SPLIT=$sp; fi
  timeout 60 $B/conformance --backend cuda --algo flash > $R/conf-split$sp.txt 2>&1; echo "split$sp exit $?" | tee -a $R/log; grep -h "^conformance cuda\|^FAIL" $R/conf-split$sp.txt | head -3 | tee -a $R/log
done
unset POLYATTN_CUDA_FLASH_SPLIT
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
{ timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; for sp in 1 2 4; do POLYATTN_CUDA_FLASH_SPLIT=$sp timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; done; } > $R/checks.jsonl 2>>$R/log
python3 -c "
import json
rows=[json.loads(l) for l in open('$R/checks.jsonl') if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks:', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok', [(r['dtype'],r['seq_q'],r['head_dim']) for r in rows if not r.get('ok')])" | tee -a $R/log
POLYATTN_CUDA_FLASH_SPLIT=2 timeout 120 compute-sanitizer --tool memcheck --error-exitcode 99 $B/conformance --backend cuda --algo flash > $R/memcheck.log 2>&1; echo "memcheck split2 exit $?" | tee -a $R/log
grep -E "ERROR SUMMARY" $R/memcheck.log | tee -a $R/log
for c in d512_17x40 large_mag_br_70x150_d512; do POLYATTN_CUDA_FLASH_SPLIT=1 timeout 100 compute-sanitizer --tool racecheck --error-exitcode 99 $B/conformance --backend cuda --case $c >> $R/racecheck.log 2>&1; echo "racecheck $c split1 exit $?" | tee -a $R/log; done
grep -E "RACECHECK SUMMARY" $R/racecheck.log | sort | uniq -c | tee -a $R/log
t tests
python3 bench/gpu/seed_shapes.py chunks > $R/chunks.txt
printf "10 seed-c10 f16 8 1 1 512 512 768 1 flash\n12 seed-c12 f16 8 1 1 512 512 768 1 flash\n10 seed-c10 bf16 8 1 1 512 512 768 1 flash\n3 seed-c3 f32 16 1 1 128 128 512 1 flash\n" >> $R/chunks.txt
for r in 1 2; do for mg in 0 1; do
  while read ch rest; do
    echo "$rest" | POLYATTN_CUDA_FLASH_MERGE=$mg POLYATTN_CUDA_FLASH_SPLIT=$ch timeout 30 $B/polyattn_cuda_bench --reps 30 | grep -v device | sed "s/^{/{\"merge\":$mg,\"chunk\":$ch,\"round\":$r,/" >> $R/sweep.jsonl
  done < $R/chunks.txt
  python3 bench/gpu/seed_shapes.py seed | POLYATTN_CUDA_FLASH_MERGE=$mg timeout 60 $B/polyattn_cuda_bench | grep -v device | sed "s/^{/{\"merge\":$mg,\"chunk\":-1,\"round\":$r,/" >> $R/sweep.jsonl
done; done
python3 -c "
import json
best={}
for l in open('$R/sweep.jsonl'):
    r=json.loads(l)
    if 'ms' not in r or not r.get('ok'): print('NOT OK', l[:200]); continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['chunk'])
    best.setdefault(k,{})
    best[k][r['merge']]=min(best[k].get(r['merge'],9),r['ms'])
for k in sorted(best): print(k, ' '.join('m%d %.4f'%(m,v) for m,v in sorted(best[k].items())))
" | tee $R/sweep.txt
t sweep
rm -f $R/build.txt $R/checks.txt
pack; t done
