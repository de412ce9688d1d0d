#!/bin/bash
# session 5 call 1: where a key tile's time goes in the 16-bit wide kernel (phase profile),
# and how the unsplit time scales with the number of busy SMs (batch 1..16 at 512 D768)
set -u
R=/tmp/s5c1; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
CF="-G Ninja -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90"
cmake $CF -S . -B b-new > /dev/null && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench > $R/build.txt 2>&1 || { tail -20 $R/build.txt; exit 1; }
cmake $CF -S . -B b-prof -DCMAKE_CUDA_FLAGS=-DPA_WIDE_PROFILE > /dev/null && ninja -C b-prof -j16 polyattn_cuda polyattn_cuda_bench > $R/build_prof.txt 2>&1 || { tail -20 $R/build_prof.txt; exit 1; }
t built
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv >> $R/log
: > $R/scale.txt
for dt in f16 f32; do
for b in 1 2 4 8 16; do echo "scale $dt $b 1 1 512 512 768 1 flash"; done
for b in 1 2 4; do echo "scale $dt $b 1 1 1024 1024 1024 1 flash"; done
echo "scale $dt 1 1 1 4096 4096 1024 1 flash"
done > $R/scale_shapes.txt
for r in 1 2; do
POLYATTN_CUDA_FLASH_SPLIT=0 timeout 120 b-new/bin/polyattn_cuda_bench < $R/scale_shapes.txt >> $R/scale.jsonl 2>>$R/log
done
t scale
for spec in "f16 8 512 768 0 p8x512" "f16 1 512 768 0 p1x512" "f16 16 512 768 0 p16x512" "f16 4 1024 1024 0 p4x1024" "f16 1 4096 1024 -1 p1x4096"; do
  set -- $spec
  if [ "$5" = -1 ]; then unset POLYATTN_CUDA_FLASH_SPLIT; else export POLYATTN_CUDA_FLASH_SPLIT=$5; fi
  echo "prof $1 $2 1 1 $3 $3 $4 1 flash" | timeout 60 b-prof/bin/polyattn_cuda_bench --reps 5 > $R/$6.txt 2>&1
  t "prof $6 exit $? lines $(grep -c PROF $R/$6.txt)"
done
unset POLYATTN_CUDA_FLASH_SPLIT
gzip $R/p*.txt
pack; t done
