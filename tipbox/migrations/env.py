"""Alembic environment: runs against the URL tipbox hands in, with tipbox's metadata."""

from __future__ import annotations

from alembic import context

from tipbox.db import make_engine
from tipbox.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "tipbox.db.upgrade sets sqlalchemy.url"  # noqa: S101

engine = make_engine(url)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
