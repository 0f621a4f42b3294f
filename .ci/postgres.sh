#!/usr/bin/env bash
# Start the machine's PostgreSQL and make a `tipbox` role that may create test databases.
# Prints the URL for TIPBOX_TEST_DATABASE_URL. Needs root (CI runs as root).
set -euo pipefail
ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
{
  pg_lsclusters --no-header | grep -q "^$ver *main" || pg_createcluster "$ver" main
  if ! pg_ctlcluster "$ver" main status; then
    # The server is a daemon: it must not inherit any descriptor of ours. Whoever reads
    # our output (the $(...) in .ci/run, a CI runner's pipe) waits for every writer to
    # close it, so an inherited pipe would hold CI open for as long as PostgreSQL runs.
    # Python's subprocess closes every descriptor above 2 (close_fds is its default).
    python3 -c 'import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))' \
      pg_ctlcluster "$ver" main start
  fi
} </dev/null >"$log" 2>&1 || { cat "$log" >&2; echo "PostgreSQL did not start" >&2; exit 1; }
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q" </dev/null && break
  sleep 1
done
su postgres -c "psql -v ON_ERROR_STOP=1 -q" >&2 <<'SQL'
DO $$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tipbox') THEN
    CREATE ROLE tipbox LOGIN CREATEDB PASSWORD 'tipbox-test-only';
  END IF;
END$$;
-- A test database is dropped WITH (FORCE), which must also end an autovacuum worker
-- that may be in it at that moment; without this the drop is refused (tests/helpers.py).
GRANT pg_signal_backend TO tipbox;
SQL
port=$(pg_lsclusters --no-header | awk -v v="$ver" '$1 == v && $2 == "main" {print $3}')
echo "postgresql+psycopg://tipbox:tipbox-test-only@127.0.0.1:${port}/postgres"
