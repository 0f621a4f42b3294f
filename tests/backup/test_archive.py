"""Making a backup: consistent while the instance changes under it, never overwriting,
never holding anything in clear."""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.backup.conftest import PASSPHRASE, Instance
from tests.backup.test_restore import item_ids, store_names
from tests.newsroom_fixtures import submit
from tipbox.backup.archive import make_backup, write_backup
from tipbox.backup.database import take_snapshot
from tipbox.backup.encryption import Encryption
from tipbox.backup.restore import restore_backup
from tipbox.config import Settings
from tipbox.crypto.keyring import load_keyring
from tipbox.db import make_engine, make_session_factory
from tipbox.errors import BackupError
from tipbox.inbox import InboxService
from tipbox.models import WebSession
from tipbox.storage import CiphertextStore


def test_an_item_deleted_while_the_backup_runs_is_left_out_with_its_rows(
        instance: Instance, target: Settings, tmp_path: Path) -> None:
    settings = instance.settings
    engine = make_engine(settings.database_url)
    snapshot = take_snapshot(engine)
    # A journalist deletes an item after the database was read, before its file is copied.
    doomed = sorted(item_ids(settings))[0]
    inbox = InboxService(make_session_factory(engine), CiphertextStore(settings.store_dir))
    assert inbox.delete_items(instance.source_id, [doomed]) == 1
    engine.dispose()

    made = write_backup(settings, snapshot, tmp_path / "b.backup",
                        Encryption(passphrase=PASSPHRASE))
    done = restore_backup(target, made.path, passphrase=PASSPHRASE)

    assert (made.files, made.gone) == (2, 1)
    assert (done.files, done.gone) == (2, 1)
    assert item_ids(target) == item_ids(settings)
    assert doomed not in item_ids(target)
    assert store_names(target) == store_names(settings)


def test_a_submission_committed_after_the_database_was_read_leaves_no_orphan_file(
        instance: Instance, target: Settings, tmp_path: Path) -> None:
    settings = instance.settings
    engine = make_engine(settings.database_url)
    snapshot = take_snapshot(engine)
    submit(make_session_factory(engine), load_keyring(settings.keys_dir, settings.gnupg_dir),
           CiphertextStore(settings.store_dir), instance.source_id, "arrived during it")
    engine.dispose()
    before = item_ids(settings)

    made = write_backup(settings, snapshot, tmp_path / "b.backup",
                        Encryption(passphrase=PASSPHRASE))
    restore_backup(target, made.path, passphrase=PASSPHRASE)

    assert len(before) == 4
    assert len(item_ids(target)) == 3
    # Every restored row has its file and every file its row.
    assert {f"{i}.gpg" for i in item_ids(target)} == store_names(target)


def test_live_web_sessions_are_not_backed_up(instance: Instance, target: Settings,
                                             tmp_path: Path) -> None:
    engine = make_engine(instance.settings.database_url)
    with make_session_factory(engine).begin() as db:
        db.add(WebSession(id_hash="a" * 64, interface="source", data="{}",
                          expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)))
    engine.dispose()
    out = tmp_path / "b.backup"
    make_backup(instance.settings, out, Encryption(passphrase=PASSPHRASE))

    restore_backup(target, out, passphrase=PASSPHRASE)

    engine = make_engine(target.database_url)
    with make_session_factory(engine)() as db:
        assert db.scalar(select(func.count()).select_from(WebSession)) == 0
    engine.dispose()


def test_the_backup_file_holds_nothing_in_clear_and_no_partial_file_is_left(
        instance: Instance, tmp_path: Path) -> None:
    out = tmp_path / "b.backup"
    make_backup(instance.settings, out, Encryption(passphrase=PASSPHRASE))

    data = out.read_bytes()
    secrets = instance.settings.secrets_file.read_text()
    assert secrets[20:60].encode() not in data
    assert b"tipbox-backup.json" not in data
    assert b"newsroom" not in data  # the key file's name and its user id
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_backup_removes_what_killed_backups_left_and_not_one_still_being_written(
        instance: Instance, tmp_path: Path) -> None:
    # What a backup killed mid-write leaves: its partial file (mkstemp's mode 0600), its
    # lock gone with it.
    dead = tmp_path / ".monday.backup.k3x9_q2a.tipbox-partial"
    dead.write_bytes(b"ciphertext of a backup that never finished")
    # A backup still being written beside this one: its partial, locked by its writer.
    live = tmp_path / ".tuesday.backup.zz81mmq0.tipbox-partial"
    live.write_bytes(b"being written")
    for partial in (dead, live):
        partial.chmod(0o600)
    # Other programs' files, some with names much like a backup's partial.
    others = [tmp_path / "notes.partial", tmp_path / ".monday.backup.short.tipbox-partial",
              tmp_path / ".report.20261202.partial", tmp_path / ".movie.download.partial",
              tmp_path / ".shared.k3x9_q2a.tipbox-partial"]
    for other in others:
        other.write_text("not a backup's")
        other.chmod(0o600)
    others[-1].chmod(0o644)  # the right name, but not what a backup makes
    writer = os.open(live, os.O_RDONLY)
    try:
        fcntl.flock(writer, fcntl.LOCK_EX)
        made = make_backup(instance.settings, tmp_path / "wednesday.backup",
                           Encryption(passphrase=PASSPHRASE))
    finally:
        os.close(writer)

    assert made.swept == 1
    assert not dead.exists()
    assert live.read_bytes() == b"being written"
    assert all(other.exists() for other in others)


def test_a_backup_never_overwrites_a_file(instance: Instance, tmp_path: Path) -> None:
    out = tmp_path / "precious.txt"
    out.write_text("kept")

    with pytest.raises(BackupError, match="already exists"):
        make_backup(instance.settings, out, Encryption(passphrase=PASSPHRASE))

    assert out.read_text() == "kept"


@pytest.mark.parametrize("passphrase", [b"short", b"twelve chars\nsecond line"])
def test_a_short_or_multi_line_passphrase_is_refused(passphrase: bytes) -> None:
    with pytest.raises(BackupError, match="passphrase"):
        Encryption(passphrase=passphrase)


def test_the_backup_is_an_ordinary_tar_that_gpg_and_tar_can_open_by_hand(
        instance: Instance, tmp_path: Path) -> None:
    """An admin without tipbox can still get at the files: gpg --decrypt | tar -t."""
    out = tmp_path / "b.backup"
    make_backup(instance.settings, out, Encryption(passphrase=PASSPHRASE))
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)

    decrypted = subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback",
         "--passphrase", PASSPHRASE.decode(), "--decrypt", str(out)],
        capture_output=True, check=True).stdout
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], check=False)
    listed = subprocess.run(["tar", "-tf", "-"], input=decrypted, capture_output=True,
                            check=True).stdout.decode().split()

    database = "database.sqlite3" if instance.settings.database_url.startswith("sqlite") \
        else "database.pgdump"
    assert listed[:3] == ["tipbox-backup.json", database, "instance-secrets.json"]
    assert listed[-1] == "gone.json"
    assert sorted(x for x in listed if x.startswith("store/")) == \
        sorted(f"store/{name}" for name in store_names(instance.settings))
