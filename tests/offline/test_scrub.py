"""--scrub with real mat2 on hostile archives: mat2 writes nothing outside --out, is
stopped when what it unpacks outgrows its bound, and a file it did not clean is reported
as NOT scrubbed."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.helpers import Newsroom
from tests.offline.kit import Sender, png_with_author, run_open, tree, write_bundle
from tipbox.offline.limits import MIB, Limits
from tipbox.offline.scrub import NotScrubbed, scrub

SOURCE = "sturdy zest"
SECRET = b"PLAINTEXT THE SOURCE SENT "

pytestmark = pytest.mark.skipif(
    shutil.which("mat2") is None and not os.environ.get("CI"),
    reason="mat2 is not installed (apt-get install mat2); CI installs it")


def zip_that_breaks_mat2() -> bytes:
    """A zip whose first member is fine and whose second has a wrong CRC-32: mat2
    unpacks the first, then fails on the second (a Python traceback, exit status 1)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a-notes.txt", SECRET * 1000)
        archive.writestr("b-broken.txt", b"x" * 100_000)
    data = bytearray(buf.getvalue())
    local = data.find(b"b-broken.txt") - 30  # the local header, then the central one
    central = data.find(b"b-broken.txt", local + 31) - 46
    data[local + 14] ^= 0xFF
    data[central + 16] ^= 0xFF
    return bytes(data)


def zip_of_zeros(size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive, \
            archive.open("zeros.txt", "w", force_zip64=True) as member:
        for _ in range(size // MIB):
            member.write(bytes(MIB))
    return buf.getvalue()


def _temp_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir), "TEMP": str(tmpdir), "TMP": str(tmpdir)}
    return env, tmpdir


def test_mat2_alone_leaves_the_hostile_zips_contents_in_tmpdir(tmp_path: Path) -> None:
    """The fault the tool guards against, shown on mat2 by itself."""
    env, tmpdir = _temp_env(tmp_path)
    (tmp_path / "leak.zip").write_bytes(zip_that_breaks_mat2())
    proc = subprocess.run(["mat2", str(tmp_path / "leak.zip")], env=env, capture_output=True,
                          check=False)
    assert proc.returncode != 0
    assert any(SECRET in p.read_bytes() for p in tmpdir.rglob("*") if p.is_file())


def test_a_zip_that_breaks_mat2_midway_leaves_nothing_outside_out_and_is_not_scrubbed(
        sender: Sender, newsroom: Newsroom, tmp_path: Path, workspace: Path) -> None:
    hostile = zip_that_breaks_mat2()
    png = png_with_author(b"Jane Source")
    items = [sender.item(SOURCE, "file", 1, hostile, filename="leak.zip",
                         to=[newsroom.fingerprint]),
             sender.item(SOURCE, "file", 2, png, filename="photo.png",
                         to=[newsroom.fingerprint])]
    bundle = write_bundle(tmp_path / "b.tar", items)
    env, tmpdir = _temp_env(tmp_path)
    out = tmp_path / "out"
    before = tree(tmp_path)

    proc = run_open(bundle, out, newsroom.secret_home, "--scrub", cwd=workspace, env=env)

    assert proc.returncode == 0, proc.stderr  # every item was decrypted
    assert not list(tmpdir.iterdir())
    assert not list(workspace.iterdir())
    assert {p for p in tree(tmp_path) - before if not p.startswith("out")} == set()
    assert not [p for p in out.iterdir() if p.name.startswith(".tipbox-work")]
    folder = out / SOURCE
    assert sorted(p.name for p in folder.iterdir()) == \
        ["01-leak.zip", "02-photo.cleaned.png", "02-photo.png"]
    assert (folder / "01-leak.zip").read_bytes() == hostile  # the original, kept as it was
    index = (out / "index.txt").read_text()
    line = next(line for line in index.splitlines() if "01-leak.zip" in line)
    assert "decrypted; NOT scrubbed: mat2 could not clean it: " in line
    assert "Bad CRC-32" in line and "still carries its metadata" in line
    assert "do not share it as it is" in line
    assert "2 of 2 items decrypted; 1 of 2 files scrubbed, 1 NOT scrubbed." in index
    assert "1 of 2 files scrubbed, 1 NOT scrubbed." in proc.stderr
    assert "scrub sturdy zest/01-leak.zip ... NOT scrubbed: mat2 could not" in proc.stderr


def test_an_archive_bomb_stops_mat2_at_its_bound_and_leaves_no_trace(tmp_path: Path) -> None:
    mat2 = shutil.which("mat2")
    assert mat2 is not None
    folder, work = tmp_path / "out", tmp_path / "out" / ".work"
    work.mkdir(parents=True)
    original = folder / "01-bomb.zip"
    original.write_bytes(zip_of_zeros(100 * MIB))
    limits = Limits(max_expansion=1, floor=MIB)

    with pytest.raises(NotScrubbed, match=r"outgrew 1\.\d MiB, 1x the file's size plus a "
                                          r"floor: likely an archive bomb"):
        scrub(mat2, original, work, "t", limits)

    assert not list(work.iterdir())
    assert sorted(p.name for p in folder.iterdir()) == [".work", "01-bomb.zip"]


# SIGTERM is what a plain `kill` sends, SIGHUP what closing the terminal sends; Ctrl-C's
# KeyboardInterrupt takes the same path through tipbox-open.
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_stopping_tipbox_open_while_mat2_runs_removes_its_area_and_still_writes_the_index(
        signum: signal.Signals, sender: Sender, newsroom: Newsroom, tmp_path: Path) -> None:
    archive = zip_of_zeros(48 * MIB)  # within the budget: mat2 works on it for a while
    item = sender.item(SOURCE, "file", 1, archive, filename="big.zip", to=[newsroom.fingerprint])
    bundle = write_bundle(tmp_path / "b.tar", [item])
    env, tmpdir = _temp_env(tmp_path)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "tipbox.offline", str(bundle), "--out", str(out),
            "--gnupghome", str(newsroom.secret_home), "--scrub"]
    with subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as proc:
        deadline = time.monotonic() + 60
        while not list(out.glob(".tipbox-work-*/scrub-*/tmp")) and proc.poll() is None:
            assert time.monotonic() < deadline, "mat2 never started"
            time.sleep(0.01)
        proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)

    assert proc.returncode == 1, stderr
    assert not list(tmpdir.iterdir())
    assert not [p for p in out.iterdir() if p.name.startswith(".tipbox-work")]
    assert sorted(p.name for p in (out / SOURCE).iterdir()) == ["01-big.zip"]
    index = (out / "index.txt").read_text()
    assert "NOT scrubbed: tipbox-open was interrupted" in index
    assert "1 of 1 items decrypted; 0 of 1 files scrubbed, 1 NOT scrubbed." in index
