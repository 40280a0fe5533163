#!/usr/bin/env bash
# Fails, naming the process, when a port a benchmark binds in this machine's own network
# namespace is already held (bench/tftp.sh: udp/69, where its anchor servers listen).
# Never stops anything: the holder may be the operator's. The tests bind no such port.
#   scripts/check-ports.sh udp/69 tcp/8080 ...
set -euo pipefail

ports=("$@")
[ ${#ports[@]} -gt 0 ] || { echo "usage: $0 PROTO/PORT... (tcp/N or udp/N)" >&2; exit 2; }

# Prints "pid command line" for each process ss names in a users:(...) field.
holders() {
  grep -o 'pid=[0-9]*' <<<"$1" | cut -d= -f2 | sort -un | while read -r pid; do
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
    echo "pid $pid: ${cmd% }"
  done
}

busy=0
for p in "${ports[@]}"; do
  proto=${p%%/*} port=${p##*/}
  case "$proto" in
    tcp) flag=-t ;;
    udp) flag=-u ;;
    *) echo "check-ports: bad port $p (want tcp/N or udp/N)" >&2; exit 2 ;;
  esac
  lines=$(ss -Hlnp "$flag" "sport = :$port" 2>/dev/null || true)
  [ -n "$lines" ] || continue
  busy=1
  echo "error: $proto port $port, which the tests bind in this machine's network namespace, is held by:" >&2
  who=$(holders "$lines")
  echo "${who:-  (no process shown: $lines)}" | sed 's/^/  /' >&2
done
if [ "$busy" = 1 ]; then
  cat >&2 <<'MSG'
The tests never stop a process they did not start. Stop these yourself if you may (for a
packaged service: systemctl stop <its unit>), or run the tests on another machine or in
a container; another test run holds them too while it runs.
MSG
  exit 1
fi
