"""Restoring a backup onto an empty data folder (and, for PostgreSQL, an empty database).

gpg reports a damaged archive (a bad MDC or AEAD tag) only at its very end, after it has
already written out everything before the damage. So the archive is unpacked into a
staging folder beside the data folder, and only once gpg has vouched for the whole of it
(and its contents match its own list of files) is the database loaded and the staging
folder renamed into place. A wrong passphrase, a damaged or truncated file, or a file
that is not a tipbox backup leaves the target as it was.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tipbox.backup.archive import (
    COPY_BUFFER,
    FORMAT,
    GONE,
    HEADER,
    KEYS_PREFIX,
    SECRETS,
    STORE_PREFIX,
)
from tipbox.backup.database import database_is_empty, restore_postgresql, restore_sqlite
from tipbox.backup.encryption import (
    decrypting,
    integrity_verified,
    no_secret_key,
    wrong_passphrase,
)
from tipbox.backup.tar_stream import TarFormatError, TarReader
from tipbox.config import Settings
from tipbox.crypto.keyring import KEY_SUFFIXES
from tipbox.db import make_engine
from tipbox.durable import fsync_folder
from tipbox.errors import BackupError
from tipbox.provisioning import INIT_LOCK
from tipbox.storage import SUFFIX, early_writeback, is_item_id

_DATABASE_MEMBERS = {"database.sqlite3": "sqlite", "database.pgdump": "postgresql"}
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
# The header, gone.json, the secrets and key files are small; a larger one is not ours.
_SMALL_MEMBER_BYTES = 64 * 1024 * 1024
_STAGED_DATABASE = "tipbox.db"


@dataclass(frozen=True)
class Restored:
    """What a restore put in place, for the admin to read."""

    database: str  # "sqlite" or "postgresql"
    files: int  # store files restored
    gone: int  # files deleted while the backup ran: their rows were dropped too
    keys_placed: int  # key files written into an empty keys folder
    keys_folder_kept: bool  # the keys folder already held keys and was left alone


def restore_backup(settings: Settings, backup: Path, *, passphrase: bytes | None,
                   gnupghome: Path | None = None) -> Restored:
    """Restore ``backup`` into the empty data folder (and database) of ``settings``.
    With ``gnupghome``, the backup was made for a key whose secret half is there."""
    if not backup.is_file():
        raise BackupError(f"{backup} is not a file. Give the path of a backup made by "
                          "`tipbox backup`.")
    refuse_live_target(settings)
    settings.data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=settings.data_dir.parent,
                                    prefix=f".{settings.data_dir.name}.restoring-"))
    try:
        unpacked = _unpack_verified(settings, backup, passphrase, gnupghome, staging)
        keys_placed, kept = _place_keys(staging / "keys", settings.keys_dir)
        # Checked again: another restore or an init may have begun meanwhile.
        _refuse_live_folder(settings.data_dir)
        _load_database(settings, staging, unpacked)
        if settings.data_dir.exists():
            (settings.data_dir / INIT_LOCK).unlink(missing_ok=True)
            settings.data_dir.rmdir()  # empty, as just checked
        os.rename(staging, settings.data_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    fsync_folder(settings.data_dir.parent)
    return Restored(unpacked.database, len(unpacked.files) - len(unpacked.gone),
                    len(unpacked.gone), keys_placed, kept)


def refuse_live_target(settings: Settings) -> None:
    """Raise unless the data folder (and a PostgreSQL database) is empty or missing."""
    _refuse_live_folder(settings.data_dir)
    engine = make_engine(settings.database_url)
    try:
        if engine.dialect.name == "sqlite":
            path = engine.url.database
            if path and Path(path).exists():
                raise BackupError(f"The database {path} already exists: a restore never "
                                  "overwrites one. Move it aside, or point "
                                  "TIPBOX_DATABASE_URL at a new file.")
        elif not database_is_empty(engine):
            raise BackupError("The database named by TIPBOX_DATABASE_URL already has "
                              "tables: a restore never overwrites one. Create a new, empty "
                              "database for it (createdb), point TIPBOX_DATABASE_URL at it, "
                              "and run the restore again.")
    finally:
        engine.dispose()


def _refuse_live_folder(data: Path) -> None:
    # `tipbox init`'s lock file alone (left by an init that failed) is no instance.
    if data.exists() and (not data.is_dir() or any(p.name != INIT_LOCK
                                                   for p in data.iterdir())):
        raise BackupError(f"{data} is not empty: a restore never overwrites an instance. "
                          "Restore into a new, empty folder (set TIPBOX_DATA_DIR), or move "
                          "this one aside first if you mean to replace it.")


@dataclass(frozen=True)
class _Unpacked:
    database: str
    files: frozenset[str]
    gone: frozenset[str]


def _unpack_verified(settings: Settings, backup: Path, passphrase: bytes | None,
                     gnupghome: Path | None, staging: Path) -> _Unpacked:
    with decrypting(backup, passphrase, gnupghome, settings.gpg_binary) as run:
        try:
            fd = run.stdout.fileno()
            found = _extract(fd, staging)
            # tar's end-of-archive blocks may leave padding unread: gpg must get to the
            # end, where it checks the integrity tag.
            while os.read(fd, COPY_BUFFER):
                pass
        except (TarFormatError, _NotABackup, OSError) as exc:
            if run.process.poll() is None:
                run.process.kill()
            returncode, status = run.finish()
            raise _refusal(returncode, status, exc) from None
        returncode, status = run.finish()
    if not integrity_verified(returncode, status):
        raise _refusal(returncode, status, None)
    return _checked(found, staging)


def _refusal(returncode: int, status: str, exc: Exception | None) -> BackupError:
    if wrong_passphrase(status):
        return BackupError("The passphrase does not open this backup. Nothing was restored; "
                           "run the restore again with the passphrase typed when the backup "
                           "was made.")
    if no_secret_key(status):
        return BackupError("This backup was made for a key whose secret half is not in the "
                           "GnuPG home used. Nothing was restored; give the home that holds "
                           "it with --gnupghome.")
    if isinstance(exc, OSError) and exc.errno is not None:
        return BackupError(f"Could not write the restored files ({os.strerror(exc.errno)}). "
                           "Nothing was restored; free some space or fix the folder's "
                           "permissions, then run the restore again.")
    return BackupError("This backup is damaged or is not a tipbox backup (its integrity "
                       "check failed). Nothing was restored; use another copy of the backup.")


class _NotABackup(Exception):
    pass


@dataclass
class _Found:
    header: dict[str, Any] | None = None
    database: str | None = None
    gone: list[str] | None = None
    secrets: bool = False


def _extract(fd: int, staging: Path) -> _Found:
    found = _Found()
    seen: set[str] = set()
    (staging / "store").mkdir(mode=0o700)
    tar = TarReader(fd)
    while (member := tar.next()) is not None:
        name = member.name
        if not member.isreg() or name in seen:
            raise _NotABackup(name)
        seen.add(name)
        if found.header is None:
            if name != HEADER:
                raise _NotABackup(name)
            found.header = _read_json(tar, member)
            if not isinstance(found.header, dict) or found.header.get("format") != FORMAT:
                raise _NotABackup("format")
        elif name in _DATABASE_MEMBERS and found.database is None:
            found.database = _DATABASE_MEMBERS[name]
            _write(tar, staging / (_STAGED_DATABASE if found.database == "sqlite" else name))
        elif name == SECRETS:
            _write(tar, staging / SECRETS, small=member.size)
            found.secrets = True
        elif name.startswith(KEYS_PREFIX) and _KEY_NAME.match(name[len(KEYS_PREFIX):]):
            (staging / "keys").mkdir(mode=0o700, exist_ok=True)
            _write(tar, staging / name, small=member.size)
        elif name.startswith(STORE_PREFIX) and name.endswith(SUFFIX) \
                and is_item_id(name[len(STORE_PREFIX):-len(SUFFIX)]):
            _write(tar, staging / name)
            os.utime(staging / name, (member.mtime, member.mtime))
        elif name == GONE:
            gone = _read_json(tar, member)
            if not isinstance(gone, list):
                raise _NotABackup(name)
            found.gone = gone
        else:
            raise _NotABackup(name)
    return found


def _read_json(tar: TarReader, member: tarfile.TarInfo) -> Any:
    if member.size > _SMALL_MEMBER_BYTES:
        raise _NotABackup(member.name)
    try:
        return json.loads(tar.read())
    except ValueError:
        raise _NotABackup(member.name) from None


def _write(tar: TarReader, target: Path, *, small: int | None = None) -> None:
    """The current member into ``target`` (new, 0600), fsynced. ``small``: the member's
    size, for one that must be small (a key file, the secrets)."""
    if small is not None and small > _SMALL_MEMBER_BYTES:
        raise _NotABackup(target.name)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        # Writeback starts while the file is written, so its fsync has little left to do.
        with early_writeback(target):
            tar.splice_to(fd)
        os.fsync(fd)
    finally:
        os.close(fd)


def _checked(found: _Found, staging: Path) -> _Unpacked:
    """The archive, verified by gpg, must also be whole: every part, and exactly the store
    files its header names except those gone while the backup ran."""
    header = found.header or {}
    files = header.get("files")
    if (found.database is None or found.database != header.get("database")
            or not found.secrets or found.gone is None or not isinstance(files, list)):
        raise _refusal(0, "", None)
    named = frozenset(str(x) for x in files)
    gone = frozenset(str(x) for x in found.gone)
    present = frozenset(p.name[:-len(SUFFIX)] for p in (staging / "store").iterdir())
    if not gone <= named or present != named - gone:
        raise _refusal(0, "", None)
    return _Unpacked(found.database, named, gone)


def _place_keys(staged: Path, keys_dir: Path) -> tuple[int, bool]:
    """Put the backed-up public keys into the keys folder if it holds none. The registry
    in the database already holds every key; the folder is only where `tipbox init`
    imports new ones from, so one that already holds keys is left as it is."""
    if not staged.is_dir():
        return 0, False
    names = sorted(p.name for p in staged.iterdir())
    if keys_dir.is_dir() and any(p.suffix.lower() in KEY_SUFFIXES for p in keys_dir.iterdir()):
        shutil.rmtree(staged)
        return 0, True
    keys_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(staged / name, keys_dir / name)
    shutil.rmtree(staged)
    return len(names), False


def _load_database(settings: Settings, staging: Path, unpacked: _Unpacked) -> None:
    engine = make_engine(settings.database_url)
    try:
        if engine.dialect.name != unpacked.database:
            raise BackupError(f"This backup holds a {unpacked.database} database, but "
                              f"TIPBOX_DATABASE_URL names a {engine.dialect.name} one. Point "
                              "it at the same kind of database, then run the restore again.")
        if unpacked.database == "sqlite":
            target = Path(engine.url.database or "")
            if target.parent == settings.data_dir:
                # Placed in the staging folder, which becomes the data folder.
                restore_sqlite(staging / _STAGED_DATABASE, staging / target.name, unpacked.gone)
            else:
                restore_sqlite(staging / _STAGED_DATABASE, target, unpacked.gone)
        else:
            dump = staging / "database.pgdump"
            restore_postgresql(engine, dump, unpacked.gone)
            dump.unlink()
    finally:
        engine.dispose()

