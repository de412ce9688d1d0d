#!/bin/sh
# The OpenCL backward on the H100 machine (NVIDIA's OpenCL): build, conformance --backward
# (every algorithm), the determinism test, ocl_bwd_bench of the tiled flash backward, the
# old row kernels at one shape, and a small tile sweep (POLYATTN_FORCE=opencl.bwd_tiles=...).
# Run from the repository root with .gpu-kit carried (see gpu_run.sh).  Logs under $OUT.
set -u
OUT=${OUT:-/tmp/ocl-bwd-out}
mkdir -p "$OUT"
sh .gpu-kit/opencl-nvidia.sh >/dev/null 2>&1
KIT=$PWD/.gpu-kit/ocl
B=b-ocl-bwd
T0=$(date +%s)
cmake -G Ninja -S . -B $B -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=OFF -DPOLYATTN_HIP=OFF \
  -DPOLYATTN_OPENCL=ON -DOpenCL_INCLUDE_DIR="$KIT/include" \
  -DOpenCL_LIBRARY="$KIT/lib/libOpenCL.so" -DCLBlast_DIR=/nonexistent \
  -DPOLYATTN_CLBLAST_LIBRARY="$KIT/lib/libclblast.so" \
  -DPOLYATTN_CLBLAST_INCLUDE_DIR="$KIT/include" >/tmp/cmake.log 2>&1 || { tail -30 /tmp/cmake.log; exit 1; }
ninja -C $B -j16 polyattn_opencl conformance test_ocl_backward ocl_bwd_bench >/tmp/build.log 2>&1 ||
  { grep -B2 -A10 -m3 error /tmp/build.log; exit 1; }
echo "built in $(($(date +%s) - T0)) s"
export POLYATTN_CACHE_DIR=/tmp/polyattn-cache
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
date -u
S=$(date +%s)
POLYATTN_LOG=dispatch $B/bin/conformance --backend opencl --device 0 --backward --algo flash \
  --case causal_tl_129_d128 --dtype f16 2>&1 | grep -E "flash|passed" | cut -c1-400 >"$OUT/dispatch.txt"
timeout ${CONF_S:-130} $B/bin/conformance --backend opencl --device 0 --backward >"$OUT/conformance_backward.txt" 2>&1
echo "conformance --backward rc=$? in $(($(date +%s) - S)) s"
tail -1 "$OUT/conformance_backward.txt"; grep -E '^FAIL' "$OUT/conformance_backward.txt" | head
{
  timeout 70 $B/bin/ocl_bwd_bench --reps 5 --dtype f32,f16 --algo flash \
    --shape 1,16,1024,64 --shape 1,16,1024,128 --shape 1,16,4096,64 --shape 1,16,4096,128
  echo "rc=$?"
  echo "# unfused and fused for comparison (f32)"
  timeout 30 $B/bin/ocl_bwd_bench --reps 5 --dtype f32 --algo unfused,fused \
    --shape 1,16,1024,64 --shape 1,16,4096,128
  echo "rc=$?"
  echo "# the old row-streaming kernels (POLYATTN_FORCE=opencl.bwd=rows)"
  POLYATTN_FORCE=opencl.bwd=rows timeout 45 $B/bin/ocl_bwd_bench --reps 3 --dtype f32 --algo flash \
    --shape 1,16,1024,64
  echo "rc=$?"
} >"$OUT/bench.txt" 2>&1
cat "$OUT/bench.txt"
S=$(date +%s)
timeout 40 $B/bin/test_ocl_backward >"$OUT/test_ocl_backward.txt" 2>&1
echo "test_ocl_backward rc=$? in $(($(date +%s) - S)) s"; tail -1 "$OUT/test_ocl_backward.txt"
for t in ${TUNE_LIST:-64x64:16x16:32:16 32x64:8x16:32:16 64x32:16x16:32:16 64x64:8x32:32:16 64x64:16x16:16:16}; do
  echo "tiles $t"
  POLYATTN_FORCE=opencl.bwd_tiles=$t timeout 15 $B/bin/ocl_bwd_bench --reps 3 --dtype f32 --algo flash \
    --shape 1,16,4096,64 --shape 1,16,4096,128 --mask none | grep '^row'
done >"$OUT/tune.txt" 2>&1
cat "$OUT/tune.txt"
echo "total $(($(date +%s) - T0)) s"
