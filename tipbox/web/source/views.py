"""Views of the source interface. Thin: forms in, domain calls, templates out."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ParamSpec

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
from flask_babel import gettext
from flask_wtf.csrf import validate_csrf
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.wrappers import Response
from wtforms import ValidationError

from tipbox.codenames import CodenameSigner, codename_bits, generate_codename, normalize_codename
from tipbox.config import Settings
from tipbox.crypto.keyring import Keyring, KeyringSource
from tipbox.crypto.reply_keys import ReplyKeyDeriver
from tipbox.errors import MalformedUpload, SessionEnded, SubmissionRejected
from tipbox.flood import CREATE, SUBMIT, FloodGuard
from tipbox.intake.draft import Draft
from tipbox.intake.multipart import NOT_A_FORM
from tipbox.intake.pieces import PIECE_BYTES, Piece, PieceService, UploadOwner
from tipbox.intake.upload import (
    CSRF_REFUSED,
    FormReader,
    multipart_body,
    read_encrypted_form,
    read_plain_form,
    receive_upload,
)
from tipbox.models import ItemKind
from tipbox.replies import ReplyKeyCache, ReplyService
from tipbox.sources import SourceService
from tipbox.storage import CiphertextStore
from tipbox.web.browser_encryption import SCRIPT_CSP, BrowserEncryption
from tipbox.web.error_pages import error_page, wants_json
from tipbox.web.locales import BY_CODE, page_language
from tipbox.web.request import streamed_body, streams_body
from tipbox.web.security import content_security_policy
from tipbox.web.sessions import ServerSession, session_key
from tipbox.web.source.encrypt_config import ArmoredKeys, encrypt_config
from tipbox.web.source.flood_gate import (
    SUBMIT_CSP,
    PowScripts,
    proof_args,
    proof_from_request,
    submit_config,
    wait_page,
)
from tipbox.web.source.forms import CsrfOnlyForm, LoginForm, LogoutForm, NewCodenameForm
from tipbox.web.source.guide import GuideLibrary

P = ParamSpec("P")
ViewResult = str | Response | tuple[str | Response, int]

# The codename pages: a flood of them is answered a few at a time, each waiting for its
# turn before the app starts on it (tipbox.web.source.turns).
TAKES_A_TURN = ("source.generate", "source.create", "source.login")


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
    guides: GuideLibrary
    flood: FloodGuard
    pow_scripts: PowScripts
    pieces: PieceService


def make_blueprint(deps: SourceDeps) -> Blueprint:
    bp = Blueprint("source", __name__)
    armored_keys = ArmoredKeys()

    @bp.app_context_processor
    def page_context() -> dict[str, Any]:  # Flask's type for it: a TypedDict is refused
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

    def login_required(view: Callable[P, ViewResult]) -> Callable[P, ViewResult]:
        @functools.wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> ViewResult:
            source_id = session.get("source_id")
            if not isinstance(source_id, int) or not deps.sources.exists(source_id):
                session.clear()
                return redirect(url_for("source.login", expired=1))
            return view(*args, **kwargs)

        return wrapper

    def log_in(source_id: int, codename: str) -> None:
        """Start a fresh session; the codename unlocks the reply key, kept in memory.
        The key comes first: if deriving it fails (the site is busy), no session is
        half logged in."""
        key = deps.reply_deriver.derive(codename)
        deps.sources.set_reply_key(source_id, key.public_bytes)
        deps.reply_keys.drop(session.get("reply_key"))
        end_uploads()
        session.clear()
        assert isinstance(session, ServerSession)  # noqa: S101
        session.regenerate()
        session["source_id"] = source_id
        session["reply_key"] = deps.reply_keys.put(key)

    def end_uploads() -> None:
        """An unfinished upload in pieces ends with its session, at once."""
        key = session_key(session)
        if key is not None:
            deps.pieces.end_session(key)

    @bp.get("/")
    def index() -> ViewResult:
        return render_template("source/index.html")

    @bp.get("/guide")
    def source_guide() -> ViewResult:
        """The guide in the reader's language, else in English."""
        guide = deps.guides.for_language(page_language().code)
        return render_template("source/guide.html", guide=guide,
                               guide_language=BY_CODE[guide.language])

    @bp.get("/guide/en")
    def source_guide_english() -> ViewResult:
        """The English original, which a stale translation links to."""
        return render_template("source/guide.html", guide=deps.guides.english,
                               guide_language=BY_CODE["en"], english_chosen=True)

    @bp.get("/public-key")
    def public_key() -> ViewResult:
        """The active newsroom key(s), to verify the fingerprint or to encrypt oneself."""
        armored = "\n".join(key["armored"] for key in armored_keys.of(g.keyring))
        return Response(armored, mimetype="application/pgp-keys", headers={
            "Content-Disposition": 'attachment; filename="newsroom-public-key.asc"'})

    @bp.get("/generate")
    def generate() -> ViewResult:
        # Under flood, a wait (or work) comes first; its ticket then rides in the form.
        gate = deps.flood.gate(CREATE, *proof_from_request())
        if not gate.passed:
            return wait_page(gate, "source.generate", deps.pow_scripts)
        codename = generate_codename()
        form = NewCodenameForm(codename=codename, mac=deps.signer.sign(codename),
                               ticket=gate.ticket.token if gate.ticket else "",
                               solution=gate.solution)
        return render_template("source/generate.html", codename=codename, form=form,
                               bits=int(codename_bits()), again=proof_args(gate))

    @bp.post("/create")
    def create() -> ViewResult:
        form = NewCodenameForm()
        codename = normalize_codename(form.codename.data or "")
        if not form.validate_on_submit() or codename is None or \
                not deps.signer.verify(codename, form.mac.data or ""):
            return error_page(400, gettext(
                "That codename was not one this site gave out. Start again to get a new one."))
        deps.flood.admit(CREATE, form.ticket.data or "", form.solution.data or "")
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
        gate = deps.flood.gate(SUBMIT, *proof_from_request())
        if not gate.passed:
            return wait_page(gate, "source.submit_form", deps.pow_scripts)
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
            encrypt_config=encrypt_config(deps.settings, armored_keys.of(keyring))
            if browser else None,
            # Without JavaScript the ticket rides in the form's address.
            submit_action=url_for("source.submit", _external=False, **proof_args(gate)),
            pow_script=deps.pow_scripts.script if browser else None,
            pow_config=submit_config(gate) if browser and deps.pow_scripts.script else None,
        ))
        if browser:
            # The pages that run scripts; every other page keeps a CSP without any.
            response.headers["Content-Security-Policy"] = content_security_policy(
                SUBMIT_CSP if deps.pow_scripts.script else SCRIPT_CSP)
        return response

    @bp.get("/submit/ticket")
    @login_required
    def fresh_ticket() -> ViewResult:
        """A new ticket for pow.js when encrypt.js sends again after a failed attempt
        (the page's own ticket was spent by it). No ticket while the site is quiet."""
        ticket = deps.flood.new_ticket(SUBMIT)
        return jsonify(ticket=ticket.token if ticket else None,
                       bits=ticket.bits if ticket else 0)

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
        # Before any byte of the body is kept: under flood, a request without a good
        # ticket costs one HMAC and one SHA-256, no write, and is refused.
        deps.flood.admit(SUBMIT, *proof_from_request())
        draft = Draft(g.keyring, deps.store, deps.db, deps.settings.max_files,
                      daily_quota=deps.settings.source_daily_bytes)
        body = multipart_body(streamed_body(request), request.mimetype,
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

    # --- uploads sent in pieces (encrypt.js; tipbox.intake.pieces) ----------------------
    # JSON in and out; a session that ended is answered 401 (SessionEnded), not with a
    # redirect to the log-in page, so the page can say so. CSRF: Flask-WTF reads the
    # X-CSRFToken header for start, finish and cancel; the piece route checks it itself,
    # before it reads a byte of the body.

    def uploader() -> UploadOwner:
        source_id = session.get("source_id")
        key = session_key(session)
        if not isinstance(source_id, int) or key is None or not deps.sources.exists(source_id):
            raise SessionEnded()
        return UploadOwner(source_id, key)

    @bp.post("/upload")
    def upload_start() -> ViewResult:
        owner = uploader()
        # One submission begins here: under flood it needs its ticket, as /submit does.
        deps.flood.admit(SUBMIT, *proof_from_request())
        sent = request.get_json(silent=True) or {}
        fingerprints = sent.get("fingerprints")
        empty = sent.get("emptyFiles", 0)
        if not isinstance(fingerprints, list) or not all(isinstance(f, str) for f in fingerprints) \
                or not isinstance(empty, int):
            raise MalformedUpload(NOT_A_FORM)
        status = deps.pieces.start(owner, g.keyring, fingerprints, empty)
        return jsonify({**status.as_dict(), "pieceBytes": PIECE_BYTES})

    @bp.get("/upload/<token>")
    def upload_status(token: str) -> ViewResult:
        return jsonify(deps.pieces.status(uploader(), token).as_dict())

    @bp.put("/upload/<token>/items/<int(max=65535):item>")
    @streams_body
    def upload_piece(token: str, item: int) -> ViewResult:
        owner = uploader()
        if not _csrf_valid(request.headers.get("X-CSRFToken", "")):
            raise SubmissionRejected(CSRF_REFUSED)
        piece = _piece_from(item, request.args, request.content_length)
        return jsonify(deps.pieces.append(owner, g.keyring, token, piece,
                                          streamed_body(request)).as_dict())

    @bp.post("/upload/<token>/finish")
    def upload_finish(token: str) -> ViewResult:
        receipt = deps.pieces.finish(uploader(), g.keyring, token)
        if receipt is not None:
            session["receipt"] = {"messages": receipt.messages, "files": receipt.files,
                                  "skipped": receipt.skipped_empty_files}
        return jsonify(next=url_for("source.submit_form"))

    @bp.post("/upload/<token>/cancel")
    def upload_cancel(token: str) -> ViewResult:
        deps.pieces.cancel(uploader(), token)
        return jsonify(cancelled=True)

    @bp.post("/logout")
    def logout() -> ViewResult:
        form = LogoutForm()
        if not form.validate_on_submit():
            return error_page(400)
        deps.reply_keys.drop(session.get("reply_key"))
        end_uploads()
        session.clear()
        return render_template("source/logged_out.html")

    return bp


def _piece_from(item: int, args: Mapping[str, str], length: int | None) -> Piece:
    """Where a piece goes, from its query (``offset``, ``kind``, ``last``) and its length."""
    offset = args.get("offset", "")
    kind = args.get("kind", ItemKind.FILE.value)
    if length is None or not (offset.isascii() and offset.isdecimal()) or \
            kind not in (ItemKind.FILE.value, ItemKind.MESSAGE.value):
        raise MalformedUpload(NOT_A_FORM)
    return Piece(item, int(offset), length, ItemKind(kind), args.get("last") == "1")


def _csrf_valid(token: str) -> bool:
    try:
        validate_csrf(token)
    except ValidationError:
        return False
    return True
