#!/bin/bash
# A/B of the OpenCL cooperative decode kernel's two shapes on one GPU, in one run:
#   serial:  POLYATTN_FORCE=opencl.serving=coop,opencl.coop=serial (one 16-byte
#            load a work-item in flight, splits for at least 4 groups a compute unit, the
#            row merge)
#   batched: POLYATTN_FORCE=opencl.serving=coop,opencl.coop=batched (the default, 2.2-3.7x
#            serial on an H200: a tile's K, then V, loads issued before use, one wave of at most 2
#            groups a compute unit, the column merge)
# First the decode shape on a dense K/V (bf16, head_dim 128, 32/8 heads, batch 8, 1 query,
# 8k/32k/128k keys), then the whole decode suite (dense cache, paged 16/256, 16 queries),
# each run cut at SECS seconds (the rows measured by then are kept).  Prints GB/s (the
# bench's: Q, the keys and values used, O, each once) per shape and row, and the share of
# COPY_GBPS (the device-to-device copy, read + write; default the H100's 3020).
# Usage: dev/ocl_decode_gpu_ab.sh BUILD_DIR OUT_DIR
#   (BUILD_DIR built with -DPOLYATTN_OPENCL=ON against NVIDIA's OpenCL; env: SECS (default
#    200), COPY_GBPS, SUITE=0 to skip the whole-suite pass, DEVICE (OpenCL device, 0),
#    QUICK=1: tiny shapes and --quick, a smoke run of this script on PoCL).
# About 2 x 1 min for the dense pass and up to 2 x SECS for the suite.
set -u
if [ $# -ne 2 ]; then
  echo "usage: $0 BUILD_DIR OUT_DIR" >&2
  exit 2
fi
B=$(cd "$1" && pwd) || exit 2
OUT=$2
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
P=$B/bin/polyattn
SECS=${SECS:-200}
DEV=${DEVICE:-0}
[ -x "$P" ] || { echo "no $P" >&2; exit 2; }
log() { echo "== $(date -u +%T) $*" | tee -a "$OUT/summary.txt"; }
R=$(cd "$(dirname "$0")/.." && pwd)
log "commit $(git -C "$R" rev-parse --short HEAD 2>/dev/null), build $B"
command -v nvidia-smi > /dev/null &&
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee -a "$OUT/summary.txt"

SHAPES="serial batched"
DENSE="8,32,8,1,8192,128;8,32,8,1,32768,128;8,32,8,1,131072,128"
COMMON=(--backend "opencl:$DEV" --algo flash --dtype bf16 --rotate 1 --warmup 3 --reps 10)
SUITE_ARGS=()
if [ "${QUICK:-0}" = 1 ]; then
  DENSE="2,8,2,1,1024,128;2,8,2,1,3000,64"
  SUITE_ARGS=(--quick)
fi

for s in $SHAPES; do
  export POLYATTN_FORCE=opencl.serving=coop,opencl.coop=$s
  # The plan each shape makes at 32k (kernel shape, split count), from the dispatch log.
  POLYATTN_LOG=dispatch "$P" explain --batch 8 --heads 32 --heads-kv 8 --seq-q 1 \
    --seq-kv 32768 --head-dim 128 --dtype bf16 --causal bottom-right --backend opencl \
    --device "$DEV" --algo flash 2>&1 | grep -m1 'opencl flash: dense decode' |
    sed "s/^/$s: /" | tee -a "$OUT/summary.txt"
  timeout -s TERM "$SECS" "$P" bench --suite custom --shape "$DENSE" --causal bottom-right \
    "${COMMON[@]}" --json "$OUT/dense-$s.json" > "$OUT/dense-$s.txt" 2>&1
  log "dense $s rc=$?"
done
if [ "${SUITE:-1}" != 0 ]; then
  for s in $SHAPES; do
    export POLYATTN_FORCE=opencl.serving=coop,opencl.coop=$s
    timeout -s TERM "$SECS" "$P" bench --suite decode "${COMMON[@]}" ${SUITE_ARGS[@]+"${SUITE_ARGS[@]}"} \
      --json "$OUT/decode-$s.json" > "$OUT/decode-$s.txt" 2>&1
    log "decode suite $s rc=$?"
  done
fi
unset POLYATTN_FORCE

python3 - "$OUT" "${COPY_GBPS:-3020}" << 'EOF' | tee -a "$OUT/summary.txt"
import json, os, sys
out, copy = sys.argv[1], float(sys.argv[2])
def rows(path):
    if not os.path.exists(path):
        return {}
    try:
        res = json.load(open(path)).get("results", [])
    except ValueError:
        return {}
    got = {}
    for r in res:
        key = (r["seq_q"], r["seq_kv"], r.get("layout", "dense"), r.get("block_size", 0))
        got[key] = r
    return got
for part in ("dense", "decode"):
    a, b = rows(f"{out}/{part}-serial.json"), rows(f"{out}/{part}-batched.json")
    keys = sorted(set(a) | set(b), key=lambda k: (k[0], k[1], k[2], k[3]))
    if not keys:
        continue
    print(f"\n{part}: GB/s (share of the {copy:.0f} GB/s copy), splits; serial vs batched")
    print(f"{'q':>3} {'keys':>7} {'layout':<10} {'serial':>22} {'batched':>22} {'b/s':>6}")
    for k in keys:
        cells = []
        for t in (a, b):
            r = t.get(k)
            if r and r.get("status") == "ok" and r.get("gbps"):
                cells.append((r["gbps"], f"{r['gbps']:7.1f} ({100 * r['gbps'] / copy:3.0f}%) s{r.get('num_splits', '?')}"))
            else:
                cells.append((None, r.get("status", "-") if r else "-"))
        ratio = f"{cells[1][0] / cells[0][0]:6.2f}" if cells[0][0] and cells[1][0] else "     -"
        lay = k[2] + (f"/{k[3]}" if k[3] else "")
        print(f"{k[0]:>3} {k[1]:>7} {lay:<10} {cells[0][1]:>22} {cells[1][1]:>22} {ratio}")
EOF
