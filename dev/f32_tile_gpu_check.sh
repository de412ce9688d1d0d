#!/bin/bash
# GPU check of the f32 3xTF32 tile kernel (flash_f32_tile.cu, head dims 64/128; opt-in as
# cuda.flash=mma until this has run): builds what
# it needs in an existing CUDA build dir, runs its tests (test_cuda_f32_tile; the f32
# conformance table on flash by default, with cuda.flash=mma forced, and on the generic
# kernel), prints the plan's log line, then the FlashAttention-2 sweep in f32 on flash (the
# tile kernel), on the generic SIMT kernel and unfused, and beside PyTorch's `efficient`
# and `math` when torch is there.  Results under OUT (default ./f32-tile-run).
# Usage: OUT=dir bash dev/f32_tile_gpu_check.sh BUILD_DIR
set -u
B=${1:?usage: OUT=dir bash dev/f32_tile_gpu_check.sh BUILD_DIR (configured with POLYATTN_CUDA=ON)}
R=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$PWD/f32-tile-run}
mkdir -p "$OUT"
log() { echo "== $(date -u +%T) $*" | tee -a "$OUT/summary.txt"; }
nvidia-smi --query-gpu=name,driver_version --format=csv | tee -a "$OUT/summary.txt"
log "commit $(git -C "$R" rev-parse --short HEAD 2>/dev/null)"
ninja -C "$B" polyattn_cuda polyattn_cli conformance test_cuda_f32_tile > "$OUT/build.txt" 2>&1 ||
  { tail -30 "$OUT/build.txt"; exit 1; }
log built
P=$B/bin/polyattn
POLYATTN_FORCE=cuda.flash=mma "$B/bin/test_cuda_f32_tile" > "$OUT/test_cuda_f32_tile.txt" 2>&1
log "test_cuda_f32_tile rc=$?"; grep -E "FAIL|failures" "$OUT/test_cuda_f32_tile.txt" | tee -a "$OUT/summary.txt"
for force in "" cuda.flash=mma cuda.flash=simt; do
  env ${force:+POLYATTN_FORCE=$force} "$B/bin/conformance" --backend cuda --algo flash --dtype f32 \
    > "$OUT/conformance-f32${force:+-$force}.txt" 2>&1
  log "conformance f32 flash ${force:-default} rc=$?"
  grep -E "^FAIL" "$OUT/conformance-f32${force:+-$force}.txt" | tee -a "$OUT/summary.txt"
done
# the plan's log line and reason for one shape of each head dim
for d in 64 128; do
  POLYATTN_FORCE=cuda.flash=mma POLYATTN_LOG=dispatch "$P" bench --backend cuda --suite custom --shape "1,16,16,2048,2048,$d" \
    --dtype f32 --algo flash --reps 3 2>&1 | grep -iE "cuda flash|3xTF32" | head -3 |
    tee -a "$OUT/summary.txt"
done
for force in cuda.flash=mma cuda.flash=simt; do
  env ${force:+POLYATTN_FORCE=$force} "$P" bench --backend cuda --suite fa2 --dtype f32 --algo flash \
    --json "$OUT/fa2-f32-flash${force:+-simt}.json" > "$OUT/fa2-f32-flash${force:+-simt}.txt" 2>&1
  log "fa2 f32 flash ${force:-tile kernel} rc=$?"
done
"$P" bench --backend cuda --suite fa2 --dtype f32 --algo unfused --json "$OUT/fa2-f32-unfused.json" \
  > "$OUT/fa2-f32-unfused.txt" 2>&1
log "fa2 f32 unfused rc=$?"
if python3 -c "import torch" 2>/dev/null; then
  POLYATTN_FORCE=cuda.flash=mma python3 "$R/bench/compare_torch.py" --polyattn "$P" --suite fa2 --dtype f32 --backends cuda \
    --algo flash --torch-backends efficient,math --out "$OUT/fa2-f32-torch" \
    > "$OUT/fa2-f32-torch.txt" 2>&1
  log "fa2 f32 beside torch rc=$?"
fi
log done
