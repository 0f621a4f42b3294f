"""Replies sent at once to one source, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import threading

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tests.conftest import FAST_SCRYPT
from tests.helpers import reply_service, store_files
from tipbox.codenames import CodenameHasher, generate_codename
from tipbox.config import Settings
from tipbox.models import Reply
from tipbox.sources import SourceService

JOURNALISTS = 6


def test_replies_sent_at_the_same_moment_to_one_source_all_arrive_numbered_in_turn(
        any_database_settings: Settings, any_database: sessionmaker[Session]) -> None:
    source_id = SourceService(any_database, CodenameHasher(b"p" * 32, FAST_SCRYPT)).create(
        generate_codename())
    services = [reply_service(any_database_settings) for _ in range(JOURNALISTS)]
    start = threading.Barrier(JOURNALISTS)
    failures: list[str] = []

    def send(n: int) -> None:
        try:
            start.wait(timeout=60)
            services[n].send(source_id, None, f"reply {n}")
        except Exception as exc:  # a thread's exception would otherwise be lost
            failures.append(type(exc).__name__)

    threads = [threading.Thread(target=send, args=(n,), daemon=True)
               for n in range(JOURNALISTS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for service in services:  # each has an engine of its own, as each app would
            service.sessions.kw["bind"].dispose()

    assert not any(t.is_alive() for t in threads)
    assert failures == []
    with any_database() as db:
        numbers = sorted(db.scalars(select(Reply.seq).where(Reply.source_id == source_id)))
    assert numbers == list(range(1, JOURNALISTS + 1))
    assert len(store_files(any_database_settings.data_dir)) == JOURNALISTS
