"""Deletion deletes: on SQLite, nothing of a deleted or overwritten row stays readable in
the database file or its write-ahead log once the deleting transaction has committed."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from tests.conftest import FAST_SCRYPT
from tests.helpers import Newsroom, SourceBrowser, sqlite_bytes
from tests.newsroom_fixtures import add_journalist, submit
from tipbox.codenames import CodenameHasher, generate_codename
from tipbox.config import Settings
from tipbox.crypto.keyring import Keyring, load_keyring
from tipbox.crypto.reply_keys import ReplyKeyDeriver
from tipbox.db import make_engine, make_session_factory
from tipbox.inbox import InboxService
from tipbox.key_registry import StaticKeyring
from tipbox.models import Item, Reply, Source, WebSession
from tipbox.replies import ReplyService
from tipbox.sources import SourceService
from tipbox.storage import CiphertextStore


@dataclass
class Instance:
    settings: Settings
    db: sessionmaker[Session]
    store: CiphertextStore
    ring: Keyring
    sources: SourceService

    def source_with(self, *messages: str) -> int:
        source_id = self.sources.create(generate_codename())
        for text in messages:
            submit(self.db, self.ring, self.store, source_id, text)
        return source_id

    def item_ids(self, source_id: int) -> list[str]:
        with self.db() as s:
            return list(s.scalars(select(Item.id).where(Item.source_id == source_id)
                                  .order_by(Item.seq)))

    def kept(self) -> bytes:
        return sqlite_bytes(self.settings.data_dir)


@pytest.fixture
def instance(settings: Settings, newsroom: Newsroom) -> Iterator[Instance]:
    engine = make_engine(settings.database_url)
    db = make_session_factory(engine)
    yield Instance(settings, db, CiphertextStore(settings.store_dir),
                   load_keyring(newsroom.keys_dir, settings.gnupg_dir),
                   SourceService(db, CodenameHasher(b"p" * 32, FAST_SCRYPT)))
    engine.dispose()


def test_a_deleted_source_leaves_nothing_in_the_database_or_its_log(
        instance: Instance) -> None:
    doomed = instance.source_with("remove me")
    with instance.db() as s:
        designation = s.get(Source, doomed).designation  # type: ignore[union-attr]
    assert designation.encode() in instance.kept()

    InboxService(instance.db, instance.store).delete_sources([doomed])

    wal = instance.settings.data_dir / "tipbox.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    assert designation.encode() not in instance.kept()


def test_a_reply_the_source_deleted_is_gone_from_the_database_and_its_log(
        instance: Instance) -> None:
    codename = generate_codename()
    source_id = instance.sources.create(codename)
    key = ReplyKeyDeriver(b"r" * 32, FAST_SCRYPT).derive(codename)
    instance.sources.set_reply_key(source_id, key.public_bytes)
    replies = ReplyService(instance.db, instance.store, StaticKeyring(instance.ring))
    reply_id = replies.send(source_id, add_journalist(instance.db, "ada"), "Meet me at noon")
    with instance.db() as s:
        copy = s.get(Reply, reply_id).for_source  # type: ignore[union-attr]
    assert copy is not None and copy[16:80] in instance.kept()

    assert replies.delete_by_source(source_id, reply_id)

    assert copy[16:80] not in instance.kept()


def test_deleted_items_leave_no_row_behind(instance: Instance) -> None:
    source_id = instance.source_with("first", "second")
    doomed = instance.item_ids(source_id)[0]
    assert doomed.encode() in instance.kept()

    assert InboxService(instance.db, instance.store).delete_items(source_id, [doomed]) == 1

    assert doomed.encode() not in instance.kept()


def test_the_checkpoint_needs_no_second_pooled_connection_and_never_undoes_a_deletion(
        instance: Instance) -> None:
    # With every pooled connection in use (here: a pool of one, held by the deleting
    # session as it commits), asking the pool for another would wait, then raise after
    # the deletion had committed, skipping the removal of its ciphertext files.
    single = create_engine(instance.settings.database_url, poolclass=QueuePool,
                           pool_size=1, max_overflow=0, pool_timeout=1)
    source_id = instance.source_with("to be deleted")
    [item_id] = instance.item_ids(source_id)
    assert instance.store.path_for(item_id).exists()

    assert InboxService(make_session_factory(single), instance.store).delete_items(
        source_id, [item_id]) == 1

    assert not instance.store.path_for(item_id).exists()
    assert item_id.encode() not in instance.kept()
    single.dispose()


def test_a_source_session_is_gone_from_the_database_and_its_log_after_log_out(
        settings: Settings, client: FlaskClient) -> None:
    browser = SourceBrowser(client)
    browser.new_codename()
    cookie = client.get_cookie("tipbox_source")
    assert cookie is not None
    id_hash = hashlib.sha256(cookie.value.encode()).hexdigest().encode()
    assert id_hash in sqlite_bytes(settings.data_dir)

    browser.logout()

    assert id_hash not in sqlite_bytes(settings.data_dir)


def test_an_expired_session_is_gone_from_the_database_and_its_log_once_purged(
        settings: Settings, app: Flask) -> None:
    first = SourceBrowser(app.test_client())
    first.new_codename()
    cookie = first.client.get_cookie("tipbox_source")
    assert cookie is not None
    id_hash = hashlib.sha256(cookie.value.encode()).hexdigest()
    engine = make_engine(settings.database_url)
    with make_session_factory(engine).begin() as db:  # its idle time ran out
        db.execute(update(WebSession).where(WebSession.id_hash == id_hash)
                   .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))
    engine.dispose()
    assert id_hash.encode() in sqlite_bytes(settings.data_dir)

    SourceBrowser(app.test_client()).new_codename()  # the next saved session purges it

    assert id_hash.encode() not in sqlite_bytes(settings.data_dir)
