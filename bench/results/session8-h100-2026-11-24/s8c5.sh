#!/bin/bash
# session 8 call 5: Nsight Compute on the three seed shapes short of 2x (f32 16x128 D512 with
# column halves, f16 8x512 D768 with key halves, f16 16x128 D512 unsplit): speed of light,
# memory, warp states, scheduler, launch/occupancy
set -u
R=/tmp/s8c5; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
C=$(cat .gpu-kit/commit); echo "commit $C" >> $R/log
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DPOLYATTN_WERROR=ON"
{ cmake $CM -B b-seed && ninja -C b-seed -j16 polyattn_cuda polyattn_cuda_bench; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
t build
for sh in "f32 16 1 1 128 128 512" "f16 8 1 1 512 512 768" "f16 16 1 1 128 128 512"; do
  echo "### $sh" >> $R/ncu.txt
  echo "ncu $sh 1 flash" | timeout 120 ncu --launch-skip 3 --launch-count 1 --kernel-name regex:wide \
     --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section SchedulerStats \
     --section LaunchStats --section Occupancy --section ComputeWorkloadAnalysis \
     b-seed/bin/polyattn_cuda_bench --reps 3 >> $R/ncu.txt 2>&1
  t "ncu $sh exit $?"
done
pack
