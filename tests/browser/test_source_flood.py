"""A source gets through a flooded site in a real browser, with JavaScript on and off.

The site is flooded through its own routes (a stdlib client makes two codenames and two
submissions; the thresholds are one). With JavaScript on, the wait is made so long that
only the Web Worker's work (static/pow-worker.js) can open the next page in time, and the
address it opens carries the answer (``s=``); the difficulty stays small (four to ten
bits). With JavaScript off, the wait is a second and the page reloads itself with
``<meta http-equiv="refresh">``. Each test runs in Chromium and in Firefox ESR.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.browser.engines import ENGINES, Tab, open_tab
from tests.browser.kit import (
    BROWSER_ENCRYPTED,
    SERVER_ENCRYPTED,
    decrypted,
    first_octets,
    wait_for,
)
from tests.e2e.server import HttpSource, RunningServer, tipbox_server
from tests.helpers import Newsroom, store_files
from tipbox.config import Settings
from tipbox.db import make_engine, make_session_factory
from tipbox.models import SpentTicket

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

MESSAGE = "The tender was rigged; the minutes are attached."
SECOND = "And the second contract too."
RECEIVED = "Thank you. Your submission was received"
# What encrypt.js asks pow.js for before it sends; the first call gives the page's proof.
FIRST_PROOF = "async () => await window.tipboxProof()"


@pytest.fixture(params=[True, False], ids=["js-on", "js-off"])
def javascript(request: pytest.FixtureRequest) -> bool:
    if request.param:
        request.getfixturevalue("js_required")
    return bool(request.param)


@pytest.fixture
def flooded(tmp_path: Path, newsroom: Newsroom, javascript: bool) -> Iterator[
        tuple[RunningServer, dict[str, str]]]:
    tmp = tmp_path / "server-tmp"
    tmp.mkdir()
    env = {"TIPBOX_DATA_DIR": str(tmp_path / "data"), "TIPBOX_KEYS_DIR": str(newsroom.keys_dir),
           "TIPBOX_SCRYPT_N": "16", "TMPDIR": str(tmp),
           "TIPBOX_POW_CREATE_THRESHOLD": "1", "TIPBOX_POW_SUBMIT_THRESHOLD": "1",
           "TIPBOX_POW_MAX_BITS": "10",
           # JavaScript on: a wait of 16 s or more per ticket, so only the work passes
           # in time; off: a second.
           "TIPBOX_POW_HASHES_PER_SECOND": "1" if javascript else "1000000"}
    with tipbox_server("source", env, tmp_path / "server.log") as server:
        others = HttpSource(server.url)
        others.new_codename()
        HttpSource(server.url).new_codename()
        for n in range(2):
            assert others.submit(f"someone else's tip {n}", [])[0] == 303
        yield server, env


@pytest.fixture(params=ENGINES)
def tab(request: pytest.FixtureRequest, javascript: bool, tmp_path: Path) -> Iterator[Tab]:
    with open_tab(str(request.param), javascript, tmp_path,
                  lambda: request.getfixturevalue("chromium")) as opened:
        yield opened


def went_on(tab: Tab, selector: str, javascript: bool) -> None:
    """Wait on the wait page until ``selector`` shows on the page after it."""
    tab.wait_for(selector, seconds=90)
    # With JavaScript the worker opened the next page, with its answer; without, the
    # page's own refresh did, with the ticket alone.
    assert ("&s=" in tab.url()) is javascript, tab.url()


def test_a_source_creates_a_codename_and_submits_on_a_flooded_site(
        tab: Tab, javascript: bool, flooded: tuple[RunningServer, dict[str, str]],
        newsroom: Newsroom, tmp_path: Path) -> None:
    server, env = flooded
    tab.goto(server.url + "/generate")  # the wait page: it goes on by itself
    went_on(tab, "#codename-shown", javascript)
    tab.click_and_load("form[action='/create'] button[type=submit]")

    went_on(tab, "#submit-form", javascript)  # submissions are flooded too
    tab.fill("#message", MESSAGE)
    tab.click("#submit-form button[type=submit]")
    tab.wait_for_text(RECEIVED, seconds=120)

    sent = [MESSAGE.encode()]
    data_dir = Path(env["TIPBOX_DATA_DIR"])
    if javascript:
        # A second attempt from the same page (as after a failed upload): the page's own
        # proof is taken away first, so pow.js must fetch a fresh ticket and work it out.
        went_on(tab, "#submit-form", javascript)
        assert str(tab.evaluate(FIRST_PROOF)).startswith("1.submit.")
        stored = len(store_files(data_dir))
        tab.fill("#message", SECOND)
        tab.click("#submit-form button[type=submit]")
        # The first receipt is still on the page: wait for the store instead.
        wait_for(lambda: len(store_files(data_dir)) == stored + 1, seconds=120)
        tab.wait_for_text(RECEIVED, seconds=120)  # and let the browser's events arrive
        sent.append(SECOND.encode())

    ours = sorted(data for _, data in decrypted(data_dir, newsroom) if data in sent)
    assert ours == sorted(sent)
    assert first_octets(data_dir) & (BROWSER_ENCRYPTED if javascript else SERVER_ENCRYPTED)
    engine = make_engine(Settings.from_env(env).database_url)
    try:
        with make_session_factory(engine)() as db:
            spent = db.scalar(select(func.count()).select_from(SpentTicket))
    finally:
        engine.dispose()
    # One ticket for the codename, one per submission.
    assert spent == 1 + len(sent)
    requests = [(method, url.removeprefix(server.url)) for method, url in tab.request_log()]
    uploads = [url for method, url in requests
               if method == "POST" and (url.startswith("/submit") or url == "/upload")]
    # encrypt.js sends the proof in its header with the request that starts an upload in
    # pieces; the plain form in its address.
    if javascript:
        assert uploads == ["/upload", "/upload"]
        assert ("GET", "/submit/ticket") in requests
    else:
        assert len(uploads) == 1 and uploads[0].startswith("/submit?t=1.submit.")


PAGE_PROOF = "() => JSON.parse(document.getElementById('pow-config').textContent).proof"


@pytest.mark.parametrize("javascript", [True], ids=["js-on"])
def test_a_retry_whose_proof_was_spent_fetches_a_fresh_one_and_gets_through(
        tab: Tab, javascript: bool, flooded: tuple[RunningServer, dict[str, str]],
        newsroom: Newsroom) -> None:
    server, env = flooded
    on_the_submit_page_with_its_ticket_spent(tab, javascript, server, env)

    tab.fill("#message", MESSAGE)
    tab.click("#submit-form button[type=submit]")
    tab.wait_for_text(RECEIVED, seconds=120)

    data_dir = Path(env["TIPBOX_DATA_DIR"])
    assert [data for _, data in decrypted(data_dir, newsroom) if data == MESSAGE.encode()] \
        == [MESSAGE.encode()]
    requests = [(method, url.removeprefix(server.url)) for method, url in tab.request_log()]
    # The first start was refused (already used), the second carried a fresh proof.
    assert [r for r in requests if r == ("POST", "/upload")] == [("POST", "/upload")] * 2
    assert ("GET", "/submit/ticket") in requests


@pytest.mark.parametrize("javascript", [True], ids=["js-on"], indirect=True)
def test_a_fresh_proof_that_cannot_be_fetched_leaves_the_refusal_that_says_what_to_do(
        tab: Tab, javascript: bool, flooded: tuple[RunningServer, dict[str, str]]) -> None:
    # The circuit breaks again just as the page asks for a fresh ticket (pow.js fetches
    # it; the upload's own requests are XHR and go through).
    data_dir, stored = sent_with_a_spent_ticket(
        tab, javascript, flooded, "() => { window.fetch = () => Promise.reject("
        "new TypeError('NetworkError when attempting to fetch resource.')); }")
    tab.wait_for_text("already used once", seconds=120)

    status = tab.inner_text("#encrypt-panel .status")
    assert "Reload the page, let the check finish, then send again." in status
    assert "could not encrypt" not in status
    assert store_files(data_dir) == stored


@pytest.mark.parametrize("javascript", [True], ids=["js-on"], indirect=True)
def test_cancel_while_a_fresh_proof_is_awaited_cancels_and_keeps_nothing(
        tab: Tab, javascript: bool, flooded: tuple[RunningServer, dict[str, str]]) -> None:
    # The fresh ticket never comes (a circuit that stalls): the source gives up waiting.
    data_dir, stored = sent_with_a_spent_ticket(
        tab, javascript, flooded, "() => { window.fetch = () => { window.ticketAsked = true;"
        " return new Promise(() => {}); }; }")
    wait_for(lambda: tab.evaluate("() => window.ticketAsked === true"), seconds=60)
    tab.click("#encrypt-cancel")
    tab.wait_for_text("Cancelled. Nothing from this attempt was kept.")
    assert store_files(data_dir) == stored


def sent_with_a_spent_ticket(tab: Tab, javascript: bool,
                             flooded: tuple[RunningServer, dict[str, str]],
                             fetch: str) -> tuple[Path, list[Path]]:
    """Submits a message from a page whose ticket was spent, after ``fetch`` (a script)
    replaced the page's fetch, which pow.js asks the fresh ticket with. The data folder,
    and what it stored before."""
    server, env = flooded
    on_the_submit_page_with_its_ticket_spent(tab, javascript, server, env)
    data_dir = Path(env["TIPBOX_DATA_DIR"])
    stored = store_files(data_dir)
    tab.evaluate(fetch)
    tab.fill("#message", MESSAGE)
    tab.click("#submit-form button[type=submit]")
    return data_dir, stored


def on_the_submit_page_with_its_ticket_spent(tab: Tab, javascript: bool, server: RunningServer,
                                             env: dict[str, str]) -> None:
    """A new codename's submit page whose flood-defence ticket the server already spent,
    as when the answer to the request that starts the upload was lost on a broken
    circuit: the page does not know it."""
    tab.goto(server.url + "/generate")
    went_on(tab, "#codename-shown", javascript)
    tab.click_and_load("form[action='/create'] button[type=submit]")
    went_on(tab, "#submit-form", javascript)
    token = str(tab.evaluate(PAGE_PROOF)).split(" ")[0]
    engine = make_engine(Settings.from_env(env).database_url)
    try:
        with make_session_factory(engine).begin() as db:
            db.add(SpentTicket(nonce=token.split(".")[5],
                               expires_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)))
    finally:
        engine.dispose()
