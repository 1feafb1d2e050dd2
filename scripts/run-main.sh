#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job: `npdl explain
# batchnorm` on its built-in input (how reverse mode differentiates
# BatchNormal, and the fused formula derived from it). Arguments go to it,
# e.g. scripts/run-main.sh --axis 1 --format markdown
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)" --target npdl_cli
./build/cli/npdl explain batchnorm "$@"
