"""The audit log: who changed a key or an account, and when. Nothing about sources."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tipbox.models import AuditEntry


def _minute() -> dt.datetime:
    # Minutes are enough to reconstruct what an admin did; seconds add nothing.
    return dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)


@dataclass(frozen=True)
class AuditLog:
    sessions: sessionmaker[Session]
    clock: Callable[[], dt.datetime] = _minute

    def record(self, actor: str, action: str, detail: str = "") -> None:
        with self.sessions.begin() as db:
            db.add(AuditEntry(at=self.clock(), actor=actor[:80], action=action[:64],
                              detail=detail))

    def recent(self, limit: int = 200) -> list[AuditEntry]:
        with self.sessions() as db:
            return list(db.scalars(select(AuditEntry).order_by(AuditEntry.id.desc())
                                   .limit(limit)))
