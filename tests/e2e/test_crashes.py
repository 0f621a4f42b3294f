"""Fault injection against the real server: workers SIGKILLed at random moments during
concurrent submissions. Afterwards the service alone (no `tipbox init`) must have removed
every leftover, every acknowledged submission must decrypt byte-exact with gpg, and the
store and the database must name exactly the same items. Loopback only; every loop is
bounded in count and in time."""

from __future__ import annotations

import http.client
import os
import random
import secrets
import signal
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.e2e.server import HttpSource, RunningServer, encode_multipart, tipbox_server
from tests.helpers import Newsroom, csrf_from, gpg_decrypt, store_files

pytestmark = pytest.mark.e2e

ROUNDS = 4
SOURCES_PER_ROUND = 6
SETTLE_SECONDS = 30.0


@pytest.fixture(params=["sqlite", "postgres"])
def server_env(request: pytest.FixtureRequest, tmp_path: Path,
               newsroom: Newsroom) -> dict[str, str]:
    url = (f"sqlite:///{tmp_path / 'data' / 'tipbox.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    return {"TIPBOX_DATA_DIR": str(tmp_path / "data"), "TIPBOX_DATABASE_URL": url,
            "TIPBOX_KEYS_DIR": str(newsroom.keys_dir), "TIPBOX_SCRYPT_N": "16"}


def rows(env: dict[str, str], query: str) -> list[Any]:
    engine = create_engine(env["TIPBOX_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(text(query))]
    finally:
        engine.dispose()


@pytest.fixture
def server(server_env: dict[str, str], tmp_path: Path) -> Iterator[RunningServer]:
    with tipbox_server("source", server_env, tmp_path / "server.log") as running:
        yield running


@dataclass
class Attempt:
    message: str
    file: bytes
    status: int = 0  # 0: the connection broke before an answer
    failure: str = ""  # anything but a broken connection, for the assertion to show


def worker_pid(server: RunningServer, *, not_pid: int = 0) -> int:
    """The master's one worker (a new one, if ``not_pid`` was killed), once it answers."""
    master = server.process.pid
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        alive = [int(c) for c in children if int(c) != not_pid]
        if alive and HttpSource(server.url).request("/")[0] == 200:
            return alive[0]
        time.sleep(0.1)
    raise AssertionError(f"no worker came back:\n{server.log()}")


def submit(source: HttpSource, attempt: Attempt) -> None:
    try:
        attempt.status, _ = source.submit(attempt.message, [(attempt.file, "evidence.bin")])
    except (OSError, http.client.HTTPException):
        attempt.status = 0  # cut off by the kill: not acknowledged, so not promised
    except Exception as exc:  # a thread's exception would otherwise be lost
        attempt.failure = repr(exc)


def post_form(source: HttpSource, token: str, attempt: Attempt) -> None:
    boundary = "----tipboxtest" + secrets.token_hex(8)
    body = encode_multipart(boundary, [("csrf_token", None, token.encode()),
                                       ("message", None, attempt.message.encode()),
                                       ("files", "evidence.bin", attempt.file)])
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(source.base).netloc, timeout=120)
    try:
        conn.request("POST", "/submit", body=body, headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Cookie": "; ".join(f"{c.name}={c.value}" for c in source.jar)})
        response = conn.getresponse()
        response.read()
        attempt.status = response.status
    finally:
        conn.close()


def leftovers(data_dir: Path) -> list[str]:
    tmp = data_dir / "store" / ".tmp"
    return sorted(p.name for p in tmp.iterdir())


def item_ids(env: dict[str, str]) -> set[str]:
    return set(rows(env, "SELECT id FROM items UNION SELECT id FROM replies"))


def wait_until_swept(env: dict[str, str]) -> None:
    """The service's own sweep (at worker start) leaves the temp folder empty and the
    store naming exactly the rows; a bounded wait, not a timing assertion."""
    data_dir = Path(env["TIPBOX_DATA_DIR"])
    deadline = time.monotonic() + SETTLE_SECONDS
    while time.monotonic() < deadline:
        if not leftovers(data_dir) and \
                {p.stem for p in store_files(data_dir)} == item_ids(env):
            return
        time.sleep(0.2)
    stored = {p.stem for p in store_files(data_dir)}
    named = item_ids(env)
    raise AssertionError(f"left after {SETTLE_SECONDS} s: temp {leftovers(data_dir)}, "
                         f"files without rows {sorted(stored - named)}, "
                         f"rows without files {sorted(named - stored)}")


def test_workers_killed_during_concurrent_submissions_lose_nothing_acknowledged_and_leave_nothing(
        server: RunningServer, server_env: dict[str, str], newsroom: Newsroom) -> None:
    data_dir = Path(server_env["TIPBOX_DATA_DIR"])
    rng = random.Random(9)  # fixed: a failure can be replayed
    attempts: list[Attempt] = []
    pid = worker_pid(server)
    for round_no in range(ROUNDS):
        sources = [HttpSource(server.url) for _ in range(SOURCES_PER_ROUND)]
        for source in sources:
            source.new_codename()
        batch = [Attempt(f"round {round_no} source {n} {os.urandom(8).hex()}",
                         os.urandom(rng.randrange(64 * 1024, 3 * 1024 * 1024)))
                 for n in range(SOURCES_PER_ROUND)]
        threads = [threading.Thread(target=submit, args=(s, a), daemon=True)
                   for s, a in zip(sources, batch, strict=True)]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.05, 1.5))
        os.kill(pid, signal.SIGKILL)
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        attempts += batch
        pid = worker_pid(server, not_pid=pid)
        wait_until_swept(server_env)

    assert [a.failure for a in attempts if a.failure] == []
    acknowledged = [a for a in attempts if a.status == 303]
    assert acknowledged, "no submission got through: the kills proved nothing"
    assert [a.status for a in attempts if a.status not in (0, 303, 500, 502, 503)] == []
    plain = {gpg_decrypt(p, newsroom.secret_home).data for p in store_files(data_dir)}
    for attempt in acknowledged:
        assert attempt.message.encode() in plain
        assert attempt.file in plain
    assert {p.stem for p in store_files(data_dir)} == item_ids(server_env)
    assert leftovers(data_dir) == []


def test_concurrent_submissions_from_one_source_never_share_a_number(
        server: RunningServer, server_env: dict[str, str]) -> None:
    source = HttpSource(server.url)
    source.new_codename()
    # One form, sent from six tabs at once: nothing but the commits runs side by side.
    _, html, _ = source.request("/submit")
    token = csrf_from(html)
    batch = [Attempt(f"parallel {n}", os.urandom(32 * 1024)) for n in range(6)]
    threads = [threading.Thread(target=post_form, args=(source, token, a), daemon=True)
               for a in batch]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [a.status for a in batch] == [303] * len(batch)
    numbers = rows(server_env, "SELECT seq FROM items ORDER BY seq")
    assert numbers == list(range(1, 2 * len(batch) + 1))
