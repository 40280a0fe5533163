#!/usr/bin/env bash
# Makes tests/fixtures/upgrade/TAG.sqlite.sql: an inventory made BY the release TAG, for
# tests/tests/upgrade.rs, which upgrades every fixture there with the current binary.
# One fixture per release: run this for each new release tag and commit what it writes
# (TAG.sqlite.sql, the `sqlite3 .dump`; TAG.tokens, the fixture's two API tokens).
#
#   scripts/make-upgrade-fixture.sh v0.1.0
#
# It builds TAG's `bramble` in a git worktree of its own (debug, in CARGO_TARGET_DIR,
# default /var/tmp/bramble-fixture-target; or set BRAMBLE_BIN to a built binary of TAG).
# Give it a target directory no other checkout builds in: cargo names a workspace's own
# crates by their path inside the workspace and trusts file times, so a checkout sharing
# the directory can afterwards be served TAG's build of a crate as fresh. It lets that
# binary create and migrate the database (`token create`) and fill it through its API
# (`serve`: switches with credentials, shelves, Pis in several states and owners, a
# maintenance mark, jobs and their events), stops it, then adds with sqlite3 what the API
# cannot make without hardware (an image, a deployed Pi, snapshots, hardware history, a
# console boot, a DHCP lease). Needs: cargo, git, curl, sqlite3, python3.
set -euo pipefail
tag=${1:?usage: $0 TAG (a release tag, e.g. v0.1.0)}
repo=$(cd "$(dirname "$0")/.." && pwd)
out_dir=$repo/tests/fixtures/upgrade
work=$(mktemp -d /var/tmp/bramble-fixture.XXXXXX)
server=
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  if [ -d "$work/src" ]; then git -C "$repo" worktree remove --force "$work/src" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

bin=${BRAMBLE_BIN:-}
if [ -z "$bin" ]; then
  git -C "$repo" worktree add --detach "$work/src" "$tag" >/dev/null
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/bramble-fixture-target}
  start=$(date +%s)
  (cd "$work/src" && cargo build -p bramble)
  echo "built bramble $tag in $(($(date +%s) - start)) s"
  bin=$CARGO_TARGET_DIR/debug/bramble
fi
"$bin" --version

db=$work/bramble.db
url="sqlite://$db?mode=rwc"
local_args=(--database "$url" --state-dir "$work/state" --name fixture)
operator=$("$bin" token create --role operator --label fixture-operator "${local_args[@]}")
customer=$("$bin" token create --role customer --customer cust-a --label fixture-cust-a "${local_args[@]}")
"$bin" token create --role customer --customer cust-b --label fixture-cust-b "${local_args[@]}" >/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
api=http://127.0.0.1:$port
BRAMBLE_LOG=warn "$bin" serve --listen "127.0.0.1:$port" "${local_args[@]}" 2>"$work/serve.log" &
server=$!
for _ in $(seq 100); do curl -fs "$api/healthz" >/dev/null && break; sleep 0.2; done
curl -fs "$api/healthz" >/dev/null || { cat "$work/serve.log" >&2; exit 1; }

call() { # METHOD PATH [JSON]: the response body; fails on an HTTP error.
  curl -fsS -X "$1" -H "Authorization: Bearer $operator" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} "$api$2"
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# Switches at documentation addresses: nothing answers, so jobs fail at their power step.
call POST /v1/switches '{"name": "sw-v3", "address": "192.0.2.10:161", "trunk_port": 49,
  "credentials": {"version": "v3", "user": "bramble", "auth_pass": "authpass1", "priv_pass": "privpass1"}}' >/dev/null
call POST /v1/switches '{"name": "sw-v2c", "address": "192.0.2.11:161", "trunk_port": 25,
  "credentials": {"version": "v2c", "community": "fixture-community"}}' >/dev/null
shelf1=$(call POST /v1/shelves '{"name": "rack1", "switch": "sw-v3", "first_port": 1, "last_port": 8}')
call POST /v1/shelves '{"name": "rack2", "switch": "sw-v2c", "first_port": 1, "last_port": 4}' >/dev/null
models=(3b 3b+ 4b 5 4b 3b)
pis=()
for i in 0 1 2 3 4 5; do
  slot=$(echo "$shelf1" | field "['slots'][$i]['id']")
  pi=$(call POST /v1/pis "{\"serial\": \"f1a7000$i\", \"mac\": \"b8:27:eb:f1:00:0$i\",
    \"model\": \"${models[$i]}\", \"slot\": \"$slot\"}")
  pis+=("$(echo "$pi" | field "['id']")")
done
# Serials f1a70000-5 (Pis 0-5): 0 stays new; 1, 2 ready for cust-a; 3 ready for cust-b;
# 4 ready, unowned, in maintenance; 5 retired. 1 and 3 then fail their jobs; 2 is made
# deployed below.
for i in 1 2 3 4; do call PATCH "/v1/pis/${pis[$i]}" '{"state": "ready"}' >/dev/null; done
call PATCH "/v1/pis/${pis[1]}" '{"owner": "cust-a"}' >/dev/null
call PATCH "/v1/pis/${pis[2]}" '{"owner": "cust-a"}' >/dev/null
call PATCH "/v1/pis/${pis[3]}" '{"owner": "cust-b"}' >/dev/null
call PATCH "/v1/pis/${pis[5]}" '{"state": "retired"}' >/dev/null
call POST "/v1/pis/${pis[4]}/maintenance" '{"on": true}' >/dev/null
# Jobs: a reboot (fails: the switch does not answer) and a power-off, with an
# Idempotency-Key.
jobs=("$(call POST "/v1/pis/${pis[1]}/reboot" '{}' | field "['id']")")
jobs+=("$(curl -fsS -X POST -H "Authorization: Bearer $operator" -H 'Idempotency-Key: fixture-key-1' \
  -H 'Content-Type: application/json' --data '{}' "$api/v1/pis/${pis[3]}/power-off" | field "['id']")")
for job in "${jobs[@]}"; do # until each has failed (nothing answers SNMP there)
  for _ in $(seq 240); do
    state=$(call GET "/v1/jobs/$job" | field "['state']")
    [ "$state" = failed ] && break
    sleep 0.5
  done
  [ "$state" = failed ] || { echo "job $job is still $state" >&2; exit 1; }
done
kill -TERM "$server"; wait "$server" || true; server=

# What only hardware makes, as the release's own code would have written it.
now=$(($(date +%s) * 1000))
sqlite3 "$db" <<SQL
INSERT INTO images (name, release, arch, version, status, size_bytes, created_at, models)
  VALUES ('fixture-image', 'bookworm', 'arm64', '2026.11.1', 'ready', 123456789, $now, '["4b","5"]');
UPDATE pis SET image = 'fixture-image', state = 'deployed', power = 'on',
  ssh_host_keys = '[{"type":"ssh-ed25519","fingerprint":"SHA256:fixturefixturefixture"}]'
  WHERE id = '${pis[2]}';
INSERT INTO snapshots (id, pi_id, owner, job_id, reason, image, version, size_bytes, created_at)
  VALUES ('snap-job-fixture1', '${pis[2]}', 'cust-a', 'job-fixture1', 'reinstall', 'fixture-image', '2026.11.1', 4096, $now),
         ('snap-job-fixture2', '${pis[2]}', 'cust-a', 'job-fixture2', 'manual', 'fixture-image', '2026.11.1', 8192, $now + 1);
INSERT INTO pi_hardware_history (pi_id, slot_id, customer, at, old_mac, old_serial, old_model,
    new_mac, new_serial, new_model, how, accepted_by)
  SELECT id, slot_id, owner, $now, 'b8:27:eb:f1:00:99', 'f1a70099', '4b', mac, serial, model,
    'maintenance', 'dhcp' FROM pis WHERE id = '${pis[4]}';
INSERT INTO events (at, pi_id, job_id, customer, actor, kind, message, data)
  VALUES ($now, '${pis[2]}', NULL, 'cust-a', 'tftp', 'tftp.read', 'read kernel8.img', '{"file":"kernel8.img"}');
INSERT INTO console_boots (pi_id, boot, customer, started_at, kernel_event, bytes, lines, dropped)
  VALUES ('${pis[2]}', 1, 'cust-a', $now, last_insert_rowid(), 40, 2, 0);
INSERT INTO console_lines (boot_id, at, line)
  VALUES (last_insert_rowid(), $now, CAST('[    0.000000] Booting Linux' AS BLOB)),
         ((SELECT MAX(id) FROM console_boots), $now + 5, CAST('fixture login:' AS BLOB));
INSERT INTO dhcp_leases (interface, mac, addr, expires_at, serial, slot_id, updated_at)
  SELECT 'vlan' || s.vlan, p.mac, s.pi_ip, $now + 3600000, p.serial, p.slot_id, $now
  FROM pis p JOIN slots s ON s.id = p.slot_id WHERE p.id = '${pis[2]}';
SQL

mkdir -p "$out_dir"
{
  echo "-- An inventory made by bramble $tag (scripts/make-upgrade-fixture.sh $tag)."
  echo "-- Loaded and upgraded by tests/tests/upgrade.rs: never edit; make a new one per release."
  sqlite3 "$db" .dump
} >"$out_dir/$tag.sqlite.sql"
printf 'operator %s\ncustomer cust-a %s\n' "$operator" "$customer" >"$out_dir/$tag.tokens"
echo "wrote $out_dir/$tag.sqlite.sql and $out_dir/$tag.tokens"
sqlite3 "$db" "SELECT 'schema ' || MAX(version) FROM _sqlx_migrations; SELECT 'pis ' || COUNT(*) FROM pis; SELECT 'jobs ' || COUNT(*) FROM jobs; SELECT 'events ' || COUNT(*) FROM events;"
