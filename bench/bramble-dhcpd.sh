#!/usr/bin/env bash
# Starts the real controller (`bramble serve`, SQLite inventory in $STATE_DIR) serving
# DHCP on a flat network for bench/dhcp.sh: every ACK waits for its lease to be
# committed to the database. Uses the variables bench/dhcp.sh exports.
set -euo pipefail
bin="${BRAMBLE_BIN:?set BRAMBLE_BIN to a release build of bramble}"
cat > "$STATE_DIR/bramble.toml" <<TOML
listen = "127.0.0.1:0"
state_dir = "$STATE_DIR/bramble"

[netboot]
enabled = true
tftp_listen = []

[[netboot.flat]]
interface = "$IFACE"
subnet = "$NETWORK/$PREFIX"
server = "$SERVER_ADDR"
pool_start = "$POOL_START"
pool_end = "$POOL_END"
router = "$SERVER_ADDR"
discovery = false
TOML
BRAMBLE_LOG=warn exec "$bin" serve --config "$STATE_DIR/bramble.toml"
