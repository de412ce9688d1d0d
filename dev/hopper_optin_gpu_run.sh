#!/bin/bash
# One sm_90 run for the Hopper-kernel paths written without a GPU, and the plan's split counts
# (10-minute commands on a warm H100/H200: PART=1 checks, PART=2 the deciding A/Bs, PART=3
# compute-sanitizer, PART=4 the goal sweeps beside PyTorch):
#   - the Hopper kernel's bias tiles through shared memory (cuda.hopper_bias=smem, opt-in):
#     test_cuda_variants --wgmma with it (16-bit bias cases with padded rows), serial and
#     ping-pong, then the bias bench (bf16 bias, head_dim 128, N 1k-8k) with regs and smem
#     beside PyTorch SDPA with the same attn_mask;
#   - head dim 96 on the Hopper kernel (cuda.flash=wgmma, opt-in): test_cuda_variants --wgmma
#     and test_cuda_serving --wgmma have head-dim-96 cases; its speed against the mma.sync
#     kernel (bf16, N 2k-16k, plain and causal);
#   - each consumer overlapping tile j + 1's Q K^T and softmax with tile j's P V
#     (cuda.hopper_sched=overlap, opt-in): the variants, serving and dense torch checks under
#     it, then its speed beside the independent loop and ping-pong (bf16, head dims 64, 128,
#     192, N 2k-16k, plain and causal) and the FlashAttention-2 sweep beside PyTorch's cudnn;
#   - key splits in whole waves (the plan's default now): decode (bf16, head_dim 128, GQA 32/8,
#     batch 8, 8k/32k/128k keys) at num_splits auto, 5 (the previous rule's count), 4, 8, 16
#     through the Python package, beside PyTorch's flash and cudnn (dev/decode_splits_ab.py);
#   - e4m3 inputs on the Hopper kernel's FP8 products (cuda.flash=wgmma, opt-in) and on the
#     serving kernel, bytes converted to f16 (decode, cuda.flash=mma, opt-in):
#     test_cuda_e4m3_tc (PART 1), their speed beside bf16 (head dim 128: N 4k-16k, plain and
#     causal; decode at 8k-128k keys; PART 2), memcheck and racecheck (PART 3);
#   - softcap's exponentials half on the FMA pipe (cuda.hopper_exp2=poly, opt-in): the
#     variants tests under it (PART 1) and softcap's speed with and without it (PART 2);
#   - the warpgroup-MMA backward (cuda.flash_bwd=wgmma, opt-in): the conformance backward
#     and the torch gradient checks under it (PART 1), its speed beside the tensor-core FA2
#     backward and PyTorch's flash and cudnn backward (head dims 64 and 128; PART 2),
#     memcheck and racecheck (PART 3);
#   - paged caches whose block-table lookups are made a tile ahead (serving kernel) or all
#     before a tile's copies (Hopper kernel): test_cuda_serving (block sizes 16, 64, 256,
#     shuffled and shared blocks) under both kernels, and paged decode at block sizes 16 and
#     256 beside the dense cache (dev/decode_splits_ab.py);
# Usage: OUT=dir [PART=1|2|3|4|5|all] [BUILD=dir | PREBUILT=1] bash dev/hopper_optin_gpu_run.sh
#   (1 checks, 2 the A/Bs that decide the defaults, 3 compute-sanitizer, 4 the goal sweeps
#   beside PyTorch, 5 the tensor-core backward's score variants; each within a 10-minute
#   command)
#   PREBUILT=1: no build; .prebuilt/ of this checkout (dev/gpu_prebuilt.sh BUILD_DIR
#   test_cuda_variants test_cuda_serving test_cuda_e4m3_tc conformance) is carried instead.
set -u
R=$(cd "$(dirname "$0")/.." && pwd)
B=${BUILD:-$R/build-gpu}
LIB=$B/lib/libpolyattn.so
if [ -n "${PREBUILT:-}" ]; then
  B=$R/.prebuilt LIB=$R/.prebuilt/lib/libpolyattn.so.0
  # the Python package loads its interop module by the unversioned name
  ln -sf libpolyattn_cuda.so.0 "$B/lib/libpolyattn_cuda.so"
  CUBLAS=$(ls /usr/local/cuda*/lib64/libcublas.so.13 2>/dev/null | head -1)
  [ -n "$CUBLAS" ] || CUBLAS=$(find / -xdev -name libcublas.so.13 2>/dev/null | head -1)
  export LD_LIBRARY_PATH=$B/lib:$(dirname "${CUBLAS:-/x/x}"):${LD_LIBRARY_PATH:-}
fi
O=${OUT:-$PWD/bias-splits-run}
PART=${PART:-all}
part() { [ "$PART" = all ] || [ "$PART" = "$1" ]; }
mkdir -p "$O"
log() { echo "== $(date -u +%T) $*" | tee -a "$O/summary.txt"; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$O/summary.txt"
if [ -n "${PREBUILT:-}" ]; then log "build from commit $(tr '\n' ' ' < "$B/COMMIT")"
else log "commit $(git -C "$R" rev-parse --short HEAD)"; fi
if [ -z "${PREBUILT:-}" ]; then
  cmake -G Ninja -S "$R" -B "$B" -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON -DPOLYATTN_HIP=OFF \
    -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 -DBUILD_TESTING=ON > "$O/build.txt" 2>&1 &&
    ninja -C "$B" polyattn_cli polyattn_cuda test_cuda_variants test_cuda_serving \
      test_cuda_e4m3_tc conformance >> "$O/build.txt" 2>&1 ||
    { tail -30 "$O/build.txt"; exit 1; }
  log built
fi
# polyattn bench (custom shapes, flash, CUDA) under a POLYATTN_FORCE into $O/NAME.{txt,json};
# the summary gets its measurement lines' awk fields
bench() { # name, POLYATTN_FORCE, awk fields (e.g. '$4, $11'), bench arguments...
  local n=$1 f=$2 fields=$3; shift 3
  POLYATTN_FORCE=$f timeout 90 "$B/bin/polyattn" bench --backend cuda --suite custom \
    --algo flash --max-seconds 0.5 --json "$O/$n.json" "$@" > "$O/$n.txt" 2>&1
  log "$n rc=$?"
  grep -E "^[0-9]" "$O/$n.txt" | awk "{print $fields}" | tee -a "$O/summary.txt"
}
check() { # name, POLYATTN_FORCE, command...
  local n=$1 f=$2; shift 2
  POLYATTN_FORCE=$f timeout 240 "$@" > "$O/$n.txt" 2>&1; log "$n rc=$?"
  grep -E "FAIL|failures|serving: |passed|failed" "$O/$n.txt" | cut -c1-160 | tee -a "$O/summary.txt"
}
if part 1; then
check variants-bias-smem cuda.hopper_bias=smem "$B/bin/test_cuda_variants" --wgmma
check variants-overlap cuda.hopper_sched=overlap "$B/bin/test_cuda_variants" --wgmma
check serving-overlap cuda.hopper_sched=overlap "$B/bin/test_cuda_serving" --wgmma
check variants-bias-smem-pingpong cuda.hopper_bias=smem,cuda.hopper_sched=pingpong \
  "$B/bin/test_cuda_variants" --wgmma
check e4m3-tc "" "$B/bin/test_cuda_e4m3_tc"
check bwd-hopper-conformance cuda.flash_bwd=wgmma "$B/bin/conformance" --backend cuda --backward \
  --algo flash
grep -c "^PASS" "$O/bwd-hopper-conformance.txt" | sed 's/^/  passed: /' | tee -a "$O/summary.txt"
PYTHONPATH=$R/python POLYATTN_LIBRARY=$LIB check torch-bwd-hopper \
  cuda.flash_bwd=wgmma python3 -m pytest -q "$R/python/tests/test_flash_kernels_torch_cuda.py"
check variants-exp2-poly cuda.hopper_exp2=poly "$B/bin/test_cuda_variants" --wgmma
check variants-exp2-poly-overlap cuda.hopper_exp2=poly,cuda.hopper_sched=overlap \
  "$B/bin/test_cuda_variants" --wgmma
check serving "" "$B/bin/test_cuda_serving"
check serving-hopper "" "$B/bin/test_cuda_serving" --wgmma
# the dense torch checks (head dims 64-256, both layouts) with the Hopper kernel forced: head
# dim 96 runs on it only then (needs pytest, e.g. pip install --no-index --find-links DIR pytest)
PYTHONPATH=$R/python POLYATTN_LIBRARY=$LIB check torch-dense-hopper \
  cuda.flash=wgmma python3 -m pytest -q "$R/python/tests/test_flash_kernels_torch_cuda.py"
PYTHONPATH=$R/python POLYATTN_LIBRARY=$LIB check torch-dense-overlap \
  cuda.flash=wgmma,cuda.hopper_sched=overlap python3 -m pytest -q \
  "$R/python/tests/test_flash_kernels_torch_cuda.py"
D96="8,16,16,2048,2048,96;2,16,16,8192,8192,96;1,16,16,16384,16384,96"
for k in wgmma mma; do
  for m in plain bottom-right; do
    C=(); [ $m = plain ] || C=(--causal $m)
    bench d96-$k-$m cuda.flash=$k '$4, $11, $12' --shape "$D96" --dtype bf16 "${C[@]}" --reps 5
  done
done
fi
# memcheck and racecheck of the Hopper kernel's paths added on 2026-12-07 (the V tail clear,
# the serving layouts, the bias tiles, head dim 96, the overlapped loop), where the toolkit
# has compute-sanitizer
CS=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if part 3 && [ -x "$CS" ]; then
  for tool in memcheck racecheck; do
    check sanitizer-$tool-variants cuda.hopper_bias=smem "$CS" --tool $tool --error-exitcode 9 \
      "$B/bin/test_cuda_variants" --wgmma
    check sanitizer-$tool-serving "" "$CS" --tool $tool --error-exitcode 9 \
      "$B/bin/test_cuda_serving" --wgmma
    check sanitizer-$tool-overlap cuda.hopper_sched=overlap "$CS" --tool $tool \
      --error-exitcode 9 "$B/bin/test_cuda_variants" --wgmma
    check sanitizer-$tool-e4m3 "" "$CS" --tool $tool --error-exitcode 9 "$B/bin/test_cuda_e4m3_tc"
    check sanitizer-$tool-bwd cuda.flash_bwd=wgmma "$CS" --tool $tool --error-exitcode 9 \
      "$B/bin/conformance" --backend cuda --backward --algo flash --case long_causal_br_300x257_d64
  done
fi
if part 2; then
SH="8,16,16,2048,2048,128;2,16,16,8192,8192,128;1,16,16,16384,16384,128;8,32,32,2048,2048,64"
SH="$SH;2,32,32,8192,8192,64;4,16,16,4096,4096,192"
for sched in serial overlap pingpong; do
  for m in plain bottom-right; do
    C=(); [ $m = plain ] || C=(--causal $m)
    bench sched-$sched-$m cuda.hopper_sched=$sched '$1, $4, $6, $11, $12' --shape "$SH" \
      --dtype bf16 "${C[@]}" --reps 5
  done
done
# the score variants under each schedule (D128, N 4k and 16k): softcap is bound by its second
# MUFU op a score, which the overlapped loop can hide behind the next tile's Q K^T
VSH="4,16,16,4096,4096,128;1,16,16,16384,16384,128"
for sched in serial overlap serial,cuda.hopper_exp2=poly overlap,cuda.hopper_exp2=poly; do
  for v in "--softcap 30" "--alibi" "--sinks"; do
    case "$sched$v" in *poly--alibi | *poly--sinks) continue ;; esac # poly: softcap only
    # shellcheck disable=SC2086
    bench "variant-${sched/,cuda.hopper_exp2=/-}-${v:2:7}" cuda.hopper_sched=$sched \
      '$4, $11, $12' --shape "$VSH" --dtype bf16 $v --reps 5
  done
done
# e4m3 (FP8 products) against bf16 on the Hopper kernel, head dim 128
FSH="4,16,16,4096,4096,128;2,16,16,8192,8192,128;1,16,16,16384,16384,128"
for dt in bf16 e4m3; do
  for m in plain bottom-right; do
    C=(); [ $m = plain ] || C=(--causal $m)
    bench fp8-$dt-$m cuda.flash=wgmma '$4, $11, $12, $NF' --shape "$FSH" --dtype $dt "${C[@]}" \
      --reps 5
  done
done
# the backward: the warpgroup-MMA kernels against the tensor-core FA2 ones (head dims 64, 128)
BW="4,16,16,4096,4096,128;2,16,16,8192,8192,128;8,16,16,4096,4096,64;2,16,16,16384,16384,64"
for k in mma wgmma; do
  for m in plain bottom-right; do
    C=(); [ $m = plain ] || C=(--causal $m)
    bench bwd-$k-$m cuda.flash_bwd=$k '$4, $6, $11, $12' --shape "$BW" --dtype bf16 --backward \
      "${C[@]}" --reps 5
  done
done
# e4m3 decode on the serving kernel (bytes converted to f16) against bf16's
DSH="8,32,8,1,8192,128;8,32,8,1,32768,128;8,32,8,1,131072,128"
for dt in bf16 e4m3; do
  F=""; [ $dt = e4m3 ] && F=cuda.flash=mma
  bench decode-$dt "$F" '$5, $11, $14, $NF' --shape "$DSH" --dtype $dt --causal bottom-right \
    --reps 10
done
BSH="1,16,16,1024,1024,128;1,16,16,2048,2048,128;1,16,16,4096,4096,128;1,16,16,8192,8192,128"
for m in regs smem; do
  bench bias-$m cuda.hopper_bias=$m '$5, $11, $12' --shape "$BSH" --dtype bf16 --bias \
    --bias-dtype bf16 --reps 5
done
timeout 60 python3 "$R/bench/torch_sdpa_mask.py" --shapes "$BSH" --dtype bf16 \
  > "$O/bias-torch.jsonl" 2>&1
log "bias torch rc=$?"
PYTHONPATH=$R/python POLYATTN_LIBRARY=$LIB timeout 120 \
  python3 "$R/dev/decode_splits_ab.py" 8192,32768 > "$O/decode-splits.jsonl" 2>&1
log "decode splits rc=$?"
tee -a "$O/summary.txt" < "$O/decode-splits.jsonl"
fi
# the tensor-core FA2 backward with window, softcap, ALiBi and sinks (before: the SIMT
# backward): the conformance backward (variant cases included) by default and with the
# warpgroup-MMA backward forced, the variants test, and the variants' backward speed against
# the SIMT kernels and PyTorch's plain backward (dev/bwd_variants_ab.py: bf16, head dim 128,
# N 4k, causal)
if part 5; then
for k in default wgmma; do
  F=""; [ $k = wgmma ] && F=cuda.flash_bwd=wgmma
  check bwd-conformance-$k "$F" "$B/bin/conformance" --backend cuda --backward --algo flash \
    --dtype bf16
  grep -c "^PASS" "$O/bwd-conformance-$k.txt" | sed 's/^/  passed: /' | tee -a "$O/summary.txt"
  grep "large_mag_causal_50x70_d128" "$O/bwd-conformance-$k.txt" | cut -c1-200 |
    tee -a "$O/summary.txt"
done
check variants "" "$B/bin/test_cuda_variants"
for f in "" cuda.flash_bwd=simt; do
  PYTHONPATH=$R/python POLYATTN_LIBRARY=$LIB POLYATTN_FORCE=$f timeout 120 \
    python3 "$R/dev/bwd_variants_ab.py" >> "$O/bwd-variants.jsonl" 2>&1
  log "backward variants ${f:-default} rc=$?"
done
tee -a "$O/summary.txt" < "$O/bwd-variants.jsonl"
fi
# the issues' goal tables beside PyTorch (each sweep a few minutes): the FlashAttention-2 sweep
# with the overlapped loop beside cudnn and flash, the backward sweep with the warpgroup-MMA
# kernels, decode at 128k keys
if part 4; then
POLYATTN_FORCE=cuda.hopper_sched=overlap timeout 240 python3 "$R/bench/compare_torch.py" \
  --polyattn "$B/bin/polyattn" --backends cuda --algo flash --suite fa2 --dtype bf16 \
  --torch-backends flash,cudnn --max-seconds 2 --out "$O/fa2-overlap" > "$O/fa2-overlap.txt" 2>&1
log "fa2 sweep, overlap, beside torch rc=$?"
tail -4 "$O/fa2-overlap.txt" | tee -a "$O/summary.txt"
POLYATTN_FORCE=cuda.flash_bwd=wgmma timeout 240 python3 "$R/bench/compare_torch.py" \
  --polyattn "$B/bin/polyattn" --backends cuda --algo flash --suite fa2 --dtype bf16 \
  --backward --torch-backends flash,cudnn --max-seconds 1 --out "$O/bwd-wgmma" \
  > "$O/bwd-wgmma.txt" 2>&1
log "backward wgmma beside torch rc=$?"
tail -4 "$O/bwd-wgmma.txt" | tee -a "$O/summary.txt"
PYTHONPATH=$R/python POLYATTN_LIBRARY=$LIB timeout 120 \
  python3 "$R/dev/decode_splits_ab.py" 131072 > "$O/decode-splits-128k.jsonl" 2>&1
log "decode splits 128k rc=$?"
tee -a "$O/summary.txt" < "$O/decode-splits-128k.jsonl"
fi
