#!/usr/bin/env bash
# The test command: installs what the tests need (Debian 12, as root), starts a private
# PostgreSQL, and runs formatting, clippy and every test of the workspace against SQLite
# and PostgreSQL. The tests' DHCP, TFTP and NFS servers run in network namespaces of
# their own, so no port of this machine's is checked first: what else runs here does
# not matter.
# Every step runs even when an earlier one failed; the exit status is non-zero if any did.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh test

# PostgreSQL for the shared-inventory half of the suite: a throwaway cluster of our own
# (own directory, port and socket directory), so the machine's clusters are never touched.
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
pg_dir=$(mktemp -d /var/tmp/bramble-test-pg.XXXXXX)
pg_pid=
stop_pg() {
  if [ -n "$pg_pid" ] && kill -INT "$pg_pid" 2>/dev/null; then
    # A fast shutdown; wait for the postmaster to go before removing its directory.
    for _ in $(seq 100); do kill -0 "$pg_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$pg_dir"
}
trap stop_pg EXIT
pg_port=${BRAMBLE_TEST_PG_PORT:-55432}
while ss -Hltn "sport = :$pg_port" | grep -q .; do pg_port=$((pg_port + 1)); done
mkdir "$pg_dir/data" "$pg_dir/socket"
echo bramble >"$pg_dir/password"
chown -R postgres: "$pg_dir"
as_pg() { runuser -u postgres -- "$@"; }
as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U bramble --pwfile="$pg_dir/password" \
  --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$pg_dir/initdb.log" ||
  { cat "$pg_dir/initdb.log" >&2; exit 1; }
as_pg "$pg_bin/pg_ctl" start -w -D "$pg_dir/data" -l "$pg_dir/postgres.log" \
  -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_dir/socket -c max_connections=200 -c fsync=off" \
  >/dev/null || { cat "$pg_dir/postgres.log" >&2; exit 1; }
pg_pid=$(head -n1 "$pg_dir/data/postmaster.pid")
export BRAMBLE_TEST_POSTGRES="postgres://bramble:bramble@127.0.0.1:$pg_port/postgres"
echo "test PostgreSQL: pid $pg_pid, 127.0.0.1:$pg_port, $pg_dir"

failed=()
cargo fmt --all --check || failed+=("cargo fmt --all --check")
cargo clippy --workspace --all-targets --locked -- -D warnings || failed+=("cargo clippy")
cargo test --workspace --locked --no-fail-fast "$@" || failed+=("cargo test")
if [ ${#failed[@]} -gt 0 ]; then
  printf 'FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
