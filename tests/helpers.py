"""Plain helpers shared by the tests: key pairs, the gpg command line, a no-JS browser."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyotp
import pytest
from babel.messages.pofile import read_po
from flask.testing import FlaskClient
from sqlalchemy import Engine
from werkzeug.test import TestResponse

from tipbox.accounts import NewCredentials, TotpSealer
from tipbox.config import REPO_ROOT, Settings
from tipbox.crypto.gpg import GnuPG
from tipbox.crypto.keyring import load_keyring
from tipbox.db import make_engine, make_session_factory
from tipbox.hashing_slots import HashingSlots
from tipbox.instance import InstanceSecrets
from tipbox.key_registry import StaticKeyring
from tipbox.replies import ReplyService
from tipbox.storage import CiphertextStore
from tipbox.web.browser_encryption import BrowserEncryption

# The actor the audit log records for account changes the tests make themselves.
ACTOR = "test:setup"


@dataclass(frozen=True)
class Newsroom:
    keys_dir: Path
    secret_home: Path  # stands for the air-gapped machine
    fingerprint: str
    public_key_file: Path


def make_newsroom(root: Path, name: str, expire: str = "1y") -> Newsroom:
    secret_home = root / "offline-gnupg"
    gpg = GnuPG(secret_home)
    fpr = gpg.generate_key(name, "newsroom@example.invalid", passphrase=None, expire=expire)
    keys_dir = root / "keys"
    keys_dir.mkdir()
    pub = keys_dir / "newsroom.asc"
    pub.write_text(str(gpg.export_public(fpr)))
    return Newsroom(keys_dir, secret_home, fpr, pub)


@dataclass(frozen=True)
class Plaintext:
    data: bytes
    filename: str
    recipients: tuple[str, ...]  # key ids of the PKESK packets


def gpg_decrypt(path: Path, secret_home: Path) -> Plaintext:
    """Decrypt with the gpg COMMAND LINE (not our wrapper), as a journalist would."""
    proc = subprocess.run(
        ["gpg", "--homedir", str(secret_home), "--batch", "--no-tty", "--status-fd", "2",
         "--decrypt", str(path)],
        capture_output=True, check=False,
    )
    status = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, f"gpg --decrypt failed: {status}"
    assert "[GNUPG:] DECRYPTION_OKAY" in status
    # Integrity protection must have been checked: MDC for SEIPDv1.
    assert "[GNUPG:] GOODMDC" in status or "[GNUPG:] DECRYPTION_INFO 2" in status
    match = re.search(r"^\[GNUPG:\] PLAINTEXT \S+ \S+ ?(.*)$", status, re.MULTILINE)
    assert match, status
    name = urllib.parse.unquote(match.group(1).strip())
    recipients = tuple(re.findall(r"^\[GNUPG:\] ENC_TO (\S+)", status, re.MULTILINE))
    return Plaintext(proc.stdout, name, recipients)


def store_files(data_dir: Path) -> list[Path]:
    """Committed ciphertext files, oldest name order irrelevant."""
    store = data_dir / "store"
    return sorted(p for p in store.glob("*.gpg")) if store.exists() else []


def temp_files(data_dir: Path) -> list[Path]:
    """What the store's temp folder holds besides the lock files of writers at work."""
    tmp = data_dir / "store" / ".tmp"
    return sorted(p for p in tmp.iterdir() if p.suffix != ".lock") if tmp.exists() else []


def sqlite_bytes(data_dir: Path) -> bytes:
    """Every byte SQLite keeps: the database file and, if there is one, its WAL."""
    wal = data_dir / "tipbox.db-wal"
    return (data_dir / "tipbox.db").read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def lock_files(data_dir: Path) -> list[Path]:
    tmp = data_dir / "store" / ".tmp"
    return sorted(tmp.glob("*.lock")) if tmp.exists() else []


_TOKEN_RE = re.compile(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _TOKEN_RE.search(html)
    assert match, "page has no CSRF token"
    return match.group(1)


def hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" type="hidden" value="([^"]+)"', html)
    assert match, f"page has no hidden field {name}"
    return match.group(1)


class SourceBrowser:
    """What a source with JavaScript disabled can do: follow links, post the forms."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def new_codename(self) -> str:
        """'First time here': get a codename and continue to the submission page."""
        page = self.client.get("/generate")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        codename = hidden(html, "codename")
        resp = self.client.post("/create", data={
            "csrf_token": csrf_from(html), "codename": codename, "mac": hidden(html, "mac")})
        assert resp.status_code == 302, resp.get_data(as_text=True)
        return codename

    def login(self, codename: str) -> TestResponse:
        html = self.client.get("/login").get_data(as_text=True)
        return self.client.post("/login", data={"csrf_token": csrf_from(html),
                                                "codename": codename})

    def logout(self) -> TestResponse:
        html = self.client.get("/submit").get_data(as_text=True)
        return self.client.post("/logout", data={"csrf_token": csrf_from(html)})

    def submit_token(self) -> str:
        return csrf_from(self.client.get("/submit").get_data(as_text=True))

    def submit(self, message: str = "", files: list[tuple[bytes, str]] | None = None,
               token: str | None = None, **extra: Any) -> TestResponse:
        """Post the submission form the way a browser does: token first, then fields."""
        data: dict[str, Any] = {"csrf_token": token if token is not None else self.submit_token(),
                                "message": message}
        data["files"] = [(io.BytesIO(content), name) for content, name in (files or [])] or \
            [(io.BytesIO(b""), "")]
        data.update(extra)
        return self.client.post("/submit", data=data, content_type="multipart/form-data")


class Clock:
    """Wall time that tests move on by hand, 30 s (one TOTP step) at a time."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now

    def tick(self, seconds: int = 30) -> None:
        self.now += dt.timedelta(seconds=seconds)


class SecondsClock:
    """Seconds since the epoch that tests set by hand, for the flood defence; it starts
    at the beginning of one of its ten-minute buckets."""

    START = 1_800_000_000.0

    def __init__(self) -> None:
        self.now = self.START

    def __call__(self) -> float:
        return self.now


def log_in(client: FlaskClient, creds: NewCredentials, clock: Clock,
           code: str | None = None) -> tuple[int, str]:
    clock.tick()
    page = client.get("/login").get_data(as_text=True)
    resp = client.post("/login", data={
        "csrf_token": csrf_from(page), "username": creds.username,
        "passphrase": creds.passphrase,
        "code": code or pyotp.TOTP(creds.totp_secret).at(clock.now)})
    return resp.status_code, resp.get_data(as_text=True)


def require(problem: str | None, *, ci: str, here: str) -> None:
    """A missing part: under CI=true the test fails (CI installs everything, so a skip
    would hide a broken install); on a developer's machine it is skipped, saying why."""
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{ci}, but {problem} (see .ci/run)")
    pytest.skip(f"{here}: {problem}")


@contextmanager
def mounted_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` ("64k", "1m") on ``folder`` (made if missing), unmounted
    after. Mounting needs root (CAP_SYS_ADMIN), which CI has."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                              str(folder)], capture_output=True, check=False)
    require(None if mounted.returncode == 0 else
            "mounting a small tmpfs needs root (CAP_SYS_ADMIN): "
            + mounted.stderr.decode(errors="replace").strip(),
            ci="CI runs as root so that this test can mount a tmpfs", here="skipped")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def require_browser_encryption() -> BrowserEncryption:
    """OpenPGP.js as `make install` puts it."""
    browser = BrowserEncryption.load(REPO_ROOT / "static", REPO_ROOT / "package-lock.json")
    require(None if browser.enabled else browser.problem,
            ci="CI must install OpenPGP.js (make install)", here="in-browser encryption is off")
    return browser


def extracted_texts(workdir: Path) -> set[str]:
    """Every text pybabel extracts from the code and templates (the singular of a plural)."""
    pot = workdir / "messages.pot"
    babel = Path(sys.executable).with_name("pybabel")
    subprocess.run([str(babel), "extract", "-F", "babel.cfg", "-k", "N_", "-k", "_l",
                    "-o", str(pot), "."], cwd=REPO_ROOT, check=True, capture_output=True)
    with pot.open("rb") as f:
        return {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(f) if m.id}


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that points the `tipbox` command at ``settings``."""
    return {"TIPBOX_DATA_DIR": str(settings.data_dir), "TIPBOX_KEYS_DIR": str(settings.keys_dir),
            "TIPBOX_DATABASE_URL": settings.database_url, "TIPBOX_SCRYPT_N": "16", **extra}


def instance_sealer(settings: Settings) -> TotpSealer:
    """The sealer the CLI and the newsroom app use: the data folder's own totp_key."""
    return TotpSealer(InstanceSecrets.load(settings.secrets_file).totp_key)


@contextmanager
def slots_taken(slots: HashingSlots, count: int = 1) -> Iterator[None]:
    """``count`` threads each holding one of ``slots`` until the block ends: a site
    whose memory-hard hashing is busy."""
    release = threading.Event()
    taken = threading.Barrier(count + 1)

    def hold() -> None:
        with slots.slot():
            taken.wait()
            release.wait(30)

    threads = [threading.Thread(target=hold) for _ in range(count)]
    for t in threads:
        t.start()
    taken.wait(10)
    try:
        yield
    finally:
        release.set()
        for t in threads:
            t.join(10)


def reply_service(settings: Settings) -> ReplyService:
    """What the newsroom interface uses to reply, for a test to play the journalist."""
    db = make_session_factory(make_engine(settings.database_url))
    return ReplyService(db, CiphertextStore(settings.store_dir),
                        StaticKeyring(load_keyring(settings.keys_dir, settings.gnupg_dir)))


@contextmanager
def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of ``server_url`` (any database's
    URL on it), dropped when the block ends, whoever is still connected to it."""
    import secrets

    from sqlalchemy import create_engine, text

    name = f"tipbox_test_{secrets.token_hex(6)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield server_url.rsplit("/", 1)[0] + "/" + name
        finally:
            _drop_database(admin, name)
    finally:
        admin.dispose()


def _drop_database(admin: Engine, name: str) -> None:
    # FORCE ends the sessions a test left open. It refuses, for a role that is neither
    # superuser nor in pg_signal_backend, when an autovacuum worker happens to be in the
    # database (its process has no role the test's can be a member of): .ci/postgres.sh
    # grants pg_signal_backend, and the worker is gone a moment later anyway.
    from sqlalchemy import text
    from sqlalchemy.exc import ProgrammingError

    for attempt in range(40):  # at most about 10 s
        try:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            return
        except ProgrammingError as error:
            if "pg_signal_backend" not in str(error) or attempt == 39:
                raise
            time.sleep(0.25)
