"""Schema migrations keep what is stored, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from tipbox.db import alembic_config, is_current, make_engine, make_session_factory, upgrade
from tipbox.models import Item, ItemKind, ItemRead, Journalist, Reply, Source

DAY = dt.date(2026, 11, 30)


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'tipbox.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_upgrading_keeps_every_row_that_points_at_a_journalist(empty_database: str) -> None:
    # 0004 is the last revision before one that changes the journalists table. On SQLite
    # such a change rebuilds the table, and with foreign keys on that would empty
    # item_reads and strip each reply of its author.
    command.upgrade(alembic_config(empty_database), "0004")
    engine = make_engine(empty_database)
    with make_session_factory(engine).begin() as db:
        journalist = Journalist(username="ada", passphrase_hash="x", totp_secret="A" * 32,
                                created_on=DAY)
        source = Source(codename_hash="h" * 64, designation="blue whale", created_on=DAY,
                        last_activity_on=DAY)
        db.add_all([journalist, source])
        db.flush()
        db.add(Item(id="i1", source_id=source.id, seq=1, kind=ItemKind.MESSAGE, size=10,
                    key_fingerprints="F" * 40, submitted_on=DAY))
        db.add(Reply(id="r1", source_id=source.id, journalist_id=journalist.id, seq=2,
                     size=10, key_fingerprints="F" * 40, sent_on=DAY))
        db.flush()
        db.add(ItemRead(item_id="i1", journalist_id=journalist.id))

    upgrade(empty_database)

    assert is_current(engine)
    with make_session_factory(engine)() as db:
        assert db.scalar(select(func.count()).select_from(ItemRead)) == 1
        assert db.scalar(select(Reply.journalist_id)) == journalist.id
        assert db.scalar(select(Journalist.totp_secret)) == "A" * 32
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:  # every later connection has them on again
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_duplicate_item_numbers_are_renumbered_in_stored_order_then_refused(
        empty_database: str) -> None:
    command.upgrade(alembic_config(empty_database), "0005")
    engine = make_engine(empty_database)
    items = Item.__table__
    with make_session_factory(engine).begin() as db:
        twice = Source(codename_hash="h" * 64, designation="blue whale", created_on=DAY,
                       last_activity_on=DAY)
        clean = Source(codename_hash="g" * 64, designation="red fox", created_on=DAY,
                       last_activity_on=DAY)
        db.add_all([twice, clean])
        db.flush()
        # What four parallel submissions left: message 1, file 2, message 3 x2, file 4 x2.
        # Core inserts, in this order: the ORM would batch them in its own order.
        for item_id, seq in [("a", 1), ("b", 2), ("c", 3), ("d", 3), ("e", 4), ("f", 4)]:
            db.execute(items.insert().values(
                id=item_id, source_id=twice.id, seq=seq, kind=ItemKind.MESSAGE.value,
                size=1, key_fingerprints="F" * 40, submitted_on=DAY))
        db.execute(items.insert().values(
            id="z", source_id=clean.id, seq=7, kind=ItemKind.FILE.value, size=1,
            key_fingerprints="F" * 40, submitted_on=DAY))
        twice_id, clean_id = twice.id, clean.id

    upgrade(empty_database)

    with make_session_factory(engine)() as db:
        numbered = db.execute(select(Item.id, Item.seq).where(Item.source_id == twice_id)
                              .order_by(Item.seq)).all()
        assert [tuple(row) for row in numbered] == [
            ("a", 1), ("b", 2), ("c", 3), ("d", 4), ("e", 5), ("f", 6)]
        assert db.scalar(select(Item.seq).where(Item.source_id == clean_id)) == 7
    with pytest.raises(IntegrityError), make_session_factory(engine).begin() as db:
        db.add(Item(id="y", source_id=twice_id, seq=6, kind=ItemKind.FILE, size=1,
                    key_fingerprints="F" * 40, submitted_on=DAY))
    engine.dispose()
