"""The ciphertext store: one file per item, named by a random id, written atomically.

Writes go to a temporary name inside the store (same filesystem, so the final rename is
atomic), are fsynced, then renamed into place. File times are rounded down to the day so
the store keeps no finer timestamp than the database does.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tipbox.durable import fsync_folder
from tipbox.errors import StoreError

_ID_RE = re.compile(r"^[a-z2-7]{26}$")
SUFFIX = ".gpg"


def is_item_id(name: str) -> bool:
    return _ID_RE.fullmatch(name) is not None


def new_item_id() -> str:
    """130 random bits in lower-case base32: unguessable, filesystem-safe, no ordering."""
    return base64.b32encode(secrets.token_bytes(17)).decode().lower()[:26]


class CiphertextStore:
    """A folder of ``<item id>.gpg`` files plus a ``.tmp`` folder for writes in progress."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"
        self.tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)

    def free_bytes(self) -> int:
        """Bytes free for an unprivileged writer on the disk that holds the store."""
        return shutil.disk_usage(self.root).free

    def path_for(self, item_id: str) -> Path:
        if not _ID_RE.match(item_id):
            raise StoreError(f"not an item id: {item_id!r}")
        path = (self.root / f"{item_id}{SUFFIX}").resolve()
        # Belt and braces: an id can never name a file outside the store.
        if os.path.commonpath([path, self.root.resolve()]) != str(self.root.resolve()):
            raise StoreError("item path escapes the store")
        return path

    # Placing a file is done in steps, for a caller that journals its renames and must
    # hold the database's lock as briefly as possible (tipbox.store_claims): the slow fsync
    # of each file first, then the renames and one fsync of the folder.

    def prepare(self, temp: Path, day: dt.date) -> None:
        """fsync ``temp`` and give it the day as its only time, ready to be placed."""
        self._check_temp(temp)
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        stamp = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()
        os.chmod(temp, 0o600)
        os.utime(temp, (stamp, stamp))

    def place(self, temp: Path, item_id: str) -> Path:
        """Rename a prepared ``temp`` to the item's final name (durable after sync)."""
        self._check_temp(temp)
        final = self.path_for(item_id)
        if final.exists():
            raise StoreError(f"item {item_id} already exists")
        os.rename(temp, final)
        return final

    def sync(self) -> None:
        """Make the renames done so far durable."""
        self._fsync_dir()

    def _check_temp(self, temp: Path) -> None:
        if temp.parent != self.tmp:
            raise StoreError("only files written into the store's temp folder can be committed")

    def discard(self, path: Path) -> None:
        """Remove a temp or committed file; missing is fine."""
        path.unlink(missing_ok=True)

    def delete(self, item_id: str) -> None:
        self.discard(self.path_for(item_id))
        self._fsync_dir()

    def size(self, item_id: str) -> int:
        return self.path_for(item_id).stat().st_size

    def _fsync_dir(self) -> None:
        fsync_folder(self.root)


@contextmanager
def early_writeback(path: Path, interval: float = 0.2) -> Iterator[None]:
    """Ask the kernel to start writing ``path`` to disk while it is still being written
    (by gpg, or by an upload the browser encrypted).

    The store fsyncs every ciphertext before it counts as received; started early, the
    writeback overlaps encryption instead of adding a pause of about 0.5 s per GiB at the
    end (bench/upload.py). POSIX_FADV_DONTNEED starts writeback of dirty pages without
    waiting for it. Best effort: any error just leaves the final fsync to do the work.
    """
    stop = threading.Event()

    def nudge() -> None:
        while not stop.wait(interval):
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                finally:
                    os.close(fd)

    thread = threading.Thread(target=nudge, name="writeback", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
