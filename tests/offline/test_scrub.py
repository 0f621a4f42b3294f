"""--scrub with real mat2 on hostile archives: mat2 writes nothing outside --out, is
stopped when what it unpacks outgrows its bound, and a file it did not clean is reported
as NOT scrubbed."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest

from tests.helpers import Newsroom
from tests.offline.kit import Sender, png_with_author, run_open, tree, write_bundle
from tipbox.offline import scrub as scrubbing
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


def zip_of_many_zero_members(members: int, size: int) -> bytes:
    """Each member under any bound on one file, together far over the archive's budget:
    mat2 keeps every member it unpacks until it has cleaned them all."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(members):
            archive.writestr(f"part-{n:03}.txt", bytes(size))
    return buf.getvalue()


# Besides the files the bound is about, the area holds a few folders and mat2's log.
FOLDERS_AND_LOG = 64 * 1024


class PeakUsage:
    """Samples the space taken under ``folder`` as often as it can, until stopped: a
    witness to what a bound let through, not the bound itself."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakUsage:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self._taken())

    def _taken(self) -> int:
        total, pending = 0, [self.folder]
        while pending:  # mat2 removes what it made while this looks: nothing is certain
            with contextlib.suppress(OSError), os.scandir(pending.pop()) as entries:
                for entry in entries:
                    with contextlib.suppress(OSError):
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
                        if entry.is_dir(follow_symlinks=False):
                            pending.append(Path(entry.path))
        return total


def scrub_a_bomb_within_its_bound(tmp_path: Path, bomb: bytes) -> Path:
    """Scrub ``bomb`` (as 01-bomb.zip, budget: its own size again) and check it is refused
    as a bomb with the disk never holding more than the bound; the output folder."""
    mat2 = shutil.which("mat2")
    assert mat2 is not None
    folder, work = tmp_path / "out", tmp_path / "out" / ".work"
    work.mkdir(parents=True)
    original = folder / "01-bomb.zip"
    original.write_bytes(bomb)
    limits = Limits(max_expansion=1, floor=4 * MIB)
    bound = original.stat().st_size + limits.budget(original.stat().st_size)

    with PeakUsage(work) as usage, pytest.raises(NotScrubbed, match="likely an archive bomb"):
        scrub(mat2, original, work, "t", limits)

    assert usage.peak <= bound + FOLDERS_AND_LOG, \
        f"{usage.peak / MIB:.1f} MiB on disk, bound {bound / MIB:.1f}"
    assert not list(work.iterdir())
    return folder


def test_an_archive_of_many_members_never_takes_more_disk_than_its_bound(
        tmp_path: Path) -> None:
    folder = scrub_a_bomb_within_its_bound(  # 512 MiB unpacked
        tmp_path, zip_of_many_zero_members(16, 32 * MIB))
    assert sorted(p.name for p in folder.iterdir()) == [".work", "01-bomb.zip"]


def test_without_a_private_tmpfs_one_huge_member_still_stops_at_its_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no user namespace can be made, RLIMIT_FSIZE still bounds each file mat2
    writes: a bomb of one member never passes the bound between two looks."""
    monkeypatch.setattr(scrubbing, "private_tmpfs_works", lambda: False)
    scrub_a_bomb_within_its_bound(tmp_path, zip_of_zeros(256 * MIB))


def test_mat2_runs_with_its_files_bounded_and_no_core_dump(tmp_path: Path) -> None:
    """A crash of mat2 (a C library on a hostile file) would dump its memory, which holds
    the plaintext, to a core file or the system's crash store."""
    mat2 = shutil.which("mat2")
    assert mat2 is not None
    folder, work = tmp_path / "out", tmp_path / "out" / ".work"
    work.mkdir(parents=True)
    original = folder / "01-big.zip"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("notes.txt", os.urandom(12 * MIB).hex())  # mat2 works a while
    original.write_bytes(buf.getvalue())
    limits = Limits()
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(scrub(mat2, original, work, "t", limits))
        except Exception as exc:  # shown by the assertion below, not lost in the thread
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while not seen and worker.is_alive() and time.monotonic() < deadline:
        for child in Path(f"/proc/{os.getpid()}/task").glob("*/children"):
            for pid in child.read_text().split():
                with contextlib.suppress(OSError):
                    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                    if any(arg.endswith(b"mat2") for arg in argv[:2]):
                        seen = {line[:26].strip(): line[26:] for line in
                                Path(f"/proc/{pid}/limits").read_text().splitlines()}
        time.sleep(0.01)
    worker.join(timeout=120)
    assert seen, "mat2 was never seen running"
    assert seen["Max core file size"].split()[:2] == ["0", "0"]
    bound = str(limits.budget(original.stat().st_size))
    assert seen["Max file size"].split()[:2] == [bound, bound]
    assert outcome and isinstance(outcome[0], Path), outcome  # and it did its work


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


def test_a_run_killed_while_mat2_works_leaves_its_work_folder_for_the_next_run_to_remove(
        sender: Sender, newsroom: Newsroom, tmp_path: Path) -> None:
    """SIGKILL cannot be caught: the work folder, with the plaintext copy mat2 was given,
    stays hidden in --out until the next tipbox-open into that folder removes it."""
    archive = zip_of_zeros(48 * MIB)
    item = sender.item(SOURCE, "file", 1, archive, filename="big.zip", to=[newsroom.fingerprint])
    bundle = write_bundle(tmp_path / "b.tar", [item])
    env, _ = _temp_env(tmp_path)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "tipbox.offline", str(bundle), "--out", str(out),
            "--gnupghome", str(newsroom.secret_home), "--scrub"]
    with subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL) as proc:
        deadline = time.monotonic() + 60
        while not _mat2_working_in(out) and proc.poll() is None:
            assert time.monotonic() < deadline, "mat2 never started"
            time.sleep(0.01)
        proc.kill()
    left = [p.name for p in out.iterdir() if p.name.startswith(".tipbox-work-")]
    assert len(left) == 1  # what the kill leaves, with the copy of big.zip given to mat2
    # mat2 dies with it, its work unfinished: it wrote no cleaned copy after the kill.
    deadline = time.monotonic() + 60
    while _mat2_working_in(out) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _mat2_working_in(out) == []
    assert [p.name for p in (out / left[0]).rglob("*.cleaned.*")] == []

    again = run_open(bundle, out, newsroom.secret_home, cwd=tmp_path, env=env)

    assert again.returncode == 0, again.stderr
    assert f"removed {left[0]} in {out}, the work folder of an earlier tipbox-open" \
        in again.stderr
    assert [p.name for p in out.iterdir() if p.name.startswith(".tipbox-")] == []


def _mat2_working_in(out: Path) -> list[int]:
    """The mat2 processes at work in a work folder of ``out`` (each runs in its own area
    there)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cwd = os.readlink(proc / "cwd")
            command = (proc / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if cwd.startswith(str(out / ".tipbox-work-")) and b"mat2" in command:
            found.append(int(proc.name))
    return found
