"""Views of the newsroom interface. Thin: forms in, domain calls, templates out."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    stream_with_context,
    url_for,
)
from flask_babel import gettext, ngettext
from werkzeug.wrappers import Response as BaseResponse

from tipbox.accounts import AccountService, LoginFailed, LoginThrottled
from tipbox.bundles import BundleEntry, new_bundle, stream_bundle
from tipbox.clock import today
from tipbox.config import Settings
from tipbox.crypto.keyring import KeyringSource
from tipbox.errors import KeyringUnusable, SubmissionRejected
from tipbox.inbox import InboxService
from tipbox.replies import ReplyService
from tipbox.web.error_pages import error_page
from tipbox.web.newsroom.auth import current_journalist, refusal, start_session
from tipbox.web.newsroom.forms import ActionForm, ConfirmDeleteForm, LoginForm, ReplyForm

# Larger numbers than a row id can be are "not found" at the router: the database would
# overflow on them (a 500 with a traceback on SQLite).
MAX_ROW_ID = 2**31 - 1

P = ParamSpec("P")
ViewResult = str | BaseResponse | tuple[str, int]


@dataclass(frozen=True)
class NewsroomDeps:
    settings: Settings
    accounts: AccountService
    inbox: InboxService
    replies: ReplyService
    keys: KeyringSource


def make_blueprint(deps: NewsroomDeps) -> Blueprint:
    bp = Blueprint("newsroom", __name__)

    @bp.app_context_processor
    def page_context() -> dict[str, Any]:
        return {"journalist": g.get("journalist"), "action_form": ActionForm(formdata=None),
                "demo_key": deps.keys.current().is_demo,
                "retention_days": deps.settings.retention_days, "today": today()}

    def login_required(view: Callable[P, ViewResult]) -> Callable[P, ViewResult]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> ViewResult:
            account = current_journalist(deps.accounts)
            if account is None:
                return redirect(url_for("newsroom.login"))
            g.journalist = account
            g.journalist_id = account.id
            return view(*args, **kwargs)

        return wrapper

    def checked_action() -> None:
        if not ActionForm().validate_on_submit():
            abort(400)

    @bp.route("/login", methods=["GET", "POST"])
    def login() -> ViewResult:
        form = LoginForm()
        status = 200
        if form.validate_on_submit():
            try:
                journalist_id = deps.accounts.authenticate(
                    form.username.data or "", form.passphrase.data or "",
                    "".join((form.code.data or "").split()))
            except (LoginFailed, LoginThrottled) as exc:
                message, status = refusal(exc)
                form.code.errors = [message]
            else:
                account = deps.accounts.get(journalist_id)
                assert account is not None  # noqa: S101 - it just authenticated
                start_session(account)
                return redirect(url_for("newsroom.inbox"))
        elif request.method == "POST":
            status = 400
        return render_template("newsroom/login.html", form=form), status

    @bp.post("/logout")
    def logout() -> ViewResult:
        checked_action()
        session.clear()
        return redirect(url_for("newsroom.login"))

    @bp.get("/")
    @login_required
    def inbox() -> ViewResult:
        page = request.args.get("page", "1")
        starred_first = request.args.get("starred_first") == "1"
        result = deps.inbox.inbox(g.journalist_id, _int(page, default=1),
                                     starred_first=starred_first)
        return render_template("newsroom/inbox.html", inbox=result, starred_first=starred_first)

    @bp.post("/bulk")
    @login_required
    def bulk() -> ViewResult:
        checked_action()
        source_ids = [n for n in (_int(s) for s in request.form.getlist("source")) if n]
        action = request.form.get("action")
        if not source_ids:
            flash(gettext("Select at least one source first."))
            return redirect(url_for("newsroom.inbox"))
        if action == "download_unread":
            return _bundle_response(deps, g.journalist_id, deps.inbox.bundle_entries(
                g.journalist_id, source_ids=source_ids, unread_only=True,
                include_replies=False))
        if action == "delete":
            if request.form.get("confirm") != "yes":
                flash(gettext("Tick “confirm” to delete the selected sources."))
                return redirect(url_for("newsroom.inbox"))
            count = deps.inbox.delete_sources(source_ids)
            flash(ngettext("Deleted %(num)s source and everything it sent.",
                           "Deleted %(num)s sources and everything they sent.", count))
            return redirect(url_for("newsroom.inbox"))
        abort(400)

    @bp.get("/download/unread")
    @login_required
    def download_all_unread() -> ViewResult:
        return _bundle_response(deps, g.journalist_id, deps.inbox.bundle_entries(
            g.journalist_id, unread_only=True, include_replies=False))

    @bp.get(f"/sources/<int(max={MAX_ROW_ID}):source_id>")
    @login_required
    def source(source_id: int) -> ViewResult:
        view = deps.inbox.source(g.journalist_id, source_id)
        if view is None:
            abort(404)
        return render_template("newsroom/source.html", source=view, reply_form=ReplyForm(),
                               delete_form=ConfirmDeleteForm(formdata=None))

    @bp.post(f"/sources/<int(max={MAX_ROW_ID}):source_id>/star")
    @login_required
    def star(source_id: int) -> ViewResult:
        checked_action()
        deps.inbox.set_star(source_id, request.form.get("starred") == "1")
        if request.form.get("next") == "inbox":
            return redirect(url_for("newsroom.inbox"))
        return redirect(url_for("newsroom.source", source_id=source_id))

    @bp.post(f"/sources/<int(max={MAX_ROW_ID}):source_id>/read")
    @login_required
    def mark_read(source_id: int) -> ViewResult:
        checked_action()
        read = request.form.get("read") != "0"
        item_ids = request.form.getlist("item")
        if item_ids:
            deps.inbox.mark_read(g.journalist_id, item_ids, read)
        else:
            deps.inbox.mark_source_read(g.journalist_id, source_id, read)
        return redirect(url_for("newsroom.source", source_id=source_id))

    @bp.post(f"/sources/<int(max={MAX_ROW_ID}):source_id>/items")
    @login_required
    def items_action(source_id: int) -> ViewResult:
        checked_action()
        item_ids = request.form.getlist("item")
        action = request.form.get("action")
        if action == "download":
            entries = deps.inbox.bundle_entries(g.journalist_id, source_ids=[source_id],
                                                   item_ids=item_ids) if item_ids else \
                deps.inbox.bundle_entries(g.journalist_id, source_ids=[source_id])
            return _bundle_response(deps, g.journalist_id, entries)
        if action == "delete":
            if not item_ids:
                flash(gettext("Select the items to delete first."))
            else:
                count = deps.inbox.delete_items(source_id, item_ids)
                flash(ngettext("Deleted %(num)s item.", "Deleted %(num)s items.", count))
            return redirect(url_for("newsroom.source", source_id=source_id))
        abort(400)

    @bp.post(f"/sources/<int(max={MAX_ROW_ID}):source_id>/delete")
    @login_required
    def delete_source(source_id: int) -> ViewResult:
        form = ConfirmDeleteForm()
        if not form.validate_on_submit():
            flash(gettext("Tick the box to confirm, then press Delete again."))
            return redirect(url_for("newsroom.source", source_id=source_id))
        deps.inbox.delete_sources([source_id])
        flash(gettext("The source and everything it sent were deleted."))
        return redirect(url_for("newsroom.inbox"))

    @bp.post(f"/sources/<int(max={MAX_ROW_ID}):source_id>/reply")
    @login_required
    def reply(source_id: int) -> ViewResult:
        form = ReplyForm()
        if form.validate_on_submit():
            try:
                deps.replies.send(source_id, g.journalist_id, form.text.data or "")
            except SubmissionRejected as exc:
                flash(gettext(exc.message, **exc.params))
            except KeyringUnusable:
                return error_page(503, gettext(
                    "No newsroom key is usable, so the reply could not be encrypted and "
                    "was not kept. Ask an admin to check the newsroom keys."))
            else:
                flash(gettext("Reply encrypted and sent. The source sees it at their next "
                              "log-in."))
        else:
            for error in form.text.errors:
                flash(error)
        return redirect(url_for("newsroom.source", source_id=source_id))

    @bp.get("/items/<item_id>.gpg")
    @login_required
    def download_item(item_id: str) -> ViewResult:
        entry = deps.inbox.item_entry(item_id)
        if entry is None:
            abort(404)
        deps.inbox.mark_read(g.journalist_id, [item_id])
        return Response(_file_chunks(entry), mimetype="application/pgp-encrypted",
                        headers={"Content-Disposition":
                                 f'attachment; filename="{entry.id}.gpg"',
                                 "Content-Length": str(entry.path.stat().st_size)})

    return bp


def _int(text: str, default: int = 0) -> int:
    """A plain decimal number from a form or query, else ``default`` (never a 500)."""
    return int(text) if text.isascii() and text.isdecimal() and len(text) < 10 else default


def _file_chunks(entry: BundleEntry) -> Iterator[bytes]:
    with entry.path.open("rb") as fh:
        while chunk := fh.read(1024 * 1024):
            yield chunk


def _bundle_response(deps: NewsroomDeps, journalist_id: int,
                     entries: list[BundleEntry]) -> ViewResult:
    if not entries:
        flash(gettext("Nothing to download: every item there has been read already. A "
                      "source's page lets you pick read items to download again."))
        return redirect(url_for("newsroom.inbox"))
    bundle = new_bundle(today())

    def chunks() -> Iterator[bytes]:
        yield from stream_bundle(bundle, entries)
        # Marked read only once the whole bundle went out.
        deps.inbox.mark_read(journalist_id, [e.id for e in entries if e.kind != "reply"])

    return Response(stream_with_context(chunks()), mimetype="application/x-tar",
                    headers={"Content-Disposition": f'attachment; filename="{bundle.filename}"'})
