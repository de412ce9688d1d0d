#!/bin/bash
# session 5 call 3: segment end staged through shared memory (new) vs HEAD (base): seed A/B, chunk sweep (both builds), conformance, checks
set -u
R=/tmp/s5c3; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
python3 bench/gpu/seed_shapes.py seed | BUILD=b-new OUT=$R/ab ROUNDS=2 bash bench/gpu/ab_bench.sh .gpu-kit/base 2>>$R/log
t ab; cat $R/ab/ab.md
B=b-new/bin
ninja -C b-new -j16 conformance > $R/build.txt 2>&1 || tail -20 $R/build.txt
for sp in 0 1 3; do POLYATTN_CUDA_FLASH_SPLIT=$sp timeout 60 $B/conformance --backend cuda --algo flash > $R/conf-split$sp.txt 2>&1; echo "split$sp exit $?" | tee -a $R/log; grep -h "^conformance cuda\|^FAIL" $R/conf-split$sp.txt | head -3 | tee -a $R/log; done
unset POLYATTN_CUDA_FLASH_SPLIT
timeout 60 $B/conformance --backend cuda > $R/conf-all.txt 2>&1; echo "conf all exit $?" | tee -a $R/log; grep -h "^conformance cuda\|^FAIL" $R/conf-all.txt | head -3 | tee -a $R/log
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
{ timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; POLYATTN_CUDA_FLASH_SPLIT=1 timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; POLYATTN_CUDA_FLASH_SPLIT=2 timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; } > $R/checks.jsonl 2>>$R/log
python3 -c "
import json
rows=[json.loads(l) for l in open('$R/checks.jsonl') if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks:', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok', [(r['dtype'],r['seq_q'],r['head_dim']) for r in rows if not r.get('ok')])" | tee -a $R/log
t tests
python3 bench/gpu/seed_shapes.py chunks f16,f32 | grep -v "4096\|2048" > $R/chunks.txt; printf "12 seed-c12 f16 8 1 1 512 512 768 1 flash\n12 seed-c12 f16 4 1 1 1024 1024 1024 1 flash\n3 seed-c3 f32 16 1 1 128 128 512 1 flash\n" >> $R/chunks.txt
for r in 1 2; do for side in base new; do
  dir=b-new; [ $side = base ] && dir=b-ab-base-base
  while read ch rest; do
    echo "$rest" | POLYATTN_CUDA_FLASH_SPLIT=$ch timeout 30 $dir/bin/polyattn_cuda_bench --reps 30 | grep -v device | sed "s/^{/{\"side\":\"$side\",\"chunk\":$ch,\"round\":$r,/" >> $R/sweep.jsonl
  done < $R/chunks.txt
done; done
python3 -c "
import json
best={}
for l in open('$R/sweep.jsonl'):
    r=json.loads(l)
    if 'ms' not in r or not r.get('ok'): continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['chunk'],r['side'])
    best[k]=min(best.get(k,9),r['ms'])
for k in sorted(best): print(k, '%.4f'%best[k])
" | tee $R/sweep.txt
t sweep
rm -f $R/build.txt $R/checks.txt
pack; t done
