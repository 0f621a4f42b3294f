"""Setting an instance up without the CLI: initialise is repeatable and says what it did,
and each file of the keys folder gets an outcome. Real gpg, real SQLite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FAST_SCRYPT
from tests.crypto.keyfactory import export, new_key
from tests.helpers import ACTOR, Newsroom, instance_sealer
from tipbox.accounts import AccountService
from tipbox.audit import AuditLog
from tipbox.codenames import CodenameHasher, generate_codename
from tipbox.config import Settings
from tipbox.db import make_engine, make_session_factory
from tipbox.errors import ConfigError
from tipbox.key_registry import KeyringProvider, KeyService
from tipbox.models import Journalist, KeyState
from tipbox.provisioning import (
    INIT_ACTOR,
    KeyFileOutcome,
    KeyFileStatus,
    import_keys_folder,
    initialise,
)
from tipbox.sources import SourceService


@pytest.fixture
def empty_settings(tmp_path: Path) -> Settings:
    """An instance whose keys folder starts empty."""
    (tmp_path / "keys").mkdir()
    return Settings(data_dir=tmp_path / "data", keys_dir=tmp_path / "keys", scrypt=FAST_SCRYPT)


@pytest.fixture
def sessions(empty_settings: Settings) -> Iterator[sessionmaker[Session]]:
    initialise(empty_settings)
    engine = make_engine(empty_settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture
def keys(empty_settings: Settings, sessions: sessionmaker[Session]) -> KeyService:
    return KeyService(sessions, empty_settings.gnupg_dir, AuditLog(sessions))


def test_initialise_twice_is_safe_and_keeps_the_secrets(
        tmp_path: Path, newsroom: Newsroom) -> None:
    settings = Settings(data_dir=tmp_path / "data", keys_dir=newsroom.keys_dir,
                        scrypt=FAST_SCRYPT)
    first = initialise(settings)
    secrets_before = json.loads(settings.secrets_file.read_text())
    again = initialise(settings)
    assert json.loads(settings.secrets_file.read_text()) == secrets_before
    assert first.key_files == (KeyFileOutcome("newsroom.asc", KeyFileStatus.PENDING,
                                              newsroom.fingerprint, added=True),)
    # Known by now: still pending, but not added a second time.
    assert again.key_files == (KeyFileOutcome("newsroom.asc", KeyFileStatus.PENDING,
                                              newsroom.fingerprint, added=False),)
    assert (again.sealed, again.locked_out) == (0, ())


def test_init_imports_the_keys_folder_as_pending_unless_trusted(
        tmp_path: Path, newsroom: Newsroom) -> None:
    settings = Settings(data_dir=tmp_path / "data", keys_dir=newsroom.keys_dir,
                        scrypt=FAST_SCRYPT)
    initialise(settings)
    engine = make_engine(settings.database_url)
    db = make_session_factory(engine)
    records = KeyService(db, settings.gnupg_dir, AuditLog(db)).records()
    assert [(r.fingerprint, r.state) for r in records] == \
        [(newsroom.fingerprint, KeyState.PENDING)]
    assert not KeyringProvider(db, settings.gnupg_dir).current().accepting
    initialise(settings, trust_keys_folder=True)
    records = KeyService(db, settings.gnupg_dir, AuditLog(db)).records()
    assert records[0].state is KeyState.ACTIVE
    engine.dispose()


def test_a_secret_key_file_is_refused_with_the_reason(
        empty_settings: Settings, keys: KeyService, tmp_path: Path) -> None:
    fpr = new_key(tmp_path / "h")
    export(tmp_path / "h", fpr, empty_settings.keys_dir / "oops.asc", secret=True)
    [outcome] = import_keys_folder(keys, empty_settings.keys_dir, trust=True)
    assert (outcome.file_name, outcome.status, outcome.added) == \
        ("oops.asc", KeyFileStatus.REFUSED, False)
    assert "SECRET key material" in outcome.reason
    assert keys.records() == []


def test_a_new_public_key_is_added_as_pending_and_audited(
        empty_settings: Settings, keys: KeyService, tmp_path: Path) -> None:
    fpr = new_key(tmp_path / "h")
    export(tmp_path / "h", fpr, empty_settings.keys_dir / "newsroom.asc")
    (empty_settings.keys_dir / "README.txt").write_text("not a key")  # skipped
    assert import_keys_folder(keys, empty_settings.keys_dir, trust=False) == \
        [KeyFileOutcome("newsroom.asc", KeyFileStatus.PENDING, fpr, added=True)]
    assert [(r.fingerprint, r.state) for r in keys.records()] == [(fpr, KeyState.PENDING)]
    assert [(e.actor, e.action) for e in keys.audit.recent()] == [(INIT_ACTOR, "key added")]


def test_with_trust_a_key_is_activated_without_proof_then_left_alone(
        empty_settings: Settings, keys: KeyService, tmp_path: Path) -> None:
    fpr = new_key(tmp_path / "h")
    export(tmp_path / "h", fpr, empty_settings.keys_dir / "newsroom.asc")
    assert import_keys_folder(keys, empty_settings.keys_dir, trust=True) == \
        [KeyFileOutcome("newsroom.asc", KeyFileStatus.ACTIVATED, fpr, added=True)]
    assert keys.records()[0].state is KeyState.ACTIVE
    assert "WITHOUT proof" in keys.audit.recent()[0].action
    assert import_keys_folder(keys, empty_settings.keys_dir, trust=True) == \
        [KeyFileOutcome("newsroom.asc", KeyFileStatus.KNOWN, fpr, added=False)]


def test_a_missing_keys_folder_imports_nothing(empty_settings: Settings,
                                               keys: KeyService) -> None:
    assert import_keys_folder(keys, empty_settings.keys_dir / "absent", trust=True) == []


def test_initialise_seals_secrets_in_clear_and_names_those_that_do_not_open(
        empty_settings: Settings, sessions: sessionmaker[Session]) -> None:
    accounts = AccountService(sessions, instance_sealer(empty_settings), AuditLog(sessions))
    accounts.create("ada", ACTOR)
    accounts.create("bob", ACTOR)
    with sessions.begin() as db:
        db.execute(update(Journalist).where(Journalist.username == "ada")
                   .values(totp_secret="JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"))
    done = initialise(empty_settings)
    assert (done.sealed, done.locked_out) == (1, ())

    other = json.loads(empty_settings.secrets_file.read_text()) | {"totp_key": "ab" * 32}
    empty_settings.secrets_file.write_text(json.dumps(other))
    done = initialise(empty_settings)
    assert (done.sealed, done.locked_out) == (0, ("ada", "bob"))


def test_initialise_refuses_new_secrets_for_a_database_that_has_sources(
        settings: Settings) -> None:
    engine = make_engine(settings.database_url)
    SourceService(make_session_factory(engine), CodenameHasher(b"p" * 32, FAST_SCRYPT)) \
        .create(generate_codename())
    engine.dispose()
    settings.secrets_file.unlink()
    with pytest.raises(ConfigError, match="missing but the database already has sources"):
        initialise(settings)
    assert not settings.secrets_file.exists()


def test_init_removes_the_temporaries_that_killed_writers_left_in_the_data_folder(
        empty_settings: Settings) -> None:
    initialise(empty_settings)
    secrets_before = empty_settings.secrets_file.read_text()
    data = empty_settings.data_dir
    # As a `tipbox init` or `tipbox digest` SIGKILLed between writing and renaming leaves.
    left = [data / ".instance-secrets.json.k1ll3d00", data / ".digest-state.json.k1ll3d00"]
    for path in left:
        path.write_text('{"flask_secret_key": "a copy nobody will ever use"}')
        path.chmod(0o600)  # as mkstemp made it

    initialise(empty_settings)

    assert not any(path.exists() for path in left)
    assert empty_settings.secrets_file.read_text() == secrets_before
