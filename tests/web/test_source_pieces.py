"""The routes encrypt.js sends an upload in pieces through (tipbox.intake.pieces), over HTTP:
JSON in and out, the CSRF token in a header, a clear answer for each refusal.

The protocol's rules themselves are tested without HTTP in tests/intake/test_pieces.py."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from tests.helpers import (
    Newsroom,
    SourceBrowser,
    gpg_decrypt,
    lock_files,
    store_files,
    temp_files,
)
from tipbox.config import Settings
from tipbox.crypto.gpg import GnuPG

JSON = {"Accept": "application/json"}


class PieceClient:
    """What encrypt.js does, request by request."""

    def __init__(self, browser: SourceBrowser, fingerprint: str) -> None:
        self.browser = browser
        self.fingerprint = fingerprint
        self.token = browser.submit_token()

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {**JSON, "X-CSRFToken": self.token if token is None else token}

    def start(self, fingerprints: list[str] | None = None) -> TestResponse:
        return self.browser.client.post(
            "/upload", json={"fingerprints": fingerprints or [self.fingerprint],
                             "emptyFiles": 0}, headers=self.headers())

    def piece(self, upload: str, item: int, offset: int, data: bytes, *, last: bool = False,
              kind: str = "file", csrf: str | None = None) -> TestResponse:
        query = f"offset={offset}&kind={kind}" + ("&last=1" if last else "")
        return self.browser.client.put(f"/upload/{upload}/items/{item}?{query}", data=data,
                                       headers=self.headers(csrf),
                                       content_type="application/octet-stream")

    def status(self, upload: str) -> TestResponse:
        return self.browser.client.get(f"/upload/{upload}", headers=JSON)

    def finish(self, upload: str) -> TestResponse:
        return self.browser.client.post(f"/upload/{upload}/finish", headers=self.headers())

    def cancel(self, upload: str) -> TestResponse:
        return self.browser.client.post(f"/upload/{upload}/cancel", headers=self.headers())


def ciphertext(newsroom: Newsroom, tmp: Path, plaintext: bytes, name: str) -> bytes:
    out = tmp / f"{hashlib.sha256(plaintext).hexdigest()[:12]}.gpg"
    GnuPG(newsroom.secret_home).encrypt_bytes(plaintext, [newsroom.fingerprint], out,
                                              filename=name)
    return out.read_bytes()


def answer(resp: TestResponse, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert isinstance(body, dict)
    return body


@pytest.fixture
def source(app: Flask, newsroom: Newsroom) -> PieceClient:
    browser = SourceBrowser(app.test_client())
    browser.new_codename()
    return PieceClient(browser, newsroom.fingerprint)


def test_a_source_sends_a_file_in_pieces_and_the_newsroom_gets_it_whole(
        source: PieceClient, settings: Settings, newsroom: Newsroom, tmp_path: Path) -> None:
    plaintext = os.urandom(300_000)
    data = ciphertext(newsroom, tmp_path, plaintext, "report.pdf")
    started = answer(source.start(), 200)
    upload = started["upload"]
    assert started["pieceBytes"] >= 1024 * 1024
    held = 0
    for offset in range(0, len(data), 100_000):
        chunk = data[offset:offset + 100_000]
        done = answer(source.piece(upload, 0, offset, chunk,
                                   last=offset + 100_000 >= len(data)), 200)
        held = done["items"][0]["held"]
    assert held == len(data)
    assert answer(source.status(upload), 200)["items"] == [
        {"kind": "file", "held": len(data), "complete": True}]
    assert store_files(settings.data_dir) == []
    assert answer(source.finish(upload), 200) == {"next": "/submit"}
    (path,) = store_files(settings.data_dir)
    assert gpg_decrypt(path, newsroom.secret_home).data == plaintext
    page = source.browser.client.get("/submit").get_data(as_text=True)
    assert "1 file" in page  # the receipt, as after a one-request upload


def test_a_repeated_piece_is_answered_409_and_the_status_says_where_to_go_on(
        source: PieceClient, newsroom: Newsroom, tmp_path: Path) -> None:
    data = ciphertext(newsroom, tmp_path, os.urandom(50_000), "a.bin")
    upload = answer(source.start(), 200)["upload"]
    answer(source.piece(upload, 0, 0, data[:20_000]), 200)
    refused = answer(source.piece(upload, 0, 0, data[:20_000]), 409)
    assert "does not continue where the server's copy ends" in refused["error"]
    assert answer(source.status(upload), 200)["items"][0]["held"] == 20_000


def test_a_piece_without_the_csrf_token_is_refused_before_its_body_is_kept(
        source: PieceClient, settings: Settings, newsroom: Newsroom, tmp_path: Path) -> None:
    data = ciphertext(newsroom, tmp_path, os.urandom(50_000), "a.bin")
    upload = answer(source.start(), 200)["upload"]
    refused = answer(source.piece(upload, 0, 0, data[:20_000], csrf="forged"), 400)
    assert "expired or was sent from somewhere else" in refused["error"]
    assert answer(source.status(upload), 200)["items"] == []
    assert temp_files(settings.data_dir) == []


def test_starting_an_upload_without_the_csrf_token_is_refused(source: PieceClient,
                                                               settings: Settings) -> None:
    resp = source.browser.client.post("/upload", json={"fingerprints": [source.fingerprint]},
                                      headers=JSON)
    assert resp.status_code == 400
    assert lock_files(settings.data_dir) == []


def test_a_forged_piece_is_refused_with_the_reason_and_the_upload_ends(
        source: PieceClient, settings: Settings) -> None:
    upload = answer(source.start(), 200)["upload"]
    refused = answer(source.piece(upload, 0, 0, b"plain text, not an OpenPGP message" * 50,
                                  last=True), 400)
    assert "arrived unencrypted" in refused["error"]
    assert temp_files(settings.data_dir) == [] and lock_files(settings.data_dir) == []
    assert answer(source.status(upload), 410)["error"]


def test_a_page_with_old_keys_is_told_to_reload(source: PieceClient) -> None:
    refused = answer(source.start(["A" * 40]), 409)
    assert refused["reload"] is True


def test_another_sources_upload_is_gone_for_this_source(
        source: PieceClient, app: Flask, newsroom: Newsroom, settings: Settings,
        tmp_path: Path) -> None:
    data = ciphertext(newsroom, tmp_path, os.urandom(50_000), "a.bin")
    upload = answer(source.start(), 200)["upload"]
    answer(source.piece(upload, 0, 0, data[:20_000]), 200)
    other_browser = SourceBrowser(app.test_client())
    other_browser.new_codename()
    stranger = PieceClient(other_browser, newsroom.fingerprint)
    assert "no longer on the server" in answer(
        stranger.piece(upload, 0, 20_000, data[20_000:30_000]), 410)["error"]
    answer(stranger.status(upload), 410)
    answer(stranger.finish(upload), 410)
    answer(stranger.cancel(upload), 410)
    assert answer(source.status(upload), 200)["items"][0]["held"] == 20_000


def test_logging_out_ends_the_upload_and_later_pieces_are_told_the_session_ended(
        source: PieceClient, settings: Settings, newsroom: Newsroom, tmp_path: Path) -> None:
    data = ciphertext(newsroom, tmp_path, os.urandom(50_000), "a.bin")
    upload = answer(source.start(), 200)["upload"]
    answer(source.piece(upload, 0, 0, data[:20_000]), 200)
    source.browser.logout()
    assert temp_files(settings.data_dir) == [] and lock_files(settings.data_dir) == []
    ended = answer(source.piece(upload, 0, 20_000, data[20_000:30_000]), 401)
    assert "Your session ended" in ended["error"]
    assert temp_files(settings.data_dir) == []


def test_logging_in_again_ends_the_earlier_sessions_upload(
        source: PieceClient, settings: Settings, newsroom: Newsroom, tmp_path: Path) -> None:
    data = ciphertext(newsroom, tmp_path, os.urandom(50_000), "a.bin")
    codename = source.browser.new_codename()
    source.token = source.browser.submit_token()
    upload = answer(source.start(), 200)["upload"]
    answer(source.piece(upload, 0, 0, data[:20_000]), 200)
    source.browser.login(codename)
    assert temp_files(settings.data_dir) == []
    source.token = source.browser.submit_token()
    answer(source.status(upload), 410)


def test_cancel_removes_what_was_held(source: PieceClient, settings: Settings,
                                      newsroom: Newsroom, tmp_path: Path) -> None:
    data = ciphertext(newsroom, tmp_path, os.urandom(50_000), "a.bin")
    upload = answer(source.start(), 200)["upload"]
    answer(source.piece(upload, 0, 0, data[:20_000]), 200)
    assert answer(source.cancel(upload), 200) == {"cancelled": True}
    assert temp_files(settings.data_dir) == [] and lock_files(settings.data_dir) == []


def test_a_piece_with_a_bad_offset_or_kind_is_malformed(source: PieceClient) -> None:
    upload = answer(source.start(), 200)["upload"]
    for query in ("offset=-1", "offset=x", "offset=0&kind=secret"):
        resp = source.browser.client.put(f"/upload/{upload}/items/0?{query}", data=b"x",
                                         headers=source.headers())
        assert resp.status_code == 400, query
