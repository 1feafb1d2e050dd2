#!/usr/bin/env bash
# Installs what is missing, builds, and runs the main job on its built-in input.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build -j "$(nproc)" --target quickstart
./build/examples/quickstart "$@"
