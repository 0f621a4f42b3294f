"""The source interface: the only app reachable by the public."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response, g, request
from flask.typing import ResponseReturnValue

from tipbox import clock as clocks
from tipbox.codenames import CodenameHasher, CodenameSigner
from tipbox.config import REPO_ROOT, Settings
from tipbox.crypto.keyring import Keyring, KeyringSource
from tipbox.crypto.reply_keys import ReplyKeyDeriver
from tipbox.flood import FloodGuard, FloodPolicy, TicketSigner
from tipbox.hashing_slots import HashingSlots
from tipbox.intake.pieces import PieceService
from tipbox.key_registry import KeyringProvider, StaticKeyring
from tipbox.replies import ReplyKeyCache, ReplyService
from tipbox.sources import SourceService
from tipbox.storage import CiphertextStore
from tipbox.web.app_factory import build_app, run_first
from tipbox.web.browser_encryption import ENCRYPT_WORKER_SCRIPT, WORKER_CSP, BrowserEncryption
from tipbox.web.error_pages import error_page
from tipbox.web.security import content_security_policy
from tipbox.web.source.flood_gate import PowScripts
from tipbox.web.source.guide import GuideLibrary
from tipbox.web.source.turns import refuse_when_marked, take_turns
from tipbox.web.source.views import TAKES_A_TURN, SourceDeps, make_blueprint

log = logging.getLogger(__name__)


def create_source_app(settings: Settings | None = None, *,
                      keyring: Keyring | None = None,
                      browser: BrowserEncryption | None = None,
                      hashing: HashingSlots | None = None,
                      account_pages: HashingSlots | None = None,
                      guides: GuideLibrary | None = None,
                      clock: Callable[[], float] | None = None) -> Flask:
    """Build the source app. Keys come from the registry's active keys (see tipbox.key_registry);
    tests may hand in a fixed ``keyring`` instead. The in-browser encryption scripts are
    read and hashed here, once (tests may hand in ``browser``). Memory-hard hashing runs in
    slots sized for this machine (tests may hand in ``hashing``), and the codename pages
    take turns (``account_pages``, likewise). The source guide and its
    translations are read from docs/ and rendered once (tests may hand in ``guides``). The
    flood defence's tickets go by ``clock`` (seconds since the epoch; tests may move it on)."""
    settings = settings or Settings.from_env()
    if browser is None:
        browser = BrowserEncryption.load(REPO_ROOT / "static", REPO_ROOT / "package-lock.json")
    browser.log_state()
    app, plumbing = build_app("tipbox.web.source", settings, "source", hashing)
    keys: KeyringSource = StaticKeyring(keyring) if keyring is not None else \
        KeyringProvider.from_settings(plumbing.sessions, settings)
    _log_gate(keys.current())
    store = CiphertextStore(settings.store_dir)
    deps = SourceDeps(
        settings=settings,
        keys=keys,
        store=store,
        db=plumbing.sessions,
        sources=SourceService(plumbing.sessions,
                              CodenameHasher(plumbing.secrets.codename_pepper, settings.scrypt,
                                             plumbing.hashing)),
        signer=CodenameSigner(plumbing.secrets.codename_mac_key),
        replies=ReplyService(plumbing.sessions, store, keys),
        reply_keys=ReplyKeyCache(ttl_seconds=settings.session_idle_minutes * 60),
        reply_deriver=ReplyKeyDeriver(plumbing.secrets.codename_pepper, settings.scrypt,
                                       plumbing.hashing),
        browser=browser,
        guides=guides or GuideLibrary.load(REPO_ROOT / "docs"),
        flood=FloodGuard(plumbing.sessions,
                         TicketSigner.from_instance_key(plumbing.secrets.flask_secret_key),
                         FloodPolicy.from_settings(settings), clock or clocks.seconds),
        pow_scripts=PowScripts.load(REPO_ROOT / "static"),
        pieces=PieceService(store, plumbing.sessions, settings),
    )
    # First of all before-request checks: while offline, even a form without a CSRF
    # token gets the 503 page, not advice to reload and send it again.
    run_first(app, _keyring_or_offline_page(keys))
    app.register_blueprint(make_blueprint(deps))
    take_turns(app, account_pages or HashingSlots.for_account_pages(settings.account_pages_at_once),
               TAKES_A_TURN)
    # Before even the offline check: a request refused a turn gets the busy page.
    run_first(app, refuse_when_marked)
    app.after_request(_worker_csp)
    return app


def _worker_csp(response: Response) -> Response:
    """encrypt-worker.js runs as a dedicated worker, whose CSP is the one its script is
    served with: it may load OpenPGP.js and the core, and upload, to this origin only."""
    if request.endpoint == "static" and (request.view_args or {}).get("filename") == \
            ENCRYPT_WORKER_SCRIPT:
        response.headers["Content-Security-Policy"] = content_security_policy(WORKER_CSP)
    return response


def _keyring_or_offline_page(keys: KeyringSource) -> Callable[[], ResponseReturnValue | None]:
    def load_keyring_or_answer_offline() -> ResponseReturnValue | None:
        """One look at the registry per request (views then use g.keyring); while
        submissions are off, every source page but static files is the 503 page."""
        g.keyring = keys.current()
        # The picker stays usable, so a source can read the 503 page in their language.
        if request.endpoint in ("static", "language.choose"):
            return None
        if not g.keyring.accepting:
            return error_page(503)
        return None

    return load_keyring_or_answer_offline


def _log_gate(keyring: Keyring) -> None:
    """Say at start-up, for the admin reading the log, whether submissions are on."""
    if keyring.accepting:
        log.info("accepting submissions, encrypted to %s", ", ".join(keyring.fingerprints))
        if keyring.is_demo:
            log.warning("the newsroom key is a DEMO key: do not use this instance for real "
                        "sources")
    else:
        log.error("NOT accepting submissions: %s", keyring.problem)
