#!/usr/bin/env bash
# Smoke test of examples/hessian_spectrum: a few steps with a few Lanczos
# iterations on a small Hessian batch exit 0 and write the CSV (its header,
# one row per network and checkpoint, finite eigenvalues); a bad command
# line exits 2. Skipped (77) when Fashion-MNIST is not installed.
# Usage: hessian_spectrum_smoke.sh EXECUTABLE DATA_DIR
set -euo pipefail
exe=$1 data=$2
if [[ ! -e "$data/train-images-idx3-ubyte.gz" ]]; then
  echo "skipped: Fashion-MNIST is not in $data (apt-get install dataset-fashion-mnist)"
  exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# Checkpoints at steps 0, 1, 2 and 4: eight rows.
"$exe" --data "$data" --max-steps 4 --eval-every 2 --samples 40 --iterations 4 --top 3 \
  --out "$out"
csv="$out/hessian_spectrum.csv"
expected="step,network,lambda_1,lambda_2,lambda_3,train_loss,test_accuracy"
header=$(head -n 1 "$csv")
if [[ "$header" != "$expected" ]]; then
  echo "FAIL: the CSV's header is '$header', expected '$expected'"
  exit 1
fi
rows=$(tail -n +2 "$csv")
if [[ $(wc -l <<< "$rows") -ne 8 ]]; then
  echo "FAIL: expected 8 rows (2 networks x steps 0, 1, 2, 4), got:"
  echo "$rows"
  exit 1
fi
bad=$(awk -F, '$2 != "plain" && $2 != "batchnormal" || NF != 7 ||
               $3 !~ /^-?[0-9]/ || $3 + 0 < $5 + 0 { print }' <<< "$rows")
if [[ -n "$bad" ]]; then
  echo "FAIL: rows without two networks, 7 fields and descending finite eigenvalues:"
  echo "$bad"
  exit 1
fi
status=0
"$exe" --data "$data" --iterations 2 --top 3 --out "$out" > /dev/null 2>&1 || status=$?
if [[ $status -ne 2 ]]; then
  echo "FAIL: --top 3 with --iterations 2 exited $status, expected 2"
  exit 1
fi
echo "ok: $(wc -l <<< "$rows") rows"
