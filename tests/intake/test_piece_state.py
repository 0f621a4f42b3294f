"""What an upload in pieces keeps in its row between requests, without a database: it comes
back as it was saved, and a row naming anything but the upload's own temp files is refused."""

from __future__ import annotations

import json

import pytest

from tipbox.crypto.message_check import EncryptedMessageCheck
from tipbox.intake.draft import DraftState, PendingItem
from tipbox.intake.piece_state import OpenItem, UploadState
from tipbox.models import ItemKind

TOKEN = "a" * 32
OTHER_TOKEN = "b" * 32
FINGERPRINT = "C" * 40


def state_with_an_open_item(token: str = TOKEN) -> UploadState:
    check = EncryptedMessageCheck({FINGERPRINT: ["D" * 16]})
    check.feed(b"\xc1")  # the first octet of a PKESK's header: a check part-way through
    done = PendingItem(f"{token}-{'1' * 16}.part", ItemKind.MESSAGE, 700, (FINGERPRINT,))
    return UploadState((FINGERPRINT,), DraftState([done], skipped_empty_files=2, owner=token),
                       OpenItem(f"{token}-{'2' * 16}.part", ItemKind.FILE, 4096,
                                check.snapshot()))


def test_a_saved_upload_state_comes_back_as_it_was_saved() -> None:
    state = state_with_an_open_item()
    assert UploadState.from_json(state.to_json(), TOKEN) == state


def test_the_status_says_how_many_bytes_of_each_item_are_held() -> None:
    status = state_with_an_open_item().status(TOKEN)
    assert status.as_dict() == {"upload": TOKEN, "finished": False, "items": [
        {"kind": "message", "held": 700, "complete": True},
        {"kind": "file", "held": 4096, "complete": False}]}
    assert state_with_an_open_item().held_bytes == 700 + 4096


def test_a_saved_state_of_another_upload_is_refused() -> None:
    saved = state_with_an_open_item(OTHER_TOKEN).to_json()
    with pytest.raises(ValueError, match="another claim"):
        UploadState.from_json(saved, TOKEN)


@pytest.mark.parametrize("name", [f"{OTHER_TOKEN}-{'2' * 16}.part", "../../etc/passwd",
                                  f"{TOKEN}.gpg", f"{TOKEN}-{'2' * 16}.part\n"])
def test_an_open_item_that_is_not_a_temp_file_of_this_upload_is_refused(name: str) -> None:
    saved = json.loads(state_with_an_open_item().to_json())
    saved["open"]["temp_name"] = name
    with pytest.raises(ValueError, match="not a temp file of this upload"):
        UploadState.from_json(json.dumps(saved), TOKEN)


def test_an_open_item_of_an_unknown_kind_is_refused() -> None:
    saved = json.loads(state_with_an_open_item().to_json())
    saved["open"]["kind"] = "script"
    with pytest.raises(ValueError, match="script"):
        UploadState.from_json(json.dumps(saved), TOKEN)
