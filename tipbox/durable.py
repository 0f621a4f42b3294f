"""Writing small files so that a crash, a full disk or a power cut leaves either the old
file or the whole new one, never an empty or half-written one.

A writer killed between creating its temporary and putting it in place leaves the
temporary (``.NAME.XXXXXXXX``, mode 0600: for ``instance-secrets.json``, a copy of the
secrets). Every writer holds an ``flock`` on its temporary until the temporary's name is
gone, so :func:`remove_dead_temps` can tell a dead writer's from a live one's by
ownership, never by age; `tipbox init` and each worker's start call it for the data
folder's files (:func:`tipbox.config.Settings.written_whole`), `tipbox doctor` reports
what :func:`dead_temps` finds.
"""

from __future__ import annotations

import fcntl
import os
import re
import stat
import tempfile
from pathlib import Path


def fsync_folder(folder: Path) -> None:
    """Make the renames and creations in ``folder`` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_whole(path: Path, payload: str, *, replace: bool = True) -> None:
    """Write ``payload`` to ``path`` under a temporary name (mode 0600), fsync it, then
    put it in place: renamed over an existing file, or, with ``replace=False``, linked,
    which refuses to replace one (FileExistsError). The folder is synced too, so the new
    file survives once this returns."""
    fd, temp = owned_temp(path)
    try:
        try:
            data = payload.encode()
            while data:
                data = data[os.write(fd, data):]
            os.fsync(fd)
            if replace:
                os.replace(temp, path)
            else:
                os.link(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    finally:
        os.close(fd)  # lets go of the temporary only once its name is gone
    fsync_folder(path.parent)


def owned_temp(path: Path, suffix: str = "") -> tuple[int, Path]:
    """A new temporary beside ``path`` (``.NAME.XXXXXXXX`` and ``suffix``, mode 0600), its
    fd holding the temporary's flock. The caller renames or removes the temporary, then
    closes the fd: until then no sweep takes it.

    A sweep may take and remove the temporary between its creation and our lock; then the
    lock is on a file no longer there, and we make another (as store_claims does)."""
    for _attempt in range(100):
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.fstat(fd).st_ino == os.stat(name).st_ino:
                return fd, Path(name)
        except FileNotFoundError:
            pass
        os.close(fd)
    raise RuntimeError(f"could not make a temporary file beside {path.name}")


def dead_temps(path: Path) -> list[Path]:
    """The temporaries that writers of ``path`` killed mid-write left (changes nothing)."""
    return _scan(path, remove=False)


def remove_dead_temps(path: Path) -> int:
    """Remove the temporaries that writers of ``path`` killed mid-write left; a live
    writer's is untouched. How many were removed."""
    return len(_scan(path, remove=True))


def remove_dead_temps_in(folder: Path, suffix: str) -> int:
    """Remove what killed writers left in ``folder`` of any file's temporaries made with
    ``suffix`` (:func:`owned_temp`), as for backups, whose every file has a new name; a
    live writer's is untouched. How many were removed."""
    own = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(suffix))
    return len(_scan_folder(folder, own, remove=True))


def _scan(path: Path, *, remove: bool) -> list[Path]:
    # mkstemp's names: the prefix, then 8 of [a-z0-9_].
    own = re.compile(re.escape(f".{path.name}.") + r"[a-z0-9_]{8}")
    return _scan_folder(path.parent, own, remove=remove)


def _scan_folder(folder: Path, own: re.Pattern[str], *, remove: bool) -> list[Path]:
    try:
        candidates = sorted(p for p in folder.iterdir() if own.fullmatch(p.name))
    except FileNotFoundError:
        return []
    dead = []
    for temp in candidates:
        fd = _take_if_dead(temp)
        if fd is None:
            continue
        try:
            if remove:
                try:
                    temp.unlink(missing_ok=True)  # under its lock: no writer can have it
                except OSError:
                    continue  # not ours to remove after all (a sticky folder): left
            dead.append(temp)
        finally:
            os.close(fd)
    return dead


def _take_if_dead(temp: Path) -> int | None:
    """An fd holding ``temp``'s lock if no writer holds it and the name is still that
    file (a writer that has just finished renames it away while holding the lock)."""
    try:
        # O_NONBLOCK: a FIFO given such a name must not hold the sweep in open().
        fd = os.open(temp, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # gone, or a symbolic link: not a temporary of ours
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held = os.fstat(fd)
        # What mkstemp made for this user: a regular file, ours, mode 0600. Anything else
        # bearing such a name is some other program's, whatever its lock.
        if stat.S_ISREG(held.st_mode) and held.st_uid == os.geteuid() \
                and stat.S_IMODE(held.st_mode) == 0o600 and held.st_ino == os.stat(temp).st_ino:
            return fd
    except (BlockingIOError, FileNotFoundError):
        pass
    os.close(fd)
    return None
