#!/bin/sh
# The main job on a fresh machine: install what is missing, build, list the devices, run
# attention on generated inputs (checked against a float64 NumPy reference), then the
# article benchmark suite (the article's five shapes) on the fastest backend present, with
# its table, CSV and figure.
# Usage: bench/quickstart.sh          (from anywhere; results land in build/quickstart/)
set -eu
cd "$(dirname "$0")/.."
build=${POLYATTN_BUILD_DIR:-build}
out=$build/quickstart
cmake/install_deps.sh
[ -x /usr/local/cuda/bin/nvcc ] && export CUDACXX=${CUDACXX:-/usr/local/cuda/bin/nvcc}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j "$(nproc)"
polyattn=$build/bin/polyattn
mkdir -p "$out"

echo "== polyattn devices"
"$polyattn" devices

echo "== polyattn run: batch 2, heads 8 (2 kv heads), seq 257, head_dim 64, causal"
python3 bench/make_inputs.py --shape 2,8,2,257,257,64 --dir "$out" --prefix demo_
"$polyattn" run --q "$out/demo_q.npy" --k "$out/demo_k.npy" --v "$out/demo_v.npy" \
  --out "$out/demo_o.npy" --lse "$out/demo_lse.npy" --causal bottom-right --json
python3 bench/check_run.py --q "$out/demo_q.npy" --k "$out/demo_k.npy" --v "$out/demo_v.npy" \
  --out "$out/demo_o.npy" --lse "$out/demo_lse.npy" --causal bottom-right

echo "== polyattn bench --suite article"
"$polyattn" bench --suite article --csv "$out/article.csv" --json "$out/article.json"
python3 bench/plot.py "$out/article.csv" --out "$out"
echo "quickstart: results in $out"
