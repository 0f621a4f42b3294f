"""Progress on stderr: one line per item, with percentages for large items."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

LARGE = 16 * 1024 * 1024  # items above this size show percentages as they go
POLL_SECONDS = 0.5


class Progress:
    """``[12/340] sturdy zest file 4.2 MiB ... ok``; silent when ``stream`` is None."""

    def __init__(self, stream: TextIO | None, total: int) -> None:
        self.stream = stream
        self.total = total
        self._count = 0
        self._shown = 0
        self._whole = 0
        self._lock = threading.Lock()

    def restart(self, total: int) -> None:
        """Count again from 1, for a second pass over the items."""
        self.total, self._count = total, 0

    def start(self, label: str, size: int) -> None:
        self._count += 1
        self._shown = 0
        self._whole = size if size > LARGE else 0
        self._write(f"[{self._count}/{self.total}] {label} ...")

    def advance(self, done: int, whole: int) -> None:
        """Show each 10% step of ``done / whole`` once (large items only)."""
        if not self._whole or whole <= 0:
            return
        with self._lock:
            step = min(90, done * 100 // whole // 10 * 10)
            if step > self._shown:
                self._shown = step
                self._write(f" {step}%")

    def done(self, result: str) -> None:
        self._write(f" {result}\n")

    def line(self, text: str) -> None:
        self._write(text + "\n")

    def _write(self, text: str) -> None:
        if self.stream is not None:
            self.stream.write(text)
            self.stream.flush()

    @contextlib.contextmanager
    def watching(self, path: Path, offset: int, whole: int) -> Iterator[None]:
        """While the body runs, report the growth of ``path`` as ``offset + size`` of
        ``whole`` (gpg writes the plaintext there; its size tracks the ciphertext's)."""
        if self.stream is None or not self._whole:
            yield
            return
        stop = threading.Event()

        def poll() -> None:
            while not stop.wait(POLL_SECONDS):
                with contextlib.suppress(OSError):
                    self.advance(offset + path.stat().st_size, whole)

        thread = threading.Thread(target=poll, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
