#!/bin/bash
# session-3 cluster experiment (not committed): correctness then timing, CLUSTER=0 vs 1 in one binary
set -u
R=/tmp/rc; rm -rf $R; mkdir -p $R
cmake -G Ninja -S . -B b-new -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 > /dev/null && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench conformance > $R/build.txt 2>&1 || { tail -20 $R/build.txt; exit 1; }
B=b-new/bin
export POLYATTN_CUDA_FLASH_CLUSTER=1
timeout 60 $B/conformance --backend cuda --algo flash > $R/conf.txt 2>&1; echo "conf cluster exit $?" | tee -a $R/log
POLYATTN_CUDA_FLASH_SPLIT=1 timeout 60 $B/conformance --backend cuda --algo flash > $R/conf_split1.txt 2>&1; echo "conf cluster split1 exit $?" | tee -a $R/log
grep -E "^FAIL|^conformance" $R/conf.txt $R/conf_split1.txt | head -20
python3 bench/gpu/seed_shapes.py check f16,bf16 > $R/checks.txt
timeout 60 $B/polyattn_cuda_bench --reps 5 < $R/checks.txt > $R/checks.jsonl 2>>$R/log; echo "checks exit $?" | tee -a $R/log
POLYATTN_CUDA_FLASH_SPLIT=1 timeout 60 $B/polyattn_cuda_bench --reps 5 < $R/checks.txt > $R/checks_split1.jsonl 2>>$R/log; echo "checks split1 exit $?" | tee -a $R/log
python3 -c "
import json,sys
for f in ['$R/checks.jsonl','$R/checks_split1.jsonl']:
    rows=[json.loads(l) for l in open(f) if l.startswith('{')]
    rows=[r for r in rows if r.get('impl')=='polyattn']
    print(f, sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok', [ (r['dtype'],r['seq_q'],r['head_dim'],r.get('error')) for r in rows if not r.get('ok')][:5])
"
timeout 90 compute-sanitizer --tool memcheck --error-exitcode 99 $B/conformance --backend cuda --algo flash --dtype f16 > $R/memcheck.txt 2>&1; echo "memcheck cluster exit $?" | tee -a $R/log; grep "ERROR SUMMARY" $R/memcheck.txt
python3 bench/gpu/seed_shapes.py seed f16,bf16 > $R/seed.txt
for r in 1 2; do for c in 0 1; do
  POLYATTN_CUDA_FLASH_CLUSTER=$c timeout 60 $B/polyattn_cuda_bench < $R/seed.txt | sed "s/^{/{\"cluster\":$c,/" >> $R/seed.jsonl
  for ch in 0; do POLYATTN_CUDA_FLASH_SPLIT=$ch POLYATTN_CUDA_FLASH_CLUSTER=$c timeout 60 $B/polyattn_cuda_bench < $R/seed.txt | sed "s/^{/{\"cluster\":$c,\"split\":0,/" >> $R/seed.jsonl; done
done; done
python3 -c "
import json
best={}
for l in open('$R/seed.jsonl'):
    r=json.loads(l)
    if r.get('impl')!='polyattn' or 'ms' not in r: continue
    k=(r["dtype"],r["batch"],r["seq_q"],r["head_dim"],str(r.get("split","auto")),r["cluster"])
    best[k]=min(best.get(k,9e9), r['ms']) if r.get('ok') else -1
for k in sorted(best): print(k, best[k])
"
tar czf $OUT/rc.tgz -C $R .
