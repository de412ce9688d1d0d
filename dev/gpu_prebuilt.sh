#!/bin/bash
# Copies a local CUDA build (POLYATTN_CUDA_ARCHITECTURES including 90) into .prebuilt/ of this
# checkout, so that a GPU run can carry it (`carry: [".prebuilt"]`) instead of building there:
# a cold build of the CUDA backend takes ~4 of a run's 10 minutes on the GPU machine.  The
# binaries need glibc 2.34+, and on the GPU machine the CUDA 13 runtime's cuBLAS:
#   export LD_LIBRARY_PATH=$PWD/.prebuilt/lib:<the directory of libcublas.so.13>
#   .prebuilt/bin/polyattn bench ...;  POLYATTN_LIBRARY=$PWD/.prebuilt/lib/libpolyattn.so.0 python3 ...
# Usage: bash dev/gpu_prebuilt.sh BUILD_DIR [EXTRA_BINARY ...]   (.prebuilt/ should be ignored:
# add it to .git/info/exclude)
set -eu
B=${1:?usage: gpu_prebuilt.sh BUILD_DIR [EXTRA_BINARY ...]}
shift
R=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$R/.prebuilt" && mkdir -p "$R/.prebuilt/lib" "$R/.prebuilt/bin"
# the versioned names are what the tool links and what the core loads its modules by
cp -L "$B/lib/libpolyattn.so.0" "$B/lib/libpolyattn_cuda.so.0" "$R/.prebuilt/lib/"
cp "$B/bin/polyattn" "$R/.prebuilt/bin/"
for x in "$@"; do cp "$B/bin/$x" "$R/.prebuilt/bin/"; done
# the commit the build was made from (the GPU machine's copy of .git may be older)
{ git -C "$R" rev-parse --short HEAD; git -C "$R" diff --quiet HEAD -- . || echo "(uncommitted changes)"; } \
  > "$R/.prebuilt/COMMIT"
du -sh "$R/.prebuilt"
