#!/bin/sh
# polyattn against PyTorch SDPA and across backends on the GPU machine, one suite per call:
#   sh bench/compare_gpu.sh SUITE BACKENDS [more bench/compare_torch.py options]
#   e.g. sh bench/compare_gpu.sh article all         (CUDA, NVIDIA OpenCL, PoCL; torch)
#        sh bench/compare_gpu.sh fa2 cuda,opencl   (opencl = opencl:0 = the GPU: OpenCL
#                                                   devices list GPUs before CPUs)
#        sh bench/compare_gpu.sh fa2 cuda --backward --dtype bf16 --algo flash
#                                                  (the backward pass: files and the .tgz
#                                                   are named fa2-backward)
# From the repository root, .gpu-kit carried.  Registers NVIDIA's OpenCL, builds
# $BUILD (default build-cmp: CUDA + OpenCL, Release) when its polyattn is missing, runs
# bench/compare_torch.py (polyattn bench on BACKENDS in one run, with its backend comparison,
# then torch flash/cudnn/efficient/math), draws bench/plot.py's PNGs from polyattn's CSV,
# and packs everything into ONE file, $OUT/SUITE.tgz (the device tool returns 8 files).
# TIMEOUT (default 540 s): then SIGTERM, and the reports hold what was measured.
set -u
suite=${1:?usage: compare_gpu.sh SUITE BACKENDS [options]}
backends=${2:?usage: compare_gpu.sh SUITE BACKENDS [options]}
shift 2
BUILD=${BUILD:-build-cmp}
OUT=${OUT:-$PWD/compare-out}
tag=$suite
for a in "$@"; do [ "$a" = --backward ] && tag=$suite-backward; done
RES=${RES:-/tmp/pa-compare}/$tag
mkdir -p "$OUT" "$RES"
export POLYATTN_CACHE_DIR=${POLYATTN_CACHE_DIR:-/tmp/polyattn-cache}
export PYTHONUNBUFFERED=1
# Only where an NVIDIA driver is: the script registers an ICD system-wide.
if [ -f .gpu-kit/opencl-nvidia.sh ] && command -v nvidia-smi >/dev/null 2>&1; then
  sh .gpu-kit/opencl-nvidia.sh >"$RES/opencl-nvidia.txt" 2>&1
fi
if [ ! -x "$BUILD/bin/polyattn" ]; then
  K=$PWD/.gpu-kit/ocl
  ocl=""
  [ -d "$K" ] && ocl="-DOpenCL_INCLUDE_DIR=$K/include -DOpenCL_LIBRARY=$K/lib/libOpenCL.so
    -DCLBlast_DIR=/nonexistent -DPOLYATTN_CLBLAST_LIBRARY=$K/lib/libclblast.so
    -DPOLYATTN_CLBLAST_INCLUDE_DIR=$K/include"
  start=$(date +%s)
  # shellcheck disable=SC2086
  if ! { cmake -G Ninja -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON \
           -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=ON -DPOLYATTN_CUDA_ARCHITECTURES=${ARCH:-90} \
           $ocl && ninja -C "$BUILD" -j16 polyattn_cli polyattn_cuda polyattn_opencl; } \
         >"$RES/build.txt" 2>&1; then
    tail -40 "$RES/build.txt"
    tar czf "$OUT/$tag.tgz" -C "$RES" .
    exit 1
  fi
  echo "build took $(( $(date +%s) - start )) s"
fi
{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null
  "$BUILD/bin/polyattn" devices
} >"$RES/devices.txt" 2>&1
cat "$RES/devices.txt"
{
  timeout -k 60 -s TERM "${TIMEOUT:-540}" python3 bench/compare_torch.py --suite "$suite" \
    --polyattn "$BUILD/bin/polyattn" --backends "$backends" --out "$RES" "$@"
  echo $? >"$RES/exit_status"
} 2>&1 | tee "$RES/compare.log"
rc=$(cat "$RES/exit_status")
echo "compare_torch.py exit $rc"
if [ -s "$RES/polyattn_$suite.csv" ]; then
  python3 bench/plot.py "$RES/polyattn_$suite.csv" --out "$RES/figures" >"$RES/plot.txt" 2>&1 ||
    echo "plot.py failed: $(tail -n 3 "$RES/plot.txt")"
fi
tar czf "$OUT/$tag.tgz" -C "$RES" .
ls -l "$OUT/$tag.tgz"
exit "$rc"
