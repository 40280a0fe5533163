#!/usr/bin/env bash
# TFTP throughput: Bramble vs tftpd-hpa vs dnsmasq, in one run, through a veth pair into
# a client namespace. 1 and N (default 96) parallel downloads of a 6 MiB "kernel" at
# blksize 512 (tftp-hpa client) and 1468 (atftp client). Prints a Markdown table of wall
# time and aggregate MB/s (MB = 10^6 bytes) and checks every downloaded copy byte for byte.
#
# Usage: bench/tftp.sh [PARALLEL] (root; needs tftp-hpa, atftp, tftpd-hpa, dnsmasq, iproute2)
# BRAMBLE_TFTPD=path/to/tftpd skips the release build of netboot/examples/tftpd.rs.
set -euo pipefail

PARALLEL=${1:-96}
REPEAT=${REPEAT:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
NS=tfb$$
WORK=$(mktemp -d /tmp/tfbench.XXXXXX)
SERVERS=(bramble tftpd-hpa dnsmasq)
declare -A HOST_IP=([bramble]=10.102.253.1 [tftpd-hpa]=10.102.253.5 [dnsmasq]=10.102.253.9)
declare -A HOST_IF=([bramble]=tfbb$$ [tftpd-hpa]=tfbh$$ [dnsmasq]=tfbd$$)
declare -A PID=()

cleanup() {
    for pid in "${PID[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for server in "${SERVERS[@]}"; do ip link del "${HOST_IF[$server]}" 2>/dev/null || true; done
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

for tool in tftp atftp in.tftpd dnsmasq ip; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install tftp-hpa atftp tftpd-hpa dnsmasq-base iproute2)" >&2; exit 1; }
done

if [ -z "${BRAMBLE_TFTPD:-}" ]; then
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    (cd "$ROOT" && cargo build --release -q -p bramble-netboot --example tftpd)
    BRAMBLE_TFTPD=$CARGO_TARGET_DIR/release/examples/tftpd
fi

# A packaged tftpd-hpa service on 0.0.0.0:69 would take our port: say so, never stop it.
"$ROOT/scripts/check-ports.sh" udp/69

mkdir -p "$WORK/srv" "$WORK/out"
head -c $((6 * 1024 * 1024)) /dev/urandom > "$WORK/srv/kernel.img"
chmod 755 "$WORK" "$WORK/srv"; chmod 644 "$WORK/srv/kernel.img"  # in.tftpd runs as user tftp
SIZE=$(stat -c %s "$WORK/srv/kernel.img")

# One veth pair (its own /30) per server, all ending in the client namespace, so the
# three servers run side by side and every row interleaves them under the same load.
ip netns add "$NS"
ip -n "$NS" link set lo up
n=0
for server in "${SERVERS[@]}"; do
    ifc=${HOST_IF[$server]} ip=${HOST_IP[$server]}
    ip link add "$ifc" type veth peer name "${ifc}p"
    ip link set "${ifc}p" netns "$NS"
    ip -n "$NS" link set "${ifc}p" name "eth$n"
    ip addr add "$ip/30" dev "$ifc"
    ip link set "$ifc" up
    ip -n "$NS" addr add "${ip%.*}.$(( ${ip##*.} + 1 ))/30" dev "eth$n"
    ip -n "$NS" link set "eth$n" up
    n=$((n + 1))
done

start_server() {
    local ip=${HOST_IP[$1]}
    case $1 in
        bramble) "$BRAMBLE_TFTPD" "$ip:69" "$WORK/srv" 2>"$WORK/bramble.metrics" & ;;
        tftpd-hpa) in.tftpd --foreground --listen --address "$ip:69" --secure "$WORK/srv" & ;;
        dnsmasq) dnsmasq --no-daemon --conf-file=/dev/null --user=root --port=0 --enable-tftp \
            --tftp-root="$WORK/srv" --listen-address="$ip" --bind-interfaces \
            --interface="${HOST_IF[$1]}" --tftp-max=1000 --pid-file="$WORK/dnsmasq.pid" \
            --log-facility=/dev/null 2>/dev/null & ;;
    esac
    PID[$1]=$!
}

# One download from server IP $1 into $WORK/out/$3 with the client for blksize $2.
fetch() {
    if [ "$2" = 512 ]; then
        ip netns exec "$NS" tftp -m binary "$1" 69 -c get kernel.img "$WORK/out/$3"
    else
        ip netns exec "$NS" atftp --option "blksize 1468" -g -r kernel.img -l "$WORK/out/$3" "$1" 69
    fi >/dev/null 2>&1
}

# Runs $3 parallel downloads from server IP $1 at blksize $2; prints the wall time and
# the number of bad copies.
run() {
    rm -f "$WORK"/out/*
    local start end bad=0
    start=$(date +%s.%N)
    for i in $(seq 1 "$3"); do fetch "$1" "$2" "$i" & done
    wait
    end=$(date +%s.%N)
    for i in $(seq 1 "$3"); do cmp -s "$WORK/out/$i" "$WORK/srv/kernel.img" || bad=$((bad + 1)); done
    echo "$(echo "$end - $start" | bc) $bad"
}

for server in "${SERVERS[@]}"; do start_server "$server"; done
sleep 1

declare -A TIMES=() FAILED=()
for blk in 512 1468; do
    for n in 1 "$PARALLEL"; do
        for _ in $(seq 1 "$REPEAT"); do
            for server in "${SERVERS[@]}"; do
                read -r t bad < <(run "${HOST_IP[$server]}" "$blk" "$n")
                TIMES[$server,$blk,$n]+="$t "
                FAILED[$server,$blk,$n]=$(( ${FAILED[$server,$blk,$n]:-0} + bad ))
            done
        done
    done
done

echo "| blksize | parallel | server | wall s (median of $REPEAT) | aggregate MB/s | failed copies |"
echo "|---|---|---|---|---|---|"
for blk in 512 1468; do
    for n in 1 "$PARALLEL"; do
        for server in "${SERVERS[@]}"; do
            median=$(printf '%s\n' ${TIMES[$server,$blk,$n]} | sort -n | sed -n "$(( (REPEAT + 1) / 2 ))p")
            mbs=$(echo "scale=1; $n * $SIZE / $median / 1000000" | bc)
            printf '| %s | %s | %s | %.3f | %s | %s |\n' "$blk" "$n" "$server" "$median" "$mbs" "${FAILED[$server,$blk,$n]}"
        done
    done
done
kill -INT "${PID[bramble]}"; wait "${PID[bramble]}" 2>/dev/null || true
echo; echo "Bramble counters: $(cat "$WORK/bramble.metrics")"
