"""Views of the source interface. Thin: forms in, domain calls, templates out."""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Iterator
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
from tipbox.config import Settings
from tipbox.crypto.keyring import Keyring, KeyringSource
from tipbox.crypto.reply_keys import ReplyKeyDeriver
from tipbox.errors import (
    EncryptionError,
    KeyProblem,
    KeysChanged,
    MalformedUpload,
    SubmissionRejected,
)
from tipbox.models import ItemKind
from tipbox.replies import ReplyKeyCache, ReplyService
from tipbox.sources import SourceService
from tipbox.storage import CiphertextStore
from tipbox.submissions import Draft
from tipbox.web.browser_encryption import SCRIPT_CSP, SPOOL_TO_STORAGE_BYTES, BrowserEncryption
from tipbox.web.common import error_page
from tipbox.web.multipart import MultipartReader, Part
from tipbox.web.security import content_security_policy
from tipbox.web.sessions import ServerSession
from tipbox.web.source.forms import LoginForm, LogoutForm, NewCodenameForm

log = logging.getLogger(__name__)

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

    def gate() -> ViewResult | None:
        # One look at the registry per request; views then use g.keyring.
        g.keyring = deps.keys.current()
        if request.endpoint == "static":
            return None
        if not g.keyring.accepting:
            return error_page(503)
        return None

    # First of all before-request checks: while offline, even a form without a CSRF
    # token gets the 503 page, not advice to reload and send it again.
    bp.record_once(lambda state: state.app.before_request_funcs.setdefault(None, [])
                   .insert(0, gate))

    @bp.app_context_processor
    def page_context() -> dict[str, Any]:
        logged_in = "source_id" in session
        keyring = g.get("keyring")
        return {"demo_key": keyring.is_demo if keyring else False,
                "newsroom_fingerprints": keyring.fingerprints if keyring else (),
                "retention_days": deps.settings.retention_days,
                "logged_in": logged_in,
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
        """Start a fresh session; the codename unlocks the reply key, kept in memory."""
        deps.reply_keys.drop(session.get("reply_key"))
        session.clear()
        assert isinstance(session, ServerSession)  # noqa: S101
        session.regenerate()
        session["source_id"] = source_id
        key = deps.reply_deriver.derive(codename)
        deps.sources.set_reply_key(source_id, key.public_bytes)
        session["reply_key"] = deps.reply_keys.put(key)

    @bp.get("/")
    def index() -> ViewResult:
        return render_template("source/index.html")

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
        key = deps.reply_keys.get(session.get("reply_key"))
        replies = deps.replies.read_by_source(session["source_id"], key) if key else None
        keyring: Keyring = g.keyring
        browser = deps.browser if deps.browser.enabled else None
        response = make_response(render_template(
            "source/submit.html", receipt=receipt,
            item_count=deps.sources.item_count(session["source_id"]),
            settings=deps.settings, fingerprints=keyring.fingerprints,
            replies=replies, reply_form=LogoutForm(formdata=None),
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

    @bp.post("/replies/<reply_id>/delete")
    @login_required
    def delete_reply(reply_id: str) -> ViewResult:
        if not LogoutForm().validate_on_submit():
            return error_page(400)
        deps.replies.delete_by_source(session["source_id"], reply_id)
        return redirect(url_for("source.submit_form"))

    @bp.post("/submit")
    @login_required
    def submit() -> ViewResult:
        # encrypt.js asks for JSON: it shows the outcome itself, then opens the receipt.
        wants_json = request.accept_mimetypes.best_match(
            ["text/html", "application/json"]) == "application/json"
        try:
            receipt = _receive(deps, session["source_id"])
        except (SubmissionRejected, KeyProblem, EncryptionError) as exc:
            # gpg refusing the key mid-run (a subkey expired, say) is "not accepting".
            if isinstance(exc, EncryptionError):
                log.error("submission refused: %s", exc)
            status = exc.status if isinstance(exc, SubmissionRejected) else 503
            if not isinstance(exc, MalformedUpload) and status != 413:
                _drain_body()  # lets the browser read our page instead of a reset
            message = gettext(exc.message, **exc.params) \
                if isinstance(exc, SubmissionRejected) else None
            if wants_json:
                return jsonify(error=message or gettext(
                    "The site is not accepting submissions at the moment. Nothing from this "
                    "attempt was kept. Please come back later."),
                    reload=isinstance(exc, KeysChanged)), status
            return render_template(
                "source/submit_failed.html", message=message, status=status), status
        session["receipt"] = {"messages": receipt.messages, "files": receipt.files,
                              "skipped": receipt.skipped_empty_files}
        if wants_json:
            return jsonify(next=url_for("source.submit_form"))
        return redirect(url_for("source.submit_form"), code=303)

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


def _receive(deps: SourceDeps, source_id: int) -> Any:
    """Stream the body: CSRF first, then the message and each file, encrypted as they come.

    A body whose second field is ``encrypted=1`` comes from encrypt.js: its items are
    OpenPGP messages already, checked and kept as they are (see _receive_encrypted).
    """
    keyring: Keyring = g.keyring
    gpg = keyring.require()
    if request.mimetype != "multipart/form-data" or "boundary" not in request.mimetype_params:
        raise MalformedUpload("The upload was not a well-formed form submission.")
    reader = MultipartReader(
        request.stream, request.mimetype_params["boundary"].encode("latin-1", "replace"),
        chunk_size=deps.settings.upload_chunk_bytes, max_parts=deps.settings.max_files + 16)
    with Draft(gpg, keyring.fingerprints, deps.store, deps.db, deps.settings.max_files,
               encryption_key_ids=keyring.encryption_key_ids) as draft:
        parts = iter(reader)
        _check_csrf(next(parts, None))
        second = next(parts, None)
        if second is not None and not second.is_file and second.name == "encrypted":
            _receive_encrypted(second, parts, draft, keyring, deps.settings)
        elif second is not None:
            _receive_plain(itertools.chain([second], parts), draft, deps.settings)
        return draft.commit(source_id)


def _receive_plain(parts: Iterator[Part], draft: Draft, settings: Settings) -> None:
    """The form as a browser without JavaScript sends it: gpg encrypts on arrival."""
    for part in parts:
        if part.is_file and part.name == "files":
            draft.add_file(part, part.filename or "")
        elif not part.is_file and part.name == "message":
            text = _message_text(part, settings)
            if text.strip():
                draft.add_message(text)
        else:
            part.drain()  # unknown fields are ignored, never stored


def _receive_encrypted(marker: Part, parts: Iterator[Part], draft: Draft, keyring: Keyring,
                       settings: Settings) -> None:
    """What encrypt.js sends: ``encrypted=1``, ``fingerprints`` (the keys the page
    encrypted to), ``empty_files`` (a count, for the receipt), then ``message`` and
    ``files`` parts that are each one OpenPGP message."""
    if marker.read_all(16) != b"1":
        raise MalformedUpload("The upload was not a well-formed form submission.")
    keys_checked = False
    for part in parts:
        if not part.is_file and part.name == "fingerprints":
            sent = part.read_all(4096).decode("ascii", "replace").upper().split()
            if sorted(sent) != sorted(keyring.fingerprints):
                raise KeysChanged()
            keys_checked = True
        elif not part.is_file and part.name == "empty_files":
            raw = part.read_all(16).decode("ascii", "replace")
            # isdecimal on ASCII only: "²".isdigit() is true but int("²") fails.
            draft.skipped_empty_files = min(int(raw), settings.max_files) \
                if raw.isascii() and raw.isdecimal() else 0
        elif part.name in ("message", "files"):
            if not keys_checked:
                raise KeysChanged()
            if part.name == "message":
                # The text's UTF-8 bound plus room for a PKESK per key (RSA-4096: 0.5 KiB).
                draft.add_encrypted(part, ItemKind.MESSAGE,
                                    max_bytes=settings.max_form_field_bytes + 16 * 1024)
            else:
                draft.add_encrypted(part, ItemKind.FILE)
        else:
            part.drain()


def _check_csrf(part: Part | None) -> None:
    """The token is the form's first field, so a forged upload is refused before any byte
    of it is encrypted or stored."""
    if part is None or part.is_file or part.name != "csrf_token":
        raise SubmissionRejected("This form had expired or was sent from somewhere else, so "
                                 "nothing was kept. Reload the page and send it again.")
    try:
        validate_csrf(part.read_all(1024).decode("ascii"))
    except (ValidationError, UnicodeDecodeError, SubmissionRejected):
        raise SubmissionRejected("This form had expired or was sent from somewhere else, so "
                                 "nothing was kept. Reload the page and send it again.") from None


def _message_text(part: Part, settings: Settings) -> str:
    raw = part.read_all(settings.max_form_field_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SubmissionRejected(
            "The message could not be read as text, so nothing was kept. Type or paste it "
            "again and send it.") from None
    text = text.replace("\r\n", "\n")
    if len(text) > settings.max_message_chars:
        raise SubmissionRejected(
            "The message is longer than %(limit)s characters, so nothing was kept. Shorten "
            "it, or put the text in a file and attach it.",
            params={"limit": settings.max_message_chars})
    return text


def _drain_body() -> None:
    try:
        while request.stream.read(1024 * 1024):
            pass
    except Exception:  # noqa: S110 - the page is sent either way
        pass
