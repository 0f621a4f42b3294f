"""The tar stream of backups: what TarWriter writes, TarReader and GNU tar read back, over
a real pipe as with gpg."""

from __future__ import annotations

import os
import subprocess
import tarfile
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tipbox.backup.tar_stream import TarFormatError, TarReader, TarWriter

LONG_NAME = "store/" + "x" * 150 + ".gpg"  # too long for a ustar header: a pax record


def through_a_pipe(write: Callable[[int], None]) -> tuple[int, threading.Thread]:
    read_end, write_end = os.pipe()

    def writer() -> None:
        try:
            write(write_end)
        finally:
            os.close(write_end)

    thread = threading.Thread(target=writer)
    thread.start()
    return read_end, thread


def write_archive(fd: int, source: Path) -> None:
    tar = TarWriter(fd)
    tar.add_bytes("tipbox-backup.json", b'{"format": 1}', 86400)
    with source.open("rb") as fh:
        tar.add_file(LONG_NAME, fh.fileno(), source.stat().st_size, 2 * 86400)
    tar.close()


def test_what_the_writer_writes_the_reader_reads_back_byte_for_byte(tmp_path: Path) -> None:
    source = tmp_path / "item.gpg"
    source.write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # not a whole number of blocks
    fd, thread = through_a_pipe(lambda w: write_archive(w, source))
    reader = TarReader(fd)

    first = reader.next()
    assert first is not None and first.name == "tipbox-backup.json"
    assert reader.read() == b'{"format": 1}'
    second = reader.next()
    assert second is not None
    assert (second.name, second.size, second.mtime) == (LONG_NAME, source.stat().st_size,
                                                        2 * 86400)
    out = tmp_path / "copy"
    with out.open("wb") as fh:
        reader.splice_to(fh.fileno())
    assert reader.next() is None
    thread.join()
    os.close(fd)
    assert out.read_bytes() == source.read_bytes()


def test_gnu_tar_lists_what_the_writer_writes(tmp_path: Path) -> None:
    source = tmp_path / "item.gpg"
    source.write_bytes(b"ciphertext" * 1000)
    archive = tmp_path / "a.tar"
    with archive.open("wb") as fh:
        write_archive(fh.fileno(), source)

    listed = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True,
                            check=True).stdout.split()

    assert listed == ["tipbox-backup.json", LONG_NAME]
    assert archive.stat().st_size % tarfile.RECORDSIZE == 0


def test_an_archive_cut_short_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "item.gpg"
    source.write_bytes(os.urandom(100_000))
    archive = tmp_path / "a.tar"
    with archive.open("wb") as fh:
        write_archive(fh.fileno(), source)
    cut = archive.read_bytes()[:50_000]

    def send_the_cut_archive(w: int) -> None:
        os.write(w, cut)  # smaller than a pipe's buffer: written whole

    fd, thread = through_a_pipe(send_the_cut_archive)
    reader = TarReader(fd)
    reader.next()
    reader.read()
    reader.next()
    with pytest.raises(TarFormatError, match="ends inside a member"), \
            (tmp_path / "copy").open("wb") as out:
        reader.splice_to(out.fileno())
    thread.join()
    os.close(fd)
