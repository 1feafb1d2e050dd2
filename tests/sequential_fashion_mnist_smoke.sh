#!/usr/bin/env bash
# Smoke test of examples/sequential_fashion_mnist: a few steps exit 0 and
# write the CSV (its header, one row per checkpoint, accuracies in [0, 1]),
# and the two networks start from the same weights (the example checks that
# itself and exits 2 otherwise). A bad option exits 2. Skipped (77) when
# Fashion-MNIST is not installed.
# Usage: sequential_fashion_mnist_smoke.sh EXECUTABLE DATA_DIR
set -euo pipefail
exe=$1 data=$2
if [[ ! -e "$data/train-images-idx3-ubyte.gz" ]]; then
  echo "skipped: Fashion-MNIST is not in $data (apt-get install dataset-fashion-mnist)"
  exit 77
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# A small Fashion-MNIST: the first 512 training and 256 test images and
# labels, the IDX headers' counts rewritten (the example takes the counts
# from the files). On the whole test split, evaluated by two LSTMs at
# three checkpoints, this test took 280 s of its 300 s timeout under
# AddressSanitizer on a 2-core Zen 3 VM (4 s in the release build).
small="$out/data"
mkdir "$small"
python3 - "$data" "$small" <<'EOF'
import gzip, math, struct, sys
src, dst = sys.argv[1], sys.argv[2]
for split, n in (("train", 512), ("t10k", 256)):
    for kind in ("images-idx3", "labels-idx1"):
        name = f"{split}-{kind}-ubyte.gz"
        with gzip.open(f"{src}/{name}", "rb") as f:
            raw = f.read()
        rank = raw[3]
        dims = list(struct.unpack(f">{rank}I", raw[4:4 + 4 * rank]))
        dims[0] = min(n, dims[0])
        head = raw[:4] + struct.pack(f">{rank}I", *dims)
        body = raw[4 + 4 * rank:][:math.prod(dims)]
        with gzip.open(f"{dst}/{name}", "wb") as f:
            f.write(head + body)
EOF
# Checkpoints at steps 0, 2 and 3: three rows.
"$exe" --data "$small" --steps 3 --eval-every 2 --batch-size 16 --threads 2 --out "$out"
csv="$out/sequential_fashion_mnist_accuracy.csv"
expected="step,epoch,test_accuracy_lstm,test_accuracy_bn_lstm"
header=$(head -n 1 "$csv")
if [[ "$header" != "$expected" ]]; then
  echo "FAIL: the CSV's header is '$header', expected '$expected'"
  exit 1
fi
rows=$(tail -n +2 "$csv")
if [[ $(awk -F, '{ print $1 }' <<< "$rows" | tr '\n' ' ') != "0 2 3 " ]]; then
  echo "FAIL: expected checkpoints at steps 0, 2 and 3, got:"
  echo "$rows"
  exit 1
fi
bad=$(awk -F, 'NF != 4 || $3 !~ /^[0-9.]+$/ || $4 !~ /^[0-9.]+$/ || $3 > 1 || $4 > 1 { print }' \
  <<< "$rows")
if [[ -n "$bad" ]]; then
  echo "FAIL: rows without 4 fields and two accuracies in [0, 1]:"
  echo "$bad"
  exit 1
fi
status=0
"$exe" --data "$data" --optimizer nosuch --out "$out" > /dev/null 2>&1 || status=$?
if [[ $status -ne 2 ]]; then
  echo "FAIL: --optimizer nosuch exited $status, expected 2"
  exit 1
fi
echo "ok: $(wc -l <<< "$rows") checkpoints"
