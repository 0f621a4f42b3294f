"""Every domain exception in one place.

Messages are written for the person who meets them: what happened and what to do next.
None of them ever carries submitted content, a codename or a file name.
"""

from __future__ import annotations


class TipboxError(Exception):
    """Base of all tipbox errors."""


class ConfigError(TipboxError):
    """A setting is missing or malformed; start-up stops."""


class KeyProblem(TipboxError):
    """The newsroom keys cannot be used to accept submissions."""


class EncryptionError(TipboxError):
    """gpg failed to encrypt; nothing from the attempt is kept."""


class GpgStalled(EncryptionError):
    """gpg made no progress for too long and was killed; nothing from the attempt is kept."""


class HashingBusy(TipboxError):
    """Every slot for memory-hard hashing is taken and the queue is full: the site is
    busy. Nothing was checked or stored; trying again in a minute will do."""

    retry_after = 60

    def __init__(self) -> None:
        super().__init__("The site is busy right now, so nothing was checked or kept. Wait "
                         "a minute and try again.")


class StoreError(TipboxError):
    """The ciphertext store refused or failed an operation."""


class SubmissionRejected(TipboxError):
    """The submission broke a rule; nothing from the attempt was kept.

    ``status`` is the HTTP status a web view should answer with.
    """

    def __init__(self, message: str, status: int = 400,
                 params: dict[str, object] | None = None) -> None:
        super().__init__(message)
        # ``message`` is an untranslated template; ``params`` fill its %(name)s slots.
        self.message = message
        self.status = status
        self.params = params or {}


class UploadTooLarge(SubmissionRejected):
    def __init__(self, message: str, params: dict[str, object] | None = None) -> None:
        super().__init__(message, status=413, params=params)


class MalformedUpload(SubmissionRejected):
    pass


class KeysChanged(SubmissionRejected):
    """The browser encrypted to other keys than the active ones: its page predates a key
    rotation."""

    def __init__(self) -> None:
        super().__init__("The newsroom key changed after this page was loaded, so nothing "
                         "from this submission was kept. Reload the page and send it again.",
                         status=409)


class AccountError(TipboxError):
    """A newsroom account operation was refused. The message never holds a passphrase,
    a TOTP secret or a code."""


class InvalidUsername(AccountError):
    pass


class UsernameTaken(AccountError):
    """``existing`` is the account's name as stored, which may differ in case."""

    def __init__(self, message: str, existing: str) -> None:
        super().__init__(message)
        self.existing = existing


class NoSuchAccount(AccountError):
    pass


class LoginFailed(AccountError):
    """Username, passphrase or code was wrong, or the account is deactivated.

    One message for every cause, so a guess learns nothing about which factor failed.
    """

    def __init__(self, message: str = "The username, passphrase or two-factor code is "
                 "wrong. Check all three and try again with a fresh code.") -> None:
        super().__init__(message)


class LoginThrottled(LoginFailed):
    """Too many failed logins: the account refuses every attempt for ``seconds`` more."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        super().__init__(f"Too many failed logins for this account. Wait {_duration(seconds)} "
                         "and try again; an admin can also lift the lock.")


def _duration(seconds: int) -> str:
    # Rounded up, so following the message never means trying again too early.
    if seconds < 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = -(-seconds // 60)
    return f"{minutes} minute{'s' if minutes != 1 else ''}"


class KeyRefused(TipboxError):
    """A newsroom key was refused or a key operation is not allowed. The message says why
    and what to do instead."""
