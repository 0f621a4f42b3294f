"""``--scrub``: a metadata-free copy of each decrypted file, made by mat2.

The original stays: its metadata (author, camera, GPS position, edit history) can be what
proves a document genuine, and it can also identify the source. The journalist keeps the
original on the offline machine and shares only the ``.cleaned`` copy.

mat2 unpacks archives (zip, docx, odt...) into a temporary folder that it picks with
Python's :mod:`tempfile` (``$TMPDIR``, ``$TEMP``, ``$TMP``, then /tmp), unbounded, and
leaves it behind when it fails mid-archive: the document's decrypted contents outside the
folder the journalist controls. So each run of mat2 gets a private scrub area inside the
work folder under --out, with its temporary folder there, and the area is removed
whatever happens.

What mat2 writes is bounded by the kernel, not only watched: measuring the area between
two looks lets a fast archive bomb write what it writes in that time (tens of MiB), so

- where the system lets an unprivileged user make a user and mount namespace (Debian
  does), the temporary folder is a tmpfs of the budget's size, private to mat2 and gone
  with it (:func:`private_tmpfs_works`): an archive of many members stops at that size;
- every file mat2 writes (its clean copy, each member it unpacks) is bounded by
  RLIMIT_FSIZE, and it dumps no core (its memory holds the plaintext).

The area is still measured while mat2 runs, for the disk reserve and the time limit, and
as the only bound on the temporary folder where no namespace can be made.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from functools import partial
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
    ``over``, once it writes more than ``limit`` bytes there (with ``staged``)."""
    tmp = area / "tmp"
    tmp.mkdir(mode=0o700)
    # Python's tempfile tries these in this order and falls back to /tmp, /var/tmp and
    # the working directory only when none can be written: all of them point into area.
    env = {**os.environ, "TMPDIR": str(tmp), "TEMP": str(tmp), "TMP": str(tmp)}
    writable = max(limit - staged.stat().st_size, 0)
    command = [mat2, "--", str(staged)]
    tmp_full = over
    if private_tmpfs_works():
        # In memory, so no larger than half of what is free of it.
        memory = _memory_available() // 2
        tmp_size = min(writable, memory) if memory else writable
        if tmp_size < writable:
            tmp_full = (f"what it unpacked outgrew {human_size(tmp_size)}, half the memory "
                        "free")
        command = _in_private_tmpfs(command, tmp, tmp_size)
    said = area / "mat2.log"
    with said.open("wb") as log:
        # A stop (Ctrl-C, kill, a closed terminal) that lands while Popen forks runs
        # tipbox-open's handler inside an at-fork callback (logging's), where its
        # KeyboardInterrupt is ignored and the stop is lost. So the stop signals wait
        # until mat2 has started, and arrive below, where mat2 is stopped and waited for.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            # Its own session: one killpg stops mat2 and its worker processes, and a
            # Ctrl-C in the terminal reaches tipbox-open, which then stops them itself.
            # (preexec_fn is safe here: tipbox-open runs no other thread.)
            proc = subprocess.Popen(command, cwd=area, env=env, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, start_new_session=True,
                                    preexec_fn=partial(_bound_files, writable, os.getpid(),
                                                       held))
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            raise
        try:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a held stop is raised here
            stopped = _watch(proc, area, limit, over, limits)
        finally:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if stopped:
        raise NotScrubbed(stopped)
    if proc.returncode != 0:
        if _said(said, errno.ENOSPC):
            raise NotScrubbed(f"mat2 was stopped: {tmp_full}")
        if _said(said, errno.EFBIG):
            raise NotScrubbed(f"mat2 was stopped: {over}")
        raise NotScrubbed(f"mat2 could not clean it: {_last_words(said, staged, proc)}")


def _bound_files(max_bytes: int, parent: int, signal_mask: set[int | signal.Signals]) -> None:
    """In mat2's process, before it starts: no file it writes grows past ``max_bytes``
    (a write past it fails with EFBIG, or SIGXFSZ ends a program that does not ignore
    it), no crash of it leaves a core dump, which would hold the plaintext, and it dies
    with tipbox-open (``parent``), which a SIGKILL stops before it can stop mat2. It
    gets back the signal mask tipbox-open had before it held its stop signals."""
    signal.pthread_sigmask(signal.SIG_SETMASK, signal_mask)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    _die_with_parent(parent)


# What tipbox-open stops on (tipbox/offline/cli.py turns each into a KeyboardInterrupt).
_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextlib.contextmanager
def _stops_held() -> Iterator[None]:
    """Hold tipbox-open's stop signals back during the block: one that comes meanwhile is
    raised as the block ends, in plain code, not halfway through a clean-up or in an
    at-fork callback, where its KeyboardInterrupt would leave files or be lost."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


# prctl(2): the signal a process gets when the thread that made it ends.
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """SIGKILL for this process once ``parent`` is gone (Linux; elsewhere nothing). It
    passes through exec, so it reaches mat2 itself (unshare and sh exec it in turn); what
    mat2 starts in its turn ends with its own work."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the line above: nobody would say so
        os._exit(1)


# Run in the new namespace: a tmpfs of $1 bytes over the folder $2, then the command.
_MOUNT_THEN_RUN = 'mount -t tmpfs -o "size=$1,mode=0700" tipbox-scrub "$2" && shift 2 && exec "$@"'


def _in_private_tmpfs(command: list[str], folder: Path, size: int) -> list[str]:
    """``command`` run with a tmpfs of ``size`` bytes over ``folder``, seen by it alone.

    The kernel refuses a write past ``size`` (ENOSPC), however many files it is spread
    over and however fast it comes; the tmpfs and everything in it go with the last
    process of the namespace, even when tipbox-open itself is killed."""
    return ["unshare", "--user", "--map-root-user", "--mount", "--", "/bin/sh", "-c",
            _MOUNT_THEN_RUN, "sh", str(size), str(folder), *command]


@functools.cache
def private_tmpfs_works() -> bool:
    """Can this user make a user and mount namespace and mount a tmpfs in it? (Debian
    allows it; some systems turn unprivileged user namespaces off.)"""
    if shutil.which("unshare") is None:
        return False
    # A stop during the check would leave its folder (or be lost in the fork): it waits
    # until the folder is gone.
    with _stops_held(), tempfile.TemporaryDirectory(prefix="tipbox-tmpfs-check-") as folder:
        try:
            done = subprocess.run(_in_private_tmpfs(["true"], Path(folder), 4096),
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return False
    return done.returncode == 0


def _memory_available() -> int:
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo", "rb") as info:
        for line in info:
            if line.startswith(b"MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def _said(log: Path, code: int) -> bool:
    """Did mat2's last words name the error ``code`` (ENOSPC: its tmpfs was full; EFBIG:
    a file reached RLIMIT_FSIZE)?"""
    with contextlib.suppress(OSError):
        return os.strerror(code) in log.read_bytes()[-65536:].decode("utf-8", "replace")
    return False


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
