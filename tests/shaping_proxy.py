"""A TCP proxy on loopback that makes a fast local link look like a Tor circuit.

It limits each direction of each connection to a bandwidth, delays every byte by a
latency, and can cut a connection (a TCP reset to both sides) once the client has sent a
chosen number of bytes on it, as a circuit that breaks in the middle of an upload.
The shaping can change while connections are open (`proxy.shaping = ...`).

It runs an asyncio loop in a thread of its own. Every loop in it ends: a connection's
pumps stop at end of stream, at a cut, or after `idle_seconds` without a byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

CHUNK = 16 * 1024  # bytes read at a time: pacing is as smooth as this is small
QUEUED_CHUNKS = 64  # chunks in flight per direction (a bound on memory and on latency)

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Shaping:
    """How the link behaves. None and 0 mean no limit and no delay."""

    bytes_per_second: int | None = None  # per direction, per connection
    latency_seconds: float = 0.0  # one way
    cut_after_bytes: int | None = None  # client -> server, per connection
    max_cuts: int | None = None  # cut no more connections than this, all told

    def __post_init__(self) -> None:
        if self.bytes_per_second is not None and self.bytes_per_second <= 0:
            raise ValueError("bytes_per_second must be positive")
        if self.latency_seconds < 0:
            raise ValueError("latency_seconds must not be negative")
        if self.cut_after_bytes is not None and self.cut_after_bytes < 0:
            raise ValueError("cut_after_bytes must not be negative")
        if self.max_cuts is not None and self.max_cuts < 0:
            raise ValueError("max_cuts must not be negative")


TOR_LIKE = Shaping(bytes_per_second=256 * 1024, latency_seconds=0.3)


class ShapingProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to 127.0.0.1:upstream_port.

    `sleep` is how the proxy waits: tests of the proxy pass one that records the waits
    instead of taking them, so no test measures time.
    """

    def __init__(self, upstream_port: int, shaping: Shaping = Shaping(), *,
                 sleep: Sleep = asyncio.sleep, idle_seconds: float = 120) -> None:
        self.shaping = shaping
        self.cuts = 0  # connections cut so far
        self.bytes_from_client = 0  # that reached the server, all connections
        self.upstream_port = upstream_port  # may change: a restarted server
        self._sleep = sleep
        self._idle = idle_seconds
        self._loop = asyncio.new_event_loop()
        self._tasks: set[asyncio.Task[None]] = set()
        listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(listener.getsockname()[1])
        # The loop runs in its own thread from the start: the caller's thread may be running
        # a loop of its own (Playwright's synchronous API does).
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._connection, sock=listener), self._loop).result(timeout=30)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop listening, close every open connection, stop the thread."""
        async def stop() -> None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            # And every other task still pending (a pump or its sender whose connection
            # task was already done): a coroutine left pending would be closed by the
            # garbage collector after the loop, an error pytest reports as a failure.
            rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()

    def __enter__(self) -> ShapingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def _connection(self, client_reader: asyncio.StreamReader,
                          client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with contextlib.suppress(asyncio.CancelledError):  # close() cancels open connections
            await self._forward(client_reader, client_writer)
        self._tasks.discard(task)

    async def _forward(self, client_reader: asyncio.StreamReader,
                       client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port)
        except OSError:
            reset(client_writer)
            return
        cut = asyncio.Event()
        pumps = [asyncio.create_task(self._pump(client_reader, server_writer, cut, True)),
                 asyncio.create_task(self._pump(server_reader, client_writer, cut, False))]
        # Until both directions end, or one of them is cut (then the other stops too).
        cut_seen = asyncio.ensure_future(cut.wait())
        both_done = asyncio.gather(*pumps)
        try:
            waiting: list[asyncio.Future[Any]] = [both_done, cut_seen]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cut_seen.cancel()
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(both_done, return_exceptions=True)
            if cut.is_set():
                # What the client sent before the cut reaches the server whole: a reset
                # throws away what is still queued, in asyncio's buffer or the kernel's.
                await delivered(server_writer)
                reset(client_writer)
                reset(server_writer)
            else:
                for writer in (client_writer, server_writer):
                    writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    cut: asyncio.Event, from_client: bool) -> None:
        """Read one direction and hand it, delayed and paced, to its writer."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue(QUEUED_CHUNKS)
        sender = asyncio.create_task(self._send(queue, writer, cut, from_client))
        loop = asyncio.get_running_loop()
        seen = 0
        try:
            while not cut.is_set():
                try:
                    data = await asyncio.wait_for(reader.read(CHUNK), self._idle)
                except (OSError, TimeoutError):
                    break
                if not data:
                    break
                limit = self.shaping.cut_after_bytes
                most = self.shaping.max_cuts
                if from_client and limit is not None and seen + len(data) >= limit and \
                        (most is None or self.cuts < most):
                    data = data[:limit - seen]
                    await queue.put((loop.time(), data))
                    await queue.put(None)
                    await sender
                    self.cuts += 1
                    cut.set()
                    return
                seen += len(data)
                await queue.put((loop.time(), data))
            await queue.put(None)
            await sender
        finally:
            sender.cancel()

    async def _send(self, queue: asyncio.Queue[tuple[float, bytes] | None],
                    writer: asyncio.StreamWriter, cut: asyncio.Event, from_client: bool) -> None:
        loop = asyncio.get_running_loop()
        while (entry := await queue.get()) is not None and not cut.is_set():
            arrived, data = entry
            shaping = self.shaping
            delay = arrived + shaping.latency_seconds - loop.time()
            if delay > 0:
                await self._sleep(delay)
            if shaping.bytes_per_second is not None:
                await self._sleep(len(data) / shaping.bytes_per_second)
            try:
                writer.write(data)
                await writer.drain()
            except OSError:
                cut.set()
                return
            if from_client:
                self.bytes_from_client += len(data)
        if entry is None and not cut.is_set():
            with contextlib.suppress(OSError):
                writer.write_eof()


async def delivered(writer: asyncio.StreamWriter, seconds: float = 5.0) -> None:
    """Wait until the peer has acknowledged every byte written (asyncio's buffer empty
    and the kernel's send queue too), or ``seconds`` have passed: a peer that stopped
    reading, or a connection already broken, is not waited for longer."""
    sock = writer.get_extra_info("socket")
    for _ in range(max(1, int(seconds / 0.01))):
        if writer.transport.is_closing():
            return
        queued = writer.transport.get_write_buffer_size()
        if queued == 0 and sock is not None:
            try:
                queued = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ,
                                                        b"\0\0\0\0"))[0]
            except OSError:
                return
        if queued == 0:
            return
        await asyncio.sleep(0.01)


def reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a broken circuit looks to both ends."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
