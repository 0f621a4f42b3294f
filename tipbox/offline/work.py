"""tipbox-open's work folder inside --out, and those a stopped run left behind.

The work folder holds one ciphertext copy, the item being decrypted (plaintext, under a
temporary name) and mat2's scrub areas. It is removed when tipbox-open ends, also on
Ctrl-C, kill or a closed terminal; a SIGKILL or a power cut leaves it, hidden (its name
starts with a dot) in the folder the journalist chose. So each run holds an ``flock`` on
its work folder's lock file for as long as it lives, and the next run into the same
--out removes every work folder whose lock it can take: the kernel drops a lock with the
process that held it, so such a folder's run is gone, however recently. Age never decides.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

PREFIX = ".tipbox-work-"
# A folder is made under this name and renamed to PREFIX only once it holds its lock.
NEW_PREFIX = ".tipbox-new-"
LOCK = ".lock"


@contextlib.contextmanager
def work_folder(out: Path) -> Iterator[Path]:
    """A new work folder in ``out``, locked while the block runs, then removed."""
    staging = Path(tempfile.mkdtemp(prefix=NEW_PREFIX, dir=out))
    fd = os.open(staging / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        work = out / (PREFIX + staging.name[len(NEW_PREFIX):])
        os.rename(staging, work)
        try:
            yield work
        finally:
            shutil.rmtree(work, ignore_errors=True)
    finally:
        os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)  # only if the rename never happened


def remove_abandoned(out: Path) -> list[str]:
    """Remove the work folders in ``out`` whose run is gone; return their names."""
    removed = []
    for folder in sorted(out.glob(PREFIX + "*")):
        if folder.is_dir() and not folder.is_symlink() and _abandoned(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    for folder in out.glob(NEW_PREFIX + "*"):
        # Empty until its run puts the lock in it; rmdir refuses a folder that is not.
        with contextlib.suppress(OSError):
            folder.rmdir()
    return removed


def _abandoned(folder: Path) -> bool:
    try:
        fd = os.open(folder / LOCK, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return True  # made by a tipbox-open from before work folders were locked
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a run into the same folder is under way
    finally:
        os.close(fd)
    return True
