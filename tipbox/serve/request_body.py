"""A request body that hands out what has arrived, and holds no buffer while it waits.

gunicorn's body gathers: ``read(1 MiB)`` returns only once 1 MiB has come in (or the body
ended), and each socket read it makes asks Python for a 1 MiB buffer before it waits for
the first byte. For an upload trickling in over Tor at 20 KiB/s that is a 1 MiB buffer
being filled for 50 s plus a 1 MiB one allocated for every wait, and copies of both on the
way out: bench/upload_memory.py found about 2 MiB per slow upload in gunicorn alone.

``read1`` waits for the socket to become readable without allocating anything, asks the
kernel how much has arrived (FIONREAD) and takes that much, up to the size asked and
:data:`MAX_READ`. A fast upload still gets reads of up to 1 MiB (its bytes are already
there), a slow one only the few KiB that came in. ``read`` keeps gunicorn's meaning, so
every other reader of ``wsgi.input`` sees no change.
"""

from __future__ import annotations

import fcntl
import select
import socket
import struct
import termios
from typing import Any

from gunicorn.http.body import Body, LengthReader

# The largest single read: what bench/upload.py found best for fast uploads.
MAX_READ = 1024 * 1024
_FIONREAD_ARG = struct.pack("i", 0)


class ArrivingBody(Body):
    """gunicorn's Body for a request with a Content-Length, plus :meth:`read1`."""

    def read1(self, size: int = -1, /) -> bytes:
        """Up to ``size`` bytes of the body (any amount if negative), at least one unless
        the body has ended: whatever is buffered, else whatever the socket holds once it
        has something. Raises TimeoutError when nothing arrives within the socket's
        timeout (the body stall limit)."""
        if size == 0:
            return b""
        want = MAX_READ if size < 0 else min(size, MAX_READ)
        held = self.buf.tell()
        if held:  # left over from a read() that got more than it was asked for
            return bytes(self.read(min(want, held)))
        reader: LengthReader = self.reader
        want = min(want, reader.length)
        if want <= 0:
            return b""
        unreader = reader.unreader
        buffered = unreader.buf.seek(0, 2)
        if buffered:  # read ahead by the request head's parser
            data: bytes = unreader.read(min(want, buffered))
        else:
            try:
                data = _receive_arrived(unreader.sock, want)
            except Exception:
                self.failed = True  # where the next request starts is unknown now
                raise
        reader.length -= len(data)
        if not data:
            self.failed = True
        return data


def _receive_arrived(sock: socket.socket, limit: int) -> bytes:
    """Wait for ``sock`` to be readable (within its timeout), then take what it holds, up
    to ``limit``."""
    timeout = sock.gettimeout()
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    if not poller.poll(None if timeout is None else int(timeout * 1000)):
        raise TimeoutError("no byte of the request body within the body stall limit")
    (arrived,) = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD,
                                                _FIONREAD_ARG))
    # 0 with a readable socket: the client closed it (recv then returns b"") or an error
    # is pending (recv raises it).
    return sock.recv(max(1, min(arrived, limit)))


def with_arriving_body(req: Any) -> None:
    """Give ``req`` (a gunicorn request) an :class:`ArrivingBody` if its body has a known
    length, comes from a plain socket (FIONREAD counts TLS records, not bytes of the body)
    and nothing has been read from it yet."""
    body = req.body
    if type(body) is Body and isinstance(body.reader, LengthReader) \
            and type(getattr(body.reader.unreader, "sock", None)) is socket.socket \
            and not body.buf.tell():
        req.body = ArrivingBody(body.reader)
