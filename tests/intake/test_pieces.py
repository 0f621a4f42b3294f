"""Uploads sent in pieces, without HTTP: each piece continues the item exactly where the
server's bytes end, or is refused and leaves nothing; the submission commits all at once.

Ciphertext comes from the real gpg, to the newsroom's real key; it runs on SQLite and on a
real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FAST_SCRYPT
from tests.helpers import Newsroom, gpg_decrypt, lock_files, store_files, temp_files
from tipbox.codenames import CodenameHasher, generate_codename
from tipbox.config import Settings
from tipbox.crypto.gpg import GnuPG
from tipbox.crypto.keyring import Keyring, load_keyring
from tipbox.errors import (
    DailyQuotaReached,
    MalformedUpload,
    PageKeysOutdated,
    PieceOutOfPlace,
    StorageReserveReached,
    SubmissionRejected,
    UploadBusy,
    UploadGone,
    UploadTooLarge,
)
from tipbox.intake.pieces import MAX_PIECE_BYTES, Piece, PieceService, UploadOwner
from tipbox.models import Item, ItemKind, Upload, WebSession
from tipbox.sources import SourceService
from tipbox.storage import CiphertextStore
from tipbox.store_claims import StoreClaim
from tipbox.store_sweep import sweep

NOW = dt.datetime(2026, 12, 2, 1, 0, tzinfo=dt.UTC)


class Moment:
    """The service's clock, moved on by hand."""

    def __init__(self) -> None:
        self.value = NOW

    def __call__(self) -> dt.datetime:
        return self.value


@dataclass
class World:
    settings: Settings
    db: sessionmaker[Session]
    ring: Keyring
    store: CiphertextStore
    sources: SourceService
    newsroom: Newsroom
    moment: Moment
    tmp: Path

    def service(self, **changes: object) -> PieceService:
        return PieceService(CiphertextStore(self.settings.store_dir), self.db,
                            self.settings.with_overrides(**changes) if changes else self.settings,
                            now=self.moment, today=lambda: self.moment.value.date())

    def owner(self) -> UploadOwner:
        """A new source, logged in: its session's row lives for two hours."""
        source_id = self.sources.create(generate_codename())
        key = hashlib.sha256(secrets.token_bytes(16)).hexdigest()
        with self.db.begin() as s:
            s.add(WebSession(id_hash=key, interface="source", data="{}",
                             expires_at=self.moment.value + dt.timedelta(hours=2)))
        return UploadOwner(source_id, key)

    def ciphertext(self, plaintext: bytes, name: str = "memo.pdf") -> bytes:
        out = self.tmp / f"{secrets.token_hex(6)}.gpg"
        GnuPG(self.newsroom.secret_home).encrypt_bytes(
            plaintext, [self.newsroom.fingerprint], out, filename=name)
        return out.read_bytes()

    def start(self, service: PieceService, owner: UploadOwner) -> str:
        return service.start(owner, self.ring, [self.newsroom.fingerprint]).token

    def send(self, service: PieceService, owner: UploadOwner, token: str, item: int,
             data: bytes, piece_bytes: int, kind: ItemKind = ItemKind.FILE) -> None:
        """One item, in pieces of ``piece_bytes``, the last one marked."""
        for offset in range(0, len(data), piece_bytes):
            chunk = data[offset:offset + piece_bytes]
            service.append(owner, self.ring, token,
                           Piece(item, offset, len(chunk), kind,
                                 last=offset + piece_bytes >= len(data)),
                           io.BytesIO(chunk))

    def held(self, service: PieceService, owner: UploadOwner, token: str) -> list[int]:
        return [i.held for i in service.status(owner, token).items]


@pytest.fixture
def world(any_database_settings: Settings, any_database: sessionmaker[Session],
          newsroom: Newsroom, tmp_path: Path) -> World:
    settings = any_database_settings
    return World(settings, any_database, load_keyring(newsroom.keys_dir, settings.gnupg_dir),
                 CiphertextStore(settings.store_dir),
                 SourceService(any_database, CodenameHasher(b"p" * 32, FAST_SCRYPT)),
                 newsroom, Moment(), tmp_path)


@pytest.fixture
def started(world: World) -> tuple[PieceService, UploadOwner, str, bytes]:
    """An upload whose first item has 100,000 of its bytes held."""
    service, owner = world.service(), world.owner()
    token = world.start(service, owner)
    data = world.ciphertext(os.urandom(300_000))
    service.append(owner, world.ring, token, Piece(0, 0, 100_000), io.BytesIO(data[:100_000]))
    return service, owner, token, data


def bytes_on_disk(world: World, token: str) -> int:
    return sum(p.stat().st_size for p in world.store.tmp.glob(f"{token}-*.part"))


def test_an_upload_in_pieces_commits_every_item_at_once_and_each_decrypts_with_gpg(
        world: World) -> None:
    service, owner = world.service(), world.owner()
    token = world.start(service, owner)
    message, document = b"the minutes of the meeting", os.urandom(700_000)
    world.send(service, owner, token, 0, world.ciphertext(message, ""), 200, ItemKind.MESSAGE)
    world.send(service, owner, token, 1, world.ciphertext(document), 65_536)
    assert store_files(world.settings.data_dir) == []  # nothing is the newsroom's yet
    receipt = service.finish(owner, world.ring, token)
    assert receipt is not None and (receipt.messages, receipt.files) == (1, 1)
    with world.db() as s:
        items = s.scalars(select(Item).where(Item.source_id == owner.source_id)
                          .order_by(Item.seq)).all()
        assert [i.kind for i in items] == [ItemKind.MESSAGE, ItemKind.FILE]
        paths = [world.store.path_for(i.id) for i in items]
    assert gpg_decrypt(paths[0], world.newsroom.secret_home).data == message
    opened = gpg_decrypt(paths[1], world.newsroom.secret_home)
    assert (opened.data, opened.filename) == (document, "memo.pdf")
    assert temp_files(world.settings.data_dir) == [] and lock_files(world.settings.data_dir) == []
    # A page that lost the answer asks again: told it is done, nothing is stored twice.
    assert service.finish(owner, world.ring, token) is None
    assert len(store_files(world.settings.data_dir)) == 2


@pytest.mark.parametrize("item, offset, length", [
    pytest.param(0, 0, 100_000, id="repeated"),
    pytest.param(0, 50_000, 100_000, id="overlapping"),
    pytest.param(0, 150_000, 10_000, id="out-of-order"),
    pytest.param(1, 0, 10_000, id="next-item-before-this-one-ends"),
    pytest.param(3, 0, 10_000, id="item-far-ahead"),
])
def test_a_piece_that_does_not_start_at_the_bytes_held_is_refused_and_changes_nothing(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes],
        item: int, offset: int, length: int) -> None:
    service, owner, token, data = started
    with pytest.raises(PieceOutOfPlace):
        service.append(owner, world.ring, token, Piece(item, offset, length),
                       io.BytesIO(data[offset:offset + length]))
    assert world.held(service, owner, token) == [100_000]
    assert bytes_on_disk(world, token) == 100_000


def test_the_page_carries_on_from_the_bytes_held_after_a_refusal(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    service, owner, token, data = started
    with pytest.raises(PieceOutOfPlace):
        service.append(owner, world.ring, token, Piece(0, 0, 100_000),
                       io.BytesIO(data[:100_000]))
    held = world.held(service, owner, token)[0]
    rest = data[held:]
    service.append(owner, world.ring, token, Piece(0, held, len(rest), last=True),
                   io.BytesIO(rest))
    assert service.status(owner, token).items[0].complete
    service.finish(owner, world.ring, token)
    (path,) = store_files(world.settings.data_dir)
    assert path.read_bytes() == data


def test_a_piece_for_an_item_already_complete_is_refused(world: World) -> None:
    service, owner = world.service(), world.owner()
    token = world.start(service, owner)
    data = world.ciphertext(b"short")
    world.send(service, owner, token, 0, data, len(data))
    with pytest.raises(PieceOutOfPlace):
        service.append(owner, world.ring, token, Piece(0, len(data), 10),
                       io.BytesIO(bytes(10)))
    assert world.held(service, owner, token) == [len(data)]


class Untouchable:
    def read(self, size: int = -1, /) -> bytes:
        raise AssertionError("the body of a refused piece was read")


def test_a_piece_larger_than_the_largest_is_refused_before_a_byte_of_it_is_read(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    service, owner, token, _data = started
    with pytest.raises(UploadTooLarge):
        service.append(owner, world.ring, token, Piece(0, 100_000, MAX_PIECE_BYTES + 1),
                       Untouchable())
    assert world.held(service, owner, token) == [100_000]
    assert bytes_on_disk(world, token) == 100_000


def test_pieces_past_the_submission_limit_are_refused(world: World) -> None:
    service, owner = world.service(max_submission_bytes=150_000), world.owner()
    token = world.start(service, owner)
    data = world.ciphertext(os.urandom(200_000))
    service.append(owner, world.ring, token, Piece(0, 0, 100_000), io.BytesIO(data[:100_000]))
    with pytest.raises(UploadTooLarge):
        service.append(owner, world.ring, token, Piece(0, 100_000, 60_000), Untouchable())
    assert bytes_on_disk(world, token) == 100_000


def test_a_piece_is_refused_when_the_disk_is_down_to_its_reserve(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    _service, owner, token, data = started
    tight = world.service(min_free_bytes=world.store.free_bytes() + 2**40)
    with pytest.raises(StorageReserveReached):
        tight.append(owner, world.ring, token, Piece(0, 100_000, 1000),
                     io.BytesIO(data[100_000:101_000]))
    assert world.held(tight, owner, token) == [100_000]
    assert bytes_on_disk(world, token) == 100_000


def test_held_pieces_count_against_the_daily_quota(world: World) -> None:
    service, owner = world.service(source_daily_bytes=150_000), world.owner()
    data = world.ciphertext(os.urandom(200_000))
    first = world.start(service, owner)
    service.append(owner, world.ring, first, Piece(0, 0, 100_000), io.BytesIO(data[:100_000]))
    # Another session of the same source: what the first holds counts as already sent.
    other = UploadOwner(owner.source_id, world.owner().session_key)
    second = world.start(service, other)
    with pytest.raises(DailyQuotaReached):
        service.append(other, world.ring, second, Piece(0, 0, 60_000), Untouchable())
    assert bytes_on_disk(world, second) == 0


def test_a_forged_piece_ends_the_upload_and_keeps_nothing(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    service, owner, token, data = started
    forged = b"%PDF-1.7 plain text where ciphertext should be" * 100
    # Damaged framing from here on: the check carried over from the first piece sees it.
    tampered = data[100_000:150_000][:1] + forged
    with pytest.raises(SubmissionRejected) as refused:
        service.append(owner, world.ring, token, Piece(0, 100_000, len(tampered), last=True),
                       io.BytesIO(tampered))
    assert "nothing from this submission was kept" in refused.value.message
    assert temp_files(world.settings.data_dir) == [] and lock_files(world.settings.data_dir) == []
    with pytest.raises(UploadGone):
        service.status(owner, token)


def test_an_item_encrypted_to_another_key_is_refused_at_its_first_piece(
        world: World, second_newsroom_key: Newsroom) -> None:
    service, owner = world.service(), world.owner()
    token = world.start(service, owner)
    out = world.tmp / "theirs.gpg"
    GnuPG(second_newsroom_key.secret_home).encrypt_bytes(
        os.urandom(50_000), [second_newsroom_key.fingerprint], out)
    theirs = out.read_bytes()
    with pytest.raises(SubmissionRejected):
        service.append(owner, world.ring, token, Piece(0, 0, 20_000),
                       io.BytesIO(theirs[:20_000]))
    assert temp_files(world.settings.data_dir) == []


def send_the_rest_and_finish(world: World, service: PieceService, owner: UploadOwner,
                             token: str, data: bytes) -> Path:
    """The first item's bytes from 100,000 on as its last piece, then finish; the one
    stored file."""
    rest = data[100_000:]
    service.append(owner, world.ring, token, Piece(0, 100_000, len(rest), last=True),
                   io.BytesIO(rest))
    assert service.finish(owner, world.ring, token) is not None
    (path,) = store_files(world.settings.data_dir)
    return path



def test_bytes_after_the_end_of_an_item_are_refused_even_in_a_later_piece(
        world: World) -> None:
    service, owner = world.service(), world.owner()
    token = world.start(service, owner)
    data = world.ciphertext(os.urandom(30_000))
    service.append(owner, world.ring, token, Piece(0, 0, len(data)), io.BytesIO(data))
    # The message is whole, but the piece did not say so; more bytes cannot follow it.
    with pytest.raises(SubmissionRejected):
        service.append(owner, world.ring, token, Piece(0, len(data), 10, last=True),
                       io.BytesIO(bytes(10)))
    assert temp_files(world.settings.data_dir) == []


def test_a_piece_cut_off_half_way_leaves_the_item_as_it_was(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    service, owner, token, data = started
    with pytest.raises(MalformedUpload):
        # Announced 100,000 bytes; the connection broke after 40,000.
        service.append(owner, world.ring, token, Piece(0, 100_000, 100_000),
                       io.BytesIO(data[100_000:140_000]))
    assert world.held(service, owner, token) == [100_000]
    assert bytes_on_disk(world, token) == 100_000
    assert send_the_rest_and_finish(world, service, owner, token, data).read_bytes() == data


def test_bytes_a_killed_worker_left_past_the_recorded_end_are_cut_off(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    service, owner, token, data = started
    (part,) = world.store.tmp.glob(f"{token}-*.part")
    with part.open("ab") as half_written:  # a piece whose row update never happened
        half_written.write(data[100_000:130_000])
    assert send_the_rest_and_finish(world, service, owner, token, data).read_bytes() == data


def test_a_restarted_server_carries_the_check_on_from_the_database(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    _old, owner, token, data = started
    restarted = world.service()  # a new service and store object: nothing in memory
    path = send_the_rest_and_finish(world, restarted, owner, token, data)
    assert gpg_decrypt(path, world.newsroom.secret_home).filename == "memo.pdf"


def test_pieces_for_another_sources_upload_are_refused_as_if_it_did_not_exist(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    service, owner, token, data = started
    stranger = world.owner()
    for someone in (stranger, UploadOwner(stranger.source_id, owner.session_key),
                    UploadOwner(owner.source_id, stranger.session_key)):
        with pytest.raises(UploadGone):
            service.append(someone, world.ring, token, Piece(0, 100_000, 1000),
                           io.BytesIO(data[100_000:101_000]))
        with pytest.raises(UploadGone):
            service.status(someone, token)
        with pytest.raises(UploadGone):
            service.finish(someone, world.ring, token)
        with pytest.raises(UploadGone):
            service.cancel(someone, token)
    assert world.held(service, owner, token) == [100_000]
    with pytest.raises(UploadGone):
        service.status(owner, "../" + token)


def test_pieces_after_the_session_ended_are_refused_and_its_upload_is_gone(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    service, owner, token, data = started
    assert service.end_session(owner.session_key) == 1  # logged out
    assert temp_files(world.settings.data_dir) == [] and lock_files(world.settings.data_dir) == []
    with pytest.raises(UploadGone):
        service.append(owner, world.ring, token, Piece(0, 100_000, 1000),
                       io.BytesIO(data[100_000:101_000]))
    assert temp_files(world.settings.data_dir) == []


def test_a_piece_while_another_of_the_same_upload_arrives_is_refused(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    service, owner, token, data = started
    in_flight = StoreClaim.take_parked(world.store, token)  # a request still reading a body
    assert in_flight is not None
    try:
        with pytest.raises(UploadBusy):
            service.append(owner, world.ring, token, Piece(0, 100_000, 1000), Untouchable())
    finally:
        in_flight.park()
    service.append(owner, world.ring, token, Piece(0, 100_000, 1000),
                   io.BytesIO(data[100_000:101_000]))
    assert world.held(service, owner, token) == [101_000]


def test_a_key_change_mid_upload_ends_it_and_the_page_reloads_the_keys(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes],
        second_newsroom_key: Newsroom, tmp_path: Path) -> None:
    service, owner, token, data = started
    other = load_keyring(second_newsroom_key.keys_dir, tmp_path / "other-gnupg")
    with pytest.raises(PageKeysOutdated):
        service.append(owner, other, token, Piece(0, 100_000, 1000),
                       io.BytesIO(data[100_000:101_000]))
    assert temp_files(world.settings.data_dir) == []


def test_finishing_before_every_item_is_complete_is_refused(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    service, owner, token, _data = started
    with pytest.raises(SubmissionRejected) as refused:
        service.finish(owner, world.ring, token)
    assert refused.value.status == 409
    assert store_files(world.settings.data_dir) == []
    assert world.held(service, owner, token) == [100_000]


def test_cancel_removes_the_upload_and_its_bytes(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    service, owner, token, _data = started
    service.cancel(owner, token)
    assert temp_files(world.settings.data_dir) == [] and lock_files(world.settings.data_dir) == []
    with world.db() as s:
        assert s.scalars(select(Upload)).all() == []


def test_starting_again_in_the_same_session_ends_the_earlier_upload(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    service, owner, token, _data = started
    again = world.start(service, owner)
    assert again != token
    with pytest.raises(UploadGone):
        service.status(owner, token)
    assert bytes_on_disk(world, token) == 0


# --- the sweeper and unfinished uploads ----------------------------------------------------


def test_the_sweeper_leaves_an_upload_alone_while_its_session_lives(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    service, owner, token, _data = started
    found = sweep(world.store, world.db, now=world.moment.value)
    assert not found.found
    assert bytes_on_disk(world, token) == 100_000
    assert world.held(service, owner, token) == [100_000]


def test_the_sweeper_removes_an_upload_once_its_session_expired(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    _service, _owner, token, _data = started
    later = world.moment.value + dt.timedelta(hours=2, minutes=10)  # past the session's end
    found = sweep(world.store, world.db, now=later)
    assert (found.dead_claims, found.temp_files) == (1, 1)
    assert bytes_on_disk(world, token) == 0 and lock_files(world.settings.data_dir) == []
    with world.db() as s:
        assert s.scalars(select(Upload)).all() == []


def test_the_sweeper_removes_an_upload_left_idle_too_long(world: World) -> None:
    service, owner = world.service(upload_idle_minutes=30), world.owner()
    token = world.start(service, owner)
    data = world.ciphertext(os.urandom(50_000))
    service.append(owner, world.ring, token, Piece(0, 0, 10_000), io.BytesIO(data[:10_000]))
    assert not sweep(world.store, world.db, now=NOW + dt.timedelta(minutes=20)).found
    world.moment.value = NOW + dt.timedelta(minutes=45)  # the session lives; no piece came
    with pytest.raises(UploadGone):
        service.append(owner, world.ring, token, Piece(0, 10_000, 1000),
                       io.BytesIO(data[10_000:11_000]))
    assert sweep(world.store, world.db, now=world.moment.value).dead_claims == 1
    assert temp_files(world.settings.data_dir) == []


def test_a_piece_moves_the_idle_deadline_on(world: World) -> None:
    service, owner = world.service(upload_idle_minutes=30), world.owner()
    token = world.start(service, owner)
    data = world.ciphertext(os.urandom(50_000))
    world.moment.value = NOW + dt.timedelta(minutes=25)
    service.append(owner, world.ring, token, Piece(0, 0, 10_000), io.BytesIO(data[:10_000]))
    assert not sweep(world.store, world.db, now=NOW + dt.timedelta(minutes=45)).found
    assert bytes_on_disk(world, token) == 10_000


class CancelledMidway:
    """A piece's body during which the page's Cancel reaches the server."""

    def __init__(self, data: bytes, cancel: Callable[[], None]) -> None:
        self._data = io.BytesIO(data)
        self._cancel: Callable[[], None] | None = cancel

    def read(self, size: int = -1, /) -> bytes:
        if self._cancel is not None and self._data.tell() > 0:
            self._cancel()
            self._cancel = None
        return self._data.read(min(size, 4096))


def test_a_cancel_that_comes_while_a_piece_arrives_leaves_nothing_once_the_piece_ends(
        world: World, started: tuple[PieceService, UploadOwner, str, bytes]) -> None:
    service, owner, token, data = started
    body = CancelledMidway(data[100_000:150_000], lambda: service.cancel(owner, token))
    with pytest.raises(UploadGone):
        service.append(owner, world.ring, token, Piece(0, 100_000, 50_000), body)
    assert temp_files(world.settings.data_dir) == [] and lock_files(world.settings.data_dir) == []
