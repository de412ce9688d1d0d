#!/bin/bash
# session 6 call 5: kernel durations (ncu, warm caches, unlocked clocks) of pair unsplit / chunk 9 and mma unsplit at 8x512 f16
set -u
R=/tmp/s6c5; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
CM="-G Ninja -S . -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90"
{ cmake $CM -B b-new -DPOLYATTN_WERROR=ON && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench; } > $R/build.txt 2>&1 || { tail -30 $R/build.txt | tee -a $R/log; pack; exit 1; }
t build
NCU=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null)
for cfg in "pair 0" "pair 9" "mma 0" "mma 9"; do set -- $cfg
  echo "### $cfg" | tee -a $R/log
  echo "seed f16 8 1 1 512 512 768 1 flash" | POLYATTN_CUDA_WIDE=$1 POLYATTN_CUDA_FLASH_SPLIT=$2 timeout 120 $NCU --cache-control none --clock-control none --launch-skip 10 --launch-count 4 --metrics gpu__time_duration.sum,sm__cycles_active.avg,smsp__cycles_active.avg b-new/bin/polyattn_cuda_bench --reps 10 > $R/ncu-$1-$2.txt 2>&1
  grep -E "flash_fwd|combine|gpu__time|cycles_active" $R/ncu-$1-$2.txt | sed 's/(pa_gpu_args.*//' | head -16 | tee -a $R/log
done
pack; t done
