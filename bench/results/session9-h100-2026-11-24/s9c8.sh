#!/bin/bash
# session 9 call 8: after the review refactor (shared mbarrier helpers): conformance default,
# with column halves forced, odd-shape checks, 16-bit seed timings (graph)
set -u
R=/tmp/s9c8; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C" >> $R/log
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DPOLYATTN_WERROR=ON"
{ cmake $CM -B b-new && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench conformance; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
rm -f $R/build.txt; t build
for e in "" "POLYATTN_CUDA_COL_HALVES=1"; do
  echo "### $e" >> $R/conf.txt
  env $e timeout 60 b-new/bin/conformance --backend cuda > $R/c.txt 2>&1; echo "exit $?" >> $R/c.txt
  grep -E "^conformance cuda|FAIL|^exit" $R/c.txt | head -5 >> $R/conf.txt
done
cat $R/conf.txt | tee -a $R/log
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
{ timeout 120 b-new/bin/polyattn_cuda_bench --reps 3 < $R/checks.txt; POLYATTN_CUDA_COL_HALVES=1 timeout 120 b-new/bin/polyattn_cuda_bench --reps 3 < $R/checks.txt; } > $R/checks.jsonl 2>>$R/log
python3 -c "
import json,sys
rs=[json.loads(l) for l in open('$R/checks.jsonl') if l.startswith('{')]
rs=[r for r in rs if r.get('impl')=='polyattn']
print('checks: %d of %d ok'%(sum(1 for r in rs if r.get('ok')),len(rs)))" | tee -a $R/log
python3 bench/gpu/seed_shapes.py seed f16,bf16 > $R/seed.txt
timeout 120 b-new/bin/polyattn_cuda_bench --reps 30 --graph 20 < $R/seed.txt 2>>$R/log | python3 -c "
import json,sys
for l in sys.stdin:
    if not l.startswith('{'): continue
    r=json.loads(l)
    if 'ms' in r: print(r['dtype'],r['batch'],r['seq_q'],r['head_dim'],'%.4f ms'%r['ms'],'ok' if r['ok'] else 'FAIL')" | tee -a $R/log
t done; pack
