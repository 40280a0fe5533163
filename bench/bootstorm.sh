#!/usr/bin/env bash
# Boot-storm benchmark: N simulated Pis (real boot-ROM timings, firmware-sized TFTP
# files) powered on all at once, then staggered, then under a PoE budget; prints one
# Markdown row per storm (see docs/benchmarks.md, "Boot storm", for the method).
# MIX=with-pi5 (default) gives the anchor 3B / 3B+ / 4 / 5 in turn, the mix of
# Bramble's lab (which always has Pi 5s: ports 3, 7, 11, ...); MIX=pi3-pi4 gives the
# anchor 3B / 3B+ / 4 as before issue 16.
#
#   bench/bootstorm.sh                 # 96 Pis, staggered 16 per 2 s, budget 452 W
#   BUDGET_W=0 bench/bootstorm.sh      # no budget storm
#   PIS=24 GROUP=8 PAUSE=1 bench/bootstorm.sh
#   MIX=pi3-pi4 bench/bootstorm.sh     # the anchor without Pi 5s (the lab keeps them)
#
# Needs root and: dnsmasq-base tftpd-hpa nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils.
set -euo pipefail
cd "$(dirname "$0")/.."

PIS=${PIS:-96}
GROUP=${GROUP:-16}
PAUSE=${PAUSE:-2}
REPLY_DELAY=${REPLY_DELAY:-1}
MIX=${MIX:-with-pi5}
# The budget storm: a 452 W PSE (60 of the shelf's Pis at their full draw); every Pi
# counts BOOT_MW until booted, then IDLE_MW (BOOT_MW: the Pi 4B's worst case in
# orchestrator/src/poe/draw.rs; IDLE_MW: an estimate). The same schedule powers both
# sides; on Bramble's the virtual switch also enforces the budget.
BUDGET_W=${BUDGET_W:-452}
BOOT_MW=${BOOT_MW:-9200}
IDLE_MW=${IDLE_MW:-3000}
BUDGET_ARGS=()
if [ "$BUDGET_W" != 0 ]; then
    BUDGET_ARGS=(--budget-watts "$BUDGET_W" --boot-mw "$BOOT_MW" --idle-mw "$IDLE_MW")
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

if [ "$(id -u)" != 0 ]; then
    echo "bootstorm: needs root (network namespaces, veth pairs)" >&2
    exit 1
fi
for tool in dnsmasq in.tftpd ganesha.nfsd rpcbind nfs-cat; do
    if ! command -v "$tool" >/dev/null; then
        echo "bootstorm: $tool missing; apt-get install -y dnsmasq-base tftpd-hpa nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils" >&2
        exit 1
    fi
done

echo "# boot storm, $PIS Pis, $(date -u +%FT%TZ), $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "## Anchor: dnsmasq (DHCP, dhcp-reply-delay $REPLY_DELAY s) + tftpd-hpa + nfs-ganesha, configured by hand, mix $MIX"
cargo build --release -q -p bramble-lab --example bootstorm_anchor
"$CARGO_TARGET_DIR/release/examples/bootstorm_anchor" \
    --pis "$PIS" --group "$GROUP" --pause-secs "$PAUSE" --reply-delay "$REPLY_DELAY" --mix "$MIX" "${BUDGET_ARGS[@]}"

# ===== BRAMBLE PART ===============================================================
# The same two storms against Bramble's virtual shelf (`bramble::lab::Lab`, as
# `bramble lab up` builds it): controller on SQLite with its own DHCP and TFTP, the
# virtual PoE switch, nfs-ganesha, and the same PiSims; the shelf is racked and
# deployed through the API, each Pi's boot files are given the anchor's sizes
# (BRAMBLE_FILES=firmware, the default; `small` or `lab` for the others), and power goes
# over SNMP to the switch as the controller sends it. Storage links from 10.109.0.0/16.
BRAMBLE_FILES=${BRAMBLE_FILES:-firmware}
cargo build --release -q -p bramble --example bootstorm
# The lab's controller serves DHCP and TFTP on the root namespace's 67 and 69, and its
# nfs-ganesha needs 111 and 2049: only one lab can run on a machine at a time.
if ss -lnu | grep -qE ':(67|69|111) ' || ss -lnt | grep -qE ':(111|2049) '; then
    echo "bootstorm: port 67, 69, 111 or 2049 is taken (another lab or test is running):" >&2
    ss -lnup | grep -E ':(67|69|111) ' >&2 || true
    ss -lntp | grep -E ':(111|2049) ' >&2 || true
    exit 1
fi
echo
echo "## Bramble: controller (DHCP + TFTP) + virtual switch (PoE over SNMP) + nfs-ganesha, boot files: $BRAMBLE_FILES"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
"$CARGO_TARGET_DIR/release/examples/bootstorm" \
    --pis "$PIS" --group "$GROUP" --pause-secs "$PAUSE" --files "$BRAMBLE_FILES" "${BUDGET_ARGS[@]}"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
# ===== END BRAMBLE PART ===========================================================
