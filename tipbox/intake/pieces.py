"""Uploads sent in pieces: an in-browser encrypted submission that survives a broken link.

Over Tor a circuit can break forty minutes into an upload. So the browser
(static/encrypt-core.js) sends each item's ciphertext in pieces of a few MiB, each its own
request, and the server keeps what arrived between requests:

- :meth:`PieceService.start` opens an upload for the logged-in source's submission (one
  per session; starting again ends the earlier one) and returns its token.
- :meth:`PieceService.append` adds one piece to one item. It must start exactly at the
  bytes the server holds of that item (:class:`~tipbox.errors.PieceOutOfPlace` otherwise)
  and continue the OpenPGP message seen so far (the packet check of
  :mod:`tipbox.crypto.message_check`, whose state is saved with the upload, so any worker,
  or the server after a restart, carries on; what the row keeps is
  :mod:`tipbox.intake.piece_state`). The piece is checked and written as it streams in,
  then fsynced, then the upload's row records it; a piece that fails half-way is cut off
  the file again, so a refused piece leaves nothing.
- :meth:`PieceService.status` says how many bytes of each item are held.
- :meth:`PieceService.finish` commits every item at once through
  :class:`~tipbox.intake.draft.Draft`, exactly as a one-request upload does: nothing is
  visible to the newsroom before.
- :meth:`PieceService.cancel` and :meth:`PieceService.end_session` remove it all.

Between requests no process holds the upload's claim (:mod:`tipbox.store_claims`): it is
*parked*, its lock file kept, and the sweeper (:mod:`tipbox.store_sweep`) leaves it alone
while its row says it lives: its session exists and has not expired, and a piece came
within TIPBOX_UPLOAD_IDLE_MINUTES. Each request takes the claim without waiting, so two
requests of one upload never write at once (:class:`~tipbox.errors.UploadBusy`).

Every piece counts against the same limits as a one-request upload: the submission size
(TIPBOX_MAX_SUBMISSION_BYTES), the source's daily bytes (with every unfinished upload of
the source counted) and the disk reserve. No Flask here.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from tipbox import clock
from tipbox.config import MIB, Settings
from tipbox.crypto.gpg import Readable
from tipbox.crypto.keyring import Keyring
from tipbox.crypto.message_check import EncryptedMessageCheck, MessageRefused
from tipbox.db import rows_matched
from tipbox.errors import (
    ByteCount,
    DatabaseUnavailable,
    MalformedUpload,
    PageKeysOutdated,
    PieceOutOfPlace,
    StoreError,
    SubmissionRejected,
    UploadBusy,
    UploadGone,
    UploadTooLarge,
)
from tipbox.i18n import N_
from tipbox.intake.draft import REFUSALS, Draft, DraftState, PendingItem, Receipt
from tipbox.intake.limits import ReserveGuard, check_daily_quota
from tipbox.intake.piece_state import OpenItem, UploadState, UploadStatus
from tipbox.models import ItemKind, Upload
from tipbox.storage import CiphertextStore
from tipbox.store_claims import TOKEN_RE, StoreClaim

# The largest piece taken in one request. encrypt.js sends PIECE_BYTES; the margin lets a
# later page choose larger ones without a server change.
MAX_PIECE_BYTES = 8 * MIB
# What encrypt.js is told to send: at 256 KiB/s (a slow Tor circuit) a piece takes about
# eight seconds, so a break loses little, and the browser holds at most a few of them.
PIECE_BYTES = 2 * MIB
# Room for a PKESK per key (RSA-4096: 0.5 KiB) around a message's longest UTF-8 text.
MESSAGE_OVERHEAD_BYTES = 16 * 1024

PIECE_TOO_LARGE = N_("A piece of this upload was larger than %(limit)s, so it was not kept. "
                     "Reload the page and send it again.")
UPLOAD_TOO_LARGE = N_("Together these files are larger than this site accepts in one "
                      "submission, so nothing more was kept. Send fewer or smaller files at "
                      "a time.")
NOT_COMPLETE = N_("Not every item of this upload has arrived yet, so nothing was sent. The "
                  "page sends the rest, then asks again.")


@dataclass(frozen=True)
class UploadOwner:
    """Whose upload: the logged-in source, in one session (``session_key`` is the hash
    the session's row is kept under, so the upload ends with that session)."""

    source_id: int
    session_key: str


@dataclass(frozen=True)
class Piece:
    """Where one piece goes, as the request says: ``length`` bytes for item ``item``
    (counted from 0) at byte ``offset``; ``kind`` is the item's, should the piece start
    it; ``last`` says that the item ends with this piece."""

    item: int
    offset: int
    length: int
    kind: ItemKind = ItemKind.FILE
    last: bool = False


class PieceService:
    """Uploads sent in pieces, for one store and one database."""

    def __init__(self, store: CiphertextStore, sessions: sessionmaker[Session],
                 settings: Settings, *, now: Callable[[], dt.datetime] = clock.now,
                 today: Callable[[], dt.date] = clock.today) -> None:
        self.store = store
        self.sessions = sessions
        self.settings = settings
        self.now = now
        self.today = today

    # --- the protocol -----------------------------------------------------------------

    def start(self, owner: UploadOwner, keyring: Keyring, fingerprints: list[str],
              empty_files: int = 0) -> UploadStatus:
        """Open an upload for ``owner``'s submission, encrypted by the page to
        ``fingerprints`` (which must be the active keys). Ends the session's earlier one."""
        if sorted(f.upper() for f in fingerprints) != sorted(keyring.fingerprints):
            raise PageKeysOutdated()
        keyring.require()
        self.end_session(owner.session_key)
        with self.sessions() as db:
            check_daily_quota(db, owner.source_id, self.today(), self.settings.source_daily_bytes,
                              adding=self._pending_bytes(db, owner.source_id))
        try:
            claim = StoreClaim(self.store)
        except OSError as exc:
            raise StoreError.from_os_error(exc, "claiming temp files") from exc
        try:
            state = UploadState(keyring.fingerprints, DraftState(
                skipped_empty_files=max(0, min(empty_files, self.settings.max_files)),
                owner=claim.token))
            with self.sessions.begin() as db:
                db.add(Upload(token=claim.token, source_id=owner.source_id,
                              session_key=owner.session_key, held_bytes=0,
                              state=state.to_json(), idle_until=self._idle_until()))
        except BaseException:
            claim.release()
            raise
        claim.park()
        return state.status(claim.token)

    def status(self, owner: UploadOwner, token: str) -> UploadStatus:
        with self.sessions() as db:
            _row, state = self._load(db, owner, token)
        return state.status(token)

    def append(self, owner: UploadOwner, keyring: Keyring, token: str, piece: Piece,
               body: Readable) -> UploadStatus:
        """Check and keep one piece as it streams in from ``body``; all of it or none."""
        if piece.length > MAX_PIECE_BYTES or piece.length < 0:
            raise UploadTooLarge(PIECE_TOO_LARGE, params={"limit": ByteCount(MAX_PIECE_BYTES)})
        with self._claimed(token) as claim:
            with self.sessions() as db:
                _row, state = self._load(db, owner, token)
                self._check_keys(claim, state, keyring)
                item = self._place(claim, state, piece)
                self._check_limits(db, owner, state, item, piece)
            check = (EncryptedMessageCheck(keyring.encryption_key_ids) if item.check is None
                     else EncryptedMessageCheck.resume(keyring.encryption_key_ids, item.check))
            temp = self.store.tmp / item.temp_name
            try:
                self._write(temp, item.held, body, piece, check)
            except MessageRefused as exc:
                # Not the message the page should have sent: the whole upload ends, as a
                # one-request upload would, and REFUSALS says nothing was kept.
                self._end(claim)
                raise SubmissionRejected(REFUSALS[exc.reason]) from None
            except BaseException as exc:
                _cut_back(temp, item.held)
                if isinstance(exc, OSError):
                    raise StoreError.from_os_error(exc, "writing a piece") from exc
                raise
            item.held += piece.length
            item.check = check.snapshot()
            if piece.last:
                state.draft.items.append(PendingItem(item.temp_name, item.kind, item.held,
                                                     state.fingerprints))
                state.open = None
            else:
                state.open = item
            try:
                self._save(owner, token, state)
            except BaseException:
                _cut_back(temp, item.held - piece.length)
                raise
            return state.status(token)

    def finish(self, owner: UploadOwner, keyring: Keyring, token: str) -> Receipt | None:
        """Commit every item at once, as one submission. None if this upload was already
        finished (a page that lost the first answer asks again)."""
        with self.sessions() as db:
            if self._load(db, owner, token)[1].finished:
                return None  # its claim is gone with its temp files
        with self._claimed(token) as claim:
            with self.sessions() as db:
                _row, state = self._load(db, owner, token)
            if state.finished:
                return None
            self._check_keys(claim, state, keyring)
            if state.open is not None:
                raise SubmissionRejected(NOT_COMPLETE, status=409)
            state.draft.claim = claim
            draft = Draft(keyring, self.store, self.sessions, self.settings.max_files,
                          clock=self.today, state=state.draft,
                          daily_quota=self.settings.source_daily_bytes)
            done = UploadState(state.fingerprints, DraftState(owner=token), finished=True)

            def mark_finished(db: Session) -> None:
                db.execute(update(Upload).where(Upload.token == token)
                           .values(state=done.to_json(), held_bytes=0))

            try:
                return draft.commit(owner.source_id, in_transaction=mark_finished)
            except (DatabaseUnavailable, StoreError):
                draft.keep()  # passing trouble: the pieces stay for another try
                raise
            except BaseException:
                draft.discard()
                self._forget(token)
                raise

    def cancel(self, owner: UploadOwner, token: str) -> None:
        """Remove the upload and everything it holds."""
        with self.sessions() as db:
            self._load(db, owner, token)
        claim = self._take(token)
        self._forget(token)
        if claim is not None:
            _discard_files(self.store, token)
            claim.release()

    def end_session(self, session_key: str) -> int:
        """Remove every upload of a session that ended (log-out, a new log-in); how many.

        One whose piece is still arriving loses its row now; that request then fails, and
        its files go with it or with the next sweep."""
        with self.sessions() as db:
            tokens = list(db.scalars(select(Upload.token)
                                     .where(Upload.session_key == session_key)))
        for token in tokens:
            claim = self._take(token)
            self._forget(token)
            if claim is not None:
                _discard_files(self.store, token)
                claim.release()
        return len(tokens)

    # --- steps ------------------------------------------------------------------------

    @contextmanager
    def _claimed(self, token: str) -> Iterator[StoreClaim]:
        """The upload's claim for one request; parked again after it (released already
        if the request ended the upload)."""
        try:
            claim = StoreClaim.take_parked(self.store, token)
        except (FileNotFoundError, ValueError):
            raise UploadGone() from None
        except OSError as exc:
            raise StoreError.from_os_error(exc, "claiming an upload") from exc
        if claim is None:
            raise UploadBusy()
        try:
            yield claim
        except UploadGone:
            # Its row went while this request held the claim (cancelled, or its session
            # ended, with the claim busy): what it held is nobody's now.
            if not self._exists(token):
                _discard_files(self.store, token)
                claim.release()
            raise
        finally:
            claim.park()

    def _exists(self, token: str) -> bool:
        with self.sessions() as db:
            return db.get(Upload, token) is not None

    def _take(self, token: str) -> StoreClaim | None:
        try:
            return StoreClaim.take_parked(self.store, token)
        except (OSError, ValueError):
            return None

    def _load(self, db: Session, owner: UploadOwner, token: str) -> tuple[Upload, UploadState]:
        """The upload's row and state, if it is ``owner``'s and alive; else UploadGone,
        the same answer whether it never existed or is someone else's."""
        row = db.get(Upload, token) if TOKEN_RE.fullmatch(token) else None
        if row is None or row.source_id != owner.source_id or \
                row.session_key != owner.session_key or _aware(row.idle_until) <= self.now():
            raise UploadGone()
        try:
            return row, UploadState.from_json(row.state, token)
        except (ValueError, KeyError, TypeError):
            raise UploadGone() from None

    def _check_keys(self, claim: StoreClaim, state: UploadState, keyring: Keyring) -> None:
        """The newsroom keys changed since the upload started: its items are encrypted
        to keys no longer active, so the upload ends and the page reloads the keys."""
        if sorted(state.fingerprints) != sorted(keyring.fingerprints):
            self._end(claim)
            raise PageKeysOutdated()

    def _place(self, claim: StoreClaim, state: UploadState, piece: Piece) -> OpenItem:
        """The item this piece continues, or a new one it starts; PieceOutOfPlace unless it
        starts exactly at the bytes held."""
        if state.finished:
            raise PieceOutOfPlace()
        complete = len(state.draft.items)
        if state.open is not None:
            if piece.item != complete or piece.offset != state.open.held:
                raise PieceOutOfPlace()
            return state.open
        if piece.item != complete or piece.offset != 0:
            raise PieceOutOfPlace()
        if piece.kind is ItemKind.FILE and sum(
                1 for i in state.draft.items if i.kind is ItemKind.FILE) >= \
                self.settings.max_files:
            raise UploadTooLarge(N_(
                "This submission has more files than the %(limit)s allowed at once. "
                "Nothing from it was kept: send the files in several submissions."),
                params={"limit": self.settings.max_files})
        return OpenItem(claim.temp_path().name, piece.kind)

    def _check_limits(self, db: Session, owner: UploadOwner, state: UploadState,
                      item: OpenItem, piece: Piece) -> None:
        if state.held_bytes + piece.length > self.settings.max_submission_bytes:
            raise UploadTooLarge(UPLOAD_TOO_LARGE)
        if item.kind is ItemKind.MESSAGE and item.held + piece.length > \
                self.settings.max_form_field_bytes + MESSAGE_OVERHEAD_BYTES:
            raise UploadTooLarge(N_(
                "The encrypted message is larger than a message of the longest allowed "
                "length, so nothing was kept. Shorten it, or put the text in a file and "
                "attach it."))
        check_daily_quota(db, owner.source_id, self.today(), self.settings.source_daily_bytes,
                          adding=self._pending_bytes(db, owner.source_id) + piece.length)

    def _write(self, temp: Path, held: int, body: Readable, piece: Piece,
               check: EncryptedMessageCheck) -> None:
        """Append exactly ``piece.length`` bytes of ``body`` at ``held``, each chunk checked
        before it is written, then fsynced: the row records it only after that."""
        guarded = ReserveGuard(body, self.store, self.settings.min_free_bytes)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            # A worker killed mid-piece can have left bytes past what the row records.
            os.ftruncate(fd, held)
            os.lseek(fd, held, os.SEEK_SET)
            left = piece.length
            while left:
                chunk = guarded.read(min(left, self.settings.upload_chunk_bytes))
                if not chunk:
                    raise MalformedUpload(N_("The upload was interrupted before it finished."))
                left -= len(chunk)
                check.feed(chunk)
                _write_all(fd, chunk)
            if piece.last:
                check.finish()
            os.fsync(fd)
        finally:
            os.close(fd)

    def _save(self, owner: UploadOwner, token: str, state: UploadState) -> None:
        with self.sessions.begin() as db:
            saved = db.execute(update(Upload).where(Upload.token == token,
                                                    Upload.session_key == owner.session_key)
                               .values(state=state.to_json(), held_bytes=state.held_bytes,
                                       idle_until=self._idle_until())
                               .execution_options(synchronize_session=False))
            if not rows_matched(saved):
                raise UploadGone()  # the session ended while this piece arrived

    def _end(self, claim: StoreClaim) -> None:
        """Remove the upload of ``claim`` (held by this request) and let the claim go."""
        self._forget(claim.token)
        _discard_files(self.store, claim.token)
        claim.release()

    def _forget(self, token: str) -> None:
        with self.sessions.begin() as db:
            db.execute(delete(Upload).where(Upload.token == token))

    def _pending_bytes(self, db: Session, source_id: int) -> int:
        """Bytes of every unfinished upload of the source: they count against its day's
        quota before they are committed, or many sessions could hold more than it."""
        return db.scalar(select(func.coalesce(func.sum(Upload.held_bytes), 0))
                         .where(Upload.source_id == source_id)) or 0

    def _idle_until(self) -> dt.datetime:
        return clock.coarse(self.now() + dt.timedelta(minutes=self.settings.upload_idle_minutes))


def _aware(moment: dt.datetime) -> dt.datetime:
    """SQLite gives back naive datetimes; they were stored as UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _cut_back(temp: Path, held: int) -> None:
    """Undo a piece that failed: the item's file goes back to the bytes the row records
    (none: the file goes). What it fails to do, the next piece's truncate does."""
    with contextlib.suppress(OSError):
        if held:
            os.truncate(temp, held)
        else:
            temp.unlink(missing_ok=True)


def _discard_files(store: CiphertextStore, token: str) -> None:
    for temp in store.tmp.glob(f"{token}-*.part"):
        with contextlib.suppress(OSError):
            store.discard(temp)
