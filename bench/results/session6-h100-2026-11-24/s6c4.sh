#!/bin/bash
# session 6 call 4: cluster occupancy, pair-kernel phase profile under load (chunk 9) and unsplit
set -u
R=/tmp/s6c4; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
true
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90"
{ cmake $CM -B b-prof -DCMAKE_CUDA_FLAGS=-DPA_PAIR_PROFILE && ninja -C b-prof -j16 polyattn_cuda polyattn_cuda_bench; } > $R/build-prof.txt 2>&1 || { tail -30 $R/build-prof.txt | tee -a $R/log; }
t build
for ch in 0 9; do
  echo "### chunk $ch" | tee -a $R/log
  echo "seed f16 8 1 1 512 512 768 1 flash" | POLYATTN_CUDA_FLASH_SPLIT=$ch POLYATTN_CUDA_WIDE=pair timeout 60 b-prof/bin/polyattn_cuda_bench --reps 5 2>&1 | grep "pair-profile\|ms" | tail -4 | tee -a $R/log
done
pack; t done
