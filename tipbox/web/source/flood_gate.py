"""The flood defence's pages (tipbox.flood): the wait page, the scripts that do the work,
and where a request carries its ticket.

A browser brings its ticket in the address (``t``, and ``s`` once worked out), so that the
wait page can send a browser without JavaScript on with nothing but
``<meta http-equiv="refresh">``; encrypt.js sends it in the ``Tipbox-Proof`` header
instead ("ticket solution"). Both are read before any byte of an upload.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from flask import make_response, render_template, request, url_for
from flask_babel import gettext
from werkzeug.wrappers import Response

from tipbox.flood import Gate
from tipbox.web.browser_encryption import ENCRYPT_POLICY, SCRIPT_CSP, Script, sri
from tipbox.web.security import content_security_policy

POW_SCRIPT = "pow.js"
POW_WORKER = "pow-worker.js"
PROOF_HEADER = "Tipbox-Proof"
# The one Trusted Types policy pow.js makes: it turns exactly the worker's own address
# into a script URL, so `new Worker` works while no other string can become code.
TRUSTED_TYPES_POLICY = "tipbox-pow"
_WORK_CSP = {"worker-src": "'self'", "trusted-types": TRUSTED_TYPES_POLICY}
# The wait page runs pow.js and its worker, from our origin, and nothing else: no
# connect-src (it fetches nothing; default-src 'none' stands).
WAIT_CSP = {"script-src": "'self'", "require-trusted-types-for": "'script'", **_WORK_CSP}
# The submission page adds pow.js's worker and policy to what encrypt.js already needs.
SUBMIT_CSP = {**SCRIPT_CSP, **_WORK_CSP,
              "trusted-types": f"{ENCRYPT_POLICY} {TRUSTED_TYPES_POLICY}"}


class SubmitPowConfig(TypedDict):
    """What pow.js reads on the submission page (its ``pow-config`` JSON)."""

    proof: str  # "ticket solution", or "" while the site is quiet
    ticketUrl: str
    worker: str
    text: dict[str, str]


class WaitPowConfig(TypedDict):
    """What pow.js reads on the wait page (its ``pow-config`` JSON)."""

    ticket: str
    bits: int
    next: str
    worker: str
    text: dict[str, str]


@dataclass(frozen=True)
class PowScripts:
    """pow.js with its Subresource Integrity hash; None when the file is missing, and the
    site then answers every browser with the wait, as it does without JavaScript. The
    worker carries no integrity attribute (``new Worker`` takes none): it comes from the
    same origin under the same CSP, like pow.js itself."""

    script: Script | None

    @classmethod
    def load(cls, static_dir: Path) -> PowScripts:
        own = static_dir / POW_SCRIPT
        if not own.is_file() or not (static_dir / POW_WORKER).is_file():
            return cls(None)
        return cls(Script(POW_SCRIPT, sri(own.read_bytes())))


def proof_from_request() -> tuple[str, str]:
    """The ticket and solution this request brings: encrypt.js's header, else the
    address (the form of a browser without JavaScript posts to an address with both)."""
    header = request.headers.get(PROOF_HEADER, "")
    if header:
        token, _, solution = header.partition(" ")
        return token.strip(), solution.strip()
    return request.args.get("t", ""), request.args.get("s", "")


def proof_args(gate: Gate) -> dict[str, str]:
    """The address arguments that carry a passed gate's ticket to the next request."""
    if gate.ticket is None:
        return {}
    return {"t": gate.ticket.token, **({"s": gate.solution} if gate.solution else {})}


def submit_config(gate: Gate) -> SubmitPowConfig:
    """What pow.js needs on the submission page: the proof this page's ticket already
    carries (none while the site is quiet), where a fresh ticket comes from for a second
    attempt, the worker, and its words."""
    proof = f"{gate.ticket.token} {gate.solution}" if gate.ticket is not None else ""
    return {"proof": proof, "ticketUrl": url_for("source.fresh_ticket"),
            "worker": url_for("static", filename=POW_WORKER), "text": work_texts()}


def work_texts() -> dict[str, str]:
    return {
        "working": gettext("Checking your browser is not a robot… this can take up to a "
                           "minute when the site is busy."),
        "done": gettext("Check finished."),
        "failed": gettext("Your browser could not do the check. The page goes on by itself "
                          "once the wait is over."),
    }


def wait_page(gate: Gate, endpoint: str, scripts: PowScripts) -> Response:
    """The page a flooded site shows before ``endpoint``: it reloads itself onto
    ``endpoint`` with the ticket when the wait is over; with JavaScript, pow.js works out
    the ticket meanwhile and goes on as soon as it has. ``endpoint`` takes no URL
    arguments (the codename and submission pages)."""
    ticket = gate.ticket
    assert ticket is not None  # noqa: S101 - a wait page is shown under flood only
    seconds = gate.wait
    next_url = url_for(endpoint, t=ticket.token)
    config: WaitPowConfig | None = {
        "ticket": ticket.token, "bits": ticket.bits, "next": next_url,
        "worker": url_for("static", filename=POW_WORKER), "text": work_texts()} \
        if scripts.script else None
    response = make_response(render_template(
        "source/wait.html", seconds=seconds, next_url=next_url, pow_config=config,
        pow_script=scripts.script), 200)
    if scripts.script:
        response.headers["Content-Security-Policy"] = content_security_policy(WAIT_CSP)
    return response
