"""Sources: created from a codename, found again by its hash, and what they sent."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from tipbox.clock import today
from tipbox.codenames import CodenameHasher, generate_designation, normalize_codename
from tipbox.models import Item, Source


@dataclass(frozen=True)
class SourceService:
    sessions: sessionmaker[Session]
    hasher: CodenameHasher
    clock: Callable[[], dt.date] = today

    def create(self, codename: str) -> int:
        """Create the source for a freshly generated codename; return its id.

        If the codename already has a source (the 'continue' form was sent twice), that
        source is returned rather than a second one made.
        """
        digest = self.hasher.hash(codename)
        day = self.clock()
        for _ in range(5):
            try:
                with self.sessions.begin() as db:
                    existing = db.scalar(select(Source.id).where(Source.codename_hash == digest))
                    if existing is not None:
                        return existing
                    source = Source(codename_hash=digest, designation=generate_designation(),
                                    created_on=day, last_activity_on=day)
                    db.add(source)
                    db.flush()
                    return source.id
            except IntegrityError:
                continue  # the designation was taken, or a concurrent create won: look again
        raise RuntimeError("could not create a source after 5 attempts")

    def find(self, raw_codename: str) -> int | None:
        """The source id for a typed codename, or None. Malformed input is never hashed."""
        codename = normalize_codename(raw_codename)
        if codename is None:
            return None
        digest = self.hasher.hash(codename)
        with self.sessions() as db:
            return db.scalar(select(Source.id).where(Source.codename_hash == digest))

    def set_reply_key(self, source_id: int, public_key: bytes) -> None:
        """Record the reply public key the first time the source logs in with it."""
        with self.sessions.begin() as db:
            source = db.get(Source, source_id)
            if source is not None and source.reply_public_key != public_key:
                source.reply_public_key = public_key

    def item_count(self, source_id: int) -> int:
        with self.sessions() as db:
            return db.scalar(select(func.count(Item.id)).where(Item.source_id == source_id)) or 0

    def exists(self, source_id: int) -> bool:
        with self.sessions() as db:
            return db.get(Source, source_id) is not None
