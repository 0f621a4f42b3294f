"""The ciphertext store: random names, atomic placing, day-granular times, containment."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tipbox.errors import StoreError
from tipbox.storage import CiphertextStore, new_item_id
from tipbox.store_claims import StoreClaim


def test_item_ids_are_random_lowercase_base32() -> None:
    ids = {new_item_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 26 and i.isalnum() and i.islower() for i in ids)


def _place(store: CiphertextStore, temp: Path, item_id: str, day: dt.date) -> Path:
    store.prepare(temp, day)
    final = store.place(temp, item_id)
    store.sync()
    return final


def test_placing_moves_the_temp_file_into_place_with_a_day_timestamp(tmp_path: Path) -> None:
    store = CiphertextStore(tmp_path / "store")
    temp = StoreClaim(store).temp_path()
    temp.write_bytes(b"ciphertext")
    item_id = new_item_id()
    final = _place(store, temp, item_id, dt.date(2026, 11, 30))
    assert final == store.path_for(item_id)
    assert final.read_bytes() == b"ciphertext"
    assert not temp.exists()
    midnight = dt.datetime(2026, 11, 30, tzinfo=dt.UTC).timestamp()
    assert final.stat().st_mtime == midnight
    assert final.stat().st_mode & 0o777 == 0o600


def test_placing_refuses_files_from_outside_the_store(tmp_path: Path) -> None:
    store = CiphertextStore(tmp_path / "store")
    outside = tmp_path / "elsewhere.part"
    outside.write_bytes(b"x")
    with pytest.raises(StoreError):
        _place(store, outside, new_item_id(), dt.date.today())
    assert outside.exists()


def test_placing_never_overwrites_an_existing_item(tmp_path: Path) -> None:
    store = CiphertextStore(tmp_path / "store")
    claim = StoreClaim(store)
    item_id = new_item_id()
    first = claim.temp_path()
    first.write_bytes(b"first")
    _place(store, first, item_id, dt.date.today())
    second = claim.temp_path()
    second.write_bytes(b"second")
    with pytest.raises(StoreError):
        _place(store, second, item_id, dt.date.today())
    assert store.path_for(item_id).read_bytes() == b"first"


@pytest.mark.parametrize("bad", ["../../etc/passwd", "/etc/passwd", "", "A" * 26,
                                 "abc", "a" * 25 + "/"])
def test_ids_that_are_not_ours_cannot_name_a_path(tmp_path: Path, bad: str) -> None:
    with pytest.raises(StoreError):
        CiphertextStore(tmp_path / "store").path_for(bad)
