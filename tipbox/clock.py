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


def now() -> dt.datetime:
    """The current moment in UTC, for expiries; round it (:func:`coarse`) before storing."""
    return dt.datetime.now(dt.UTC)


def coarse(moment: dt.datetime, step_seconds: int = 600) -> dt.datetime:
    """``moment`` rounded up to ``step_seconds`` (ten minutes): a stored expiry then says
    little about when a request came."""
    seconds = moment.timestamp()
    return dt.datetime.fromtimestamp(seconds + (-seconds % step_seconds), tz=dt.UTC)
