"""What one upload may take from the server: disk space above a reserve, and a share of a
day's bytes per source.

A flood of uploads must not fill the disk that holds the database and the store (the
site would then fail for everyone, and a full disk can corrupt what is being written),
and one source, whose codename costs nothing to get, must not take the whole disk for
itself. Neither needs anything about the sender but its source id.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tipbox.crypto.gpg import Readable
from tipbox.errors import DailyQuotaReached, StorageReserveReached
from tipbox.models import Item
from tipbox.storage import CiphertextStore

# Free space is looked at again after this many bytes of body: a statvfs() costs about a
# microsecond, and 8 MiB arrive in well under a second even on a fast link.
CHECK_EVERY_BYTES = 8 * 1024 * 1024


class ReserveGuard:
    """The request body, refused (StorageReserveReached) as soon as the disk holding the
    store has less than ``min_free`` bytes free: before the first byte is taken, then
    every CHECK_EVERY_BYTES."""

    def __init__(self, body: Readable, store: CiphertextStore, min_free: int) -> None:
        self._body = body
        self._store = store
        self._min_free = min_free
        self._until_check = 0

    def read(self, size: int = -1, /) -> bytes:
        if self._until_check <= 0:
            if self._store.free_bytes() < self._min_free:
                raise StorageReserveReached()
            self._until_check = CHECK_EVERY_BYTES
        data = self._body.read(size)
        self._until_check -= len(data)
        return data


def check_daily_quota(db: Session, source_id: int, day: dt.date, quota: int | None,
                      adding: int = 0) -> None:
    """Refuse (DailyQuotaReached) if the source's items of ``day`` plus ``adding`` bytes
    go over ``quota``. Called before an upload is read (adding nothing) and inside the
    commit's transaction, which holds the source's lock (with the new items' sizes)."""
    if quota is None:
        return
    stored = db.scalar(select(func.coalesce(func.sum(Item.size), 0))
                       .where(Item.source_id == source_id, Item.submitted_on == day)) or 0
    if stored + adding > quota or (adding == 0 and stored >= quota):
        raise DailyQuotaReached(quota)
