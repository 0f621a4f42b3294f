"""The one wrapper around python-gnupg.

python-gnupg never raises when ``gpg`` fails; it returns a result whose ``ok`` and
``stderr`` must be read. This module reads them, turns every failure into a typed
exception, and never lets a half-written output file survive one.

It imports nothing from Flask or the database so that the offline tool can use it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gnupg

from tipbox.crypto.gpg_watchdog import DEFAULT_STALL_SECONDS, Watch, Watchdog, WatchedSource
from tipbox.errors import EncryptionError, GpgStalled, KeyringUnusable, StorageFull, TipboxError
from tipbox.storage import early_writeback

# python-gnupg logs command lines (which carry --set-filename) and data chunks at DEBUG.
# Pin its logger above that so no configuration of the root logger can leak them.
_gnupg_log = logging.getLogger("gnupg")
_gnupg_log.setLevel(logging.WARNING)
# Its warnings carry exception chains from our upload reader; they add nothing an admin
# can act on and leave a timestamped line per broken upload, so they go nowhere.
_gnupg_log.propagate = False
_gnupg_log.addHandler(logging.NullHandler())

_FPR_RE = re.compile(r"^[0-9A-F]{40}$|^[0-9A-F]{64}$")

# gpg.conf for every home we build: no network look-ups. (Trust is set per call with
# --trust-model always: in gpg.conf it breaks `--import --dry-run`, used to scan files.)
_GPG_CONF = """\
# Written by tipbox. Encryption only ever targets fingerprints imported from keys/.
no-auto-key-retrieve
auto-key-locate local
no-emit-version
no-comments
personal-cipher-preferences AES256 AES192 AES
"""


# Linux caps unprivileged pipes at /proc/sys/fs/pipe-max-size, 1 MiB by default.
PIPE_BYTES = 1024 * 1024
# Reads of gpg's stdout (key exports; empty while encrypting to a file).
STDOUT_READ_BYTES = 16 * 1024
# Preferences of the keys tipbox makes (setpref syntax): strong ciphers and hashes, and no
# AEAD algorithm, so that no GnuPG encrypts to them with OCB.
KEY_PREFERENCES = "AES256 AES192 AES SHA512 SHA384 SHA256 ZLIB BZIP2 ZIP Uncompressed"


class _GPG(gnupg.GPG):  # type: ignore[misc]
    """python-gnupg with a pipe into gpg that holds a whole chunk of the upload.

    python-gnupg's copy thread reads a chunk from the request, then writes it to gpg's
    stdin. With the default 64 KiB pipe that write returns only once gpg has taken in
    all but the last 64 KiB, so gpg soon waits while the next chunk is received and
    parsed: the two take turns instead of overlapping. ``_open_subprocess`` is where
    python-gnupg (pinned below 0.6) starts every gpg process.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # One GnuPG object serves every request thread; each run's watch is the calling
        # thread's, and python-gnupg starts gpg in the calling thread. Set first: the
        # constructor already runs gpg (--version).
        self.local = threading.local()
        super().__init__(*args, **kwargs)

    def _open_subprocess(self, args: list[str], passphrase: bool = False) -> Any:
        process = super()._open_subprocess(args, passphrase)
        # Best effort: not Linux, or over the per-user pipe quota, keeps 64 KiB.
        with contextlib.suppress(AttributeError, OSError):
            fcntl.fcntl(process.stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        watch: Watch | None = getattr(self.local, "watch", None)
        if watch is not None:
            watch.started(process)
        return process

    def _read_data(self, stream: Any, result: Any, on_data: Any = None,
                   buffer_size: int = 1024) -> Any:
        # gpg's stdout, read by a thread of its own for the whole run. A buffered pipe's
        # read(n) allocates n bytes before it waits, and python-gnupg asks for its input
        # chunk size (1 MiB): one such buffer per upload, held for as long as the upload
        # lasts, while stdout carries nothing (gpg writes the ciphertext file itself).
        return super()._read_data(stream, result, on_data, min(buffer_size, STDOUT_READ_BYTES))

    def _handle_io(self, args: Any, fileobj_or_path: Any, result: Any, *rest: Any,
                   **kwargs: Any) -> Any:
        # Kept so that a run ended by an exception (gpg closing its input) can still
        # report what gpg said.
        self.local.result = result
        return super()._handle_io(args, fileobj_or_path, result, *rest, **kwargs)

    def _collect_output(self, process: Any, result: Any, writer: Any = None,
                        stdin: Any = None) -> Any:
        # python-gnupg gives its copy thread 0.01 s once gpg has exited; kept so that the
        # caller can wait for it (see GnuPG._wait_for_copy_thread).
        self.local.writer = writer
        return super()._collect_output(process, result, writer, stdin)


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


@dataclass(frozen=True)
class KeyInfo:
    """What gpg says about one key found in a file, without importing it."""

    fingerprint: str
    secret: bool
    uids: tuple[str, ...]
    algorithm: int
    length: int
    created: int
    expires: int | None
    capabilities: str
    validity: str
    encryption_subkeys: tuple[str, ...] = field(default=())
    # When the last valid encryption subkey expires (None: never). A primary key can
    # outlive its encryption subkeys, and then nothing can be encrypted to it.
    encryption_expires: int | None = None
    # (algorithm id, bits) of each valid encryption-capable (sub)key.
    encryption_algorithms: tuple[tuple[int, int], ...] = field(default=())

    def expired_at(self, now: float) -> bool:
        """Has the key itself expired at ``now`` (gpg's verdict, or its expiry date)?"""
        return self.validity == "e" or (self.expires is not None and self.expires <= now)

    def usable_at(self, now: float) -> bool:
        """Can anything be encrypted to this key at ``now``?"""
        return all(t is None or t > now for t in (self.expires, self.encryption_expires))

    @property
    def revoked(self) -> bool:
        return self.validity == "r"

    @property
    def can_encrypt(self) -> bool:
        # gpg writes a capital E on the primary when some valid subkey can encrypt.
        return "E" in self.capabilities

    @property
    def is_demo(self) -> bool:
        return any("DEMO" in uid for uid in self.uids)


class GnuPG:
    """A GnuPG home of our own (mode 0700), driven through python-gnupg."""

    def __init__(self, home: Path, binary: str = "gpg", buffer_size: int = 1024 * 1024,
                 *, agent: bool = True, own_home: bool = True,
                 stall_seconds: float = DEFAULT_STALL_SECONDS) -> None:
        """``agent=False`` for homes that hold public keys only (the server's): gpg then
        never starts a gpg-agent, which would outlive the request and the home.
        ``own_home=False`` uses someone's existing home untouched (see existing_home).
        ``stall_seconds``: how long an encryption may make no progress before its gpg
        is killed (see tipbox.crypto.gpg_watchdog)."""
        self.stall_seconds = stall_seconds
        if own_home:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(home, 0o700)
            # Rewritten every time: a home made by an older tipbox gets today's settings.
            (home / "gpg.conf").write_text(_GPG_CONF + ("" if agent else "no-autostart\n"))
        self.home = home
        try:
            self._gpg = _GPG(gpgbinary=binary, gnupghome=str(home))
        except (OSError, ValueError) as exc:
            raise KeyringUnusable(
                f"Could not run {binary!r}: {exc}. Install GnuPG 2.2 or later "
                "(Debian: apt-get install gnupg) or set TIPBOX_GPG_BINARY."
            ) from exc
        # Larger reads cut Python overhead on multi-GiB uploads.
        self._gpg.buffer_size = buffer_size

    @property
    def version(self) -> tuple[int, ...]:
        return tuple(self._gpg.version or ())

    # --- keys -------------------------------------------------------------------------

    def scan_key_file(self, path: Path) -> list[KeyInfo]:
        """List the keys in ``path`` without importing anything."""
        return [_key_info(raw) for raw in self._gpg.scan_keys(str(path))]

    def scan_key_data(self, data: str | bytes) -> list[KeyInfo]:
        return [_key_info(raw) for raw in self._gpg.scan_keys_mem(data)]

    def import_keys(self, data: str | bytes) -> list[str]:
        result = self._gpg.import_keys(data)
        if not result.fingerprints:
            raise KeyringUnusable(f"gpg imported no key: {_last_error(result)}")
        return list(dict.fromkeys(result.fingerprints))

    def list_keys(self, secret: bool = False) -> list[KeyInfo]:
        return [_key_info(raw) for raw in self._gpg.list_keys(secret=secret)]

    def export_public(self, fingerprint: str, armor: bool = True) -> str | bytes:
        data = self._gpg.export_keys(_checked_fpr(fingerprint), armor=armor)
        if not data:
            raise KeyringUnusable(f"Key {fingerprint} is not in {self.home}")
        return data  # type: ignore[no-any-return]

    def export_secret(self, fingerprint: str, passphrase: str | None = None) -> str:
        data = self._gpg.export_keys(
            _checked_fpr(fingerprint), secret=True, passphrase=passphrase or "",
            expect_passphrase=bool(passphrase),
        )
        if not data:
            raise KeyringUnusable(f"Secret key {fingerprint} could not be exported")
        return data  # type: ignore[no-any-return]

    def generate_key(
        self, name: str, email: str, *, passphrase: str | None, expire: str = "2y",
        rsa_bits: int | None = None,
    ) -> str:
        """Create a key pair in this home: Ed25519 + Cv25519 by default, RSA on request."""
        if rsa_bits:
            params: dict[str, Any] = {"key_type": "RSA", "key_length": rsa_bits,
                                      "subkey_type": "RSA", "subkey_length": rsa_bits}
        else:
            params = {"key_type": "EDDSA", "key_curve": "ed25519",
                      "subkey_type": "ECDH", "subkey_curve": "cv25519"}
        spec = self._gpg.gen_key_input(
            name_real=name, name_email=email, expire_date=expire,
            passphrase=passphrase or "", no_protection=not passphrase,
            key_usage="sign,cert", subkey_usage="encrypt",
            # No AEAD (OCB) in the preferences: GnuPG 2.3 and later would otherwise set its
            # AEAD feature flag and encrypt to the key in a form sq cannot read.
            preferences=KEY_PREFERENCES, **params,
        )
        result = self._gpg.gen_key(spec)
        if not result.fingerprint:
            raise KeyringUnusable(f"gpg could not generate a key: {_last_error(result)}")
        return str(result.fingerprint)

    # --- encryption -------------------------------------------------------------------

    def encrypt_stream(
        self,
        source: Readable,
        recipients: Sequence[str],
        output: Path,
        *,
        filename: str | None = None,
        compress: bool = False,
    ) -> None:
        """Encrypt everything ``source.read`` yields to ``recipients`` into ``output``.

        Binary OpenPGP with an integrity-protected packet (SEIPD with MDC, readable by
        GnuPG 2.2 and Sequoia). ``filename`` goes into the literal data packet, that
        is, inside the ciphertext. On any failure ``output`` is removed and
        :class:`EncryptionError` raised.
        """
        args = ["--no-tty", "--compress-algo", "zlib" if compress else "none"]
        if compress:
            # Level 1 keeps most of the size gain at a fraction of the default's CPU.
            args += ["--compress-level", "1"]
        if filename is not None:
            args += ["--set-filename", filename]
        fprs = [_checked_fpr(f) for f in recipients]
        if not fprs:
            raise EncryptionError("No newsroom key to encrypt to.")
        watch = Watch(self.stall_seconds)
        self._gpg.local.watch = watch
        self._gpg.local.result = None
        self._gpg.local.writer = None
        try:
            with early_writeback(output), Watchdog(watch):
                result = self._gpg.encrypt_file(
                    WatchedSource(source, watch), fprs, armor=False, always_trust=True,
                    output=str(output), extra_args=args,
                )
        except BrokenPipeError:
            # gpg closed its input before the end: it died, or the watchdog killed it.
            raise self._failure(watch, self._gpg.local.result, output) from None
        except BaseException:
            _remove(output)
            raise
        finally:
            self._gpg.local.watch = None
            self._wait_for_copy_thread()
        # python-gnupg reads "ok" from gpg's END_ENCRYPTION status, which gpg writes even
        # when writing the output failed (a full disk): its exit code tells.
        if not result.ok or getattr(result, "returncode", 0) not in (0, None):
            raise self._failure(watch, result, output)

    def _wait_for_copy_thread(self) -> None:
        """Return only once python-gnupg's copy thread has stopped reading ``source``.

        A gpg that dies while the copy thread waits for the next chunk of an upload
        leaves that thread in ``source.read`` after python-gnupg has returned. The caller
        would then answer the failure by draining the request body while the thread still
        reads it: two readers of one socket, each taking bytes the other expected, so the
        answer could wait for bytes that never come, or a kept-alive connection's next
        request lose its first bytes. The thread ends at its next chunk (writing it to the
        dead gpg fails at once) or when the read fails; a server's reads of the body have
        a stall limit (TIPBOX_BODY_STALL_SECONDS), which bounds the wait.
        """
        writer: threading.Thread | None = getattr(self._gpg.local, "writer", None)
        self._gpg.local.writer = None
        if writer is not None:
            writer.join()

    @staticmethod
    def _failure(watch: Watch, result: Any, output: Path) -> TipboxError:
        """The error for a failed run, once ``output`` is removed."""
        full = result is not None and _disk_full(result, output)  # before removal frees space
        _remove(output)
        if watch.killed:
            return GpgStalled(f"gpg made no progress for {watch.stall_seconds:g} s and was "
                              "stopped", cause=f"gpg made no progress for "
                              f"{watch.stall_seconds:g} s and was killed")
        if full:
            return StorageFull("gpg could not write the ciphertext: the disk is full",
                               cause="gpg could not write the ciphertext: ENOSPC")
        return EncryptionError(
            f"gpg could not encrypt: {_last_error(result)}",
            cause=f"gpg could not encrypt (exit {getattr(result, 'returncode', '?')}, "
                  f"status {getattr(result, 'status', None)!r})")

    def encrypt_bytes(self, data: bytes, recipients: Sequence[str], output: Path,
                      *, filename: str | None = None) -> None:
        import io

        self.encrypt_stream(io.BytesIO(data), recipients, output, filename=filename,
                            compress=False)

    # --- the offline tool (tipbox.offline) --------------------------------------------

    @classmethod
    def existing_home(cls, home: Path, binary: str = "gpg") -> GnuPG:
        """Use a GnuPG home that belongs to the journalist (the offline keyring) as it is.

        Unlike the constructor this creates nothing and writes no gpg.conf: the offline
        machine's own settings stay as their owner made them.
        """
        if not home.is_dir():
            raise KeyringUnusable(f"There is no GnuPG home at {home}.")
        return cls(home, binary, own_home=False)

    def decrypt_file_status(
        self, path: Path, output: Path, *, passphrase: str | None = None,
        extra_args: Sequence[str] = (),
    ) -> tuple[bool, tuple[bytes, ...]]:
        """Decrypt ``path`` into ``output``; return (ok, gpg's status lines as bytes).

        This reports instead of raising because the offline tool must say *why* an item
        failed (NO_SECKEY names the key it lacks; NEED_PASSPHRASE or PINENTRY_LAUNCHED
        mean a prompt may help) and must read the original file name from PLAINTEXT.
        ``ok`` is strict: gpg exited 0 (it says DECRYPTION_OKAY even when --max-output
        cut the plaintext short), said DECRYPTION_OKAY, and checked integrity (MDC or
        AEAD). ``output`` never survives a failure. gpg reads ``path`` itself, so a gpg
        that stops early (no secret key) cannot break a pipe mid-item.
        """
        import io

        args = ["--no-tty", *extra_args, "--", str(path)]
        try:
            # The empty stdin carries only the passphrase, when there is one.
            result = self._gpg.decrypt_file(
                io.BytesIO(b""), output=str(output), passphrase=passphrase,
                always_trust=True, extra_args=args,
            )
        except BaseException:
            _remove(output)
            raise
        lines = tuple(
            line[len("[GNUPG:] "):].encode(self._gpg.encoding, "replace")
            for line in (result.stderr or "").splitlines() if line.startswith("[GNUPG:] ")
        )
        words = {line.split(b" ", 1)[0] for line in lines}
        aead = any(line.startswith(b"DECRYPTION_INFO ") and line.split()[3:4] not in ([], [b"0"])
                   for line in lines)
        ok = (result.returncode == 0 and b"DECRYPTION_OKAY" in words
              and (b"GOODMDC" in words or aead)
              and not words & {b"BADMDC", b"DECRYPTION_FAILED"})
        if not ok:
            _remove(output)
        return ok, lines


def _checked_fpr(fpr: str) -> str:
    fpr = fpr.upper()
    if not _FPR_RE.match(fpr):
        raise ValueError(f"not a full OpenPGP fingerprint: {fpr!r}")
    return fpr


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


def _disk_full(result: Any, output: Path) -> bool:
    """Did gpg fail because the disk holding ``output`` is full? gpg's own words (in the
    C locale), or else the filesystem itself, which has no block left for us."""
    stderr = getattr(result, "stderr", "") or ""
    if any(os.strerror(code) in stderr for code in (errno.ENOSPC, errno.EDQUOT)):
        return True
    try:
        return os.statvfs(output.parent).f_bavail == 0
    except OSError:
        return False


def _last_error(result: Any) -> str:
    """The most useful line of gpg's stderr, without status noise."""
    lines = [ln for ln in (getattr(result, "stderr", "") or "").splitlines()
             if ln and not ln.startswith("[GNUPG:]")]
    status = getattr(result, "status", None)
    tail = lines[-1] if lines else ""
    return "; ".join(s for s in (str(status) if status else "", tail) if s) or "unknown error"


def _key_info(raw: dict[str, Any]) -> KeyInfo:
    expires = int(raw["expires"]) if raw.get("expires") else None
    encrypting = [info for info in (raw.get("subkey_info") or {}).values()
                  if "e" in (info.get("cap") or "") and (info.get("trust") or "") not in ("e", "r")]
    subkeys = tuple(str(info["keyid"]) for info in encrypting)
    if "e" in (raw.get("cap") or "") and raw.get("keyid"):
        subkeys = (str(raw["keyid"]), *subkeys)
    subkey_expiries = [int(i["expires"]) if i.get("expires") else None for i in encrypting]
    encryption_expires = None if not subkey_expiries or None in subkey_expiries else \
        max(e for e in subkey_expiries if e is not None)
    return KeyInfo(
        fingerprint=str(raw["fingerprint"]),
        secret=raw.get("type") == "sec",
        uids=tuple(raw.get("uids") or ()),
        algorithm=int(raw.get("algo") or 0),
        length=int(raw.get("length") or 0),
        created=int(raw.get("date") or 0),
        expires=expires,
        capabilities=str(raw.get("cap") or ""),
        validity=str(raw.get("trust") or ""),
        encryption_subkeys=subkeys,
        encryption_expires=encryption_expires,
        encryption_algorithms=tuple((int(i.get("algo") or 0), int(i.get("length") or 0))
                                    for i in encrypting),
    )


__all__ = ["GnuPG", "KeyInfo", "Readable"]
