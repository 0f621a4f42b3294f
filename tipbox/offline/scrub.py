"""``--scrub``: a metadata-free copy of each decrypted file, made by mat2.

The original stays: its metadata (author, camera, GPS position, edit history) can be what
proves a document genuine, and it can also identify the source. The journalist keeps the
original on the offline machine and shares only the ``.cleaned`` copy.

mat2 unpacks archives (zip, docx, odt...) into a temporary folder that it picks with
Python's :mod:`tempfile` (``$TMPDIR``, ``$TEMP``, ``$TMP``, then /tmp), unbounded, and
leaves it behind when it fails mid-archive: the document's decrypted contents outside the
folder the journalist controls. So each run of mat2 gets a private scrub area inside the
work folder under --out, with its temporary folder there; the area is measured while
mat2 runs, mat2's process group is killed when the area outgrows its budget, the disk
reserve or the time limit, and the area is removed whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tipbox.offline.bundle import human_size
from tipbox.offline.limits import Limits
from tipbox.offline.names import display, reserve_file, split_extension

MAT2_TIMEOUT_SECONDS = 600
POLL_SECONDS = 0.1
# Each file or folder mat2 makes is charged at least one block: that is what a tiny file
# costs on disk, and it keeps an archive of a million empty members from passing as
# free (and bounds how many entries each measurement has to visit).
ENTRY_BYTES = 4096


class NotScrubbed(Exception):
    """mat2 made no clean copy; ``str()`` says why, in words for the journalist."""


def find_mat2() -> str | None:
    return shutil.which("mat2")


def scrub(mat2: str, original: Path, work: Path, tag: str, limits: Limits) -> Path:
    """Write ``<name>.cleaned<ext>`` next to ``original`` and return it.

    mat2 runs on a copy in a scrub area inside ``work``, so it can never overwrite a file
    in the output folder; the result then takes a free name there. Raises NotScrubbed
    when mat2 cannot clean the file or is stopped, OSError when the copy cannot be made.
    """
    stem, ext = split_extension(original.name)
    area = Path(tempfile.mkdtemp(prefix=f"scrub-{tag}-", dir=work))
    try:
        # mat2 recognises formats by extension; the stem is ours, so it holds nothing odd.
        staged = area / f"file{ext}"
        size = original.stat().st_size
        budget, room = limits.budget(size), limits.room(work) - size  # after the copy
        if room <= 0:
            raise NotScrubbed(_full(limits))
        shutil.copyfile(original, staged)
        over = (f"what it unpacked outgrew {human_size(budget)}, {limits.max_expansion}x "
                "the file's size plus a floor: likely an archive bomb" if budget <= room
                else _full(limits))
        _run(mat2, staged, area, size + min(budget, room), over, limits)
        cleaned = area / f"file.cleaned{ext}"
        if not cleaned.is_file():
            raise NotScrubbed("mat2 wrote no clean copy")
        final = reserve_file(original.parent, "", f"{stem}.cleaned{ext}")
        os.replace(cleaned, final)
        return final
    finally:
        shutil.rmtree(area, ignore_errors=True)


def _run(mat2: str, staged: Path, area: Path, limit: int, over: str, limits: Limits,
         ) -> None:
    """Run mat2 on ``staged`` with everything it writes inside ``area``; stop it, saying
    ``over``, once ``area`` takes more than ``limit`` bytes."""
    tmp = area / "tmp"
    tmp.mkdir(mode=0o700)
    # Python's tempfile tries these in this order and falls back to /tmp, /var/tmp and
    # the working directory only when none can be written: all of them point into area.
    env = {**os.environ, "TMPDIR": str(tmp), "TEMP": str(tmp), "TMP": str(tmp)}
    said = area / "mat2.log"
    with said.open("wb") as log:
        # Its own session: one killpg stops mat2 and its worker processes, and a Ctrl-C
        # in the terminal reaches tipbox-open, which then stops them itself.
        proc = subprocess.Popen([mat2, "--", str(staged)], cwd=area, env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
        try:
            stopped = _watch(proc, area, limit, over, limits)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if stopped:
        raise NotScrubbed(stopped)
    if proc.returncode != 0:
        raise NotScrubbed(f"mat2 could not clean it: {_last_words(said, staged, proc)}")


def _watch(proc: subprocess.Popen[bytes], area: Path, limit: int, over: str,
           limits: Limits) -> str:
    """Wait for mat2; return why it had to be stopped, or "" when it ended by itself."""
    deadline = time.monotonic() + MAT2_TIMEOUT_SECONDS
    while True:
        try:
            proc.wait(POLL_SECONDS)
        except subprocess.TimeoutExpired:
            pass
        else:
            return ""
        if limits.room(area) < 0:
            return f"mat2 was stopped: {_full(limits)}"
        if _usage(area) > limit:
            return f"mat2 was stopped: {over}"
        if time.monotonic() > deadline:
            return f"mat2 was stopped: it took longer than {MAT2_TIMEOUT_SECONDS} s"


def _full(limits: Limits) -> str:
    return (f"the disk came within {human_size(limits.reserve)} of full (kept free for the "
            "system)")


def _usage(folder: Path) -> int:
    """Disk space taken under ``folder`` (symbolic links are not followed)."""
    total = 0
    pending = [folder]
    while pending:
        with contextlib.suppress(OSError), os.scandir(pending.pop()) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    blocks = entry.stat(follow_symlinks=False).st_blocks * 512
                    total += max(blocks, ENTRY_BYTES)
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
    return total


def _last_words(log: Path, staged: Path, proc: subprocess.Popen[bytes]) -> str:
    """mat2's last line of output (an error, or the last line of a traceback)."""
    with log.open("rb") as fh:
        fh.seek(max(0, log.stat().st_size - 4096))
        lines = fh.read().decode("utf-8", "replace").strip().splitlines()
    if not lines:
        return f"exit status {proc.returncode}"
    return display(lines[-1].replace(str(staged), "the file"))[:160]
