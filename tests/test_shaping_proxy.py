"""The shaping proxy that the browser tests use as a slow, breakable circuit."""

from __future__ import annotations

import os
import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from tests.shaping_proxy import CHUNK, TOR_LIKE, Shaping, ShapingProxy


class Upstream(socketserver.ThreadingTCPServer):
    """Echoes what it gets and keeps, per connection, every byte that arrived."""

    daemon_threads = True
    received: list[bytearray]

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Echo)
        self.received = []
        self.closed = threading.Event()


class Echo(socketserver.BaseRequestHandler):
    server: Upstream

    def handle(self) -> None:
        got = bytearray()
        self.server.received.append(got)
        try:
            while data := self.request.recv(65536):
                got += data
                self.request.sendall(data)
        except OSError:
            pass  # the proxy reset the connection
        finally:
            self.server.closed.set()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


class RecordedWaits:
    """Stands for asyncio.sleep: keeps how long the proxy wanted to wait, waits no time."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def round_trip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        reader = threading.Thread(target=conn.sendall, args=(payload,))
        reader.start()
        back = bytearray()
        while len(back) < len(payload) and (data := conn.recv(65536)):
            back += data
        reader.join()
        return bytes(back)


def port_of(server: Upstream) -> int:
    return int(server.server_address[1])


def test_bytes_cross_unchanged_both_ways_paced_to_the_bandwidth_and_delayed(
        upstream: Upstream) -> None:
    waits = RecordedWaits()
    payload = os.urandom(1024 * 1024 + 123)
    with ShapingProxy(port_of(upstream), TOR_LIKE, sleep=waits) as proxy:
        assert round_trip(proxy.port, payload) == payload
        assert proxy.bytes_from_client == len(payload)
    assert upstream.received == [bytearray(payload)]
    # Both directions are paced: the waits add up to at least the time the bytes take at
    # 256 KiB/s each way; none is longer than the latency plus one chunk's time.
    bandwidth = TOR_LIKE.bytes_per_second
    assert bandwidth is not None
    assert sum(waits.waits) >= 2 * len(payload) / bandwidth
    assert max(waits.waits) <= TOR_LIKE.latency_seconds + CHUNK / bandwidth


def test_an_unshaped_proxy_never_waits(upstream: Upstream) -> None:
    waits = RecordedWaits()
    with ShapingProxy(port_of(upstream), sleep=waits) as proxy:
        assert round_trip(proxy.port, b"hello" * 1000) == b"hello" * 1000
    assert waits.waits == []


def test_a_connection_is_cut_after_the_chosen_number_of_bytes_and_both_ends_see_a_reset(
        upstream: Upstream) -> None:
    with ShapingProxy(port_of(upstream), Shaping(cut_after_bytes=40_000)) as proxy:
        for attempt in (1, 2):  # every connection is cut at the same point
            upstream.closed.clear()
            with (socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as conn,
                  pytest.raises(OSError)):  # reset by peer, or a broken pipe
                conn.sendall(os.urandom(1024 * 1024))
                while conn.recv(65536):
                    pass
            assert upstream.closed.wait(30)
            assert len(upstream.received[-1]) == 40_000
            assert proxy.cuts == attempt
        assert proxy.bytes_from_client == 80_000


def test_after_the_chosen_number_of_cuts_connections_go_through_whole(
        upstream: Upstream) -> None:
    with ShapingProxy(port_of(upstream), Shaping(cut_after_bytes=10_000, max_cuts=2)) as proxy:
        for _attempt in (1, 2):
            with (socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as conn,
                  pytest.raises(OSError)):
                conn.sendall(os.urandom(200_000))
                while conn.recv(65536):
                    pass
        assert proxy.cuts == 2
        assert round_trip(proxy.port, b"y" * 100_000) == b"y" * 100_000
        assert proxy.cuts == 2


def test_the_upstream_can_change_while_the_proxy_runs(upstream: Upstream) -> None:
    """As when the server behind it restarts on another port."""
    other = Upstream()
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        with ShapingProxy(port_of(upstream)) as proxy:
            assert round_trip(proxy.port, b"first") == b"first"
            proxy.upstream_port = port_of(other)
            assert round_trip(proxy.port, b"second") == b"second"
        assert other.received == [bytearray(b"second")]
    finally:
        other.shutdown()
        other.server_close()


def test_the_cut_can_be_lifted_while_the_proxy_runs(upstream: Upstream) -> None:
    with ShapingProxy(port_of(upstream), Shaping(cut_after_bytes=0)) as proxy:
        proxy.shaping = Shaping()
        assert round_trip(proxy.port, b"x" * 100_000) == b"x" * 100_000
        assert proxy.cuts == 0


@pytest.mark.parametrize("bad", [{"bytes_per_second": 0}, {"latency_seconds": -1.0},
                                 {"cut_after_bytes": -5}, {"max_cuts": -1}])
def test_nonsense_shaping_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        Shaping(**bad)  # type: ignore[arg-type]
