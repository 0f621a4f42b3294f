"""Replies from journalists to sources.

Each reply is kept twice, both times as ciphertext: for the newsroom, as OpenPGP to the
newsroom keys (a file in the store, exported in bundles like any item), and for the
source, as HPKE to the public key derived from the source's codename. The plaintext is
dropped as soon as both exist.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from tipbox.clock import today
from tipbox.crypto.keyring import KeyringSource
from tipbox.crypto.reply_keys import (
    ReplyDecryptionError,
    ReplyPrivateKey,
    decrypt_reply,
    encrypt_reply,
)
from tipbox.db import forget_deleted
from tipbox.errors import SubmissionRejected
from tipbox.i18n import N_
from tipbox.models import Reply, Source
from tipbox.storage import CiphertextStore, new_item_id
from tipbox.store_claims import Move, StoreClaim, journalled

MAX_REPLY_CHARS = 20_000


@dataclass(frozen=True)
class ShownReply:
    id: str
    text: str
    sent_on: dt.date


@dataclass(frozen=True)
class ReplyService:
    sessions: sessionmaker[Session]
    store: CiphertextStore
    keys: KeyringSource
    clock: Callable[[], dt.date] = today

    def send(self, source_id: int, journalist_id: int | None, text: str) -> str:
        """Encrypt ``text`` for the newsroom and for the source; return the reply id."""
        text = text.replace("\r\n", "\n")
        if not text.strip():
            raise SubmissionRejected(N_("The reply is empty."))
        if len(text) > MAX_REPLY_CHARS:
            raise SubmissionRejected(N_("The reply is longer than %(limit)s characters."),
                                     params={"limit": MAX_REPLY_CHARS})
        keyring = self.keys.current()
        gpg = keyring.require()
        recipients = keyring.fingerprints
        reply_id = new_item_id()
        day = self.clock()
        # The same protocol as a submission's (tipbox.store_claims): claimed while it is
        # written, journalled before its rename, the row committed after it.
        claim = StoreClaim(self.store)
        temp = claim.temp_path()
        try:
            gpg.encrypt_bytes(text.encode("utf-8"), recipients, temp)
            self.store.prepare(temp, day)
            with journalled(claim, [Move(temp.name, reply_id)], self.sessions), \
                    self.sessions.begin() as db:
                # A write first, changing nothing: it takes SQLite's write lock, or this
                # source's row lock on PostgreSQL, so that two journalists replying at
                # once cannot both read the same highest number (the second was refused
                # by the database's unique number, a 500).
                db.execute(update(Source).where(Source.id == source_id)
                           .values(id=Source.id)
                           .execution_options(synchronize_session=False))
                source = db.get(Source, source_id)
                if source is None:
                    raise SubmissionRejected(N_("That source no longer exists."), status=404)
                for_source = encrypt_reply(text, source.reply_public_key) \
                    if source.reply_public_key else None
                seq = (db.scalar(select(func.max(Reply.seq))
                                 .where(Reply.source_id == source_id)) or 0) + 1
                size = temp.stat().st_size
                self.store.place(temp, reply_id)
                db.add(Reply(id=reply_id, source_id=source_id, journalist_id=journalist_id,
                             seq=seq, size=size, key_fingerprints=" ".join(recipients),
                             for_source=for_source, sent_on=day))
                self.store.sync()  # the rename lasts before the row does
        finally:
            self.store.discard(temp)  # only there if it was never placed
            claim.release()
        return reply_id

    def read_by_source(self, source_id: int, key: ReplyPrivateKey) -> list[ShownReply]:
        """Decrypt the source's replies for display and mark them read."""
        shown: list[ShownReply] = []
        with self.sessions.begin() as db:
            rows = db.scalars(select(Reply).where(Reply.source_id == source_id,
                                                  Reply.deleted_by_source.is_(False))
                              .order_by(Reply.seq)).all()
            for row in rows:
                if row.for_source is None:
                    continue
                try:
                    text = decrypt_reply(row.for_source, key)
                except ReplyDecryptionError:
                    continue
                row.read_by_source = True
                shown.append(ShownReply(row.id, text, row.sent_on))
        return shown

    def delete_all_by_source(self, source_id: int) -> int:
        """Every copy the source still has is destroyed; returns how many."""
        with self.sessions.begin() as db:
            rows = db.scalars(select(Reply).where(Reply.source_id == source_id,
                                                  Reply.deleted_by_source.is_(False))).all()
            for row in rows:
                row.deleted_by_source = True
                row.for_source = None
            if rows:
                forget_deleted(db)  # the old page images hold the source's copies
        return len(rows)

    def delete_by_source(self, source_id: int, reply_id: str) -> bool:
        """The source's copy is destroyed; the newsroom sees 'deleted by source'."""
        with self.sessions.begin() as db:
            row = db.get(Reply, reply_id)
            if row is None or row.source_id != source_id:
                return False
            row.deleted_by_source = True
            row.for_source = None
            forget_deleted(db)  # the old page image holds the source's copy
        return True


class ReplyKeyCache:
    """Reply private keys of logged-in sources, in this process's memory only.

    The server-side session (which is in the database) holds just a random handle; the
    key is never written anywhere. A restart or the idle timeout forgets it, and the
    source logs in with the codename again.
    """

    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._keys: dict[str, tuple[float, ReplyPrivateKey]] = {}
        self._lock = threading.Lock()

    def put(self, key: ReplyPrivateKey) -> str:
        handle = secrets.token_urlsafe(24)
        with self._lock:
            self._expire()
            self._keys[handle] = (self._clock() + self._ttl, key)
        return handle

    def get(self, handle: str | None) -> ReplyPrivateKey | None:
        if not handle:
            return None
        with self._lock:
            self._expire()
            entry = self._keys.get(handle)
            if entry is None:
                return None
            self._keys[handle] = (self._clock() + self._ttl, entry[1])
            return entry[1]

    def drop(self, handle: str | None) -> None:
        with self._lock:
            self._keys.pop(handle or "", None)

    def _expire(self) -> None:
        now = self._clock()
        for handle in [h for h, (deadline, _) in self._keys.items() if deadline <= now]:
            del self._keys[handle]
