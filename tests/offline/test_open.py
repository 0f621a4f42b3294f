"""tipbox-open on real bundles and real gpg: what is decrypted, what is reported, and how."""

from __future__ import annotations

import os
import shutil
import stat
import sys
from pathlib import Path

import pytest

from tests.helpers import Newsroom
from tests.offline.kit import Item, Sender, png_with_author, run_open, run_tool, write_bundle
from tipbox.crypto.gpg import GnuPG

SOURCE = "sturdy zest"
OTHER = "quiet lantern"


def happy_items(sender: Sender, fpr: str) -> list[Item]:
    return [
        sender.item(SOURCE, "message", 1, "Hello, newsroom ✓\nSecond line.\n".encode(),
                    to=[fpr]),
        sender.item(SOURCE, "file", 2, os.urandom(70_000), filename="Übersicht März 2026.pdf",
                    to=[fpr]),
        sender.item(SOURCE, "file", 3, b"%PDF-1.7 plain\n", filename="report.pdf", to=[fpr]),
        sender.item(SOURCE, "reply", 1, b"Thank you. Can you send the second page?",
                    to=[fpr]),
        sender.item(OTHER, "message", 1, b"Another source writes.", to=[fpr]),
    ]


def test_happy_bundle_restores_messages_files_and_replies_by_source_and_name(
        sender: Sender, newsroom: Newsroom, tmp_path: Path, workspace: Path) -> None:
    items = happy_items(sender, newsroom.fingerprint)
    bundle = write_bundle(tmp_path / "b.tar", items)
    out = tmp_path / "out"

    proc = run_open(bundle, out, newsroom.secret_home, cwd=workspace)

    assert proc.returncode == 0, proc.stderr
    expected = {
        f"{SOURCE}/01-message.txt": items[0].plaintext,
        f"{SOURCE}/02-Übersicht März 2026.pdf": items[1].plaintext,
        f"{SOURCE}/03-report.pdf": items[2].plaintext,
        f"{SOURCE}/01-reply.txt": items[3].plaintext,
        f"{OTHER}/01-message.txt": items[4].plaintext,
    }
    written = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()
               and p.name != "index.txt"}
    assert written == expected
    assert not list(workspace.iterdir())
    assert not [p for p in out.iterdir() if p.name.startswith(".tipbox-work")]
    for path in out.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    index = (out / "index.txt").read_text()
    assert "5 of 5 items decrypted." in index
    for name in expected:
        assert name in index
    assert "Übersicht März 2026.pdf" in index and index.count("decrypted") >= 5
    assert f"[1/5] {SOURCE} message" in proc.stderr
    assert proc.stderr.count(" ... ok") == 5


def test_quiet_prints_nothing_when_all_is_well(
        sender: Sender, newsroom: Newsroom, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b.tar", happy_items(sender, newsroom.fingerprint)[:2])
    proc = run_open(bundle, tmp_path / "out", newsroom.secret_home, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout == ""
    assert (tmp_path / "out" / SOURCE / "01-message.txt").exists()


def test_large_items_show_percentages_as_they_go(
        sender: Sender, newsroom: Newsroom, tmp_path: Path) -> None:
    big = sender.item(SOURCE, "file", 1, os.urandom(17 * 1024 * 1024), filename="video.mp4",
                      to=[newsroom.fingerprint])
    bundle = write_bundle(tmp_path / "b.tar", [big])
    proc = run_open(bundle, tmp_path / "out", newsroom.secret_home)
    assert proc.returncode == 0, proc.stderr
    assert f"[1/1] {SOURCE} file 17.0 MiB ... 10% 20%" in proc.stderr
    assert proc.stderr.splitlines()[0].endswith(" ok")
    assert (tmp_path / "out" / SOURCE / "01-video.mp4").read_bytes() == big.plaintext


@pytest.mark.parametrize("damage", ["flipped byte", "wrong size in manifest"])
def test_an_altered_ciphertext_is_reported_by_id_and_the_rest_decrypted(
        sender: Sender, newsroom: Newsroom, tmp_path: Path, damage: str) -> None:
    good, bad = happy_items(sender, newsroom.fingerprint)[:2]
    entries = [good.manifest_entry(), bad.manifest_entry()]
    if damage == "flipped byte":
        raw = bytearray(bad.ciphertext)
        raw[len(raw) // 2] ^= 0x01
        bad.ciphertext = bytes(raw)
    else:
        entries[1]["size"] += 1
    manifest = {"format": "tipbox-bundle", "version": 1, "bundle_id": (bid := "a" * 26),
                "created_on": "2026-11-30", "items": entries}
    bundle = write_bundle(tmp_path / "b.tar", [good, bad], bundle_id=bid, manifest=manifest)

    proc = run_open(bundle, tmp_path / "out", newsroom.secret_home)

    assert proc.returncode == 1, proc.stderr
    index = (tmp_path / "out" / "index.txt").read_text()
    reason = "SHA-256 does not match" if damage == "flipped byte" else "the manifest says"
    assert f"(item {bad.id})" in index and reason in index
    assert (tmp_path / "out" / SOURCE / "01-message.txt").exists()
    assert not (tmp_path / "out" / SOURCE / "02-Übersicht März 2026.pdf").exists()
    assert "1 of 2 items decrypted" in proc.stderr


def test_missing_and_extra_items_are_each_reported_by_id(
        sender: Sender, newsroom: Newsroom, tmp_path: Path) -> None:
    present, missing, extra = happy_items(sender, newsroom.fingerprint)[:3]
    bundle = write_bundle(tmp_path / "b.tar", [present, missing], skip=[missing],
                          extra=[extra])

    proc = run_open(bundle, tmp_path / "out", newsroom.secret_home)

    assert proc.returncode == 1
    index = (tmp_path / "out" / "index.txt").read_text()
    assert f"missing from the bundle (item {missing.id})" in index
    assert f"not listed in the manifest (item {extra.id})" in index
    assert f"[extra] item {extra.id}" in proc.stderr
    assert "MISSING" not in index and "1 missing from the bundle" in index
    # The extra ciphertext was not decrypted anywhere.
    assert sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file()) == \
        ["01-message.txt", "index.txt"]


def test_an_item_for_a_key_we_lack_names_the_key_and_the_rest_is_decrypted(
        sender: Sender, newsroom: Newsroom, second_newsroom_key: Newsroom,
        tmp_path: Path) -> None:
    ours = happy_items(sender, newsroom.fingerprint)[:2]
    theirs = sender.item(OTHER, "message", 1, b"for the other station",
                         to=[second_newsroom_key.fingerprint])
    both = sender.item(OTHER, "message", 2, b"for both stations",
                       to=[second_newsroom_key.fingerprint, newsroom.fingerprint])
    bundle = write_bundle(tmp_path / "b.tar", [*ours, theirs, both])

    proc = run_open(bundle, tmp_path / "out", newsroom.secret_home)

    assert proc.returncode == 1
    out = tmp_path / "out"
    assert (out / SOURCE / "01-message.txt").read_bytes() == ours[0].plaintext
    assert (out / OTHER / "02-message.txt").read_bytes() == b"for both stations"
    assert not (out / OTHER / "01-message.txt").exists()
    index = (out / "index.txt").read_text()
    assert f"missing key {second_newsroom_key.fingerprint}" in index
    assert f"  {second_newsroom_key.fingerprint}  (1 item)" in index
    assert newsroom.fingerprint not in index
    assert f"missing key {second_newsroom_key.fingerprint}" in proc.stderr
    assert "3 of 4 items decrypted; 1 need a key this keyring lacks" in proc.stderr


def test_a_keyring_with_both_station_keys_decrypts_everything(
        sender: Sender, newsroom: Newsroom, second_newsroom_key: Newsroom, own_home: Path,
        tmp_path: Path) -> None:
    for station in (newsroom, second_newsroom_key):
        secret = GnuPG(station.secret_home).export_secret(station.fingerprint)
        GnuPG(own_home).import_keys(secret)
    items = [sender.item(SOURCE, "message", 1, b"old key", to=[newsroom.fingerprint]),
             sender.item(SOURCE, "message", 2, b"overlap",
                         to=[newsroom.fingerprint, second_newsroom_key.fingerprint]),
             sender.item(SOURCE, "message", 3, b"new key",
                         to=[second_newsroom_key.fingerprint])]
    bundle = write_bundle(tmp_path / "b.tar", items)

    proc = run_open(bundle, tmp_path / "out", own_home)

    assert proc.returncode == 0, proc.stderr
    assert [(tmp_path / "out" / SOURCE / f"0{n}-message.txt").read_bytes() for n in (1, 2, 3)] \
        == [b"old key", b"overlap", b"new key"]


def test_scrub_without_mat2_says_so_and_still_succeeds(
        sender: Sender, newsroom: Newsroom, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gpg_path = shutil.which("gpg")
    assert gpg_path
    (bin_dir / "gpg").symlink_to(gpg_path)
    items = happy_items(sender, newsroom.fingerprint)[:3]
    bundle = write_bundle(tmp_path / "b.tar", items)
    env = {**os.environ, "PATH": str(bin_dir)}

    proc = run_open(bundle, tmp_path / "out", newsroom.secret_home, "--scrub", env=env)

    assert proc.returncode == 0, proc.stderr
    assert "mat2 is not installed" in proc.stderr
    assert "mat2 is not installed" in (tmp_path / "out" / "index.txt").read_text()
    assert not list((tmp_path / "out").rglob("*.cleaned*"))


@pytest.mark.skipif(shutil.which("mat2") is None, reason="mat2 is not installed")
def test_scrub_writes_a_metadata_free_copy_and_keeps_the_original(
        sender: Sender, newsroom: Newsroom, tmp_path: Path) -> None:
    png = png_with_author(b"Jane Source")
    item = sender.item(SOURCE, "file", 1, png, filename="photo.png", to=[newsroom.fingerprint])
    note = sender.item(SOURCE, "message", 2, b"see photo", to=[newsroom.fingerprint])
    bundle = write_bundle(tmp_path / "b.tar", [item, note])

    proc = run_open(bundle, tmp_path / "out", newsroom.secret_home, "--scrub")

    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "out" / SOURCE
    assert (folder / "01-photo.png").read_bytes() == png  # the original, untouched
    cleaned = (folder / "01-photo.cleaned.png").read_bytes()
    assert cleaned.startswith(b"\x89PNG") and b"Jane Source" not in cleaned
    assert "metadata-free copy: sturdy zest/01-photo.cleaned.png" in \
        (tmp_path / "out" / "index.txt").read_text()


def test_bad_usage_and_an_empty_keyring_are_refused_with_exit_2(
        sender: Sender, newsroom: Newsroom, tmp_path: Path, own_home: Path) -> None:
    bundle = write_bundle(tmp_path / "b.tar", happy_items(sender, newsroom.fingerprint)[:1])
    proc = run_tool(str(bundle))
    assert proc.returncode == 2 and "--out" in proc.stderr

    own_home.mkdir(mode=0o700)
    proc = run_open(bundle, tmp_path / "out", own_home)
    assert proc.returncode == 2 and "holds no secret key" in proc.stderr
    proc = run_open(bundle, tmp_path / "out", tmp_path / "no-such-home")
    assert proc.returncode == 2 and "There is no GnuPG home" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_help_documents_exit_statuses_and_scrub_and_the_console_script_exists() -> None:
    proc = run_tool("--help")
    assert proc.returncode == 0
    assert "Exit status: 0" in proc.stdout and "ORIGINAL IS KEPT" in proc.stdout
    script = Path(sys.executable).parent / "tipbox-open"
    if not script.exists():
        pytest.skip("tipbox-open is not installed in this environment (pip install -e .)")
    import subprocess

    keys_help = subprocess.run([str(script), "keys", "--help"], capture_output=True, text=True,
                               check=False)
    assert keys_help.returncode == 0 and "generate" in keys_help.stdout

