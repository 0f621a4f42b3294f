"""How failed newsroom log-ins are throttled: the one rule, for known and unknown names.

A known account counts its failures in the database (``journalists.failed_logins``).
A name with no account must be answered exactly the same way, or the difference (403 for
ever against 403 four times, then 429) tells a guesser which usernames exist. Unknown
names therefore count their failures here, in this process's memory only: a keyed hash
of the name (never the name, which may be a passphrase typed into the wrong field), in a
table of bounded size so that a flood of random names cannot grow it without end.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import math
import secrets
import threading
from collections import OrderedDict

MAX_FAILURES = 5
FIRST_LOCK = dt.timedelta(minutes=1)
LONGEST_LOCK = dt.timedelta(hours=1)
# Names tracked at once (about 20 MiB when full). The table forgets its oldest name when
# full, which the database never does for a real account: a prober who fails on name X,
# then on this many other names, then on X again sees a difference. Each failure costs
# one Argon2id check in one of the few hashing slots (tipbox.hashing_slots), so filling
# the table takes hours of keeping every slot busy, which every visitor notices.
TRACKED_NAMES = 100_000


def lock_time(failures: int) -> dt.timedelta:
    """One minute at the limit, doubling with each further failure, up to an hour."""
    doublings = min(failures - MAX_FAILURES, 16)
    return min(FIRST_LOCK * (1 << doublings), LONGEST_LOCK)


def seconds_until(moment: dt.datetime | None, now: dt.datetime) -> int:
    """Whole seconds from ``now`` until ``moment``, rounded up; 0 if none or past."""
    if moment is None:
        return 0
    if moment.tzinfo is None:  # SQLite hands back naive datetimes; tipbox writes UTC
        moment = moment.replace(tzinfo=dt.UTC)
    return max(0, math.ceil((moment - now).total_seconds()))


class UnknownNames:
    """Failure counts and locks for usernames that have no account, as the database
    keeps them for those that do."""

    def __init__(self, capacity: int = TRACKED_NAMES) -> None:
        self._key = secrets.token_bytes(32)  # per process: the table means nothing outside
        self._capacity = capacity
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[int, dt.datetime | None]] = OrderedDict()

    def _slot(self, username: str) -> bytes:
        # 16 bytes: collisions among 100,000 names are vanishingly rare, and memory halves.
        return hmac.new(self._key, username.encode("utf-8"), hashlib.sha256).digest()[:16]

    def locked_for(self, username: str, now: dt.datetime) -> int:
        """Seconds this name stays locked (0: it may try)."""
        with self._lock:
            entry = self._entries.get(self._slot(username))
        return seconds_until(entry[1], now) if entry else 0

    def fail(self, username: str, now: dt.datetime) -> int:
        """Count a failure; the seconds the name is now locked for (0: not locked)."""
        slot = self._slot(username)
        with self._lock:
            failures = self._entries.pop(slot, (0, None))[0] + 1
            locked_until = now + lock_time(failures) if failures >= MAX_FAILURES else None
            self._entries[slot] = (failures, locked_until)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return seconds_until(locked_until, now)
