"""Inbox speed with 10,000 sources and 100,000 items.

Seeds a fresh SQLite (or TIPBOX_DATABASE_URL) database with rows only (the inbox never
reads ciphertext), then times the newsroom's first inbox page and a deep page through
the Flask test client, that is, the server's whole work for the request. Prints medians.

    .venv/bin/python bench/inbox.py [--sources 10000] [--items 100000] [--runs 15]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pyotp
from argon2 import PasswordHasher
from sqlalchemy import insert

from tests.helpers import csrf_from, make_newsroom
from tipbox.accounts import AccountService, TotpSealer
from tipbox.audit import AuditLog
from tipbox.config import ScryptParams, Settings
from tipbox.db import make_engine, make_session_factory
from tipbox.instance import InstanceSecrets
from tipbox.models import Item, ItemKind, ItemRead, Source
from tipbox.provisioning import initialise
from tipbox.storage import new_item_id
from tipbox.web.newsroom import create_newsroom_app


def seed(url: str, n_sources: int, n_items: int, journalist_id: int) -> None:
    engine = make_engine(url)
    start = dt.date(2025, 1, 1)
    rng = random.Random(42)
    with engine.begin() as conn:
        conn.execute(insert(Source), [
            {"id": i + 1, "codename_hash": secrets.token_hex(32),
             "designation": f"source {i + 1}", "created_on": start,
             "last_activity_on": start + dt.timedelta(days=rng.randrange(600)),
             "starred": i % 50 == 0}
            for i in range(n_sources)])
        items = []
        for n in range(n_items):
            source_id = n % n_sources + 1
            items.append({"id": new_item_id(), "source_id": source_id, "seq": n // n_sources + 1,
                          "kind": ItemKind.FILE if n % 3 else ItemKind.MESSAGE,
                          "size": rng.randrange(500, 5_000_000), "key_fingerprints": "A" * 40,
                          "submitted_on": start})
        conn.execute(insert(Item), items)
        conn.execute(insert(ItemRead), [{"item_id": it["id"], "journalist_id": journalist_id}
                                        for it in items[::2]])
    engine.dispose()


def timed(client, path: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        resp = client.get(path)
        samples.append(time.perf_counter() - t0)
        assert resp.status_code == 200, resp.status_code
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sources", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        room = make_newsroom(root / "room", "Bench Newsroom")
        url = os.environ.get("TIPBOX_DATABASE_URL", f"sqlite:///{root / 'data' / 'tipbox.db'}")
        settings = Settings(data_dir=root / "data", keys_dir=room.keys_dir, database_url=url,
                            scrypt=ScryptParams(n=2**4))
        initialise(settings, trust_keys_folder=True)
        sessions = make_session_factory(make_engine(url))
        accounts = AccountService(sessions,
                                  TotpSealer(InstanceSecrets.load(settings.secrets_file).totp_key),
                                  AuditLog(sessions),
                                  hasher=PasswordHasher(time_cost=1, memory_cost=8,
                                                        parallelism=1))
        creds = accounts.create("bench", "bench")
        t0 = time.perf_counter()
        seed(url, args.sources, args.items, journalist_id=1)
        seeded = time.perf_counter() - t0
        app = create_newsroom_app(settings, accounts=accounts)
        client = app.test_client()
        page = client.get("/login").get_data(as_text=True)
        resp = client.post("/login", data={"csrf_token": csrf_from(page), "username": "bench",
                                           "passphrase": creds.passphrase,
                                           "code": pyotp.TOTP(creds.totp_secret).now()})
        assert resp.status_code == 302, resp.status_code
        deep = args.sources // 50  # the last page at 50 sources a page
        first_ms = timed(client, "/", args.runs)
        deep_ms = timed(client, f"/?page={deep}", args.runs)
        starred_ms = timed(client, "/?starred_first=1", args.runs)
        backend = url.split(":", 1)[0]
        print(f"backend={backend} sources={args.sources} items={args.items} "
              f"(seeded in {seeded:.1f} s) runs={args.runs}")
        print(f"first page:          median {first_ms:.1f} ms")
        print(f"deep page {deep}:       median {deep_ms:.1f} ms")
        print(f"starred first:       median {starred_ms:.1f} ms")


if __name__ == "__main__":
    main()
