"""The instance secrets file on a real filesystem: it is whole or absent, never half
written, whatever stops its first writing."""

from __future__ import annotations

import errno
import multiprocessing
import os
from collections.abc import Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from tests.helpers import mounted_tmpfs
from tipbox.instance import InstanceSecrets


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A data folder on a real 64 KiB tmpfs, filled up to its last block."""
    with mounted_tmpfs(tmp_path / "data", "64k") as data:
        fd = os.open(data / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            with pytest.raises(OSError) as full:
                for _ in range(10_000):  # 64 KiB is 16 of these: bounded all the same
                    os.write(fd, bytes(4096))
            assert full.value.errno == errno.ENOSPC
        finally:
            os.close(fd)
        yield data


def test_secrets_that_find_a_full_disk_leave_no_file_and_are_made_once_there_is_room(
        full_disk: Path) -> None:
    path = full_disk / "instance-secrets.json"

    with pytest.raises(OSError) as failed:
        InstanceSecrets.load_or_create(path)

    assert failed.value.errno == errno.ENOSPC
    # No empty file that the next `tipbox init` would call damaged and ask to restore.
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]
    (full_disk / "filler").unlink()
    made = InstanceSecrets.load_or_create(path)
    assert InstanceSecrets.load(path) == made
    assert path.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in full_disk.iterdir()) == ["instance-secrets.json"]


def test_secrets_are_never_written_over(tmp_path: Path) -> None:
    path = tmp_path / "instance-secrets.json"
    first = InstanceSecrets.load_or_create(path)

    with pytest.raises(FileExistsError):
        InstanceSecrets.generate().save(path)

    assert InstanceSecrets.load(path) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["instance-secrets.json"]


def _made_at_once(path: Path, start: Barrier, results: Queue[str]) -> None:
    start.wait(10)
    try:
        results.put(InstanceSecrets.load_or_create(path).codename_pepper.hex())
    except Exception as exc:  # reported to the test, which fails on it
        results.put(f"{type(exc).__name__}: {exc}")


def test_two_inits_at_the_same_instant_both_end_with_the_one_set_of_secrets(
        tmp_path: Path) -> None:
    """As when two `tipbox init` run at once on a new data folder: neither fails, and both
    go on with the secrets that were written, never with a set of their own."""
    context = multiprocessing.get_context("fork")
    for round_ in range(10):  # a race: several rounds, each with four processes
        path = tmp_path / str(round_) / "instance-secrets.json"
        start = context.Barrier(4)
        results: Queue[str] = context.Queue()
        inits = [context.Process(target=_made_at_once, args=(path, start, results))
                 for _ in range(4)]
        for init in inits:
            init.start()
        made = [results.get(timeout=30) for _ in inits]
        for init in inits:
            init.join(10)
        assert made == [InstanceSecrets.load(path).codename_pepper.hex()] * 4
        assert [p.name for p in path.parent.iterdir()] == ["instance-secrets.json"]
