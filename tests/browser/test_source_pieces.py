"""In-browser encrypted uploads that resume, in Chromium and Firefox ESR, over a Tor-like
circuit (tests/shaping_proxy.py: 256 KiB/s, 300 ms).

The circuit breaks twice in the middle of a 20 MiB submission, or the server restarts in
the middle of one: the page reconnects and carries on from the bytes the server holds,
without the source doing anything, and every item decrypts byte-exact with the gpg
command line. `-k firefox` or `-k chromium` runs one engine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.browser.conftest import Site
from tests.browser.engines import ENGINES, Tab, open_tab
from tests.browser.kit import BROWSER_ENCRYPTED, MARKER, decrypted, first_octets, wait_for
from tests.e2e.server import tipbox_server
from tests.helpers import Newsroom, store_files, temp_files
from tests.shaping_proxy import TOR_LIKE, Shaping, ShapingProxy
from tipbox.config import MIB

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.usefixtures("js_required")]

SUBMIT = "#submit-form button[type=submit]"
RECEIVED = "Thank you. Your submission was received"
RECONNECTING = "Reconnecting…"
MESSAGE = f"The ledger is attached. {MARKER}"
PANEL_TEXT = """() => { const p = document.getElementById('encrypt-panel');
                        return p ? p.innerText : ''; }"""


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def open_private_tab(engine: str, tmp_path: Path, request: pytest.FixtureRequest,
                     stack: ExitStack) -> Tab:
    return stack.enter_context(open_tab(engine, True, tmp_path,
                                        lambda: request.getfixturevalue("chromium")))


def new_codename(tab: Tab, url: str) -> None:
    tab.goto(url + "/")
    tab.click_and_load("a[href='/generate']")
    tab.click_and_load("form[action='/create'] button[type=submit]")
    assert tab.url().endswith("/submit")


def a_file(tmp_path: Path, size: int) -> Path:
    path = tmp_path / "ledger 2026.bin"
    path.write_bytes(MARKER.encode() + os.urandom(size - len(MARKER)))
    return path


def watch_until_received(tab: Tab, seconds: float) -> set[str]:
    """Read the progress panel until the confirmation shows; which of its states were
    seen (reconnecting, a rate with the time left). Bounded by ``seconds``."""
    seen: set[str] = set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            panel = str(tab.evaluate(PANEL_TEXT))
            if RECEIVED in tab.content():
                return seen
        except Exception:  # noqa: S112 - the page is navigating to the confirmation
            continue
        if RECONNECTING in panel:
            seen.add("reconnecting")
        if "per second" in panel and "left" in panel:
            seen.add("rate")
        time.sleep(0.2)
    raise AssertionError(f"no confirmation after {seconds} s; seen {seen}")


def all_decrypt_byte_exact(data_dir: Path, newsroom: Newsroom, document: Path) -> None:
    assert decrypted(data_dir, newsroom) == sorted(
        [("", MESSAGE.encode()), (document.name, document.read_bytes())])
    assert first_octets(data_dir) <= BROWSER_ENCRYPTED
    assert temp_files(data_dir) == []


def test_a_20_mib_upload_over_a_circuit_that_breaks_twice_completes_on_its_own(
        engine: str, site: Site, newsroom: Newsroom, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    document = a_file(tmp_path, 20 * MIB)
    # Each connection may carry 3 MiB; the first two that try to carry more are cut, in
    # the middle of a piece (2 MiB each).
    shaping = Shaping(TOR_LIKE.bytes_per_second, TOR_LIKE.latency_seconds,
                      cut_after_bytes=3 * MIB, max_cuts=2)
    with ExitStack() as stack:
        circuit = stack.enter_context(ShapingProxy(site.relay.port, shaping))
        tab = open_private_tab(engine, tmp_path, request, stack)
        new_codename(tab, circuit.url)
        tab.fill("#message", MESSAGE)
        tab.set_files("#files", [document])
        tab.click(SUBMIT)
        seen = watch_until_received(tab, seconds=400)
        assert circuit.cuts == 2
    # (Whether "reconnecting" showed depends on the engine: Chromium sends a request again
    # by itself once when a reused connection breaks, and the page never sees that cut.)
    assert "rate" in seen
    assert len(store_files(site.data_dir)) == 2
    all_decrypt_byte_exact(site.data_dir, newsroom, document)
    assert site.relay.found == set()  # ciphertext only, every piece


def test_an_upload_carries_on_after_the_server_restarted_in_its_middle(
        engine: str, newsroom: Newsroom, tmp_path: Path,
        request: pytest.FixtureRequest) -> None:
    document = a_file(tmp_path, 8 * MIB)
    data_dir = tmp_path / "data"
    env = {"TIPBOX_DATA_DIR": str(data_dir), "TIPBOX_KEYS_DIR": str(newsroom.keys_dir),
           "TIPBOX_SCRYPT_N": "16"}
    held = data_dir / "store" / ".tmp"
    with ExitStack() as stack:
        servers: Iterator[Path] = iter([tmp_path / "first.log", tmp_path / "second.log"])
        first = stack.enter_context(tipbox_server("source", env, next(servers)))
        circuit = stack.enter_context(ShapingProxy(first.port, TOR_LIKE))
        tab = open_private_tab(engine, tmp_path, request, stack)
        new_codename(tab, circuit.url)
        tab.fill("#message", MESSAGE)
        tab.set_files("#files", [document])
        tab.click(SUBMIT)
        # Restart once the server holds 3 MiB of the file: the old one stops (its workers
        # end their requests), `tipbox init` and the new workers sweep the store.
        wait_for(lambda: sum(p.stat().st_size for p in held.glob("*.part")) >= 3 * MIB,
                 seconds=120)
        first.process.terminate()
        first.process.wait(timeout=60)
        second = stack.enter_context(tipbox_server("source", env, next(servers)))
        circuit.upstream_port = second.port
        seen = watch_until_received(tab, seconds=300)
    assert "reconnecting" in seen
    all_decrypt_byte_exact(data_dir, newsroom, document)


FILE_ROW_ENCRYPTED = """() => {
    const bars = document.querySelectorAll('#encrypt-panel tr progress');
    return bars.length ? Number(bars[bars.length - 2].value) : 0; }"""


# Who sends, once it is known: 'worker', or 'page' when encrypt.js fell back to its thread.
SENT_BY = "() => document.getElementById('encrypt-panel').dataset.sentBy || ''"


def test_over_a_slow_circuit_the_page_encrypts_a_few_pieces_ahead_not_the_whole_file(
        engine: str, site: Site, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    # At 256 KiB/s a 2 MiB piece takes about 8 s to arrive, while the page could encrypt
    # the whole file in a second. It encrypts the next piece meanwhile (it does not wait
    # for the answer first), and holds the file back beyond that: OpenPGP.js left alone
    # would read all of it into the page's memory ahead of the upload.
    piece = 2 * MIB
    document = a_file(tmp_path, 16 * MIB)
    held_dir = site.data_dir / "store" / ".tmp"

    most_held = 0

    def held() -> int:
        # The most the server has held: at the finish its unfinished files become the
        # stored item and leave .tmp, which is not the page falling behind.
        nonlocal most_held
        most_held = max(most_held, sum(p.stat().st_size for p in held_dir.glob("*.part")))
        return most_held

    # How far the file's reading ran ahead of what the server held, at least and at most
    # (the server's bytes are read before and after the page's, as they only grow).
    least_ahead, most_ahead = 0, 0
    sent_by = set()
    with ExitStack() as stack:
        circuit = stack.enter_context(ShapingProxy(site.relay.port, TOR_LIKE))
        tab = open_private_tab(engine, tmp_path, request, stack)
        new_codename(tab, circuit.url)
        tab.set_files("#files", [document])
        tab.click(SUBMIT)
        deadline = time.monotonic() + 200
        while time.monotonic() < deadline:
            before = held()
            try:
                encrypted = int(tab.evaluate(FILE_ROW_ENCRYPTED))
                sent_by.add(tab.evaluate(SENT_BY))
                if RECEIVED in tab.content():
                    break
            except Exception:  # noqa: S112 - the page is navigating to the confirmation
                continue
            after = held()
            least_ahead = max(least_ahead, encrypted - after)
            most_ahead = max(most_ahead, encrypted - before)
            time.sleep(0.2)
        else:
            raise AssertionError("no confirmation after 200 s")
    # At most: the piece on its way (of which the server may hold none yet), the next one,
    # the two 1 MiB chunks OpenPGP.js may run ahead, and a chunk in each stream's queue.
    # Without the holding back, the whole file was read at once (16 MiB ahead).
    assert piece < least_ahead
    assert most_ahead <= 5 * piece < document.stat().st_size
    assert len(store_files(site.data_dir)) == 1
    # ... and all of it in encrypt.js's dedicated worker, not on the page's own thread
    # (whose heap Firefox let grow by hundreds of MiB for a large file).
    assert sent_by - {""} == {"worker"}
