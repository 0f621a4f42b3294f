"""Every text a source or a journalist reads is found by `pybabel extract`, including the
ones defined in one place and translated when shown (marked with tipbox.i18n.N_)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import extracted_texts
from tipbox.errors import (
    NOT_ACCEPTING,
    DatabaseUnavailable,
    PageKeysOutdated,
    PageOutdated,
    StorageFull,
    StoreError,
)
from tipbox.intake.draft import REFUSALS
from tipbox.intake.multipart import CUT_OFF, NOT_A_FORM
from tipbox.intake.upload import CSRF_REFUSED
from tipbox.web.error_pages import ERROR_TEXT


def test_texts_translated_when_shown_are_extracted(tmp_path: Path) -> None:
    extracted = extracted_texts(tmp_path)
    expected = {*REFUSALS.values(), NOT_ACCEPTING, CUT_OFF, NOT_A_FORM, CSRF_REFUSED,
                PageKeysOutdated().message, PageOutdated().message, StoreError.public_message,
                StorageFull.public_message, DatabaseUnavailable.public_message,
                *(text for pair in ERROR_TEXT.values() for text in pair)}
    assert expected - extracted == set()
