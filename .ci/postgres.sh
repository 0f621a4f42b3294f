#!/usr/bin/env bash
# Start the machine's PostgreSQL and make a `tipbox` role that may create test databases.
# Prints the URL for TIPBOX_TEST_DATABASE_URL. Needs root (CI runs as root).
set -euo pipefail
# Only the URL goes to standard output; everything the tools print goes to stderr.
exec 3>&1 1>&2
ver=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
pg_lsclusters --no-header | grep -q "^$ver *main" || pg_createcluster "$ver" main >/dev/null
pg_ctlcluster "$ver" main start 2>/dev/null || pg_ctlcluster "$ver" main status >/dev/null
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q" && break
  sleep 1
done
su postgres -c "psql -v ON_ERROR_STOP=1 -q" <<'SQL'
DO $$BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tipbox') THEN
    CREATE ROLE tipbox LOGIN CREATEDB PASSWORD 'tipbox-test-only';
  END IF;
END$$;
SQL
port=$(pg_lsclusters --no-header | awk -v v="$ver" '$1 == v && $2 == "main" {print $3}')
echo "postgresql+psycopg://tipbox:tipbox-test-only@127.0.0.1:${port}/postgres" >&3
