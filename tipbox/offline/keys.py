"""``tipbox-open keys``: make the newsroom key pair offline, and prove we hold it.

The secret key is made on the air-gapped machine and never leaves it (except to a backup
medium); only the public key travels to the server. ``prove`` answers the server's
challenge, which shows that the key the server is about to use is one we can decrypt for.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tipbox.crypto.gpg import GnuPG
from tipbox.offline.decrypt import Decryptor
from tipbox.offline.errors import Refused
from tipbox.offline.openpgp import HEAD_BYTES, NotAnItem, read_envelope

DEFAULT_NAME = "Newsroom (tipbox)"
DEFAULT_EMAIL = "newsroom@tipbox.invalid"
MAX_CHALLENGE_BYTES = 1024 * 1024
MAX_CODE_BYTES = 4096
MAX_CODE_CHARS = 200
_EXPIRE_RE = re.compile(r"[1-9]\d{0,3}[dwmy]?|\d{4}-\d{2}-\d{2}")
_EMAIL_RE = re.compile(r"[^\s@<>]+@[^\s@<>]+")


@dataclass(frozen=True)
class KeyRequest:
    """What ``keys generate`` makes; the passphrase never reaches a repr or a log."""

    name: str
    email: str
    rsa: bool
    expire: str
    passphrase: str = field(repr=False)


def check_request(request: KeyRequest) -> None:
    """Refuse values gpg would misread: its batch key parameters are line based."""
    for label, value in (("--name", request.name), ("--email", request.email)):
        if not value.strip() or any(not ch.isprintable() for ch in value) or "<" in value \
                or ">" in value:
            raise Refused(f"{label} must be printable text without < or >.")
    if not _EMAIL_RE.fullmatch(request.email):
        raise Refused("--email must look like an email address, e.g. newsroom@example.org.")
    if not _EXPIRE_RE.fullmatch(request.expire):
        raise Refused("--expire takes a period such as 2y, 18m, 90d or a day (YYYY-MM-DD).")
    check_passphrase(request.passphrase)


def check_passphrase(passphrase: str) -> None:
    if not passphrase:
        raise Refused("The secret key needs a passphrase: an empty one protects nothing.")
    if any(ch in passphrase for ch in "\r\n\0") or passphrase != passphrase.strip():
        raise Refused("A passphrase cannot hold line breaks or start or end with a space.")


def generate(home: Path, request: KeyRequest, public_out: Path | None, out: TextIO) -> Path:
    """Make the key pair in ``home``, write the public key, print what to do next."""
    check_request(request)
    if public_out is not None and (public_out.exists() or public_out.is_symlink()):
        raise Refused(f"{public_out} already exists: choose another --out file.")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    gpg = GnuPG.existing_home(home)
    fpr = gpg.generate_key(request.name, request.email, passphrase=request.passphrase,
                           expire=request.expire, rsa_bits=4096 if request.rsa else None)
    target = public_out or Path.cwd() / f"newsroom-{fpr[-16:]}.asc"
    public = str(gpg.export_public(fpr))
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    os.fchmod(fd, 0o644)  # a public key: readable by anyone, whatever the umask
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(public)
    _print_advice(out, home, fpr, target, request)
    return target


def _print_advice(out: TextIO, home: Path, fpr: str, public: Path, request: KeyRequest,
                  ) -> None:
    revocation = home / "openpgp-revocs.d" / f"{fpr}.rev"
    grouped = " ".join(fpr[i:i + 4] for i in range(0, len(fpr), 4))
    kind = "RSA-4096" if request.rsa else "Ed25519 with a Cv25519 encryption subkey"
    lines = [
        "Newsroom key pair created.",
        f"  Fingerprint: {grouped}",
        f"  Type:        {kind}, expires after {request.expire}",
        f"  Secret key:  in the GnuPG home {home}",
        f"  Public key:  {public}",
        "",
        "Back it up now. Without the secret key nothing encrypted to this key can ever be",
        "read again. Copy it to a second medium (an encrypted USB stick kept in a safe):",
        f"  gpg --homedir {home} --armor --export-secret-keys {fpr} > "
        f"/media/BACKUP/newsroom-secret-{fpr[-16:]}.asc",
        "(gpg asks for the key's passphrase; the export stays protected by it.)",
    ]
    if revocation.exists():
        lines += [
            "gpg also stored a revocation certificate, to publish if the key is ever lost or",
            "stolen. Copy it to the backup medium too, and keep it as safe as the key:",
            f"  {revocation}",
        ]
    else:
        lines += [
            "Make a revocation certificate for the day the key is lost or stolen, and keep",
            "it with the backup:",
            f"  gpg --homedir {home} --output /media/BACKUP/newsroom-{fpr[-16:]}.rev "
            f"--gen-revoke {fpr}",
        ]
    lines += [
        "",
        f"Next: carry {public.name} (the public key only) to the server, then run",
        f"  tipbox keys add {public.name}",
        f"  tipbox keys challenge {fpr}",
        "and bring the challenge file back here for `tipbox-open keys prove FILE`.",
    ]
    out.write("\n".join(lines) + "\n")


# What `tipbox keys challenge` encrypts (tipbox/key_registry.py), and nothing else is printed.
CHALLENGE_RE = re.compile(rb"tipbox-challenge v1 ([0-9A-F]{40}|[0-9A-F]{64}) "
                          rb"([A-Z2-7]{4}(?:-[A-Z2-7]{4}){3})\n?")


def prove(challenge: Path, decryptor: Decryptor) -> tuple[str, str]:
    """(code, fingerprint of the key that decrypted it) from a challenge file."""
    try:
        with challenge.open("rb") as fh:
            head = fh.read(MAX_CHALLENGE_BYTES + 1)
    except OSError as exc:
        raise Refused(f"Cannot read {challenge}: {exc.strerror}.") from exc
    if len(head) > MAX_CHALLENGE_BYTES:
        raise Refused(f"{challenge} is far larger than a challenge: it is not one.")
    try:
        envelope = read_envelope(head[:HEAD_BYTES])
    except NotAnItem as exc:
        raise Refused(f"{challenge} is not a challenge from tipbox: {exc}.") from exc
    # A challenge goes to the new key alone. Anything else (a stored item, encrypted to
    # every newsroom key) is refused unread: a compromised server must not be able to
    # have its items decrypted here and their text typed back in as "the code".
    if len(envelope.recipients) != 1:
        raise Refused(f"{challenge} is encrypted to {len(envelope.recipients)} keys; a "
                      "challenge from tipbox is encrypted to the new key only. Not decrypted.")
    with tempfile.TemporaryDirectory(prefix="tipbox-prove-") as tmp:
        output = Path(tmp) / "code"
        outcome = decryptor.decrypt(challenge, output, MAX_CODE_BYTES)
        if not outcome.ok:
            keys = f" (it needs key {', '.join(outcome.missing_keys)})" \
                if outcome.missing_keys else ""
            raise Refused(f"Could not decrypt the challenge: {outcome.reason}{keys}. Prove "
                          "with the GnuPG home that holds the new key's secret half.")
        raw = output.read_bytes()
    match = CHALLENGE_RE.fullmatch(raw)
    if match is None:
        raise Refused("The file decrypted, but it is not a tipbox challenge (which holds "
                      "only `tipbox-challenge v1 FINGERPRINT CODE`), so nothing from it is "
                      "shown.")
    fingerprint, code = match.group(1).decode(), match.group(2).decode()
    if outcome.key_fingerprint and fingerprint != outcome.key_fingerprint.upper():
        raise Refused(f"The challenge names key {fingerprint} but was decrypted with "
                      f"{outcome.key_fingerprint}. Not shown: ask for a new challenge.")
    return code, outcome.key_fingerprint
