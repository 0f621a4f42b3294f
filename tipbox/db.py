"""Engine, sessions and migrations. SQLite in the data folder is the embedded default."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str) -> Engine:
    """hide_parameters: SQLAlchemy quotes bound values (a TOTP secret, say) in errors."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               hide_parameters=True)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True, hide_parameters=True)


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


def forget_deleted(session: Session) -> None:
    """After a deletion: copy SQLite's write-ahead log into the (secure_delete) database
    and truncate it, so deleted rows do not linger in the -wal file."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


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
