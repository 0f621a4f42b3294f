"""The codename pages wait for their turn before Flask starts on them.

A flood of new codenames and log-ins arrives as a burst: 100 clients starting at once
put 100 requests in the worker's threads within a moment. Taken in the view, the turn
came after Flask had pushed each request's context, opened its session and checked its
CSRF token, a few milliseconds of Python each holding the interpreter lock, all at once;
the landing page's visitors in that first second waited behind the burst (p99 210-310 ms
in bench/hostile.py's codename floods, every slow visit within the flood's first second).
Taken here, in front of the app, a waiting request has cost nothing but its head, and the
burst is answered one turn at a time (p99 15-64 ms in the same runs).

A form's body is read before the turn, into memory (the codename pages' forms are a few
hundred bytes; past the app's limit for forms it refuses them unread): read while holding the
turn, a body trickling in a byte every few minutes would hold it for as long as the body
stall limit allows, and every other source would be told the site is busy. A body that
does not arrive whole (stalled, cut off) gets the app's 400 page, without a turn.

A request refused a turn (the queue full, or no turn in time) still goes to the app,
marked, so that it gets the app's own busy page (translated, with Retry-After): the
first check before every request raises :class:`HashingBusy` for it
(:func:`refuse_when_marked`).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import TYPE_CHECKING

from flask import Flask, request
from werkzeug.exceptions import BadRequest

from tipbox.errors import HashingBusy
from tipbox.hashing_slots import HashingSlots
from tipbox.web.app_factory import SMALL_FORM_BYTES

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# Set in the WSGI environment of a request that found no turn, or whose body was lost.
REFUSED_A_TURN = "tipbox.refused_a_turn"
BODY_LOST = "tipbox.body_lost"


class TakingTurns:
    """WSGI middleware: a request for one of ``paths`` holds one of ``turns`` while the
    app answers it, its whole body included."""

    def __init__(self, app: WSGIApplication, turns: HashingSlots,
                 paths: frozenset[str]) -> None:
        self.app = app
        self.turns = turns
        self.paths = paths

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") not in self.paths:
            return self.app(environ, start_response)
        if not _read_ahead(environ):
            environ[BODY_LOST] = True
            return self.app(environ, start_response)
        try:
            self.turns.acquire()
        except HashingBusy:
            environ[REFUSED_A_TURN] = True
            return self.app(environ, start_response)
        try:
            return [_whole(self.app(environ, start_response))]
        finally:
            self.turns.release()


def _read_ahead(environ: WSGIEnvironment) -> bool:
    """Put a small body (by its Content-Length) in memory, in place of the socket it comes
    from; False, with an empty body put in its place, if it did not arrive whole or came
    without a length. A body over the app's limit for forms is left for the app, which
    refuses it by its length, unread."""
    if environ.get("HTTP_TRANSFER_ENCODING"):
        # Chunked: no browser sends a form so, and read under the turn such a body would
        # hold it for as long as a byte came now and then.
        _no_body(environ)
        return False
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return True  # gunicorn refuses such a head before the app; nothing to read here
    if length <= 0 or length > SMALL_FORM_BYTES:
        return True
    try:
        body = environ["wsgi.input"].read(length)
    except Exception:  # stalled past the limit, reset, cut short: gunicorn's errors too
        body = b""
    if len(body) != length:
        _no_body(environ)
        return False
    environ["wsgi.input"] = io.BytesIO(body)
    return True


def _no_body(environ: WSGIEnvironment) -> None:
    environ["wsgi.input"] = io.BytesIO(b"")
    environ["CONTENT_LENGTH"] = "0"


def _whole(body: Iterable[bytes]) -> bytes:
    """The answer read to its end (a codename page is a few KiB), its iterable closed as
    WSGI asks, so that nothing of the request runs after its turn is given back."""
    try:
        return b"".join(body)
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def refuse_when_marked() -> None:
    """The before-request check that turns a request refused a turn into the busy page,
    and one whose body was lost into the 400 page."""
    if request.environ.get(BODY_LOST):
        raise BadRequest()
    if request.environ.get(REFUSED_A_TURN):
        raise HashingBusy()


def take_turns(app: Flask, turns: HashingSlots, endpoints: Iterable[str]) -> None:
    """Put ``app``'s pages for ``endpoints`` behind ``turns``. Call it after the views are
    registered: their paths are read from the URL map (fixed paths only)."""
    wanted = set(endpoints)
    paths = frozenset(rule.rule for rule in app.url_map.iter_rules()
                      if rule.endpoint in wanted)
    missing = wanted - {rule.endpoint for rule in app.url_map.iter_rules()}
    if missing or any("<" in path for path in paths):
        raise ValueError(f"cannot take turns for {sorted(wanted)}: unknown endpoints "
                         f"{sorted(missing)} or paths with variables {sorted(paths)}")
    app.wsgi_app = TakingTurns(app.wsgi_app, turns, paths)  # type: ignore[method-assign]
