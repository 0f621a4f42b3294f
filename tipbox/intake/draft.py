"""A submission in progress: each item encrypted as it arrives, all kept or none.

A :class:`Draft` collects ciphertext in the store's temp folder while the body streams
in, under a claim (:class:`~tipbox.store_claims.StoreClaim`) that tells the sweeper its
files are in use. Only :meth:`Draft.commit` makes anything permanent: it journals the
renames, renames every file into place and writes every row in one transaction, so a
crash at any moment leaves nothing the sweeper cannot settle. Leaving the ``with`` block
any other way removes every trace of the attempt, so a cut-off upload never keeps half a
submission.

What a draft holds is a :class:`DraftState`: temp file names, kinds, sizes and keys, never
a file name or any plaintext. :meth:`Draft.keep` hands that state over instead of
discarding it, so that a later request can carry on with it (``Draft(..., state=...)``);
that is what an upload sent in pieces will need. Within one process the state keeps the
draft's claim, so the sweeper leaves its files alone; reloaded elsewhere, it takes the
claim again by its token.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TypedDict

from sqlalchemy import func, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from tipbox.clock import today
from tipbox.crypto.gpg import Readable
from tipbox.crypto.keyring import Keyring
from tipbox.crypto.message_check import EncryptedMessageCheck, MessageRefused, Refusal
from tipbox.db import rows_matched
from tipbox.errors import (
    DatabaseUnavailable,
    StoreError,
    SubmissionRejected,
    UploadTooLarge,
)
from tipbox.i18n import N_
from tipbox.intake.file_items import Prefixed, safe_filename, worth_compressing
from tipbox.intake.limits import check_daily_quota
from tipbox.models import Item, ItemKind, Source
from tipbox.storage import CiphertextStore, early_writeback, new_item_id
from tipbox.store_claims import TEMP_NAME_RE, TOKEN_RE, Move, StoreClaim, journalled

PROBE_BYTES = 64 * 1024
ENCRYPTED_CHUNK_BYTES = 1024 * 1024

# What the source reads when an item their browser encrypted is refused. Each one names
# the fault without quoting anything from the upload.
REFUSALS = {
    Refusal.NOT_ENCRYPTED: N_(
        "An item that your browser should have encrypted arrived unencrypted or was not an "
        "OpenPGP message, so nothing from this submission was kept. Reload the page and "
        "send it again."),
    Refusal.UNKNOWN_RECIPIENT: N_(
        "An item was encrypted to a key that is not the newsroom's, so nothing from this "
        "submission was kept. Reload the page and send it again."),
    Refusal.MISSING_RECIPIENT: N_(
        "An item was not encrypted to every newsroom key, so nothing from this submission "
        "was kept. Reload the page and send it again."),
    Refusal.UNSUPPORTED: N_(
        "An item was encrypted in a form of OpenPGP that this site does not accept, so "
        "nothing from this submission was kept. Send it without in-browser encryption."),
    Refusal.MALFORMED: N_(
        "An encrypted item was damaged, so nothing from this submission was kept. Reload "
        "the page and send it again."),
    Refusal.TRUNCATED: N_(
        "An encrypted item was cut off before its end, so nothing from this submission was "
        "kept. Reload the page and send it again."),
    Refusal.TRAILING_DATA: N_(
        "An encrypted item had extra data after its end, so nothing from this submission "
        "was kept. Reload the page and send it again."),
}


@dataclass(frozen=True)
class PendingItem:
    """One item's ciphertext, waiting in the store's temp folder for the commit."""

    temp_name: str  # a random name inside the temp folder, never the source's file name
    kind: ItemKind
    size: int
    recipients: tuple[str, ...]  # the fingerprints it is encrypted to


class SavedPendingItem(TypedDict):
    """A :class:`PendingItem` as JSON."""

    temp_name: str
    kind: str  # an ItemKind value
    size: int
    recipients: list[str]


class SavedDraft(TypedDict):
    """A :class:`DraftState` as JSON (:meth:`DraftState.to_dict`), kept in the database."""

    items: list[SavedPendingItem]
    skipped_empty_files: int
    owner: str


@dataclass
class DraftState:
    """Everything a draft holds, as plain data a later request could reload.

    Never a file name (that travels inside the ciphertext only) and never plaintext.
    """

    items: list[PendingItem] = field(default_factory=list)
    skipped_empty_files: int = 0
    owner: str = ""  # the claim token its temp files are named after; "" for a new draft
    # The claim itself while this process holds it (never saved).
    claim: StoreClaim | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> SavedDraft:
        return {"items": [{"temp_name": i.temp_name, "kind": i.kind.value, "size": i.size,
                           "recipients": list(i.recipients)} for i in self.items],
                "skipped_empty_files": self.skipped_empty_files, "owner": self.owner}

    @classmethod
    def from_dict(cls, data: SavedDraft) -> DraftState:
        """The state :meth:`to_dict` wrote; refuses anything that could name a file
        outside the store's temp folder. Every field is checked and converted again,
        whatever its type says: it comes back from the database."""
        owner = str(data.get("owner", ""))
        if owner and not TOKEN_RE.fullmatch(owner):
            raise ValueError("not a claim token")
        items = []
        for raw in data["items"]:
            name = str(raw["temp_name"])
            match = TEMP_NAME_RE.fullmatch(name)
            if not match or match[1] != owner:
                raise ValueError("not a temp file name of the store")
            items.append(PendingItem(name, ItemKind(raw["kind"]), int(raw["size"]),
                                     tuple(str(f) for f in raw["recipients"])))
        return cls(items, int(data["skipped_empty_files"]), owner)

    def discard(self, store: CiphertextStore) -> None:
        """Remove every temp file of this state (an upload given up on), then its claim."""
        for item in self.items:
            _remove_temp(store, store.tmp / item.temp_name)
        self.items.clear()
        self.release()

    def release(self) -> None:
        if self.claim is not None:
            self.claim.release()
            self.claim = None


@dataclass(frozen=True)
class Receipt:
    messages: int
    files: int
    skipped_empty_files: int


class Draft:
    """Ciphertext in progress for one submission. Use as a context manager.

    Every item is encrypted to the ``keyring``'s keys as they stand when the draft is
    made (one moment, so gpg's recipients and the browser check's key ids agree).
    """

    def __init__(self, keyring: Keyring, store: CiphertextStore,
                 sessions: sessionmaker[Session], max_files: int, *,
                 clock: Callable[[], dt.date] = today, state: DraftState | None = None,
                 daily_quota: int | None = None) -> None:
        self._gpg = keyring.require()
        self.recipients = keyring.fingerprints
        # Fingerprint -> encryption key ids, for items the browser encrypted.
        self._key_ids = keyring.encryption_key_ids
        self.store = store
        self.sessions = sessions
        self.max_files = max_files
        self.clock = clock
        self.state = state if state is not None else DraftState()
        if self.state.claim is None:
            # Taken before any temp file is made: the sweeper leaves a claimed file alone.
            try:
                self.state.claim = (StoreClaim.resume(store, self.state.owner)
                                    if self.state.owner else StoreClaim(store))
            except OSError as exc:
                raise StoreError.from_os_error(exc, "claiming temp files") from exc
            self.state.owner = self.state.claim.token
        self._claim = self.state.claim
        self.daily_quota = daily_quota  # bytes a source may send per day; None: no limit
        self._done = False  # committed or kept: nothing left for __exit__ to discard

    def __enter__(self) -> Draft:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._done:
            self.discard()

    @property
    def pending(self) -> list[PendingItem]:
        return self.state.items

    @property
    def skipped_empty_files(self) -> int:
        return self.state.skipped_empty_files

    @skipped_empty_files.setter
    def skipped_empty_files(self, count: int) -> None:
        self.state.skipped_empty_files = count

    @property
    def file_count(self) -> int:
        return sum(1 for p in self.pending if p.kind is ItemKind.FILE)

    def add_message(self, text: str) -> None:
        with self._writing(ItemKind.MESSAGE) as temp:
            self._gpg.encrypt_bytes(text.encode("utf-8"), self.recipients, temp)

    def add_file(self, data: Readable, raw_filename: str) -> bool:
        """Encrypt one file as it streams in. Returns False for an empty file, which is
        skipped (counted, not stored): it carries nothing but a name."""
        first = data.read(PROBE_BYTES)
        if not first:
            self.state.skipped_empty_files += 1
            return False
        self._check_file_count()
        with self._writing(ItemKind.FILE) as temp:
            self._gpg.encrypt_stream(
                Prefixed(first, data), self.recipients, temp,
                filename=safe_filename(raw_filename, self.file_count + 1),
                compress=worth_compressing(first),
            )
        return True

    def add_encrypted(self, data: Readable, kind: ItemKind, *,
                      max_bytes: int | None = None) -> None:
        """Keep an item the source's browser encrypted, byte for byte, as it streams in.

        Every chunk is checked (:class:`EncryptedMessageCheck`) before it is written, and
        the whole must be exactly a message to the active keys; otherwise
        :class:`SubmissionRejected` ends the submission and nothing of it is kept.
        """
        if kind is ItemKind.FILE:
            self._check_file_count()
        check = EncryptedMessageCheck(self._key_ids)
        with self._writing(kind) as temp:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out, early_writeback(temp):
                while chunk := data.read(ENCRYPTED_CHUNK_BYTES):
                    if max_bytes is not None and check.bytes_seen + len(chunk) > max_bytes:
                        raise SubmissionRejected(N_(
                            "The encrypted message is larger than a message of the longest "
                            "allowed length, so nothing was kept. Shorten it, or put the text "
                            "in a file and attach it."))
                    _refuse_as_the_source_reads_it(check.feed, chunk)
                    out.write(chunk)
                _refuse_as_the_source_reads_it(check.finish)

    @contextmanager
    def _writing(self, kind: ItemKind) -> Iterator[Path]:
        """A fresh temp file for one item; it joins the draft only once it is complete.

        A write the disk refuses becomes the store's answer (disk full has its own, which
        the gpg wrapper raises itself); the temp file of a failed item is removed at once."""
        if self._done:
            raise RuntimeError("this draft was committed or kept: make a new one")
        temp = self._claim.temp_path()
        try:
            yield temp
            size = temp.stat().st_size
        except BaseException as exc:
            _remove_temp(self.store, temp)
            if isinstance(exc, OSError):
                raise StoreError.from_os_error(exc, "writing a temp file") from exc
            raise
        self.state.items.append(PendingItem(temp.name, kind, size, self.recipients))

    def _check_file_count(self) -> None:
        if self.file_count >= self.max_files:
            raise UploadTooLarge(
                N_("This submission has more files than the %(limit)s allowed at once. "
                   "Nothing from it was kept: send the files in several submissions."),
                params={"limit": self.max_files},
            )

    def commit(self, source_id: int, *,
               in_transaction: Callable[[Session], None] | None = None) -> Receipt:
        """Make every item permanent at once: files renamed into place, rows written.

        ``in_transaction`` runs inside the same transaction, after the rows are added (an
        upload sent in pieces marks itself finished there, so that both happen or neither).

        The renames are journalled first and the rows committed after them, so a crash
        anywhere leaves a journal the sweeper settles against the rows
        (:mod:`tipbox.store_claims`): never a file without a row, nor a row without a file.
        """
        if not self.pending:
            raise SubmissionRejected(N_(
                "There was nothing to send: write a message or choose at least one "
                "non-empty file, then press Submit again."))
        day = self.clock()
        moves = [Move(item.temp_name, new_item_id()) for item in self.pending]
        try:
            # The slow part (an fsync per file) before the transaction: on SQLite its
            # first statement takes the one write lock every other writer waits for.
            for item in self.pending:
                self.store.prepare(self.store.tmp / item.temp_name, day)
            with journalled(self._claim, moves, self.sessions), \
                    self.sessions.begin() as db:
                # A write first: it takes SQLite's write lock, or this source's row lock on
                # PostgreSQL, so that two submissions from one source cannot both read the
                # same highest number (the database also refuses a duplicate).
                touched = db.execute(update(Source).where(Source.id == source_id)
                                     .values(last_activity_on=day)
                                     .execution_options(synchronize_session=False))
                if not rows_matched(touched):
                    raise _source_gone()
                sizes = [(self.store.tmp / item.temp_name).stat().st_size
                         for item in self.pending]  # the files', not what a state claims
                check_daily_quota(db, source_id, day, self.daily_quota, adding=sum(sizes))
                seq = db.scalar(select(func.coalesce(func.max(Item.seq), 0))
                                .where(Item.source_id == source_id)) or 0
                for offset, (item, move, size) in enumerate(
                        zip(self.pending, moves, sizes, strict=True), start=1):
                    self.store.place(self.store.tmp / item.temp_name, move.item_id)
                    db.add(Item(id=move.item_id, source_id=source_id, seq=seq + offset,
                                kind=item.kind, size=size,
                                key_fingerprints=" ".join(item.recipients),
                                submitted_on=day))
                if in_transaction is not None:
                    in_transaction(db)
                self.store.sync()  # one folder fsync: the renames last before the rows do
        except BaseException as exc:
            # journalled() has put back or removed what was renamed; __exit__ removes
            # the temp files still here.
            if isinstance(exc, StaleDataError | IntegrityError):
                # The source was deleted while this committed (by a journalist, or prune).
                raise _source_gone() from None
            if isinstance(exc, DBAPIError):
                raise DatabaseUnavailable(type(exc.orig or exc).__name__) from exc
            if isinstance(exc, OSError):
                raise StoreError.from_os_error(exc, "committing to the store") from exc
            raise
        self._done = True
        messages = sum(1 for p in self.pending if p.kind is ItemKind.MESSAGE)
        receipt = Receipt(messages=messages, files=len(self.pending) - messages,
                          skipped_empty_files=self.skipped_empty_files)
        self.state.items.clear()  # they are the store's now
        self.state.release()
        return receipt

    def check_quota(self, source_id: int) -> None:
        """Refuse at once a source that has already sent its day's bytes, before any of
        the upload is read (the commit checks again with this upload's size)."""
        with self.sessions() as db:
            check_daily_quota(db, source_id, self.clock(), self.daily_quota)

    def keep(self) -> DraftState:
        """Leave the ``with`` block without discarding: the returned state now owns the
        temp files and the claim on them, for a later request to carry on with (or to
        discard)."""
        self._done = True
        return self.state

    def discard(self) -> None:
        self.state.discard(self.store)


def _source_gone() -> SubmissionRejected:
    return SubmissionRejected(N_("Your session ended. Log in with your codename and submit "
                                 "again."))


def _remove_temp(store: CiphertextStore, temp: Path) -> None:
    # A store that fails to remove must not hide the failure being answered; what it
    # leaves is ciphertext, and the sweeper removes it once the claim is let go.
    with contextlib.suppress(OSError):
        store.discard(temp)


def _refuse_as_the_source_reads_it(step: Callable[..., None], *args: bytes) -> None:
    """Run one step of the browser-encryption check; a MessageRefused becomes the
    refusal the source reads (REFUSALS), which quotes nothing from the upload."""
    try:
        step(*args)
    except MessageRefused as exc:
        raise SubmissionRejected(REFUSALS[exc.reason]) from None
