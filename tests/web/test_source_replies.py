"""A source reads a journalist's reply after logging in with the codename, and deletes it."""

from __future__ import annotations

from flask import Flask

from tests.helpers import SourceBrowser, csrf_from, reply_service
from tipbox.config import Settings
from tipbox.models import Reply, Source


def replies_to_a_new_source(browser: SourceBrowser, settings: Settings,
                            *texts: str) -> list[str]:
    """A codename made in ``browser``, and the newsroom's replies to it, in order."""
    browser.new_codename()
    replies = reply_service(settings)
    with replies.sessions() as db:
        source_id = db.query(Source).one().id
    return [replies.send(source_id, None, text) for text in texts]


def test_a_reply_is_shown_after_login_and_the_source_can_delete_it(
        app: Flask, browser: SourceBrowser, settings: Settings) -> None:
    codename = browser.new_codename()
    browser.submit("hello newsroom")
    replies = reply_service(settings)
    with replies.sessions() as db:
        source = db.query(Source).one()
        assert source.reply_public_key is not None  # set at the first log-in
        source_id = source.id
    reply_id = replies.send(source_id, None, "We got it. Is page 3 the latest version?")

    page = browser.client.get("/submit").get_data(as_text=True)
    assert "Is page 3 the latest version?" in page

    browser.logout()
    assert "Is page 3" not in browser.client.get("/").get_data(as_text=True)
    browser.login(codename)
    page = browser.client.get("/submit").get_data(as_text=True)
    assert "Is page 3 the latest version?" in page
    resp = browser.client.post(f"/replies/{reply_id}/delete",
                               data={"csrf_token": csrf_from(page)})
    assert resp.status_code == 302
    assert "Is page 3" not in browser.client.get("/submit").get_data(as_text=True)
    with replies.sessions() as db:
        row = db.get(Reply, reply_id)
        assert row is not None and row.deleted_by_source and row.for_source is None


def test_after_a_restart_the_source_is_asked_to_log_in_again_to_read_replies(
        app: Flask, browser: SourceBrowser, settings: Settings) -> None:
    browser.new_codename()
    browser.submit("hello")
    # A new app stands for a restarted server: the in-memory reply keys are gone.
    from tipbox.web.source import create_source_app

    restarted = create_source_app(settings).test_client()
    cookie = browser.client.get_cookie("tipbox_source")
    assert cookie is not None
    restarted.set_cookie("tipbox_source", cookie.value)
    page = restarted.get("/submit").get_data(as_text=True)
    assert "log in again with your codename" in page


def test_a_source_cannot_delete_another_sources_reply(
        app: Flask, settings: Settings) -> None:
    first, second = SourceBrowser(app.test_client()), SourceBrowser(app.test_client())
    first.new_codename()
    first.submit("one")
    second.new_codename()
    second.submit("two")
    replies = reply_service(settings)
    with replies.sessions() as db:
        first_id = min(s.id for s in db.query(Source).all())
    reply_id = replies.send(first_id, None, "for the first source only")
    page = second.client.get("/submit").get_data(as_text=True)
    second.client.post(f"/replies/{reply_id}/delete", data={"csrf_token": csrf_from(page)})
    with replies.sessions() as db:
        row = db.get(Reply, reply_id)
        assert row is not None and not row.deleted_by_source
    assert "for the first source only" in first.client.get("/submit").get_data(as_text=True)


def test_deleting_a_reply_asks_first_then_says_it_was_deleted(
        app: Flask, browser: SourceBrowser, settings: Settings) -> None:
    [reply_id] = replies_to_a_new_source(browser, settings, "Please send page 4 too.")
    page = browser.client.get("/submit").get_data(as_text=True)
    assert f'href="/replies/{reply_id}/delete">Delete this reply</a>' in page

    confirm = browser.client.get(f"/replies/{reply_id}/delete").get_data(as_text=True)
    assert "Delete this reply?" in confirm and "Please send page 4" not in confirm
    assert "Please send page 4 too." in browser.client.get("/submit").get_data(as_text=True)
    done = browser.client.post(f"/replies/{reply_id}/delete",
                               data={"csrf_token": csrf_from(confirm)},
                               follow_redirects=True).get_data(as_text=True)
    assert "1 reply was deleted." in done and "Please send page 4" not in done
    assert "was deleted" not in browser.client.get("/submit").get_data(as_text=True)


def test_a_source_can_delete_every_reply_at_once(
        app: Flask, browser: SourceBrowser, settings: Settings) -> None:
    ids = replies_to_a_new_source(browser, settings, "First reply.", "Second reply.")
    page = browser.client.get("/submit").get_data(as_text=True)
    assert 'href="/replies/delete-all">Delete all replies</a>' in page
    confirm = browser.client.get("/replies/delete-all").get_data(as_text=True)
    assert "Delete every reply?" in confirm
    done = browser.client.post("/replies/delete-all", data={"csrf_token": csrf_from(confirm)},
                               follow_redirects=True).get_data(as_text=True)
    assert "2 replies were deleted." in done
    assert "First reply." not in done and "Second reply." not in done
    with reply_service(settings).sessions() as db:
        rows = [db.get(Reply, reply_id) for reply_id in ids]
        assert all(r is not None and r.deleted_by_source and r.for_source is None for r in rows)
