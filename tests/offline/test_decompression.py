"""Compression bombs and full disks: an item may decompress only so far, the bundle stops
before the disk's reserve, and every item that was held back has its line in index.txt."""

from __future__ import annotations

import dataclasses
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Newsroom, mounted_tmpfs
from tests.offline.kit import Item, Sender, new_id, run_open, write_bundle
from tipbox.crypto.gpg import GnuPG
from tipbox.offline.decrypt import Decryptor, Passphrases
from tipbox.offline.limits import MIB, RESERVED_BYTES, Limits
from tipbox.offline.opener import Opener
from tipbox.offline.progress import Progress

SOURCE = "sturdy zest"
BOMB_SIZE = 128 * MIB  # zlib at level 9 makes it a ciphertext of about 170 KB


@pytest.fixture(scope="session")
def bomb(sender: Sender, newsroom: Newsroom) -> Item:
    """128 MiB of zeros in an OpenPGP compressed data packet, validly encrypted."""
    return sender.compressed_item(SOURCE, 2, bytes(MIB), BOMB_SIZE // MIB,
                                  filename="huge.txt", to=newsroom.fingerprint)


def _bundle_around(bomb: Item, sender: Sender, newsroom: Newsroom, path: Path) -> Path:
    items = [sender.item(SOURCE, "message", 1, b"before the bomb", to=[newsroom.fingerprint]),
             bomb,
             sender.item(SOURCE, "file", 3, b"%PDF-1.7 after", filename="report.pdf",
                         to=[newsroom.fingerprint])]
    return write_bundle(path, items)


def test_a_compression_bomb_is_refused_with_its_line_and_the_other_items_open(
        bomb: Item, sender: Sender, newsroom: Newsroom, tmp_path: Path) -> None:
    assert len(bomb.ciphertext) < BOMB_SIZE // 500
    bundle = _bundle_around(bomb, sender, newsroom, tmp_path / "b.tar")
    out = tmp_path / "out"

    proc = run_open(bundle, out, newsroom.secret_home)

    assert proc.returncode == 1, proc.stderr
    folder = out / SOURCE
    assert sorted(p.name for p in folder.iterdir()) == ["01-message.txt", "03-report.pdf"]
    assert (folder / "03-report.pdf").read_bytes() == b"%PDF-1.7 after"
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []
    index = (out / "index.txt").read_text()
    line = next(line for line in index.splitlines() if f"(item {bomb.id})" in line)
    assert "refused: it decompresses to more than " in line
    assert "(200x its encrypted size plus 64.0 MiB), likely a compression bomb" in line
    assert "with a larger --max-expansion" in line
    summary = "2 of 3 items decrypted; 1 refused as likely compression bombs."
    assert summary in index and summary in proc.stderr


def test_max_expansion_lets_a_file_that_large_through(
        bomb: Item, newsroom: Newsroom, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b.tar", [bomb])
    out = tmp_path / "out"

    proc = run_open(bundle, out, newsroom.secret_home, "--max-expansion", "1000")

    assert proc.returncode == 0, proc.stderr
    assert (out / SOURCE / "02-huge.txt").stat().st_size == BOMB_SIZE
    bad = run_open(bundle, out, newsroom.secret_home, "--max-expansion", "0")
    assert bad.returncode == 2 and "from 1 to 1000000" in bad.stderr


def test_the_bundle_stops_before_the_disk_reserve_and_says_which_items_wait(
        bomb: Item, sender: Sender, newsroom: Newsroom, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # A reserve that leaves 48 MiB to write: the message fits, the 128 MiB file does not
    # (another test run writing to this disk meanwhile moves that by less than the gap).
    limits = Limits(max_expansion=100_000, reserve=shutil.disk_usage(out).free - 48 * MIB)
    bundle = _bundle_around(bomb, sender, newsroom, tmp_path / "b.tar")
    gpg = GnuPG.existing_home(newsroom.secret_home)
    opener = Opener(out, Decryptor(gpg, Passphrases(None, None)), gpg.list_keys(secret=True),
                    limits)

    result = opener.run(bundle, Progress(None, 0), scrub=False)

    statuses = [row.status for row in result.rows]
    assert statuses[0] == "decrypted"
    assert statuses[1].startswith("not decrypted for lack of disk space: it would leave less "
                                  "than ")
    assert statuses[2].startswith("not processed for lack of disk space (an earlier item did "
                                  "not fit)")
    assert sorted(p.name for p in out.rglob("*")) == ["01-message.txt", SOURCE]


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 160 MiB tmpfs: a disk the test can fill (mounting one needs root)."""
    with mounted_tmpfs(tmp_path / "disk", "160m") as disk:
        yield disk


def _lowest_free(disk: Path, stop: threading.Event, seen: list[int]) -> None:
    while not stop.wait(0.002):
        seen.append(shutil.disk_usage(disk).free)


@pytest.mark.parametrize("expansion", ["200", "100000"])
def test_on_a_small_disk_free_space_never_falls_under_the_reserve(
        expansion: str, bomb: Item, sender: Sender, newsroom: Newsroom, tmp_path: Path,
        small_disk: Path) -> None:
    """Three bombs, as a compromised server could send: with the default budget each is
    refused; with a budget above the disk each meets the reserve and the bundle stops."""
    items = [sender.item(SOURCE, "message", 1, b"first", to=[newsroom.fingerprint]),
             *(dataclasses.replace(bomb, seq=n, id=new_id()) for n in (2, 3, 4))]
    bundle = write_bundle(tmp_path / "b.tar", items)
    seen: list[int] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_lowest_free, args=(small_disk, stop, seen))
    watcher.start()
    try:
        proc = run_open(bundle, small_disk / "out", newsroom.secret_home, "--max-expansion",
                        expansion)
    finally:
        stop.set()
        watcher.join()

    assert proc.returncode == 1, proc.stderr
    assert min(seen) >= RESERVED_BYTES
    index = (small_disk / "out" / "index.txt").read_text()
    if expansion == "200":
        assert "1 of 4 items decrypted; 3 refused as likely compression bombs." in index
        # Each bomb was stopped at its budget, far above the reserve (a few MiB go to the
        # ciphertext copy and the message).
        assert min(seen) >= 160 * MIB - Limits().budget(len(bomb.ciphertext)) - 4 * MIB
    else:
        assert "1 of 4 items decrypted; 3 not decrypted for lack of disk space." in index
    assert sorted(p.name for p in (small_disk / "out").rglob("*")) == \
        ["01-message.txt", "index.txt", SOURCE]
