#!/usr/bin/env bash
# Benchmark per-Pi root provisioning: one Pi and a shelf, per strategy (btrfs snapshot,
# reflink on XFS and on btrfs, plain copy), each beside a plain `cp -a` of the same
# ~400 MB base on the same filesystem, in the same run. Needs root, btrfs-progs,
# xfsprogs, and the cached test base (run `cargo test -p bramble-images` once first).
#
# Usage: bench/images.sh [SHELF=96] [COPY_SHELF=8] [BASE_MB=400]
set -euo pipefail
SHELF=${1:-96}
COPY_SHELF=${2:-8}
BASE_MB=${3:-400}
CACHE=${BRAMBLE_IMAGE_CACHE:-/var/cache/bramble/images}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/work/target-images}
cd "$(dirname "$0")/.."

# Dev profile (deps at opt-level 1): the timed work is cp/btrfs/ssh-keygen, not Rust code.
cargo build -q -p bramble-images --example provision_bench
BIN=$CARGO_TARGET_DIR/debug/examples/provision_bench
WORK=$(mktemp -d /tmp/im-bench.XXXXXX)
LOOPS=()
cleanup() {
    for m in "$WORK"/mnt-*; do umount "$m" 2>/dev/null || true; done
    for l in "${LOOPS[@]}"; do losetup -d "$l" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

# A filesystem of the given type on a sparse loop file, mounted at $WORK/mnt-NAME;
# sets MNT (no subshell, so LOOPS is seen by cleanup).
mkfs_loop() {
    local name=$1 type=$2 size=$3
    truncate -s "$size" "$WORK/$name.img"
    local dev; dev=$(losetup -f --show "$WORK/$name.img"); LOOPS+=("$dev")
    case $type in
        btrfs) mkfs.btrfs -q "$dev" >/dev/null 2>&1 ;;
        xfs) mkfs.xfs -q -m reflink=1 "$dev" >/dev/null 2>&1 ;;
    esac
    MNT=$WORK/mnt-$name
    mkdir -p "$MNT"; mount "$dev" "$MNT"
}

echo "== padding the cached base to ~${BASE_MB} MB"
"$BIN" prepare "$CACHE" "$WORK/src" "$BASE_MB"

run() { # NAME FSTYPE SIZE STRATEGY COUNT
    echo "== $4 on $2, $5 Pis"
    mkfs_loop "$1" "$2" "$3"
    "$BIN" run "$WORK/src" "$MNT/store" "$4" "$5"
    umount "$MNT"
}
run snap btrfs 6G btrfs-snapshot "$SHELF"
run xfsr xfs 8G reflink "$SHELF"
run btrr btrfs 8G reflink "$SHELF"
run xfsc xfs 12G copy "$COPY_SHELF"
