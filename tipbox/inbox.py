"""What journalists see and do: the inbox, a source's items and replies, read state,
stars, deletion and the entries of export bundles; and the retention policy that deletes
sources gone quiet. No Flask here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, delete, exists, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from tipbox.bundles import BundleEntry
from tipbox.db import forget_deleted
from tipbox.models import Item, ItemRead, Reply, Source
from tipbox.storage import CiphertextStore

PAGE_SIZE = 50


def pruned_on(last_submission: dt.date, last_reply: dt.date | None, days: int) -> dt.date:
    """The day `tipbox prune` with a retention of ``days`` first deletes a source (if
    someone has read all its items by then): the day its cutoff passes the later of its
    last submission and its last reply."""
    return max(last_submission, last_reply or last_submission) + dt.timedelta(days=days + 1)


@dataclass(frozen=True)
class InboxRow:
    id: int
    designation: str
    starred: bool
    last_activity_on: dt.date
    items: int
    unread: int
    replies: int
    last_reply_on: dt.date | None = None

    def pruned_on(self, days: int) -> dt.date:
        return pruned_on(self.last_activity_on, self.last_reply_on, days)


@dataclass(frozen=True)
class InboxPage:
    rows: list[InboxRow]
    page: int
    pages: int
    total: int


@dataclass(frozen=True)
class ItemView:
    id: str
    seq: int  # the NN- that tipbox-open puts before the item's file name
    kind: str
    size: int
    day: dt.date
    fingerprints: tuple[str, ...]
    read: bool

    @property
    def short_fingerprints(self) -> list[str]:
        return [f[-16:] for f in self.fingerprints]


@dataclass(frozen=True)
class ReplyView:
    id: str
    size: int
    day: dt.date
    journalist_id: int | None
    read_by_source: bool
    deleted_by_source: bool


@dataclass(frozen=True)
class SourceView:
    id: int
    designation: str
    starred: bool
    created_on: dt.date
    last_activity_on: dt.date
    items: list[ItemView]
    replies: list[ReplyView]
    can_receive_replies: bool

    def pruned_on(self, days: int) -> dt.date:
        return pruned_on(self.last_activity_on,
                         max((r.day for r in self.replies), default=None), days)


@dataclass(frozen=True)
class Pruning:
    """What a retention run finds: sources with no submission and no reply since before
    ``cutoff``."""

    cutoff: dt.date
    source_ids: list[int]  # to delete
    items: int
    replies: int
    # Past the cutoff too, but kept: some item of theirs no journalist has read yet.
    kept_unread: int


@dataclass(frozen=True)
class InboxService:
    sessions: sessionmaker[Session]
    store: CiphertextStore

    # --- reading -------------------------------------------------------------------

    def inbox(self, journalist_id: int, page: int = 1, *, starred_first: bool = False,
              page_size: int = PAGE_SIZE) -> InboxPage:
        """Sources that sent something, latest activity first, one page at a time.

        The page of sources is chosen first, then counted: counting every source's items
        on each view would not stay fast at 100,000 items.
        """
        has_items = exists().where(Item.source_id == Source.id)
        order: list[ColumnElement[Any]] = [Source.last_activity_on.desc(), Source.id.desc()]
        if starred_first:
            order.insert(0, Source.starred.desc())
        with self.sessions() as db:
            total = db.scalar(select(func.count(Source.id)).where(has_items)) or 0
            pages = max(1, -(-total // page_size))
            page = min(max(1, page), pages)
            sources = db.execute(
                select(Source.id, Source.designation, Source.starred, Source.last_activity_on)
                .where(has_items).order_by(*order)
                .limit(page_size).offset((page - 1) * page_size)
            ).all()
            ids = [s.id for s in sources]
            counts = self._counts(db, journalist_id, ids)
            replies = {sid: (count, last) for sid, count, last in db.execute(
                select(Reply.source_id, func.count(Reply.id), func.max(Reply.sent_on))
                .where(Reply.source_id.in_(ids)).group_by(Reply.source_id)).all()}
        rows = [InboxRow(s.id, s.designation, s.starred, s.last_activity_on,
                         counts.get(s.id, (0, 0))[0], counts.get(s.id, (0, 0))[1],
                         *replies.get(s.id, (0, None))) for s in sources]
        return InboxPage(rows, page, pages, total)

    @staticmethod
    def _counts(db: Session, journalist_id: int, ids: Sequence[int]) -> dict[int, tuple[int, int]]:
        if not ids:
            return {}
        result = db.execute(
            select(Item.source_id, func.count(Item.id), func.count(ItemRead.item_id))
            .outerjoin(ItemRead, (ItemRead.item_id == Item.id)
                       & (ItemRead.journalist_id == journalist_id))
            .where(Item.source_id.in_(ids)).group_by(Item.source_id)
        ).all()
        return {sid: (total, total - read) for sid, total, read in result}

    def source(self, journalist_id: int, source_id: int) -> SourceView | None:
        with self.sessions() as db:
            src = db.get(Source, source_id)
            if src is None:
                return None
            read = set(db.scalars(select(ItemRead.item_id).join(Item)
                                  .where(Item.source_id == source_id,
                                         ItemRead.journalist_id == journalist_id)).all())
            items = [ItemView(i.id, i.seq, i.kind.value, i.size, i.submitted_on,
                              tuple(i.fingerprints), i.id in read) for i in src.items]
            replies = [ReplyView(r.id, r.size, r.sent_on, r.journalist_id, r.read_by_source,
                                 r.deleted_by_source) for r in src.replies]
            return SourceView(src.id, src.designation, src.starred, src.created_on,
                              src.last_activity_on, items, replies,
                              src.reply_public_key is not None)

    def bundle_entries(self, journalist_id: int, *, source_ids: Sequence[int] = (),
                       item_ids: Sequence[str] = (), unread_only: bool = False,
                       include_replies: bool = True) -> list[BundleEntry]:
        """What an export of these sources (or items) contains, in a stable order."""
        with self.sessions() as db:
            query = select(Item, Source.designation).join(Source)
            if source_ids:
                query = query.where(Item.source_id.in_(source_ids))
            if item_ids:
                query = query.where(Item.id.in_(item_ids))
            if unread_only:
                query = query.where(~exists().where((ItemRead.item_id == Item.id)
                                                    & (ItemRead.journalist_id == journalist_id)))
            entries = [BundleEntry(i.id, self.store.path_for(i.id), name, i.kind.value, i.seq,
                                   i.submitted_on, tuple(i.fingerprints))
                       for i, name in db.execute(query.order_by(Item.source_id, Item.seq))]
            if include_replies and source_ids and not item_ids:
                replies = db.execute(select(Reply, Source.designation).join(Source)
                                     .where(Reply.source_id.in_(source_ids))
                                     .order_by(Reply.source_id, Reply.seq))
                entries += [BundleEntry(r.id, self.store.path_for(r.id), name, "reply", r.seq,
                                        r.sent_on, tuple(r.fingerprints)) for r, name in replies]
        return entries

    def item_entry(self, item_id: str) -> BundleEntry | None:
        entries = self.bundle_entries(0, item_ids=[item_id])
        return entries[0] if entries else None

    # --- changing ------------------------------------------------------------------

    def mark_read(self, journalist_id: int, item_ids: Sequence[str], read: bool = True) -> None:
        with self.sessions.begin() as db:
            existing = set(db.scalars(select(ItemRead.item_id).where(
                ItemRead.journalist_id == journalist_id, ItemRead.item_id.in_(item_ids))).all())
            if read:
                valid = set(db.scalars(select(Item.id).where(Item.id.in_(item_ids))).all())
                db.add_all(ItemRead(item_id=i, journalist_id=journalist_id)
                           for i in valid - existing)
            else:
                db.execute(delete(ItemRead).where(ItemRead.journalist_id == journalist_id,
                                                  ItemRead.item_id.in_(item_ids)))

    def mark_source_read(self, journalist_id: int, source_id: int, read: bool = True) -> None:
        with self.sessions() as db:
            ids = list(db.scalars(select(Item.id).where(Item.source_id == source_id)).all())
        self.mark_read(journalist_id, ids, read)

    def set_star(self, source_id: int, starred: bool) -> None:
        with self.sessions.begin() as db:
            src = db.get(Source, source_id)
            if src is not None:
                src.starred = starred

    def delete_items(self, source_id: int, item_ids: Sequence[str]) -> int:
        """Remove items' rows and ciphertext files. Rows go first: a file whose row is
        gone is unreachable, while a row whose file is gone would break exports."""
        with self.sessions.begin() as db:
            rows = db.scalars(select(Item).where(Item.source_id == source_id,
                                                 Item.id.in_(item_ids))).all()
            doomed = [r.id for r in rows]
            for row in rows:
                db.delete(row)
            forget_deleted(db)
        for item_id in doomed:
            self.store.delete(item_id)
        return len(doomed)

    def pruning(self, cutoff: dt.date, *, include_unread: bool = False) -> Pruning:
        """The sources a retention policy would delete: last submission and last reply
        both before ``cutoff``. A source with an item that no journalist has read is kept
        unless ``include_unread``: a tip nobody has looked at is never deleted unseen."""
        quiet = select(Source.id).where(*_quiet_since(cutoff))
        with self.sessions() as db:
            stale = set(db.scalars(quiet))
            unread = set(db.scalars(select(Source.id).where(
                Source.id.in_(stale), _has_unread_item())))
            doomed = sorted(stale if include_unread else stale - unread)
            items = db.scalar(select(func.count()).select_from(Item)
                              .where(Item.source_id.in_(doomed))) or 0
            replies = db.scalar(select(func.count()).select_from(Reply)
                                .where(Reply.source_id.in_(doomed))) or 0
        return Pruning(cutoff, doomed, items, replies,
                       0 if include_unread else len(unread))

    def delete_sources(self, source_ids: Sequence[int], *,
                       quiet_since: dt.date | None = None, keep_unread: bool = False) -> int:
        """Delete sources with every item and reply they have. With ``quiet_since``, only
        those still quiet since before that day when the deletion runs (see ``pruning``):
        a source that submitted meanwhile is kept, with what it sent. With
        ``keep_unread``, only those whose every item someone has read by then."""
        with self.sessions.begin() as db:
            # A write first, so that no submission can land while the rest reads and
            # deletes: it takes the write lock on SQLite and locks these rows on
            # PostgreSQL (a new item's foreign key waits for them). Otherwise a file
            # committed meanwhile could lose its row but stay on disk, or a source just
            # heard from could be pruned with its new tip.
            db.execute(update(Source).where(Source.id.in_(source_ids))
                       .values(starred=Source.starred)
                       .execution_options(synchronize_session=False))
            wanted = select(Source.id).where(Source.id.in_(source_ids))
            if quiet_since is not None:
                wanted = wanted.where(*_quiet_since(quiet_since))
            if keep_unread:
                wanted = wanted.where(~_has_unread_item())
            found = list(db.scalars(wanted))
            item_ids = list(db.scalars(select(Item.id).where(Item.source_id.in_(found))))
            reply_ids = list(db.scalars(select(Reply.id).where(Reply.source_id.in_(found))))
            db.execute(delete(ItemRead).where(ItemRead.item_id.in_(item_ids)))
            db.execute(delete(Item).where(Item.source_id.in_(found)))
            db.execute(delete(Reply).where(Reply.source_id.in_(found)))
            db.execute(delete(Source).where(Source.id.in_(found)))
            forget_deleted(db)
        for file_id in item_ids + reply_ids:
            self.store.delete(file_id)
        return len(found)


def _quiet_since(cutoff: dt.date) -> tuple[ColumnElement[bool], ...]:
    """A source whose last submission and last reply are both before ``cutoff``."""
    recent_reply = exists().where(Reply.source_id == Source.id, Reply.sent_on >= cutoff)
    return Source.last_activity_on < cutoff, ~recent_reply


def _has_unread_item() -> ColumnElement[bool]:
    """A source with an item that no journalist has read (downloaded or marked read)."""
    return exists().where(Item.source_id == Source.id,
                          ~exists().where(ItemRead.item_id == Item.id))
