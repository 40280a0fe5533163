#!/usr/bin/env bash
# DHCP throughput: perfdhcp through a veth into a namespace against Bramble, Kea
# (memfile) and dnsmasq, in the same run. For each server the offered rate is raised
# until more than 2.5 % of exchanges drop (ISC's method); the last rate within 2.5 %
# gives the sustained leases/s (completed DORA exchanges per second).
#
# Usage: bench/dhcp.sh [SECONDS_PER_STEP]          (needs root, perfdhcp, kea-dhcp4, dnsmasq)
# BRAMBLE_DHCPD_CMD: command that starts Bramble's DHCP server in the foreground. It may
#   use $IFACE $SERVER_ADDR $NETWORK $PREFIX $POOL_START $POOL_END $STATE_DIR. Default:
#   the real controller, `bramble serve` with its SQLite inventory (bench/bramble-dhcpd.sh).
#   BRAMBLE_DHCPD=example uses netboot/examples/dhcpd.rs (example-only append+fsync file).
# RATES: offered rates to try, ascending (default below). CLIENTS: perfdhcp -R.
set -euo pipefail

step="${1:-5}"
root="$(cd "$(dirname "$0")/.." && pwd)"
RATES="${RATES:-500 1000 2000 3000 4000 5000 6000 7000 8000 10000 12000 15000}"
CLIENTS="${CLIENTS:-20000}"
for tool in ip perfdhcp kea-dhcp4 dnsmasq; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install kea-admin kea-dhcp4-server dnsmasq-base iproute2)" >&2; exit 1; }
done

tag="dhb$$"
export IFACE="${tag}h" SERVER_ADDR=10.101.128.1 NETWORK=10.101.128.0 PREFIX=17
export POOL_START=10.101.130.0 POOL_END=10.101.255.254
export STATE_DIR="$(mktemp -d /tmp/dh-bench.XXXXXX)"
ns="${tag}ns"
server_pid=""

cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
    ip link del "$IFACE" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    [ -n "${KEEP_STATE:-}" ] && echo "state kept in $STATE_DIR" >&2 || rm -rf "$STATE_DIR"
}
trap cleanup EXIT

ip netns add "$ns"
ip link add "$IFACE" type veth peer name "${tag}p"
ip link set "${tag}p" netns "$ns"
ip -n "$ns" link set "${tag}p" name eth0
ip addr add "$SERVER_ADDR/$PREFIX" dev "$IFACE"
ip link set "$IFACE" up
# perfdhcp acts as a relay on the link and needs an address (outside the pool).
ip -n "$ns" addr add 10.101.128.2/$PREFIX dev eth0
ip -n "$ns" link set eth0 up
ip -n "$ns" link set lo up

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
if [ -z "${BRAMBLE_DHCPD_CMD:-}" ] && [ "${BRAMBLE_DHCPD:-}" = example ]; then
    (cd "$root" && cargo build --release -q -p bramble-netboot --example dhcpd)
    BRAMBLE_DHCPD_CMD='$CARGO_TARGET_DIR/release/examples/dhcpd --iface $IFACE --server $SERVER_ADDR --network $NETWORK/$PREFIX --pool $POOL_START-$POOL_END --lease-file $STATE_DIR/bramble-leases.log'
elif [ -z "${BRAMBLE_DHCPD_CMD:-}" ]; then
    (cd "$root" && cargo build --release -q -p bramble)
    export BRAMBLE_BIN="$CARGO_TARGET_DIR/release/bramble"
    BRAMBLE_DHCPD_CMD="$root/bench/bramble-dhcpd.sh"
fi

kea_conf() {
    mkdir -p /run/kea
    cat > "$STATE_DIR/kea.json" <<JSON
{ "Dhcp4": {
  "interfaces-config": { "interfaces": [ "$IFACE" ] },
  "lease-database": { "type": "memfile", "persist": true, "name": "$STATE_DIR/kea-leases4.csv", "lfc-interval": 0 },
  "valid-lifetime": 3600,
  "subnet4": [ { "id": 1, "subnet": "$NETWORK/$PREFIX", "pools": [ { "pool": "$POOL_START - $POOL_END" } ],
                 "option-data": [ { "name": "routers", "data": "$SERVER_ADDR" } ] } ],
  "loggers": [ { "name": "kea-dhcp4", "output_options": [ { "output": "$STATE_DIR/kea.log" } ], "severity": "WARN" } ]
} }
JSON
}

start_server() {
    case "$1" in
    bramble) eval "exec $BRAMBLE_DHCPD_CMD" 2>"$STATE_DIR/bramble.log" & ;;
    kea) kea_conf; kea-dhcp4 -c "$STATE_DIR/kea.json" >"$STATE_DIR/kea.out" 2>&1 & ;;
    dnsmasq) dnsmasq --no-daemon --port=0 --interface="$IFACE" --bind-interfaces --dhcp-authoritative --no-ping \
        --dhcp-range="$POOL_START,$POOL_END,255.255.128.0,1h" --dhcp-lease-max=100000 \
        --dhcp-leasefile="$STATE_DIR/dnsmasq.leases" --pid-file="$STATE_DIR/dnsmasq.pid" \
        --log-facility="$STATE_DIR/dnsmasq.log" 2>/dev/null & ;;
    esac
    server_pid=$!
    sleep 2
    kill -0 "$server_pid" || { echo "$1 did not start" >&2; exit 1; }
}

stop_server() {
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

# Prints "<received ACKs> <drops %>" for one perfdhcp run at rate $1.
run_step() {
    local out
    out="$(ip netns exec "$ns" perfdhcp -4 -l eth0 -r "$1" -R "$CLIENTS" -p "$step" 2>&1 || true)"
    echo "$out" > "$STATE_DIR/perfdhcp-$current-$1.txt"
    # Sent/received of DISCOVER-OFFER and REQUEST-ACK, in that order.
    local sent recv
    sent=($(echo "$out" | awk '/sent packets:/ {print $3}'))
    recv=($(echo "$out" | awk '/received packets:/ {print $3}'))
    if [ "${#sent[@]}" -lt 2 ] || [ "${sent[0]}" -eq 0 ]; then echo "0 100"; return; fi
    # An exchange completes when the ACK arrives; drops are DISCOVERs without an ACK.
    awk -v s="${sent[0]}" -v a="${recv[1]}" -v t="$step" 'BEGIN { printf "%d %.2f\n", a / t, (s - a) * 100 / s }'
}

echo "| server | offered/s | ACK/s | drops % |"
echo "|---|---|---|---|"
declare -A best
for server in bramble kea dnsmasq; do
    current="$server"
    start_server "$server"
    best[$server]=0
    for rate in $RATES; do
        read -r acks drops < <(run_step "$rate")
        echo "| $server | $rate | $acks | $drops |"
        if awk -v d="$drops" 'BEGIN { exit !(d > 2.5) }'; then break; fi
        best[$server]="$acks@$rate"
    done
    stop_server
    [ "$server" = bramble ] && grep -h 'dhcpd:' "$STATE_DIR/bramble.log" >&2 || true
done
echo
for server in bramble kea dnsmasq; do
    echo "sustained (<=2.5% drops) $server: ${best[$server]} (ACK/s@offered/s)"
done
