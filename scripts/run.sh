#!/usr/bin/env bash
# Bramble's main job on embedded defaults, with no hardware: a virtual shelf.
# Installs what it needs (Debian 12, as root), builds the controller and runs
# `bramble lab up`: the controller on SQLite with its own DHCP and TFTP, a virtual PoE
# switch speaking SNMP, nfs-ganesha, and PIS simulated Pis (default 8, at most 96) in
# network namespaces, each cabled to its slot by a veth pair. The shelf is racked and
# every Pi deployed through the HTTP API; the command returns when the shelf is up and
# leaves the lab running in the background (stop it with `bramble lab down`).
# REAL=N makes the first N slots (at most 4) QEMU Pis booting a real Debian kernel.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${REAL:-0}" -gt 0 ]; then scripts/install-deps.sh real; else scripts/install-deps.sh run; fi
cargo build --release --locked -p bramble
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/bramble
ln -sf "$bin" /usr/local/bin/bramble
exec "$bin" lab up --pis "${PIS:-8}" --real "${REAL:-0}" --listen "${BRAMBLE_LISTEN:-127.0.0.1:8080}"
