#!/bin/sh
# Builds polyattn and runs every test: the full build (each backend whose toolchain is
# found; POLYATTN_REQUIRE="cuda hip opencl" makes them mandatory), a static build (host and
# OpenCL linked into libpolyattn.a) with its package test, then an ASan+UBSan build of the
# host code and its tests.  Prints how long each stage took.
# Usage: tests/run_all.sh            (from the repository root; installs missing packages)
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
jobs=${POLYATTN_JOBS:-$(nproc)}
build=${POLYATTN_BUILD_DIR:-$root/build}
asan_build=${POLYATTN_ASAN_BUILD_DIR:-$root/build-asan}
static_build=${POLYATTN_STATIC_BUILD_DIR:-$root/build-static}

stage_start=0
stage() { stage_name=$1; stage_start=$(date +%s); echo "== $stage_name"; }
stage_end() { echo "== $stage_name: $(( $(date +%s) - stage_start )) s"; }

stage "install packages"
cmake/install_deps.sh
stage_end

stage "format (.clang-format, clang-format 14)"
# Other clang-format versions lay some constructs out differently: checked with 14 only.
if clang-format --version 2>/dev/null | grep -q 'version 14\.'; then
  git ls-files '*.c' '*.h' '*.cu' '*.cuh' '*.hip' '*.cpp' | grep -v '^tests/readme_example.c$' |
    xargs clang-format --dry-run -Werror
else
  echo "clang-format 14 not found: format not checked"
fi
stage_end

[ -x /usr/local/cuda/bin/nvcc ] && export CUDACXX=${CUDACXX:-/usr/local/cuda/bin/nvcc}
backend_flags=""
for b in ${POLYATTN_REQUIRE:-}; do
  backend_flags="$backend_flags -DPOLYATTN_$(echo "$b" | tr a-z A-Z)=ON"
done

stage "configure and build (all backends found)"
# shellcheck disable=SC2086
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_WERROR=ON $backend_flags
cmake --build "$build" -j "$jobs"
stage_end

stage "tests"
ctest --test-dir "$build" --output-on-failure -j "$jobs" --timeout 1200
stage_end

stage "python package tests (pytest; torch tests skipped where torch is absent)"
python3 -c 'import pytest' 2>/dev/null || python3 -m pip install --quiet pytest
PYTHONPATH="$root/python" POLYATTN_LIBRARY="$build/lib/libpolyattn.so" \
  python3 -m pytest -q -rs -p no:cacheprovider "$root/python/tests"
stage_end

if ctest --test-dir "$build" -N -R '^test_hip_code_objects$' | grep -q 'Total Tests: 1'; then
  stage "HIP code objects per target (the listing of test_hip_code_objects)"
  ctest --test-dir "$build" -V -R '^test_hip_code_objects$' | grep -E '(==|PASS|FAIL)' || true
  stage_end
fi

stage "static build (host + OpenCL linked in): package test and host tests"
# CUDA and HIP stay off to keep this stage short (HIP has no static form: its kernels are a
# library loaded at run time).  The package test installs the build and links a consumer
# through find_package(polyattn) and through pkg-config --static.
opencl_static=AUTO
case " ${POLYATTN_REQUIRE:-} " in *" opencl "*) opencl_static=ON ;; esac
cmake -S . -B "$static_build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DPOLYATTN_WERROR=ON \
  -DPOLYATTN_STATIC=ON -DPOLYATTN_CUDA=OFF -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=$opencl_static
static_tests="test_plan test_readme_example"
[ "$opencl_static" = ON ] && static_tests="$static_tests test_ocl_interop"
# shellcheck disable=SC2086
cmake --build "$static_build" -j "$jobs" --target polyattn polyattn_cli $static_tests
ctest --test-dir "$static_build" --output-on-failure -j "$jobs" \
  -R "^(test_package|test_install|$(echo $static_tests | tr ' ' '|'))\$"
stage_end

stage "ASan+UBSan build of the host code and its tests"
cmake -S . -B "$asan_build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DPOLYATTN_WERROR=ON \
  -DPOLYATTN_SANITIZE=ON -DPOLYATTN_CUDA=OFF -DPOLYATTN_HIP=OFF -DPOLYATTN_OPENCL=OFF
cmake --build "$asan_build" -j "$jobs"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --test-dir "$asan_build" --output-on-failure -j "$jobs" -L 'host|cli'
stage_end
echo "polyattn: all tests passed"
