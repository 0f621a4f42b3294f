"""Each failure of the upload path says how it is answered: status, whether the rest of
the body is read first, whether the page must load the keys again."""

from __future__ import annotations

import errno

import pytest

from tipbox.errors import (
    DatabaseUnavailable,
    EncryptionError,
    KeyringUnusable,
    MalformedUpload,
    PageKeysOutdated,
    PageOutdated,
    StorageFull,
    StoreError,
    SubmissionRejected,
    TipboxError,
    UploadTooLarge,
)


@pytest.mark.parametrize(("failure", "status", "drain", "reload"), [
    (SubmissionRejected("refused"), 400, True, False),
    (SubmissionRejected("gone", status=404), 404, True, False),
    (MalformedUpload("cut off"), 400, False, False),  # may never end: not read on
    (UploadTooLarge("too large"), 413, False, False),  # not read further on purpose
    (PageKeysOutdated(), 409, True, True),
    (PageOutdated(), 409, True, True),
    (KeyringUnusable("no key"), 503, True, False),
    (EncryptionError("gpg failed"), 503, True, False),
    (StoreError("broken"), 503, True, False),
    (StorageFull("full"), 507, True, False),
    (DatabaseUnavailable("OperationalError"), 503, True, False),
])
def test_each_failure_carries_its_answer(failure: TipboxError, status: int, drain: bool,
                                         reload: bool) -> None:
    assert (failure.status, failure.drain_body, failure.reload_keys) == (status, drain, reload)
    assert failure.public_message  # every one tells the source something clear


def test_a_disk_full_os_error_becomes_storage_full_with_only_the_errno_name() -> None:
    exc = OSError(errno.ENOSPC, "No space left on device", "/srv/tipbox/store/.tmp/a.part")
    failure = StoreError.from_os_error(exc, "writing a temp file")
    assert isinstance(failure, StorageFull)
    assert failure.log_cause == "writing a temp file: ENOSPC"
    other = StoreError.from_os_error(OSError(errno.EACCES, "denied", "/x"), "renaming")
    assert type(other) is StoreError and other.log_cause == "renaming: EACCES"
