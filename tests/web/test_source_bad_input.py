"""Bad input on the source interface: each gets a clear error page, and none of it keeps
half of anything or touches what an earlier submission stored."""

from __future__ import annotations

import io
import sqlite3
import unicodedata
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass

import pytest
from werkzeug.test import TestResponse

from tests.helpers import (
    Newsroom,
    SourceBrowser,
    csrf_from,
    gpg_decrypt,
    hidden,
    store_files,
    temp_files,
)
from tipbox.codenames import eff_words
from tipbox.config import KIB, Settings
from tipbox.web.source import create_source_app

CSRF_MESSAGE = "This form had expired or was sent from somewhere else"
MALFORMED_MESSAGE = "The upload was cut off or malformed."
BOUNDARY = b"----tipboxTestBoundaryQx7Yc2"

BrowserFactory = Callable[..., SourceBrowser]


# --- what is stored, before and after -------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """Everything a request could add to or harm: ciphertext bytes and row counts."""

    files: dict[str, bytes]
    items: int
    sources: int


def stored(settings: Settings) -> Stored:
    files = {p.name: p.read_bytes() for p in store_files(settings.data_dir)}
    with closing(sqlite3.connect(settings.data_dir / "tipbox.db")) as conn:
        items = conn.execute("SELECT count(*) FROM items").fetchone()[0]
        sources = conn.execute("SELECT count(*) FROM sources").fetchone()[0]
    return Stored(files, items, sources)


def submitted_earlier(browser: SourceBrowser, settings: Settings) -> Stored:
    """Log a new source in and make one good submission; return what is then stored."""
    browser.new_codename()
    resp = browser.submit("An earlier tip.", [(b"earlier evidence", "earlier.txt")])
    assert resp.status_code == 303, page(resp)
    before = stored(settings)
    assert len(before.files) == 2 and before.items == 2
    return before


def assert_nothing_kept(before: Stored, settings: Settings) -> None:
    assert stored(settings) == before, "the store or the database changed"
    assert temp_files(settings.data_dir) == [], "a half-written file was left in .tmp"


def page(resp: TestResponse) -> str:
    return resp.get_data(as_text=True)


def assert_refused(resp: TestResponse, status: int, phrase: str) -> None:
    html = page(resp)
    assert resp.status_code == status, html
    assert phrase in html
    assert "Traceback" not in html


@pytest.fixture
def browser_with(settings: Settings) -> BrowserFactory:
    """A browser on a source app whose settings differ from the default ones."""

    def build(**overrides: object) -> SourceBrowser:
        app = create_source_app(settings.with_overrides(**overrides))
        app.config["TESTING"] = True
        return SourceBrowser(app.test_client())

    return build


# --- hand-built multipart bodies, for what the test client cannot encode ---------------


def field_part(name: bytes, value: bytes) -> bytes:
    return (b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="' + name + b'"\r\n\r\n'
            + value + b"\r\n")


def file_part(filename: bytes, content: bytes, name: bytes = b"files") -> bytes:
    return (b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="' + name
            + b'"; filename="' + filename + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
            + content + b"\r\n")


def multipart(*parts: bytes, closed: bool = True) -> bytes:
    return b"".join(parts) + (b"--" + BOUNDARY + b"--\r\n" if closed else b"")


def post_body(browser: SourceBrowser, body: bytes, **kwargs: object) -> TestResponse:
    kwargs.setdefault("content_type", f"multipart/form-data; boundary={BOUNDARY.decode()}")
    return browser.client.post("/submit", data=body, **kwargs)


def decrypted_names(settings: Settings, newsroom: Newsroom, before: Stored) -> dict[str, bytes]:
    """File name -> plaintext of every ciphertext stored since ``before``."""
    new = [p for p in store_files(settings.data_dir) if p.name not in before.files]
    plain = [gpg_decrypt(p, newsroom.secret_home) for p in new]
    return {p.filename: p.data for p in plain}


# --- nothing to send, too long, too large, too many ----------------------------------


def test_empty_submission_is_refused_as_nothing_to_send(
        browser: SourceBrowser, settings: Settings) -> None:
    before = submitted_earlier(browser, settings)
    resp = browser.submit("")  # no message and the browser's empty file input
    assert_refused(resp, 400, "nothing to send")
    assert "Nothing from this attempt was kept." in page(resp)
    assert_nothing_kept(before, settings)


def test_white_space_message_and_only_empty_files_count_as_nothing_to_send(
        browser: SourceBrowser, settings: Settings) -> None:
    before = submitted_earlier(browser, settings)
    resp = browser.submit("  \r\n\t ", [(b"", "empty-a.txt"), (b"", "empty-b.txt")])
    assert_refused(resp, 400, "nothing to send")
    assert_nothing_kept(before, settings)


def test_message_over_the_limit_is_refused_and_nothing_is_kept(
        browser_with: BrowserFactory, settings: Settings) -> None:
    browser = browser_with(max_message_chars=50)
    before = submitted_earlier(browser, settings)
    resp = browser.submit("x" * 51, [(b"a file that must not be kept", "kept-not.txt")])
    assert_refused(resp, 400, "The message is longer than 50 characters")
    assert_nothing_kept(before, settings)


def test_message_at_exactly_the_limit_is_accepted(
        browser_with: BrowserFactory, settings: Settings) -> None:
    browser = browser_with(max_message_chars=50)
    before = submitted_earlier(browser, settings)
    assert browser.submit("é" * 50).status_code == 303  # characters, not bytes
    assert stored(settings).items == before.items + 1


def test_upload_over_the_limit_is_refused_and_nothing_is_kept(
        browser_with: BrowserFactory, settings: Settings) -> None:
    browser = browser_with(max_submission_bytes=64 * KIB)
    before = submitted_earlier(browser, settings)
    resp = browser.submit("with a big file", [(b"\x01" * (100 * KIB), "big.bin")])
    assert_refused(resp, 413, "That upload is too large")
    assert "Nothing from it was kept." in page(resp)
    # The limit in the reader's units, the way back, and the log-out button stay.
    assert "This site accepts up to 64.0 KiB and 1,000 files in one submission." in page(resp)
    assert 'href="/submit">Try again</a>' in page(resp)
    assert ">Log out</button>" in page(resp)
    assert_nothing_kept(before, settings)


def test_streamed_upload_without_length_is_cut_off_at_the_limit_and_nothing_is_kept(
        browser_with: BrowserFactory, settings: Settings) -> None:
    """Chunked transfer: no Content-Length to refuse up front, so the limit is enforced
    while reading, in the middle of a file that is already being encrypted."""
    browser = browser_with(max_submission_bytes=64 * KIB)
    before = submitted_earlier(browser, settings)
    body = multipart(field_part(b"csrf_token", browser.submit_token().encode()),
                     field_part(b"message", b"streamed"),
                     file_part(b"big.bin", b"\x02" * (200 * KIB)))
    resp = browser.client.post(
        "/submit", input_stream=io.BytesIO(body),
        content_type=f"multipart/form-data; boundary={BOUNDARY.decode()}",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True})
    assert_refused(resp, 413, "The upload is larger than allowed.")
    assert_nothing_kept(before, settings)


def test_body_longer_than_its_content_length_is_read_only_that_far_and_refused(
        browser: SourceBrowser, settings: Settings) -> None:
    """A Content-Length under the limit does not let a client send more after it: the
    rest is never read, so the form is incomplete and refused."""
    before = submitted_earlier(browser, settings)
    body = multipart(field_part(b"csrf_token", browser.submit_token().encode()),
                     file_part(b"a.bin", b"\x03" * (300 * KIB)))
    resp = post_body(browser, body, environ_overrides={"CONTENT_LENGTH": str(100 * KIB)})
    assert_refused(resp, 400, MALFORMED_MESSAGE)
    assert_nothing_kept(before, settings)


def test_150_files_in_one_submission_are_all_stored_and_decrypt_with_their_names(
        browser: SourceBrowser, settings: Settings, newsroom: Newsroom) -> None:
    before = submitted_earlier(browser, settings)
    files = [(f"contents of file {i}\n".encode() * (i + 1), f"note-{i:03}.txt")
             for i in range(150)]
    assert browser.submit("", files).status_code == 303
    assert stored(settings).items == before.items + 150
    got = decrypted_names(settings, newsroom, before)
    assert got == {name: data for data, name in files}
    assert temp_files(settings.data_dir) == []


def test_one_file_more_than_max_files_is_refused_and_nothing_is_kept(
        browser_with: BrowserFactory, settings: Settings) -> None:
    browser = browser_with(max_files=3)
    before = submitted_earlier(browser, settings)
    files = [(f"file {i}".encode(), f"f{i}.txt") for i in range(4)]
    resp = browser.submit("a message that must not be kept either", files)
    assert_refused(resp, 413, "more files than the 3 allowed at once")
    assert_nothing_kept(before, settings)


def test_exactly_max_files_is_accepted(browser_with: BrowserFactory, settings: Settings) -> None:
    browser = browser_with(max_files=3)
    before = submitted_earlier(browser, settings)
    files = [(f"file {i}".encode(), f"f{i}.txt") for i in range(3)]
    assert browser.submit("", files).status_code == 303
    assert stored(settings).items == before.items + 3


def test_flood_of_empty_parts_is_refused_before_reading_them_all(
        browser_with: BrowserFactory, settings: Settings) -> None:
    browser = browser_with(max_files=3)
    before = submitted_earlier(browser, settings)
    resp = browser.submit("hello", [(b"", f"e{i}.txt") for i in range(40)])
    assert_refused(resp, 413, "more parts in this upload than allowed")
    assert_nothing_kept(before, settings)


def test_zero_byte_file_is_skipped_and_counted_and_the_rest_is_kept(
        browser: SourceBrowser, settings: Settings, newsroom: Newsroom) -> None:
    before = submitted_earlier(browser, settings)
    resp = browser.submit("see attached", [(b"real content", "real.txt"), (b"", "empty.txt")])
    assert resp.status_code == 303
    confirmation = page(browser.client.get("/submit"))
    assert "1 empty file was skipped" in confirmation
    assert "1 message" in confirmation and "1 file." in confirmation
    got = decrypted_names(settings, newsroom, before)
    assert got == {"": b"see attached", "real.txt": b"real content"}


# --- file names ------------------------------------------------------------------------


def assert_sane_name(name: str) -> None:
    assert name
    assert "/" not in name and "\\" not in name
    assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") for ch in name)
    assert len(name.encode("utf-8")) <= 255
    assert name not in (".", "..")


LONG_ASCII = "a" * 996 + ".pdf"
LONG_CYRILLIC = "ж" * 996 + ".pdf"  # two bytes a character: cut on a character boundary

HOSTILE_NAMES = [
    pytest.param("../../etc/cron.d/evil.sh", "evil.sh", id="dot-dot-slash"),
    pytest.param("/etc/passwd", "passwd", id="absolute-posix"),
    pytest.param("C:\\Users\\jdoe\\Desktop\\a.pdf", "a.pdf", id="absolute-windows"),
    pytest.param("..\\..\\boot.ini", "boot.ini", id="dot-dot-backslash"),
    pytest.param("../..", "file-1", id="nothing-but-dots"),
    pytest.param("bell\x07tab\tesc\x1b[31m\x7fdel.txt", "belltabesc[31mdel.txt", id="control"),
    pytest.param("invoice\u202efdp.exe", "invoicefdp.exe", id="bidi-override"),
    pytest.param("zero\u200bwidth\ufeff\u2066.txt", "zerowidth.txt", id="invisible-format"),
    pytest.param(LONG_ASCII, "a" * 251 + ".pdf", id="1000-ascii-characters"),
    pytest.param(LONG_CYRILLIC, "ж" * 125 + ".pdf", id="1000-two-byte-characters"),
    pytest.param("résumé – 東京.pdf", "résumé – 東京.pdf", id="ordinary-unicode-kept"),
    # Browsers send a quote as %22; RFC 9110 clients escape it. Both still read as a quote.
    pytest.param('say %22hi%22.txt', 'say "hi".txt', id="percent-encoded-quote"),
    pytest.param('say \\"hi\\".txt', 'say "hi".txt', id="backslash-escaped-quote"),
]


@pytest.mark.parametrize(("raw", "expected"), HOSTILE_NAMES)
def test_hostile_file_name_is_stored_under_a_safe_name(
        browser: SourceBrowser, settings: Settings, newsroom: Newsroom,
        raw: str, expected: str) -> None:
    before = submitted_earlier(browser, settings)
    body = multipart(field_part(b"csrf_token", browser.submit_token().encode()),
                     file_part(raw.encode("utf-8"), b"the document"))
    assert post_body(browser, body).status_code == 303
    got = decrypted_names(settings, newsroom, before)
    assert list(got.values()) == [b"the document"]
    [name] = got
    assert_sane_name(name)
    assert name == expected


def test_nul_in_a_file_name_is_removed(
        browser: SourceBrowser, settings: Settings, newsroom: Newsroom) -> None:
    before = submitted_earlier(browser, settings)
    body = multipart(field_part(b"csrf_token", browser.submit_token().encode()),
                     file_part(b"report.pdf\x00.exe", b"the document"))
    assert post_body(browser, body).status_code == 303
    got = decrypted_names(settings, newsroom, before)
    assert got == {"report.pdf.exe": b"the document"}


def test_file_name_that_is_not_utf8_is_refused_and_nothing_is_kept(
        browser: SourceBrowser, settings: Settings) -> None:
    """Browsers send UTF-8 names from a UTF-8 page; raw Latin-1 bytes cannot be read as a
    header, so the whole upload is refused (cleanly) rather than guessed at."""
    before = submitted_earlier(browser, settings)
    body = multipart(field_part(b"csrf_token", browser.submit_token().encode()),
                     field_part(b"message", b"a message that must not be kept"),
                     file_part(b"caf\xe9 \xff\xfe.txt", b"the document"))
    assert_refused(post_body(browser, body), 400, MALFORMED_MESSAGE)
    assert_nothing_kept(before, settings)


# --- malformed bodies ------------------------------------------------------------------


def test_garbage_body_is_refused_as_malformed(
        browser: SourceBrowser, settings: Settings) -> None:
    before = submitted_earlier(browser, settings)
    resp = post_body(browser, b"this is not a form at all\r\n" * 500)
    assert_refused(resp, 400, MALFORMED_MESSAGE)
    assert_nothing_kept(before, settings)


@pytest.mark.parametrize("content_type", [
    "multipart/form-data",
    "multipart/form-data; boundary=",
    "multipart/form-data; boundary=" + "b" * 300,
    "application/x-www-form-urlencoded",
    "text/plain",
])
def test_body_without_a_usable_boundary_is_refused(
        browser: SourceBrowser, settings: Settings, content_type: str) -> None:
    before = submitted_earlier(browser, settings)
    body = multipart(field_part(b"csrf_token", browser.submit_token().encode()),
                     field_part(b"message", b"hello"))
    resp = post_body(browser, body, content_type=content_type)
    assert_refused(resp, 400, "The upload was not a well-formed form submission.")
    assert_nothing_kept(before, settings)


def test_body_without_its_closing_boundary_is_refused_and_nothing_is_kept(
        browser: SourceBrowser, settings: Settings) -> None:
    before = submitted_earlier(browser, settings)
    body = multipart(field_part(b"csrf_token", browser.submit_token().encode()),
                     field_part(b"message", b"a message"),
                     file_part(b"whole.txt", b"all of the file"), closed=False)
    assert_refused(post_body(browser, body), 400, MALFORMED_MESSAGE)
    assert_nothing_kept(before, settings)


def test_body_cut_off_in_the_middle_of_a_file_is_refused_and_nothing_is_kept(
        browser: SourceBrowser, settings: Settings) -> None:
    before = submitted_earlier(browser, settings)
    body = multipart(field_part(b"csrf_token", browser.submit_token().encode()),
                     field_part(b"message", b"a message already encrypted"),
                     file_part(b"first.bin", b"\x04" * (150 * KIB)),
                     file_part(b"cut.bin", b"\x05" * (300 * KIB)))
    resp = post_body(browser, body[: len(body) - 100 * KIB])
    assert_refused(resp, 400, MALFORMED_MESSAGE)
    assert_nothing_kept(before, settings)


def test_part_without_content_disposition_is_refused(
        browser: SourceBrowser, settings: Settings) -> None:
    before = submitted_earlier(browser, settings)
    body = multipart(field_part(b"csrf_token", browser.submit_token().encode()),
                     b"--" + BOUNDARY + b"\r\nContent-Type: text/plain\r\n\r\nhello\r\n")
    assert_refused(post_body(browser, body), 400, MALFORMED_MESSAGE)
    assert_nothing_kept(before, settings)


def test_message_that_is_not_utf8_is_refused_and_nothing_is_kept(
        browser: SourceBrowser, settings: Settings) -> None:
    before = submitted_earlier(browser, settings)
    body = multipart(field_part(b"csrf_token", browser.submit_token().encode()),
                     file_part(b"first.txt", b"a file before the message"),
                     field_part(b"message", b"caf\xe9 \xff\xfe"))
    assert_refused(post_body(browser, body), 400, "The message could not be read as text")
    assert_nothing_kept(before, settings)


# --- CSRF ------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "not-a-token", "forged." * 20])
def test_upload_without_a_valid_csrf_token_is_refused_and_nothing_is_kept(
        browser: SourceBrowser, settings: Settings, token: str | None) -> None:
    before = submitted_earlier(browser, settings)
    parts = [] if token is None else [field_part(b"csrf_token", token.encode())]
    body = multipart(*parts, field_part(b"message", b"forged"),
                     file_part(b"forged.txt", b"forged file"))
    assert_refused(post_body(browser, body), 400, CSRF_MESSAGE)
    assert_nothing_kept(before, settings)


def test_upload_with_another_sessions_csrf_token_is_refused(
        browser: SourceBrowser, settings: Settings) -> None:
    submitted_earlier(browser, settings)
    other = SourceBrowser(browser.client.application.test_client())
    other.new_codename()
    before = stored(settings)
    resp = browser.submit("forged", [(b"forged file", "forged.txt")], token=other.submit_token())
    assert_refused(resp, 400, CSRF_MESSAGE)
    assert_nothing_kept(before, settings)


def test_csrf_token_that_is_not_the_first_field_is_refused(
        browser: SourceBrowser, settings: Settings) -> None:
    before = submitted_earlier(browser, settings)
    body = multipart(field_part(b"message", b"the token comes too late"),
                     field_part(b"csrf_token", browser.submit_token().encode()),
                     file_part(b"late.txt", b"late file"))
    assert_refused(post_body(browser, body), 400, CSRF_MESSAGE)
    assert_nothing_kept(before, settings)


def test_csrf_token_sent_as_a_file_is_refused(
        browser: SourceBrowser, settings: Settings) -> None:
    before = submitted_earlier(browser, settings)
    body = multipart(file_part(b"token.txt", browser.submit_token().encode(), b"csrf_token"),
                     field_part(b"message", b"hello"))
    assert_refused(post_body(browser, body), 400, CSRF_MESSAGE)
    assert_nothing_kept(before, settings)


@pytest.mark.parametrize("token", [None, "wrong"])
def test_login_without_a_valid_csrf_token_is_refused(
        browser: SourceBrowser, settings: Settings, token: str | None) -> None:
    codename = browser.new_codename()
    assert browser.submit("first").status_code == 303
    browser.logout()
    before = stored(settings)
    data = {"codename": codename} | ({} if token is None else {"csrf_token": token})
    assert_refused(browser.client.post("/login", data=data), 400, CSRF_MESSAGE)
    assert browser.client.get("/submit").status_code == 302  # still logged out
    assert_nothing_kept(before, settings)


@pytest.mark.parametrize("token", [None, "wrong"])
def test_create_without_a_valid_csrf_token_makes_no_source(
        browser: SourceBrowser, settings: Settings, token: str | None) -> None:
    before = submitted_earlier(browser, settings)
    html = page(browser.client.get("/generate"))
    data = {"codename": hidden(html, "codename"), "mac": hidden(html, "mac")}
    if token is not None:
        data["csrf_token"] = token
    assert_refused(browser.client.post("/create", data=data), 400, CSRF_MESSAGE)
    assert_nothing_kept(before, settings)


@pytest.mark.parametrize("token", [None, "wrong"])
def test_logout_without_a_valid_csrf_token_does_not_log_out(
        browser: SourceBrowser, settings: Settings, token: str | None) -> None:
    before = submitted_earlier(browser, settings)
    data = {} if token is None else {"csrf_token": token}
    assert_refused(browser.client.post("/logout", data=data), 400, CSRF_MESSAGE)
    assert browser.client.get("/submit").status_code == 200  # a forged logout did nothing
    assert_nothing_kept(before, settings)


# --- codenames -------------------------------------------------------------------------


def login_with(browser: SourceBrowser, codename: str) -> TestResponse:
    token = csrf_from(page(browser.client.get("/login")))
    return browser.client.post("/login", data={"csrf_token": token, "codename": codename})


def test_wrong_codename_is_not_recognised(browser: SourceBrowser, settings: Settings) -> None:
    codename = browser.new_codename()
    browser.logout()
    before = stored(settings)
    words = codename.split()
    wrong = " ".join(reversed(words)) if words != words[::-1] else " ".join(eff_words()[:7])
    resp = login_with(browser, wrong)
    assert_refused(resp, 403, "That codename was not recognised")
    assert browser.client.get("/submit").status_code == 302
    assert_nothing_kept(before, settings)


@pytest.mark.parametrize(("codename", "message"), [
    pytest.param("", "Enter your codename.", id="empty"),
    pytest.param("   ", "Enter your codename.", id="blank"),
    pytest.param("abacus " * 1428 + "abcd", "That is much longer than a codename.", id="10000"),
])
def test_empty_or_absurd_codename_gets_a_clear_message(
        browser: SourceBrowser, codename: str, message: str) -> None:
    resp = login_with(browser, codename)
    assert_refused(resp, 400, message)
    assert browser.client.get("/submit").status_code == 302


def test_codename_that_is_not_seven_words_is_simply_not_recognised(
        browser: SourceBrowser) -> None:
    assert_refused(login_with(browser, "abacus abdomen"), 403, "That codename was not recognised")


def test_forged_codename_or_mac_on_create_makes_no_source(
        browser: SourceBrowser, settings: Settings) -> None:
    before = submitted_earlier(browser, settings)
    html = page(browser.client.get("/generate"))
    token, codename, mac = csrf_from(html), hidden(html, "codename"), hidden(html, "mac")
    chosen = " ".join(eff_words()[:7])  # a weak codename of the source's own choosing
    flipped = ("0" if mac[0] != "0" else "1") + mac[1:]
    forgeries = [
        (chosen, mac),  # someone else's MAC on a chosen codename
        (codename, flipped),  # a tampered MAC
        (codename, "0" * 64),
        (codename, ""),
        (codename, mac + "00"),
        (codename + " extra", mac),
        ("", mac),
        ("x" * 10_000, mac),
    ]
    for forged_codename, forged_mac in forgeries:
        resp = browser.client.post("/create", data={
            "csrf_token": token, "codename": forged_codename, "mac": forged_mac})
        assert_refused(resp, 400, "That codename was not one this site gave out")
    assert_nothing_kept(before, settings)


# --- methods ---------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    *[(m, p) for p in ("/", "/submit", "/login") for m in ("PUT", "DELETE", "PATCH")],
    ("GET", "/create"),
    ("GET", "/logout"),
    ("POST", "/"),
    ("POST", "/generate"),
])
def test_unexpected_method_gets_the_405_page(
        browser: SourceBrowser, settings: Settings, method: str, path: str) -> None:
    before = submitted_earlier(browser, settings)
    resp = browser.client.open(path, method=method, data={"message": "x"})
    assert_refused(resp, 405, "That action is not possible here")
    assert resp.headers.get("Allow")
    assert_nothing_kept(before, settings)
