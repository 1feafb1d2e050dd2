#!/usr/bin/env bash
# The failure lines of every test CTest's last run failed, taken from its
# full log (LastTest.log in the folder given): GoogleTest's failures and
# the three lines after each, sanitizer reports and MPI's abort messages, at most 60
# lines per test. Used by run-tests.sh after a failed run.
set -uo pipefail
dir=${1:?usage: $0 BUILD/Testing/Temporary}
[ -f "$dir/LastTestsFailed.log" ] || exit 0
echo
echo "==== what the failed tests said (from $dir/LastTest.log) ===="
while IFS=: read -r _ name; do
  echo "---- $name"
  awk -v name="$name" '
    $0 ~ "^[0-9]+/[0-9]+ Testing: " name "$" { inside = 1; next }
    inside && $0 ~ "^[0-9]+/[0-9]+ Testing: " { inside = 0 }
    inside' "$dir/LastTest.log" |
    grep -E -A3 "Failure|FAILED|Expected|Which is|Value of|Actual|error|Error|ERROR|what\(\)|Sanitizer|SUMMARY|abort|signal|exit code|Test Failed|Timeout" |
    head -n 60
done < "$dir/LastTestsFailed.log"
