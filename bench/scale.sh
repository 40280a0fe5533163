#!/usr/bin/env bash
# Scale benchmark (issue 14): loads PIS Pis (shelves of 96, owned by CUSTOMERS customers)
# through the HTTP API, then measures the control panel's requests with CLIENTS
# concurrent clients, side by side in one run:
#   - three `bramble serve` processes on one PostgreSQL (requests round-robin over them);
#   - one `bramble serve` on SQLite;
# then job throughput: JOBS reboots of simulated Pis on a virtual shelf (bench example
# `jobstorm`), on SQLite and on PostgreSQL. Prints Markdown rows; method and figures are
# in docs/benchmarks.md ("Scale").
#
#   bench/scale.sh                                   # 10,000 Pis, 1,000 customers, 64 clients, 20 s
#   PIS=960 CUSTOMERS=100 DURATION=5 JOBS=96 bench/scale.sh   # a smoke run
#
# Knobs: PIS CUSTOMERS CLIENTS DURATION (s per request kind) WARMUP (s) CONCURRENCY (load)
# JOBS JOB_PIS (simulated Pis on the virtual shelf, <= 96) SETTLE_MS, PARTS (any of
# "pg sqlite jobs", default all), SKIP_BUILD=1 (use the release binaries already built). Needs root (a private PostgreSQL run as `postgres`,
# network namespaces for the virtual shelf).
set -euo pipefail
cd "$(dirname "$0")/.."

PIS=${PIS:-10000}
CUSTOMERS=${CUSTOMERS:-1000}
CLIENTS=${CLIENTS:-64}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-64}
JOBS=${JOBS:-1000}
JOB_PIS=${JOB_PIS:-96}
SETTLE_MS=${SETTLE_MS:-200}
PARTS=${PARTS:-pg sqlite jobs}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
export BRAMBLE_LOG=${BRAMBLE_LOG:-warn}

if [ "$(id -u)" != 0 ]; then
  echo "scale: needs root (a private PostgreSQL cluster, network namespaces)" >&2
  exit 1
fi
has() { case " $PARTS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  # One target kind per invocation: `--bin`/`--example` would limit every package named.
  cargo build --release -q -p bramble --bin bramble --example jobstorm
  cargo build --release -q -p bramble-loadgen
fi
bin=$CARGO_TARGET_DIR/release/bramble
loadgen=$CARGO_TARGET_DIR/release/bramble-loadgen
jobstorm=$CARGO_TARGET_DIR/release/examples/jobstorm
# The cluster core (`bramble serve --name`, `[cluster]`, per-controller switches) decides
# how controllers are configured and switches assigned; without it the controllers
# share one VLAN range, which caps the inventory at the range's size (3,800 slots).
cluster=0
if "$bin" serve --help | grep -q -- '--name'; then cluster=1; fi

if [ "$cluster" = 0 ] && [ "$PIS" -gt 3744 ]; then
  echo "scale: this bramble has no cluster core: storage VLANs come from one range for all" \
    "switches (200-3999), so at most 39 shelves of 96 (PIS=3744) fit" >&2
  exit 1
fi

work=$(mktemp -d /var/tmp/bramble-scale.XXXXXX)
chmod 755 "$work"
pg_pid=
serve_pids=()
stop_serves() {
  for pid in "${serve_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${serve_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  serve_pids=()
}
cleanup() {
  stop_serves
  if [ -n "$pg_pid" ] && kill -INT "$pg_pid" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$pg_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { # first free TCP port from $1
  local p=$1
  while ss -Hltn "sport = :$p" | grep -q .; do p=$((p + 1)); done
  echo "$p"
}

# A throwaway PostgreSQL of our own (own directory, port and socket dir), as
# scripts/test.sh makes it; fsync stays on, as SQLite's synchronous=FULL does.
start_pg() {
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  pg_port=$(free_port 56432)
  mkdir "$work/pg" "$work/pg/data" "$work/pg/socket"
  echo bramble >"$work/pg/password"
  chown -R postgres: "$work/pg"
  runuser -u postgres -- "$pg_bin/initdb" -D "$work/pg/data" -U bramble --pwfile="$work/pg/password" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$work/pg/initdb.log" ||
    { cat "$work/pg/initdb.log" >&2; exit 1; }
  runuser -u postgres -- "$pg_bin/pg_ctl" start -w -D "$work/pg/data" -l "$work/pg/postgres.log" \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $work/pg/socket -c max_connections=200" \
    >/dev/null || { cat "$work/pg/postgres.log" >&2; exit 1; }
  pg_pid=$(head -n1 "$work/pg/data/postmaster.pid")
  pg_url="postgres://bramble:bramble@127.0.0.1:$pg_port/postgres"
  echo "PostgreSQL: pid $pg_pid, 127.0.0.1:$pg_port ($("$pg_bin/postgres" --version))" >&2
}

# write_config NAME PORT DATABASE: a controller that reaches no hardware on its own (no
# reconciler, no netboot, no NFS); jobs submitted by the benchmark time out on switches
# that do not answer (TEST-NET addresses).
write_config() {
  local name=$1 port=$2 db=$3
  mkdir -p "$work/$name"
  {
    echo "listen = \"127.0.0.1:$port\""
    echo "database = \"$db\""
    echo "state_dir = \"$work/$name\""
    if [ "$cluster" = 1 ]; then printf '[cluster]\nname = "%s"\n' "$name"; fi
    printf '[addressing]\nstorage_supernet = "10.0.0.0/12"\n'
    printf '[switches]\nreconcile_seconds = 0\nsnmp_timeout_ms = 200\nsnmp_retries = 0\n'
    printf '[images]\nnfs = "none"\n'
  } >"$work/$name.toml"
}

# serve NAME: starts a controller from its config and waits until it answers.
serve() {
  local name=$1 port
  port=$(sed -n 's/^listen = "127.0.0.1:\([0-9]*\)"/\1/p' "$work/$name.toml")
  "$bin" serve --config "$work/$name.toml" >"$work/$name.log" 2>&1 &
  serve_pids+=($!)
  for _ in $(seq 300); do
    if curl -fs "http://127.0.0.1:$port/healthz" >/dev/null; then return 0; fi
    kill -0 "${serve_pids[-1]}" 2>/dev/null || { cat "$work/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  echo "scale: controller $name did not answer on $port" >&2
  exit 1
}

# measure LABEL TOKEN URLS...: load the inventory and send the requests.
measure() {
  local label=$1 token=$2 urls
  shift 2
  urls=$(IFS=,; echo "$*")
  # With the cluster API: switches spread over the controllers, and each switch its own
  # layer-2 domain (its own trunk), so storage VLAN ids repeat across switches.
  local controllers=()
  if [ "$cluster" = 1 ]; then controllers=(--l2-domain-per-switch); fi
  if [ "$cluster" = 1 ] && [ "$#" -gt 1 ]; then controllers+=(--controllers "$(IFS=,; echo "${names[*]}")"); fi
  echo "load before loading ($label): $(loadavg)" >&2
  BRAMBLE_TOKEN=$token "$loadgen" load --api "$urls" --pis "$PIS" --customers "$CUSTOMERS" \
    --concurrency "$CONCURRENCY" --label "$label" --out "$work/fixture-$label.json" \
    "${controllers[@]}" >>"$work/load.md"
  echo "load before requests ($label): $(loadavg)" >&2
  BRAMBLE_TOKEN=$token "$loadgen" run --api "$urls" --fixture "$work/fixture-$label.json" \
    --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" --label "$label" >>"$work/requests.md"
}

echo "# scale: $PIS Pis, $CUSTOMERS customers, $CLIENTS clients, ${DURATION} s per request kind," \
  "$(date -u +%FT%TZ), commit $(git rev-parse --short HEAD), $(nproc) cores, load: $(loadavg)," \
  "cluster API: $([ "$cluster" = 1 ] && echo yes || echo no)"
printf '| setup | phase | items | requests | time | items/s | load (1 min) |\n|---|---|---|---|---|---|---|\n' >"$work/load.md"
printf '| setup | request | p50 | p99 | max | requests | req/s | errors | load (1 min) |\n|---|---|---|---|---|---|---|---|---|\n' >"$work/requests.md"

if has pg; then
  start_pg
  names=(c1 c2 c3)
  urls=()
  for name in "${names[@]}"; do
    port=$(free_port 18180)
    write_config "$name" "$port" "$pg_url"
    # The first creates the schema; the others start once it answers.
    serve "$name"
    urls+=("http://127.0.0.1:$port")
  done
  token=$("$bin" token create --role operator --config "$work/c1.toml" 2>/dev/null)
  measure "3 x PostgreSQL" "$token" "${urls[@]}"
  stop_serves
fi

if has sqlite; then
  port=$(free_port 18190)
  write_config single "$port" "sqlite://$work/single/bramble.db?mode=rwc"
  serve single
  token=$("$bin" token create --role operator --config "$work/single.toml" 2>/dev/null)
  measure "1 x SQLite" "$token" "http://127.0.0.1:$port"
  stop_serves
fi

echo
echo "## Loading through the API"
cat "$work/load.md"
echo
echo "## Requests ($CLIENTS clients, ${DURATION} s each after ${WARMUP} s warm-up)"
cat "$work/requests.md"

if has jobs; then
  echo
  echo "## Job throughput: $JOBS reboots of $JOB_PIS simulated Pis, all of a wave at once"
  echo "load before: $(loadavg)"
  "$jobstorm" --pis "$JOB_PIS" --jobs "$JOBS" --settle-ms "$SETTLE_MS" --label "1 x SQLite" --header
  echo "load between: $(loadavg)"
  if [ -z "$pg_pid" ]; then start_pg; fi
  PGPASSWORD=bramble "$pg_bin/psql" -q -h 127.0.0.1 -p "$pg_port" -U bramble -d postgres \
    -c 'CREATE DATABASE jobs'
  # The lab's controller runs in a network namespace of its own, where 127.0.0.1 is not
  # this one's: it reaches PostgreSQL by its Unix socket.
  "$jobstorm" --pis "$JOB_PIS" --jobs "$JOBS" --settle-ms "$SETTLE_MS" --label "1 x PostgreSQL" \
    --database "postgres://bramble:bramble@localhost:$pg_port/jobs?host=$work/pg/socket"
  echo "load after: $(loadavg)"
fi
