#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (clang, ASan + UBSan, in build-fuzz/)
# and runs each for a fixed time, one after the other, single process.
# Usage: scripts/run-fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#   (default: 20 s each, every target, as CI runs them)
# Each target starts from its seed corpus fuzz/corpus/<target>/ and keeps
# what it learns in build-fuzz/corpus/<target>/ (not in the repository).
# A crash stops the script with the input saved as
# build-fuzz/artifacts/<target>-crash-*; reproduce it with
#   build-fuzz/fuzz/fuzz_<target> build-fuzz/artifacts/<target>-crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh clang libclang-rt-14-dev
seconds=${1:-20}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(npy_reader idx_reader model_load cli_args graph_diff conv_geometry thread_pool)
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DNPDL_BUILD_FUZZERS=ON -DNPDL_SANITIZE=address,undefined \
  -DNPDL_BUILD_TESTS=OFF -DNPDL_BUILD_EXAMPLES=OFF > /dev/null
cmake --build build-fuzz -j "$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}")
mkdir -p build-fuzz/artifacts
for t in "${targets[@]}"; do
  mkdir -p "build-fuzz/corpus/$t"
  echo "== fuzz_$t for ${seconds} s"
  # -rss_limit_mb: a harness that needs more is itself a finding.
  status=0
  # A fixed seed: CI repeats the same search; NPDL_FUZZ_SEED=0 lets libFuzzer pick.
  build-fuzz/fuzz/fuzz_"$t" -seed="${NPDL_FUZZ_SEED:-1}" -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="build-fuzz/artifacts/$t-" "build-fuzz/corpus/$t" "fuzz/corpus/$t" \
    > "build-fuzz/artifacts/$t.log" 2>&1 || status=$?
  # The whole log is in build-fuzz/artifacts/<target>.log; here the summary.
  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|peak_rss_mb)|ERROR|SUMMARY|graph_diff:|conv_geometry:|thread_pool:' \
    "build-fuzz/artifacts/$t.log" || true
  [ "$status" -eq 0 ] || { echo "fuzz_$t found a crash: see build-fuzz/artifacts/"; exit 1; }
done
