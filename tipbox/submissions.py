"""Receiving a submission: encrypt each message and file as it arrives, keep all or nothing.

A :class:`Draft` collects ciphertext in the store's temp folder while the body streams
in. Only :meth:`Draft.commit` makes anything permanent: it renames every file into place
and writes every row in one transaction. Leaving the ``with`` block any other way removes
every trace of the attempt, so a cut-off upload never keeps half a submission.
"""

from __future__ import annotations

import datetime as dt
import os
import unicodedata
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.exc import StaleDataError

from tipbox.clock import today
from tipbox.crypto.gpg import GnuPG, Readable
from tipbox.crypto.message_check import EncryptedMessageCheck, MessageRefused, Refusal
from tipbox.errors import SubmissionRejected, UploadTooLarge
from tipbox.models import Item, ItemKind, Source
from tipbox.storage import CiphertextStore, early_writeback, new_item_id

# OpenPGP literal data packets hold at most 255 bytes of file name.
MAX_FILENAME_BYTES = 255
PROBE_BYTES = 64 * 1024
ENCRYPTED_CHUNK_BYTES = 1024 * 1024

# What the source reads when an item their browser encrypted is refused. Each one names
# the fault without quoting anything from the upload.
_REFUSALS = {
    Refusal.NOT_ENCRYPTED:
        "An item that your browser should have encrypted arrived unencrypted or was not an "
        "OpenPGP message, so nothing from this submission was kept. Reload the page and "
        "send it again.",
    Refusal.UNKNOWN_RECIPIENT:
        "An item was encrypted to a key that is not the newsroom's, so nothing from this "
        "submission was kept. Reload the page and send it again.",
    Refusal.MISSING_RECIPIENT:
        "An item was not encrypted to every newsroom key, so nothing from this submission "
        "was kept. Reload the page and send it again.",
    Refusal.UNSUPPORTED:
        "An item was encrypted in a form of OpenPGP that this site does not accept, so "
        "nothing from this submission was kept. Send it without in-browser encryption.",
    Refusal.MALFORMED:
        "An encrypted item was damaged, so nothing from this submission was kept. Reload "
        "the page and send it again.",
    Refusal.TRUNCATED:
        "An encrypted item was cut off before its end, so nothing from this submission was "
        "kept. Reload the page and send it again.",
    Refusal.TRAILING_DATA:
        "An encrypted item had extra data after its end, so nothing from this submission "
        "was kept. Reload the page and send it again.",
}


@dataclass
class _Pending:
    temp: Path
    kind: ItemKind
    size: int


@dataclass(frozen=True)
class Receipt:
    messages: int
    files: int
    skipped_empty_files: int


@dataclass
class Draft:
    """Ciphertext in progress for one submission. Use as a context manager."""

    gpg: GnuPG
    recipients: tuple[str, ...]
    store: CiphertextStore
    sessions: sessionmaker[Session]
    max_files: int
    clock: Callable[[], dt.date] = today
    # Fingerprint -> encryption key ids, for items the browser encrypted (add_encrypted).
    encryption_key_ids: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    pending: list[_Pending] = field(default_factory=list)
    skipped_empty_files: int = 0
    _committed: bool = False

    def __enter__(self) -> Draft:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._committed:
            self.discard()

    @property
    def file_count(self) -> int:
        return sum(1 for p in self.pending if p.kind is ItemKind.FILE)

    def add_message(self, text: str) -> None:
        temp = self.store.temp_path()
        self.pending.append(_Pending(temp, ItemKind.MESSAGE, 0))
        self.gpg.encrypt_bytes(text.encode("utf-8"), self.recipients, temp)
        self.pending[-1].size = temp.stat().st_size

    def add_file(self, data: Readable, raw_filename: str) -> bool:
        """Encrypt one file as it streams in. Returns False for an empty file, which is
        skipped (counted, not stored): it carries nothing but a name."""
        first = data.read(PROBE_BYTES)
        if not first:
            self.skipped_empty_files += 1
            return False
        self._check_file_count()
        temp = self.store.temp_path()
        self.pending.append(_Pending(temp, ItemKind.FILE, 0))
        self.gpg.encrypt_stream(
            _Prefixed(first, data), self.recipients, temp,
            filename=safe_filename(raw_filename, self.file_count),
            compress=worth_compressing(first),
        )
        self.pending[-1].size = temp.stat().st_size
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
        check = EncryptedMessageCheck(self.encryption_key_ids)
        temp = self.store.temp_path()
        self.pending.append(_Pending(temp, kind, 0))
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out, early_writeback(temp):
            while chunk := data.read(ENCRYPTED_CHUNK_BYTES):
                if max_bytes is not None and check.bytes_seen + len(chunk) > max_bytes:
                    raise SubmissionRejected(
                        "The encrypted message is larger than a message of the longest "
                        "allowed length, so nothing was kept. Shorten it, or put the text in "
                        "a file and attach it.")
                _checked(check.feed, chunk)
                out.write(chunk)
            _checked(check.finish)
        self.pending[-1].size = check.bytes_seen

    def _check_file_count(self) -> None:
        if self.file_count >= self.max_files:
            raise UploadTooLarge(
                "This submission has more files than the %(limit)s allowed at once. "
                "Nothing from it was kept: send the files in several submissions.",
                params={"limit": self.max_files},
            )

    def commit(self, source_id: int) -> Receipt:
        """Make every item permanent at once: files renamed into place, rows written."""
        if not self.pending:
            raise SubmissionRejected(
                "There was nothing to send: write a message or choose at least one "
                "non-empty file, then press Submit again.")
        day = self.clock()
        finals: list[Path] = []
        try:
            with self.sessions.begin() as db:
                source = db.get(Source, source_id)
                if source is None:
                    raise _source_gone()
                seq = db.scalar(select(func.coalesce(func.max(Item.seq), 0))
                                .where(Item.source_id == source_id)) or 0
                fprs = " ".join(self.recipients)
                for offset, item in enumerate(self.pending, start=1):
                    item_id = new_item_id()
                    finals.append(self.store.commit(item.temp, item_id, day))
                    db.add(Item(id=item_id, source_id=source_id, seq=seq + offset,
                                kind=item.kind, size=item.size, key_fingerprints=fprs,
                                submitted_on=day))
                source.last_activity_on = day
        except BaseException as exc:
            for path in finals:
                self.store.discard(path)
            if isinstance(exc, StaleDataError | IntegrityError):
                # The source was deleted while this committed (by a journalist, or prune).
                raise _source_gone() from None
            raise
        self._committed = True
        messages = sum(1 for p in self.pending if p.kind is ItemKind.MESSAGE)
        return Receipt(messages=messages, files=len(self.pending) - messages,
                       skipped_empty_files=self.skipped_empty_files)

    def discard(self) -> None:
        for item in self.pending:
            self.store.discard(item.temp)
        self.pending.clear()


def _source_gone() -> SubmissionRejected:
    return SubmissionRejected("Your session ended. Log in with your codename and submit "
                              "again.")


def _checked(step: Callable[..., None], *args: bytes) -> None:
    try:
        step(*args)
    except MessageRefused as exc:
        raise SubmissionRejected(_REFUSALS[exc.reason]) from None


class _Prefixed:
    """A stream that first yields bytes already read from another stream."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        self._head: bytes | None = head
        self._rest = rest

    def read(self, size: int = -1, /) -> bytes:
        if self._head is not None:
            head, self._head = self._head, None
            return head
        return self._rest.read(size)


def worth_compressing(sample: bytes) -> bool:
    """True when a fast zlib pass shrinks the first bytes by more than 10%.

    Most leaked documents (PDF, JPEG, DOCX, ZIP, video) are compressed already;
    compressing them again costs several times the CPU of encryption for nothing.
    """
    if len(sample) < 512:
        return False
    return len(zlib.compress(sample, 1)) < 0.9 * len(sample)


def safe_filename(raw: str, index: int) -> str:
    """The name that travels inside the ciphertext.

    Directory parts are dropped (old browsers sent full paths, which can name the
    source's account), so are control, format and bidi-override characters; the result
    fits OpenPGP's 255-byte limit with its extension kept.
    """
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name
                   if unicodedata.category(ch)[0] != "C" and ch not in "\u2028\u2029")
    name = name.strip().strip(".").strip()
    if not name:
        return f"file-{index}"
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        stem, dot, ext = name.rpartition(".")
        ext = (dot + ext) if dot and 0 < len(ext.encode()) <= 16 else ""
        stem = stem if ext else name
        budget = MAX_FILENAME_BYTES - len(ext.encode())
        stem = stem.encode("utf-8")[:budget].decode("utf-8", "ignore")
        name = stem + ext
    return name
