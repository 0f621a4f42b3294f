"""When every slot for memory-hard hashing is taken and the queue is full, a source who
logs in or creates a codename is told at once that the site is busy (503, Retry-After),
not left waiting or shown a 500; once a slot frees up, the same request works."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from contextlib import contextmanager

from flask import request

from tests.helpers import SourceBrowser, csrf_from, hidden, slots_taken
from tipbox.config import Settings
from tipbox.errors import HashingBusy
from tipbox.hashing_slots import HashingSlots
from tipbox.web.source import create_source_app


def test_a_busy_site_says_so_for_log_in_and_new_codenames_then_works_again(
        settings: Settings) -> None:
    slots = HashingSlots(slots=1, queue=0, wait_seconds=0)
    client = create_source_app(settings, hashing=slots).test_client()
    source = SourceBrowser(client)
    codename = source.new_codename()
    source.logout()

    with slots_taken(slots):
        refused = source.login(codename)
        page = client.get("/generate").get_data(as_text=True)
        created = client.post("/create", data={
            "csrf_token": csrf_from(page), "codename": hidden(page, "codename"),
            "mac": hidden(page, "mac")})

    for answer in (refused, created):
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "60"
        html = answer.get_data(as_text=True)
        assert "The site is busy" in html and "Wait a minute and try again" in html
        assert codename not in html
    # Refused means refused: no session was left half logged in.
    assert "/login" in client.get("/submit").headers["Location"]
    assert source.login(codename).status_code == 302  # a free slot: in again
    assert client.get("/submit").status_code == 200


class BusyAfter(HashingSlots):
    """Real slots that grant ``grants`` more hashes, then find the site busy: the moment
    between finding a source by its codename and deriving its reply key."""

    def __init__(self) -> None:
        super().__init__(slots=1, queue=0, wait_seconds=0)
        self.grants: int | None = None

    @contextmanager
    def slot(self) -> Iterator[None]:
        if self.grants is not None:
            if self.grants == 0:
                raise HashingBusy()
            self.grants -= 1
        with super().slot():
            yield


def test_a_log_in_that_turns_busy_halfway_leaves_no_session_behind(
        settings: Settings) -> None:
    slots = BusyAfter()
    client = create_source_app(settings, hashing=slots).test_client()
    source = SourceBrowser(client)
    codename = source.new_codename()
    source.logout()

    slots.grants = 1  # the codename hash passes, the reply key finds the site busy
    assert source.login(codename).status_code == 503

    assert "/login" in client.get("/submit").headers["Location"]


def test_codename_pages_take_turns_while_every_other_page_is_answered(
        settings: Settings) -> None:
    """A flood of new codenames and log-ins queues for the codename pages' turns, which
    hold no interpreter while they wait; the landing page, the guide and a logged-in
    source's pages are answered beside it."""
    turns = HashingSlots(slots=1, queue=0, wait_seconds=0, low_priority=False)
    client = create_source_app(settings, account_pages=turns).test_client()
    source = SourceBrowser(client)
    source.new_codename()

    with slots_taken(turns):  # every turn taken, no room to queue: busy at once
        for path in ("/generate", "/login"):
            busy = client.get(path)
            assert busy.status_code == 503 and busy.headers["Retry-After"] == "60"
        # Refused before any check of the form: the busy page, not a stale-form page.
        unchecked = client.post("/create", data={"codename": "x", "mac": "y"})
        assert unchecked.status_code == 503 and "The site is busy" in unchecked.text
        for path in ("/", "/guide", "/submit"):
            assert client.get(path).status_code == 200, path

    assert client.get("/generate").status_code == 200  # a turn is free again


def test_a_codename_page_waits_for_its_turn_before_the_app_starts_on_it(
        settings: Settings) -> None:
    """A burst of codename requests waits in front of the app: no session opened, no
    form checked, no Python of Flask's run for them until their turn, so the landing
    page's visitors are not queued behind the burst's set-up."""
    turns = HashingSlots(slots=1, queue=4, wait_seconds=30, low_priority=False)
    app = create_source_app(settings, account_pages=turns)
    reached_the_app: list[str] = []
    app.before_request_funcs.setdefault(None, []).insert(
        0, lambda: reached_the_app.append(request.path))

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        turns.acquire()  # the flood's request before it holds the only turn
        try:
            waiting = pool.submit(app.test_client().get, "/generate")
            deadline = time.monotonic() + 10
            while turns.waiting == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert turns.waiting == 1
            assert app.test_client().get("/").status_code == 200
            assert reached_the_app == ["/"]  # /generate still waits outside the app
        finally:
            turns.release()
        assert waiting.result(timeout=10).status_code == 200
    assert reached_the_app == ["/", "/generate"]
