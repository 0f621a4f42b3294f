"""One fixture set for the whole suite: real gpg, real files, cheap scrypt."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from tests.helpers import (
    ACTOR,
    Clock,
    Newsroom,
    SourceBrowser,
    fresh_postgres_database,
    instance_sealer,
    log_in,
    make_newsroom,
    require_browser_encryption,
)
from tipbox.accounts import AccountService, NewCredentials
from tipbox.audit import AuditLog
from tipbox.config import ScryptParams, Settings
from tipbox.db import make_engine, make_session_factory
from tipbox.provisioning import initialise
from tipbox.web.browser_encryption import BrowserEncryption
from tipbox.web.newsroom import create_newsroom_app
from tipbox.web.source import create_source_app

# Tests use 2**4 scrypt rounds: the real cost (2**16) would make each login take 0.2 s.
FAST_SCRYPT = ScryptParams(n=2**4, r=8, p=1)


@pytest.fixture(scope="session")
def newsroom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Newsroom]:
    """A newsroom key pair: the public key in a keys folder, the secret key in a separate
    GnuPG home that stands for the air-gapped machine."""
    room = make_newsroom(tmp_path_factory.mktemp("newsroom"), "Test Newsroom")
    yield room
    stop_agent(room.secret_home)


@pytest.fixture(scope="session")
def second_newsroom_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Newsroom]:
    room = make_newsroom(tmp_path_factory.mktemp("newsroom2"), "Second Station")
    yield room
    stop_agent(room.secret_home)


@pytest.fixture(scope="session", autouse=True)
def no_agent_outlives_the_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Many tests make a throwaway GnuPG home with a secret key in it, and gpg starts an
    agent for each; stop them all when the run ends rather than leave dozens behind."""
    yield
    for keys in tmp_path_factory.getbasetemp().rglob("private-keys-v1.d"):
        stop_agent(keys.parent)


def stop_agent(home: Path) -> None:
    """gpg starts an agent for a home with secret keys; it would outlive the test run."""
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                   capture_output=True, check=False)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'tipbox.db'}"


# The disk reserve (TIPBOX_MIN_FREE_BYTES, 1 GiB by default) would refuse every upload on a
# shared test machine whose disk is nearly full; its own tests set it explicitly. Servers
# the tests start inherit it from here.
TEST_MIN_FREE_BYTES = 32 * 1024 * 1024
os.environ.setdefault("TIPBOX_MIN_FREE_BYTES", str(TEST_MIN_FREE_BYTES))


@pytest.fixture
def settings(data_dir: Path, newsroom: Newsroom, database_url: str) -> Settings:
    s = Settings(data_dir=data_dir, keys_dir=newsroom.keys_dir, database_url=database_url,
                 scrypt=FAST_SCRYPT, min_free_bytes=TEST_MIN_FREE_BYTES)
    initialise(s, trust_keys_folder=True)  # the fixture made the key pair itself
    return s


@pytest.fixture
def app(settings: Settings) -> Flask:
    """The source app as a site without in-browser encryption serves it: no script on any
    page. The web tests of the no-JS path use it; see ``js_app`` for the scripts."""
    app = create_source_app(settings, browser=BrowserEncryption.off("not under test"))
    app.config["TESTING"] = True
    return app


@pytest.fixture
def js_app(settings: Settings) -> Flask:
    """The source app with OpenPGP.js installed (`make install`), as `make run` serves it."""
    app = create_source_app(settings, browser=require_browser_encryption())
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def browser(client: FlaskClient) -> SourceBrowser:
    """A source's browser with JavaScript off: it only follows links and submits forms."""
    return SourceBrowser(client)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the real PostgreSQL named by TIPBOX_TEST_DATABASE_URL.

    CI always sets it (.ci/run starts PostgreSQL); without it on a developer's machine
    the test is skipped and the summary says so.
    """
    base = os.environ.get("TIPBOX_TEST_DATABASE_URL")
    if not base:
        if os.environ.get("CI"):
            pytest.fail("CI must set TIPBOX_TEST_DATABASE_URL (see .ci/run)")
        pytest.skip("no PostgreSQL: set TIPBOX_TEST_DATABASE_URL to run this test")
    with fresh_postgres_database(base) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def any_database_settings(request: pytest.FixtureRequest, tmp_path: Path,
                          newsroom: Newsroom) -> Settings:
    """Initialised settings on SQLite, then on a fresh real PostgreSQL database."""
    url = (f"sqlite:///{tmp_path / 'data' / 'tipbox.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_url"))
    settings = Settings(data_dir=tmp_path / "data", keys_dir=newsroom.keys_dir,
                        database_url=url, scrypt=FAST_SCRYPT,
                        min_free_bytes=TEST_MIN_FREE_BYTES)
    initialise(settings, trust_keys_folder=True)
    return settings


@pytest.fixture
def any_database(any_database_settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(any_database_settings.database_url)
    yield make_session_factory(engine)
    engine.dispose()


def pytest_report_header() -> list[str]:
    lines = [f"gpg: {shutil.which('gpg')}", f"sq: {shutil.which('sq') or 'not installed'}"]
    url = os.environ.get("TIPBOX_TEST_DATABASE_URL")
    lines.append("postgres: " + (re.sub(r":[^:@/]+@", ":***@", url) if url else "not set"))
    return lines


# --- the newsroom interface -------------------------------------------------------

@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def accounts(settings: Settings, clock: Clock) -> AccountService:
    db = make_session_factory(make_engine(settings.database_url))
    return AccountService(db, instance_sealer(settings), AuditLog(db), clock=clock,
                          hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
def newsroom_app(settings: Settings, accounts: AccountService) -> Flask:
    app = create_newsroom_app(settings, accounts=accounts)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def ada(accounts: AccountService) -> NewCredentials:
    return accounts.create("ada", ACTOR)


@pytest.fixture
def journalist(newsroom_app: Flask, ada: NewCredentials, clock: Clock) -> FlaskClient:
    client = newsroom_app.test_client()
    status, _ = log_in(client, ada, clock)
    assert status == 302
    return client
