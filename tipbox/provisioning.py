"""Setting an instance up: the data folder, the instance secrets, the database schema, and
the public keys placed in the keys folder.

Plain Python, no click and no printing: `tipbox init` and `tipbox demo` call
:func:`initialise` and print the :class:`Initialised` outcome it returns.
"""

from __future__ import annotations

import enum
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import ColumnElement, Engine, inspect, select

from tipbox.accounts import SEALED, AccountService, TotpSealer
from tipbox.audit import AuditLog
from tipbox.config import Settings
from tipbox.crypto.keyring import KEY_SUFFIXES
from tipbox.db import make_engine, make_session_factory, upgrade
from tipbox.durable import remove_dead_temps
from tipbox.errors import ConfigError, KeyOperationRefused
from tipbox.instance import InstanceSecrets
from tipbox.key_registry import KeyService
from tipbox.models import Base, Journalist, KeyState, Source
from tipbox.storage import CiphertextStore
from tipbox.store_sweep import sweep

# What the audit log names as the actor of the keys folder's import.
INIT_ACTOR = "tipbox init"


class KeyFileStatus(enum.Enum):
    """Where a key file of the keys folder stands after an import."""

    REFUSED = "refused"  # not imported; the outcome's reason says why
    PENDING = "pending"  # waits for proof of possession before anything is encrypted to it
    ACTIVATED = "activated"  # activated WITHOUT proof, as the caller trusted the folder
    KNOWN = "known"  # already active or retired: left as it was


@dataclass(frozen=True)
class KeyFileOutcome:
    """What importing one file of the keys folder did."""

    file_name: str
    status: KeyFileStatus
    fingerprint: str = ""  # empty when refused
    added: bool = False  # new to the registry in this import
    reason: str = ""  # why it was refused


@dataclass(frozen=True)
class Initialised:
    """What :func:`initialise` did that its caller should tell the admin."""

    # Accounts whose TOTP secrets an older tipbox stored in clear, sealed now.
    sealed: int
    # Accounts whose TOTP secrets do not open with this instance's totp_key: they cannot
    # log in until the matching instance-secrets.json is restored or they are reset.
    locked_out: tuple[str, ...]
    key_files: tuple[KeyFileOutcome, ...]


def initialise(settings: Settings, *, trust_keys_folder: bool = False) -> Initialised:
    """Create the data folder (removing what killed writers left in it), the instance
    secrets and the database (or bring its schema up to date), seal TOTP secrets left in
    clear, and import the keys folder's public keys.
    Safe to run again. Raises :class:`ConfigError` rather than make a secrets file that
    would lock sources or journalists out of an existing database."""
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _one_at_a_time(settings.data_dir):
        return _initialise(settings, trust_keys_folder)


@contextmanager
def _one_at_a_time(data_dir: Path) -> Iterator[None]:
    """Two `tipbox init` at once on one data folder (a deploy script and an admin by hand)
    take turns: run together on a new folder, both wrote the secrets file and migrated the
    database, and one failed halfway (FileExistsError, or "Cannot use the database
    (OperationalError)"). The second now finds the work done."""
    fd = os.open(data_dir / INIT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


# Held by `tipbox init` while it runs; empty, and left in place (removing it would race).
INIT_LOCK = ".init.lock"


def _initialise(settings: Settings, trust_keys_folder: bool) -> Initialised:
    # A writer killed mid-write leaves its temporary (a copy of the secrets, for the
    # secrets file) for ever otherwise; a live writer's is kept (tipbox.durable).
    for path in settings.written_whole:
        remove_dead_temps(path)
    engine = make_engine(settings.database_url)
    try:
        _check_secrets_belong(settings, engine)
        instance = InstanceSecrets.load_or_create(settings.secrets_file)
        upgrade(settings.database_url)
        sessions = make_session_factory(engine)
        # By ownership, like the running service: a worker still writing an upload keeps
        # its files (tipbox.store_sweep).
        sweep(CiphertextStore(settings.store_dir), sessions)
        audit = AuditLog(sessions)
        accounts = AccountService(sessions, TotpSealer(instance.totp_key), audit)
        sealed = accounts.seal_plaintext_secrets()
        locked_out = tuple(accounts.unopenable_secrets())
        keys = KeyService(sessions, settings.gnupg_dir, audit, settings.gpg_binary)
        key_files = import_keys_folder(keys, settings.keys_dir, trust=trust_keys_folder)
    finally:
        engine.dispose()
    return Initialised(sealed, locked_out, tuple(key_files))


def _check_secrets_belong(settings: Settings, engine: Engine) -> None:
    """Refuse to make or complete a secrets file that does not belong with the database:
    new secrets would lock out whoever the database already knows."""
    if not settings.secrets_file.exists() and _has_sources(engine):
        raise ConfigError(
            f"{settings.secrets_file} is missing but the database already has sources. A new "
            "file would lock every source out for good: restore it from your backup, then "
            "run `tipbox init` again.")
    if (settings.secrets_file.exists()
            and "totp_key" in InstanceSecrets.missing(settings.secrets_file)
            and _has_sealed_totp_secrets(engine)):
        raise ConfigError(
            f"{settings.secrets_file} has no totp_key, but the database holds TOTP secrets "
            "sealed with one: this file does not belong with this database (restored from an "
            "older backup?). A new key would lock every journalist out: restore the "
            "instance-secrets.json that was backed up with the database, then run `tipbox "
            "init` again.")


def import_keys_folder(keys: KeyService, keys_dir: Path, *,
                       trust: bool) -> list[KeyFileOutcome]:
    """Bring the public keys placed in ``keys_dir`` into the registry as pending (or, with
    ``trust``, for demonstrations and tests that hold the secret key themselves, active at
    once), one outcome per key file, in file name order."""
    if not keys_dir.is_dir():
        return []
    known = {k.fingerprint: k.state for k in keys.records()}
    outcomes = []
    for path in sorted(keys_dir.iterdir()):
        if path.suffix.lower() not in KEY_SUFFIXES or not path.is_file():
            continue
        try:
            found = keys.inspect(path.read_bytes())
        except KeyOperationRefused as exc:
            outcomes.append(KeyFileOutcome(path.name, KeyFileStatus.REFUSED, reason=str(exc)))
            continue
        fpr = found.info.fingerprint
        added = fpr not in known
        if added:
            keys.add(path.read_bytes(), actor=INIT_ACTOR)
            known[fpr] = KeyState.PENDING
        if known[fpr] is not KeyState.PENDING:
            status = KeyFileStatus.KNOWN
        elif trust:
            keys.activate_without_proof(fpr, INIT_ACTOR,
                                        "keys folder trusted (--trust-keys-folder)")
            status = KeyFileStatus.ACTIVATED
        else:
            status = KeyFileStatus.PENDING
        outcomes.append(KeyFileOutcome(path.name, status, fpr, added))
    return outcomes


def _has_sources(engine: Engine) -> bool:
    return _has_row(engine, Source)


def _has_sealed_totp_secrets(engine: Engine) -> bool:
    return _has_row(engine, Journalist, Journalist.totp_secret.like(SEALED + "%"))


def _has_row(engine: Engine, model: type[Base], *where: ColumnElement[bool]) -> bool:
    """Whether the table of ``model`` exists and has a row matching ``where``."""
    table = model.__table__
    if not inspect(engine).has_table(model.__tablename__):
        return False
    with engine.connect() as conn:
        return conn.execute(select(table.c.id).where(*where).limit(1)).first() is not None
