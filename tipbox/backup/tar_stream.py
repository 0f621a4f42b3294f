"""A tar archive written straight to a file descriptor: the pipe into gpg.

``tarfile`` makes each header; the contents of store files go from their file to the pipe
with ``sendfile``, so no byte of the store passes through Python (tarfile's own stream
mode copies every byte through small Python buffers, and made a backup take twice as long
as ``tar``: docs/benchmarks.md). What comes out is an ordinary POSIX (pax) archive that
``tar -t`` lists and tipbox's restore reads with ``tarfile``.
"""

from __future__ import annotations

import os
import tarfile

from tipbox.errors import BackupError

BLOCK = tarfile.BLOCKSIZE
RECORD = tarfile.RECORDSIZE
# sendfile moves at most this much per call.
_SEND_MAX = 1 << 30


class TarWriter:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.offset = 0

    def add_bytes(self, name: str, data: bytes, mtime: int) -> None:
        self._header(name, len(data), mtime)
        self._write(data)
        self._pad(len(data))

    def add_file(self, name: str, source_fd: int, size: int, mtime: int) -> None:
        """Copy ``size`` bytes of the open file ``source_fd`` in the kernel."""
        self._header(name, size, mtime)
        sent = 0
        while sent < size:
            n = os.sendfile(self.fd, source_fd, sent, min(size - sent, _SEND_MAX))
            if n == 0:
                raise BackupError("A store file became shorter while it was copied, which "
                                  "tipbox never does: check the disk (dmesg), then run the "
                                  "backup again.")
            sent += n
        self.offset += size
        self._pad(size)

    def close(self) -> None:
        """The two zero blocks that end an archive, padded to a whole record as tar does."""
        self._write(b"\0" * (2 * BLOCK))
        if self.offset % RECORD:
            self._write(b"\0" * (RECORD - self.offset % RECORD))

    def _header(self, name: str, size: int, mtime: int) -> None:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mtime = mtime
        info.mode = 0o600
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def _pad(self, size: int) -> None:
        if size % BLOCK:
            self._write(b"\0" * (BLOCK - size % BLOCK))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
            self.offset += n


class TarFormatError(Exception):
    """The stream is not a tar archive as :class:`TarWriter` writes them."""


class TarReader:
    """The members of a tar stream read from a pipe (gpg's output), their contents moved
    to files with ``splice``: no byte of the store passes through Python on the way back
    either. Reads what :class:`TarWriter` writes (ustar headers, and pax headers for a
    size or path that does not fit them); anything else is refused."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._left = 0  # bytes of the current member's data not read yet
        self._padding = 0

    def next(self) -> tarfile.TarInfo | None:
        """The next member's header, or None at the end of the archive. The previous
        member's data must have been consumed."""
        if self._left:
            raise TarFormatError("the previous member was not read")
        self._read_exact(self._padding)
        pax: dict[str, str] = {}
        while True:
            block = self._read_exact(BLOCK)
            if block == b"\0" * BLOCK:
                return None
            try:
                info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                raise TarFormatError(str(exc)) from None
            if info.type != tarfile.XHDTYPE:
                break
            if info.size > 64 * 1024:
                raise TarFormatError("pax header too large")
            pax.update(_pax_records(self._read_exact(info.size)))
            self._read_exact(-info.size % BLOCK)
        if "path" in pax:
            info.name = pax["path"]
        if "size" in pax:
            try:
                info.size = int(pax["size"])
            except ValueError:
                raise TarFormatError("bad pax size") from None
        if info.size < 0:
            raise TarFormatError("negative size")
        self._left = info.size
        self._padding = -info.size % BLOCK
        return info

    def read(self) -> bytes:
        """The whole of the current member's data (only for small members)."""
        data = self._read_exact(self._left)
        self._left = 0
        return data

    def splice_to(self, out_fd: int) -> None:
        """Move the current member's data into the file ``out_fd``, in the kernel."""
        while self._left:
            n = os.splice(self.fd, out_fd, min(self._left, _SEND_MAX))
            if n == 0:
                raise TarFormatError("the archive ends inside a member")
            self._left -= n

    def _read_exact(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = os.read(self.fd, min(size, 1024 * 1024))
            if not chunk:
                raise TarFormatError("the archive ends too early")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)


def _pax_records(data: bytes) -> dict[str, str]:
    """'<length> <key>=<value>\\n' records (POSIX pax extended header)."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            raise TarFormatError("bad pax record") from None
        record = data[space + 1:pos + length]
        if length <= 0 or not record.endswith(b"\n") or b"=" not in record:
            raise TarFormatError("bad pax record")
        key, _, value = record[:-1].partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records
