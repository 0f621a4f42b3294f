"""A backup of a running instance while sources keep submitting, restored into an empty
folder on a fresh instance: the source logs back in with its codename and reads its
reply, a journalist's log-in still works, and a bundle exported after the restore opens
with tipbox-open to the very bytes that were sent. On SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pyotp
import pytest
from click.testing import CliRunner

from tests.e2e.server import HttpSource, RunningServer, tipbox_server
from tests.e2e.test_journey import HttpJournalist, add_journalist, tipbox_open
from tests.helpers import Newsroom, csrf_from, fresh_postgres_database
from tipbox.cli import main

pytestmark = pytest.mark.e2e

PASSPHRASE = "correct horse battery staple"
# Submissions sent while the backup runs: bounded in number and in time.
MAX_DURING = 40
DURING_DEADLINE_SECONDS = 120


@contextmanager
def servers(env: dict[str, str], logs: Path) -> Iterator[tuple[RunningServer, RunningServer]]:
    with ExitStack() as stack:
        source = stack.enter_context(tipbox_server("source", env, logs / "source.log"))
        newsroom = stack.enter_context(tipbox_server("newsroom", env, logs / "newsroom.log"))
        yield source, newsroom


@pytest.fixture(params=["sqlite", "postgres"])
def database_urls(request: pytest.FixtureRequest) -> Iterator[tuple[str | None, str | None]]:
    """The database of the instance backed up and of the one restored: SQLite files in
    their data folders, or two fresh databases on the real PostgreSQL."""
    if request.param == "sqlite":
        yield None, None
        return
    first = request.getfixturevalue("postgres_url")
    with fresh_postgres_database(first) as second:
        yield first, second


def instance_env(data_dir: Path, newsroom: Newsroom, database_url: str | None) -> dict[str, str]:
    env = {"TIPBOX_DATA_DIR": str(data_dir), "TIPBOX_KEYS_DIR": str(newsroom.keys_dir),
           "TIPBOX_SCRYPT_N": "16"}
    if database_url:
        env["TIPBOX_DATABASE_URL"] = database_url
    return env


def journalist_logs_in(url: str, username: str, passphrase: str, totp_secret: str,
                       *, next_code: bool = False) -> HttpJournalist:
    journalist = HttpJournalist(url)
    _, page, _ = journalist.request("/login")
    # A code is good once: after a restore, the step last used before the backup is spent.
    totp = pyotp.TOTP(totp_secret)
    code = totp.at(time.time() + 30) if next_code else totp.now()
    status, _, _ = journalist.post_form("/login", {
        "csrf_token": csrf_from(page), "username": username, "passphrase": passphrase,
        "code": code})
    assert status == 302
    return journalist


class SubmittingSource:
    """A source that keeps submitting (a message and a file each time) until stopped,
    recording what it sent and what the server confirmed."""

    def __init__(self, url: str) -> None:
        self.source = HttpSource(url)
        self.source.new_codename()
        self.confirmed: list[tuple[str, bytes, bytes]] = []  # (file name, file, message)
        self.failures: list[int] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="submitting-source")

    def _run(self) -> None:
        deadline = time.monotonic() + DURING_DEADLINE_SECONDS
        for n in range(MAX_DURING):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            name, data, message = f"during-{n}.bin", os.urandom(256 * 1024), f"during {n}"
            status, _ = self.source.submit(message, [(data, name)])
            if status == 303:
                self.confirmed.append((name, data, message.encode()))
            else:
                self.failures.append(status)

    def __enter__(self) -> SubmittingSource:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(DURING_DEADLINE_SECONDS)


def decrypted_files(out: Path) -> set[tuple[str, bytes]]:
    """Every file tipbox-open wrote, as (name without its order prefix, bytes)."""
    return {(re.sub(r"^\d+-", "", p.name), p.read_bytes()) for p in out.rglob("*")
            if p.is_file() and p.name != "index.txt" and not p.name.startswith(".")}


def test_backup_while_sources_submit_restores_codenames_replies_and_every_item_byte_exact(
        database_urls: tuple[str | None, str | None], newsroom: Newsroom,
        tmp_path: Path) -> None:
    old_url, new_url = database_urls
    old_env = instance_env(tmp_path / "old", newsroom, old_url)
    new_env = instance_env(tmp_path / "new", newsroom, new_url)
    backup = tmp_path / "tipbox.backup"
    memo = os.urandom(2 * 1024 * 1024)
    (tmp_path / "old-logs").mkdir()
    (tmp_path / "new-logs").mkdir()

    with servers(old_env, tmp_path / "old-logs") as (source_server, newsroom_server):
        source = HttpSource(source_server.url)
        codename = source.new_codename()
        assert source.submit("Before the backup.", [(memo, "memo.pdf")])[0] == 303
        passphrase, totp_secret = add_journalist(old_env, "ada")
        ada = journalist_logs_in(newsroom_server.url, "ada", passphrase, totp_secret)
        [source_id] = ada.source_ids()
        _, page, _ = ada.request(f"/sources/{source_id}")
        assert ada.post_form(f"/sources/{source_id}/reply", {
            "csrf_token": csrf_from(page), "text": "Which year is the memo from?"})[0] == 302

        with SubmittingSource(source_server.url) as during:
            # The backup starts once submissions are flowing, and runs while they go on.
            deadline = time.monotonic() + DURING_DEADLINE_SECONDS
            while not during.confirmed and not during.failures \
                    and time.monotonic() < deadline:
                time.sleep(0.05)
            made = CliRunner().invoke(main, ["backup", "--out", str(backup)],
                                      input=f"{PASSPHRASE}\n{PASSPHRASE}\n", env=old_env)
        assert made.exit_code == 0, made.output
        assert "Backup written" in made.output
        assert during.failures == []
        assert during.confirmed, "no submission arrived while the backup ran"
    # The passphrase was asked for, twice, and never shown.
    assert made.output.count("Backup passphrase") == 1
    assert "Repeat for confirmation" in made.output
    assert PASSPHRASE not in made.output

    restored = CliRunner().invoke(main, ["restore", str(backup)], input=f"{PASSPHRASE}\n",
                                  env=new_env)
    assert restored.exit_code == 0, restored.output
    assert "Restored into" in restored.output

    with servers(new_env, tmp_path / "new-logs") as (source_server, newsroom_server):
        returning = HttpSource(source_server.url)
        assert returning.login(codename) == 302
        _, page, _ = returning.request("/submit")
        assert "Which year is the memo from?" in page

        # The journalist's passphrase and TOTP secret (sealed with the restored instance
        # secrets) still work; a journalist added after the restore finds every item.
        journalist_logs_in(newsroom_server.url, "ada", passphrase, totp_secret,
                           next_code=True)
        bob_passphrase, bob_totp = add_journalist(new_env, "bob")
        bob = journalist_logs_in(newsroom_server.url, "bob", bob_passphrase, bob_totp)
        bundle = tmp_path / "after-restore.tar"
        bundle.write_bytes(bob.download_unread(bob.source_ids()))

    opened = tipbox_open(bundle, tmp_path / "opened", newsroom.secret_home)
    assert opened.returncode == 0, opened.stderr
    got = decrypted_files(tmp_path / "opened")
    before = {("memo.pdf", memo), ("message.txt", b"Before the backup.")}
    sent_during = {(name, data) for name, data, _ in during.confirmed} | {
        ("message.txt", message) for _, _, message in during.confirmed}
    assert before <= got
    assert got <= before | sent_during
    # Submissions travel whole: a message restored without its file, or the reverse,
    # would be a backup torn across a commit.
    for name, data, message in during.confirmed:
        assert ((name, data) in got) == (("message.txt", message) in got)
