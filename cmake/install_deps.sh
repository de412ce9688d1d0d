#!/bin/sh
# Installs the Debian packages polyattn builds and tests with, only those missing.
# Usage: cmake/install_deps.sh [extra packages...]   (needs root or sudo for apt-get)
set -eu
packages="cmake ninja-build gcc g++ pkg-config python3 python3-numpy python3-matplotlib
  ocl-icd-opencl-dev opencl-headers clinfo pocl-opencl-icd libclblast-dev
  hipcc libamdhip64-dev rocm-device-libs $*"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ -n "$missing" ]; then
  echo "polyattn: installing Debian packages:$missing"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# The scripts run the first python3 on PATH, which may not be Debian's (pyenv, venvs).
if ! python3 -c 'import numpy, matplotlib' 2>/dev/null; then
  echo "polyattn: installing numpy and matplotlib for $(command -v python3)"
  python3 -m pip install --quiet numpy matplotlib
fi
