"""Finding and removing what crashes leave in the store, by ownership, never by age.

Three kinds of leftover (see :mod:`tipbox.store_claims` for the claims and journals):

- a **dead claim**: a lock file whose ``flock`` can be taken, so its writer died. Its
  journal, if any, is settled against the database; its temp files are removed.
- an **unowned temp file**: a ``.part`` with no lock file at all (an older version's, or
  one whose claim was already swept). A live writer makes its lock file before any of
  its temp files and removes it only after them, so such a file has no writer.
- an **orphan**: a store file with no row and not named by a live writer's journal.
  Not when the database names none of the store's files and either has items of its
  own or has never had a journalist: that is not this store's database (a wrong or
  fresh ``TIPBOX_DATABASE_URL``), and its "orphans" would be every submission the
  newsroom has. Then nothing is removed from the store, the service logs why and
  ``tipbox doctor`` reports it.

An upload sent in pieces (:mod:`tipbox.intake.pieces`) is *parked* between its requests:
its lock file stays but no process holds it. Its claim counts as dead only once its row in
``uploads`` says so: its session has ended (logged out, expired, replaced by a new log-in)
or no piece came for TIPBOX_UPLOAD_IDLE_MINUTES. Such rows are deleted by the sweep too.

The running service sweeps when a worker starts and every :data:`SWEEP_INTERVAL_SECONDS`
(:class:`Sweeper`); ``tipbox init`` sweeps too; ``tipbox doctor`` surveys and reports.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.elements import ColumnElement

from tipbox import clock
from tipbox.models import Item, Journalist, Reply, Upload, WebSession
from tipbox.storage import SUFFIX, CiphertextStore, is_item_id
from tipbox.store_claims import (
    JOURNAL_SUFFIX,
    LOCK_SUFFIX,
    TEMP_NAME_RE,
    Move,
    committed_ids,
    read_journal,
    settle,
)

log = logging.getLogger(__name__)

SWEEP_INTERVAL_SECONDS = 600.0


@dataclass(frozen=True)
class Leftovers:
    """What a sweep found (and, unless it only looked, removed)."""

    dead_claims: int = 0
    temp_files: int = 0  # .part files of dead or missing writers
    orphans: int = 0  # store files with no row
    # Store files left alone because the database names none of the store's files.
    unnamed_store: int = 0

    @property
    def found(self) -> bool:
        return bool(self.dead_claims or self.temp_files or self.orphans)


def survey(store: CiphertextStore, sessions: sessionmaker[Session],
           now: dt.datetime | None = None) -> Leftovers:
    """Count the leftovers; change nothing."""
    return _scan(store, sessions, remove=False, now=now or clock.now())


def sweep(store: CiphertextStore, sessions: sessionmaker[Session],
          now: dt.datetime | None = None) -> Leftovers:
    """Settle dead claims' journals and remove every leftover; a live upload is untouched."""
    return _scan(store, sessions, remove=True, now=now or clock.now())


def _dead_upload(now: dt.datetime) -> ColumnElement[bool]:
    """An upload in pieces whose session ended or expired, or that waited too long."""
    session_lives = exists().where(WebSession.id_hash == Upload.session_key,
                                   WebSession.expires_at > now)
    return or_(Upload.idle_until <= now, ~session_lives)


def _parked_upload_lives(sessions: sessionmaker[Session], token: str,
                         now: dt.datetime) -> bool:
    """Asked while holding the upload's lock, so no request can be changing its row."""
    with sessions() as db:
        return db.scalar(select(Upload.token).where(Upload.token == token,
                                                    ~_dead_upload(now))) is not None


def _scan(store: CiphertextStore, sessions: sessionmaker[Session], *,
          remove: bool, now: dt.datetime) -> Leftovers:
    # The order matters. Store files are listed first: a live writer journals a file
    # before renaming it in, so one listed here is named by a journal read below, or its
    # row is found by the query after that, or it is an orphan.
    in_store = {p.name[:-len(SUFFIX)] for p in store.root.glob(f"*{SUFFIX}")
                if is_item_id(p.name[:-len(SUFFIX)])}
    temps = [p for p in store.tmp.iterdir() if not p.name.endswith(LOCK_SUFFIX)]
    live_ids: set[str] = set()
    dead = temp_count = orphans = 0
    if remove:
        with sessions.begin() as db:
            db.execute(delete(Upload).where(_dead_upload(now))
                       .execution_options(synchronize_session=False))
    for lock in store.tmp.glob(f"*{LOCK_SUFFIX}"):
        token = lock.name[:-len(LOCK_SUFFIX)]
        fd = _take_if_dead(lock)
        if fd is None:
            journal = store.tmp / f"{token}{JOURNAL_SUFFIX}"
            if journal.exists():
                live_ids.update(m.item_id for m in _moves_or_none(journal))
            continue
        try:
            if _parked_upload_lives(sessions, token, now):
                continue  # an upload in pieces, waiting for its next piece
            dead += 1
            temp_count += _clear_dead_claim(store, sessions, token, remove=remove)
            if remove:
                lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
    for temp in temps:
        match = TEMP_NAME_RE.fullmatch(temp.name)
        owner = match[1] if match else temp.name.split(".", 1)[0]
        if not (store.tmp / f"{owner}{LOCK_SUFFIX}").exists() and temp.exists():
            temp_count += temp.name.endswith(".part")
            if remove:
                store.discard(temp)
    with sessions() as db:
        rows = set(db.scalars(select(Item.id))) | set(db.scalars(select(Reply.id)))
    unnamed = sorted(in_store - live_ids - rows)
    if unnamed and not in_store & (rows | live_ids) and _not_this_stores(sessions, rows):
        # None of these is a crash's leftover to remove.
        return Leftovers(dead, temp_count, 0, unnamed_store=len(unnamed))
    for item_id in unnamed:
        orphans += 1
        if remove:
            store.discard(store.path_for(item_id))
    if remove and orphans:
        store.sync()
    return Leftovers(dead, temp_count, orphans)


def _not_this_stores(sessions: sessionmaker[Session], rows: set[str]) -> bool:
    """Is a database that names none of the store's files some other store's (it has
    items of its own) or a fresh one (no journalist has ever had an account)? Only the
    instance's own database, its last source deleted by a deletion cut short, may remove
    such files."""
    if rows:
        return True
    with sessions() as db:
        return not db.scalar(select(func.count()).select_from(Journalist))


def _take_if_dead(lock: Path) -> int | None:
    """An fd holding ``lock`` if its writer is gone (and the file is still that lock)."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino == os.stat(lock).st_ino:
            return fd
    except (BlockingIOError, FileNotFoundError):
        pass
    os.close(fd)
    return None


def _clear_dead_claim(store: CiphertextStore, sessions: sessionmaker[Session], token: str, *,
                      remove: bool) -> int:
    """Settle a dead claim's journal and remove its temp files; how many there were."""
    journal = store.tmp / f"{token}{JOURNAL_SUFFIX}"
    if remove and journal.exists():
        moves = _moves_or_none(journal)
        settle(store, moves, committed_ids(sessions, [m.item_id for m in moves]))
        journal.unlink()
    temps = list(store.tmp.glob(f"{token}-*.part"))
    if remove:
        for temp in temps:
            store.discard(temp)
        (store.tmp / f"{token}.new").unlink(missing_ok=True)
    return len(temps)


def _moves_or_none(journal: Path) -> list[Move]:
    try:
        return read_journal(journal)
    except (OSError, ValueError) as exc:
        # A journal is written whole and renamed into place; one that cannot be read
        # names nothing this sweep may keep or remove.
        log.warning("unreadable store journal %s (%s)", journal.name, type(exc).__name__)
        return []


class Sweeper:
    """Sweeps at once, then every ``interval`` seconds, in a daemon thread."""

    def __init__(self, store: CiphertextStore, sessions: sessionmaker[Session],
                 interval: float = SWEEP_INTERVAL_SECONDS) -> None:
        self.store = store
        self.sessions = sessions
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.run_once()
            if self._stop.wait(self.interval):
                return

    def run_once(self) -> Leftovers | None:
        try:
            removed = sweep(self.store, self.sessions)
        except Exception as exc:  # a database that is down now may be back next time
            log.warning("could not sweep the store's leftovers (%s); trying again later",
                        type(exc).__name__)
            return None
        if removed.unnamed_store:
            log.error("the store holds %d file(s) and the database names none of them, so "
                      "none was removed: check that TIPBOX_DATABASE_URL is this instance's "
                      "database (tipbox doctor)", removed.unnamed_store)
        if removed.found:
            log.info("removed what crashes left in the store: %d unfinished upload(s) or "
                     "reply(ies), %d temp file(s), %d file(s) without a row",
                     removed.dead_claims, removed.temp_files, removed.orphans)
        return removed
