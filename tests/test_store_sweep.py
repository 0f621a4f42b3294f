"""What a crash leaves in the store is found and removed by ownership: a writer that is
still alive keeps everything; a dead writer's journal is settled against the rows."""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FAST_SCRYPT
from tests.helpers import lock_files, store_files, temp_files
from tipbox.codenames import CodenameHasher, generate_codename
from tipbox.config import Settings
from tipbox.db import make_engine, make_session_factory
from tipbox.models import Item, ItemKind, Journalist
from tipbox.provisioning import initialise
from tipbox.sources import SourceService
from tipbox.storage import CiphertextStore, new_item_id
from tipbox.store_claims import Move, StoreClaim
from tipbox.store_sweep import survey, sweep


def _writer_that_dies(store: CiphertextStore, *, renamed: int = 0,
                      journalled: tuple[str, ...] = ()) -> list[Path]:
    """A real process that claims, writes two temp files, journals them as ``journalled``
    (if given), renames the first ``renamed`` of them into the store and exits without
    letting go, as a worker killed at that instant would. Returns its temp paths."""
    code = textwrap.dedent(f"""
        import datetime as dt, os, sys
        from pathlib import Path
        from tipbox.storage import CiphertextStore
        from tipbox.store_claims import Move, StoreClaim
        store = CiphertextStore(Path({str(store.root)!r}))
        claim = StoreClaim(store)
        temps = [claim.temp_path() for _ in range(2)]
        for temp in temps:
            temp.write_bytes(b"ciphertext")
            store.prepare(temp, dt.date.today())
        ids = {list(journalled)!r}
        if ids:
            claim.write_journal([Move(t.name, i) for t, i in zip(temps, ids)])
        for temp, item_id in list(zip(temps, ids))[:{renamed}]:
            store.place(temp, item_id)
        print(" ".join(str(t) for t in temps))
        os._exit(0)
    """)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=60).stdout
    return [Path(p) for p in out.split()]


@pytest.fixture
def store(any_database_settings: Settings) -> CiphertextStore:
    return CiphertextStore(any_database_settings.store_dir)


def _live_writer(store: CiphertextStore, content: bytes) -> tuple[StoreClaim, Path]:
    """This process, claiming and writing one temp file: a writer still at work."""
    claim = StoreClaim(store)
    temp = claim.temp_path()
    temp.write_bytes(content)
    return claim, temp


def _add_row(db: sessionmaker[Session], item_id: str) -> None:
    source_id = SourceService(db, CodenameHasher(b"p" * 32, FAST_SCRYPT)).create(
        generate_codename())
    with db.begin() as s:
        s.add(Item(id=item_id, source_id=source_id, seq=1, kind=ItemKind.MESSAGE, size=10,
                   key_fingerprints="", submitted_on=dt.date.today()))


def test_a_live_writers_files_survive_a_sweep_and_a_dead_writers_go(
        any_database_settings: Settings, any_database: sessionmaker[Session],
        store: CiphertextStore) -> None:
    live, live_temp = _live_writer(store, b"still arriving")
    dead_temps = _writer_that_dies(store)

    assert survey(store, any_database).temp_files == 2
    found = sweep(store, any_database)
    assert (found.dead_claims, found.temp_files, found.orphans) == (1, 2, 0)
    assert temp_files(any_database_settings.data_dir) == [live_temp]
    assert not any(p.exists() for p in dead_temps)
    assert len(lock_files(any_database_settings.data_dir)) == 1  # the live writer's
    live_temp.unlink()
    live.release()
    assert lock_files(any_database_settings.data_dir) == []


def test_a_crash_between_the_renames_and_the_commit_leaves_no_file_in_the_store(
        any_database_settings: Settings, any_database: sessionmaker[Session],
        store: CiphertextStore) -> None:
    _writer_that_dies(store, renamed=1, journalled=(new_item_id(), new_item_id()))
    assert len(store_files(any_database_settings.data_dir)) == 1
    assert survey(store, any_database).found
    sweep(store, any_database)
    assert store_files(any_database_settings.data_dir) == []
    assert temp_files(any_database_settings.data_dir) == []
    assert lock_files(any_database_settings.data_dir) == []
    assert not survey(store, any_database).found


def test_a_crash_after_the_commit_keeps_every_file_its_rows_name(
        any_database_settings: Settings, any_database: sessionmaker[Session],
        store: CiphertextStore) -> None:
    ids = (new_item_id(), new_item_id())
    # The second rename had not happened when the writer died; the rows had committed.
    _writer_that_dies(store, renamed=1, journalled=ids)
    for item_id in ids:
        _add_row(any_database, item_id)
    sweep(store, any_database)
    assert sorted(p.stem for p in store_files(any_database_settings.data_dir)) == sorted(ids)
    assert temp_files(any_database_settings.data_dir) == []


def test_a_file_without_a_row_or_a_writer_is_an_orphan_and_goes(
        any_database_settings: Settings, any_database: sessionmaker[Session],
        store: CiphertextStore) -> None:
    kept, orphan = new_item_id(), new_item_id()
    for item_id in (kept, orphan):
        store.path_for(item_id).write_bytes(b"ciphertext")
    _add_row(any_database, kept)
    legacy = store.tmp / f"{'0' * 32}.part"  # an older version's name, no claim at all
    legacy.write_bytes(b"partial")
    assert survey(store, any_database).orphans == 1
    found = sweep(store, any_database)
    assert (found.orphans, found.temp_files) == (1, 1)
    assert [p.stem for p in store_files(any_database_settings.data_dir)] == [kept]
    assert not legacy.exists()


def test_tipbox_init_on_another_database_removes_none_of_the_stores_files(
        any_database_settings: Settings, any_database: sessionmaker[Session],
        store: CiphertextStore, tmp_path: Path) -> None:
    """A wrong or fresh TIPBOX_DATABASE_URL names none of the store's files: taking them
    all for orphans would delete every submission the newsroom has."""
    ids = [new_item_id() for _ in range(3)]
    for item_id in ids:
        store.path_for(item_id).write_bytes(b"ciphertext")
        _add_row(any_database, item_id)
    elsewhere = dataclasses.replace(
        any_database_settings, database_url=f"sqlite:///{tmp_path / 'another.db'}")

    initialise(elsewhere, trust_keys_folder=True)

    assert sorted(p.stem for p in store_files(any_database_settings.data_dir)) == sorted(ids)
    engine = make_engine(elsewhere.database_url)
    try:
        found = survey(store, make_session_factory(engine))
    finally:
        engine.dispose()
    assert found.unnamed_store == 3 and found.orphans == 0
    # Back on the instance's own database, an orphan beside named files still goes.
    orphan = new_item_id()
    store.path_for(orphan).write_bytes(b"ciphertext")
    assert sweep(store, any_database).orphans == 1
    assert sorted(p.stem for p in store_files(any_database_settings.data_dir)) == sorted(ids)


def test_the_files_of_the_last_sources_deleted_by_a_deletion_cut_short_still_go(
        any_database_settings: Settings, any_database: sessionmaker[Session],
        store: CiphertextStore) -> None:
    """The instance's own database (it has journalists) with no item left: the files a
    killed deletion left behind are orphans, as always."""
    with any_database.begin() as db:
        db.add(Journalist(username="ada", passphrase_hash="x", totp_secret="x",
                          created_on=dt.date.today()))
    left = [new_item_id() for _ in range(2)]
    for item_id in left:
        store.path_for(item_id).write_bytes(b"ciphertext of a deleted source")

    found = sweep(store, any_database)

    assert (found.orphans, found.unnamed_store) == (2, 0)
    assert store_files(any_database_settings.data_dir) == []


def test_a_live_writers_journalled_files_are_no_orphans(
        any_database: sessionmaker[Session], store: CiphertextStore) -> None:
    claim, temp = _live_writer(store, b"ciphertext")
    item_id = new_item_id()
    claim.write_journal([Move(temp.name, item_id)])
    store.place(temp, item_id)  # renamed, its row not yet committed
    assert not sweep(store, any_database).found
    assert store.path_for(item_id).exists()
    claim.clear_journal()
    claim.release()
