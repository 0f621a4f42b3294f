"""A source in a real browser (Debian's Chromium, headless), JavaScript on and off.

The real server (`tipbox serve source`) runs on loopback behind a recording relay, so the
tests see every byte the browser sends. With JavaScript on, encrypt.js must encrypt
everything before it leaves the page: the plaintext marker may never cross the wire.
With JavaScript off, the same journey must work through the plain form (and the relay
does see the marker then, which shows that it would notice).
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import Site
from tests.browser.kit import (
    BROWSER_ENCRYPTED,
    MARKER,
    SERVER_ENCRYPTED,
    decrypted,
    first_octets,
    keep_screenshot,
    wait_for,
)
from tests.e2e.server import received_count
from tests.helpers import Newsroom, store_files, temp_files
from tipbox.config import MIB

pytestmark = [pytest.mark.e2e, pytest.mark.browser]



@pytest.fixture(scope="session")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 50 MiB file with the marker at its start and middle, and a small text file."""
    root = tmp_path_factory.mktemp("payloads")
    big = root / "interview recording.bin"
    with big.open("wb") as out:
        for i in range(50):
            out.write(MARKER.encode() if i in (0, 25) else b"")
            out.write(os.urandom(MIB - (len(MARKER) if i in (0, 25) else 0)))
    small = root / f"notes {MARKER}.txt"
    small.write_text(f"meeting notes, {MARKER}\nsecond line\n" * 200)
    return {"big": big, "small": small}


@dataclass
class Tab:
    """One browser context and page, with everything it asked for and complained about."""

    page: Any
    mode: str
    shots: Path
    requests: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def shot(self, name: str) -> None:
        path = self.shots / f"source-{name}-{self.mode}.png"
        self.page.wait_for_load_state("load")
        self.page.screenshot(path=str(path), full_page=True)
        keep_screenshot(path)

    def new_codename(self, url: str, shots: bool = False) -> str:
        page = self.page
        page.goto(url + "/")
        if shots:
            self.shot("1-index")
        page.click("text=Get a codename")
        codename = str(page.inner_text("#codename-shown")).strip()
        if shots:
            self.shot("2-codename")
        page.click("form[action='/create'] button[type=submit]")
        page.wait_for_url("**/submit")
        return codename


def open_tab(chromium: Any, javascript: bool, tmp_path: Path) -> Tab:
    context = chromium.new_context(java_script_enabled=javascript,
                                   viewport={"width": 900, "height": 700})
    tab = Tab(context.new_page(), "js" if javascript else "nojs", tmp_path)
    context.on("request", lambda req: tab.requests.append(req))
    tab.page.on("console", lambda msg: tab.errors.append(msg.text)
                if msg.type == "error" and not str(msg.location.get("url", ""))
                .endswith("/favicon.ico") else None)
    tab.page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
    return tab


def spool_everything(page: Any, url: str) -> None:
    """Load the submission page again, with a spool threshold of 0 bytes."""
    def rewrite(route: Any) -> None:
        response = route.fetch()
        body = re.sub(r'"spoolBytes": \d+', '"spoolBytes": 0', response.text())
        route.fulfill(response=response, body=body)
    page.route(url + "/submit", rewrite)
    page.goto(url + "/submit")
    page.unroute(url + "/submit")
    assert '"spoolBytes": 0' in page.content()


SPOOL_IN_USE = """async () => {
    for await (const name of (await navigator.storage.getDirectory()).keys()) {
        if (name.startsWith('tipbox-upload-')) {
            return true;
        }
    }
    return false;
}"""


def spooled_entries(page: Any) -> list[str]:
    return list(page.evaluate("""async () => {
        const names = [];
        for await (const name of (await navigator.storage.getDirectory()).keys()) {
            names.push(name);
        }
        return names;
    }"""))


MESSAGE = f"The minutes are on page 4.\nAsk about the second contract. {MARKER}"


@pytest.mark.parametrize("javascript", [True, False], ids=["js-on", "js-off"])
def test_source_submits_a_message_and_two_files_then_returns_with_the_codename(
        chromium: Any, site: Site, newsroom: Newsroom, payloads: dict[str, Path],
        tmp_path: Path, javascript: bool, request: pytest.FixtureRequest) -> None:
    if javascript:
        request.getfixturevalue("js_required")
    tab = open_tab(chromium, javascript, tmp_path)
    page = tab.page
    codename = tab.new_codename(site.url, shots=True)
    if javascript:
        # Spool even this 50 MiB file through private storage (OPFS), the path that 1 GiB
        # files take; the failure test below keeps to the in-memory path.
        spool_everything(page, site.url)
    assert page.is_visible("#encrypt-note") is javascript
    tab.shot("3-submit")

    page.fill("#message", MESSAGE)
    page.set_input_files("#files", [str(payloads["big"]), str(payloads["small"])])
    page.click("#submit-form button[type=submit]")
    if javascript:  # the ciphertext goes through private storage while it waits
        page.wait_for_function(SPOOL_IN_USE, polling=50, timeout=60_000)
    page.wait_for_selector("text=Thank you. Your submission was received", timeout=180_000)
    assert received_count(page.content()) == 3
    tab.shot("4-received")
    if javascript:
        assert spooled_entries(page) == []  # the spooled ciphertext was deleted

    page.click("text=Log out")
    page.wait_for_selector("text=You are logged out")
    tab.shot("5-logged-out")
    page.goto(site.url + "/login")
    tab.shot("6-login")
    page.fill("#codename", f"  {codename.upper()} ")
    page.click("form[action='/login'] button[type=submit]")
    page.wait_for_url("**/submit")
    assert received_count(page.content()) == 3
    tab.shot("7-returning")
    page.context.close()

    # What was stored decrypts with the gpg command line to the exact bytes and names.
    assert decrypted(site.data_dir, newsroom) == sorted([
        ("", MESSAGE.encode()),
        (payloads["big"].name, payloads["big"].read_bytes()),
        (payloads["small"].name, payloads["small"].read_bytes())])
    assert temp_files(site.data_dir) == []
    assert first_octets(site.data_dir) <= (BROWSER_ENCRYPTED if javascript else SERVER_ENCRYPTED)

    # Every request the pages made went to the site's own origin, and nowhere else.
    assert tab.requests
    assert all(r.url.startswith(site.url + "/") for r in tab.requests), \
        sorted({r.url for r in tab.requests})
    scripts = {r.url.removeprefix(site.url) for r in tab.requests if r.resource_type == "script"}
    # pow.js: the flood defence's hook, which asks nothing while the site is quiet. The
    # page's scripts, then the Worker that sends the pieces and what it imports.
    assert scripts == ({"/static/pow.js", "/static/vendor/openpgp.min.js",
                        "/static/encrypt-core.js", "/static/encrypt.js",
                        "/static/encrypt-worker.js"} if javascript else set())
    assert tab.errors == []  # no CSP violation, no script error

    # The upload, on the routes of its protocol: ciphertext in pieces to /upload/...
    # (started, pieces, finished), the plain form in one POST to /submit.
    uploads = [r for r in tab.requests if r.method == "POST"
               and r.url.removeprefix(site.url).startswith("/submit")]
    assert [r.url.removeprefix(site.url) for r in uploads] == ([] if javascript
                                                               else ["/submit"])
    pieces = [r for r in tab.requests if r.url.removeprefix(site.url).startswith("/upload")]
    if javascript:
        assert pieces[0].method == "POST" and pieces[-1].url.endswith("/finish")
        assert sum(r.method == "PUT" for r in pieces) >= 3  # three items, the big one in several
    else:
        assert pieces == []
    assert site.relay.bytes_sent > 50 * MIB  # the upload did cross the relay
    if javascript:
        # Nothing the browser sent carried the plaintext: not the message, not a file's
        # content, not a file's name. The relay is the witness: Playwright keeps no copy of
        # a body built from Blobs (post_data_buffer is None for the upload); where it does
        # keep one (the small forms), that must not hold the marker either.
        assert site.relay.found == set()
        for r in tab.requests:
            body = r.post_data_buffer
            assert body is None or MARKER.encode() not in body
    else:
        assert site.relay.found == {MARKER.encode()}  # so the relay would have seen it


PIECES = "**/upload/*/items/*"  # where encrypt.js sends each piece (tipbox.intake.pieces)


def held_upload(page: Any, held: list[Any]) -> None:
    """Hold encrypt.js's pieces in the browser: they never reach the server."""
    page.route(PIECES, lambda route: held.append(route)
               if route.request.method == "PUT" else route.continue_())


@pytest.mark.usefixtures("js_required")
def test_failure_cancel_and_the_plain_form_fallback_in_the_browser(
        chromium: Any, site: Site, newsroom: Newsroom, tmp_path: Path) -> None:
    tab = open_tab(chromium, True, tmp_path)
    page = tab.page
    tab.new_codename(site.url)
    secret_file = tmp_path / "ledger.csv"
    secret_file.write_text(f"amount,{MARKER}\n" * 100)
    page.fill("#message", "Here is the ledger I told you about.")
    page.set_input_files("#files", str(secret_file))

    # The connection breaks at every piece: the page says it is reconnecting, and the
    # source, tired of waiting, cancels. Nothing is kept, nothing was sent.
    page.route(PIECES, lambda route: route.abort("connectionreset")
               if route.request.method == "PUT" else route.continue_())
    page.click("#submit-form button[type=submit]")
    page.wait_for_selector("text=Reconnecting…")
    assert store_files(site.data_dir) == []
    tab.shot("8-upload-failed")
    page.click("#encrypt-cancel")
    page.wait_for_selector("text=Cancelled. Nothing from this attempt was kept.")
    assert page.is_visible("#encrypt-retry") and page.is_visible("#encrypt-plain")
    page.unroute(PIECES)
    wait_for(lambda: temp_files(site.data_dir) == [])

    # Try again, and cancel while a piece is under way.
    held: list[Any] = []
    held_upload(page, held)
    page.click("#encrypt-retry")
    wait_for(lambda: page.wait_for_timeout(50) or held)
    assert page.is_visible("#encrypt-cancel")
    tab.shot("9-sending")
    page.click("#encrypt-cancel")
    page.wait_for_selector("text=Cancelled. Nothing from this attempt was kept.")
    for route in held:  # before unroute, which would let a held request go on
        with contextlib.suppress(Exception):  # the browser may have dropped it already
            route.abort()
    page.unroute(PIECES)
    wait_for(lambda: temp_files(site.data_dir) == [])
    assert store_files(site.data_dir) == []
    assert site.relay.found == set()

    # In-browser encryption did not work out: the source chooses the plain form instead,
    # and only then does the plaintext travel (to be encrypted by the server).
    page.click("#encrypt-plain")
    page.wait_for_selector("text=Thank you. Your submission was received")
    assert first_octets(site.data_dir) <= SERVER_ENCRYPTED
    assert decrypted(site.data_dir, newsroom) == sorted([
        ("", b"Here is the ledger I told you about."), ("ledger.csv", secret_file.read_bytes())])
    assert site.relay.found == {MARKER.encode()}
    assert tab.errors == [] or all("ERR_CONNECTION_RESET" in e or "ERR_FAILED" in e
                                   for e in tab.errors), tab.errors
    page.context.close()
