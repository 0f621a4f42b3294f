"""The one place tipbox reads the calendar.

Services take a ``clock`` argument that defaults to :func:`today`, so tests pass a fixed
day instead of patching time. Days are UTC and nothing finer is stored: a coarse date
says less about when a source was active than a timestamp would.
"""

from __future__ import annotations

import datetime as dt
import time


def today() -> dt.date:
    """Today's date in UTC."""
    return dt.datetime.now(dt.UTC).date()


def seconds() -> float:
    """Seconds since the epoch, for deadlines that live minutes (flood-defence tickets)
    and are never stored finer than ten minutes."""
    return time.time()
