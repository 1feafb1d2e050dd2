#!/usr/bin/env bash
# The examples' integer options refuse what does not fit, as npdl's do: a
# negative, too large or non-decimal value exits 2 with a message that names
# the option and its range, before any data is read (so no data set is
# needed here).
# Usage: example_options.sh EXECUTABLE OPTION...
set -uo pipefail
exe=$1
shift
failures=0
for option in "$@"; do
  for value in -1 18446744073709551616 1e3 010x; do
    message=$("$exe" "$option" "$value" 2>&1 >/dev/null)
    status=$?
    if [[ $status -ne 2 || $message != *"$option: expected a whole number in ["* ]]; then
      echo "FAIL: $(basename "$exe") $option $value: status $status, message: $message"
      failures=$((failures + 1))
    fi
  done
done
echo "$(basename "$exe"): $(($# * 4 - failures)) of $(($# * 4)) bad values refused"
[[ $failures -eq 0 ]]
