"""Form routes refuse large bodies before reading them: only /submit streams."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.helpers import csrf_from


@pytest.mark.parametrize("path", ["/login", "/create", "/logout", "/replies/x/delete"])
def test_a_large_form_body_on_a_source_route_is_refused_not_buffered(
        app: Flask, path: str) -> None:
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    resp = client.post(path, data={"csrf_token": token, "codename": "x" * 200_000})
    assert resp.status_code == 413
    assert "too large" in resp.get_data(as_text=True)


def test_a_large_form_body_on_a_newsroom_route_is_refused(newsroom_app: Flask) -> None:
    client = newsroom_app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    resp = client.post("/login", data={"csrf_token": token, "username": "a" * 100_000,
                                       "passphrase": "p", "code": "123456"})
    assert resp.status_code == 413


def test_a_streamed_body_without_length_is_read_only_up_to_the_limit(app: Flask) -> None:
    import io
    import urllib.parse

    from werkzeug.test import EnvironBuilder, run_wsgi_app

    client = app.test_client()
    browser_page = client.get("/login").get_data(as_text=True)
    cookie = client.get_cookie("tipbox_source")
    assert cookie is not None
    # A valid token placed after 300 KB: read whole, /logout would accept it (200).
    body = ("padding=" + "x" * 300_000 + "&csrf_token="
            + urllib.parse.quote(csrf_from(browser_page))).encode()
    environ = EnvironBuilder(path="/logout", method="POST", input_stream=io.BytesIO(body),
                             content_type="application/x-www-form-urlencoded",
                             headers={"Cookie": f"tipbox_source={cookie.value}"}).get_environ()
    del environ["CONTENT_LENGTH"]  # as with chunked transfer
    environ["wsgi.input_terminated"] = True
    _out, status, _headers = run_wsgi_app(app.wsgi_app, environ, buffered=True)
    assert status.split()[0] in ("400", "413")  # cut at 64 KiB: the token was never read
    short = client.post("/logout", data={"padding": "x" * 100,
                                         "csrf_token": csrf_from(browser_page)})
    assert short.status_code == 200  # the same request, small, is accepted


def test_normal_forms_still_work(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    resp = client.post("/login", data={"csrf_token": csrf_from(page), "codename": "a b c"})
    assert resp.status_code == 403  # a wrong codename, read and refused normally
