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


class UnknownCodename(TipboxError):
    """No source has this codename (or it was mistyped)."""
