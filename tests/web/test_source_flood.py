"""The flood defence in the source interface (tipbox.flood, tipbox.web.source.flood_gate).

The site is flooded here by its own routes: with thresholds of two, the third codename
(or submission) in ten minutes makes the next one need a ticket. The tickets' clock is a
number the tests move on; nothing here sleeps.
"""

from __future__ import annotations

import html as html_lib
import itertools
import json
import re
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.helpers import (
    Newsroom,
    SecondsClock,
    SourceBrowser,
    csrf_from,
    gpg_decrypt,
    hidden,
    store_files,
)
from tipbox.config import Settings
from tipbox.flood import TICKET_SECONDS, Ticket, solves
from tipbox.web.browser_encryption import BrowserEncryption
from tipbox.web.source import create_source_app

START = SecondsClock.START
REFRESH_RE = re.compile(r'<meta http-equiv="refresh" content="(\d+); url=([^"]+)">')


@pytest.fixture
def clock() -> SecondsClock:
    return SecondsClock()


@pytest.fixture
def flood_app(settings: Settings, clock: SecondsClock) -> Flask:
    """Proof of work past two codenames or two submissions in ten minutes, of four to
    ten bits; a browser without JavaScript waits a second per 64 hashes."""
    low = settings.with_overrides(pow_create_threshold=2, pow_submit_threshold=2,
                                  pow_max_bits=10, pow_hashes_per_second=64)
    app = create_source_app(low, browser=BrowserEncryption.off("not under test"),
                            clock=clock)
    app.config["TESTING"] = True
    return app


def flood_creations(app: Flask, count: int = 3) -> None:
    """Codenames made by other visitors while the site is still quiet."""
    for _ in range(count):
        SourceBrowser(app.test_client()).new_codename()


def follow_waits(client: FlaskClient, clock: SecondsClock, path: str) -> TestResponse:
    """What a browser without JavaScript does: wait as long as the page says, then load
    the address its meta refresh names."""
    page = client.get(path)
    for _ in range(3):
        found = REFRESH_RE.search(page.get_data(as_text=True))
        if found is None:
            return page
        clock.now += int(found.group(1))
        page = client.get(html_lib.unescape(found.group(2)))
    raise AssertionError("still waiting after three waits")


def work_config(page: TestResponse) -> dict[str, object]:
    found = re.search(r'id="pow-config">(.*?)</script>', page.get_data(as_text=True), re.S)
    assert found, "the wait page offers no work to a browser with JavaScript"
    config: dict[str, object] = json.loads(found.group(1))
    return config


def work_out(token: str, bits: int) -> str:
    """What static/pow-worker.js does, the slow way."""
    ticket = Ticket("", bits, 0, 0, "", token)
    return next(str(n) for n in itertools.count() if solves(ticket, str(n)))


def create_form(page: TestResponse) -> dict[str, str]:
    html = page.get_data(as_text=True)
    return {"csrf_token": csrf_from(html), "codename": hidden(html, "codename"),
            "mac": hidden(html, "mac"), "ticket": _value(html, "ticket"),
            "solution": _value(html, "solution")}


def _value(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" type="hidden" value="([^"]*)"', html)
    assert found, f"no field {name}"
    return found.group(1)


def test_a_quiet_site_asks_nothing_and_adds_no_round_trip(flood_app: Flask) -> None:
    flood_creations(flood_app, count=2)  # at the threshold, not over it
    client = flood_app.test_client()
    page = client.get("/generate")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="codename-shown"' in html
    assert "refresh" not in html and "pow-config" not in html
    assert _value(html, "ticket") == ""
    assert client.post("/create", data=create_form(page)).status_code == 302
    submit_page = client.get("/submit").get_data(as_text=True)
    assert 'action="/submit"' in submit_page


def test_under_flood_a_source_without_javascript_waits_then_creates_and_submits(
        flood_app: Flask, clock: SecondsClock, settings: Settings, newsroom: Newsroom) -> None:
    flood_creations(flood_app)
    client = flood_app.test_client()
    wait = client.get("/generate")
    html = wait.get_data(as_text=True)
    assert wait.status_code == 200 and 'id="codename-shown"' not in html
    assert "One moment, please" in html and REFRESH_RE.search(html)
    assert 'href="/generate?t=' in html  # Continue, for a browser that ignores refresh
    early = client.get(html_lib.unescape(REFRESH_RE.search(html).group(2)))
    assert 'id="codename-shown"' not in early.get_data(as_text=True)  # not yet

    page = follow_waits(client, clock, "/generate")
    assert client.post("/create", data=create_form(page)).status_code == 302

    # Submissions flood too: three by this source, then the fourth needs a ticket.
    source = SourceBrowser(client)
    for n in range(3):
        assert source.submit(f"early tip {n}").status_code == 303
    assert "One moment, please" in client.get("/submit").get_data(as_text=True)
    form_page = follow_waits(client, clock, "/submit").get_data(as_text=True)
    action = html_lib.unescape(re.search(r'id="submit-form" method="post" action="([^"]+)"',
                                         form_page).group(1))
    assert action.startswith("/submit?t=")
    sent = client.post(action, data={"csrf_token": csrf_from(form_page),
                                     "message": "the fourth tip", "files": []},
                       content_type="multipart/form-data")
    assert sent.status_code == 303
    texts = {gpg_decrypt(path, newsroom.secret_home).data for path in
             store_files(settings.data_dir)}
    assert b"the fourth tip" in texts
    # The same ticket again: refused, and nothing more kept.
    again = client.post(action, data={"csrf_token": csrf_from(form_page),
                                      "message": "sent twice", "files": []},
                        content_type="multipart/form-data")
    assert again.status_code == 409
    assert "already used once" in again.get_data(as_text=True)
    assert len(store_files(settings.data_dir)) == 4


def test_under_flood_a_worked_out_ticket_goes_on_without_waiting(flood_app: Flask) -> None:
    flood_creations(flood_app)
    client = flood_app.test_client()
    config = work_config(client.get("/generate"))
    assert config["worker"] == "/static/pow-worker.js"
    assert isinstance(config["bits"], int) and 4 <= config["bits"] <= 10
    solution = work_out(str(config["ticket"]), config["bits"])
    page = client.get(f"{config['next']}&s={solution}")
    assert 'id="codename-shown"' in page.get_data(as_text=True)
    form = create_form(page)
    assert form["solution"] == solution
    assert client.post("/create", data=form).status_code == 302


def test_forged_reused_expired_and_early_tickets_get_clear_answers(
        flood_app: Flask, clock: SecondsClock) -> None:
    flood_creations(flood_app)
    client = flood_app.test_client()
    config = work_config(client.get("/generate"))
    token = str(config["ticket"])
    assert isinstance(config["bits"], int)
    solution = work_out(token, config["bits"])
    form = create_form(client.get(f"{config['next']}&s={solution}"))

    def answer(**changes: str) -> tuple[int, str, TestResponse]:
        resp = client.post("/create", data={**form, **changes})
        return resp.status_code, resp.get_data(as_text=True), resp

    status, html, _ = answer(ticket=token[:-4] + "AAAA")
    assert status == 403 and "was not made by this site for this page" in html
    ticket = Ticket("", config["bits"], 0, 0, "", token)
    wrong = next(str(n) for n in itertools.count(int(solution) + 1) if not solves(ticket, str(n)))
    status, html, _ = answer(solution=wrong)
    assert status == 403 and "was not finished" in html
    status, html, resp = answer(solution="")
    assert status == 429 and "before the wait the site asked for was over" in html
    assert int(resp.headers["Retry-After"]) > 0
    status, html, _ = answer(ticket="")
    assert status == 429 and "this request came without one" in html
    assert answer()[0] == 302
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/submit").get_data(
        as_text=True))})
    # The same form again, with a CSRF token of the new session: the ticket is spent.
    status, html, _ = answer(csrf_token=csrf_from(client.get("/login").get_data(as_text=True)))
    assert status == 409 and "already used once" in html

    later = flood_app.test_client()
    config = work_config(later.get("/generate"))
    assert isinstance(config["bits"], int)
    stale_solution = work_out(str(config["ticket"]), config["bits"])
    form = create_form(later.get(f"{config['next']}&s={stale_solution}"))
    clock.now += TICKET_SECONDS["create"]
    flood_creations(flood_app)  # the first flood is forgotten by now; a second one
    expired = later.post("/create", data=form)
    assert expired.status_code == 403
    assert "has expired" in expired.get_data(as_text=True)


def test_a_ticket_for_a_codename_does_not_pass_for_a_submission(
        flood_app: Flask, clock: SecondsClock) -> None:
    flood_creations(flood_app)
    client = flood_app.test_client()
    page = follow_waits(client, clock, "/generate")
    create_ticket = hidden(page.get_data(as_text=True), "ticket")
    assert client.post("/create", data=create_form(page)).status_code == 302
    source = SourceBrowser(client)
    for n in range(3):
        assert source.submit(f"tip {n}").status_code == 303
    token = csrf_from(follow_waits(client, clock, "/submit").get_data(as_text=True))
    refused = client.post("/submit/encrypted", data={"csrf_token": token},
                          headers={"Accept": "application/json",
                                   "Tipbox-Proof": f"{create_ticket} "},
                          content_type="multipart/form-data")
    assert refused.status_code == 403
    assert "not made by this site for this page" in refused.get_json()["error"]
    assert refused.get_json()["freshProof"] is True  # encrypt.js fetches one and retries
    missing = client.post("/submit", data={"csrf_token": token, "message": "x", "files": []},
                          content_type="multipart/form-data")
    assert missing.status_code == 429
    text = missing.get_data(as_text=True)
    assert "Reload the page, let the check finish" in text


def test_a_fresh_ticket_for_a_second_attempt_is_handed_out_only_under_flood(
        flood_app: Flask) -> None:
    client = flood_app.test_client()
    SourceBrowser(client).new_codename()
    assert client.get("/submit/ticket").get_json() == {"ticket": None, "bits": 0}
    source = SourceBrowser(client)
    for n in range(3):  # the third makes it a flood
        assert source.submit(f"tip {n}").status_code == 303
    fresh = client.get("/submit/ticket").get_json()
    assert fresh["ticket"].startswith("1.submit.") and fresh["bits"] >= 4


def test_the_wait_page_is_plain_translatable_and_right_to_left(
        flood_app: Flask, tmp_path: Path) -> None:
    flood_creations(flood_app)
    client = flood_app.test_client()
    client.get("/language/ar")
    page = client.get("/generate")
    html = page.get_data(as_text=True)
    assert '<html lang="ar" dir="rtl">' in html
    assert REFRESH_RE.search(html.split("</head>")[0]), "the refresh belongs in the head"
    assert not re.search(r"<script(?![^>]*(type=\"application/json\"|src=))", html)
    assert not re.search(r"\son[a-z]+\s*=", html.lower()), "inline event handler"
    csp = dict(d.strip().split(" ", 1) for d in page.headers["Content-Security-Policy"]
               .split(";"))
    assert csp["script-src"] == "'self'" and csp["worker-src"] == "'self'"
    assert csp["default-src"] == "'none'" and csp["trusted-types"] == "tipbox-pow"
    assert "connect-src" not in csp and "unsafe" not in page.headers["Content-Security-Policy"]
