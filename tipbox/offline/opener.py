"""Opening a bundle into a folder: check, copy, verify, decrypt, name, index.

Each item goes through the same steps, one at a time, so the disk holds at most one
ciphertext copy besides the plaintexts: copy it from the bundle into the private work
folder while hashing it, compare with the manifest, check its OpenPGP packets, decrypt it
to a temporary file, and only then move it to its final, never-overwriting name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tipbox.crypto.gpg import KeyInfo
from tipbox.offline import scrub as scrubbing
from tipbox.offline.bundle import Bundle, human_size, open_bundle
from tipbox.offline.decrypt import Decryptor, Outcome
from tipbox.offline.limits import Limits
from tipbox.offline.manifest import ManifestItem
from tipbox.offline.names import display, file_name, folder_name, reserve_file, reserve_folder
from tipbox.offline.openpgp import HEAD_BYTES, NotAnItem, read_envelope
from tipbox.offline.progress import Progress
from tipbox.offline.work import remove_abandoned, work_folder

DECRYPTED = "decrypted"


@dataclass
class Row:
    """One item as the index and the summary report it."""

    item_id: str
    source: str = "?"
    kind: str = "?"
    seq: int | None = None
    day: str = ""
    original_name: str = ""
    output: str = ""
    status: str = ""
    missing_keys: tuple[str, ...] = ()
    path: Path | None = None
    notes: list[str] = field(default_factory=list)
    scrubbed: bool | None = None  # None: no scrub was asked for, or not a file

    @property
    def decrypted(self) -> bool:
        return self.status == DECRYPTED


@dataclass
class Result:
    bundle_id: str
    created_on: str
    rows: list[Row]
    mat2_missing: bool = False
    interrupted: bool = False

    @property
    def complete(self) -> bool:
        """Every item listed in the manifest was decrypted and nothing was left over."""
        return all(row.decrypted for row in self.rows)


class Opener:
    """Opens one bundle into ``out`` with ``decryptor``; reports through ``progress``."""

    def __init__(self, out: Path, decryptor: Decryptor, secret_keys: Iterable[KeyInfo],
                 limits: Limits) -> None:
        self.out = out
        self.decryptor = decryptor
        self.limits = limits
        self._have = _key_matcher(secret_keys)
        self._folders: dict[str, Path] = {}
        self._widths: dict[tuple[str, bool], int] = {}

    def run(self, bundle_path: Path, progress: Progress, scrub: bool) -> Result:
        """Check the bundle (BundleRefused before anything is written), then open it."""
        with open_bundle(bundle_path, self.out) as bundle:
            self.out.mkdir(mode=0o700, parents=True, exist_ok=True)
            for name in remove_abandoned(self.out):
                progress.line(f"removed {name} in {display(str(self.out))}, the work folder "
                              "of an earlier tipbox-open that was stopped before it could "
                              "remove it itself")
            with work_folder(self.out) as work:
                result = self._open(bundle, work, progress)
                if scrub:
                    self._scrub(result, work, progress)
        return result

    def _open(self, bundle: Bundle, work: Path, progress: Progress) -> Result:
        manifest = bundle.manifest
        progress.total = len(manifest.items)
        for item in manifest.items:
            key = (item.source, item.kind == "reply")
            self._widths[key] = max(self._widths.get(key, 2), len(str(item.seq)))
        missing = set(bundle.missing)
        rows = [Row(item.id, item.source, item.kind, item.seq, item.day)
                for item in manifest.items]
        rows += [Row(item_id, status="not decrypted: not listed in the manifest")
                 for item_id in bundle.extra]
        result = Result(manifest.bundle_id, manifest.created_on, rows)
        full = False  # an item found no room: the rest of the bundle waits
        try:
            for item, row in zip(manifest.items, rows, strict=False):
                progress.start(f"{display(item.source)[:60]} {item.kind} "
                               f"{human_size(item.size)}", item.size)
                if full:
                    row.status = ("not processed for lack of disk space (an earlier item did "
                                  "not fit): free some space, then open the bundle again into "
                                  "a new folder")
                    progress.done("not processed: no disk space")
                elif item.id in missing:
                    row.status = "not decrypted: missing from the bundle"
                    progress.done(row.status)
                else:
                    full = not self._open_item(bundle, item, row, work, progress)
        except KeyboardInterrupt:
            result.interrupted = True
            for row in rows:
                row.status = row.status or "not processed: tipbox-open was interrupted"
            progress.line("")
            return result
        for item_id in bundle.extra:
            progress.line(f"[extra] item {item_id} is not listed in the manifest: "
                          "not decrypted")
        return result

    def _open_item(self, bundle: Bundle, item: ManifestItem, row: Row, work: Path,
                   progress: Progress) -> bool:
        """Open one item; False when the disk has no room left for it."""
        ciphertext, plaintext = work / f"{item.id}.gpg", work / f"{item.id}.out"
        fits = True
        try:
            fits = self._decrypt_item(bundle, item, row, ciphertext, plaintext, progress)
        except OSError as exc:  # a full disk, a folder that cannot be written
            row.status = f"failed: could not write it ({exc.strerror or exc})"
        finally:
            ciphertext.unlink(missing_ok=True)
            plaintext.unlink(missing_ok=True)
        progress.done("ok" if row.decrypted else row.status)
        return fits

    def _decrypt_item(self, bundle: Bundle, item: ManifestItem, row: Row, ciphertext: Path,
                      plaintext: Path, progress: Progress) -> bool:
        if self.limits.room(self.out) < item.size:
            row.status = self._no_room()
            return False
        whole = 2 * item.size  # copying is half the work, decrypting the other half
        try:
            copied = bundle.copy_item(item.id, ciphertext, HEAD_BYTES,
                                      lambda done: progress.advance(done, whole))
        except OSError as exc:
            row.status = f"failed: could not copy it out of the bundle ({exc.strerror or exc})"
            return True
        if copied.size != item.size:
            row.status = (f"not decrypted: the ciphertext has {copied.size} bytes, the "
                          f"manifest says {item.size}")
            return True
        if copied.sha256 != item.sha256:
            row.status = ("not decrypted: its SHA-256 does not match the manifest (altered or "
                          "damaged)")
            return True
        try:
            read_envelope(copied.head)
        except NotAnItem as exc:
            row.status = f"failed: not a tipbox ciphertext: {exc}"
            return True
        # gpg's --max-output stops the plaintext as it streams, at whichever comes first:
        # the expansion budget (compression bombs) or the disk reserve.
        budget, room = self.limits.budget(item.size), self.limits.room(self.out)
        with progress.watching(plaintext, item.size, whole):
            outcome = self.decryptor.decrypt(ciphertext, plaintext, min(budget, room))
        if outcome.cut_short and (budget > room or self.limits.room(self.out) < 0):
            row.status = self._no_room()
            return False
        if outcome.cut_short:
            row.status = (
                f"refused: it decompresses to more than {human_size(budget)} "
                f"({self.limits.max_expansion}x its encrypted size plus "
                f"{human_size(self.limits.floor)}), likely a compression bomb; nothing of it "
                "was kept. If you expect a file this large, open the bundle again into a new "
                "folder with a larger --max-expansion")
            return True
        self._record(item, row, outcome, plaintext)
        return True

    def _no_room(self) -> str:
        return (f"not decrypted for lack of disk space: it would leave less than "
                f"{human_size(self.limits.reserve)} free (kept for the system). Free some "
                "space, then open the bundle again into a new folder")

    def _record(self, item: ManifestItem, row: Row, outcome: Outcome, plaintext: Path) -> None:
        if not outcome.ok:
            if outcome.missing_keys:
                row.missing_keys = tuple(
                    f for f in item.key_fingerprints if not self._have(f)) or outcome.missing_keys
                row.status = f"missing key {', '.join(row.missing_keys)}"
            else:
                row.status = f"failed: {outcome.reason}"
            return
        row.original_name = outcome.filename
        folder = self._folder(item.source)
        prefix = f"{item.seq:0{self._widths[(item.source, item.kind == 'reply')]}d}-"
        name = {"message": "message.txt", "reply": "reply.txt"}.get(item.kind) \
            or file_name(outcome.filename)
        final = reserve_file(folder, prefix, name)
        try:
            os.replace(plaintext, final)
        except OSError:
            final.unlink(missing_ok=True)
            plaintext.unlink(missing_ok=True)
            raise
        row.path = final
        row.output = str(final.relative_to(self.out))
        row.status = DECRYPTED

    def _folder(self, designation: str) -> Path:
        """One folder per source; two designations that sanitise alike never share one."""
        if designation not in self._folders:
            taken = set(self._folders.values())
            name = folder_name(designation)
            folder = reserve_folder(self.out, name, reuse=True, avoid=taken)
            self._folders[designation] = folder
        return self._folders[designation]

    def _scrub(self, result: Result, work: Path, progress: Progress) -> None:
        mat2 = scrubbing.find_mat2()
        files = [row for row in result.rows if row.decrypted and row.kind == "file"]
        if mat2 is None:
            result.mat2_missing = True
            return
        if result.interrupted:
            for row in files:
                _not_scrubbed(row, "tipbox-open was interrupted before scrubbing")
            return
        progress.restart(len(files))
        try:
            for row in files:
                progress.start(f"scrub {display(row.output)[:80]}", 0)
                progress.done(self._scrub_file(mat2, row, work))
        except KeyboardInterrupt:
            result.interrupted = True
            for row in files:
                if row.scrubbed is None:
                    _not_scrubbed(row, "tipbox-open was interrupted")
            progress.line("")

    def _scrub_file(self, mat2: str, row: Row, work: Path) -> str:
        """Scrub one file; return what the progress line shows."""
        assert row.path is not None  # noqa: S101 - set for every decrypted row
        try:
            cleaned = scrubbing.scrub(mat2, row.path, work, row.item_id, self.limits)
        except scrubbing.NotScrubbed as exc:
            return _not_scrubbed(row, str(exc))
        except OSError as exc:  # the copy for mat2 could not be written
            return _not_scrubbed(row, f"could not copy it for mat2 ({exc.strerror or exc})")
        row.scrubbed = True
        row.notes.append(f"metadata-free copy: {cleaned.relative_to(self.out)}")
        return "ok"


def _not_scrubbed(row: Row, why: str) -> str:
    """Record on the item's line that it was not scrubbed, why, and what to do."""
    row.scrubbed = False
    row.notes.append(f"NOT scrubbed: {why}. No .cleaned copy was made: {row.output} still "
                     "carries its metadata, so do not share it as it is (clean it by hand, "
                     "or share only what you copy out of it)")
    return f"NOT scrubbed: {why}"


def _key_matcher(keys: Iterable[KeyInfo]) -> Callable[[str], bool]:
    """A predicate: is a fingerprint from the manifest one of our secret keys?"""
    primaries = {key.fingerprint.upper() for key in keys}
    key_ids = {sub.upper()[-16:] for key in keys for sub in key.encryption_subkeys}
    key_ids |= {fpr[-16:] for fpr in primaries}

    def have(fingerprint: str) -> bool:
        fingerprint = fingerprint.upper()
        return fingerprint in primaries or fingerprint[-16:] in key_ids

    return have
