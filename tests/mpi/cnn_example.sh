#!/usr/bin/env bash
# Usage: cnn_example.sh SECONDS EXAMPLE mpirun ARGS...
# Runs `mpirun ARGS... EXAMPLE --distributed` for two steps on a tiny
# Fashion-MNIST look-alike written here (the real data set is a Debian package
# CI does not install, and 10,000 test images would take most of the time).
# Passes when it exits 0 within SECONDS, rank 0 announced the split and wrote
# the CSV with the checkpoints of steps 0, 1 and 2, and no other rank spoke.
set -u
limit=$1 example=$2; shift 2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# IDX: a big-endian header (magic 0x0000080N, N sizes), then unsigned bytes.
u32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 >> 24 & 255)) $(($1 >> 16 & 255)) \
                $(($1 >> 8 & 255)) $(($1 & 255)); }
# images FILE COUNT: pixels that depend on the label (i % 10), so there is a
# little to learn; labels FILE COUNT.
images() {
  local body="" i p b
  for ((i = 0; i < $2; ++i)); do
    for ((p = 0; p < 784; ++p)); do
      printf -v b '\\x%02x' $(((p * (i % 10 + 1) + 7 * i) & 255)); body+=$b
    done
  done
  printf "\\x00\\x00\\x08\\x03$(u32 "$2")$(u32 28)$(u32 28)$body" | gzip -n > "$1"
}
labels() {
  local body="" i b
  for ((i = 0; i < $2; ++i)); do printf -v b '\\x%02x' $((i % 10)); body+=$b; done
  printf "\\x00\\x00\\x08\\x01$(u32 "$2")$body" | gzip -n > "$1"
}
images "$dir/train-images-idx3-ubyte.gz" 24
labels "$dir/train-labels-idx1-ubyte.gz" 24
images "$dir/t10k-images-idx3-ubyte.gz" 10
labels "$dir/t10k-labels-idx1-ubyte.gz" 10

out=$(timeout "$limit" "$@" "$example" --distributed --data "$dir" --out "$dir/out" \
        --batch-size 8 --max-steps 2 --eval-every 1 --threads 1 2>&1)
status=$?
echo "$out"
if [ "$status" -eq 124 ]; then echo "FAIL: still running after $limit s (a hang)"; exit 1; fi
if [ "$status" -ne 0 ]; then echo "FAIL: exit status $status"; exit 1; fi
if ! grep -q "^data-parallel over 2 ranks (MPI): global batch 8" <<<"$out"; then
  echo "FAIL: rank 0 did not announce the data-parallel split"; exit 1
fi
if [ "$(grep -c "^step " <<<"$out")" -ne 3 ]; then
  echo "FAIL: expected 3 checkpoints (steps 0, 1, 2) printed once, by rank 0"; exit 1
fi
csv="$dir/out/fashion_mnist_cnn_accuracy.csv"
if [ ! -f "$csv" ]; then echo "FAIL: rank 0 wrote no $csv"; exit 1; fi
echo "--- $csv"; cat "$csv"
if [ "$(wc -l < "$csv")" -ne 4 ]; then echo "FAIL: expected a header and 3 rows"; exit 1; fi
echo "PASS: exit status 0, CSV written by rank 0"
