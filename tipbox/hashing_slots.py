"""A bound on memory-hard hashing running at once.

Each codename check (scrypt) and each newsroom passphrase check (Argon2id) takes about
64 MiB while it runs. Unbounded, 32 log-ins at once took a worker to 1.9 GiB. Every such
hash runs in a slot; a few callers may wait a short time for one, and past that queue
the caller is told the site is busy (HashingBusy: 503 with Retry-After), which costs
nothing. Memory then stays near ``slots`` x 64 MiB whatever arrives.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from tipbox.errors import HashingBusy


class HashingSlots:
    """At most ``slots`` hashes at once; at most ``queue`` callers waiting, each for at
    most ``wait_seconds``."""

    def __init__(self, slots: int, queue: int, wait_seconds: float) -> None:
        if slots < 1 or queue < 0 or wait_seconds < 0:
            raise ValueError("slots must be at least 1; queue and wait_seconds not negative")
        self.slots = slots
        self.queue = queue
        self.wait_seconds = wait_seconds
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._waiting = 0

    @classmethod
    def for_this_machine(cls) -> HashingSlots:
        """One slot per core but one: hashing is CPU-bound, so more at once only costs
        memory, and the core left over keeps pages and uploads moving while a flood of
        log-ins hashes (with every core hashing, the landing page's p99 rose to 8 s in
        bench/hostile.py). Eight waiting per slot, for up to 20 s, absorbs a burst of
        honest log-ins."""
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
        slots = max(1, cores - 1)
        return cls(slots=slots, queue=8 * slots, wait_seconds=20.0)

    @property
    def waiting(self) -> int:
        """Callers queued for a slot right now."""
        with self._lock:
            return self._waiting

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the block, or raise :class:`HashingBusy` at once when the queue
        is full, or when no slot freed up in time."""
        if not self._free.acquire(blocking=False):
            with self._lock:
                if self._waiting >= self.queue:
                    raise HashingBusy()
                self._waiting += 1
            try:
                got = self._free.acquire(timeout=self.wait_seconds)
            finally:
                with self._lock:
                    self._waiting -= 1
            if not got:
                raise HashingBusy()
        try:
            yield
        finally:
            self._free.release()


UNLIMITED = HashingSlots(slots=1 << 20, queue=0, wait_seconds=0)
"""For tools and tests that hash one thing at a time and need no bound."""
