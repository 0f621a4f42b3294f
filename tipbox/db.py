"""Engine, sessions and migrations. SQLite in the data folder is the embedded default."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from tipbox.errors import ConfigError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine for ``url``, or ConfigError if it is not a URL tipbox can use.

    hide_parameters: SQLAlchemy quotes bound values (a TOTP secret, say) in errors."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, hide_parameters=True,
                                   connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return create_engine(url, pool_pre_ping=True, hide_parameters=True)
    except (ArgumentError, ValueError) as exc:
        # The class only: the message may quote the URL, which may hold a password.
        raise ConfigError(f"TIPBOX_DATABASE_URL is not a database URL tipbox can use "
                          f"({type(exc).__name__}). Write it as in the README, for example "
                          "postgresql+psycopg://USER:PASSWORD@HOST/DATABASE.") from None


def rows_matched(result: Result[*tuple[Any, ...]]) -> int:
    """How many rows an UPDATE or DELETE run through ``Session.execute`` matched."""
    # Session.execute is typed as returning a Result; for an UPDATE or DELETE it is a
    # CursorResult, which has the row count. tuple[Any, ...] is SQLAlchemy's own type for
    # a result whose columns it does not know; an UPDATE without RETURNING has none.
    return cast(CursorResult[*tuple[Any, ...]], result).rowcount


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # secure_delete overwrites deleted rows, so a deleted source leaves no readable trace.
    cur.execute("PRAGMA secure_delete=ON")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    # After a checkpoint the WAL shrinks back to nothing instead of keeping old pages.
    cur.execute("PRAGMA journal_size_limit=0")
    cur.execute("PRAGMA synchronous=FULL")
    cur.close()


FORGET_AFTER_COMMIT = "tipbox_forget_after_commit"


def forget_deleted(session: Session) -> None:
    """Ask that, once this session's transaction commits, SQLite's write-ahead log be
    copied into the (secure_delete) database file and truncated.

    Call it from any transaction that deletes or overwrites something a seized server
    should not show (a reply, a source, a session). The checkpoint must come after the
    commit: run inside the transaction it would leave the deletion's own frames, which
    hold the old page images, in the -wal file.
    """
    session.info[FORGET_AFTER_COMMIT] = True


def _checkpoint_after_commit(session: Session) -> None:
    if not session.info.pop(FORGET_AFTER_COMMIT, False):
        return
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    if engine.dialect.name != "sqlite":
        return
    try:
        if not checkpoint_wal(engine):
            log.warning("a reader kept part of the write-ahead log after a deletion; the "
                        "next checkpoint takes the rest")
    except Exception as exc:
        log.warning("could not checkpoint the write-ahead log after a deletion (%s); the "
                    "next deletion or SQLite's own checkpoint takes it", type(exc).__name__)


def _forget_request_dropped(session: Session, _previous: object = None) -> None:
    # A rolled-back transaction deleted nothing: the next one must ask again.
    session.info.pop(FORGET_AFTER_COMMIT, None)


def checkpoint_wal(engine: Engine) -> bool:
    """Copy SQLite's WAL into the database file and truncate it. False if a reader kept
    part of it (the next checkpoint, or SQLite's own, takes the rest).

    It runs on a connection of its own, outside the engine's pool: called as a session
    commits, that session may still hold the pool's last free connection."""
    path = engine.url.database
    if not path or path == ":memory:":
        return True
    with closing(sqlite3.connect(path, timeout=5)) as conn:
        busy, _log_frames, _copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return not busy


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(engine, expire_on_commit=False)
    event.listen(factory, "after_commit", _checkpoint_after_commit)
    event.listen(factory, "after_soft_rollback", _forget_request_dropped)
    return factory


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Bring the database schema to the newest migration."""
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def is_current(engine: Engine) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads()) == set(script.get_heads())
