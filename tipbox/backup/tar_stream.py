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
