"""Deletion deletes: on SQLite, nothing of a deleted or overwritten row stays readable in
the database file or its write-ahead log once the deleting transaction has committed."""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy import create_engine
from sqlalchemy.pool import QueuePool

from tests.conftest import FAST_SCRYPT
from tests.helpers import Newsroom, SourceBrowser
from tests.newsroom_fixtures import add_journalist, submit
from tipbox.codenames import CodenameHasher, generate_codename
from tipbox.config import Settings
from tipbox.crypto.keyring import load_keyring
from tipbox.crypto.reply_keys import ReplyKeyDeriver
from tipbox.db import make_engine, make_session_factory
from tipbox.inbox import InboxService
from tipbox.key_registry import StaticKeyring
from tipbox.models import Item, Reply, Source
from tipbox.replies import ReplyService
from tipbox.sources import SourceService
from tipbox.storage import CiphertextStore


def on_disk(data_dir: Path) -> bytes:
    """Every byte SQLite keeps: the database file and, if there is one, its WAL."""
    wal = data_dir / "tipbox.db-wal"
    return (data_dir / "tipbox.db").read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_a_reply_the_source_deleted_is_gone_from_the_database_and_its_log(
        settings: Settings, newsroom: Newsroom) -> None:
    engine = make_engine(settings.database_url)
    db = make_session_factory(engine)
    store = CiphertextStore(settings.store_dir)
    codename = generate_codename()
    source_id = SourceService(db, CodenameHasher(b"p" * 32, FAST_SCRYPT)).create(codename)
    key = ReplyKeyDeriver(b"r" * 32, FAST_SCRYPT).derive(codename)
    with db.begin() as s:
        source = s.get(Source, source_id)
        assert source is not None
        source.reply_public_key = key.public_bytes
    ring = load_keyring(newsroom.keys_dir, settings.gnupg_dir)
    replies = ReplyService(db, store, StaticKeyring(ring))
    reply_id = replies.send(source_id, add_journalist(db, "ada"), "Meet me at noon")
    with db() as s:
        copy = s.get(Reply, reply_id).for_source  # type: ignore[union-attr]
    assert copy is not None and copy[16:80] in on_disk(settings.data_dir)

    assert replies.delete_by_source(source_id, reply_id)

    assert copy[16:80] not in on_disk(settings.data_dir)
    engine.dispose()


def test_deleted_items_leave_no_row_behind(settings: Settings, newsroom: Newsroom) -> None:
    engine = make_engine(settings.database_url)
    db = make_session_factory(engine)
    store = CiphertextStore(settings.store_dir)
    ring = load_keyring(newsroom.keys_dir, settings.gnupg_dir)
    source_id = SourceService(db, CodenameHasher(b"p" * 32, FAST_SCRYPT)).create(
        generate_codename())
    submit(db, ring, store, source_id, "first")
    submit(db, ring, store, source_id, "second")
    with db() as s:
        doomed = s.query(Item.id).filter_by(source_id=source_id).order_by(Item.seq).first()
    assert doomed is not None and doomed.id.encode() in on_disk(settings.data_dir)

    assert InboxService(db, store).delete_items(source_id, [doomed.id]) == 1

    assert doomed.id.encode() not in on_disk(settings.data_dir)
    engine.dispose()


def test_a_source_session_is_gone_from_the_database_and_its_log_after_log_out(
        settings: Settings, client: FlaskClient) -> None:
    browser = SourceBrowser(client)
    browser.new_codename()
    cookie = client.get_cookie("tipbox_source")
    assert cookie is not None
    id_hash = hashlib.sha256(cookie.value.encode()).hexdigest().encode()
    assert id_hash in on_disk(settings.data_dir)

    browser.logout()

    assert id_hash not in on_disk(settings.data_dir)


def test_the_checkpoint_needs_no_second_pooled_connection_and_never_undoes_a_deletion(
        settings: Settings, newsroom: Newsroom) -> None:
    # With every pooled connection in use (here: a pool of one, held by the deleting
    # session as it commits), asking the pool for another would wait, then raise after
    # the deletion had committed, skipping the removal of its ciphertext files.
    engine = make_engine(settings.database_url)
    single = create_engine(settings.database_url, poolclass=QueuePool, pool_size=1,
                           max_overflow=0, pool_timeout=1)
    store = CiphertextStore(settings.store_dir)
    ring = load_keyring(newsroom.keys_dir, settings.gnupg_dir)
    db = make_session_factory(engine)
    source_id = SourceService(db, CodenameHasher(b"p" * 32, FAST_SCRYPT)).create(
        generate_codename())
    submit(db, ring, store, source_id, "to be deleted")
    with db() as s:
        item_id = s.query(Item.id).filter_by(source_id=source_id).scalar()
    assert item_id is not None and store.path_for(item_id).exists()

    assert InboxService(make_session_factory(single), store).delete_items(
        source_id, [item_id]) == 1

    assert not store.path_for(item_id).exists()
    assert item_id.encode() not in on_disk(settings.data_dir)
    single.dispose()
    engine.dispose()
