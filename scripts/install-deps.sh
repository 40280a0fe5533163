#!/usr/bin/env bash
# Installs the Debian 12 packages Bramble needs, only those missing.
#   scripts/install-deps.sh run    what `bramble lab up` (the virtual shelf) and `bramble serve` use
#   scripts/install-deps.sh real   that plus what `bramble lab up --real N` needs (QEMU Pis, and
#                                  building their debian-bookworm-arm64 base on a cache miss)
#   scripts/install-deps.sh test   run and real, plus the real peers and anchors the tests drive
set -euo pipefail

run_pkgs=(iproute2 nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils dbus procps util-linux
  openssh-client ca-certificates)
# QEMU Pis (`lab up --real N`) need qemu-system-arm, and the image they boot is built
# with debootstrap, its second stage under qemu-user-static.
real_pkgs=(qemu-system-arm debootstrap qemu-user-static binfmt-support debian-archive-keyring
  cpio)
# tests/tests/package.rs builds the .deb (dpkg-dev) and checks its unit (systemd-analyze)
# in a debootstrapped chroot.
test_pkgs=(postgresql isc-dhcp-client busybox kea-admin kea-dhcp4-server dnsmasq-base
  tftp-hpa atftp tftpd-hpa curl snmp snmpd
  btrfs-progs xfsprogs nfs-kernel-server python3 pkg-config chromium sqlite3
  dpkg-dev systemd)

case "${1:-test}" in
  run) want=("${run_pkgs[@]}") ;;
  real) want=("${run_pkgs[@]}" "${real_pkgs[@]}") ;;
  test) want=("${run_pkgs[@]}" "${real_pkgs[@]}" "${test_pkgs[@]}") ;;
  *) echo "usage: $0 run|real|test" >&2; exit 2 ;;
esac

if [ "$(id -u)" != 0 ]; then
  echo "error: run as root (packages are installed with apt-get; tests create network namespaces)" >&2
  exit 1
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # Services these packages start would hold ports the tests bind; keep them down.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  rm -f /usr/sbin/policy-rc.d
fi

# Daemons that packages installed earlier may have started are left alone: they may be
# the operator's own DNS, SNMP or NFS. The tests run theirs in namespaces and state
# directories of their own.

if ! command -v cargo >/dev/null; then
  echo "error: cargo not found. Install a current Rust toolchain (rustup, stable >= 1.90); Debian 12's rustc is too old." >&2
  exit 1
fi
