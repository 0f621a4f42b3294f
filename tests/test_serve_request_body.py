"""The worker's request body hands out what has arrived and holds no buffer while it
waits: a slow upload costs the server almost nothing between its packets. Real sockets
(a connected pair), gunicorn's own body readers around them."""

from __future__ import annotations

import socket
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from gunicorn.http.body import Body, ChunkedReader, LengthReader
from gunicorn.http.unreader import SocketUnreader

from tipbox.serve.request_body import ArrivingBody, with_arriving_body

KIB = 1024


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    server.settimeout(30)
    yield server, client
    server.close()
    client.close()


def arriving_body(sock: socket.socket, length: int) -> ArrivingBody:
    return ArrivingBody(LengthReader(SocketUnreader(sock), length))


def test_a_read_hands_out_what_has_arrived_without_waiting_for_the_rest(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    body = arriving_body(server, 1000 * KIB)
    client.sendall(b"first ten!")
    assert body.read1(1024 * KIB) == b"first ten!"
    client.sendall(b"x" * 3000)
    assert body.read1(1024) == b"x" * 1024  # never more than asked
    assert body.read1(-1) == b"x" * 1976


def test_a_read_never_takes_bytes_past_the_end_of_the_body(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    body = arriving_body(server, 5)
    client.sendall(b"helloGET /next HTTP/1.1\r\n")
    assert body.read1(1024) == b"hello"
    assert body.read1(1024) == b""
    assert server.recv(1024) == b"GET /next HTTP/1.1\r\n"  # the next request, untouched


def test_bytes_already_read_ahead_come_first(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    unreader = SocketUnreader(server)
    unreader.unread(b"ahead")  # as the head parser leaves what followed the head
    body = ArrivingBody(LengthReader(unreader, 8))
    client.sendall(b"now")
    assert body.read1(1024) + body.read1(1024) == b"aheadnow"


def thread_is_asleep(thread: threading.Thread) -> bool:
    """Bounded wait for ``thread`` to sleep in the kernel (it is then waiting on its socket)."""
    for _ in range(1000):
        state = Path(f"/proc/self/task/{thread.native_id}/stat").read_text() \
            .rsplit(")", 1)[1].split()[0]
        if state == "S":
            return True
        threading.Event().wait(0.01)
    return False


def test_a_read_waiting_for_a_slow_upload_holds_no_buffer(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    body = arriving_body(server, 64 * 1024 * KIB)
    got: list[bytes] = []
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        reader = threading.Thread(target=lambda: got.append(body.read1(1024 * KIB)))
        reader.start()
        assert thread_is_asleep(reader)
        waiting, _ = tracemalloc.get_traced_memory()
    finally:
        client.sendall(b"20 KiB/s")
        reader.join(30)
        tracemalloc.stop()
    assert got == [b"20 KiB/s"]
    # gunicorn's own read(1 MiB) allocates 1 MiB before its recv() waits, and gathers
    # up to 1 MiB more; this waits with (almost) nothing.
    assert waiting - before < 64 * KIB


def test_a_body_that_stalls_past_the_socket_timeout_is_cut_off_and_marked_failed(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, _client = pair
    server.settimeout(0.05)
    body = arriving_body(server, 100)
    with pytest.raises(TimeoutError):
        body.read1(100)
    assert body.failed  # the connection is not reused: where its next request starts is unknown


def test_a_client_that_hangs_up_mid_body_ends_it_and_marks_it_failed(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    body = arriving_body(server, 100)
    client.sendall(b"part")
    client.shutdown(socket.SHUT_WR)
    assert body.read1(100) == b"part"
    assert body.read1(100) == b""
    assert body.failed


class _Request:
    def __init__(self, body: Body) -> None:
        self.body = body


def test_only_unread_bodies_of_known_length_on_plain_sockets_read_as_they_arrive(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, _client = pair
    with_length = _Request(Body(LengthReader(SocketUnreader(server), 10)))
    with_arriving_body(with_length)
    assert isinstance(with_length.body, ArrivingBody)

    chunked = _Request(Body(ChunkedReader(with_length, SocketUnreader(server))))
    with_arriving_body(chunked)
    assert type(chunked.body) is Body

    started = Body(LengthReader(SocketUnreader(server), 10))
    started.buf.write(b"read")
    begun = _Request(started)
    with_arriving_body(begun)
    assert begun.body is started
