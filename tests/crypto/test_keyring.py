"""The start-up gate: which key folders let submissions in, and what it says otherwise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.crypto.keyfactory import export, new_key, revoke
from tests.helpers import Newsroom
from tipbox.crypto.keyring import load_keyring


def _load(keys: Path, tmp_path: Path):
    return load_keyring(keys, tmp_path / "gnupg")


def test_a_current_encryption_key_is_accepted(newsroom: Newsroom, tmp_path: Path) -> None:
    ring = _load(newsroom.keys_dir, tmp_path)
    assert ring.accepting
    assert ring.fingerprints == (newsroom.fingerprint,)
    assert ring.problem is None


def test_an_empty_or_missing_keys_folder_stops_submissions(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "empty", tmp_path / "missing"):
        ring = _load(folder, tmp_path)
        assert not ring.accepting
        assert ring.problem and "No newsroom public key found" in ring.problem


def test_secret_key_material_stops_submissions_and_says_so(tmp_path: Path) -> None:
    home = tmp_path / "h"
    fpr = new_key(home)
    keys = tmp_path / "keys"
    export(home, fpr, keys / "good.asc")
    export(home, fpr, keys / "oops.asc", secret=True)
    ring = _load(keys, tmp_path)
    assert not ring.accepting
    assert ring.problem and "SECRET key material" in ring.problem and "oops.asc" in ring.problem


def expired(home: Path) -> str:
    return new_key(home, expire="1d", faked_time="20200101T000000")


def revoked(home: Path) -> str:
    fpr = new_key(home)
    revoke(home, fpr)
    return fpr


def signing_only(home: Path) -> str:
    return new_key(home, usage="sign", subkey=None)


@pytest.mark.parametrize(("make", "reason"), [
    (expired, "has expired"),
    (revoked, "revoked"),
    (signing_only, "no valid encryption-capable"),
])
def test_a_key_that_cannot_be_encrypted_to_is_not_used(
        tmp_path: Path, make: Callable[[Path], str], reason: str) -> None:
    home = tmp_path / "h"
    keys = tmp_path / "keys"
    export(home, make(home), keys / "newsroom.asc")
    ring = _load(keys, tmp_path)
    assert not ring.accepting
    assert ring.problem and reason in ring.problem


def test_unusable_keys_are_skipped_when_a_good_one_is_present(tmp_path: Path) -> None:
    good_home, old_home = tmp_path / "good", tmp_path / "old"
    good = new_key(good_home)
    old = new_key(old_home, expire="1d", faked_time="20200101T000000")
    keys = tmp_path / "keys"
    export(good_home, good, keys / "a.asc")
    export(old_home, old, keys / "b.asc")
    ring = _load(keys, tmp_path)
    assert ring.accepting
    assert ring.fingerprints == (good,)


def test_garbage_in_the_keys_folder_is_reported_not_fatal(tmp_path: Path,
                                                          newsroom: Newsroom) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / "newsroom.asc").write_bytes(newsroom.public_key_file.read_bytes())
    (keys / "junk.asc").write_text("this is not a key")
    ring = _load(keys, tmp_path)
    assert ring.accepting
    assert ring.fingerprints == (newsroom.fingerprint,)


def test_two_workers_share_one_home_per_key_set(newsroom: Newsroom, tmp_path: Path) -> None:
    one = _load(newsroom.keys_dir, tmp_path)
    two = _load(newsroom.keys_dir, tmp_path)
    assert one.gpg is not None and two.gpg is not None
    assert one.gpg.home == two.gpg.home
    homes = [p for p in (tmp_path / "gnupg").iterdir() if p.name.startswith("home-")]
    assert len(homes) == 1
