#!/bin/bash
# session 5 call 2: software-pipelined wide kernel (new) vs HEAD (base): seed A/B, conformance, checks, phase profile
set -u
R=/tmp/s5c2; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
CF="-G Ninja -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90"
python3 bench/gpu/seed_shapes.py seed | BUILD=b-new OUT=$R/ab ROUNDS=2 bash bench/gpu/ab_bench.sh .gpu-kit/base 2>>$R/log
t ab; cat $R/ab/ab.md
B=b-new/bin
ninja -C b-new -j16 conformance > $R/build.txt 2>&1 || tail -20 $R/build.txt
for sp in 0 1 3; do POLYATTN_CUDA_FLASH_SPLIT=$sp timeout 60 $B/conformance --backend cuda --algo flash > $R/conf-split$sp.txt 2>&1; echo "split$sp exit $?" | tee -a $R/log; grep -h "^conformance cuda\|^FAIL" $R/conf-split$sp.txt | head -3 | tee -a $R/log; done
unset POLYATTN_CUDA_FLASH_SPLIT
timeout 60 $B/conformance --backend cuda > $R/conf-all.txt 2>&1; echo "conf all exit $?" | tee -a $R/log; grep -h "^conformance cuda\|^FAIL" $R/conf-all.txt | head -3 | tee -a $R/log
python3 bench/gpu/seed_shapes.py check > $R/checks.txt
{ timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; POLYATTN_CUDA_FLASH_SPLIT=1 timeout 60 $B/polyattn_cuda_bench --reps 3 < $R/checks.txt; } > $R/checks.jsonl 2>>$R/log
python3 -c "
import json
rows=[json.loads(l) for l in open('$R/checks.jsonl') if l.startswith('{')]
rows=[r for r in rows if r.get('impl')=='polyattn']
print('checks:', sum(1 for r in rows if r.get('ok')), 'of', len(rows), 'ok', [(r['dtype'],r['seq_q'],r['head_dim']) for r in rows if not r.get('ok')])" | tee -a $R/log
t tests
cmake $CF -S . -B b-prof -DCMAKE_CUDA_FLAGS=-DPA_WIDE_PROFILE > /dev/null && ninja -C b-prof -j16 polyattn_cuda polyattn_cuda_bench > $R/build_prof.txt 2>&1 || { tail -20 $R/build_prof.txt; }
for spec in "f16 8 512 768 0 p8x512" "f16 1 512 768 0 p1x512" "f16 1 4096 1024 0 p1x4096u"; do
  set -- $spec
  export POLYATTN_CUDA_FLASH_SPLIT=$5
  echo "prof $1 $2 1 1 $3 $3 $4 1 flash" | timeout 60 b-prof/bin/polyattn_cuda_bench --reps 5 > $R/$6.txt 2>&1
  t "prof $6 exit $? lines $(grep -c PROF $R/$6.txt)"
done
unset POLYATTN_CUDA_FLASH_SPLIT
gzip $R/p*.txt; rm -f $R/build*.txt $R/checks.txt
pack; t done
