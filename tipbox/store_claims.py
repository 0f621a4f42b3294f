"""Who owns a write in progress in the store's temp folder, and what its commit intends.

Every writer (a :class:`~tipbox.intake.draft.Draft`, a reply) first takes a claim: a lock
file ``<token>.lock`` in the temp folder, held with ``flock`` for as long as the writer
lives. Its temp files are named ``<token>-<random>.part``, so anyone can tell whose they
are. The kernel drops an ``flock`` with the process that held it, so a claim whose lock
can be taken belongs to a writer that died, and its files are leftovers
(:mod:`tipbox.store_sweep`); age never decides.

Before renaming any temp file into the store the writer writes and fsyncs the claim's
journal, ``<token>.journal``: each temp name and the id it becomes. The rows are committed
after the renames. So after any crash an id in a journal is kept if its row exists (its
temp file moved in, should the rename not have happened) and removed otherwise
(:func:`settle`), and no file can be in the store without a row or a journal naming it.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import secrets
import threading
import weakref
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tipbox.durable import fsync_folder
from tipbox.models import Item, Reply
from tipbox.storage import CiphertextStore

log = logging.getLogger(__name__)

TOKEN_RE = re.compile(r"^[0-9a-f]{32}$")
TEMP_NAME_RE = re.compile(r"^([0-9a-f]{32})-[0-9a-f]{16}\.part$")
LOCK_SUFFIX = ".lock"
JOURNAL_SUFFIX = ".journal"


@dataclass(frozen=True)
class Move:
    """One intended rename: a temp file of the claim to the store file of ``item_id``."""

    temp_name: str
    item_id: str


# The claims this process holds, by token. An flock belongs to an open file, so a second
# open of the same lock file in this process would wait for the first for ever; a draft
# reloaded in the process that kept it must share the claim instead (StoreClaim.resume).
_held: weakref.WeakValueDictionary[str, StoreClaim] = weakref.WeakValueDictionary()
_held_lock = threading.Lock()


class StoreClaim:
    """An ``flock`` on ``<token>.lock``: the temp files ``<token>-*.part`` are in use."""

    def __init__(self, store: CiphertextStore, token: str | None = None) -> None:
        if token is not None and not TOKEN_RE.fullmatch(token):
            raise ValueError("not a claim token")
        self.store = store
        self.token = token or secrets.token_hex(16)
        self._fd: int | None = _lock_owned(store.tmp / f"{self.token}{LOCK_SUFFIX}")
        with _held_lock:
            _held[self.token] = self

    @classmethod
    def resume(cls, store: CiphertextStore, token: str) -> StoreClaim:
        """The claim on ``token``: this process's own if it holds it, else taken anew."""
        with _held_lock:
            held = _held.get(token)
        if held is not None and held._fd is not None:
            return held
        return cls(store, token)

    @classmethod
    def take_parked(cls, store: CiphertextStore, token: str) -> StoreClaim | None:
        """The claim on a parked upload's token (:meth:`park`), taken without waiting:
        None while another request holds it. Raises FileNotFoundError if its lock file is
        gone (the upload was swept or ended), rather than making a new one."""
        if not TOKEN_RE.fullmatch(token):
            raise ValueError("not a claim token")
        path = store.tmp / f"{token}{LOCK_SUFFIX}"
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.fstat(fd).st_ino != os.stat(path).st_ino:
                raise FileNotFoundError(path.name)  # swept between our open and our lock
        except BaseException:
            os.close(fd)
            raise
        claim = cls.__new__(cls)
        claim.store, claim.token, claim._fd = store, token, fd
        with _held_lock:
            _held[token] = claim
        return claim

    def park(self) -> None:
        """Let go of the lock but keep the lock file: an upload sent in pieces waits for
        its next piece with no process holding it, and the sweeper then asks the database
        whether it still lives (tipbox.store_sweep) instead of taking it for dead."""
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        with _held_lock:
            if _held.get(self.token) is self:
                del _held[self.token]

    @property
    def journal_path(self) -> Path:
        return self.store.tmp / f"{self.token}{JOURNAL_SUFFIX}"

    def temp_path(self) -> Path:
        """A fresh temp file name that the sweeper knows to belong to this claim."""
        return self.store.tmp / f"{self.token}-{secrets.token_hex(8)}.part"

    def owns(self, temp_name: str) -> bool:
        match = TEMP_NAME_RE.fullmatch(temp_name)
        return match is not None and match[1] == self.token

    def write_journal(self, moves: Sequence[Move]) -> None:
        """Record the renames about to happen, durably, before any of them happens."""
        write_journal(self.store, self.journal_path, moves)

    def clear_journal(self) -> None:
        # No fsync: a journal that comes back after a crash names ids whose rows exist,
        # and settling it keeps them.
        self.journal_path.unlink(missing_ok=True)

    def release(self) -> None:
        """Let go of the claim. Its lock file goes too unless a journal is still waiting
        to be settled (the sweeper finds that by the lock file)."""
        if self._fd is None:
            return
        if not self.journal_path.exists():
            (self.store.tmp / f"{self.token}{LOCK_SUFFIX}").unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None
        with _held_lock:
            if _held.get(self.token) is self:
                del _held[self.token]


def _lock_owned(path: Path) -> int:
    """Create (or open) ``path`` and hold an exclusive flock on it.

    A sweeper may have taken and removed the same file between our open and our lock;
    then the lock we got is on a file no longer there, and we start again."""
    for _attempt in range(100):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise RuntimeError(f"could not take the lock {path.name}")


def write_journal(store: CiphertextStore, path: Path, moves: Sequence[Move]) -> None:
    """Write ``moves`` to ``path`` atomically and durably: a reader sees all or none."""
    data = json.dumps([[m.temp_name, m.item_id] for m in moves]).encode()
    temp = path.with_suffix(".new")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(temp, path)
    fsync_folder(store.tmp)


def read_journal(path: Path) -> list[Move]:
    """The moves of a journal; a name that is not one of the store's is refused."""
    moves = [Move(str(temp), str(item_id)) for temp, item_id in json.loads(path.read_bytes())]
    for move in moves:
        if not TEMP_NAME_RE.fullmatch(move.temp_name):
            raise ValueError(f"journal {path.name} names a file outside the temp folder")
    return moves


def committed_ids(sessions: sessionmaker[Session], ids: Collection[str]) -> set[str]:
    """Which of ``ids`` have a row (an item or a reply)."""
    wanted = list(ids)
    found: set[str] = set()
    with sessions() as db:
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            found.update(db.scalars(select(Item.id).where(Item.id.in_(chunk))))
            found.update(db.scalars(select(Reply.id).where(Reply.id.in_(chunk))))
    return found


def settle(store: CiphertextStore, moves: Sequence[Move], kept: Collection[str]) -> int:
    """Finish a journal's renames for the ids in ``kept`` (those with a row) and undo the
    others. Returns how many files were removed."""
    removed = 0
    for move in moves:
        temp = store.tmp / move.temp_name
        final = store.path_for(move.item_id)
        if move.item_id in kept:
            if not final.exists() and temp.exists():
                store.place(temp, move.item_id)
        else:
            for path in (final, temp):
                if path.exists():
                    store.discard(path)
                    removed += 1
    store.sync()
    return removed


@contextmanager
def journalled(claim: StoreClaim, moves: Sequence[Move],
               sessions: sessionmaker[Session]) -> Iterator[None]:
    """Journal ``moves``, then let the caller rename and commit the rows; if anything
    fails, settle at once by asking the database what was committed.

    If the database cannot say (it is the reason for the failure, say), the journal stays
    and the claim's lock file with it, for the sweeper to settle later."""
    claim.write_journal(moves)
    try:
        yield
    except BaseException:
        if not any(claim.store.path_for(m.item_id).exists() for m in moves):
            # Nothing was renamed, so no row can have been committed (they come after).
            claim.clear_journal()
            raise
        try:
            settle(claim.store, moves, committed_ids(sessions, [m.item_id for m in moves]))
            claim.clear_journal()
        except Exception as exc:  # the failure being answered matters more than this one
            log.warning("a commit that failed is left for the sweeper to settle (%s)",
                        type(exc).__name__)
        raise
    claim.clear_journal()
