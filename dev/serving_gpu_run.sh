#!/bin/bash
# One GPU run for the serving layouts (CUDA, and NVIDIA's OpenCL when OCL_KIT names a folder
# with include/ (OpenCL and CLBlast headers) and lib/ (libOpenCL.so, libclblast.so)):
# builds, checks correctness (test_cuda_serving on the tensor-core serving kernel and on the
# generic kernel, merge_states, the Python serving tests on torch CUDA tensors,
# test_ocl_serving), then measures the copy bandwidth, the decode suite beside PyTorch,
# OpenCL decode and the serving suite.  Results under OUT (default
# ./serving-run).  Usage: OUT=dir [OCL_KIT=dir] bash dev/serving_gpu_run.sh
set -u
R=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$PWD/serving-run}
B=${BUILD:-/tmp/polyattn-serving-build}
mkdir -p "$OUT"
log() { echo "== $(date -u +%T) $*" | tee -a "$OUT/summary.txt"; }
. "$R/dev/ocl_kit.sh" # OCL: the OpenCL backend's CMake flags (OCL_KIT)
nvidia-smi --query-gpu=name,driver_version --format=csv | tee -a "$OUT/summary.txt"
log "commit $(git -C "$R" rev-parse --short HEAD 2>/dev/null)"
cmake -G Ninja -S "$R" -B "$B" -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF \
  -DPOLYATTN_CUDA_ARCHITECTURES=90 "${OCL[@]}" > "$OUT/build.txt" 2>&1 &&
  ninja -C "$B" >> "$OUT/build.txt" 2>&1 || { tail -30 "$OUT/build.txt"; exit 1; }
log built
(cd "$B" && ctest -R "test_cuda_serving|test_cuda_merge_states|test_ocl_serving" \
  --output-on-failure) > "$OUT/ctest.txt" 2>&1
log "ctest serving rc=$?"; grep -E 'tests passed|Failed|\*\*\*' "$OUT/ctest.txt" | tee -a "$OUT/summary.txt"
export PYTHONPATH=$R/python POLYATTN_LIBRARY=$B/lib/libpolyattn.so
python3 -m pytest -q "$R/python/tests/test_serving_torch_cuda.py" > "$OUT/pytest.txt" 2>&1
log "python serving tests rc=$?"; tail -1 "$OUT/pytest.txt" | tee -a "$OUT/summary.txt"
python3 "$R/bench/copy_bandwidth.py" --json "$OUT/copy-bandwidth.json" | tee -a "$OUT/summary.txt"
CT=(python3 "$R/bench/compare_torch.py" --polyattn "$B/bin/polyattn")
"${CT[@]}" --suite decode --backends cuda --algo flash --graph 10 \
  --out "$OUT/decode" > "$OUT/decode.txt" 2>&1; log "decode rc=$?"
[ -n "${OCL_KIT:-}" ] && { "$B/bin/polyattn" bench --suite decode --backend opencl --algo flash \
  --json "$OUT/decode-opencl.json" > "$OUT/decode-opencl.txt" 2>&1
  log "decode opencl rc=$?"; }
"${CT[@]}" --suite serving --backends cuda --algo flash --out "$OUT/serving" \
  > "$OUT/serving.txt" 2>&1; log "serving rc=$?"
