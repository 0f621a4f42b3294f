"""What one upload may take: disk space above the reserve (TIPBOX_MIN_FREE_BYTES) and a
day's share per source (TIPBOX_SOURCE_DAILY_BYTES). Past either, the upload is refused
with a clear answer, on both upload routes, and nothing of it is written."""

from __future__ import annotations

import os
from pathlib import Path

from tests.helpers import Newsroom, SourceBrowser, store_files, temp_files
from tests.web.test_source_encrypted import gpg_encrypt, post_encrypted
from tests.web.test_source_failures import assert_json, assert_page, item_rows, source_on
from tipbox.config import Settings
from tipbox.storage import CiphertextStore

NO_ROOM = "cannot accept files right now"
QUOTA = "the most this site accepts from one source in a day"


def test_below_the_disk_reserve_every_upload_is_refused_before_anything_is_written(
        settings: Settings, newsroom: Newsroom, tmp_path: Path) -> None:
    free = CiphertextStore(settings.store_dir).free_bytes()
    source = source_on(settings.with_overrides(min_free_bytes=free + (1 << 40)))
    cipher = gpg_encrypt(b"x" * 5000, [newsroom.fingerprint], newsroom.secret_home, tmp_path)

    plain = source.submit("a message", [(os.urandom(50_000), "doc.pdf")])
    encrypted = post_encrypted(source, [newsroom.fingerprint], files=[cipher],
                               accept="application/json")

    assert_page(plain, 507, NO_ROOM)
    assert_json(encrypted, 507, NO_ROOM)
    assert store_files(settings.data_dir) == [] and temp_files(settings.data_dir) == []
    assert item_rows(settings) == 0
    assert source.client.get("/submit").status_code == 200  # the rest of the site works


def test_a_source_over_its_daily_share_is_told_when_to_come_back_and_nothing_is_kept(
        settings: Settings) -> None:
    source = source_on(settings.with_overrides(source_daily_bytes=100 * 1024))
    assert source.submit("first", [(os.urandom(60_000), "a.bin")]).status_code == 303
    stored = store_files(settings.data_dir)

    over = source.submit("second", [(os.urandom(60_000), "b.bin")])
    assert_page(over, 429, QUOTA)
    assert "You have sent 100.0 KiB today" in over.get_data(as_text=True)
    assert over.headers["Retry-After"] == str(24 * 3600)
    source.client.get("/language/ru?next=/submit")  # the limit in the reader's units
    in_russian = source.submit("second", [(os.urandom(60_000), "b.bin")])
    assert in_russian.status_code == 429
    assert "отправили 100,0 КиБ" in in_russian.get_data(as_text=True)
    assert store_files(settings.data_dir) == stored and temp_files(settings.data_dir) == []
    assert item_rows(settings) == 2  # the first submission's message and file

    # Another source has its own share.
    other = SourceBrowser(source.client.application.test_client())
    other.new_codename()
    assert other.submit("mine", [(os.urandom(60_000), "c.bin")]).status_code == 303


def test_a_source_at_its_daily_share_is_refused_before_its_upload_is_read(
        settings: Settings) -> None:
    source = source_on(settings)
    assert source.submit("one message", []).status_code == 303
    [stored] = store_files(settings.data_dir)
    at_share = source_on(settings.with_overrides(source_daily_bytes=stored.stat().st_size))
    at_share.client.set_cookie(  # the same source, logged in, on the app with a share
        "tipbox_source", source.client.get_cookie("tipbox_source").value)  # type: ignore[union-attr]
    token = at_share.submit_token()
    # Only the token, then a file part that never ends: reading any further would fail
    # as a malformed body, so a 429 shows the share was checked first.
    body = (b"--b\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n"
            + token.encode() + b"\r\n--b\r\nContent-Disposition: form-data; name=\"files\"; "
            b"filename=\"x.bin\"\r\n\r\n" + b"x" * 5000)
    resp = at_share.client.post("/submit", data=body,
                                content_type="multipart/form-data; boundary=b")
    assert_page(resp, 429, QUOTA)
    assert item_rows(settings) == 1 and temp_files(settings.data_dir) == []
