"""A source's whole journey, and a circuit that breaks mid-upload, in both browsers.

Each test runs in Chromium and in Firefox ESR (the engine of Tor Browser), each in a
private window, with JavaScript on and off. `-k firefox` or `-k chromium` runs one engine.
Every item the site stored is decrypted with the gpg command line and compared byte for
byte with what the source chose.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser.conftest import Site
from tests.browser.engines import ENGINES, Tab, open_tab
from tests.browser.kit import (
    BROWSER_ENCRYPTED,
    MARKER,
    SERVER_ENCRYPTED,
    decrypted,
    first_octets,
    keep_screenshot,
    wait_for,
)
from tests.e2e.server import TIPBOX, received_count
from tests.helpers import Newsroom, gpg_decrypt, reply_service, store_files, temp_files
from tests.shaping_proxy import TOR_LIKE, Shaping, ShapingProxy
from tipbox.config import MIB, Settings
from tipbox.models import Source

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

MESSAGE = f"The minutes are on page 4.\nAsk about the second contract. {MARKER}"
REPLY = "We got it. Is page 3 the latest version?"
SUBMIT = "#submit-form button[type=submit]"
RECEIVED = "Thank you. Your submission was received"
RESTART_NOTE = "#restart-note"  # the no-JS warning that a broken upload starts again


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """A 3 MiB document with the marker in it, and a small text file named with it."""
    root = tmp_path_factory.mktemp("source-files")
    document = root / "contract scan.pdf"
    document.write_bytes(MARKER.encode() + os.urandom(3 * MIB))
    notes = root / f"notes {MARKER}.txt"
    notes.write_text(f"meeting notes, {MARKER}\nsecond line\n" * 100)
    return [document, notes]


@pytest.fixture(params=[True, False], ids=["js-on", "js-off"])
def javascript(request: pytest.FixtureRequest) -> bool:
    if request.param:
        request.getfixturevalue("js_required")
    return bool(request.param)


@pytest.fixture(params=ENGINES)
def tab(request: pytest.FixtureRequest, javascript: bool, tmp_path: Path) -> Iterator[Tab]:
    with open_tab(str(request.param), javascript, tmp_path,
                  lambda: request.getfixturevalue("chromium")) as opened:
        yield opened


def new_codename(tab: Tab, url: str) -> str:
    tab.goto(url + "/")
    tab.click_and_load("a[href='/generate']")
    codename = tab.inner_text("#codename-shown").strip()
    tab.click_and_load("form[action='/create'] button[type=submit]")
    assert tab.url().endswith("/submit")
    return codename


def digests(items: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    """Names and SHA-256 of contents, sorted: equal exactly when the bytes are, and short
    enough for a failure to be read."""
    return sorted((name, hashlib.sha256(data).hexdigest()) for name, data in items)


NO_PERSISTENT_STORAGE = """async () => {
    const storage = navigator.storage;
    return !storage || !(await storage.persisted()) && !(await storage.persist());
}"""


def test_source_sends_files_reads_a_reply_and_comes_back_with_the_codename(
        tab: Tab, javascript: bool, site: Site, newsroom: Newsroom, files: list[Path]) -> None:
    codename = new_codename(tab, site.url)
    assert tab.is_visible("#encrypt-note") is javascript
    assert tab.is_visible(RESTART_NOTE) is not javascript
    if javascript:  # a private window: the site may not keep anything for good
        assert tab.evaluate(NO_PERSISTENT_STORAGE) is True

    tab.fill("#message", MESSAGE)
    tab.set_files("#files", files)
    tab.click(SUBMIT)
    tab.wait_for_text(RECEIVED, seconds=120)
    assert received_count(tab.content()) == 3
    # Who encrypted each item: the browser with JavaScript on, the server without.
    assert first_octets(site.data_dir) <= (BROWSER_ENCRYPTED if javascript else SERVER_ENCRYPTED)

    # A journalist replies; the source reads it now and after logging in again.
    replies = reply_service(Settings.from_env(site.env))
    with replies.sessions() as db:
        source_id = db.query(Source).one().id
    replies.send(source_id, None, REPLY)
    tab.goto(site.url + "/submit")
    tab.wait_for_text(REPLY)
    tab.click_and_load("form[action='/logout'] button[type=submit]")
    tab.wait_for_text("You are logged out")
    assert REPLY not in tab.content()

    tab.goto(site.url + "/login")
    tab.fill("#codename", f"  {codename.upper()} ")
    tab.click_and_load("form[action='/login'] button[type=submit]")
    assert tab.url().endswith("/submit")
    assert received_count(tab.content()) == 3
    tab.wait_for_text(REPLY)
    tab.click_and_load("form[action='/logout'] button[type=submit]")
    tab.wait_for_text("You are logged out")

    # The newsroom's copy of the reply is stored beside the submission.
    assert digests(decrypted(site.data_dir, newsroom)) == digests(
        [("", MESSAGE.encode()), ("", REPLY.encode())] + [(f.name, f.read_bytes()) for f in files])
    assert temp_files(site.data_dir) == []
    # Every request went to the site's own origin (a data: URL goes nowhere); with
    # JavaScript on, the upload was ciphertext only (the relay never saw the marker), to
    # the in-browser route.
    requests = tab.request_log()
    assert all(url.startswith((site.url + "/", "data:")) for _, url in requests), requests
    uploads = [url.removeprefix(site.url) for method, url in requests
               if method == "POST" and url.removeprefix(site.url).startswith("/submit")]
    assert uploads == ([] if javascript else ["/submit"])
    # With JavaScript the ciphertext went in pieces (tests/browser/test_source_pieces.py).
    pieces = [url for method, url in requests if method == "PUT" and "/upload/" in url]
    assert bool(pieces) is javascript
    assert site.relay.found == (set() if javascript else {MARKER.encode()})


@pytest.fixture
def circuit(site: Site) -> Iterator[ShapingProxy]:
    """A Tor-like link (256 KiB/s, 300 ms) between the browser and the site."""
    with ShapingProxy(site.relay.port, TOR_LIKE) as proxy:
        yield proxy


def nothing_kept(site: Site) -> None:
    """Once the server has noticed the broken upload: no unfinished file, no item."""
    wait_for(lambda: temp_files(site.data_dir) == [])
    assert store_files(site.data_dir) == []


# With JavaScript on, a broken circuit no longer ends the upload: it resumes
# (tests/browser/test_source_pieces.py).
@pytest.mark.parametrize("javascript", [False], ids=["js-off"])
def test_a_circuit_that_breaks_mid_upload_keeps_nothing_and_the_source_is_told(
        tab: Tab, javascript: bool, site: Site, newsroom: Newsroom, files: list[Path],
        circuit: ShapingProxy) -> None:
    new_codename(tab, circuit.url)
    tab.fill("#message", MESSAGE)
    tab.set_files("#files", files)
    circuit.shaping = Shaping(TOR_LIKE.bytes_per_second, TOR_LIKE.latency_seconds,
                              cut_after_bytes=MIB)
    tab.click(SUBMIT)
    # The browser's own error page, for the form's POST that got no answer.
    wait_for(lambda: ("POST", circuit.url + "/submit") in tab.failed_requests(), seconds=120)
    assert circuit.cuts >= 1
    nothing_kept(site)

    circuit.shaping = TOR_LIKE  # the circuit is whole again
    tab.goto(circuit.url + "/submit")
    assert received_count(tab.content()) == 0
    assert tab.is_visible(RESTART_NOTE)
    assert site.relay.found == {MARKER.encode()}


UPLOAD_PROGRESS = """() => Math.max(0, ...Array.from(
    document.querySelectorAll('#encrypt-panel progress'), (bar) => bar.value / bar.max))"""


@pytest.mark.usefixtures("js_required")
@pytest.mark.parametrize("engine", ENGINES)
def test_a_slow_upload_shows_progress_can_be_cancelled_then_sent_by_the_plain_form(
        engine: str, site: Site, newsroom: Newsroom, circuit: ShapingProxy,
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # Large enough that most of its ciphertext is still in the browser, not in the socket
    # buffers on the way, when the source presses Cancel.
    video = tmp_path / "video.mp4"
    video.write_bytes(MARKER.encode() + os.urandom(16 * MIB))
    with open_tab(engine, True, tmp_path, lambda: request.getfixturevalue("chromium")) as tab:
        new_codename(tab, circuit.url)
        tab.fill("#message", "Here is the video I told you about.")
        tab.set_files("#files", [video])
        tab.click(SUBMIT)
        # The bars move while the ciphertext crawls through the circuit; then, cancelled,
        # the attempt leaves nothing behind.
        wait_for(lambda: tab.evaluate(UPLOAD_PROGRESS) > 0, seconds=60)
        tab.click("#encrypt-cancel")
        tab.wait_for_text("Cancelled. Nothing from this attempt was kept.")
        nothing_kept(site)
        assert site.relay.found == set()

        # The source chooses the plain form instead: only now does the plaintext travel,
        # to be encrypted by the server (over a faster circuit, to keep the test short).
        circuit.shaping = Shaping()
        tab.click("#encrypt-plain")
        tab.wait_for_text(RECEIVED, seconds=120)
    assert first_octets(site.data_dir) <= SERVER_ENCRYPTED
    assert digests(decrypted(site.data_dir, newsroom)) == digests(
        [("", b"Here is the video I told you about."), (video.name, video.read_bytes())])
    assert site.relay.found == {MARKER.encode()}


@pytest.mark.usefixtures("js_required")
@pytest.mark.parametrize("engine", ENGINES)
def test_a_page_loaded_before_a_key_rotation_is_told_to_reload_and_then_works(
        engine: str, site: Site, newsroom: Newsroom, second_newsroom_key: Newsroom,
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    with open_tab(engine, True, tmp_path, lambda: request.getfixturevalue("chromium")) as tab:
        new_codename(tab, site.url)
        tab.fill("#message", "sent after the rotation")

        env = {**os.environ, **site.env}
        for args in (["keys", "add", str(second_newsroom_key.public_key_file)],
                     ["keys", "activate", second_newsroom_key.fingerprint,
                      "--skip-proof-of-possession"],
                     ["keys", "retire", newsroom.fingerprint]):
            subprocess.run([TIPBOX, *args], env=env, check=True, capture_output=True)

        tab.click(SUBMIT)
        tab.wait_for("#encrypt-reload")
        assert "newsroom key changed" in tab.inner_text("#encrypt-panel")
        assert store_files(site.data_dir) == []
        if engine == "chromium":  # docs/screenshots/ shows Chromium (make screenshots)
            shot = tmp_path / "source-10-key-changed-js.png"
            tab.screenshot(shot)
            keep_screenshot(shot)

        tab.click_and_load("#encrypt-reload")
        tab.wait_for("#encrypt-note")
        tab.fill("#message", "sent after the rotation")
        tab.click(SUBMIT)
        tab.wait_for_text(RECEIVED)
    [path] = store_files(site.data_dir)
    plain = gpg_decrypt(path, second_newsroom_key.secret_home)
    assert plain.data == b"sent after the rotation"
    assert first_octets(site.data_dir) <= BROWSER_ENCRYPTED
    assert re.fullmatch(r"[0-9A-F]{16}", plain.recipients[0])
