"""The scripts that encrypt in the source's browser: OpenPGP.js, static/encrypt-core.js
(the encryption and the upload in pieces), static/encrypt.js (the form and its panel) and
static/encrypt-worker.js (the dedicated worker that sends the pieces).

OpenPGP.js comes from npm (package.json, pinned in package-lock.json); `make install` runs
`npm ci` and copies its browser bundle into the git-ignored static/vendor/. It is served
from our own origin, never a CDN, with a Subresource Integrity hash computed here, at app
start, from the very file served. When the bundle is missing or is not the pinned version,
the site runs as it does with JavaScript off: the pages carry no script at all.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

OPENPGP_BUNDLE = "vendor/openpgp.min.js"
# Above this many bytes of files, encrypt.js spools the ciphertext into the site's private
# storage (OPFS) instead of memory: Chromium 156 broke uploads of in-memory Blobs of
# 600 MiB (ERR_BLOB_REFERENCED_BLOB_BROKEN) while 300 MiB went through.
SPOOL_TO_STORAGE_BYTES = 200 * 1024 * 1024
ENCRYPT_CORE_SCRIPT = "encrypt-core.js"  # before encrypt.js, which uses it
ENCRYPT_SCRIPT = "encrypt.js"
ENCRYPT_WORKER_SCRIPT = "encrypt-worker.js"  # loads OpenPGP.js and the core itself
_BANNER_RE = re.compile(rb"^/\*! OpenPGP\.js v(\d+\.\d+\.\d+)\b")

# The one Trusted Types policy encrypt.js makes in the page: it turns exactly the address
# of its worker (encrypt-worker.js) into a script URL.
ENCRYPT_POLICY = "tipbox-encrypt"
# Only the page that encrypts may run scripts: our own files, no inline code, no eval, and
# (Trusted Types) no string ever turned into HTML or code but the worker's address. OpenPGP.js
# needs WebAssembly only for argon2 passwords, which encrypting to public keys never uses,
# so no 'wasm-unsafe-eval'. connect-src lets encrypt.js upload to this origin only.
SCRIPT_CSP = {
    "script-src": "'self'",
    "connect-src": "'self'",
    "worker-src": "'self'",
    "require-trusted-types-for": "'script'",
    "trusted-types": ENCRYPT_POLICY,
}
# A dedicated worker's CSP is its script's response header, not the page's: encrypt-worker.js
# is served with this one. It loads OpenPGP.js and encrypt-core.js from beside it (through
# its one policy, which makes exactly those two addresses script URLs) and uploads to this
# origin.
WORKER_POLICY = "tipbox-worker"
WORKER_CSP = {
    "script-src": "'self'",
    "connect-src": "'self'",
    "require-trusted-types-for": "'script'",
    "trusted-types": WORKER_POLICY,
}


@dataclass(frozen=True)
class Script:
    filename: str  # under static/
    integrity: str  # the value of the script element's integrity attribute


@dataclass(frozen=True)
class BrowserEncryption:
    """The scripts to load on the submission page; none when ``problem`` says why not."""

    scripts: tuple[Script, ...]
    openpgp_version: str | None
    problem: str | None

    @property
    def enabled(self) -> bool:
        return bool(self.scripts)

    @classmethod
    def off(cls, problem: str) -> BrowserEncryption:
        return cls((), None, problem)

    @classmethod
    def load(cls, static_dir: Path, lock_file: Path) -> BrowserEncryption:
        """Check the bundle against the pinned version and hash the page's scripts."""
        bundle = static_dir / OPENPGP_BUNDLE
        if not bundle.is_file():
            return cls.off(f"{bundle} is missing: run `make install` (it needs npm) to "
                           "install OpenPGP.js")
        data = bundle.read_bytes()
        match = _BANNER_RE.match(data)
        found = match.group(1).decode() if match else None
        pinned = pinned_openpgp_version(lock_file)
        if found is None or found != pinned:
            return cls.off(f"{bundle} is OpenPGP.js {found or 'of unknown version'}, but "
                           f"{lock_file.name} pins {pinned or 'none'}: run `make install`")
        # The page loads the core, then encrypt.js. The worker's script is not one of the
        # page's (a worker takes no integrity hash), but must be there too.
        page = (ENCRYPT_CORE_SCRIPT, ENCRYPT_SCRIPT)
        missing = [str(static_dir / name) for name in (*page, ENCRYPT_WORKER_SCRIPT)
                   if not (static_dir / name).is_file()]
        if missing:
            return cls.off(f"{', '.join(missing)} missing")
        return cls((Script(OPENPGP_BUNDLE, sri(data)),
                    *(Script(name, sri((static_dir / name).read_bytes())) for name in page)),
                   found, None)

    def log_state(self) -> None:
        if self.enabled:
            log.info("in-browser encryption on: OpenPGP.js %s from our own origin",
                     self.openpgp_version)
        else:
            log.warning("in-browser encryption off, the site works as with JavaScript "
                        "disabled: %s", self.problem)


def sri(data: bytes) -> str:
    """A Subresource Integrity value (sha384, as the SRI spec recommends)."""
    return "sha384-" + base64.b64encode(hashlib.sha384(data).digest()).decode()


def pinned_openpgp_version(lock_file: Path) -> str | None:
    try:
        lock = json.loads(lock_file.read_text())
        return str(lock["packages"]["node_modules/openpgp"]["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
