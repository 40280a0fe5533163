#!/usr/bin/env bash
# Fuzzes the DHCP packet entry point (bramble_netboot::dhcp::Engine::handle) for a
# bounded time. Usage: scripts/fuzz-dhcp.sh [SECONDS]   (default 60)
#
# cargo-fuzz needs nightly-only rustc flags (-Zsanitizer=address). This machine has only
# stable, so the script sets RUSTC_BOOTSTRAP=1, which lets stable rustc accept them.
# Installs cargo-fuzz if it is missing. Crashes land in netboot/fuzz/artifacts/.
set -euo pipefail

secs="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/netboot/fuzz/target}"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

cd "$root/netboot/fuzz"
mkdir -p corpus/dhcp_packet
# Seed: a Pi 3B ROM DISCOVER (xid 0x26f30339, options 53, 55, 93, 94, 97, 60).
if [ ! -e corpus/dhcp_packet/pi3b_discover ]; then
    python3 - <<'PY' || true
import struct
h = bytes([1, 1, 6, 0]) + struct.pack(">I", 0x26f30339) + bytes(4) + bytes(16)
h += bytes.fromhex("b827eb28f66d") + bytes(10) + bytes(192) + bytes([99, 130, 83, 99])
o = bytes([53, 1, 1, 55, 4, 43, 60, 66, 67, 93, 2, 0, 0, 94, 3, 1, 2, 1, 97, 17, 0]) + bytes([0x44] * 16)
o += bytes([60, 32]) + b"PXEClient:Arch:00000:UNDI:002001" + bytes([255])
open("corpus/dhcp_packet/pi3b_discover", "wb").write(h + o)
PY
fi
# -s none: the sanitizer is the slowest part; Rust's own checks catch what matters here
# (panics on bad indexing or arithmetic), and it keeps the run fast on 2 cores.
log="$root/netboot/fuzz/fuzz-dhcp.log"
status=0
cargo fuzz run --sanitizer none dhcp_packet -- -max_total_time="$secs" -max_len=1600 >"$log" 2>&1 || status=$?
grep -E "panicked|^#[0-9]+ *DONE|Done [0-9]+ runs|artifact_prefix|Test unit written" "$log" || true
tail -n 3 "$log"
exit "$status"
