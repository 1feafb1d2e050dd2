#!/usr/bin/env bash
# Installs the Debian packages npdl needs that are missing (Debian 12, root).
# OpenMPI is optional for the library but needed by the tests under mpirun.
# graphviz draws the graphs (npdl graph --svg, npdl explain --format html);
# chromium, its driver and Selenium run the explain page's browser test.
# Usage: scripts/install-deps.sh [extra-package ...]
set -euo pipefail
packages=(build-essential cmake libboost-graph-dev libeigen3-dev libgtest-dev
          libbenchmark-dev libcli11-dev zlib1g-dev ccache libopenmpi-dev openmpi-bin
          graphviz chromium chromium-driver python3-selenium dataset-fashion-mnist "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
