"""An instance with a source and its submissions to back up, on SQLite and on the real
PostgreSQL, and an empty place to restore it to."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FAST_SCRYPT, TEST_MIN_FREE_BYTES
from tests.helpers import fresh_postgres_database
from tests.newsroom_fixtures import submit
from tipbox.codenames import CodenameHasher, generate_codename
from tipbox.config import Settings
from tipbox.crypto.keyring import load_keyring
from tipbox.db import make_engine, make_session_factory
from tipbox.instance import InstanceSecrets
from tipbox.sources import SourceService
from tipbox.storage import CiphertextStore

PASSPHRASE = b"correct horse battery staple"


@dataclass(frozen=True)
class Instance:
    settings: Settings
    codename: str
    source_id: int
    file: bytes  # the file the source sent


@pytest.fixture
def instance(any_database_settings: Settings) -> Iterator[Instance]:
    settings = any_database_settings
    engine = make_engine(settings.database_url)
    db = make_session_factory(engine)
    codename = generate_codename()
    source_id = sources(settings, db).create(codename)
    ring = load_keyring(settings.keys_dir, settings.gnupg_dir)
    store = CiphertextStore(settings.store_dir)
    file = b"%PDF-1.7 the ledger\n" * 5000
    submit(db, ring, store, source_id, "first tip", [(file, "ledger.pdf")])
    submit(db, ring, store, source_id, "second tip")
    yield Instance(settings, codename, source_id, file)
    engine.dispose()


def sources(settings: Settings, db: sessionmaker[Session]) -> SourceService:
    pepper = InstanceSecrets.load(settings.secrets_file).codename_pepper
    return SourceService(db, CodenameHasher(pepper, FAST_SCRYPT))


@pytest.fixture
def target(instance: Instance, tmp_path: Path) -> Iterator[Settings]:
    """Settings for an empty data folder (and, beside a PostgreSQL instance, an empty
    database) that nothing has initialised."""
    url = instance.settings.database_url
    data_dir = tmp_path / "restored"
    keys_dir = tmp_path / "restored-keys"
    if url.startswith("sqlite"):
        yield Settings(data_dir=data_dir, keys_dir=keys_dir, scrypt=FAST_SCRYPT,
                       min_free_bytes=TEST_MIN_FREE_BYTES)
        return
    with fresh_postgres_database(url) as other:
        yield Settings(data_dir=data_dir, keys_dir=keys_dir, database_url=other,
                       scrypt=FAST_SCRYPT, min_free_bytes=TEST_MIN_FREE_BYTES)
