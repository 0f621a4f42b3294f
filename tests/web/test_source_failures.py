"""When the server itself fails mid-upload (a full disk, a broken store, a lost database),
the source gets a clear answer, as a page or as JSON for encrypt.js, and nothing is kept.

The faults are real: a filesystem that fills up, a store folder that is not a folder, a
database table that is gone. The admin's log names the failure and a short cause, never
what the source sent.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from tests.helpers import Newsroom, SourceBrowser, mounted_tmpfs, store_files, temp_files
from tests.web.test_source_encrypted import gpg_encrypt, post_encrypted
from tipbox.config import Settings
from tipbox.web.browser_encryption import BrowserEncryption
from tipbox.web.source import create_source_app

SECRET = "the-source-typed-this-7d1e"
DISK_FULL = "its storage is full"
STORE_FAILED = "could not store this submission"
DATABASE_DOWN = "database is not available"


@pytest.fixture
def full_store(settings: Settings) -> Iterator[Path]:
    """The store on a real filesystem of 256 KiB: a larger upload meets ENOSPC. (Uploads
    stay under 500 KiB, above which the test client spools its body to a temp file.)"""
    with mounted_tmpfs(settings.store_dir, "256k") as store:
        yield store


def source_on(settings: Settings) -> SourceBrowser:
    app = create_source_app(settings, browser=BrowserEncryption.off("not under test"))
    app.config["TESTING"] = True
    browser = SourceBrowser(app.test_client())
    browser.new_codename()
    return browser


def item_rows(settings: Settings) -> int:
    with closing(sqlite3.connect(settings.data_dir / "tipbox.db")) as conn:
        return int(conn.execute("SELECT count(*) FROM items").fetchone()[0])


def assert_page(resp: TestResponse, status: int, phrase: str) -> None:
    html = resp.get_data(as_text=True)
    assert resp.status_code == status, html
    assert phrase in html and "Nothing from this attempt was kept" in html


def assert_json(resp: TestResponse, status: int, phrase: str) -> None:
    """What encrypt.js reads: the message to show, and no reload (the keys are fine)."""
    assert resp.status_code == status
    assert resp.json is not None and phrase in resp.json["error"]
    assert resp.json["reload"] is False


def assert_logged_without_content(caplog: pytest.LogCaptureFixture, *words: str) -> None:
    for word in words:
        assert word in caplog.text, caplog.text
    assert SECRET not in caplog.text
    assert "big.bin" not in caplog.text


@pytest.mark.usefixtures("full_store")
def test_a_full_disk_on_the_plain_path_says_so_and_keeps_nothing(
        settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    source = source_on(settings.with_overrides(min_free_bytes=0))  # ENOSPC, not the reserve
    with caplog.at_level(logging.ERROR):
        resp = source.submit(SECRET, [(os.urandom(400 * 1024), "big.bin")])
    assert_page(resp, 507, DISK_FULL)
    assert store_files(settings.data_dir) == [] and temp_files(settings.data_dir) == []
    assert item_rows(settings) == 0
    assert_logged_without_content(caplog, "StorageFull", "ENOSPC")
    # Space again: the same source can send.
    assert source.submit("small", []).status_code == 303


@pytest.mark.usefixtures("full_store")
def test_a_full_disk_on_the_encrypted_path_answers_encrypt_js_in_json(
        settings: Settings, newsroom: Newsroom, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    source = source_on(settings.with_overrides(min_free_bytes=0))  # ENOSPC, not the reserve
    cipher = gpg_encrypt(os.urandom(400 * 1024), [newsroom.fingerprint],
                         newsroom.secret_home, tmp_path)
    with caplog.at_level(logging.ERROR):
        resp = post_encrypted(source, [newsroom.fingerprint], files=[cipher],
                              accept="application/json")
    assert_json(resp, 507, DISK_FULL)
    assert temp_files(settings.data_dir) == [] and item_rows(settings) == 0
    assert_logged_without_content(caplog, "StorageFull", "ENOSPC")


def test_a_store_that_cannot_be_written_gets_its_own_answer(
        app: Flask, settings: Settings, newsroom: Newsroom, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    source = SourceBrowser(app.test_client())
    source.new_codename()
    cipher = gpg_encrypt(b"x" * 5000, [newsroom.fingerprint], newsroom.secret_home, tmp_path)
    tmp = settings.store_dir / ".tmp"
    tmp.rmdir()
    tmp.write_text("not a folder")  # every temp file in it now fails with ENOTDIR
    with caplog.at_level(logging.ERROR):
        page = post_encrypted(source, [newsroom.fingerprint], files=[cipher])
        as_json = post_encrypted(source, [newsroom.fingerprint], files=[cipher],
                                 accept="application/json")
    assert_page(page, 503, STORE_FAILED)
    assert_json(as_json, 503, STORE_FAILED)
    assert store_files(settings.data_dir) == [] and item_rows(settings) == 0
    assert_logged_without_content(caplog, "StoreError", "ENOTDIR")


def test_a_database_that_fails_at_commit_gets_its_own_answer(
        app: Flask, settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    source = SourceBrowser(app.test_client())
    source.new_codename()
    token = source.submit_token()
    with closing(sqlite3.connect(settings.data_dir / "tipbox.db")) as conn:
        conn.execute("DROP TABLE items")  # the session and the source are still there
        conn.commit()
    with caplog.at_level(logging.ERROR):
        resp = source.submit(SECRET, [(b"evidence" * 1000, "big.bin")], token=token)
        as_json = source.client.post(
            "/submit", data={"csrf_token": token, "message": SECRET},
            headers={"Accept": "application/json"}, content_type="multipart/form-data")
    assert_page(resp, 503, DATABASE_DOWN)
    assert_json(as_json, 503, DATABASE_DOWN)
    assert store_files(settings.data_dir) == [] and temp_files(settings.data_dir) == []
    assert_logged_without_content(caplog, "DatabaseUnavailable", "OperationalError")


def test_a_database_that_is_gone_outside_the_upload_gets_the_same_answer(
        app: Flask, settings: Settings) -> None:
    source = SourceBrowser(app.test_client())
    source.new_codename()
    with closing(sqlite3.connect(settings.data_dir / "tipbox.db")) as conn:
        conn.execute("DROP TABLE sources")
        conn.commit()
    resp = source.client.get("/submit")  # login_required looks the source up
    assert resp.status_code == 503
    assert DATABASE_DOWN in resp.get_data(as_text=True)
