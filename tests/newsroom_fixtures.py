"""Seeding sources, items and journalists straight into the database for newsroom tests."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from tipbox.crypto.keyring import Keyring
from tipbox.intake.draft import Draft
from tipbox.models import Journalist
from tipbox.storage import CiphertextStore


def add_journalist(db: sessionmaker[Session], username: str) -> int:
    with db.begin() as s:
        row = Journalist(username=username, passphrase_hash="x", totp_secret="x",
                         created_on=dt.date.today())
        s.add(row)
        s.flush()
        return row.id


def submit(db: sessionmaker[Session], ring: Keyring, store: CiphertextStore, source_id: int,
           message: str | None = None, files: list[tuple[bytes, str]] | None = None,
           day: dt.date | None = None) -> None:
    with Draft(ring, store, db, 100,
               clock=lambda: day or dt.date.today()) as draft:
        if message:
            draft.add_message(message)
        for data, name in files or []:
            draft.add_file(io.BytesIO(data), name)
        draft.commit(source_id)


def store_ids(store_dir: Path) -> set[str]:
    return {p.stem for p in store_dir.glob("*.gpg")}
