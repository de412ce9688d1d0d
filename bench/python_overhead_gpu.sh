#!/bin/bash
# On a CUDA machine with PyTorch: builds libpolyattn with the CUDA backend (sm_90), runs the
# package's fast-path and CUDA tests, then bench/python_overhead.py on torch CUDA tensors at
# the decode shape, five runs.  With a second argument (a folder holding an older `python/`
# package and its `bench/python_overhead.py`), runs that tree's bench too, alternating.
#   bench/python_overhead_gpu.sh OUT_DIR [OLDER_TREE]
# An older tree for the comparison, made beside the checkout before the run and carried as
# an ignored folder: mkdir build-older && git archive <commit> python bench | tar -x -C build-older
set -euo pipefail
out=${1:?usage: bench/python_overhead_gpu.sh OUT_DIR [OLDER_TREE]}
older=${2:-}
mkdir -p "$out"
build=build-gpu
start=$(date +%s)
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_CUDA=ON \
  -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF -DPOLYATTN_CUDA_ARCHITECTURES=90 >"$out/configure.log"
ninja -C "$build" polyattn polyattn_cuda >"$out/build.log"
echo "build: $(( $(date +%s) - start )) s"
export POLYATTN_LIBRARY=$PWD/$build/lib/libpolyattn.so
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/device.txt"
PYTHONPATH=python python3 -m pytest -q -p no:cacheprovider python/tests/test_fast_path.py \
  python/tests/test_torch_cuda.py 2>&1 | tail -3 | tee "$out/pytest.txt"
for i in 1 2 3 4 5; do
  if [ -n "$older" ]; then
    printf 'before ' >>"$out/overhead.jsonl"
    PYTHONPATH="$older/python" python3 "$older/bench/python_overhead.py" --array torch \
      --device cuda --json >>"$out/overhead.jsonl"
  fi
  printf 'after ' >>"$out/overhead.jsonl"
  PYTHONPATH=python python3 bench/python_overhead.py --array torch --device cuda --json \
    >>"$out/overhead.jsonl"
done
cat "$out/overhead.jsonl"
