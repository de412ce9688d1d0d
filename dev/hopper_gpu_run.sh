#!/bin/bash
# One GPU run (sm_90) for the Hopper flash kernel: builds CUDA, runs its checks (the dense
# forward kernels on torch tensors, the conformance suite with the Hopper kernel by default
# and with the mma.sync kernel forced), then the FlashAttention-2 sweep beside PyTorch's
# cudnn and flash backends and the mma.sync kernel alone, in bf16 and f16.  Results under
# OUT (default ./hopper-run).  Usage: OUT=dir bash dev/hopper_gpu_run.sh
set -u
R=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$PWD/hopper-run}
B=${BUILD:-/tmp/polyattn-hopper-build}
mkdir -p "$OUT"
log() { echo "== $(date -u +%T) $*" | tee -a "$OUT/summary.txt"; }
nvidia-smi --query-gpu=name,driver_version --format=csv | tee -a "$OUT/summary.txt"
log "commit $(git -C "$R" rev-parse --short HEAD 2>/dev/null)"
cmake -G Ninja -S "$R" -B "$B" -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF \
  -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 > "$OUT/build.txt" 2>&1 &&
  ninja -C "$B" >> "$OUT/build.txt" 2>&1 || { tail -30 "$OUT/build.txt"; exit 1; }
log built
(cd "$B" && ctest -R "^conformance_cuda$|^conformance_backward_cuda$|conformance_cuda_mma" \
  --output-on-failure) > "$OUT/ctest.txt" 2>&1
log "conformance rc=$?"; grep -E 'tests passed|Failed' "$OUT/ctest.txt" | tee -a "$OUT/summary.txt"
export PYTHONPATH=$R/python POLYATTN_LIBRARY=$B/lib/libpolyattn.so
python3 -m pytest -q "$R/python/tests/test_flash_kernels_torch_cuda.py" > "$OUT/pytest.txt" 2>&1
log "dense forward checks rc=$?"; tail -1 "$OUT/pytest.txt" | tee -a "$OUT/summary.txt"
for dt in bf16 f16; do
  python3 "$R/bench/compare_torch.py" --polyattn "$B/bin/polyattn" --suite fa2 --dtype $dt \
    --backends cuda --algo flash --torch-backends cudnn,flash --out "$OUT/fa2-$dt" \
    > "$OUT/fa2-$dt.txt" 2>&1; log "fa2 $dt rc=$?"
  POLYATTN_FORCE=cuda.flash=mma "$B/bin/polyattn" bench --backend cuda --suite fa2 --dtype $dt \
    --algo flash --json "$OUT/fa2-$dt-mma.json" > "$OUT/fa2-$dt-mma.txt" 2>&1
  log "fa2 $dt mma.sync rc=$?"
done
