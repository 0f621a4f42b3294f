"""Decrypting one item with the local keyring, and saying why when it fails.

gpg's status lines carry everything the journalist needs to know: NO_SECKEY names a key
this keyring lacks; PINENTRY_LAUNCHED, NEED_PASSPHRASE or a failed secret-key operation
mean a passphrase is needed; PLAINTEXT carries the original file name.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tipbox.crypto.gpg import GnuPG
from tipbox.offline.names import display

# No key look-ups (the machine is offline, and a signed item must not make gpg try).
_GPG_ARGS = ("--no-auto-key-retrieve",)
_PASSPHRASE_SIGNS = {b"NEED_PASSPHRASE", b"BAD_PASSPHRASE", b"MISSING_PASSPHRASE",
                     b"PINENTRY_LAUNCHED"}
_BAD_PASSPHRASE_CODE = 11  # GPG_ERR_BAD_PASSPHRASE
MAX_PROMPTS = 3


@dataclass(frozen=True)
class Outcome:
    ok: bool
    filename: str = ""  # the original name from the literal data packet, unsanitised
    reason: str = ""  # why it failed, in words for the journalist
    missing_keys: tuple[str, ...] = ()  # key ids gpg found no secret key for
    needs_passphrase: bool = False
    wrong_passphrase: bool = False
    key_fingerprint: str = ""  # the primary key that decrypted it
    cut_short: bool = False  # --max-output (or a full disk) stopped the plaintext


class Passphrases:
    """The passphrase for the secret key: given up front, asked for once needed, or none."""

    def __init__(self, given: str | None, prompt: Callable[[str], str] | None) -> None:
        self.current = given
        self._prompt = prompt  # None: never ask (no terminal, or --passphrase-fd was used)
        self._asked = 0

    def ask(self, why: str) -> bool:
        """Ask for (another) passphrase; False when there is no one to ask or they skipped."""
        if self._prompt is None or self._asked >= MAX_PROMPTS:
            return False
        self._asked += 1
        answer = self._prompt(f"{why}.\nPassphrase of the newsroom secret key "
                              "(leave empty to skip the items that need it): ")
        if not answer:
            self._prompt = None
            return False
        self.current = answer
        return True


class Decryptor:
    def __init__(self, gpg: GnuPG, passphrases: Passphrases) -> None:
        self.gpg = gpg
        self.passphrases = passphrases

    def decrypt(self, ciphertext: Path, output: Path, max_output: int) -> Outcome:
        """Decrypt into ``output``, which exists afterwards only if the outcome is ok.

        ``max_output`` bounds the plaintext: an OpenPGP message may hold compressed data,
        and a few kilobytes of it could otherwise fill the disk.
        """
        args = [*_GPG_ARGS, "--max-output", str(max(max_output, 1))]
        while True:
            ok, lines = self.gpg.decrypt_file_status(
                ciphertext, output, passphrase=self.passphrases.current, extra_args=args)
            outcome = classify(ok, lines)
            if outcome.ok or not outcome.needs_passphrase:
                return outcome
            why = ("That passphrase is wrong" if outcome.wrong_passphrase else
                   "The secret key for this item is protected by a passphrase")
            if not self.passphrases.ask(why):
                return outcome


def classify(ok: bool, lines: Sequence[bytes]) -> Outcome:
    """What gpg's status lines say happened."""
    status = [_word_and_rest(line) for line in lines]
    words = {word for word, _ in status}
    if ok:
        keys = [rest.split() for word, rest in status if word == b"DECRYPTION_KEY"]
        primary = keys[0][1].decode("ascii", "replace") if keys and len(keys[0]) > 1 else ""
        return Outcome(True, filename=plaintext_name(lines), key_fingerprint=primary)
    enc_to = {_first(rest) for word, rest in status if word == b"ENC_TO"}
    no_seckey = tuple(dict.fromkeys(_first(rest) for word, rest in status
                                    if word == b"NO_SECKEY"))
    pk_errors = [_error_code(rest) for word, rest in status
                 if word == b"ERROR" and rest.startswith(b"pkdecrypt_failed ")]
    if words & _PASSPHRASE_SIGNS or pk_errors:
        if b"BAD_PASSPHRASE" in words or _BAD_PASSPHRASE_CODE in pk_errors:
            return Outcome(False, reason="the passphrase for the secret key is wrong",
                           needs_passphrase=True, wrong_passphrase=True)
        return Outcome(False, needs_passphrase=True, reason=(
            "the secret key is protected by a passphrase and gpg could not ask for it (run "
            "tipbox-open in a terminal, or use --passphrase-fd)"))
    if no_seckey and enc_to <= set(no_seckey):
        return Outcome(False, reason="this keyring has no secret key for it",
                       missing_keys=no_seckey)
    aead = any(word == b"DECRYPTION_INFO" and rest.split()[2:3] not in ([], [b"0"])
               for word, rest in status)
    if b"BADMDC" in words or (b"DECRYPTION_OKAY" in words and b"GOODMDC" not in words
                              and not aead):
        return Outcome(False, reason="its integrity check failed: the ciphertext was altered")
    if b"DECRYPTION_OKAY" in words:
        return Outcome(False, cut_short=True, reason=(
            "gpg stopped before the end: the plaintext is larger than allowed, or the disk "
            "is full"))
    errors = [rest.decode("utf-8", "replace") for word, rest in status if word == b"ERROR"]
    detail = f" ({display(errors[0])[:120]})" if errors else ""
    return Outcome(False, reason=f"gpg could not decrypt it{detail}")


def plaintext_name(lines: Sequence[bytes]) -> str:
    """The file name in ``PLAINTEXT <format> <time> <name>`` (gpg escapes it as %XX)."""
    for line in lines:
        parts = line.split(b" ", 3)
        if parts[0] == b"PLAINTEXT":
            raw = urllib.parse.unquote_to_bytes(parts[3]) if len(parts) > 3 else b""
            return raw.decode("utf-8", "replace")
    return ""


def _word_and_rest(line: bytes) -> tuple[bytes, bytes]:
    word, _, rest = line.partition(b" ")
    return word, rest


def _first(rest: bytes) -> str:
    return (rest.split() or [b""])[0].decode("ascii", "replace").upper()


def _error_code(rest: bytes) -> int:
    code = rest.split()[-1]
    return int(code) & 0xFFFF if code.isdigit() else -1
