"""The flood defence on the real server: `tipbox serve source` on loopback, a stdlib
client without JavaScript that follows ``<meta http-equiv="refresh">`` as a browser does.

The thresholds are one, so the second codename (or submission) in ten minutes floods the
site; a ticket's wait is a second. The proof of work that a script may send instead is
worked out here the way static/pow-worker.js does.
"""

from __future__ import annotations

import html
import itertools
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import HttpSource, RunningServer, encode_multipart, tipbox_server
from tests.helpers import Newsroom, csrf_from, gpg_decrypt, hidden, store_files
from tipbox.flood import Ticket, solves

pytestmark = pytest.mark.e2e

REFRESH_RE = re.compile(r'<meta http-equiv="refresh" content="(\d+); url=([^"]+)">')
MAX_WAITS = 5  # a wait page that sends a browser on more often than this is a bug


@pytest.fixture
def server(tmp_path: Path, newsroom: Newsroom) -> Iterator[RunningServer]:
    env = {"TIPBOX_DATA_DIR": str(tmp_path / "data"), "TIPBOX_KEYS_DIR": str(newsroom.keys_dir),
           "TIPBOX_SCRYPT_N": "16", "TIPBOX_POW_CREATE_THRESHOLD": "1",
           "TIPBOX_POW_SUBMIT_THRESHOLD": "1", "TIPBOX_POW_MAX_BITS": "10",
           "TIPBOX_POW_HASHES_PER_SECOND": "1000000"}
    with tipbox_server("source", env, tmp_path / "server.log") as running:
        yield running


def follow(client: HttpSource, path: str) -> tuple[str, int]:
    """GET ``path`` and follow wait pages the way a browser without JavaScript does:
    sleep as long as the refresh says, then load its address. The page reached, and how
    many waits it took."""
    _, page, _ = client.request(path)
    for waits in range(MAX_WAITS + 1):
        found = REFRESH_RE.search(page)
        if found is None:
            return page, waits
        time.sleep(int(found.group(1)))
        status, page, _ = client.request(html.unescape(found.group(2)))
        assert status == 200
    raise AssertionError(f"still waiting after {MAX_WAITS} waits")


def create_form(page: str) -> dict[str, str]:
    def value(name: str) -> str:
        found = re.search(rf'name="{name}" type="hidden" value="([^"]*)"', page)
        assert found, name
        return found.group(1)

    return {"csrf_token": csrf_from(page), "codename": hidden(page, "codename"),
            "mac": hidden(page, "mac"), "ticket": value("ticket"),
            "solution": value("solution")}


def post_submission(client: HttpSource, action: str, token: str, message: str) -> int:
    boundary = "----tipboxflood" + secrets.token_hex(8)
    body = encode_multipart(boundary, [("csrf_token", None, token.encode()),
                                       ("message", None, message.encode())])
    status, _, _ = client.request(action, body, {
        "Content-Type": f"multipart/form-data; boundary={boundary}"})
    return status


def test_a_client_without_javascript_follows_the_waits_and_gets_through_a_flood(
        server: RunningServer, tmp_path: Path, newsroom: Newsroom) -> None:
    first = HttpSource(server.url)
    page, waits = follow(first, "/generate")
    assert waits == 0  # quiet: no wait, not even a round trip more
    assert first.post_form("/create", create_form(page))[0] == 302
    assert HttpSource(server.url).new_codename()  # the second: the site is now flooded

    source = HttpSource(server.url)
    page, waits = follow(source, "/generate")
    assert waits >= 1 and 'id="codename-shown"' in page
    assert source.post_form("/create", create_form(page))[0] == 302

    # One submission while quiet, then the site is flooded for submissions too.
    form_page, waits = follow(source, "/submit")
    assert waits == 0 and 'action="/submit"' in form_page
    assert post_submission(source, "/submit", csrf_from(form_page), "the first tip") == 303
    assert post_submission(source, "/submit", csrf_from(form_page), "the second tip") == 303
    form_page, waits = follow(source, "/submit")
    assert waits >= 1
    action = html.unescape(re.search(r'id="submit-form" method="post" action="([^"]+)"',
                                     form_page).group(1))
    assert post_submission(source, action, csrf_from(form_page), "the third tip") == 303
    refused = post_submission(source, "/submit", csrf_from(form_page), "without a ticket")
    assert refused == 429
    messages = sorted(gpg_decrypt(path, newsroom.secret_home).data
                      for path in store_files(tmp_path / "data"))
    assert messages == [b"the first tip", b"the second tip", b"the third tip"]


def test_a_script_that_works_the_ticket_out_gets_through_once(server: RunningServer) -> None:
    HttpSource(server.url).new_codename()
    HttpSource(server.url).new_codename()
    client = HttpSource(server.url)
    _, wait_page, _ = client.request("/generate")
    config = json.loads(re.search(r'id="pow-config">(.*?)</script>', wait_page, re.S).group(1))
    ticket = Ticket("create", config["bits"], 0, 0, "", config["ticket"])
    solution = next(str(n) for n in itertools.count() if solves(ticket, str(n)))
    status, page, _ = client.request(f"{config['next']}&s={solution}")
    assert status == 200 and 'id="codename-shown"' in page
    form = create_form(page)
    assert client.post_form("/create", form)[0] == 302

    again = HttpSource(server.url)
    form["csrf_token"] = csrf_from(again.request("/login")[1])
    status, text, _ = again.post_form("/create", form)
    assert status == 409 and "already used once" in text
    form["ticket"] = form["ticket"].replace("1.create.", "1.submit.", 1)
    status, text, _ = again.post_form("/create", form)
    assert status == 403 and "not made by this site for this page" in text
