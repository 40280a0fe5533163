#!/usr/bin/env bash
# Real boots from Bramble: the debian-bookworm-arm64 image build (cold into a fresh store
# when COLD=1, and cached) and the customer's end-to-end test with two QEMU Pis, whose
# printed timeline splits a reinstall into provision, boot files, firmware fetch, kernel
# start, root mounted and sshd up (see docs/benchmarks.md, "Real boots").
#
#   bench/realboot.sh            # cached image + one end-to-end run
#   COLD=1 RUNS=2 bench/realboot.sh
#
# Needs root, the packages of scripts/install-deps.sh, and a Debian mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1}
CACHE=${BRAMBLE_IMAGE_CACHE:-/var/cache/bramble/images}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

if [ "$(id -u)" != 0 ]; then
    echo "realboot: needs root (debootstrap, network namespaces, tap devices)" >&2
    exit 1
fi
load() { cut -d' ' -f1-3 /proc/loadavg; }
echo "# real boots, $(date -u +%FT%TZ), $(nproc) cores, load: $(load)"

cargo build -q -p bramble --bin bramble
BIN=$CARGO_TARGET_DIR/debug/bramble
STATE=$(mktemp -d /tmp/realboot.XXXXXX)
trap 'rm -rf "$STATE"' EXIT
build() { # STORE
    local t0 t1
    t0=$(date +%s.%N)
    "$BIN" image build debian-bookworm-arm64 --store "$1" --state-dir "$STATE" 2>/dev/null | tail -1
    t1=$(date +%s.%N)
    echo "  wall: $(echo "$t1 - $t0" | bc) s, load after: $(load)"
}
if [ -n "${COLD:-}" ]; then
    echo "## image build, cold (fresh store)"
    build "$STATE/cold-store"
fi
echo "## image build, cached ($CACHE)"
build "$CACHE"
build "$CACHE"

for i in $(seq 1 "$RUNS"); do
    echo "## end to end, run $i (load before: $(load))"
    cargo test -q -p bramble-tests --test real_boot -- --nocapture 2>&1 \
        | grep -vE '^(running|test result|$)' || true
    echo "  load after: $(load)"
done
