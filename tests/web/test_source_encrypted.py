"""Items the source's browser encrypted (static/encrypt.js): served scripts, checks, storage.

The browser itself is tested in tests/browser/. Here the bodies encrypt.js sends are built
by hand, with ciphertext from gpg and from OpenPGP.js (run by Node), so that every way of
getting them wrong can be tried: each is refused with a clear page and keeps nothing.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from tests.e2e.server import encode_multipart
from tests.helpers import Newsroom, SourceBrowser, csrf_from, gpg_decrypt, store_files, temp_files
from tests.openpgpjs import openpgpjs_encrypt
from tipbox.config import Settings
from tipbox.crypto.gpg import GnuPG
from tipbox.crypto.keyring import keyring_for
from tipbox.web.browser_encryption import BrowserEncryption
from tipbox.web.source import create_source_app

BOUNDARY = "----tipboxEncryptedTest7Qx"


@pytest.fixture
def js_browser(js_app: Flask) -> SourceBrowser:
    browser = SourceBrowser(js_app.test_client())
    browser.new_codename()
    return browser


@pytest.fixture
def sender(app: Flask) -> SourceBrowser:
    """A logged-in source; encrypted bodies are accepted with or without the scripts."""
    browser = SourceBrowser(app.test_client())
    browser.new_codename()
    return browser


def gpg_encrypt(data: bytes, fingerprints: list[str], home: Path, tmp: Path,
                filename: str | None = None) -> bytes:
    """Ciphertext from our gpg wrapper, the same shape encrypt.js must send."""
    out = tmp / f"c-{hashlib.sha256(data + str(fingerprints).encode()).hexdigest()[:12]}.gpg"
    GnuPG(home).encrypt_bytes(data, fingerprints, out, filename=filename)
    return out.read_bytes()


def post_encrypted(browser: SourceBrowser, fingerprints: list[str], *,
                   message: bytes | None = None, files: Sequence[bytes] = (),
                   empty_files: int = 0, accept: str = "text/html",
                   marker: str = "1") -> TestResponse:
    """The body encrypt.js sends to its own route: token, fingerprints, count, then the
    items (and, as a page from before the route existed sends it, the marker)."""
    parts: list[tuple[str, str | None, bytes]] = [
        ("csrf_token", None, browser.submit_token().encode()),
        ("encrypted", None, marker.encode()),
        ("fingerprints", None, " ".join(fingerprints).encode()),
        ("empty_files", None, str(empty_files).encode()),
    ]
    if message is not None:
        parts.append(("message", "message.pgp", message))
    parts += [("files", f"file-{i}.pgp", data) for i, data in enumerate(files, start=1)]
    return browser.client.post(
        "/submit/encrypted", data=encode_multipart(BOUNDARY, parts),
        headers={"Accept": accept}, content_type=f"multipart/form-data; boundary={BOUNDARY}")


def stored_rows(settings: Settings) -> list[tuple[str, str, int, str]]:
    with closing(sqlite3.connect(settings.data_dir / "tipbox.db")) as conn:
        return conn.execute("SELECT id, kind, size, key_fingerprints FROM items "
                            "ORDER BY seq").fetchall()


def assert_nothing_kept(settings: Settings, resp: TestResponse, phrase: str,
                        status: int = 400) -> None:
    html = resp.get_data(as_text=True)
    assert resp.status_code == status, html
    assert phrase in html, html
    assert "Nothing from this attempt was kept" in html
    assert store_files(settings.data_dir) == []
    assert temp_files(settings.data_dir) == []
    assert stored_rows(settings) == []


# --- the submission page with and without the scripts -----------------------------------


def script_tags(html: str) -> list[str]:
    return re.findall(r"<script\b[^>]*>", html, re.IGNORECASE)


def test_submit_page_loads_pow_openpgpjs_and_encrypt_js_from_our_origin_with_integrity(
        js_browser: SourceBrowser, newsroom: Newsroom) -> None:
    resp = js_browser.client.get("/submit")
    html = resp.get_data(as_text=True)
    tags = script_tags(html)
    sources = [re.search(r'src="([^"]+)"', t) for t in tags]
    # pow.js first: encrypt.js asks it for the flood defence's proof (tipbox.flood).
    assert [m.group(1) for m in sources if m] == ["/static/pow.js",
                                                  "/static/vendor/openpgp.min.js",
                                                  "/static/encrypt-core.js",
                                                  "/static/encrypt.js"]
    for tag in tags:
        src = re.search(r'src="([^"]+)"', tag)
        if src is None:  # the two data blocks: never executed
            assert 'type="application/json"' in tag
            assert 'id="encrypt-config"' in tag or 'id="pow-config"' in tag
            continue
        with js_browser.client.get(src.group(1)) as served:
            assert served.status_code == 200
            assert served.mimetype == "text/javascript"
            body = served.get_data()
        digest = base64.b64encode(hashlib.sha384(body).digest()).decode()
        assert f'integrity="sha384-{digest}"' in tag
    assert not re.search(r"\son[a-z]+\s*=", html.lower()), "inline event handler"

    csp = dict(d.strip().split(" ", 1) for d in resp.headers["Content-Security-Policy"].split(";"))
    assert csp["script-src"] == "'self'"
    assert csp["connect-src"] == "'self'"
    assert csp["default-src"] == "'none'"
    assert csp["require-trusted-types-for"] == "'script'"
    # Workers from our origin only: pow.js's and encrypt.js's (encrypt-worker.js), each made
    # through its script's one Trusted Types policy.
    assert csp["worker-src"] == "'self'"
    assert csp["trusted-types"] == "tipbox-encrypt tipbox-pow"
    assert "unsafe" not in resp.headers["Content-Security-Policy"]

    config = json.loads(re.search(r'id="encrypt-config">(.*?)</script>', html, re.S).group(1))
    assert [k["fingerprint"] for k in config["keys"]] == [newsroom.fingerprint]
    assert config["keys"][0]["armored"].startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert config["uploadUrl"] == "/submit/encrypted"  # the plain form keeps /submit
    assert 'action="/submit"' in html
    assert "PRIVATE" not in html
    assert config["worker"] == "/static/encrypt-worker.js"


def test_the_encrypting_worker_may_load_its_scripts_and_upload_to_our_origin_only(
        js_browser: SourceBrowser) -> None:
    # A dedicated worker's CSP is its script's response header, not the page's.
    with js_browser.client.get("/static/encrypt-worker.js") as served:
        assert served.status_code == 200
        policy = served.headers["Content-Security-Policy"]
    csp = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert csp["default-src"] == "'none'"
    assert csp["script-src"] == "'self'" and csp["connect-src"] == "'self'"
    assert csp["require-trusted-types-for"] == "'script'"
    assert csp["trusted-types"] == "tipbox-worker"
    assert "unsafe" not in policy and "worker-src" not in csp
    # Every other static file keeps the CSP that allows nothing to run: the page's scripts
    # run under the page's CSP, and the worker's imports under the worker's.
    for other in ("/static/vendor/openpgp.min.js", "/static/encrypt-core.js",
                  "/static/encrypt.js"):
        with js_browser.client.get(other) as served_other:
            assert served_other.status_code == 200
            assert "script-src" not in served_other.headers["Content-Security-Policy"]


@pytest.mark.parametrize("path", ["/", "/generate", "/login", "/static/tipbox.css"])
def test_other_pages_keep_a_csp_without_any_script_source(js_app: Flask, path: str) -> None:
    with js_app.test_client().get(path) as resp:
        assert resp.status_code == 200
        assert "script-src" not in resp.headers["Content-Security-Policy"]
        assert "<script" not in resp.get_data(as_text=True)


def test_without_the_openpgpjs_bundle_the_site_runs_without_script(
        settings: Settings, tmp_path: Path) -> None:
    static = tmp_path / "static"
    static.mkdir()
    (static / "encrypt.js").write_text("/* ours */")
    browser = BrowserEncryption.load(static, tmp_path / "package-lock.json")
    assert not browser.enabled
    assert "make install" in (browser.problem or "")
    app = create_source_app(settings, browser=browser)
    source = SourceBrowser(app.test_client())
    source.new_codename()
    resp = source.client.get("/submit")
    assert "<script" not in resp.get_data(as_text=True)
    assert "script-src" not in resp.headers["Content-Security-Policy"]
    assert source.submit("still works", [(b"x", "x.txt")]).status_code == 303


def test_a_bundle_that_is_not_the_pinned_version_is_not_served(tmp_path: Path) -> None:
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "openpgp.min.js").write_text("/*! OpenPGP.js v6.0.0 - x */")
    for name in ("encrypt-core.js", "encrypt.js", "encrypt-worker.js"):
        (tmp_path / name).write_text("")
    lock = tmp_path / "package-lock.json"
    lock.write_text(json.dumps({"packages": {"node_modules/openpgp": {"version": "6.3.2"}}}))
    browser = BrowserEncryption.load(tmp_path, lock)
    assert not browser.enabled
    assert "6.0.0" in (browser.problem or "") and "6.3.2" in (browser.problem or "")


@pytest.mark.parametrize("missing", ["encrypt-core.js", "encrypt.js", "encrypt-worker.js"])
def test_without_one_of_our_three_scripts_the_site_runs_without_script(
        tmp_path: Path, missing: str) -> None:
    (tmp_path / "vendor").mkdir()
    (tmp_path / "vendor" / "openpgp.min.js").write_text("/*! OpenPGP.js v6.3.2 - x */")
    for name in {"encrypt-core.js", "encrypt.js", "encrypt-worker.js"} - {missing}:
        (tmp_path / name).write_text("")
    lock = tmp_path / "package-lock.json"
    lock.write_text(json.dumps({"packages": {"node_modules/openpgp": {"version": "6.3.2"}}}))
    browser = BrowserEncryption.load(tmp_path, lock)
    assert not browser.enabled
    assert str(tmp_path / missing) in (browser.problem or "")
    # With all three, the page gets OpenPGP.js, the core and encrypt.js, in that order.
    (tmp_path / missing).write_text("")
    loaded = BrowserEncryption.load(tmp_path, lock)
    assert [script.filename for script in loaded.scripts] == [
        "vendor/openpgp.min.js", "encrypt-core.js", "encrypt.js"]


# --- accepted: stored exactly as sent ----------------------------------------------------


def test_browser_encrypted_message_and_files_are_stored_as_sent_with_the_same_metadata(
        sender: SourceBrowser, settings: Settings, newsroom: Newsroom, tmp_path: Path) -> None:
    fpr = [newsroom.fingerprint]
    message = gpg_encrypt(b"Look at page 4.", fpr, newsroom.secret_home, tmp_path)
    doc = gpg_encrypt(b"%PDF-1.7 evidence", fpr, newsroom.secret_home, tmp_path, "memo.pdf")
    resp = post_encrypted(sender, fpr, message=message, files=[doc], empty_files=2)
    assert resp.status_code == 303, resp.get_data(as_text=True)

    page = sender.client.get("/submit").get_data(as_text=True)
    assert "1 message" in page and "1 file" in page
    assert "2 empty files were skipped" in page
    stored = {p.read_bytes() for p in store_files(settings.data_dir)}
    assert stored == {message, doc}  # not re-encrypted: byte for byte what was sent
    rows = stored_rows(settings)
    assert [(kind, size, fprs) for _, kind, size, fprs in rows] == [
        ("message", len(message), newsroom.fingerprint),
        ("file", len(doc), newsroom.fingerprint)]
    names = sorted((p.filename, p.data) for p in (gpg_decrypt(path, newsroom.secret_home)
                                                  for path in store_files(settings.data_dir)))
    assert names == [("", b"Look at page 4."), ("memo.pdf", b"%PDF-1.7 evidence")]


def test_openpgpjs_ciphertext_is_accepted_and_decrypts_with_gpg_to_bytes_and_name(
        sender: SourceBrowser, settings: Settings, newsroom: Newsroom, tmp_path: Path) -> None:
    armored = newsroom.public_key_file.read_text()
    data = bytes(range(256)) * 4000
    cipher = openpgpjs_encrypt(data, [armored], tmp_path / "js", "report (v2) ü.bin")
    note = openpgpjs_encrypt(b"hello from the browser", [armored], tmp_path / "js2")
    resp = post_encrypted(sender, [newsroom.fingerprint], message=note, files=[cipher],
                          accept="application/json")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.json == {"next": "/submit"}
    assert "Thank you" in sender.client.get("/submit").get_data(as_text=True)
    plain = sorted((p.filename, p.data) for p in (gpg_decrypt(path, newsroom.secret_home)
                                                  for path in store_files(settings.data_dir)))
    assert plain == [("", b"hello from the browser"), ("report (v2) ü.bin", data)]


def test_with_two_active_keys_an_item_to_both_is_accepted(
        settings: Settings, newsroom: Newsroom, second_newsroom_key: Newsroom,
        tmp_path: Path) -> None:
    both = [newsroom.fingerprint, second_newsroom_key.fingerprint]
    ring = keyring_for([newsroom.public_key_file.read_bytes(),
                        second_newsroom_key.public_key_file.read_bytes()], settings.gnupg_dir)
    source = SourceBrowser(create_source_app(settings, keyring=ring).test_client())
    source.new_codename()
    cipher = openpgpjs_encrypt(b"to both", [newsroom.public_key_file.read_text(),
                                            second_newsroom_key.public_key_file.read_text()],
                               tmp_path)
    assert post_encrypted(source, both[::-1], files=[cipher]).status_code == 303
    [(_, _, _, fprs)] = stored_rows(settings)
    assert sorted(fprs.split()) == sorted(both)
    assert gpg_decrypt(store_files(settings.data_dir)[0], second_newsroom_key.secret_home) \
        .data == b"to both"


# --- refused: a clear page, nothing kept ---------------------------------------------------

NOT_ENCRYPTED = "arrived unencrypted or was not an OpenPGP message"


def armored(data: bytes, label: str) -> bytes:
    body = base64.encodebytes(data).decode()
    return f"-----BEGIN PGP {label}-----\n\n{body}-----END PGP {label}-----\n".encode()


@pytest.mark.parametrize("case", ["plaintext", "armored message", "armored public key",
                                  "empty"])
def test_items_that_are_not_binary_openpgp_messages_are_refused(
        sender: SourceBrowser, settings: Settings, newsroom: Newsroom, tmp_path: Path,
        case: str) -> None:
    good = gpg_encrypt(b"secret", [newsroom.fingerprint], newsroom.secret_home, tmp_path)
    item = {"plaintext": b"the plain secret, not encrypted at all",
            "armored message": armored(good, "MESSAGE"),
            "armored public key": newsroom.public_key_file.read_bytes(),
            "empty": b""}[case]
    resp = post_encrypted(sender, [newsroom.fingerprint], files=[good, item])
    assert_nothing_kept(settings, resp, NOT_ENCRYPTED)


def test_item_encrypted_to_another_key_as_well_is_refused(
        sender: SourceBrowser, settings: Settings, newsroom: Newsroom,
        second_newsroom_key: Newsroom, tmp_path: Path) -> None:
    cipher = openpgpjs_encrypt(b"x", [newsroom.public_key_file.read_text(),
                                      second_newsroom_key.public_key_file.read_text()], tmp_path)
    resp = post_encrypted(sender, [newsroom.fingerprint], files=[cipher])
    assert_nothing_kept(settings, resp, "encrypted to a key that is not the newsroom")


def test_item_encrypted_only_to_another_key_is_refused(
        sender: SourceBrowser, settings: Settings, newsroom: Newsroom,
        second_newsroom_key: Newsroom, tmp_path: Path) -> None:
    cipher = gpg_encrypt(b"x", [second_newsroom_key.fingerprint],
                         second_newsroom_key.secret_home, tmp_path)
    resp = post_encrypted(sender, [newsroom.fingerprint], message=cipher)
    assert_nothing_kept(settings, resp, "encrypted to a key that is not the newsroom")


def test_item_missing_one_of_two_active_keys_is_refused(
        settings: Settings, newsroom: Newsroom, second_newsroom_key: Newsroom,
        tmp_path: Path) -> None:
    ring = keyring_for([newsroom.public_key_file.read_bytes(),
                        second_newsroom_key.public_key_file.read_bytes()], settings.gnupg_dir)
    source = SourceBrowser(create_source_app(settings, keyring=ring).test_client())
    source.new_codename()
    cipher = gpg_encrypt(b"x", [newsroom.fingerprint], newsroom.secret_home, tmp_path)
    resp = post_encrypted(source, [newsroom.fingerprint, second_newsroom_key.fingerprint],
                          files=[cipher])
    assert_nothing_kept(settings, resp, "not encrypted to every newsroom key")


@pytest.mark.parametrize(("case", "phrase"), [
    ("truncated", "cut off before its end"),
    ("only the session key", "cut off before its end"),
    ("extra packet after", "extra data after its end"),
    ("two messages", "extra data after its end"),
])
def test_truncated_or_extended_ciphertext_is_refused(
        sender: SourceBrowser, settings: Settings, newsroom: Newsroom, tmp_path: Path,
        case: str, phrase: str) -> None:
    good = gpg_encrypt(b"0123456789" * 1000, [newsroom.fingerprint], newsroom.secret_home,
                       tmp_path)
    pkesk_end = 2 + good[1]  # gpg writes the PKESK with a one-octet legacy length
    item = {"truncated": good[:-1],
            "only the session key": good[:pkesk_end],
            "extra packet after": good + b"\xcb\x06b\x00\x00\x00\x00\x00",  # a literal packet
            "two messages": good + good}[case]
    resp = post_encrypted(sender, [newsroom.fingerprint], files=[item])
    assert_nothing_kept(settings, resp, phrase)


def test_a_page_from_before_a_key_rotation_is_told_to_reload(
        sender: SourceBrowser, settings: Settings, newsroom: Newsroom,
        second_newsroom_key: Newsroom, tmp_path: Path) -> None:
    cipher = gpg_encrypt(b"x", [second_newsroom_key.fingerprint],
                         second_newsroom_key.secret_home, tmp_path)
    resp = post_encrypted(sender, [second_newsroom_key.fingerprint], files=[cipher])
    assert_nothing_kept(settings, resp, "The newsroom key changed after this page was loaded",
                        status=409)
    as_json = post_encrypted(sender, [second_newsroom_key.fingerprint], files=[cipher],
                             accept="application/json")
    assert as_json.status_code == 409
    assert as_json.json is not None and as_json.json["reload"] is True
    assert "newsroom key changed" in as_json.json["error"]


def test_encrypted_items_before_the_fingerprints_field_are_refused(
        sender: SourceBrowser, settings: Settings, newsroom: Newsroom, tmp_path: Path) -> None:
    cipher = gpg_encrypt(b"x", [newsroom.fingerprint], newsroom.secret_home, tmp_path)
    body = encode_multipart(BOUNDARY, [("csrf_token", None, sender.submit_token().encode()),
                                       ("encrypted", None, b"1"),
                                       ("files", "f.pgp", cipher),
                                       ("fingerprints", None, newsroom.fingerprint.encode())])
    resp = sender.client.post("/submit/encrypted", data=body,
                              content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert_nothing_kept(settings, resp, "newsroom key changed", status=409)


def test_encrypted_message_larger_than_any_allowed_message_is_refused(
        settings: Settings, newsroom: Newsroom, tmp_path: Path) -> None:
    small = settings.with_overrides(max_message_chars=10)
    app = create_source_app(small, browser=BrowserEncryption.off("test"))
    source = SourceBrowser(app.test_client())
    source.new_codename()
    cipher = gpg_encrypt(b"m" * 40_000, [newsroom.fingerprint], newsroom.secret_home, tmp_path)
    resp = post_encrypted(source, [newsroom.fingerprint], message=cipher)
    assert_nothing_kept(settings, resp, "larger than a message of the longest allowed length")


def test_json_answers_carry_the_refusal_for_encrypt_js(
        sender: SourceBrowser, newsroom: Newsroom) -> None:
    resp = post_encrypted(sender, [newsroom.fingerprint], files=[b"plain"],
                          accept="application/json")
    assert resp.status_code == 400
    assert resp.json is not None and NOT_ENCRYPTED in resp.json["error"]
    assert resp.json["reload"] is False


def test_a_csrf_failure_is_answered_before_anything_is_read(
        sender: SourceBrowser, settings: Settings, newsroom: Newsroom, tmp_path: Path) -> None:
    cipher = gpg_encrypt(b"x", [newsroom.fingerprint], newsroom.secret_home, tmp_path)
    body = encode_multipart(BOUNDARY, [("csrf_token", None, b"forged"),
                                       ("encrypted", None, b"1"),
                                       ("fingerprints", None, newsroom.fingerprint.encode()),
                                       ("files", "f.pgp", cipher)])
    resp = sender.client.post("/submit/encrypted", data=body,
                              content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert_nothing_kept(settings, resp, "This form had expired")


def test_the_plain_route_ignores_an_encrypted_field_and_encrypts_on_arrival(
        sender: SourceBrowser, settings: Settings, newsroom: Newsroom) -> None:
    # The route chooses the protocol: a stray "encrypted" field on /submit changes nothing.
    token = csrf_from(sender.client.get("/submit").get_data(as_text=True))
    resp = sender.client.post("/submit", data={
        "csrf_token": token, "message": "plain text, encrypted by the server",
        "encrypted": "1", "files": (io.BytesIO(b""), "")},
        content_type="multipart/form-data")
    assert resp.status_code == 303
    [path] = store_files(settings.data_dir)
    assert gpg_decrypt(path, newsroom.secret_home).data == b"plain text, encrypted by the server"


def test_a_bad_marker_value_is_refused(sender: SourceBrowser, settings: Settings,
                                       newsroom: Newsroom, tmp_path: Path) -> None:
    cipher = gpg_encrypt(b"x", [newsroom.fingerprint], newsroom.secret_home, tmp_path)
    resp = post_encrypted(sender, [newsroom.fingerprint], files=[cipher], marker="yes")
    assert_nothing_kept(settings, resp, "not a well-formed form submission")


def test_ciphertext_from_a_page_older_than_the_encrypted_route_is_not_taken_for_plain_files(
        sender: SourceBrowser, settings: Settings, newsroom: Newsroom, tmp_path: Path) -> None:
    # encrypt.js from before /submit/encrypted posted this very body to the form's action.
    cipher = gpg_encrypt(b"x", [newsroom.fingerprint], newsroom.secret_home, tmp_path)
    body = encode_multipart(BOUNDARY, [("csrf_token", None, sender.submit_token().encode()),
                                       ("encrypted", None, b"1"),
                                       ("fingerprints", None, newsroom.fingerprint.encode()),
                                       ("empty_files", None, b"0"),
                                       ("message", "message.pgp", cipher),
                                       ("files", "file-1.pgp", cipher)])
    resp = sender.client.post("/submit", data=body, headers={"Accept": "application/json"},
                              content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert resp.status_code == 409
    assert resp.json is not None and resp.json["reload"] is True
    assert "This page is out of date" in resp.json["error"]
    assert store_files(settings.data_dir) == [] and stored_rows(settings) == []
