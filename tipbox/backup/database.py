"""A consistent snapshot of the database, with the ids of the store files its rows name,
and its restore.

The snapshot is held in memory: the database holds metadata only (a few hundred bytes
per item), the ciphertext is in the store, so this memory grows with the number of
items, never with their size.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, inspect, text
from sqlalchemy.engine import make_url

from tipbox.errors import BackupError

# Live web sessions are not backed up: they would only let a session cookie of the old
# server work on the new one, and they hold the last pages' flash messages.
SKIPPED_TABLE = "web_sessions"
_FILE_IDS = "SELECT id FROM items UNION ALL SELECT id FROM replies"


@dataclass(frozen=True)
class Snapshot:
    """The database as it was at one instant, and the store files its rows name."""

    kind: str  # "sqlite" or "postgresql"
    data: bytes = field(repr=False)
    file_ids: tuple[str, ...]

    @property
    def member_name(self) -> str:
        return "database.sqlite3" if self.kind == "sqlite" else "database.pgdump"


def take_snapshot(engine: Engine) -> Snapshot:
    """The database at one instant, read while it keeps serving (no lock on writers)."""
    if engine.dialect.name == "sqlite":
        return _sqlite_snapshot(_sqlite_path(engine))
    if engine.dialect.name == "postgresql":
        return _postgresql_snapshot(engine)
    raise BackupError(f"tipbox cannot back up a {engine.dialect.name} database; use SQLite "
                      "or PostgreSQL.")


def _sqlite_path(engine: Engine) -> Path:
    name = engine.url.database
    if not name or name == ":memory:":
        raise BackupError("The database is in memory: there is nothing on disk to back up.")
    return Path(name)


def _sqlite_snapshot(path: Path) -> Snapshot:
    # SQLite's online backup copies every page in one step, inside one read transaction:
    # a consistent instant, while the service's writers carry on in the write-ahead log.
    with closing(sqlite3.connect(path, timeout=30)) as live, \
            closing(sqlite3.connect(":memory:")) as copy:
        live.backup(copy)
        copy.execute("PRAGMA secure_delete=ON")
        copy.execute(f"DELETE FROM {SKIPPED_TABLE}")  # noqa: S608 - a constant
        copy.commit()
        # Rebuilt without free pages: nothing deleted on the live server travels along.
        copy.execute("VACUUM")
        ids = tuple(row[0] for row in copy.execute(_FILE_IDS))
        return Snapshot("sqlite", copy.serialize(), ids)


def _postgresql_snapshot(engine: Engine) -> Snapshot:
    # pg_dump runs on a snapshot this transaction exports, so the ids read here are those
    # of exactly the rows in the dump.
    with engine.connect() as conn:
        conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        snapshot_id = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        ids = tuple(row[0] for row in conn.execute(text(_FILE_IDS)))
        dump = _run_pg(engine, ["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
                                f"--exclude-table-data={SKIPPED_TABLE}",
                                f"--snapshot={snapshot_id}"])
        conn.rollback()
    return Snapshot("postgresql", dump, ids)


def restore_sqlite(data: Path, target: Path, gone: Iterable[str]) -> None:
    """Put the staged SQLite file ``data`` at ``target``, without the rows of ``gone``."""
    with closing(sqlite3.connect(data)) as conn:
        conn.execute("PRAGMA secure_delete=ON")
        _forget(conn, gone)
        conn.commit()
    os.chmod(data, 0o600)
    os.replace(data, target)


def _forget(conn: sqlite3.Connection, gone: Iterable[str]) -> None:
    for file_id in gone:
        conn.execute("DELETE FROM items WHERE id = ?", (file_id,))
        conn.execute("DELETE FROM replies WHERE id = ?", (file_id,))


def database_is_empty(engine: Engine) -> bool:
    return not inspect(engine).get_table_names()


def restore_postgresql(engine: Engine, dump: Path, gone: Iterable[str]) -> None:
    """Load the staged dump into the (empty) database in one transaction, then remove the
    rows of ``gone``."""
    _run_pg(engine, ["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error",
                     "--single-transaction", str(dump)])
    with engine.begin() as conn:
        for file_id in gone:
            conn.execute(text("DELETE FROM items WHERE id = :id"), {"id": file_id})
            conn.execute(text("DELETE FROM replies WHERE id = :id"), {"id": file_id})


def _run_pg(engine: Engine, command: list[str]) -> bytes:
    url = make_url(engine.url.render_as_string(hide_password=False))
    # libpq's own URL, without the password: a command line is readable by every user of
    # the machine. The password goes into the child's environment only.
    conninfo = url.set(drivername="postgresql", password=None).render_as_string(
        hide_password=False)
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    try:
        done = subprocess.run([*command, f"--dbname={conninfo}"], env=env,
                              capture_output=True, check=False)
    except FileNotFoundError:
        raise BackupError(f"{command[0]} is not installed. Install PostgreSQL's client "
                          "tools (Debian: apt-get install postgresql-client), then try "
                          "again.") from None
    if done.returncode != 0:
        said = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise BackupError(f"{command[0]} failed: {said[-1] if said else done.returncode}. "
                          "Check that the database is running and TIPBOX_DATABASE_URL is "
                          "right, then try again.")
    return done.stdout
