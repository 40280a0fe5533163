#!/usr/bin/env bash
# Bramble's main job on embedded defaults: builds the controller, installs what it
# needs (Debian 12, as root), mints a first operator token and runs `bramble serve`
# with SQLite in /var/lib/bramble, the API on 127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh run
cargo build --release --locked -p bramble
bin=target/release/bramble
state=${BRAMBLE_STATE_DIR:-/var/lib/bramble}
mkdir -p "$state"
if [ ! -s "$state/operator.token" ]; then
  (umask 077; "$bin" token create --role operator --label first-operator --state-dir "$state" > "$state/operator.token")
fi
cat <<MSG
Bramble controller starting on http://127.0.0.1:8080 (state in $state).
In another shell:
  export BRAMBLE_TOKEN=\$(cat $state/operator.token)
  $bin pi list
  $bin image list
MSG
exec "$bin" serve --state-dir "$state" --listen "${BRAMBLE_LISTEN:-127.0.0.1:8080}"
