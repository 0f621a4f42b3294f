"""Restoring a backup: everything comes back into an empty folder, and a wrong passphrase,
a damaged or truncated file, or a target in use is refused with nothing written."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from tests.backup.conftest import PASSPHRASE, Instance, sources
from tests.helpers import Newsroom, gpg_decrypt
from tipbox.backup.archive import make_backup
from tipbox.backup.encryption import Encryption
from tipbox.backup.restore import restore_backup
from tipbox.config import Settings
from tipbox.db import make_engine, make_session_factory
from tipbox.errors import BackupError
from tipbox.models import Item
from tipbox.provisioning import INIT_LOCK


def backed_up(instance: Instance, tmp_path: Path) -> Path:
    out = tmp_path / "instance.backup"
    make_backup(instance.settings, out, Encryption(passphrase=PASSPHRASE))
    return out


def store_names(settings: Settings) -> set[str]:
    return {p.name for p in settings.store_dir.glob("*.gpg")}


def item_ids(settings: Settings) -> set[str]:
    engine = make_engine(settings.database_url)
    try:
        with make_session_factory(engine)() as db:
            return set(db.scalars(select(Item.id)))
    finally:
        engine.dispose()


def assert_nothing_written(target: Settings) -> None:
    """The target folder is still missing, no staging folder is left beside it, the keys
    folder was not made, and a PostgreSQL target database is still empty."""
    assert not target.data_dir.exists()
    assert list(target.data_dir.parent.glob(f".{target.data_dir.name}*")) == []
    assert not target.keys_dir.exists()
    if not target.database_url.startswith("sqlite"):
        engine = make_engine(target.database_url)
        assert inspect(engine).get_table_names() == []
        engine.dispose()


def test_a_restore_brings_back_every_row_store_file_secret_and_key(
        instance: Instance, target: Settings, tmp_path: Path, newsroom: Newsroom) -> None:
    backup = backed_up(instance, tmp_path)

    done = restore_backup(target, backup, passphrase=PASSPHRASE)

    assert (done.files, done.gone) == (3, 0)
    assert store_names(target) == store_names(instance.settings)
    assert item_ids(target) == item_ids(instance.settings)
    for name in store_names(target):
        assert (target.store_dir / name).read_bytes() == \
            (instance.settings.store_dir / name).read_bytes()
    assert target.secrets_file.read_bytes() == instance.settings.secrets_file.read_bytes()
    assert oct(target.secrets_file.stat().st_mode & 0o777) == "0o600"
    assert (target.keys_dir / "newsroom.asc").read_bytes() == newsroom.public_key_file.read_bytes()
    # The source's codename finds it again: the hash salt came back with the database.
    engine = make_engine(target.database_url)
    assert sources(target, make_session_factory(engine)).find(instance.codename) == \
        instance.source_id
    engine.dispose()
    # And the file it sent opens with the newsroom's secret key, byte for byte.
    opened = {gpg_decrypt(target.store_dir / name, newsroom.secret_home).data
              for name in store_names(target)}
    assert instance.file in opened


def test_a_wrong_passphrase_is_refused_with_nothing_written(
        instance: Instance, target: Settings, tmp_path: Path) -> None:
    backup = backed_up(instance, tmp_path)

    with pytest.raises(BackupError, match="passphrase does not open this backup"):
        restore_backup(target, backup, passphrase=b"wrong horse battery staple")

    assert_nothing_written(target)


@pytest.mark.parametrize("where", [0.5, 0.999])
def test_a_damaged_backup_is_refused_with_nothing_written(
        instance: Instance, target: Settings, tmp_path: Path, where: float) -> None:
    """One flipped bit, in the middle or near the end: gpg only notices at the end, after
    it has written out most of the archive."""
    backup = backed_up(instance, tmp_path)
    data = bytearray(backup.read_bytes())
    data[int(len(data) * where)] ^= 0x01
    backup.write_bytes(bytes(data))

    with pytest.raises(BackupError, match="damaged"):
        restore_backup(target, backup, passphrase=PASSPHRASE)

    assert_nothing_written(target)


def test_a_truncated_backup_is_refused_with_nothing_written(
        instance: Instance, target: Settings, tmp_path: Path) -> None:
    backup = backed_up(instance, tmp_path)
    backup.write_bytes(backup.read_bytes()[:-100])

    with pytest.raises(BackupError, match="damaged"):
        restore_backup(target, backup, passphrase=PASSPHRASE)

    assert_nothing_written(target)


def test_a_restore_refuses_a_data_folder_in_use_and_leaves_it_untouched(
        instance: Instance, tmp_path: Path) -> None:
    backup = backed_up(instance, tmp_path)
    before = {p: p.read_bytes() for p in instance.settings.data_dir.rglob("*") if p.is_file()}

    with pytest.raises(BackupError, match="is not empty: a restore never overwrites"):
        restore_backup(instance.settings, backup, passphrase=PASSPHRASE)

    after = {p: p.read_bytes() for p in instance.settings.data_dir.rglob("*") if p.is_file()}
    assert after == before


def test_a_data_folder_holding_only_the_lock_of_a_failed_init_is_restored_into(
        instance: Instance, target: Settings, tmp_path: Path) -> None:
    backup = backed_up(instance, tmp_path)
    target.data_dir.mkdir(mode=0o700)
    (target.data_dir / INIT_LOCK).touch()  # what an init that failed leaves

    restore_backup(target, backup, passphrase=PASSPHRASE)

    assert item_ids(target) == item_ids(instance.settings)


# A SQLite database lives in the data folder, and is refused with it (above).
@pytest.mark.parametrize("any_database_settings", ["postgres"], indirect=True)
def test_a_restore_refuses_a_postgresql_database_that_has_tables(
        instance: Instance, target: Settings, tmp_path: Path) -> None:
    backup = backed_up(instance, tmp_path)
    # The empty folder of a new server, pointed at the live server's database.
    onto_live = target.with_overrides(database_url=instance.settings.database_url)

    with pytest.raises(BackupError, match="already has tables"):
        restore_backup(onto_live, backup, passphrase=PASSPHRASE)

    assert not target.data_dir.exists()


def test_an_archive_that_is_not_a_tipbox_backup_is_refused_even_when_it_decrypts(
        target: Settings, tmp_path: Path) -> None:
    """A well-encrypted tar whose member climbs out of the folder: refused by name."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in [("tipbox-backup.json", json.dumps(
                {"format": 1, "database": "sqlite", "files": []}).encode()),
                           ("../escaped.txt", b"out of the folder")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    hostile = tmp_path / "hostile.backup"
    subprocess.run(["gpg", "--homedir", str(tmp_path), "--batch", "--pinentry-mode", "loopback",
                    "--passphrase", PASSPHRASE.decode(), "--symmetric", "-o", str(hostile)],
                   input=raw.getvalue(), check=True, capture_output=True)
    subprocess.run(["gpgconf", "--homedir", str(tmp_path), "--kill", "gpg-agent"], check=False)

    with pytest.raises(BackupError, match="not a tipbox backup"):
        restore_backup(target, hostile, passphrase=PASSPHRASE)

    assert_nothing_written(target)
    assert not (tmp_path / "escaped.txt").exists()


def test_a_backup_made_for_a_key_restores_with_its_secret_half(
        instance: Instance, target: Settings, tmp_path: Path, newsroom: Newsroom) -> None:
    out = tmp_path / "for-a-key.backup"
    make_backup(instance.settings, out, Encryption(recipient_file=newsroom.public_key_file))

    with pytest.raises(BackupError, match="secret half is not in the GnuPG home"):
        restore_backup(target, out, passphrase=None, gnupghome=tmp_path / "empty-home")
    assert_nothing_written(target)

    done = restore_backup(target, out, passphrase=None, gnupghome=newsroom.secret_home)
    assert done.files == 3
    assert store_names(target) == store_names(instance.settings)
