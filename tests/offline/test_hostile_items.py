"""Hostile content inside the ciphertexts: original file names chosen to escape, hide or
overwrite, and items that are not public-key encrypted at all."""

from __future__ import annotations

import subprocess
import unicodedata
from pathlib import Path

import pytest

from tests.helpers import Newsroom
from tests.offline.kit import Item, Sender, run_open, tree, write_bundle
from tipbox.offline.names import display, file_name, folder_name, numbered_name
from tipbox.offline.openpgp import NotAnItem, read_envelope

SOURCE = "sturdy zest"

# raw name in the literal packet -> the name it must be written under
HOSTILE_NAMES: list[tuple[bytes, str | None]] = [
    (b"../../x", "01-x"),
    (b"/etc/passwd", "02-passwd"),
    (b"..\\..\\Windows\\win.ini", "03-win.ini"),
    (b"e\x00vil\x1b[31m\xe2\x80\xae\xe2\x81\xa6txt.exe", "04-evil[31mtxt.exe"),
    (b"line\nbreak\ttab\r.txt", "05-linebreaktab.txt"),
    (b".bashrc", "06-bashrc"),
    (b"", "07-file"),
    (b"...", "08-file"),
    (b"a:b*c?d|e<f>g\".txt", "09-a_b_c_d_e_f_g_.txt"),
    (b"\xff\xfe not utf-8.txt", "10-\ufffd\ufffd not utf-8.txt"),
    (b"a" * 255, None),
    ("é".encode() * 120 + b".pdf", None),
    (b"zero\xe2\x80\x8bwidth\xef\xbb\xbf.txt", "13-zerowidth.txt"),
]


def test_hostile_original_names_are_made_harmless_and_kept_inside_the_output(
        sender: Sender, newsroom: Newsroom, tmp_path: Path, workspace: Path) -> None:
    items = [sender.item_with_raw_name(SOURCE, n, f"content {n}".encode(), raw,
                                       newsroom.fingerprint)
             for n, (raw, _) in enumerate(HOSTILE_NAMES, start=1)]
    bundle = write_bundle(tmp_path / "b.tar", items)
    out = tmp_path / "out"
    before = tree(tmp_path)

    proc = run_open(bundle, out, newsroom.secret_home, cwd=workspace)

    assert proc.returncode == 0, proc.stderr
    assert {p for p in tree(tmp_path) - before if not p.startswith("out")} == set()
    folder = out / SOURCE
    names = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert len(names) == len(HOSTILE_NAMES)
    for n, (_, expected) in enumerate(HOSTILE_NAMES, start=1):
        written = [name for name, data in names.items() if data == f"content {n}".encode()]
        assert len(written) == 1
        name = written[0]
        assert name.startswith(f"{n:02d}-")
        if expected is not None:
            assert name == expected
        assert len(name.encode()) <= 200
        assert not any(unicodedata.category(ch)[0] == "C" for ch in name)
        assert "/" not in name and "\\" not in name
    # The index shows the original names escaped, never raw control or bidi characters.
    index = (out / "index.txt").read_text()
    assert "\\x00" in index and "\\x1b" in index and "\\u202e" in index
    assert "\x1b" not in index and "\u202e" not in index and "\x00" not in index
    assert "\x1b" not in proc.stderr


def test_two_items_with_the_same_number_and_name_never_overwrite(
        sender: Sender, newsroom: Newsroom, tmp_path: Path) -> None:
    first = sender.item(SOURCE, "file", 7, b"first", filename="same.txt",
                        to=[newsroom.fingerprint])
    second = sender.item(SOURCE, "file", 7, b"second", filename="same.txt",
                         to=[newsroom.fingerprint])
    bundle = write_bundle(tmp_path / "b.tar", [first, second])

    proc = run_open(bundle, tmp_path / "out", newsroom.secret_home)

    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "out" / SOURCE
    assert (folder / "07-same.txt").read_bytes() == b"first"
    assert (folder / "07-same (2).txt").read_bytes() == b"second"


def test_hostile_designations_get_safe_distinct_folders(
        sender: Sender, newsroom: Newsroom, tmp_path: Path) -> None:
    designations = ["../../etc", ".hidden", "a\u202eb", "a\x1bb", "/abs"]
    items = [sender.item(d, "message", 1, d.encode(), to=[newsroom.fingerprint])
             for d in designations]
    bundle = write_bundle(tmp_path / "b.tar", items)

    proc = run_open(bundle, tmp_path / "out", newsroom.secret_home)

    assert proc.returncode == 0, proc.stderr
    folders = sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir())
    assert folders == ["______etc", "_abs", "_hidden", "a_b", "a_b (2)"]
    contents = {(tmp_path / "out" / f / "01-message.txt").read_bytes() for f in folders}
    assert contents == {d.encode() for d in designations}


def _gpg(sender: Sender, *args: str, data: bytes) -> bytes:
    proc = subprocess.run(["gpg", "--homedir", str(sender.gpg.home), "--batch", "--no-tty",
                           "--quiet", "--pinentry-mode", "loopback", *args],
                          input=data, capture_output=True, check=True)
    return proc.stdout


@pytest.mark.parametrize(("make", "reason"), [
    (lambda s: _gpg(s, "--passphrase", "pw", "--symmetric", data=b"x"), "with a password"),
    (lambda s: _gpg(s, "--store", data=b"plaintext!"), "not encrypted"),
    (lambda s: b"just some bytes", "not OpenPGP data"),
])
def test_items_not_encrypted_to_a_key_fail_without_running_gpg(
        make, reason: str, sender: Sender, newsroom: Newsroom, tmp_path: Path) -> None:
    good = sender.item(SOURCE, "message", 1, b"fine", to=[newsroom.fingerprint])
    odd = Item(SOURCE, "message", 2, make(sender), [newsroom.fingerprint])
    bundle = write_bundle(tmp_path / "b.tar", [good, odd])

    proc = run_open(bundle, tmp_path / "out", newsroom.secret_home)

    assert proc.returncode == 1
    index = (tmp_path / "out" / "index.txt").read_text()
    assert "failed: not a tipbox ciphertext: it " in index and reason in index
    assert sorted(p.name for p in (tmp_path / "out" / SOURCE).iterdir()) == ["01-message.txt"]


def test_envelope_reads_recipients_of_binary_and_armored_items(
        sender: Sender, newsroom: Newsroom, second_newsroom_key: Newsroom) -> None:
    item = sender.item(SOURCE, "message", 1, b"x",
                       to=[newsroom.fingerprint, second_newsroom_key.fingerprint])
    assert len(read_envelope(item.ciphertext).recipients) == 2
    armored = _gpg(sender, "--trust-model", "always", "--armor", "--recipient",
                   newsroom.fingerprint, "--encrypt", data=b"x")
    assert len(read_envelope(armored).recipients) == 1
    with pytest.raises(NotAnItem):
        read_envelope(item.ciphertext[:20])


def test_name_helpers_hold_their_limits() -> None:
    assert file_name("../../x") == "x" and file_name(".bashrc") == "bashrc"
    assert file_name("\u202e\u2066") == "file" and file_name(" . ") == "file"
    assert folder_name("") == "source" and folder_name("sturdy zest") == "sturdy zest"
    long = numbered_name("0001-", "é" * 300 + ".tar.gz", 12)
    assert len(long.encode()) <= 200 and long.endswith(" (12).gz") and long.startswith("0001-é")
    assert display("a\u202eb\\c\x07") == "a\\u202eb\\\\c\\x07"
