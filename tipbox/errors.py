"""Every domain exception in one place.

Messages are written for the person who meets them: what happened and what to do next.
None of them ever carries submitted content, a codename or a file name.

An exception the upload path can raise also says how the web answers it, so that one
handler (tipbox.web.error_pages) renders every one of them, as a page or as JSON for
encrypt.js:

- ``status``: the HTTP status;
- ``drain_body``: read the rest of the request body before answering, so the browser shows
  our page instead of a reset connection (never for a malformed body, which may not end,
  nor for one over the size limit, which is not read further on purpose);
- ``reload_keys``: the page must load the newsroom keys again before sending again;
- ``public_message``: what the person reads, an untranslated template marked with N_ and
  translated when shown, with ``params`` filling its %(name)s slots;
- ``public_title``: the page's heading, where the status's usual one would mislead;
- ``retry_after``: seconds for a Retry-After header, where trying again later will do;
- ``log_cause``: for the admin's log, a short cause that never quotes submitted bytes
  (an errno name, a class name); answers with a status of 500 or more are logged.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from types import MappingProxyType

from tipbox.i18n import N_

_NO_PARAMS: Mapping[str, object] = MappingProxyType({})

NOT_ACCEPTING = N_("The site is not accepting submissions at the moment. Nothing from this "
                   "attempt was kept. Please come back later.")


class TipboxError(Exception):
    """Base of all tipbox errors. The class attributes say how the web answers one."""

    status: int = 500
    drain_body: bool = True
    reload_keys: bool = False
    public_message: str | None = None
    public_title: str | None = None
    params: Mapping[str, object] = _NO_PARAMS
    retry_after: int | None = None
    log_cause: str = ""
    # A fresh flood-defence ticket, worked out, may get the same request through (the
    # JSON answer says so, and encrypt.js fetches one and tries again).
    fresh_proof_helps: bool = False


class ConfigError(TipboxError):
    """A setting is missing or malformed; start-up stops."""


class KeyringUnusable(TipboxError):
    """The newsroom keys cannot be used to accept submissions.

    The message is for the admin (it can name files); the source reads NOT_ACCEPTING."""

    status = 503
    public_message = NOT_ACCEPTING


class EncryptionError(TipboxError):
    """gpg failed to encrypt; nothing from the attempt is kept.

    ``cause`` is what the admin's log shows: gpg's status, never its stderr, which can
    name the file being encrypted. gpg refusing the key mid-run (a subkey expired, say)
    is "not accepting" for the source."""

    status = 503
    public_message = NOT_ACCEPTING

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.log_cause = cause or "gpg could not encrypt"


class GpgStalled(EncryptionError):
    """gpg made no progress for too long and was killed; nothing from the attempt is kept."""

    public_message = N_("The site could not encrypt this submission in time, so nothing "
                        "from it was kept. Please send it again in a few minutes.")
    public_title = N_("The site could not finish this submission")
    retry_after = 120


class HashingBusy(TipboxError):
    """Every slot for memory-hard hashing is taken and the queue is full: the site is
    busy. Nothing was checked or stored; trying again in a minute will do."""

    status = 503
    public_message = N_("The site is busy right now, so nothing was checked or kept. Wait a "
                        "minute and try again.")
    public_title = N_("The site is busy")
    retry_after = 60

    def __init__(self) -> None:
        super().__init__(self.public_message)
        self.log_cause = "every memory-hard hashing slot taken and the queue full"


class StoreError(TipboxError):
    """The ciphertext store refused or failed an operation."""

    status = 503
    public_message = N_("The site could not store this submission, so nothing from this "
                        "attempt was kept. Please try again later.")

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.log_cause = cause or message

    @classmethod
    def from_os_error(cls, exc: OSError, doing: str) -> StoreError:
        """The store's answer to an OSError: disk full gets its own, any other a plain
        StoreError. Only the errno name is kept; the OSError's text names a path."""
        name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageFull(f"{doing}: {name}", cause=f"{doing}: {name}")
        return cls(f"{doing}: {name}", cause=f"{doing}: {name}")


class StorageFull(StoreError):
    """The disk (or the quota) holding the store is full."""

    status = 507
    public_message = N_("The site cannot store submissions right now: its storage is full. "
                        "Nothing from this attempt was kept. Please try again later.")


class StorageReserveReached(StorageFull):
    """Free space on the store's disk fell under TIPBOX_MIN_FREE_BYTES: new uploads are
    refused before they fill it, and the site keeps working for everything else."""

    public_message = N_("The site cannot accept files right now. Nothing from this attempt "
                        "was kept. Please try again later.")

    def __init__(self) -> None:
        super().__init__("free space under the reserve (TIPBOX_MIN_FREE_BYTES)",
                         cause="free space under the reserve (TIPBOX_MIN_FREE_BYTES)")


class DatabaseUnavailable(TipboxError):
    """The database could not be reached or refused the operation."""

    status = 503
    public_message = N_("The site's database is not available right now, so nothing from "
                        "this request was kept. Please try again in a few minutes.")

    def __init__(self, cause: str) -> None:
        super().__init__(f"database unavailable: {cause}")
        self.log_cause = cause


class SubmissionRejected(TipboxError):
    """The submission broke a rule; nothing from the attempt was kept.

    ``message`` is an untranslated template (mark it with N_ where it is written);
    ``status`` the HTTP status a web view answers with.
    """

    status = 400

    def __init__(self, message: str, status: int | None = None,
                 params: Mapping[str, object] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.public_message = message
        if status is not None:
            self.status = status
        self.params = dict(params or {})


class DailyQuotaReached(SubmissionRejected):
    """The source has sent as many bytes today as one source may (TIPBOX_SOURCE_DAILY_BYTES)."""

    status = 429
    retry_after = 24 * 3600

    def __init__(self, quota: int) -> None:
        super().__init__(N_(
            "You have sent %(limit)s today, the most this site accepts from one source in a "
            "day. Nothing from this attempt was kept. Send the rest tomorrow, or in smaller "
            "parts over several days."), params={"limit": ByteCount(quota)})


class ByteCount(int):
    """A size among a refusal's parameters: the page writes it in the reader's units and
    digits (10.0 GiB, 10,0 ГиБ), where a plain int is written as a number."""


def binary_size(count: int) -> str:
    """A byte count in binary units, as the site states its limits (2 GiB, 512 MiB)."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= factor:
            value = count / factor
            return f"{value:.0f} {unit}" if value >= 10 or value.is_integer() \
                else f"{value:.1f} {unit}"
    return f"{count} bytes"


class UploadTooLarge(SubmissionRejected):
    """Over a size or count limit: the rest of the body is not read, on purpose."""

    status = 413
    drain_body = False

    def __init__(self, message: str, params: Mapping[str, object] | None = None) -> None:
        super().__init__(message, params=params)


class MalformedUpload(SubmissionRejected):
    """The body cannot be parsed; reading on could wait for bytes that never come."""

    drain_body = False


class PageKeysOutdated(SubmissionRejected):
    """The browser encrypted to other keys than the active ones: its page predates a key
    rotation."""

    status = 409
    reload_keys = True

    def __init__(self) -> None:
        super().__init__(N_("The newsroom key changed after this page was loaded, so nothing "
                            "from this submission was kept. Reload the page and send it "
                            "again."))


class PageOutdated(SubmissionRejected):
    """The page that sent this predates the current upload protocol (an encrypt.js from
    before the encrypted items got their own route): it must be loaded again."""

    status = 409
    reload_keys = True

    def __init__(self) -> None:
        super().__init__(N_("This page is out of date, so nothing from this submission was "
                            "kept. Reload the page and send it again."))


class Refusal(TipboxError):
    """An admin's or journalist's request refused, with why and what to do instead.

    ``message`` is the untranslated template (marked with N_ where it is raised) and
    ``params`` fill its slots: the newsroom pages translate it, while ``str()`` is the
    English text the command line prints."""

    def __init__(self, message: str, **params: object) -> None:
        super().__init__(message % params if params else message)
        self.message = message
        self.params = dict(params)


class AccountError(Refusal):
    """A newsroom account operation was refused. The message never holds a passphrase,
    a TOTP secret or a code."""


class InvalidUsername(AccountError):
    pass


class UsernameTaken(AccountError):
    """``existing`` is the account's name as stored, which may differ in case."""

    def __init__(self, message: str, existing: str, **params: object) -> None:
        super().__init__(message, **params)
        self.existing = existing


class NoSuchAccount(AccountError):
    pass


class LoginFailed(AccountError):
    """Username, passphrase or code was wrong, or the account is deactivated.

    One message for every cause, so a guess learns nothing about which factor failed.
    """

    def __init__(self, message: str = N_("The username, passphrase or two-factor code is "
                                         "wrong. Check all three and try again with a fresh "
                                         "code."), **params: object) -> None:
        super().__init__(message, **params)


class LoginThrottled(LoginFailed):
    """Too many failed logins: the account refuses every attempt for ``seconds`` more."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        # The command line's wording; the log-in page counts minutes in the reader's
        # language itself (web/newsroom/auth.py).
        super().__init__("Too many failed logins for this account. Wait %(wait)s and try "
                         "again; an admin can also lift the lock.", wait=_duration(seconds))


def _duration(seconds: int) -> str:
    # Rounded up, so following the message never means trying again too early.
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


class KeyOperationRefused(Refusal):
    """A newsroom key was refused or a key operation is not allowed."""


class BackupError(TipboxError):
    """A backup or a restore could not be made; nothing was left half-written. The message
    is for the admin at the command line."""


class DigestError(TipboxError):
    """The digest could not be sent; the message says what to set or fix. Nothing counts
    as sent: the next run covers the same days."""


class ProofRefused(SubmissionRejected):
    """The flood defence's check (tipbox.flood) was missing, forged, meant for another
    page, expired, already used, unsolved, or sent before its wait was over. Nothing was
    read or kept; ``reason`` says which, in one word, for tests and the code. Whatever
    the reason, a fresh ticket may pass: the page's own may have been spent by an earlier
    try whose answer was lost, or have expired while the page stayed open."""

    fresh_proof_helps = True

    def __init__(self, reason: str, message: str, status: int,
                 params: Mapping[str, object] | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message, status=status, params=params)
        self.reason = reason
        self.retry_after = retry_after

    @classmethod
    def missing(cls) -> ProofRefused:
        return cls("missing", N_(
            "The site is very busy, so it now asks every browser for a short check before "
            "this can be sent, and this request came without one. Nothing from it was "
            "kept. Reload the page, let the check finish, then send again."), 429,
            retry_after=10)

    @classmethod
    def forged(cls) -> ProofRefused:
        return cls("forged", N_(
            "The check sent with this request was not made by this site for this page, "
            "so nothing from it was kept. Reload the page, let the check finish, then "
            "send again."), 403)

    @classmethod
    def expired(cls) -> ProofRefused:
        return cls("expired", N_(
            "The check sent with this request has expired, so nothing from it was kept. "
            "Reload the page, let the check finish, then send again."), 403)

    @classmethod
    def reused(cls) -> ProofRefused:
        return cls("reused", N_(
            "The check sent with this request was already used once, so nothing from it "
            "was kept. Reload the page, let the check finish, then send again."), 409)

    @classmethod
    def unsolved(cls) -> ProofRefused:
        return cls("unsolved", N_(
            "The check sent with this request was not finished, so nothing from it was "
            "kept. Reload the page, let the check finish, then send again."), 403)

    @classmethod
    def early(cls, seconds: int) -> ProofRefused:
        return cls("early", N_(
            "This was sent before the wait the site asked for was over, so nothing from "
            "it was kept. Wait %(seconds)s seconds, then send again."), 429,
            params={"seconds": seconds}, retry_after=seconds)

class SessionEnded(SubmissionRejected):
    """A request that needs a logged-in source came after the session ended (log-out,
    expiry, or a new log-in elsewhere in this browser)."""

    status = 401

    def __init__(self) -> None:
        super().__init__(N_("Your session ended. Log in with your codename and submit "
                            "again."))


class UploadGone(SubmissionRejected):
    """A piece, a finish or a question about an upload this session does not hold: it was
    finished, cancelled, left idle too long, ended with its session, or never existed (or
    belongs to someone else, which is answered the same, so that nothing is learnt)."""

    status = 410

    def __init__(self) -> None:
        super().__init__(N_("This upload is no longer on the server (it was cancelled, left "
                            "unfinished too long, or ended with your session), so nothing "
                            "from it was kept. Send it again."))


class PieceOutOfPlace(SubmissionRejected):
    """A piece that does not start exactly where the server's bytes of the item end
    (repeated, overlapping, out of order, or for an item already complete). Nothing of it
    is kept; the page asks how far the server got and goes on from there."""

    status = 409

    def __init__(self) -> None:
        super().__init__(N_("This piece of the upload does not continue where the server's "
                            "copy ends, so it was not kept. The page asks the server how far "
                            "it got and carries on from there."))


class UploadBusy(SubmissionRejected):
    """Another request of the same upload is still being received (a connection the
    browser gave up on that the server has not yet seen end). Nothing of this one is
    kept; trying again shortly will do."""

    status = 409
    retry_after = 5

    def __init__(self) -> None:
        super().__init__(N_("An earlier piece of this upload is still arriving, so this one "
                            "was not kept. The page waits a moment and carries on."))
