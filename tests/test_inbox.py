"""The newsroom domain: inbox order and paging, per-journalist unread, stars, deletion,
bundles and replies, without HTTP."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import tarfile
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FAST_SCRYPT
from tests.helpers import Newsroom, gpg_decrypt
from tests.newsroom_fixtures import add_journalist, store_ids, submit
from tipbox.bundles import new_bundle, read_manifest, stream_bundle
from tipbox.codenames import CodenameHasher, generate_codename
from tipbox.config import Settings
from tipbox.crypto.keyring import Keyring, load_keyring
from tipbox.crypto.reply_keys import ReplyKeyDeriver
from tipbox.inbox import InboxService
from tipbox.key_registry import StaticKeyring
from tipbox.models import Item, ItemRead, Reply, Source
from tipbox.replies import ReplyService
from tipbox.sources import SourceService
from tipbox.storage import CiphertextStore


@dataclass
class Desk:
    settings: Settings
    db: sessionmaker[Session]
    ring: Keyring
    store: CiphertextStore
    sources: SourceService
    newsroom: InboxService

    def source_with(self, *messages: str, day: dt.date | None = None) -> int:
        source_id = self.sources.create(generate_codename())
        for text in messages:
            submit(self.db, self.ring, self.store, source_id, text, day=day)
        return source_id


@pytest.fixture
def desk(any_database_settings: Settings, any_database: sessionmaker[Session],
         newsroom: Newsroom) -> Desk:
    settings, db = any_database_settings, any_database
    store = CiphertextStore(settings.store_dir)
    return Desk(settings, db, load_keyring(newsroom.keys_dir, settings.gnupg_dir), store,
                SourceService(db, CodenameHasher(b"p" * 32, FAST_SCRYPT)),
                InboxService(db, store))


def test_inbox_lists_sources_with_items_latest_first_and_pages(desk: Desk) -> None:
    jid = add_journalist(desk.db, "ada")
    old = desk.source_with("old", day=dt.date(2026, 1, 1))
    new = desk.source_with("new", "again", day=dt.date(2026, 2, 1))
    desk.sources.create(generate_codename())  # got a codename, sent nothing: not listed
    page = desk.newsroom.inbox(jid)
    assert [r.id for r in page.rows] == [new, old]
    assert (page.rows[0].items, page.rows[0].unread) == (2, 2)
    assert page.total == 2 and page.pages == 1
    second = desk.newsroom.inbox(jid, page=2, page_size=1)
    assert [r.id for r in second.rows] == [old] and second.pages == 2


def test_unread_counts_belong_to_each_journalist(desk: Desk) -> None:
    ada, bob = add_journalist(desk.db, "ada"), add_journalist(desk.db, "bob")
    source_id = desk.source_with("one", "two")
    view = desk.newsroom.source(ada, source_id)
    assert view is not None
    desk.newsroom.mark_read(ada, [view.items[0].id])
    assert desk.newsroom.inbox(ada).rows[0].unread == 1
    assert desk.newsroom.inbox(bob).rows[0].unread == 2
    desk.newsroom.mark_source_read(ada, source_id)
    assert desk.newsroom.inbox(ada).rows[0].unread == 0
    desk.newsroom.mark_source_read(ada, source_id, read=False)
    assert desk.newsroom.inbox(ada).rows[0].unread == 2


def test_starred_sources_can_come_first(desk: Desk) -> None:
    jid = add_journalist(desk.db, "ada")
    starred = desk.source_with("a", day=dt.date(2026, 1, 1))
    recent = desk.source_with("b", day=dt.date(2026, 3, 1))
    desk.newsroom.set_star(starred, True)
    assert [r.id for r in desk.newsroom.inbox(jid).rows] == [recent, starred]
    assert [r.id for r in desk.newsroom.inbox(jid, starred_first=True).rows] == [starred, recent]


def test_deleting_a_source_removes_every_row_and_ciphertext(desk: Desk) -> None:
    jid = add_journalist(desk.db, "ada")
    doomed = desk.source_with("bye", "bye again")
    kept = desk.source_with("stay")
    view = desk.newsroom.source(jid, doomed)
    assert view is not None
    desk.newsroom.mark_read(jid, [view.items[0].id])
    before = store_ids(desk.settings.store_dir)
    assert desk.newsroom.delete_sources([doomed]) == 1
    after = store_ids(desk.settings.store_dir)
    assert before - after == {i.id for i in view.items}
    with desk.db() as s:
        assert s.get(Source, doomed) is None
        assert s.scalar(select(func.count()).select_from(Item)
                        .where(Item.source_id == doomed)) == 0
        assert s.scalar(select(func.count()).select_from(ItemRead)) == 0
        assert s.get(Source, kept) is not None


def test_deleting_items_keeps_the_rest(desk: Desk) -> None:
    jid = add_journalist(desk.db, "ada")
    source_id = desk.source_with("one", "two")
    view = desk.newsroom.source(jid, source_id)
    assert view is not None
    assert desk.newsroom.delete_items(source_id, [view.items[0].id]) == 1
    assert desk.newsroom.delete_items(source_id + 999, [view.items[1].id]) == 0  # wrong source
    after = desk.newsroom.source(jid, source_id)
    assert after is not None and [i.id for i in after.items] == [view.items[1].id]


def test_a_bundle_streams_a_tar_whose_manifest_matches_every_ciphertext(
        desk: Desk, newsroom: Newsroom) -> None:
    jid = add_journalist(desk.db, "ada")
    source_id = desk.source_with("hello")
    submit(desk.db, desk.ring, desk.store, source_id, files=[(b"x" * 3_000_000, "big.bin")])
    entries = desk.newsroom.bundle_entries(jid, source_ids=[source_id])
    bundle = new_bundle(dt.date(2026, 11, 30))
    chunks = list(stream_bundle(bundle, entries))
    assert max(len(c) for c in chunks) <= 1024 * 1024
    data = b"".join(chunks)
    assert len(data) % tarfile.RECORDSIZE == 0
    manifest = read_manifest(data)
    assert manifest["bundle_id"] == bundle.id and manifest["created_on"] == "2026-11-30"
    items = manifest["items"]
    assert isinstance(items, list) and [i["kind"] for i in items] == ["message", "file"]
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        assert names[-1] == f"tipbox-{bundle.id}/manifest.json"
        for item in items:
            member = tar.extractfile(f"tipbox-{bundle.id}/items/{item['id']}.gpg")
            assert member is not None
            blob = member.read()
            assert hashlib.sha256(blob).hexdigest() == item["sha256"]
            assert len(blob) == item["size"]
            assert item["key_fingerprints"] == [newsroom.fingerprint]
            assert item["source"] == desk.newsroom.source(jid, source_id).designation  # type: ignore[union-attr]


def test_unread_bundles_hold_only_what_this_journalist_has_not_read(desk: Desk) -> None:
    jid = add_journalist(desk.db, "ada")
    source_id = desk.source_with("one", "two")
    view = desk.newsroom.source(jid, source_id)
    assert view is not None
    desk.newsroom.mark_read(jid, [view.items[0].id])
    unread = desk.newsroom.bundle_entries(jid, source_ids=[source_id], unread_only=True)
    assert [e.id for e in unread] == [view.items[1].id]


def test_a_reply_is_kept_for_the_newsroom_and_for_the_source_only(
        desk: Desk, newsroom: Newsroom) -> None:
    jid = add_journalist(desk.db, "ada")
    codename = generate_codename()
    source_id = desk.sources.create(codename)
    deriver = ReplyKeyDeriver(b"r" * 32, FAST_SCRYPT)
    key = deriver.derive(codename)
    with desk.db.begin() as s:
        src = s.get(Source, source_id)
        assert src is not None
        src.reply_public_key = key.public_bytes
    replies = ReplyService(desk.db, desk.store, StaticKeyring(desk.ring))
    reply_id = replies.send(source_id, jid, "Thanks — can we talk?")
    newsroom_copy = gpg_decrypt(desk.store.path_for(reply_id), newsroom.secret_home)
    assert newsroom_copy.data.decode() == "Thanks — can we talk?"
    shown = replies.read_by_source(source_id, key)
    assert [r.text for r in shown] == ["Thanks — can we talk?"]
    assert replies.read_by_source(source_id, deriver.derive(generate_codename())) == []
    assert replies.delete_by_source(source_id, reply_id)
    with desk.db() as s:
        row = s.get(Reply, reply_id)
        assert row is not None and row.deleted_by_source and row.read_by_source
        assert row.for_source is None
    assert replies.read_by_source(source_id, key) == []
    view = desk.newsroom.source(jid, source_id)
    assert view is not None and view.replies[0].deleted_by_source


# --- retention ------------------------------------------------------------------------

JAN, MAR, JUN = dt.date(2026, 1, 10), dt.date(2026, 3, 10), dt.date(2026, 6, 10)


def read_all(desk: Desk, journalist_id: int, source_id: int) -> None:
    desk.newsroom.mark_source_read(journalist_id, source_id)


def test_pruning_picks_sources_quiet_since_before_the_cutoff(desk: Desk) -> None:
    ada = add_journalist(desk.db, "ada")
    quiet = desk.source_with("old tip", "more", day=JAN)
    lively = desk.source_with("recent tip", day=JUN)
    for source_id in (quiet, lively):
        read_all(desk, ada, source_id)
    plan = desk.newsroom.pruning(MAR)
    assert (plan.source_ids, plan.items, plan.replies, plan.kept_unread) == ([quiet], 2, 0, 0)

    before = store_ids(desk.settings.store_dir)
    assert desk.newsroom.delete_sources(plan.source_ids) == 1
    assert len(before - store_ids(desk.settings.store_dir)) == 2
    assert desk.newsroom.pruning(MAR).source_ids == []
    assert [r.id for r in desk.newsroom.inbox(ada).rows] == [lively]


def test_a_tip_nobody_has_read_is_never_pruned_unseen(desk: Desk) -> None:
    ada = add_journalist(desk.db, "ada")
    unread = desk.source_with("nobody looked at this", day=JAN)
    half_read = desk.source_with("seen", "not seen", day=JAN)
    view = desk.newsroom.source(ada, half_read)
    assert view is not None
    desk.newsroom.mark_read(ada, [view.items[0].id])
    plan = desk.newsroom.pruning(MAR)
    assert (plan.source_ids, plan.kept_unread) == ([], 2)
    # Read by any one journalist is enough.
    bob = add_journalist(desk.db, "bob")
    read_all(desk, bob, unread)
    assert desk.newsroom.pruning(MAR).source_ids == [unread]
    everything = desk.newsroom.pruning(MAR, include_unread=True)
    assert (sorted(everything.source_ids), everything.kept_unread) == (
        sorted([unread, half_read]), 0)


def test_a_recent_reply_keeps_a_conversation_alive(desk: Desk) -> None:
    ada = add_journalist(desk.db, "ada")
    source_id = desk.source_with("old tip", day=JAN)
    read_all(desk, ada, source_id)
    with desk.db.begin() as s:
        s.add(Reply(id="r" * 32, source_id=source_id, journalist_id=ada, seq=2, size=1,
                    key_fingerprints="F" * 40, sent_on=JUN))
    assert desk.newsroom.pruning(MAR).source_ids == []
    plan = desk.newsroom.pruning(dt.date(2026, 7, 1))
    assert (plan.source_ids, plan.items, plan.replies) == ([source_id], 1, 1)


def test_a_source_heard_from_after_the_plan_is_kept_with_its_new_tip(desk: Desk) -> None:
    ada = add_journalist(desk.db, "ada")
    source_id = desk.source_with("old tip", day=JAN)
    read_all(desk, ada, source_id)
    plan = desk.newsroom.pruning(MAR)
    assert plan.source_ids == [source_id]
    submit(desk.db, desk.ring, desk.store, source_id, "I am back", day=JUN)  # meanwhile
    assert desk.newsroom.delete_sources(plan.source_ids, quiet_since=plan.cutoff) == 0
    view = desk.newsroom.source(ada, source_id)
    assert view is not None and len(view.items) == 2
    assert len(store_ids(desk.settings.store_dir)) == 2


def test_a_source_marked_unread_after_the_plan_is_kept(desk: Desk) -> None:
    ada = add_journalist(desk.db, "ada")
    source_id = desk.source_with("old tip", day=JAN)
    read_all(desk, ada, source_id)
    plan = desk.newsroom.pruning(MAR)
    desk.newsroom.mark_source_read(ada, source_id, read=False)  # meanwhile
    assert desk.newsroom.delete_sources(plan.source_ids, quiet_since=plan.cutoff,
                                        keep_unread=True) == 0
    assert desk.newsroom.delete_sources(plan.source_ids, quiet_since=plan.cutoff) == 1


def test_the_date_shown_for_deletion_is_the_day_prune_first_deletes(desk: Desk) -> None:
    ada = add_journalist(desk.db, "ada")
    source_id = desk.source_with("old tip", day=JAN)
    read_all(desk, ada, source_id)
    row = desk.newsroom.inbox(ada).rows[0]
    due = row.pruned_on(30)
    view = desk.newsroom.source(ada, source_id)
    assert view is not None and view.pruned_on(30) == due == JAN + dt.timedelta(days=31)
    # `tipbox prune --older-than 30` on that day deletes it; the day before, it does not.
    assert desk.newsroom.pruning(due - dt.timedelta(days=30)).source_ids == [source_id]
    assert desk.newsroom.pruning(due - dt.timedelta(days=31)).source_ids == []
    # A reply moves the date.
    with desk.db.begin() as s:
        s.add(Reply(id="q" * 32, source_id=source_id, journalist_id=ada, seq=2, size=1,
                    key_fingerprints="F" * 40, sent_on=MAR))
    assert desk.newsroom.inbox(ada).rows[0].pruned_on(30) == MAR + dt.timedelta(days=31)
