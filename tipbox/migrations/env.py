"""Alembic environment: runs against the URL tipbox hands in, with tipbox's metadata."""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from tipbox.db import make_engine
from tipbox.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "tipbox.db.upgrade sets sqlalchemy.url"  # noqa: S101

engine = make_engine(url)
with engine.connect() as connection:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # SQLite changes a column by copying the table and dropping the old one. With
        # foreign keys on, that DROP deletes (ON DELETE CASCADE) or nulls (SET NULL) every
        # row that points at the table. The pragma only takes effect outside a transaction.
        connection.execute(text("PRAGMA foreign_keys=OFF"))
        connection.commit()
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=sqlite)
    with context.begin_transaction():
        context.run_migrations()
        if sqlite:
            broken = connection.execute(text("PRAGMA foreign_key_check")).fetchall()
            if broken:  # the transaction rolls back: nothing half-migrated is kept
                raise RuntimeError(f"a migration broke {len(broken)} foreign key(s)")
    if sqlite:
        connection.execute(text("PRAGMA foreign_keys=ON"))
engine.dispose()
