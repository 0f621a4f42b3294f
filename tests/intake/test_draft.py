"""Receiving a submission without HTTP: all or nothing, names sanitised.

Runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, func, make_url, select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FAST_SCRYPT
from tests.helpers import Newsroom, gpg_decrypt, store_files, temp_files
from tipbox.codenames import CodenameHasher, generate_codename
from tipbox.config import Settings
from tipbox.crypto.keyring import Keyring, load_keyring
from tipbox.errors import DatabaseUnavailable, KeyringUnusable, SubmissionRejected, UploadTooLarge
from tipbox.inbox import InboxService
from tipbox.intake.draft import Draft, DraftState
from tipbox.intake.file_items import safe_filename, worth_compressing
from tipbox.models import Item, ItemKind, Source
from tipbox.sources import SourceService
from tipbox.storage import CiphertextStore


@dataclass
class World:
    settings: Settings
    db: sessionmaker[Session]
    ring: Keyring
    store: CiphertextStore
    sources: SourceService

    def draft(self, max_files: int = 10) -> Draft:
        return Draft(self.ring, self.store, self.db, max_files)


@pytest.fixture
def world(any_database_settings: Settings, any_database: sessionmaker[Session],
          newsroom: Newsroom) -> World:
    settings, db = any_database_settings, any_database
    return World(settings, db, load_keyring(newsroom.keys_dir, settings.gnupg_dir),
                 CiphertextStore(settings.store_dir),
                 SourceService(db, CodenameHasher(b"p" * 32, FAST_SCRYPT)))


def test_a_submission_commits_files_and_rows_together(world: World, newsroom: Newsroom) -> None:
    settings, db, sources = world.settings, world.db, world.sources
    source_id = sources.create(generate_codename())
    with world.draft() as draft:
        draft.add_message("hello")
        draft.add_file(io.BytesIO(b"abc" * 1000), "C:\\Users\\jdoe\\Desktop\\memo.txt")
        receipt = draft.commit(source_id)
    assert (receipt.messages, receipt.files) == (1, 1)
    with db() as s:
        items = s.scalars(select(Item).order_by(Item.seq)).all()
        assert [i.kind for i in items] == [ItemKind.MESSAGE, ItemKind.FILE]
        assert all(i.fingerprints == [newsroom.fingerprint] for i in items)
        sizes = {i.id: i.size for i in items}
    files = store_files(settings.data_dir)
    assert {p.stem: p.stat().st_size for p in files} == sizes
    names = sorted(gpg_decrypt(p, newsroom.secret_home).filename for p in files)
    assert names == ["", "memo.txt"]  # the account name in the path never left the browser's side


def test_leaving_the_draft_without_commit_keeps_nothing(world: World) -> None:
    settings, db = world.settings, world.db
    with pytest.raises(RuntimeError), world.draft() as draft:
        draft.add_message("hello")
        draft.add_file(io.BytesIO(b"x" * 100_000), "a.bin")
        raise RuntimeError("connection dropped")
    assert store_files(settings.data_dir) == []
    assert temp_files(settings.data_dir) == []
    with db() as s:
        assert s.scalar(select(func.count(Item.id))) == 0


def test_more_files_than_allowed_is_refused_whole(world: World) -> None:
    settings = world.settings
    source_id = world.sources.create(generate_codename())
    with pytest.raises(UploadTooLarge), world.draft(max_files=2) as draft:
        for n in range(3):
            draft.add_file(io.BytesIO(b"data"), f"{n}.txt")
        draft.commit(source_id)
    assert store_files(settings.data_dir) == [] and temp_files(settings.data_dir) == []


def test_an_empty_draft_cannot_be_committed(world: World) -> None:
    source_id = world.sources.create(generate_codename())
    with pytest.raises(SubmissionRejected, match="nothing to send"), world.draft() as draft:
        assert draft.add_file(io.BytesIO(b""), "empty.txt") is False
        draft.commit(source_id)


def test_a_failed_database_commit_removes_the_renamed_files(world: World) -> None:
    settings = world.settings
    with pytest.raises(SubmissionRejected, match="session ended"), world.draft() as draft:
        draft.add_message("for a source that does not exist")
        draft.commit(source_id=999_999)
    assert store_files(settings.data_dir) == [] and temp_files(settings.data_dir) == []


def test_a_source_deleted_while_its_submission_commits_gets_a_clear_refusal(
        world: World) -> None:
    # A journalist (or `tipbox prune`) deletes the source as the draft's commit begins,
    # before its first statement: a clear page for the source, and no file left behind.
    # (Once that statement has run, it holds the write or row lock and the deletion waits.)
    settings = world.settings
    source_id = world.sources.create(generate_codename())

    deleted: list[int] = []
    started: list[bool] = []

    def delete_the_source(session: Session, *_: object) -> None:
        if not started:  # once: the deletion begins a session of its own
            started.append(True)
            deleted.append(InboxService(world.db, world.store).delete_sources([source_id]))

    with world.draft() as draft:
        draft.add_message("sent just as the source was deleted")
        event.listen(world.db, "after_begin", delete_the_source)
        try:
            with pytest.raises(SubmissionRejected, match="session ended"):
                draft.commit(source_id)
        finally:
            event.remove(world.db, "after_begin", delete_the_source)
    assert deleted == [1]
    assert store_files(settings.data_dir) == [] and temp_files(settings.data_dir) == []
    with world.db() as s:
        assert s.scalar(select(func.count(Item.id))) == 0


def test_concurrent_submissions_from_one_source_never_share_a_number(world: World) -> None:
    source_id = world.sources.create(generate_codename())
    together = threading.Barrier(6)
    failures: list[BaseException] = []

    def submit(n: int) -> None:
        try:
            with world.draft() as draft:
                draft.add_message(f"message {n}")
                together.wait(10)  # every commit starts at the same moment
                draft.commit(source_id)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    with world.db() as s:
        numbers = sorted(s.scalars(select(Item.seq).where(Item.source_id == source_id)))
    assert numbers == [1, 2, 3, 4, 5, 6]


def encrypted_elsewhere(world: World, data: bytes, tmp: Path) -> bytes:
    """Ciphertext made outside the draft, as a source's browser makes it."""
    out = tmp / "browser.gpg"
    world.ring.require().encrypt_bytes(data, world.ring.fingerprints, out, filename="x.pdf")
    return out.read_bytes()


class Trickle:
    """A stream that hands out its bytes in small reads, as a slow upload does."""

    def __init__(self, data: bytes, step: int = 1000) -> None:
        self._data, self._pos, self._step = data, 0, step

    def read(self, size: int = -1, /) -> bytes:
        chunk = self._data[self._pos:self._pos + self._step]
        self._pos += len(chunk)
        return chunk


def test_an_item_encrypted_by_the_browser_is_stored_byte_for_byte(
        world: World, newsroom: Newsroom, tmp_path: Path) -> None:
    cipher = encrypted_elsewhere(world, b"%PDF evidence" * 1000, tmp_path)
    source_id = world.sources.create(generate_codename())
    with world.draft() as draft:
        draft.add_encrypted(Trickle(cipher), ItemKind.FILE)
        receipt = draft.commit(source_id)
    assert (receipt.messages, receipt.files) == (0, 1)
    [path] = store_files(world.settings.data_dir)
    assert path.read_bytes() == cipher
    with world.db() as s:
        item = s.scalars(select(Item)).one()
        assert (item.kind, item.size, item.fingerprints) == (
            ItemKind.FILE, len(cipher), [newsroom.fingerprint])
    assert gpg_decrypt(path, newsroom.secret_home).filename == "x.pdf"


def test_an_encrypted_item_refused_mid_stream_takes_the_whole_draft_with_it(
        world: World, tmp_path: Path) -> None:
    cipher = encrypted_elsewhere(world, b"data" * 10_000, tmp_path)
    source_id = world.sources.create(generate_codename())
    with pytest.raises(SubmissionRejected, match="extra data after its end"), \
            world.draft() as draft:
        draft.add_message("sent by the no-JS path in the same draft")
        draft.add_encrypted(Trickle(cipher + b"\x00" * 5000), ItemKind.FILE)
        draft.commit(source_id)
    assert store_files(world.settings.data_dir) == []
    assert temp_files(world.settings.data_dir) == []


def test_sources_are_found_by_codename_only(world: World) -> None:
    db, sources = world.db, world.sources
    codename = generate_codename()
    source_id = sources.create(codename)
    assert sources.create(codename) == source_id  # a re-sent form does not make a second one
    assert sources.find(codename.upper()) == source_id
    assert sources.find(generate_codename()) is None
    with db() as s:
        row = s.get(Source, source_id)
        assert row is not None
        assert codename not in row.codename_hash and len(row.designation.split()) == 2


@pytest.mark.parametrize(("raw", "expected"), [
    ("report.pdf", "report.pdf"),
    ("../../etc/passwd", "passwd"),
    ("/etc/passwd", "passwd"),
    ("C:\\Users\\x\\a.pdf", "a.pdf"),
    ("a\x00b\x1b[31m.txt", "ab[31m.txt"),
    ("evil\u202etxt.exe", "eviltxt.exe"),
    ("", "file-3"),
    ("..", "file-3"),
    ("   ", "file-3"),
])
def test_file_names_are_sanitised_for_the_literal_packet(raw: str, expected: str) -> None:
    assert safe_filename(raw, 3) == expected


def test_long_names_fit_255_bytes_and_keep_their_extension() -> None:
    name = safe_filename("ü" * 1000 + ".docx", 1)
    assert len(name.encode()) <= 255 and name.endswith(".docx")


def test_only_compressible_data_is_compressed() -> None:
    import os

    assert worth_compressing(b"plain text, again and again. " * 3000)
    assert not worth_compressing(os.urandom(65536))
    assert not worth_compressing(b"tiny")


# --- a draft that outlives one request ---------------------------------------------------


def test_a_kept_draft_is_plain_data_that_a_later_draft_carries_on_and_commits(
        world: World, newsroom: Newsroom) -> None:
    source_id = world.sources.create(generate_codename())
    with world.draft() as first:
        first.add_message("the first piece, sent in one request")
        first.add_file(io.BytesIO(b""), "empty.txt")
        first.add_file(io.BytesIO(b"evidence " * 500), "C:\\Users\\jdoe\\ledger.csv")
        state = first.keep()
    saved = json.dumps(state.to_dict())
    # Nothing a source sent is in the state: no name, no path, no text.
    for secret in ("ledger", "jdoe", "empty.txt", "first piece", "evidence"):
        assert secret not in saved
    assert len(temp_files(world.settings.data_dir)) == 2  # kept, not discarded
    assert store_files(world.settings.data_dir) == []

    reloaded = DraftState.from_dict(json.loads(saved))
    with Draft(world.ring, world.store, world.db, 10, state=reloaded) as later:
        later.add_message("the second piece, in another request")
        receipt = later.commit(source_id)
    assert (receipt.messages, receipt.files, receipt.skipped_empty_files) == (2, 1, 1)
    assert temp_files(world.settings.data_dir) == []
    plain = sorted((p.filename, p.data) for p in (gpg_decrypt(path, newsroom.secret_home)
                                                  for path in store_files(world.settings.data_dir)))
    assert plain == [("", b"the first piece, sent in one request"),
                     ("", b"the second piece, in another request"),
                     ("ledger.csv", b"evidence " * 500)]


def test_a_kept_draft_can_be_given_up_and_a_resumed_one_still_discards_by_default(
        world: World) -> None:
    with world.draft() as first:
        first.add_message("kept for later")
        state = first.keep()
    with pytest.raises(RuntimeError), \
            Draft(world.ring, world.store, world.db, 10, state=state) as later:
        later.add_message("and one more")
        raise RuntimeError("the second request broke off")
    assert temp_files(world.settings.data_dir) == []  # all or nothing, both pieces gone
    assert state.items == []


def test_a_kept_draft_takes_no_more_items(world: World) -> None:
    with world.draft() as draft:
        draft.add_message("kept")
        state = draft.keep()
        with pytest.raises(RuntimeError, match="make a new one"):
            draft.add_message("too late")
    state.discard(world.store)
    assert temp_files(world.settings.data_dir) == []


@pytest.mark.parametrize("name", ["../../etc/passwd", "/tmp/x.part", "x.part",
                                  "0" * 32 + ".gpg", "0" * 32 + ".part\n"])
def test_a_reloaded_state_cannot_name_a_file_outside_the_temp_folder(name: str) -> None:
    data = {"items": [{"temp_name": name, "kind": "file", "size": 1, "recipients": []}],
            "skipped_empty_files": 0}
    with pytest.raises(ValueError, match="not a temp file name"):
        DraftState.from_dict(data)


def test_a_draft_for_a_keyring_that_is_not_accepting_refuses_at_once(world: World) -> None:
    off = Keyring(None, (), "No newsroom key is configured.")
    with pytest.raises(KeyringUnusable):
        Draft(off, world.store, world.db, 10)


def test_a_database_that_cannot_be_reached_at_commit_is_its_own_failure(
        world: World, tmp_path: Path) -> None:
    url = make_url(world.settings.database_url)
    broken = (f"sqlite:///{tmp_path}/no-such-folder/tipbox.db"
              if url.get_backend_name() == "sqlite"
              else url.set(port=1).render_as_string(hide_password=False))
    engine = create_engine(broken)
    try:
        with pytest.raises(DatabaseUnavailable) as caught, \
                Draft(world.ring, world.store, sessionmaker(engine), 10) as draft:
            draft.add_message("kept nowhere")
            draft.commit(source_id=1)
    finally:
        engine.dispose()
    assert caught.value.status == 503 and caught.value.log_cause == "OperationalError"
    assert store_files(world.settings.data_dir) == [] and temp_files(world.settings.data_dir) == []
