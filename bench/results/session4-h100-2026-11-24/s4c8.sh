#!/bin/bash
# session 4 call 8: where the 16-bit wide kernel's time goes (stall reasons, per-SASS samples)
set -u
R=/tmp/s4c8; rm -rf $R; mkdir -p $R
S=$(date +%s)
t(){ echo "[$(( $(date +%s)-S )) s] $*" | tee -a $R/log; }
pack(){ tar czf $OUT/results.tgz -C $R . ; }
cmake -G Ninja -S . -B b-new -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DCMAKE_CUDA_FLAGS=-lineinfo > /dev/null && ninja -C b-new -j16 polyattn_cuda polyattn_cuda_bench > $R/build.txt 2>&1 || { tail -20 $R/build.txt; exit 1; }
t built
ncu --version | tail -1 >> $R/log
for spec in "f16 8 512 768 0 r8" "f16 1 4096 1024 -1 r4096"; do
  set -- $spec
  if [ "$5" = -1 ]; then unset POLYATTN_CUDA_FLASH_SPLIT; else export POLYATTN_CUDA_FLASH_SPLIT=$5; fi
  echo "seed $1 $2 1 1 $3 $3 $4 1 flash" | timeout 120 ncu -k regex:wide --launch-skip 2 --launch-count 1 --section WarpStateStats --section SourceCounters --section SpeedOfLight --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active.ratio -o $R/$6 b-new/bin/polyattn_cuda_bench --reps 5 > $R/$6.out 2>&1
  t "ncu $6 exit $?"
  ncu --import $R/$6.ncu-rep --page details --print-details all > $R/$6_details.txt 2>&1
  ncu --import $R/$6.ncu-rep --page raw --csv --metrics regex:smsp__average_warps_issue_stalled_.*_per_issue_active.ratio > $R/$6_stalls.csv 2>&1
  ncu --import $R/$6.ncu-rep --page source --csv --print-source sass > $R/$6_sass.csv 2>&1
  t "export $6: $(wc -c < $R/$6_sass.csv) bytes sass"
  rm -f $R/$6.ncu-rep
done
unset POLYATTN_CUDA_FLASH_SPLIT
pack; t done
