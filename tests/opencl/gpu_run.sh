#!/bin/sh
# The OpenCL backend on the H100 machine (NVIDIA's OpenCL): build, conformance, the
# backend tests, ocl_bench and PyTorch SDPA (efficient) on the same shapes, then a small
# flash tile sweep (POLYATTN_FORCE=opencl.tiles=BMxBN:RGxCG:DK:VN).
# Run from the repository root with .gpu-kit carried (opencl-nvidia.sh, and ocl/ holding
# the OpenCL headers, clblast_c.h, libclblast.so and libOpenCL.so copied from Debian 12).
# Writes logs and JSON under $OUT (at most 6 files: the device tool returns 8).
set -u
OUT=${OUT:-/tmp/ocl-out}
mkdir -p "$OUT"
sh .gpu-kit/opencl-nvidia.sh
KIT=$PWD/.gpu-kit/ocl
B=build-gpu-ocl
cmake -G Ninja -S . -B $B -DPOLYATTN_CUDA=OFF -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=ON \
  -DOpenCL_INCLUDE_DIR="$KIT/include" -DOpenCL_LIBRARY="$KIT/lib/libOpenCL.so" \
  -DCLBlast_DIR=/nonexistent -DPOLYATTN_CLBLAST_LIBRARY="$KIT/lib/libclblast.so" \
  -DPOLYATTN_CLBLAST_INCLUDE_DIR="$KIT/include" >/tmp/cmake.log 2>&1 || { tail -30 /tmp/cmake.log; exit 1; }
ninja -C $B -j16 >/tmp/build.log 2>&1 || { grep -B2 -A10 -m3 error /tmp/build.log; exit 1; }
export POLYATTN_CACHE_DIR=/tmp/polyattn-cache
$B/bin/polyattn devices
echo "commit: $(git rev-parse HEAD 2>/dev/null)"; date -u
timeout 240 $B/bin/conformance --backend opencl --device 0 >"$OUT/conformance.txt" 2>&1
echo "conformance rc=$?"; grep -v '^PASS' "$OUT/conformance.txt" | tail -20
$B/bin/test_ocl_interop 2>&1 | tail -2
timeout 120 $B/bin/test_ocl_cache 2>&1 | tail -7
timeout 360 $B/bin/ocl_bench --suite all --json "$OUT/opencl.json" --max-seconds ${OCL_BENCH_SECONDS:-0.4} >"$OUT/ocl_bench.txt" 2>&1
echo "ocl_bench rc=$?"
PYTHONUNBUFFERED=1 timeout 200 python3 tests/opencl/torch_sdpa_bench.py "$OUT/torch.json" >"$OUT/torch.txt" 2>&1
echo "torch rc=$?"
if [ "${OCL_TUNE:-1}" = 1 ]; then
  for t in ${OCL_TUNE_LIST:-64x64:16x8:32:32 64x64:16x8:16:32 64x64:16x4:32:16 64x32:16x8:32:32}; do
    echo "tiles $t"; POLYATTN_FORCE=opencl.tiles=$t timeout 60 $B/bin/ocl_bench --suite tune --algos flash --max-seconds 0.3 | tail -2
  done >"$OUT/tune.txt" 2>&1
fi
cat "$OUT/ocl_bench.txt"; tail -40 "$OUT/torch.txt"; cat "$OUT/tune.txt" 2>/dev/null
