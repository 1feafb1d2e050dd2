#!/usr/bin/env bash
# Installs what is missing, builds, and runs the test suite through CTest.
# Usage: scripts/run-tests.sh [--sanitize]   (--sanitize: AddressSanitizer +
# UndefinedBehaviorSanitizer, in build-asan/)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build=build type=Release extra=()
if [ "${1:-}" = "--sanitize" ]; then
  build=build-asan type=Debug extra=(-DNPDL_SANITIZE=address,undefined)
fi
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE="$type" "${extra[@]}" > /dev/null
cmake --build "$build" -j "$(nproc)"
# --no-tests=error: a run that finds no test fails instead of passing quietly.
ctest --test-dir "$build" --output-on-failure --no-tests=error -j "$(nproc)"
