"""The gunicorn worker: a connection costs a thread only while its request is answered.

gunicorn's gthread worker hands every new connection to a thread, which then reads the
request head with a blocking socket and no deadline: a client that sends half a head and
falls silent holds that thread for ever, and a few dozen such clients hold them all.
Kept-alive connections already wait in the worker's event loop (its poller), not in a
thread. This worker makes the request head wait there too: the loop reads it without
blocking, in memory, up to :data:`MAX_HEAD_BYTES`, within a total deadline for the whole
head, and only a complete head goes to a thread, with the bytes already read put back in
front of gunicorn's own parser. In the thread, every read of the body and every write of
the answer has a socket timeout, so a body that sends nothing for that long is dropped
(the view then sees an error and discards what it had received).

A request whose body trickles in at Tor speed still holds a thread while its body is read,
because the WSGI app reads it synchronously; the pool has a few hundred threads, which
cost little while they wait in recv() (bench/hostile.py measures it).

Why not gevent's worker, where a waiting upload costs a greenlet: scrypt and Argon2id
(0.2-0.6 s of CPU in C) would stop every other connection while they run, and
python-gnupg's threads and pipes to gpg would need a thread pool of their own, that is,
threads again. Here the app keeps plain threads and only waiting moves to the loop.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from typing import Any

from gunicorn.workers.gthread import TConn, ThreadWorker

from tipbox.serve.error_pages import error_page
from tipbox.serve.request_body import with_arriving_body

# A head this long without its end is refused (431) by the loop: it bounds what a waiting
# connection holds in memory. Tor Browser's heads are under 2 KiB; the session cookie is
# the longest line.
MAX_HEAD_BYTES = 32 * 1024
_HEAD_END = b"\r\n\r\n"
# After the last answer on a connection, how long and how much the loop reads and throws
# away while it waits for the client to close its side (gunicorn's own figures).
LINGER_SECONDS = 2.0
LINGER_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class ConnectionLimits:
    """How long a client may take: to send a whole request head, and between two reads
    of its body (or writes of our answer) that move no byte."""

    head_seconds: float
    body_stall_seconds: float

    def __post_init__(self) -> None:
        if self.head_seconds <= 0 or self.body_stall_seconds <= 0:
            raise ValueError("connection time limits must be positive")


class _Connection(TConn):
    """A connection, with the bytes of its next request head read so far by the loop."""

    def __init__(self, cfg: Any, sock: Any, client: Any, server: Any,
                 limits: ConnectionLimits, linger: Any) -> None:
        super().__init__(cfg, sock, client, server)
        self.limits = limits
        self.linger = linger
        self.head = bytearray()
        self.head_complete = False
        # gthread's own wait for a first byte (in a thread, for 5 s) is never needed:
        # a connection reaches a thread only with a whole head.
        self.data_ready = True

    def init(self) -> None:
        """Called by gthread in the thread before every request, after it made the
        socket blocking without a timeout."""
        super().init()  # makes the parser, once per connection
        self.sock.settimeout(self.limits.body_stall_seconds)
        if self.head:
            self.parser.unreader.unread(bytes(self.head))
            self.head = bytearray()
        self.head_complete = False  # the next request's head waits in the loop again

    def close(self, graceful: bool = False) -> None:
        """gthread closes a connection that is not kept alive "gracefully" from its event
        loop: half-close, then read until the client closes too, for up to 2 s, with a
        blocking socket. Every other connection waited meanwhile; ten clients that never
        closed their end held the landing page for 12 s. The lingering is the loop's own
        non-blocking work here."""
        if graceful:
            self.linger(self.sock)
        else:
            super().close(graceful)


class TipboxWorker(ThreadWorker):
    """gthread, with request heads read by the event loop under a total deadline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits: ConnectionLimits = self.app.connection_limits
        # Connections whose head is not yet whole, with their deadlines. Every deadline is
        # "now + head_seconds" when added, so the oldest entry expires first.
        self.heads: OrderedDict[_Connection, float] = OrderedDict()
        # Closed sockets still read until their client closes, with their deadlines, in
        # the order they were added (so, of their deadlines).
        self.lingering: OrderedDict[socket.socket, tuple[float, int]] = OrderedDict()

    def accept(self, listener: Any) -> None:
        try:
            sock, client = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            raise
        self.nr_conns += 1
        self.enqueue_req(_Connection(self.cfg, sock, client, listener.getsockname(),
                                     self.limits, self._linger))

    def enqueue_req(self, conn: _Connection) -> None:
        """gthread calls this for a new connection, a kept-alive one that became readable
        and one whose last body drain read ahead into the next request: only a whole head
        goes to a thread; otherwise the loop waits for the rest."""
        if conn.head_complete:
            super().enqueue_req(conn)
            return
        if conn.parser is not None:
            conn.head += conn.parser.unreader.take_buffered()
        # The loop must never wait on a read: a socket back from a thread still has the
        # body's timeout.
        conn.sock.setblocking(False)
        self.heads[conn] = time.monotonic() + self.limits.head_seconds
        if not self._head_done(conn, 0):
            self.poller.register(conn.sock, selectors.EVENT_READ,
                                 partial(self._on_head_readable, conn))

    def _on_head_readable(self, conn: _Connection, _sock: Any) -> None:
        seen = len(conn.head)
        try:
            data = conn.sock.recv(MAX_HEAD_BYTES + 1 - seen)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._stop_waiting(conn)
            self._close(conn)
            return
        conn.head += data
        self._head_done(conn, max(0, seen - len(_HEAD_END) + 1))

    def _head_done(self, conn: _Connection, search_from: int) -> bool:
        """Hand ``conn`` to a thread if its head is whole, refuse it if too long; True if
        it no longer waits."""
        if conn.head.find(_HEAD_END, search_from) >= 0:
            self._stop_waiting(conn)
            conn.head_complete = True
            super().enqueue_req(conn)
            return True
        if len(conn.head) > MAX_HEAD_BYTES:
            self._stop_waiting(conn)
            self._refuse(conn, 431)
            return True
        return False

    def _stop_waiting(self, conn: _Connection) -> None:
        del self.heads[conn]
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(conn.sock)

    def _linger(self, sock: socket.socket) -> None:
        """Close like RFC 9112 section 9.6 asks: our side first (the client reads the end
        of our answer, not a reset), theirs read and discarded by the loop until they
        close, LINGER_MAX_BYTES arrive or LINGER_SECONDS pass."""
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.setblocking(False)
            self.poller.register(sock, selectors.EVENT_READ, self._on_linger_readable)
        except (OSError, ValueError, KeyError):
            with contextlib.suppress(OSError):
                sock.close()
            return
        # gthread counted the connection down before closing it, but the socket is still
        # open: counted again until _end_linger, the accept loop keeps lingering sockets
        # within worker_connections (TIPBOX_MAX_CONNECTIONS) too.
        self.nr_conns += 1
        self.lingering[sock] = (time.monotonic() + LINGER_SECONDS, 0)

    def _on_linger_readable(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        deadline, drained = self.lingering[sock]
        drained += len(data)
        if data and drained < LINGER_MAX_BYTES:
            self.lingering[sock] = (deadline, drained)
            return
        self._end_linger(sock)

    def _end_linger(self, sock: socket.socket) -> None:
        """The one way a linger ends (client closed, enough drained, or deadline), so
        the socket is counted down here exactly once."""
        del self.lingering[sock]
        self.nr_conns -= 1
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def murder_pending(self) -> None:
        """Called by gthread's loop about once a second: also drops heads past their
        deadline, with a 408 for a client that had started one, and ends lingering
        closes past theirs."""
        super().murder_pending()
        now = time.monotonic()
        while self.lingering:
            sock, (deadline, _) = next(iter(self.lingering.items()))
            if deadline > now:
                break
            self._end_linger(sock)
        while self.heads:
            conn, deadline = next(iter(self.heads.items()))
            if deadline > now:
                break
            self._stop_waiting(conn)
            if conn.head:
                self._refuse(conn, 408)
            else:
                self._close(conn)

    def _cap_keepalive(self, deadline: float) -> None:
        """Called once when the worker starts to stop, with a deadline a few seconds
        away: a head not whole by then will not be answered either."""
        super()._cap_keepalive(deadline)
        # Capping every deadline at the same value keeps them in order.
        for conn, own in self.heads.items():
            self.heads[conn] = min(own, deadline)
        self._give_up_listening()

    def _give_up_listening(self) -> None:
        """Close the listening sockets as the drain begins (SIGTERM, or the master gone).

        gthread keeps them open until its uploads end, up to graceful_timeout: meanwhile
        the kernel accepts new connections that nobody answers, and a restarted
        `tipbox serve` cannot bind the port. The master closed its own copies before
        signalling us, so once ours are closed a new visitor is refused at once (Tor
        Browser says so) and a new master can bind. Connections already accepted carry on.
        """
        for listener in self.sockets:
            with contextlib.suppress(OSError):
                listener.close()

    def handle_request(self, req: Any, conn: _Connection) -> Any:
        """Every request body can be read as it arrives (``wsgi.input.read1``), which the
        upload path does so that a slow upload holds no large buffer while it waits."""
        with_arriving_body(req)
        return super().handle_request(req, conn)

    def _refuse(self, conn: _Connection, status: int) -> None:
        # The socket is non-blocking and nothing was written on it yet: a page this small
        # fits in its send buffer, and if it does not, the client was not reading anyway.
        with contextlib.suppress(OSError):
            conn.sock.send(error_page(status))
        self._close(conn)

    def _close(self, conn: _Connection) -> None:
        self.nr_conns -= 1
        conn.close()
