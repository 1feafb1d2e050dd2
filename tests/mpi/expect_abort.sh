#!/usr/bin/env bash
# Usage: expect_abort.sh SECONDS mpirun ARGS...
# Passes when the MPI program fails (non-zero exit) within SECONDS and its
# output names the rank that threw and its message; fails on success, on a
# hang (timeout) or without the message.
set -u
limit=$1; shift
out=$(timeout "$limit" "$@" 2>&1); status=$?
echo "$out"
if [ "$status" -eq 124 ]; then echo "FAIL: still running after $limit s (a hang)"; exit 1; fi
if [ "$status" -eq 0 ]; then echo "FAIL: exited 0, expected a failure"; exit 1; fi
if ! grep -q "rank 1 of 3: rank 1 cannot go on" <<<"$out"; then
  echo "FAIL: the failing rank's message is missing"; exit 1
fi
if grep -q "unreachable" <<<"$out"; then echo "FAIL: a collective completed"; exit 1; fi
echo "PASS: exit status $status within $limit s"
