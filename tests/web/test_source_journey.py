"""A source with JavaScript off: codename, message, files, come back, log out."""

from __future__ import annotations

import logging
import secrets

import pytest

from tests.helpers import Newsroom, SourceBrowser, gpg_decrypt, store_files
from tipbox.codenames import normalize_codename
from tipbox.config import Settings


def test_source_with_js_disabled_submits_a_message_and_two_files(
        browser: SourceBrowser, settings: Settings, newsroom: Newsroom) -> None:
    browser.new_codename()
    files = [(b"%PDF-1.7 fake pdf " * 5000, "report.pdf"), (bytes(range(256)) * 10, "data.bin")]
    resp = browser.submit("The minister knew.", files)
    assert resp.status_code == 303
    page = browser.client.get("/submit").get_data(as_text=True)
    assert "Your submission was received" in page
    assert "We have received 3 items from you so far." in page

    stored = [gpg_decrypt(p, newsroom.secret_home) for p in store_files(settings.data_dir)]
    got = sorted((p.filename, p.data) for p in stored)
    assert got == sorted([("", b"The minister knew."), ("report.pdf", files[0][0]),
                          ("data.bin", files[1][0])])


def test_returning_source_logs_in_with_codename_in_any_case_and_spacing(
        browser: SourceBrowser) -> None:
    codename = browser.new_codename()
    assert browser.submit("first").status_code == 303
    browser.logout()
    messy = "  " + "   ".join(w.upper() for w in codename.split()) + " "
    resp = browser.login(messy)
    assert resp.status_code == 302
    page = browser.client.get("/submit").get_data(as_text=True)
    assert "We have received 1 item from you so far." in page


def test_a_codename_typed_on_a_chinese_keyboard_with_a_slip_in_one_word_still_logs_in(
        browser: SourceBrowser) -> None:
    codename = browser.new_codename()
    assert browser.submit("first").status_code == 303
    browser.logout()
    words = codename.split()
    # A swapped pair of letters in the longest word that has one unambiguous reading.
    for i, word in sorted(enumerate(words), key=lambda p: -len(p[1])):
        slip = word[0] + word[2] + word[1] + word[3:]
        if normalize_codename(" ".join([*words[:i], slip, *words[i + 1:]])) == codename:
            words[i] = slip
            break
    else:  # about one codename in ten million: no word has such a slip
        raise AssertionError(f"no unambiguous slip in {codename!r}")
    typed = "\u3000".join("".join(chr(ord(c) + 0xFEE0) if c.isalpha() else c for c in w)
                          for w in words)  # full-width letters, ideographic spaces
    assert browser.login(typed).status_code == 302
    page = browser.client.get("/submit").get_data(as_text=True)
    assert "We have received 1 item from you so far." in page


def test_nothing_a_source_types_or_sends_reaches_any_log(
        browser: SourceBrowser, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger at its most talkative
    marker = "LOGMARKER" + secrets.token_hex(8)
    codename = browser.new_codename()
    browser.submit(f"message {marker}", [(f"file {marker}".encode() * 100, f"{marker}.txt")])
    browser.logout()
    browser.login(codename)
    browser.login(codename + " wrong")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert marker not in text
    assert all(word not in text.split() for word in codename.split())
