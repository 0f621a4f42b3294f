"""A bound on memory-hard hashing running at once, run at the lowest CPU priority.

Each codename check (scrypt) and each newsroom passphrase check (Argon2id) takes about
64 MiB while it runs. Unbounded, 32 log-ins at once took a worker to 1.9 GiB. Every such
hash runs in a slot; a few callers may wait a short time for one, and past that queue
the caller is told the site is busy (HashingBusy: 503 with Retry-After), which costs
nothing. Memory then stays near ``slots`` x 64 MiB whatever arrives.

The hash itself runs in a thread of its own at nice 19 (:meth:`HashingSlots.run`). Both
scrypt (cryptography) and Argon2id (argon2-cffi) release the GIL while they work, so what
a flood of log-ins took from other visitors was CPU time: with the hashing thread at the
serving threads' priority, the landing page waited behind it on a busy 2-core machine
(p99 0.8-1.1 s in bench/hostile.py). At nice 19 the kernel runs a page's thread first
whenever both want a core; the hash still gets every cycle nobody else wants, and its
parameters are unchanged.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from tipbox.errors import HashingBusy

T = TypeVar("T")

# The lowest priority a thread can give itself (a nice-0 thread always runs first).
HASHING_NICENESS = 19


class HashingSlots:
    """At most ``slots`` hashes at once; at most ``queue`` callers waiting, each for at
    most ``wait_seconds``."""

    def __init__(self, slots: int, queue: int, wait_seconds: float, *,
                 low_priority: bool = True) -> None:
        """``low_priority``: each hash runs in a thread of its own at nice 19; False runs
        it in the caller's thread, as tools that hash one thing at a time do."""
        if slots < 1 or queue < 0 or wait_seconds < 0:
            raise ValueError("slots must be at least 1; queue and wait_seconds not negative")
        self.slots = slots
        self.queue = queue
        self.wait_seconds = wait_seconds
        self.low_priority = low_priority
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._waiting = 0

    @classmethod
    def for_account_pages(cls, at_once: int) -> HashingSlots:
        """The same bound for the codename pages as a whole (``at_once``, 0: one per
        core but one, as for hashing), run in the caller's thread. Rendering a page is
        Python holding the GIL: 100 clients asking for new codenames at once shared it
        with every other visitor, whose landing page waited its 1/100th turn (p50 0.3-1.3 s
        in bench/hostile.py). Waiting here for a turn holds no GIL, so other pages are
        answered beside the flood."""
        slots = at_once or max(1, _cores() - 1)
        return cls(slots=slots, queue=64 * slots, wait_seconds=20.0, low_priority=False)

    @classmethod
    def for_this_machine(cls) -> HashingSlots:
        """One slot per core but one: hashing is CPU-bound, so more at once only costs
        memory, and the core left over keeps pages and uploads moving while a flood of
        log-ins hashes (with every core hashing at normal priority, the landing page's
        p99 rose to 8 s in bench/hostile.py). Eight waiting per slot, for up to 20 s,
        absorbs a burst of honest log-ins."""
        slots = max(1, _cores() - 1)
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
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def acquire(self) -> None:
        """Take a slot, waiting in the queue if need be; :class:`HashingBusy` as for
        :meth:`slot`. Every successful call needs one :meth:`release`."""
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

    def release(self) -> None:
        """Give back a slot taken by :meth:`acquire`."""
        self._free.release()

    def compute(self, work: Callable[..., T], *args: object) -> T:
        """``work(*args)`` in a slot (see :meth:`slot`) and at low priority (:meth:`run`)."""
        with self.slot():
            return self.run(work, *args)

    def run(self, work: Callable[..., T], *args: object) -> T:
        """``work(*args)`` in a new thread at nice 19, waiting for it; its result, or its
        exception raised here. For a caller that holds a slot already (log-ins take one
        for the whole attempt): this takes none. A thread per hash costs tens of
        microseconds against a hash's 0.2-0.6 s, and leaves no idle pool behind."""
        if not self.low_priority:
            return work(*args)
        outcome: list[T] = []
        failure: list[BaseException] = []

        def hash_at_low_priority() -> None:
            lower_this_threads_priority()
            try:
                outcome.append(work(*args))
            except BaseException as exc:  # handed to the caller below
                failure.append(exc)

        thread = threading.Thread(target=hash_at_low_priority, name="hashing", daemon=True)
        thread.start()
        thread.join()
        if failure:
            raise failure[0]
        return outcome[0]


def lower_this_threads_priority() -> bool:
    """Set the calling thread (on Linux, nice is per thread) to :data:`HASHING_NICENESS`;
    False where the system does not allow it, which leaves the hash at normal priority."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)
        return True
    return False


UNLIMITED = HashingSlots(slots=1 << 20, queue=0, wait_seconds=0, low_priority=False)
"""For tools and tests that hash one thing at a time and need no bound."""


def _cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1
