#!/bin/bash
# session 8 call 9: where the short seed shapes' warps wait: Nsight Compute stall reasons per
# issued instruction (warp state statistics in detail) for f16 16x128 D512 (unsplit), f32 16x128
# D512 (column halves) and f16 8x512 D768 (key halves)
set -u
R=/tmp/s8c9; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C" >> $R/log
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DPOLYATTN_WERROR=ON"
{ cmake $CM -B b-seed && ninja -C b-seed -j16 polyattn_cuda polyattn_cuda_bench; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
t build
for sh in "f16 16 1 1 128 128 512" "f32 16 1 1 128 128 512" "f16 8 1 1 512 512 768"; do
  echo "### $sh" >> $R/ncu.txt
  echo "ncu $sh 1 flash" | timeout 150 ncu --launch-skip 3 --launch-count 1 --kernel-name regex:wide \
     --section WarpStateStats --section SpeedOfLight --print-details all \
     --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active\\.ratio,smsp__inst_executed.sum,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active \
     b-seed/bin/polyattn_cuda_bench --reps 3 >> $R/ncu.txt 2>&1
  t "ncu $sh exit $?"
done
python3 - $R/ncu.txt <<'PY' | tee $R/stalls.md | tee -a $R/log
import re,sys
cur=None; d={}
for l in open(sys.argv[1]):
    if l.startswith('### '): cur=l[4:].strip(); d[cur]={}; continue
    m=re.match(r'\s+smsp__average_warps_issue_stalled_(\w+)_per_issue_active\.ratio\s+\S*\s+([\d.]+)',l)
    if m and cur: d[cur][m.group(1)]=float(m.group(2))
    m=re.match(r'\s+(sm__pipe_tensor_op_hmma_cycles_active\S*|smsp__inst_executed.sum)\s+\S*\s+([\d.,]+)',l)
    if m and cur: d[cur][m.group(1)]=m.group(2)
for k,v in d.items():
    print('## '+k)
    st=sorted(((x,y) for x,y in v.items() if isinstance(y,float)), key=lambda p:-p[1])
    print(', '.join('%s %.2f'%p for p in st if p[1]>=0.05))
    print({x:y for x,y in v.items() if not isinstance(y,float)})
PY
pack
