"""Admin pages of the newsroom interface: newsroom keys, accounts, the audit log."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import ParamSpec

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from tipbox.accounts import AccountService, LoginFailed, LoginThrottled
from tipbox.audit import AuditLog
from tipbox.errors import AccountError, KeyOperationRefused
from tipbox.i18n import N_
from tipbox.key_registry import KeyService
from tipbox.web.newsroom.auth import (
    ADMIN_FRESH_SECONDS,
    confirm_identity,
    current_journalist,
    recently_confirmed,
    refusal,
)
from tipbox.web.newsroom.forms import ActionForm, ConfirmForm, KeyCodeForm, PasteKeyForm

P = ParamSpec("P")
ViewResult = str | Response | tuple[str, int]
# Where the confirm page may send an admin back to: plain admin paths only.
# What an admin reads after each account action, one whole sentence each for translators.
ACCOUNT_DONE = {
    "deactivate": N_("%(name)s is deactivated: that account can no longer log in."),
    "reactivate": N_("%(name)s is active again."),
}
RETURN_PATH = re.compile(r"/admin/[A-Za-z0-9._/-]*")


@dataclass(frozen=True)
class AdminDeps:
    accounts: AccountService
    keys: KeyService
    audit: AuditLog


def make_admin_blueprint(deps: AdminDeps) -> Blueprint:
    bp = Blueprint("admin", __name__, url_prefix="/admin")

    def admin_session(view: Callable[P, ViewResult]) -> Callable[P, ViewResult]:
        """An admin's session, however long ago the passphrase was last given."""
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> ViewResult:
            account = current_journalist(deps.accounts)
            if account is None:
                return redirect(url_for("newsroom.login"))
            if not account.is_admin:
                abort(403)
            g.journalist = account
            g.journalist_id = account.id
            return view(*args, **kwargs)

        return wrapper

    def admin_required(view: Callable[P, ViewResult]) -> Callable[P, ViewResult]:
        """An admin who gave the passphrase and a TOTP code in the last 15 minutes. Anyone
        else is sent to confirm first; a form posted after that long is not acted on."""
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> ViewResult:
            if not recently_confirmed():
                if request.method != "GET":
                    flash(gettext("Nothing was changed: confirm it is you, then do it again."))
                return redirect(url_for("admin.confirm", next=_page_to_return_to()))
            return view(*args, **kwargs)

        return admin_session(wrapper)

    def _page_to_return_to() -> str:
        if request.method == "GET":
            return request.path
        return url_for("admin.accounts" if request.path.startswith("/admin/accounts")
                       else "admin.keys")

    @bp.route("/confirm", methods=["GET", "POST"])
    @admin_session
    def confirm() -> ViewResult:
        target = _admin_page(request.args.get("next", "")) or url_for("admin.keys")
        form = ConfirmForm()
        status = 200
        if form.validate_on_submit():
            try:
                confirmed = deps.accounts.authenticate(
                    g.journalist.username, form.passphrase.data or "",
                    "".join((form.code.data or "").split()))
            except (LoginFailed, LoginThrottled) as exc:
                message, status = refusal(exc)
                form.code.errors = [message]
            else:
                if confirmed != g.journalist.id:
                    abort(403)  # cannot happen: usernames are unique
                confirm_identity()
                return redirect(target)
        elif request.method == "POST":
            status = 400
        return render_template("newsroom/admin_confirm.html", form=form, target=target,
                               minutes=ADMIN_FRESH_SECONDS // 60), status

    def actor() -> str:
        return f"web:{g.journalist.username}"

    def checked() -> None:
        if not ActionForm().validate_on_submit():
            abort(400)

    @bp.get("/keys")
    @admin_required
    def keys() -> ViewResult:
        return render_template("newsroom/admin_keys.html", records=deps.keys.records(),
                               warnings=deps.keys.expiry_warnings(),
                               paste_form=PasteKeyForm(formdata=None),
                               code_form=KeyCodeForm(formdata=None))

    @bp.post("/keys/add")
    @admin_required
    def add_key() -> ViewResult:
        form = PasteKeyForm()
        if not form.validate_on_submit():
            flash(gettext("Paste an armored public key first."))
            return redirect(url_for("admin.keys"))
        try:
            found = deps.keys.add((form.key.data or "").encode(), actor())
        except KeyOperationRefused as exc:
            flash(gettext(exc.message, **exc.params))
        else:
            flash(gettext("Key %(fpr)s added as pending. Download its challenge next.",
                          fpr=found.info.fingerprint))
        return redirect(url_for("admin.keys"))

    @bp.post("/keys/<fingerprint>/challenge")
    @admin_required
    def challenge(fingerprint: str) -> ViewResult:
        checked()
        try:
            message = deps.keys.challenge(fingerprint, actor())
        except KeyOperationRefused as exc:
            flash(gettext(exc.message, **exc.params))
            return redirect(url_for("admin.keys"))
        return Response(message, mimetype="application/pgp-encrypted", headers={
            "Content-Disposition": f'attachment; filename="challenge-{fingerprint[-16:]}.gpg"'})

    @bp.post("/keys/<fingerprint>/activate")
    @admin_required
    def activate(fingerprint: str) -> ViewResult:
        form = KeyCodeForm()
        if not form.validate_on_submit():
            flash(gettext("Type the code that `tipbox-open keys prove` printed."))
            return redirect(url_for("admin.keys"))
        try:
            deps.keys.activate(fingerprint, form.code.data or "", actor())
        except KeyOperationRefused as exc:
            flash(gettext(exc.message, **exc.params))
        else:
            flash(gettext("Key %(fpr)s is active: every new item is encrypted to it.",
                          fpr=fingerprint))
        return redirect(url_for("admin.keys"))

    @bp.post("/keys/<fingerprint>/retire")
    @admin_required
    def retire(fingerprint: str) -> ViewResult:
        checked()
        try:
            deps.keys.retire(fingerprint, actor())
        except KeyOperationRefused as exc:
            flash(gettext(exc.message, **exc.params))
        else:
            flash(gettext("Key %(fpr)s is retired. Keep its secret key: older items need it.",
                          fpr=fingerprint))
        return redirect(url_for("admin.keys"))

    @bp.get("/public-keys/<fingerprint>.asc")
    @admin_required
    def public_key(fingerprint: str) -> ViewResult:
        armored = deps.keys.public_key(fingerprint)
        if armored is None:
            abort(404)
        return Response(armored, mimetype="application/pgp-keys")

    @bp.get("/accounts")
    @admin_required
    def accounts() -> ViewResult:
        return render_template("newsroom/admin_accounts.html",
                               accounts=deps.accounts.list(), new_credentials=None)

    @bp.post("/accounts/<username>/<action>")
    @admin_required
    def account_action(username: str, action: str) -> ViewResult:
        checked()
        try:
            if action == "deactivate":
                if username == g.journalist.username:
                    flash(gettext("You cannot deactivate your own account."))
                    return redirect(url_for("admin.accounts"))
                deps.accounts.deactivate(username, actor())
            elif action == "reactivate":
                deps.accounts.reactivate(username, actor())
            elif action == "reset":
                creds = deps.accounts.reset_credentials(username, actor())
                # Shown on this response only; never stored, never in a flash message.
                return render_template("newsroom/admin_accounts.html",
                                       accounts=deps.accounts.list(), new_credentials=creds)
            else:
                abort(404)
        except AccountError as exc:
            flash(gettext(exc.message, **exc.params))
            return redirect(url_for("admin.accounts"))
        flash(gettext(ACCOUNT_DONE[action], name=username))
        return redirect(url_for("admin.accounts"))

    @bp.get("/audit")
    @admin_required
    def audit() -> ViewResult:
        return render_template("newsroom/admin_audit.html", entries=deps.audit.recent())

    return bp


def _admin_page(target: str) -> str | None:
    """``target`` if it is the path of an admin page (one that answers GET), else None.
    The check is the app's own URL map, so "/admin/../items/..." and the like go nowhere."""
    if not RETURN_PATH.fullmatch(target) or ".." in target or "//" in target:
        return None
    try:
        endpoint, _ = current_app.url_map.bind("localhost").match(target, method="GET")
    except HTTPException:  # no such page, not a GET, or a redirect (trailing slash)
        return None
    return target if endpoint.startswith("admin.") and endpoint != "admin.confirm" else None

