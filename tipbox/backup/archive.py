"""Writing a backup: one tar stream, encrypted by gpg as it is written.

What is in it, in this order:

1. ``tipbox-backup.json``: the format, the kind of database, and the id of every store
   file the database's rows name;
2. the database (``database.sqlite3`` or ``database.pgdump``);
3. ``instance-secrets.json`` (without it no codename logs in) and the keys folder's
   public keys under ``keys/``;
4. ``store/<id>.gpg`` for every id of (1) whose file is still there;
5. ``gone.json``: the ids of (1) whose files were deleted while the backup ran.

**Why this order is consistent.** The database is read first, at one instant. A
submission or reply is committed by renaming its files into the store *before* its rows
commit (tipbox.store_claims), so every row in the snapshot has its file by then. A file
that appears later has no row in the snapshot and is not copied: it would be an orphan.
The only way a named file can go missing afterwards is a deletion (rows first, then
files, tipbox.inbox), and that deletion committed: ``gone.json`` names it, and the
restore deletes those rows too, so the restored instance is the snapshot plus those
deletions, a state the live instance really passed through. Copying the files first and
the database second would instead back up rows whose files were never copied.

Memory stays flat: the database snapshot is held whole (metadata only), every store file
is copied by the kernel from the open file into gpg's stdin (tipbox.backup.tar_stream).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tipbox.backup.database import Snapshot, take_snapshot
from tipbox.backup.encryption import Encryption, encrypting
from tipbox.backup.tar_stream import TarWriter
from tipbox.clock import today
from tipbox.config import Settings
from tipbox.crypto.keyring import KEY_SUFFIXES
from tipbox.db import make_engine
from tipbox.durable import fsync_folder, owned_temp, remove_dead_temps_in
from tipbox.errors import BackupError
from tipbox.storage import SUFFIX, early_writeback

# A backup being written, beside the file it will become: a suffix no other program
# uses, since what killed backups left is removed by it (and by its lock).
PARTIAL = ".tipbox-partial"

FORMAT = 1
HEADER = "tipbox-backup.json"
SECRETS = "instance-secrets.json"
GONE = "gone.json"
KEYS_PREFIX = "keys/"
STORE_PREFIX = "store/"
COPY_BUFFER = 1024 * 1024


@dataclass(frozen=True)
class BackupMade:
    """What a backup holds, for the admin to read."""

    path: Path
    files: int  # store files copied (items and replies)
    gone: int  # files deleted while the backup ran; the restore drops their rows
    key_files: int
    size: int  # bytes of the encrypted backup
    swept: int = 0  # partial files of killed backups removed from the folder first


def make_backup(settings: Settings, out: Path, encryption: Encryption, *,
                clock: Callable[[], dt.date] = today) -> BackupMade:
    """Back up the running instance of ``settings`` into ``out``, encrypted: the database
    at one instant first, then the files its rows name (see the module's docstring)."""
    _check_out(out)
    engine = make_engine(settings.database_url)
    try:
        snapshot = take_snapshot(engine)
    finally:
        engine.dispose()
    return write_backup(settings, snapshot, out, encryption, clock=clock)


def write_backup(settings: Settings, snapshot: Snapshot, out: Path, encryption: Encryption,
                 *, clock: Callable[[], dt.date] = today) -> BackupMade:
    """Write ``snapshot`` and the store files it names into ``out``. ``out`` is written
    under a temporary name beside it and renamed only when gpg has finished, so a failed
    backup leaves nothing that looks like one."""
    _check_out(out)
    stamp = int(dt.datetime.combine(clock(), dt.time(), tzinfo=dt.UTC).timestamp())
    # A backup killed mid-write (SIGKILL, power cut) leaves its partial file, ciphertext
    # but as large as the instance; each backup holds its own partial's lock, so those
    # of dead ones are told apart from one still being written beside this one.
    swept = remove_dead_temps_in(out.parent, PARTIAL)
    lock, temp = owned_temp(out, suffix=PARTIAL)
    try:
        # Writeback starts while gpg still writes: the final fsync then has little left.
        # A second fd for writing: closing it keeps the lock, held by ``lock``.
        with os.fdopen(os.dup(lock), "wb") as output, early_writeback(temp):
            copied, gone, keys = _write_encrypted(settings, snapshot, encryption, output,
                                                  stamp)
            output.flush()
            os.fsync(output.fileno())
        if out.exists():  # made by someone else while this ran: theirs stays
            raise BackupError(f"{out} appeared while the backup ran. Give a new file name.")
        # A rename, not a hard link that would refuse a file made since the check above:
        # backups go to USB sticks, and FAT and exFAT have no hard links.
        os.rename(temp, out)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        os.close(lock)  # lets go of the partial only once its name is gone
    fsync_folder(out.parent)
    return BackupMade(out, copied, len(gone), keys, out.stat().st_size, swept)


def _check_out(out: Path) -> None:
    if out.exists():
        raise BackupError(f"{out} already exists. Give a new file name: a backup never "
                          "overwrites a file.")
    if not out.parent.is_dir():
        raise BackupError(f"The folder {out.parent} does not exist. Create it, or give "
                          "another path with --out.")


def _write_encrypted(settings: Settings, snapshot: Snapshot, encryption: Encryption,
                     output: IO[bytes], stamp: int) -> tuple[int, list[str], int]:
    with encrypting(encryption, output, settings.gpg_binary) as run:
        try:
            tar = TarWriter(run.stdin.fileno())
            header = {"format": FORMAT, "database": snapshot.kind,
                      "files": list(snapshot.file_ids)}
            tar.add_bytes(HEADER, json.dumps(header).encode(), stamp)
            tar.add_bytes(snapshot.member_name, snapshot.data, stamp)
            tar.add_bytes(SECRETS, settings.secrets_file.read_bytes(), stamp)
            keys = _add_keys(tar, settings.keys_dir, stamp)
            gone = [file_id for file_id in snapshot.file_ids
                    if not _add_store_file(tar, settings.store_dir, file_id)]
            tar.add_bytes(GONE, json.dumps(gone).encode(), stamp)
            tar.close()
            run.stdin.close()
        except BrokenPipeError:
            pass  # gpg stopped reading: its exit status and message say why, below
        returncode, said = run.finish()
    if returncode != 0:
        raise BackupError(f"gpg could not encrypt the backup: {_last_words(said)}. Nothing "
                          "was written; fix that and run the backup again.")
    return len(snapshot.file_ids) - len(gone), gone, keys


def _add_keys(tar: TarWriter, keys_dir: Path, stamp: int) -> int:
    if not keys_dir.is_dir():
        return 0
    count = 0
    for path in sorted(keys_dir.iterdir()):
        if path.suffix.lower() in KEY_SUFFIXES and path.is_file():
            tar.add_bytes(KEYS_PREFIX + path.name, path.read_bytes(), stamp)
            count += 1
    return count


def _add_store_file(tar: TarWriter, store_dir: Path, file_id: str) -> bool:
    """Copy one store file; False if it was deleted after the snapshot."""
    try:
        # Opened before its size is read: a file deleted from now on is still read whole.
        fd = os.open(store_dir / f"{file_id}{SUFFIX}", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        st = os.fstat(fd)
        # The store keeps the day as a file's only time; the backup keeps no finer one.
        day = int(st.st_mtime) // 86400 * 86400
        tar.add_file(f"{STORE_PREFIX}{file_id}{SUFFIX}", fd, st.st_size, day)
    finally:
        os.close(fd)
    return True


def _last_words(said: str) -> str:
    lines = [x for x in said.splitlines() if x and not x.startswith("[GNUPG:]")]
    return lines[-1].removeprefix("gpg: ") if lines else "no reason given"
