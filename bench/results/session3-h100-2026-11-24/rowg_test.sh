#!/bin/bash
set -u
R=/tmp/rr; rm -rf $R; mkdir -p $R
cmake -G Ninja -S . -B b-new -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 > /dev/null && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench conformance > $R/build.txt 2>&1 || { tail -20 $R/build.txt; exit 1; }
B=b-new/bin
for g in 1 2; do
  POLYATTN_CUDA_WIDE_ROWG=$g timeout 60 $B/conformance --backend cuda --algo flash > $R/conf_g$g.txt 2>&1; echo "conf rowg $g exit $?" | tee -a $R/log
  POLYATTN_CUDA_WIDE_ROWG=$g POLYATTN_CUDA_FLASH_SPLIT=1 timeout 60 $B/conformance --backend cuda --algo flash > $R/conf_split1_g$g.txt 2>&1; echo "conf rowg $g split1 exit $?" | tee -a $R/log
done
grep -hE "^FAIL|^conformance cuda" $R/conf_*.txt | head
python3 bench/gpu/seed_shapes.py check f16,bf16 > $R/checks.txt
POLYATTN_CUDA_WIDE_ROWG=2 timeout 60 $B/polyattn_cuda_bench --reps 5 < $R/checks.txt > $R/checks.jsonl 2>>$R/log
POLYATTN_CUDA_WIDE_ROWG=2 POLYATTN_CUDA_FLASH_SPLIT=1 timeout 60 $B/polyattn_cuda_bench --reps 5 < $R/checks.txt >> $R/checks.jsonl 2>>$R/log
python3 -c "
import json
rows=[json.loads(l) for l in open('$R/checks.jsonl') if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks rowg2:', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok')
"
POLYATTN_CUDA_WIDE_ROWG=2 timeout 90 compute-sanitizer --tool racecheck --error-exitcode 99 $B/conformance --backend cuda --algo flash --case large_mag_br_70x150_d512 > $R/race.txt 2>&1; echo "racecheck rowg2 exit $?" | tee -a $R/log; grep -E "RACECHECK SUMMARY" $R/race.txt
python3 bench/gpu/seed_shapes.py seed f16,bf16 > $R/seed.txt
for r in 1 2; do for g in 1 2; do for sp in auto 0; do
  if [ $sp = auto ]; then unset POLYATTN_CUDA_FLASH_SPLIT; else export POLYATTN_CUDA_FLASH_SPLIT=0; fi
  POLYATTN_CUDA_WIDE_ROWG=$g timeout 60 $B/polyattn_cuda_bench < $R/seed.txt | sed "s/^{/{\"rowg\":$g,\"sp\":\"$sp\",/" >> $R/seed.jsonl
done; done; done
unset POLYATTN_CUDA_FLASH_SPLIT
python3 -c "
import json
best={}
for l in open('$R/seed.jsonl'):
    r=json.loads(l)
    if r.get('impl')!='polyattn' or 'ms' not in r: continue
    k=(r['dtype'],r['batch'],r['seq_q'],r['head_dim'],r['sp'])
    best.setdefault(k,{})[r['rowg']]=min(best.get(k,{}).get(r['rowg'],9e9), r['ms']) if r.get('ok') else -1
for k in sorted(best):
    b=best[k]; print(k, 'rowg1 %.4f rowg2 %.4f  speedup %.2f'%(b[1],b[2],b[1]/b[2]))
"
tar czf $OUT/rr.tgz -C $R .
