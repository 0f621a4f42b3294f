"""What encrypt.js reads from the submission page (its ``encrypt-config`` JSON): the active
newsroom keys, armored, the limits it checks before it sends, where it sends, and its
words in the page's language. The views hand it over; nothing here answers a request.
"""

from __future__ import annotations

from typing import TypedDict

from flask import url_for
from flask_babel import format_decimal, gettext

from tipbox.config import Settings
from tipbox.crypto.keyring import Keyring
from tipbox.web.browser_encryption import ENCRYPT_WORKER_SCRIPT, SPOOL_TO_STORAGE_BYTES


class ArmoredKey(TypedDict):
    """An active newsroom public key, as encrypt.js takes it."""

    fingerprint: str
    armored: str


class PiecesConfig(TypedDict):
    url: str  # where an upload in pieces starts


class EncryptConfig(TypedDict):
    """What encrypt.js reads from the submission page (its ``encrypt-config`` JSON)."""

    keys: list[ArmoredKey]
    maxMessageChars: int
    maxBytes: int
    maxFiles: int
    spoolBytes: int
    uploadUrl: str
    pieces: PiecesConfig
    worker: str  # encrypt-worker.js, the dedicated worker that sends the pieces
    text: dict[str, str]  # its words, in the page's language


class ArmoredKeys:
    """The active public keys for encrypt.js (and the public-key download), exported once
    per key set: each export runs gpg, and every submission page needs them."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, tuple[str, ...]], list[ArmoredKey]] = {}

    def of(self, keyring: Keyring) -> list[ArmoredKey]:
        gpg = keyring.require()
        cache_key = (str(gpg.home), keyring.fingerprints)
        found = self._cache.get(cache_key)
        if found is None:
            found = [{"fingerprint": fpr, "armored": str(gpg.export_public(fpr))}
                     for fpr in keyring.fingerprints]
            self._cache.clear()  # only the current key set is ever needed
            self._cache[cache_key] = found
        return found


def encrypt_config(settings: Settings, keys: list[ArmoredKey]) -> EncryptConfig:
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
        # Uploads that resume (tipbox.intake.pieces): where they start; the piece size
        # comes with the start's answer.
        "pieces": {"url": url_for("source.upload_start")},
        "worker": url_for("static", filename=ENCRYPT_WORKER_SCRIPT),
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
            # Filled in by encrypt.js: sizes in binary units, the time left as h:mm:ss.
            "progress": gettext("%(sent)s of %(total)s sent"),
            "progressRate": gettext("%(sent)s of %(total)s sent, %(rate)s per second, about "
                                    "%(left)s left"),
            "reconnecting": gettext(
                "Reconnecting… The connection broke; the upload carries on where it stopped "
                "as soon as the site answers again. Keep this page open."),
            "serverFailed": gettext(
                "The site did not accept this submission, and nothing from this attempt "
                "was kept."),
        },
    }
