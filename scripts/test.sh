#!/usr/bin/env bash
# The test command: installs what the tests need (Debian 12, as root), starts
# PostgreSQL, and runs every test of the workspace against SQLite and PostgreSQL.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh test

# PostgreSQL for the shared-inventory half of the suite.
pg_ctlcluster 15 main start 2>/dev/null || pg_ctlcluster 15 main status >/dev/null
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname = 'bramble'\"" | grep -q 1 ||
  su postgres -c "psql -qc \"CREATE ROLE bramble LOGIN SUPERUSER PASSWORD 'bramble'\""
export BRAMBLE_TEST_POSTGRES="postgres://bramble:bramble@127.0.0.1:5432/postgres"
# Databases left by tests that panicked.
for db in $(su postgres -c "psql -qtAc \"SELECT datname FROM pg_database WHERE datname LIKE 'bramble_test_%'\""); do
  su postgres -c "dropdb --force $db" || true
done

cargo test --workspace --locked "$@"
