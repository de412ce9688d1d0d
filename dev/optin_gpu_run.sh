#!/bin/bash
# One GPU run (sm_90) of the paths that were opt-in until they had run on a GPU, each
# forced, in the order that decided their defaults (each step time-limited; summary.txt
# keeps what ran):
#   1. correctness: the Hopper kernel forced (cuda.flash=wgmma) on the score variants and
#      bias (test_cuda_variants --wgmma), on varlen and dense KV caches (test_cuda_serving
#      --wgmma), with its consumers taking turns (cuda.hopper_sched=pingpong); the f32 tile
#      kernel (test_cuda_f32_tile, cuda.flash=mma); the serving kernel's deeper K/V rings
#      (test_cuda_serving --mma runs 3 stages);
#   2. speed, bf16: the variants against the plain forward (head_dim 128/64, N 2k-16k) on
#      the Hopper kernel and on mma.sync, ping-pong against independent consumers, a bias
#      against PyTorch SDPA with the same attn_mask, decode with 2 / 4 / 6 K/V stages, the
#      serving suite (varlen prefill) with the Hopper kernel forced, f32 flash (tile kernel)
#      beside PyTorch's `efficient` and cuBLAS unfused;
#   3. with OCL_KIT (NVIDIA's OpenCL headers and libraries): dev/ocl_decode_gpu_ab.sh.
# Each part fits one 10-minute command on a warm machine (the build is kept in BUILD):
# PART=1 builds and checks, 2 the variant and ping-pong A/Bs, 3 bias and decode, 4 the
# serving suite and f32, 5 OpenCL; PART=all (default) runs them in turn.
# Usage: OUT=dir [PART=1..5|all] [BUILD=dir] [OCL_KIT=dir] bash dev/optin_gpu_run.sh
set -u
PART=${PART:-all}
part() { [ "$PART" = all ] || [ "$PART" = "$1" ]; }
R=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$PWD/optin-run}
B=${BUILD:-/tmp/polyattn-optin-build}
mkdir -p "$OUT"
log() { echo "== $(date -u +%T) $*" | tee -a "$OUT/summary.txt"; }
. "$R/dev/ocl_kit.sh" # OCL: the OpenCL backend's CMake flags (OCL_KIT)
nvidia-smi --query-gpu=name,driver_version --format=csv | tee -a "$OUT/summary.txt"
log "commit $(git -C "$R" rev-parse --short HEAD 2>/dev/null)"
cmake -G Ninja -S "$R" -B "$B" -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF \
  -DPOLYATTN_CUDA_ARCHITECTURES=90 -DBUILD_TESTING=ON "${OCL[@]}" > "$OUT/build.txt" 2>&1 &&
  ninja -C "$B" >> "$OUT/build.txt" 2>&1 || { tail -30 "$OUT/build.txt"; exit 1; }
log built
P=$B/bin/polyattn
export PYTHONPATH=$R/python POLYATTN_LIBRARY=$B/lib/libpolyattn.so
check() { # name, seconds, command...
  local n=$1 s=$2; shift 2
  timeout "$s" "$@" > "$OUT/$n.txt" 2>&1; log "$n rc=$?"
  grep -E "FAIL|runs|passed|failed" "$OUT/$n.txt" | head -8 | tee -a "$OUT/summary.txt"
}
if part 1; then
check variants-hopper 90 "$B/bin/test_cuda_variants" --wgmma
check serving-hopper 120 "$B/bin/test_cuda_serving" --wgmma
POLYATTN_FORCE=cuda.hopper_sched=pingpong check variants-hopper-pingpong 90 \
  "$B/bin/test_cuda_variants" --wgmma
POLYATTN_FORCE=cuda.flash=mma check f32-tile 90 "$B/bin/test_cuda_f32_tile"
check serving-mma-3-stages 120 "$B/bin/test_cuda_serving" --mma
POLYATTN_FORCE=cuda.hopper_sched=pingpong check dense-pingpong 120 \
  python3 -m pytest -q "$R/python/tests/test_flash_kernels_torch_cuda.py"
fi

SH="8,16,16,2048,2048,128;4,16,16,4096,4096,128;2,16,16,8192,8192,128;1,16,16,16384,16384,128"
SH="$SH;8,32,32,2048,2048,64;2,32,32,8192,8192,64"
bench() { # name, POLYATTN_FORCE value, bench arguments...
  local n=$1 f=$2; shift 2
  POLYATTN_FORCE=$f timeout 90 "$P" bench --backend cuda --suite custom --shape "$SH" \
    --algo flash --dtype bf16 --reps 5 --max-seconds 0.5 "$@" --json "$OUT/var-$n.json" \
    > "$OUT/var-$n.txt" 2>&1
  log "bench $n rc=$?"
  grep -E "^[0-9]" "$OUT/var-$n.txt" | awk '{print $1, $4, $6, $7, $11, $12}' |
    tee -a "$OUT/summary.txt"
}
if part 2; then
for k in wgmma mma; do
  bench plain-$k cuda.flash=$k
  bench softcap-$k cuda.flash=$k --softcap 30
  bench alibi-$k cuda.flash=$k --alibi
  bench sinks-$k cuda.flash=$k --sinks
  bench causal-$k cuda.flash=$k --causal bottom-right
  bench window-$k cuda.flash=$k --causal bottom-right --window 1024,0
done
bench plain-pingpong cuda.flash=wgmma,cuda.hopper_sched=pingpong
bench causal-pingpong cuda.flash=wgmma,cuda.hopper_sched=pingpong --causal bottom-right
fi
if part 3; then
BSH="1,16,16,1024,1024,128;1,16,16,2048,2048,128;1,16,16,4096,4096,128;1,16,16,8192,8192,128"
POLYATTN_FORCE=cuda.flash=wgmma timeout 60 "$P" bench --backend cuda --suite custom \
  --shape "$BSH" --algo flash --dtype bf16 --bias --bias-dtype bf16 --json "$OUT/bias.json" \
  > "$OUT/bias.txt" 2>&1
log "bias rc=$?"
timeout 60 python3 "$R/bench/torch_sdpa_mask.py" --shapes "$BSH" --dtype bf16 \
  > "$OUT/bias-torch.jsonl" 2>&1
log "bias torch rc=$?"
for st in 2 4 6; do
  POLYATTN_FORCE=cuda.serving_stages=$st timeout 110 "$P" bench --backend cuda --suite decode \
    --algo flash --graph 10 --json "$OUT/decode-stages-$st.json" > "$OUT/decode-stages-$st.txt" 2>&1
  log "decode, $st K/V stages rc=$?"
done
python3 "$R/bench/copy_bandwidth.py" --json "$OUT/copy-bandwidth.json" | tee -a "$OUT/summary.txt"
fi
if part 4; then
CT=(python3 "$R/bench/compare_torch.py" --polyattn "$P" --backends cuda --algo flash)
POLYATTN_FORCE=cuda.flash=wgmma timeout 180 "${CT[@]}" --suite serving \
  --torch-backends flash,cudnn --out "$OUT/serving-hopper" > "$OUT/serving-hopper.txt" 2>&1
log "serving suite, Hopper kernel forced rc=$?"
POLYATTN_FORCE=cuda.flash=mma timeout 180 "${CT[@]}" --suite fa2 --dtype f32 \
  --torch-backends efficient --out "$OUT/fa2-f32" > "$OUT/fa2-f32.txt" 2>&1
log "f32 flash (tile kernel) beside torch rc=$?"
timeout 120 "$P" bench --backend cuda --suite fa2 --dtype f32 --algo unfused \
  --json "$OUT/fa2-f32-unfused.json" > "$OUT/fa2-f32-unfused.txt" 2>&1
log "f32 unfused rc=$?"
fi
if part 5 && [ -n "${OCL_KIT:-}" ]; then
  SUITE=0 SECS=60 timeout 300 bash "$R/dev/ocl_decode_gpu_ab.sh" "$B" "$OUT/ocl-decode-ab" \
    > "$OUT/ocl-decode-ab.txt" 2>&1
  log "OpenCL decode A/B rc=$?"
fi
log "done (part $PART)"
