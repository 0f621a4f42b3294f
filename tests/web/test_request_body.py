"""A view that streams its body reads it as it arrives, never past its Content-Length."""

from __future__ import annotations

import io

import pytest
from werkzeug.exceptions import ClientDisconnected

from tipbox.web.request import ArrivingBody


class Arrivals(io.RawIOBase):
    """``wsgi.input`` as the worker offers it: ``read1`` hands out one packet at a time."""

    def __init__(self, packets: list[bytes]) -> None:
        self.packets = packets
        self.asked: list[int] = []

    def read1(self, size: int = -1, /) -> bytes:
        self.asked.append(size)
        if not self.packets:
            return b""
        packet = self.packets.pop(0)
        if size >= 0 and len(packet) > size:
            self.packets.insert(0, packet[size:])
            packet = packet[:size]
        return packet


def test_each_read_hands_out_one_packet_as_it_arrived() -> None:
    body = ArrivingBody(Arrivals([b"abc", b"defgh"]), 8)
    assert body.read(1024 * 1024) == b"abc"
    assert body.read(1024 * 1024) == b"defgh"
    assert body.read(1024 * 1024) == b""


def test_no_read_asks_for_more_than_the_content_length_left() -> None:
    wsgi_input = Arrivals([b"abcdef", b"next request"])
    body = ArrivingBody(wsgi_input, 6)
    assert body.read(1024) == b"abcdef"
    assert body.read(1024) == b""
    assert wsgi_input.asked == [6]
    assert wsgi_input.packets == [b"next request"]


def test_a_body_that_ends_early_is_a_disconnect() -> None:
    body = ArrivingBody(Arrivals([b"abc"]), 10)
    assert body.read(10) == b"abc"
    with pytest.raises(ClientDisconnected):
        body.read(10)


class OnlyRead:
    """A WSGI server whose input has nothing but ``read``, as PEP 3333 requires."""

    def __init__(self, data: bytes) -> None:
        self.stream = io.BytesIO(data)

    def read(self, size: int = -1, /) -> bytes:
        return self.stream.read(size)


def test_a_server_without_read1_is_read_with_read() -> None:
    body = ArrivingBody(OnlyRead(b"whole body, then more"), 10)
    assert body.read(-1) == b"whole body"
    assert body.read(-1) == b""
