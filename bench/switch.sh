#!/usr/bin/env bash
# Benchmark of bramble-switch against its virtual switch (release build): configure and
# verify a 96-port shelf, power-cycle all 96 ports, batched vs one SET per varbind.
# Usage: bench/switch.sh   (prints a markdown table; figures go to docs/benchmarks.md)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/target-switch}"
cargo build --release -q -p bramble-switch --example switch-bench
for run in 1 2 3; do
  echo "run $run"
  "$CARGO_TARGET_DIR/release/examples/switch-bench"
done
