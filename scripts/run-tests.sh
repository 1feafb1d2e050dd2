#!/usr/bin/env bash
# Installs what is missing, builds, and runs the test suite through CTest.
# Usage: scripts/run-tests.sh [--sanitize | --tsan]
#   --sanitize: AddressSanitizer + UndefinedBehaviorSanitizer, in build-asan/
#   --tsan:     ThreadSanitizer, in build-tsan/ (optimised: TSan slows every
#               memory access, and the suite's long tests must stay in budget)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
build=build type=Release extra=()
case "${1:-}" in
  --sanitize) build=build-asan type=Debug extra=(-DNPDL_SANITIZE=address,undefined) ;;
  --tsan) build=build-tsan type=RelWithDebInfo extra=(-DNPDL_SANITIZE=thread)
          # an impossible allocation returns null (the MemoryError tests)
          export TSAN_OPTIONS=allocator_may_return_null=1 ;;
  "") ;;
  *) echo "usage: $0 [--sanitize | --tsan]" >&2; exit 2 ;;
esac
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE="$type" "${extra[@]}" > /dev/null
cmake --build "$build" -j "$(nproc)"
# --no-tests=error: a run that finds no test fails instead of passing quietly.
if ! ctest --test-dir "$build" --output-on-failure --no-tests=error -j "$(nproc)"; then
  # A long run's log shows its start and its end; repeat what each failed
  # test said about its failure last, where a reader of that log sees it.
  scripts/failure-digest.sh "$build/Testing/Temporary"
  exit 1
fi
