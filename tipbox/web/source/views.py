"""Views of the source interface. Thin: forms in, domain calls, templates out."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import (
    Blueprint,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import format_decimal, gettext
from flask_wtf.csrf import validate_csrf
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.wrappers import Response
from wtforms import ValidationError

from tipbox.codenames import CodenameSigner, codename_bits, generate_codename, normalize_codename
from tipbox.config import REPO_ROOT, Settings
from tipbox.crypto.keyring import Keyring, KeyringSource
from tipbox.crypto.reply_keys import ReplyKeyDeriver
from tipbox.intake.draft import Draft
from tipbox.intake.upload import (
    FormReader,
    multipart_body,
    read_encrypted_form,
    read_plain_form,
    receive_upload,
)
from tipbox.replies import ReplyKeyCache, ReplyService
from tipbox.sources import SourceService
from tipbox.storage import CiphertextStore
from tipbox.web.browser_encryption import SCRIPT_CSP, SPOOL_TO_STORAGE_BYTES, BrowserEncryption
from tipbox.web.error_pages import error_page, wants_json
from tipbox.web.request import ServerBody, streams_body
from tipbox.web.security import content_security_policy
from tipbox.web.sessions import ServerSession
from tipbox.web.source.forms import CsrfOnlyForm, LoginForm, LogoutForm, NewCodenameForm
from tipbox.web.source.guide import load_guide

F = TypeVar("F", bound=Callable[..., Any])
ViewResult = str | Response | tuple[str | Response, int]


@dataclass(frozen=True)
class SourceDeps:
    settings: Settings
    keys: KeyringSource
    store: CiphertextStore
    db: sessionmaker[Session]
    sources: SourceService
    signer: CodenameSigner
    replies: ReplyService
    reply_keys: ReplyKeyCache
    reply_deriver: ReplyKeyDeriver
    browser: BrowserEncryption


def make_blueprint(deps: SourceDeps) -> Blueprint:
    bp = Blueprint("source", __name__)

    @bp.app_context_processor
    def page_context() -> dict[str, Any]:
        logged_in = "source_id" in session
        keyring = g.get("keyring")
        return {"demo_key": keyring.is_demo if keyring else False,
                "newsroom_fingerprints": keyring.fingerprints if keyring else (),
                "retention_days": deps.settings.retention_days,
                "logged_in": logged_in,
                "guide_url": url_for("source.source_guide"),
                "upload_limit": {"size": deps.settings.max_submission_bytes,
                                 "files": deps.settings.max_files},
                "idle_minutes": deps.settings.session_idle_minutes,
                # Only for a logged-in source: making a token for an anonymous visitor
                # would create a server-side session on every page view.
                # formdata=None: this form only renders the nav's token. Reading the
                # request here would parse an upload body again on every error page.
                "logout_form": LogoutForm(formdata=None) if logged_in else None}

    def login_required(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            source_id = session.get("source_id")
            if not isinstance(source_id, int) or not deps.sources.exists(source_id):
                session.clear()
                return redirect(url_for("source.login", expired=1))
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    def log_in(source_id: int, codename: str) -> None:
        """Start a fresh session; the codename unlocks the reply key, kept in memory.
        The key comes first: if deriving it fails (the site is busy), no session is
        half logged in."""
        key = deps.reply_deriver.derive(codename)
        deps.sources.set_reply_key(source_id, key.public_bytes)
        deps.reply_keys.drop(session.get("reply_key"))
        session.clear()
        assert isinstance(session, ServerSession)  # noqa: S101
        session.regenerate()
        session["source_id"] = source_id
        session["reply_key"] = deps.reply_keys.put(key)

    @bp.get("/")
    def index() -> ViewResult:
        return render_template("source/index.html")

    guide = load_guide(REPO_ROOT / "docs" / "source-guide.md")

    @bp.get("/guide")
    def source_guide() -> ViewResult:
        return render_template("source/guide.html", guide=guide)

    @bp.get("/public-key")
    def public_key() -> ViewResult:
        """The active newsroom key(s), to verify the fingerprint or to encrypt oneself."""
        armored = "\n".join(key["armored"] for key in armored_keys(g.keyring))
        return Response(armored, mimetype="application/pgp-keys", headers={
            "Content-Disposition": 'attachment; filename="newsroom-public-key.asc"'})

    @bp.get("/generate")
    def generate() -> ViewResult:
        codename = generate_codename()
        form = NewCodenameForm(codename=codename, mac=deps.signer.sign(codename))
        return render_template("source/generate.html", codename=codename, form=form,
                               bits=int(codename_bits()))

    @bp.post("/create")
    def create() -> ViewResult:
        form = NewCodenameForm()
        codename = normalize_codename(form.codename.data or "")
        if not form.validate_on_submit() or codename is None or \
                not deps.signer.verify(codename, form.mac.data or ""):
            return error_page(400, gettext(
                "That codename was not one this site gave out. Start again to get a new one."))
        log_in(deps.sources.create(codename), codename)
        return redirect(url_for("source.submit_form"))

    @bp.route("/login", methods=["GET", "POST"])
    def login() -> ViewResult:
        form = LoginForm()
        status = 200
        if form.validate_on_submit():
            codename = normalize_codename(form.codename.data or "")
            source_id = deps.sources.find(codename) if codename else None
            if codename and source_id is not None:
                log_in(source_id, codename)
                return redirect(url_for("source.submit_form"))
            form.codename.errors = [gettext(
                "That codename was not recognised. Check the words and their order, and "
                "try again. Capital letters and extra spaces do not matter.")]
            status = 403
        elif request.method == "POST":
            status = 400
        return render_template("source/login.html", form=form,
                               expired=bool(request.args.get("expired"))), status

    @bp.get("/submit")
    @login_required
    def submit_form() -> ViewResult:
        receipt = session.pop("receipt", None)
        deleted_replies = session.pop("deleted_replies", None)
        key = deps.reply_keys.get(session.get("reply_key"))
        replies = deps.replies.read_by_source(session["source_id"], key) if key else None
        keyring: Keyring = g.keyring
        browser = deps.browser if deps.browser.enabled else None
        response = make_response(render_template(
            "source/submit.html", receipt=receipt, deleted_replies=deleted_replies,
            item_count=deps.sources.item_count(session["source_id"]),
            settings=deps.settings, fingerprints=keyring.fingerprints,
            replies=replies, reply_form=CsrfOnlyForm(formdata=None),
            browser=browser,
            encrypt_config=_encrypt_config(deps.settings, armored_keys(keyring))
            if browser else None,
        ))
        if browser:
            # The one page that runs scripts; every other page keeps a CSP without any.
            response.headers["Content-Security-Policy"] = content_security_policy(SCRIPT_CSP)
        return response

    export_cache: dict[tuple[str, tuple[str, ...]], list[dict[str, str]]] = {}

    def armored_keys(keyring: Keyring) -> list[dict[str, str]]:
        """The active public keys for encrypt.js, exported once per key set."""
        gpg = keyring.require()
        cache_key = (str(gpg.home), keyring.fingerprints)
        found = export_cache.get(cache_key)
        if found is None:
            found = [{"fingerprint": fpr, "armored": str(gpg.export_public(fpr))}
                     for fpr in keyring.fingerprints]
            export_cache.clear()  # only the current key set is ever needed
            export_cache[cache_key] = found
        return found

    # Deleting a reply is final, so each deletion has a page of its own that asks first
    # (a second page rather than a script: it works with JavaScript off).
    @bp.get("/replies/<reply_id>/delete")
    @login_required
    def confirm_delete_reply(reply_id: str) -> ViewResult:
        return render_template("source/confirm_delete.html", reply_form=CsrfOnlyForm(formdata=None),
                               action=url_for("source.delete_reply", reply_id=reply_id),
                               everything=False)

    @bp.post("/replies/<reply_id>/delete")
    @login_required
    def delete_reply(reply_id: str) -> ViewResult:
        if not CsrfOnlyForm().validate_on_submit():
            return error_page(400)
        deleted = deps.replies.delete_by_source(session["source_id"], reply_id)
        session["deleted_replies"] = int(deleted)
        return redirect(url_for("source.submit_form"))

    @bp.get("/replies/delete-all")
    @login_required
    def confirm_delete_all_replies() -> ViewResult:
        return render_template("source/confirm_delete.html", reply_form=CsrfOnlyForm(formdata=None),
                               action=url_for("source.delete_all_replies"), everything=True)

    @bp.post("/replies/delete-all")
    @login_required
    def delete_all_replies() -> ViewResult:
        if not CsrfOnlyForm().validate_on_submit():
            return error_page(400)
        session["deleted_replies"] = deps.replies.delete_all_by_source(session["source_id"])
        return redirect(url_for("source.submit_form"))

    def receive(read_form: FormReader) -> ViewResult:
        """Stream the body into a draft; a failure is answered by tipbox.web.error_pages."""
        draft = Draft(g.keyring, deps.store, deps.db, deps.settings.max_files,
                      daily_quota=deps.settings.source_daily_bytes)
        body = multipart_body(ServerBody(request.stream), request.mimetype,
                              request.mimetype_params.get("boundary"), deps.settings,
                              deps.store)
        receipt = receive_upload(body, read_form, draft, _csrf_valid, session["source_id"],
                                 deps.settings)
        session["receipt"] = {"messages": receipt.messages, "files": receipt.files,
                              "skipped": receipt.skipped_empty_files}
        if wants_json():  # encrypt.js shows the outcome itself, then opens the receipt
            return jsonify(next=url_for("source.submit_form"))
        return redirect(url_for("source.submit_form"), code=303)

    @bp.post("/submit")
    @streams_body
    @login_required
    def submit() -> ViewResult:
        """The form as posted with JavaScript off: gpg encrypts each item on arrival."""
        return receive(read_plain_form)

    @bp.post("/submit/encrypted")
    @streams_body
    @login_required
    def submit_encrypted() -> ViewResult:
        """What encrypt.js posts: items the browser encrypted, checked and kept as sent."""
        return receive(read_encrypted_form)

    @bp.post("/logout")
    def logout() -> ViewResult:
        form = LogoutForm()
        if not form.validate_on_submit():
            return error_page(400)
        deps.reply_keys.drop(session.get("reply_key"))
        session.clear()
        return render_template("source/logged_out.html")

    return bp


def _encrypt_config(settings: Settings, keys: list[dict[str, str]]) -> dict[str, Any]:
    """What encrypt.js needs: the keys, the limits, and its words in the page's language."""
    limit = format_decimal(settings.max_message_chars)
    return {
        "keys": keys,
        "maxMessageChars": settings.max_message_chars,
        "maxBytes": settings.max_submission_bytes,
        "maxFiles": settings.max_files,
        "spoolBytes": SPOOL_TO_STORAGE_BYTES,
        # Where encrypt.js posts; the form's own action stays the plain route, for the
        # "send without in-browser encryption" fallback.
        "uploadUrl": url_for("source.submit_encrypted"),
        "text": {
            "heading": gettext("Encrypting and sending"),
            "message": gettext("Message"),
            "encrypt": gettext("Encrypted"),
            "upload": gettext("Sent"),
            "total": gettext("Total"),
            "cancel": gettext("Cancel"),
            "retry": gettext("Try again"),
            "reload": gettext("Reload the page"),
            "plain": gettext("Send without in-browser encryption"),
            "plainHint": gettext(
                "Then the server encrypts your message and files as they arrive, as it "
                "does when JavaScript is off."),
            "done": gettext("Sent and stored. Opening the confirmation…"),
            "cancelled": gettext("Cancelled. Nothing from this attempt was kept."),
            "nothing": gettext(
                "There was nothing to send: write a message or choose at least one "
                "non-empty file, then press Submit again."),
            "tooLong": gettext(
                "The message is longer than %(limit)s characters, so nothing was sent. "
                "Shorten it, or put the text in a file and attach it.", limit=limit),
            "tooMany": gettext(
                "You chose more than %(limit)s files, so nothing was sent: send the files in "
                "several submissions.", limit=settings.max_files),
            "tooLarge": gettext(
                "Together these files are larger than this site accepts in one submission, "
                "so nothing was sent. Send fewer or smaller files at a time."),
            "encryptFailed": gettext(
                "Your browser could not encrypt this submission, so nothing was sent."),
            "networkFailed": gettext(
                "The upload stopped before it finished (the connection broke or the site "
                "did not answer), so nothing from this attempt was kept."),
            "memoryFailed": gettext(
                "Your browser could not hold this much encrypted data for the upload, so "
                "nothing from this attempt was kept. Send fewer or smaller files at a time, "
                "or send without in-browser encryption."),
            "sessionEnded": gettext(
                "Your session ended, so nothing from this attempt was kept. Log in again "
                "with your codename and send it again."),
            "serverFailed": gettext(
                "The site did not accept this submission, and nothing from this attempt "
                "was kept."),
        },
    }


def _csrf_valid(token: str) -> bool:
    try:
        validate_csrf(token)
    except ValidationError:
        return False
    return True
