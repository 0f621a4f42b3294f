"""Writing small files so that a crash, a full disk or a power cut leaves either the old
file or the whole new one, never an empty or half-written one."""

from __future__ import annotations

import os
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
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(temp, path)
        else:
            os.link(temp, path)
    finally:
        Path(temp).unlink(missing_ok=True)
    fsync_folder(path.parent)
