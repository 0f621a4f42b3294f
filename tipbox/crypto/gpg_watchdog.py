"""Stop a gpg that stops making progress.

python-gnupg waits for gpg without a time limit. A gpg that stops reading its input (or
never exits once the input has ended) would hold the request's thread for ever, and a
few dozen such requests take the source interface down. The watchdog watches the input
side, which is what tipbox controls:

- while the copy thread waits for the *source* (a slow upload over Tor), the clock is
  not running: slowness there is the source's, not gpg's;
- while the copy thread holds a chunk that gpg has not taken, or the input has ended and
  gpg has not exited, the clock runs; past ``stall_seconds`` gpg is killed (SIGKILL).

Killing gpg closes its pipes, so python-gnupg's threads unwind and the caller gets an
error it can answer, with nothing kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

# Generous: gpg takes a 1 MiB chunk in milliseconds; two minutes without taking one, or
# without exiting after the last, is not a busy machine but a stuck process.
DEFAULT_STALL_SECONDS = 120.0


class _Killable(Protocol):
    def kill(self) -> None: ...


class Watch:
    """One gpg run as the watchdog sees it. Thread-safe: the copy thread marks it, the
    watchdog thread reads it."""

    def __init__(self, stall_seconds: float, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.stall_seconds = stall_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._waiting_for_gpg = True  # until the first read: gpg may not even start
        self._since = clock()
        self._process: _Killable | None = None
        self.killed = False

    def started(self, process: _Killable) -> None:
        with self._lock:
            self._process = process

    def reading_source(self) -> None:
        with self._lock:
            self._waiting_for_gpg = False

    def handing_to_gpg(self) -> None:
        """A chunk read (or the end of the input): gpg's turn, the clock runs."""
        with self._lock:
            self._waiting_for_gpg = True
            self._since = self._clock()

    def check(self) -> bool:
        """Kill gpg if it has stalled; True if it was killed (now or before)."""
        with self._lock:
            stalled = (self._waiting_for_gpg and self._process is not None
                       and self._clock() - self._since > self.stall_seconds)
            if stalled and not self.killed and self._process is not None:
                self._process.kill()
                self.killed = True
            return self.killed


class WatchedSource:
    """The input handed to python-gnupg, telling the watch whose turn it is."""

    def __init__(self, source: Any, watch: Watch) -> None:
        self._source = source
        self._watch = watch

    def read(self, size: int = -1, /) -> bytes:
        self._watch.reading_source()
        try:
            data: bytes = self._source.read(size)
        finally:
            # Also when the read fails (a cut-off upload): python-gnupg then closes gpg's
            # input, and a gpg that does not exit after that must still be stopped.
            self._watch.handing_to_gpg()
        return data


class Watchdog:
    """A thread that checks ``watch`` until :meth:`stop`. Use as a context manager."""

    def __init__(self, watch: Watch) -> None:
        self._watch = watch
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpg-watchdog", daemon=True)

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        interval = min(1.0, self._watch.stall_seconds / 4)
        while not self._done.wait(interval):
            if self._watch.check():
                return
